//! The loop with several services: start them in file order, each gated by its readiness; keep them
//! running, restarting them under their policy; and on a stop — a stop signal, the main service's own exit, a
//! service that ended for good — carry out the ordered stop ([`StopPlan`]) inside the container's one clock
//! ([`Shutdown`]), then exit with the status the stop's first cause decides. The plan and the clock decide
//! what happens when; this carries it out and says so in the log.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::membership::{Membership, MARKER};
use super::output::Output;
use super::plan::{self, Facts, Member, ServiceId, StopPlan};
use super::readiness::{Step, Waiter, CHECK_TIMEOUT, REPORT_INTERVAL};
use super::table::{Readiness, Service, ServiceTable};
use crate::child::{self, Launch, SpawnError};
use crate::config::Config;
use crate::exit_status;
use crate::log_sink;
use crate::reaper;
use crate::remains::{self, Remains};
use crate::restart::{Decision, Policy, Restarts};
use crate::shutdown::{Action, KillReason, Shutdown, SETTLE, UNKILLABLE_WAIT};
use crate::signals::{OwnSignals, Received, Signal, SignalSource};
use crate::survey::{self, Detail, Surveyed};
use crate::sys::{self, ChildSetup};
use crate::tree::{self, Process, Tree};
use crate::wording::{configured, millis, name_list, pid_list, processes, seconds, sender};

/// How often grace looks whether processes it did not start are gone, once only they remain.
const OUTSIDER_RECHECK: Duration = Duration::from_millis(50);

/// The survey before a SIGKILL stops reading /proc this long before it, so that the kill is on time.
const SURVEY_MARGIN: Duration = Duration::from_millis(5);

/// The status grace exits with when a service was not ready within its `ready-timeout` (as timeout(1)).
pub const NOT_READY: u8 = 124;

/// Runs the services; returns grace's exit status.
pub struct ServicesSupervisor {
    config: Config,
    services: Vec<Service>,
    runs: Vec<Run>,
    /// The main service's index.
    main: ServiceId,
    signals: SignalSource,
    remains: Remains,
    setup: ChildSetup,
    /// Tells signals grace raised itself from those pending when it started.
    own_signals: OwnSignals,
    /// During start-up, the next service to start (or to wait for).
    next_to_start: Option<ServiceId>,
    /// The container's one clock: pre-stop delay, grace period − cleanup timeout, final signal, SIGKILL.
    clock: Shutdown,
    stop: Option<Stop>,
    membership: Membership,
    /// As PID 1, only processes that entered the namespace from outside remain: no SIGCHLD says when they
    /// are gone, so grace looks again shortly.
    outsiders: bool,
    /// The stop is over: everything was SIGKILLed and what is left cannot be ended.
    gave_up: bool,
    /// The prefixed services' pipes and lines.
    output: Output,
    /// The nice value grace had before a stop raised its priority (see [`ServicesSupervisor::raise_priority`]).
    normal_nice: Option<i32>,
}

/// One service at run time.
#[derive(Debug)]
struct Run {
    state: State,
    /// Its own process (the one grace started), until it is reaped: its pid is safe to signal.
    pid: Option<i32>,
    restarts: Restarts,
    started_at: Instant,
    /// How many times it was started.
    starts: u32,
    /// The status of its last run.
    status: Option<u8>,
    /// Its readiness wait, from its first start until it is ready.
    waiter: Option<Waiter>,
    /// The restart signal asked for a new run (main service only): its own process was sent the stop
    /// signal, and is SIGKILLed at this deadline.
    restart_requested: Option<Instant>,
    /// A `once` task not completed yet: when it first started, and when to say again that it still runs.
    task: Option<(Instant, Instant)>,
    /// Before its first start, the child removing its stale readiness file, and when it began (see
    /// [`sys::remove_file_in_child`]); `stale_removed` once that is over.
    removing: Option<(i32, Instant)>,
    stale_removed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotStarted,
    /// Started, not ready yet: its readiness check has not passed, or it is a `once` task still running.
    Starting,
    Running,
    /// A `once` task that exited 0.
    Completed,
    /// Its own process exited and it starts again at `restart_at`, once nothing of its last run is left:
    /// the rest of its tree gets SIGTERM at `term_at` and SIGKILL at `kill_at`. `empty`: nothing is left,
    /// and only `restart_at` remains to wait for.
    Cleaning {
        restart_at: Instant,
        term_at: Instant,
        kill_at: Instant,
        termed: bool,
        killed: bool,
        empty: bool,
    },
    /// Ended for good.
    Ended,
}

/// The stop in progress.
#[derive(Debug)]
struct Stop {
    cause: Cause,
    /// The ordered stop, from the moment the clock says to begin (after the pre-stop delay).
    plan: Option<StopPlan>,
}

/// What began the stop: the first cause decides the exit status.
#[derive(Clone, Debug)]
enum Cause {
    Signal(Received),
    /// The main service exited, and its policy does not restart it.
    MainExited,
    /// A service that is not optional ended for good.
    Ended {
        service: ServiceId,
        status: u8,
        why: String,
    },
}

impl ServicesSupervisor {
    pub fn new(
        config: Config,
        table: ServiceTable,
        signals: SignalSource,
        tree: Tree,
        setup: ChildSetup,
    ) -> ServicesSupervisor {
        let main = table.main_index();
        let now = Instant::now();
        let runs = table
            .services
            .iter()
            .map(|service| {
                let policy = match (service.main, service.restart) {
                    (_, Some(policy)) => policy,
                    (true, None) => config.restart,
                    (false, None) if service.once => Policy::Never,
                    (false, None) => Policy::Always,
                };
                let max = if service.main {
                    service.max_restarts.or(config.max_restarts)
                } else {
                    service.max_restarts
                };
                Run {
                    state: State::NotStarted,
                    pid: None,
                    restarts: Restarts::new(policy, config.restart_delay, max),
                    started_at: now,
                    starts: 0,
                    status: None,
                    waiter: None,
                    restart_requested: None,
                    task: None,
                    removing: None,
                    stale_removed: false,
                }
            })
            .collect();
        let clock = Shutdown::new(config.timings());
        let output = Output::new(&table.services, config.log_services, config.log_format);
        ServicesSupervisor {
            services: table.services,
            runs,
            main,
            signals,
            remains: Remains::new(tree),
            setup,
            own_signals: OwnSignals::new(),
            next_to_start: Some(0),
            clock,
            stop: None,
            membership: Membership::default(),
            outsiders: false,
            gave_up: false,
            output,
            normal_nice: None,
            config,
        }
    }

    /// Starts the services and supervises them until the stop is over; returns the exit status.
    pub fn run(mut self) -> u8 {
        let mut received = Vec::with_capacity(64);
        let mut readable = Vec::new();
        self.start_due(Instant::now());
        let mut child_exited = true;
        loop {
            if child_exited {
                let no_children = self.reap(Instant::now());
                self.refresh(Instant::now());
                if no_children && self.stop.is_some() {
                    if !self.remains.others_remain() {
                        return self.exit();
                    }
                    self.outsiders = true;
                }
            }
            if self.outsiders && !self.remains.others_remain() {
                return self.exit();
            }
            self.on_time(Instant::now());
            if self.gave_up || self.only_unsignallable_remain() {
                return self.exit();
            }
            let deadline = self.next_deadline();
            let (mut watched, owners): (Vec<(BorrowedFd<'_>, PollFlags)>, Vec<ServiceId>) = self
                .runs
                .iter()
                .enumerate()
                .filter_map(|(id, run)| {
                    Some(((run.waiter.as_ref()?.descriptor()?, PollFlags::POLLIN), id))
                })
                .unzip();
            let outputs = self.output.watch(&mut watched);
            let log_waiting = log_sink::waiting_descriptor();
            if let Err(err) = self.signals.next_events(
                deadline,
                log_waiting,
                &watched,
                &mut readable,
                &mut received,
            ) {
                error!(event = "error"; "reading signals failed: {err}");
            }
            drop(watched);
            if log_waiting.is_some() {
                log_sink::flush();
            }
            let mut output_ready = Vec::new();
            for &index in &readable {
                if let Some(&id) = owners.get(index) {
                    self.on_notify(id, Instant::now());
                } else if let Some(watch) = index
                    .checked_sub(owners.len())
                    .and_then(|index| outputs.get(index))
                {
                    output_ready.push(*watch);
                }
            }
            self.output.on_ready(&output_ready, Instant::now());
            child_exited = false;
            for signal in received.drain(..) {
                if signal.signal == Signal::CHLD {
                    child_exited = true;
                } else {
                    self.on_signal(signal);
                }
            }
        }
    }

    // ---- start-up ----

    /// Starts services in order until one must be waited for (its readiness, or a `once` task's exit).
    fn start_due(&mut self, now: Instant) {
        while let Some(id) = self.next_to_start {
            if self.stop.is_some() {
                self.next_to_start = None;
                return;
            }
            let Some(run) = self.runs.get(id) else {
                self.next_to_start = None;
                self.all_started();
                return;
            };
            match run.state {
                State::NotStarted => {
                    if let Err(err) = self.start(id, now) {
                        self.could_not_start(id, err, now);
                        continue;
                    }
                    if self
                        .runs
                        .get(id)
                        .is_some_and(|run| run.state == State::Starting)
                    {
                        return;
                    }
                }
                State::Starting | State::Cleaning { .. } => return,
                State::Running | State::Completed | State::Ended => {}
            }
            self.next_to_start = Some(id + 1);
        }
    }

    fn all_started(&self) {
        info!(
            event = "services_started", count = self.services.len();
            "all {} services started", self.services.len()
        );
    }

    /// Starts `id`'s command: for the first time (with its readiness wait), or again.
    fn start(&mut self, id: ServiceId, now: Instant) -> Result<(), SpawnError> {
        let Some(service) = self.services.get(id) else {
            return Ok(());
        };
        let is_main = id == self.main;
        let first = self.runs.get(id).is_some_and(|run| run.starts == 0);
        // A stale `file:` readiness file goes first, in a child of its own (a hung file system must not hold
        // PID 1); the service starts once it is gone (see on_removed).
        if let (true, Some(Readiness::File(path))) = (first, &service.ready) {
            if let Some(run) = self.runs.get_mut(id).filter(|run| !run.stale_removed) {
                if run.removing.is_none() {
                    use std::os::unix::ffi::OsStrExt;
                    let removing = std::ffi::CString::new(path.as_os_str().as_bytes())
                        .map_err(std::io::Error::other)
                        .and_then(|path| sys::remove_file_in_child(&path));
                    match removing {
                        Ok(pid) => {
                            run.removing = Some((pid, now));
                            run.state = State::Starting;
                        }
                        // It could not even be forked: start as if it had been removed.
                        Err(_) => run.stale_removed = true,
                    }
                }
                if run.removing.is_some() {
                    return Ok(());
                }
            }
        }
        if first {
            if let Some(readiness) = &service.ready {
                let waiter = Waiter::new(readiness, now).map_err(|err| SpawnError {
                    status: exit_status::INIT_FAILED,
                    message: format!("preparing the readiness check of {}: {err}", service.name),
                })?;
                if let Some(run) = self.runs.get_mut(id) {
                    run.waiter = Some(waiter);
                }
            }
        }
        let run = self.runs.get(id);
        let mut environment: Vec<(OsString, OsString)> =
            vec![(OsString::from(MARKER), OsString::from(&service.name))];
        environment.extend(service.env.iter().cloned());
        if let Some(waiter) = run.and_then(|run| run.waiter.as_ref()) {
            environment.extend(waiter.environment());
        }
        let setup = ChildSetup {
            take_terminal: is_main && self.setup.take_terminal,
            ..self.setup
        };
        self.output.prepare(id).map_err(|err| SpawnError {
            status: exit_status::INIT_FAILED,
            message: format!("opening the output pipes of {}: {err}", service.name),
        })?;
        let (stdout, stderr) = self.output.stdio(id);
        let launch = Launch {
            environment: &environment,
            null_stdin: !is_main,
            stdout,
            stderr,
        };
        let started =
            self.at_normal_priority(|| child::spawn_with(&service.command, setup, launch));
        self.signals.after_fork();
        let started = started?;
        let waiting = run.is_some_and(|run| run.waiter.is_some()) || service.once;
        let command = crate::supervisor::shown_command(&service.command);
        let name = service.name.clone();
        let Some(run) = self.runs.get_mut(id) else {
            return Ok(());
        };
        run.pid = Some(started.pid);
        run.started_at = now;
        run.starts += 1;
        if service.once && run.task.is_none() {
            run.task = Some((now, now + REPORT_INTERVAL));
        }
        run.state = if waiting {
            State::Starting
        } else {
            State::Running
        };
        let waiting_for = match (&run.waiter, service.once) {
            (Some(waiter), _) => {
                format!("; waiting until ready ({})", waiter.readiness())
            }
            (None, true) => "; waiting for it to complete".to_string(),
            (None, false) => String::new(),
        };
        if run.starts == 1 {
            info!(
                event = "service_started", service = name.as_str(), pid = started.pid, command = command.as_str();
                "{name}: started pid {}: {command}{waiting_for}", started.pid
            );
        } else {
            info!(
                event = "service_restarted", service = name.as_str(), pid = started.pid, starts = run.starts;
                "{name}: restarted pid {} (run {})", started.pid, run.starts
            );
        }
        Ok(())
    }

    /// A service's command could not be started (not found, not executable, a limit).
    fn could_not_start(&mut self, id: ServiceId, err: SpawnError, now: Instant) {
        let name = self.name(id);
        error!(event = "failed", service = name.as_str(), status = err.status; "{name}: {err}");
        let first_start = self.runs.get(id).is_some_and(|run| run.starts == 0);
        if !first_start {
            // A run that could not start is a failed run for the restart policy.
            self.after_exit(id, err.status, "could not be started", now);
            return;
        }
        self.end(id);
        if let Some(run) = self.runs.get_mut(id) {
            run.status = Some(err.status);
        }
        self.ended_for_good(id, err.status, format!("could not be started: {err}"), now);
    }

    /// `id` passed its readiness check.
    fn ready(&mut self, id: ServiceId, now: Instant) {
        let name = self.name(id);
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let Some(waiter) = run.waiter.take() else {
            return;
        };
        if let Some(pid) = waiter.check_pid() {
            let _ = sys::send_signal(-pid, Signal::KILL.number());
        }
        if run.state == State::Starting {
            run.state = State::Running;
        }
        let waited = waiter.waited(now);
        info!(
            event = "service_ready", service = name.as_str(), elapsed_ms = millis(waited);
            "{name}: ready ({}) after {}", waiter.readiness(), seconds(waited)
        );
        if self.next_to_start == Some(id) {
            self.next_to_start = Some(id + 1);
            self.start_due(now);
        }
    }

    fn on_notify(&mut self, id: ServiceId, now: Instant) {
        let own = self.runs.get(id).and_then(|run| run.pid);
        let name = self.name(id);
        let step = match self.runs.get_mut(id).and_then(|run| run.waiter.as_mut()) {
            Some(waiter) => waiter.on_readable(|pid| is_of_service(pid, own, &name)),
            None => return,
        };
        if step == Step::Ready {
            self.ready(id, now);
        }
    }

    // ---- exits ----

    /// Reaps every exited child; returns whether grace has no children left.
    fn reap(&mut self, now: Instant) -> bool {
        let mut exits = Vec::new();
        let no_children = reaper::reap_each(|pid, status| exits.push((pid, status)));
        for (pid, raw_status) in exits {
            let status = exit_status::from_wait_status(raw_status);
            if let Some(id) = self.runs.iter().position(|run| run.pid == Some(pid)) {
                self.on_own_exit(id, status, raw_status, now);
            } else if let Some(id) = self
                .runs
                .iter()
                .position(|run| run.removing.map(|(removing, _)| removing) == Some(pid))
            {
                self.on_removed(id, now);
            } else if let Some(id) = self
                .runs
                .iter()
                .position(|run| run.waiter.as_ref().and_then(Waiter::check_pid) == Some(pid))
            {
                self.on_check_exit(id, status, now);
            } else if self.config.warn_on_reap {
                warn!(event = "reaped", pid = pid; "Reaped zombie process with pid={pid}");
            }
        }
        no_children
    }

    /// The stale readiness file of `id` is gone (or could not be removed in time): the service starts.
    fn on_removed(&mut self, id: ServiceId, now: Instant) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.removing = None;
        run.stale_removed = true;
        if self.stop.is_some() {
            return;
        }
        run.state = State::NotStarted;
        if let Err(err) = self.start(id, now) {
            self.could_not_start(id, err, now);
            if self.next_to_start == Some(id) {
                self.start_due(now);
            }
        }
    }

    fn on_check_exit(&mut self, id: ServiceId, status: u8, now: Instant) {
        let step = match self.runs.get_mut(id).and_then(|run| run.waiter.as_mut()) {
            Some(waiter) => waiter.on_check_exit(status, now),
            None => return,
        };
        if step == Step::Ready && self.stop.is_none() {
            self.ready(id, now);
        }
    }

    fn on_own_exit(&mut self, id: ServiceId, status: u8, raw_status: i32, now: Instant) {
        self.output.drain(id, now);
        let name = self.name(id);
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let pid = run.pid.take().unwrap_or_default();
        run.status = Some(status);
        let ran = now.saturating_duration_since(run.started_at);
        let how = crate::wording::wait_status(raw_status, status);
        let stop_signalled = self
            .stop
            .as_ref()
            .and_then(|stop| stop.plan.as_ref())
            .is_some_and(|plan| plan.own_signalled(id));
        info!(
            event = "service_exited", service = name.as_str(), pid = pid, status = status, elapsed_ms = millis(ran);
            "{name}: pid {pid} {how} after {}{}", seconds(ran),
            if stop_signalled { " (stopping)" } else { "" }
        );
        if let Some(deadline) = run.restart_requested.take() {
            // The restart signal's run ended: start again at once, its leftovers cleaned first.
            run.state = cleaning(now, now, deadline, self.config.cleanup_timeout);
            return;
        }
        let once = self.services.get(id).is_some_and(|service| service.once);
        if once && status == 0 && self.stop.is_none() {
            run.state = State::Completed;
            run.task = None;
            info!(
                event = "service_completed", service = name.as_str();
                "{name}: completed"
            );
            if self.next_to_start == Some(id) {
                self.next_to_start = Some(id + 1);
                self.start_due(now);
            }
            return;
        }
        self.after_exit(id, status, &how, now);
    }

    /// What follows an exit of `id`'s own process (or a failed restart): a restart under its policy, or
    /// its end.
    /// `how` says how its run ended, for the log: `exited with status 3`, `was killed by SIGKILL…`.
    fn after_exit(&mut self, id: ServiceId, status: u8, how: &str, now: Instant) {
        let name = self.name(id);
        let is_main = id == self.main;
        let stopping = self.stop.is_some();
        let may_restart = match &self.stop {
            None => true,
            // During the stop, a helper waiting for its turn is restarted, so that it is there for the
            // drain of what depends on it; the main is not.
            Some(stop) => !is_main && stop.plan.as_ref().map_or(true, |plan| plan.may_restart(id)),
        };
        let reported = if is_main {
            exit_status::remap_success(status, &self.config.success_exits)
        } else {
            status
        };
        let cleanup_timeout = self.config.cleanup_timeout;
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let ran = now.saturating_duration_since(run.started_at);
        let decision = if may_restart {
            run.restarts.after_exit(reported, ran)
        } else {
            Decision::Exit
        };
        match decision {
            Decision::RestartAfter(delay) => {
                run.state = cleaning(
                    now,
                    now + delay,
                    now + SETTLE + cleanup_timeout,
                    cleanup_timeout,
                );
                info!(
                    event = "service_restarting", service = name.as_str(), status = status,
                    delay_ms = millis(delay), restarts = run.restarts.done();
                    "{name}: restarting in {} (--restart {}, restart {})",
                    seconds(delay), run.restarts.policy().as_str(), run.restarts.done()
                );
            }
            Decision::Exit | Decision::LimitReached => {
                let why = if decision == Decision::LimitReached {
                    format!(
                        "{how}, and max-restarts was reached ({} restarts)",
                        run.restarts.done()
                    )
                } else {
                    how.to_string()
                };
                self.end(id);
                if stopping {
                    return;
                }
                if is_main {
                    self.begin_stop(Cause::MainExited, false, now);
                } else {
                    self.ended_for_good(id, status, why, now);
                }
            }
        }
    }

    /// `id` will not run again: an optional service is let go; any other ends the container.
    fn ended_for_good(&mut self, id: ServiceId, status: u8, why: String, now: Instant) {
        let name = self.name(id);
        if id == self.main {
            self.begin_stop(Cause::MainExited, false, now);
            return;
        }
        let optional = self
            .services
            .get(id)
            .is_some_and(|service| service.optional);
        if optional {
            warn!(
                event = "service_ended", service = name.as_str(), status = status, optional = true;
                "{name} {why}; it is optional: the other services go on"
            );
            if self.next_to_start == Some(id) {
                self.next_to_start = Some(id + 1);
                self.start_due(now);
            }
            return;
        }
        // An error, unless it ended well (a helper under `on-failure` that exited 0): then only news.
        let level = if status == 0 {
            crate::logging::Level::Warn
        } else {
            crate::logging::Level::Error
        };
        log!(
            level,
            event = "service_ended", service = name.as_str(), status = status, optional = false;
            "{name} {why}: stopping every service (status {status})"
        );
        self.begin_stop(
            Cause::Ended {
                service: id,
                status,
                why,
            },
            false,
            now,
        );
    }

    // ---- time ----

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.clock.next_deadline();
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        };
        if let Some(plan) = self.stop.as_ref().and_then(|stop| stop.plan.as_ref()) {
            consider(plan.next_deadline());
        }
        consider(self.output.next_deadline());
        for (run, service) in self.runs.iter().zip(&self.services) {
            if let Some(waiter) = &run.waiter {
                if self.stop.is_none() && run.state != State::Ended {
                    consider(Some(waiter.next_deadline()));
                    let now = Instant::now();
                    consider(
                        service
                            .ready_timeout
                            .map(|timeout| now + timeout.saturating_sub(waiter.waited(now))),
                    );
                }
            }
            consider(run.restart_requested);
            if let (Some((_, began)), None) = (run.removing, &self.stop) {
                consider(Some(began + CHECK_TIMEOUT));
            }
            if let (Some((started, next_report)), None) = (run.task, &self.stop) {
                consider(Some(next_report));
                consider(service.ready_timeout.map(|timeout| started + timeout));
            }
            if let State::Cleaning {
                restart_at,
                term_at,
                kill_at,
                termed,
                killed,
                empty,
            } = run.state
            {
                // Each deadline is offered only until it has been acted on: one in the past would make the
                // loop spin.
                consider(Some(restart_at));
                if !empty {
                    consider((!termed).then_some(term_at));
                    consider(Some(if killed {
                        kill_at + UNKILLABLE_WAIT
                    } else {
                        kill_at
                    }));
                }
            }
        }
        if self.outsiders {
            consider(Some(Instant::now() + OUTSIDER_RECHECK));
        }
        next
    }

    fn on_time(&mut self, now: Instant) {
        self.output.on_time(now);
        loop {
            match self.clock.on_deadline(now) {
                Action::Nothing => break,
                action => self.perform_clock(action, None, now),
            }
            if self.gave_up {
                return;
            }
        }
        if let Some(actions) = self
            .stop
            .as_mut()
            .and_then(|stop| stop.plan.as_mut())
            .map(|plan| plan.on_deadline(now))
        {
            self.perform_plan(actions);
        }
        for id in 0..self.runs.len() {
            self.run_on_time(id, now);
        }
    }

    fn run_on_time(&mut self, id: ServiceId, now: Instant) {
        let name = self.name(id);
        let ready_timeout = self
            .services
            .get(id)
            .and_then(|service| service.ready_timeout);
        let stopping = self.stop.is_some();
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if let Some(deadline) = run.restart_requested.filter(|deadline| now >= *deadline) {
            let _ = deadline;
            if let Some(pid) = run.pid {
                warn!(
                    event = "escalated", service = name.as_str(), pid = pid;
                    "{name}: pid {pid} did not exit within the grace period of the restart: SIGKILL"
                );
                let _ = sys::send_signal(pid, Signal::KILL.number());
            }
            run.restart_requested = None;
        }
        if let (Some((pid, began)), false) = (run.removing, stopping) {
            if now >= began + CHECK_TIMEOUT {
                let _ = sys::send_signal(-pid, Signal::KILL.number());
                warn!(
                    event = "service_waiting", service = name.as_str(), check = "stale file";
                    "{name}: its stale readiness file could not be removed within {} (the file system does not \
                     answer): starting it anyway", seconds(CHECK_TIMEOUT)
                );
                self.on_removed(id, now);
                return;
            }
        }
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if let (Some((started, next_report)), false) = (run.task, stopping) {
            let running = now.saturating_duration_since(started);
            if ready_timeout.is_some_and(|timeout| running >= timeout) {
                run.task = None;
                let timeout = ready_timeout.unwrap_or_default();
                let leftovers = self.processes_of(id);
                let killed = self.remains.kill_processes(&leftovers);
                let why = format!(
                    "did not complete within its ready-timeout of {} (SIGKILL to {})",
                    configured(timeout),
                    processes(killed.sent.len())
                );
                self.end(id);
                self.ended_for_good(id, NOT_READY, why, now);
                return;
            }
            if now >= next_report {
                run.task = Some((started, now + REPORT_INTERVAL));
                info!(
                    event = "service_waiting", service = name.as_str(), check = "completion",
                    waited_ms = millis(running);
                    "{name}: still running after {} (a once task: the next service starts once it completes)",
                    seconds(running)
                );
            }
        }
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if let (Some(waiter), false) = (run.waiter.as_mut(), stopping) {
            if let Some(timeout) = ready_timeout {
                if waiter.waited(now) >= timeout {
                    let why = format!(
                        "was not ready within its ready-timeout of {} ({}{})",
                        configured(timeout),
                        waiter.readiness(),
                        waiter
                            .last_error()
                            .map(|error| format!(": {error}"))
                            .unwrap_or_default()
                    );
                    if let Some(pid) = waiter.check_pid() {
                        let _ = sys::send_signal(-pid, Signal::KILL.number());
                    }
                    run.waiter = None;
                    self.ended_for_good(id, NOT_READY, why, now);
                    return;
                }
            }
            let (step, overdue) = waiter.on_time(now);
            if let Some(pid) = overdue {
                let _ = sys::send_signal(-pid, Signal::KILL.number());
            }
            if waiter.report_due(now) {
                let waited = waiter.waited(now);
                let error = waiter.last_error().unwrap_or("no answer yet").to_string();
                info!(
                    event = "service_waiting", service = name.as_str(), check = waiter.readiness().to_string().as_str(),
                    waited_ms = millis(waited), error = error.as_str();
                    "{name}: not ready after {} ({}): {error}", seconds(waited), waiter.readiness()
                );
            }
            match step {
                Step::Ready => self.ready(id, now),
                Step::RunCheck(argv) => self.run_check(id, &argv, now),
                Step::ProbeFile(path) => self.probe_file(id, &path, now),
                Step::NotYet(_) | Step::Idle => {}
            }
        }
        self.clean_on_time(id, now);
    }

    /// Runs a readiness check command for `id`, with the service's environment, in its own process group.
    fn run_check(&mut self, id: ServiceId, argv: &[OsString], now: Instant) {
        let Some(service) = self.services.get(id) else {
            return;
        };
        let mut environment: Vec<(OsString, OsString)> =
            vec![(OsString::from(MARKER), OsString::from(&service.name))];
        environment.extend(service.env.iter().cloned());
        let setup = ChildSetup {
            take_terminal: false,
            ..self.setup
        };
        let launch = Launch {
            environment: &environment,
            null_stdin: true,
            ..Launch::default()
        };
        let spawned = child::spawn_with(argv, setup, launch);
        self.signals.after_fork();
        let Some(waiter) = self.runs.get_mut(id).and_then(|run| run.waiter.as_mut()) else {
            return;
        };
        match spawned {
            Ok(check) => waiter.check_started(check.pid, now),
            Err(err) => {
                waiter.check_failed(format!("the check could not be started: {err}"));
            }
        }
    }

    /// Forks a `file:` probe for `id` (see [`sys::probe_exists`]).
    fn probe_file(&mut self, id: ServiceId, path: &std::path::Path, now: Instant) {
        use std::os::unix::ffi::OsStrExt;
        let probe = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(std::io::Error::other)
            .and_then(|path| sys::probe_exists(&path));
        let Some(waiter) = self.runs.get_mut(id).and_then(|run| run.waiter.as_mut()) else {
            return;
        };
        match probe {
            Ok(pid) => waiter.check_started(pid, now),
            Err(err) => {
                waiter.check_failed(format!("the probe could not be started: {err}"));
            }
        }
    }

    /// A service being cleaned up before a restart: SIGTERM, SIGKILL, and the restart once nothing is left.
    fn clean_on_time(&mut self, id: ServiceId, now: Instant) {
        let Some(State::Cleaning {
            restart_at,
            term_at,
            kill_at,
            mut termed,
            mut killed,
            empty,
        }) = self.runs.get(id).map(|run| run.state)
        else {
            return;
        };
        // Once nothing is left, nothing of the last run can come back: no more listing.
        let leftovers = if empty {
            Vec::new()
        } else {
            self.processes_of(id)
        };
        if leftovers.is_empty() {
            if now >= restart_at {
                self.restart(id, now);
            } else if let Some(run) = self.runs.get_mut(id) {
                run.state = State::Cleaning {
                    restart_at,
                    term_at,
                    kill_at,
                    termed,
                    killed,
                    empty: true,
                };
            }
            return;
        }
        let name = self.name(id);
        if killed && now >= kill_at + UNKILLABLE_WAIT {
            error!(
                event = "restart_refused", service = name.as_str(), count = leftovers.len(),
                pids:% = pid_list(&leftovers), names:% = name_list(&leftovers);
                "{name}: not restarting: {} of its last run survived SIGKILL: {}",
                processes(leftovers.len()), tree::describe(&leftovers)
            );
            let status = self.runs.get(id).and_then(|run| run.status).unwrap_or(1);
            self.end(id);
            if self.stop.is_none() {
                self.ended_for_good(id, status, "could not be restarted".to_string(), now);
            }
            return;
        }
        if !termed && now >= term_at {
            termed = true;
            let signalled = self
                .remains
                .signal_processes(&leftovers, Signal::TERM, true);
            if !signalled.sent.is_empty() {
                info!(
                    event = "terminating", service = name.as_str(), count = signalled.sent.len(),
                    pids:% = pid_list(&signalled.sent), names:% = name_list(&signalled.sent);
                    "{name}: before its restart, SIGTERM to what is left of its last run: {}; SIGKILL in {}",
                    tree::describe(&signalled.sent), seconds(kill_at.saturating_duration_since(now))
                );
            }
        }
        if !killed && now >= kill_at {
            killed = true;
            let signalled = self.remains.kill_processes(&leftovers);
            if !signalled.sent.is_empty() {
                warn!(
                    event = "escalated", service = name.as_str(), count = signalled.sent.len(),
                    pids:% = pid_list(&signalled.sent), names:% = name_list(&signalled.sent);
                    "{name}: cleanup timeout of {} expired: SIGKILL to {}: {}",
                    configured(self.config.cleanup_timeout), processes(signalled.sent.len()),
                    tree::describe(&signalled.sent)
                );
            }
        }
        if let Some(run) = self.runs.get_mut(id) {
            run.state = State::Cleaning {
                restart_at,
                term_at,
                kill_at,
                termed,
                killed,
                empty: false,
            };
        }
    }

    /// `id` will not run again: its readiness wait ends too (its check killed, its notify socket closed).
    fn end(&mut self, id: ServiceId) {
        if let Some(run) = self.runs.get_mut(id) {
            run.state = State::Ended;
            run.task = None;
            if let Some(pid) = run.waiter.take().and_then(|waiter| waiter.check_pid()) {
                let _ = sys::send_signal(-pid, Signal::KILL.number());
            }
        }
    }

    /// Starts `id` again; a command that can no longer be started is a failed run.
    fn restart(&mut self, id: ServiceId, now: Instant) {
        // Once a stop began, nothing new starts but a helper waiting for its turn (so that it is there for the
        // drain of what depends on it); never the main service.
        let allowed = match self.stop.as_ref() {
            None => true,
            Some(_) if id == self.main => false,
            Some(stop) => stop.plan.as_ref().map_or(true, |plan| plan.may_restart(id)),
        };
        if !allowed {
            self.end(id);
            return;
        }
        if let Some(run) = self.runs.get_mut(id) {
            run.state = State::NotStarted; // for start(): it sets Starting or Running
        }
        match self.start(id, now) {
            Ok(()) => {
                // Readiness gates the first start-up only; a later run that has been ready once just runs.
                if let Some(run) = self.runs.get_mut(id) {
                    if run.waiter.is_none() && !self.services.get(id).is_some_and(|s| s.once) {
                        run.state = State::Running;
                    }
                }
                self.refresh(now);
            }
            Err(err) => self.could_not_start(id, err, now),
        }
    }

    // ---- signals ----

    fn on_signal(&mut self, received: Received) {
        let signal = received.signal;
        if self.own_signals.raised_by_grace(received) {
            return;
        }
        let now = Instant::now();
        if self.config.is_stop_signal(signal) {
            if self.stop.is_some() {
                let action = self.clock.on_stop_signal(now);
                self.perform_clock(action, Some(received), now);
            } else {
                self.begin_stop(Cause::Signal(received), true, now);
            }
            return;
        }
        if Some(signal) == self.config.restart_signal {
            self.restart_main(received, now);
            return;
        }
        let Some(forwarded) = self.config.rewrites.apply(signal) else {
            debug!(event = "dropped", signal:% = signal; "dropping {signal} from {}", sender(received.sender_pid));
            return;
        };
        let Some(pid) = self.runs.get(self.main).and_then(|run| run.pid) else {
            debug!(
                "{signal} from {} not forwarded: the main service is not running",
                sender(received.sender_pid)
            );
            return;
        };
        let target = if self.config.process_group { -pid } else { pid };
        match sys::send_signal(target, forwarded.number()) {
            Ok(()) => debug!(
                event = "forwarded", signal:% = forwarded, received:% = signal, pid = pid;
                "forwarded {signal} from {} as {forwarded} to {} (pid {pid})",
                sender(received.sender_pid), self.name(self.main)
            ),
            Err(err) => warn!(
                event = "error"; "could not forward {forwarded} to {} (pid {pid}): {err}", self.name(self.main)
            ),
        }
    }

    /// The restart signal restarts the main service only; the helpers stay up.
    fn restart_main(&mut self, received: Received, now: Instant) {
        let main = self.main;
        let name = self.name(main);
        let signal = self.main_stop_signal(None);
        let grace_period = self.config.grace_period;
        let stopping = self.stop.is_some();
        let Some(run) = self.runs.get_mut(main) else {
            return;
        };
        let Some(pid) = run
            .pid
            .filter(|_| !stopping && run.restart_requested.is_none())
        else {
            info!(
                event = "restart_signal", signal:% = received.signal, sender_pid = received.sender_pid;
                "received {} from {}: nothing to restart now", received.signal, sender(received.sender_pid)
            );
            return;
        };
        run.restart_requested = Some(now + grace_period);
        if let Some(signal) = signal {
            let _ = sys::send_signal(pid, signal.number());
        }
        let _ = sys::send_signal(pid, Signal::CONT.number());
        info!(
            event = "restart_signal", signal:% = received.signal, sender_pid = received.sender_pid, service = name.as_str();
            "received {} (the restart signal) from {}: {} to {name} (pid {pid}); it starts again once its tree \
             is gone, the other services stay up; SIGKILL in {} at most",
            received.signal, sender(received.sender_pid),
            signal.map_or_else(|| "nothing (dropped by --rewrite)".to_string(), |s| s.to_string()),
            configured(grace_period)
        );
    }

    // ---- the stop ----

    /// Begins the stop (nothing more starts), unless one is under way: the first cause stands.
    fn begin_stop(&mut self, cause: Cause, with_delay: bool, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        self.next_to_start = None;
        for run in &mut self.runs {
            let check = run.waiter.as_ref().and_then(Waiter::check_pid);
            for pid in check.into_iter().chain(run.removing.map(|(pid, _)| pid)) {
                let _ = sys::send_signal(-pid, Signal::KILL.number());
            }
        }
        let (what, signal) = match &cause {
            Cause::Signal(received) => (
                format!(
                    "received {} from {}",
                    received.signal,
                    sender(received.sender_pid)
                ),
                Some(*received),
            ),
            Cause::MainExited => (
                format!("the main service {} exited", self.name(self.main)),
                None,
            ),
            Cause::Ended { service, why, .. } => (format!("{} {why}", self.name(*service)), None),
        };
        let signal_name = signal.map_or_else(
            || "none".to_string(),
            |received| received.signal.to_string(),
        );
        let cause_name = match cause {
            Cause::Signal(_) => "signal",
            Cause::MainExited => "main_exited",
            Cause::Ended { .. } => "service_ended",
        };
        self.stop = Some(Stop { cause, plan: None });
        let action = if with_delay {
            self.clock.on_stop_signal(now)
        } else {
            self.clock.on_stop_without_delay(now)
        };
        let delay = if action == Action::DelayStop {
            format!(
                ", after the pre-stop delay of {}",
                configured(self.config.pre_stop_delay)
            )
        } else {
            String::new()
        };
        info!(
            event = "stopping", cause = cause_name, signal = signal_name.as_str();
            "{what}: stopping the services in reverse order{delay}; grace period {}, SIGKILL of what remains in {}",
            configured(self.config.grace_period), seconds(self.until_deadline(now)),
        );
        self.perform_clock(action, signal, now);
    }

    /// Carries out what the container's clock decided.
    fn perform_clock(&mut self, action: Action, stop_signal: Option<Received>, now: Instant) {
        if action != Action::Nothing {
            self.raise_priority();
        }
        match action {
            Action::Nothing | Action::DelayStop | Action::StopAfterMainExit => {}
            Action::RepeatDuringDelay { repeat } => {
                if let Some(received) = stop_signal {
                    info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = repeat;
                        "received {} from {} (stop signal #{repeat}) during the pre-stop delay", received.signal,
                        sender(received.sender_pid)
                    );
                }
            }
            Action::ForwardStop { repeat: 1 } => self.begin_plan(now),
            Action::ForwardStop { repeat } => {
                let actions = self
                    .stop
                    .as_ref()
                    .and_then(|stop| stop.plan.as_ref())
                    .map(StopPlan::repeat)
                    .unwrap_or_default();
                if let Some(received) = stop_signal {
                    info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = repeat;
                        "received {} from {} (stop signal #{repeat}): sent again to the services stopping; deadline \
                         unchanged, SIGKILL in {}",
                        received.signal, sender(received.sender_pid), seconds(self.until_deadline(now))
                    );
                }
                self.perform_plan(actions);
            }
            Action::TerminateRest => {
                info!(
                    event = "terminating";
                    "{} of the grace period left: every process not yet signalled gets its service's stop signal",
                    seconds(self.until_deadline(now))
                );
                self.refresh(now);
                let actions = self
                    .stop
                    .as_mut()
                    .and_then(|stop| stop.plan.as_mut())
                    .map(|plan| plan.on_rest_time(now))
                    .unwrap_or_default();
                self.perform_plan(actions);
            }
            Action::SendFinal => self.send_final(),
            Action::Survey => {
                let budget_end = self
                    .clock
                    .kill_time()
                    .and_then(|kill_at| kill_at.checked_sub(SURVEY_MARGIN))
                    .unwrap_or(now);
                let sent = self.sent_signals();
                self.remains.survey(self.main_ref(), sent, budget_end);
            }
            Action::KillAll(reason) => self.kill_all(reason),
            Action::Sweep => self.sweep(),
            Action::GiveUp => self.give_up(),
        }
    }

    /// The pre-stop delay is over (or there was none): the ordered stop begins.
    fn begin_plan(&mut self, now: Instant) {
        let facts = self.facts();
        // The survey before the SIGKILL begins early enough for a tree of this size.
        self.clock
            .on_rest_listed(self.remains.tree().members().len());
        let mut members: Vec<Member> = vec![Member {
            service: self.unattributed(),
            stop_timeout: None,
            facts: facts.last().copied().unwrap_or_default(),
        }];
        members.extend(
            self.runs
                .iter()
                .enumerate()
                .filter(|(_, run)| run.starts > 0)
                .map(|(id, _)| Member {
                    service: id,
                    stop_timeout: self
                        .services
                        .get(id)
                        .and_then(|service| service.stop_timeout),
                    facts: facts.get(id).copied().unwrap_or_default(),
                }),
        );
        // A `once` task that completed has nothing to stop (unless it left daemons, which its turn handles).
        let order: Vec<String> = members
            .iter()
            .rev()
            .filter(|member| member.service < self.services.len())
            .filter(|member| {
                !member.facts.empty()
                    || self
                        .runs
                        .get(member.service)
                        .is_some_and(|run| run.state != State::Completed)
            })
            .map(|member| self.name(member.service))
            .collect();
        info!(
            event = "stop_order", order = order.join(",").as_str();
            "stop order: {}", if order.is_empty() { "nothing was started".to_string() } else { order.join(", ") }
        );
        let mut plan = StopPlan::new(&members);
        let actions = plan.begin(now);
        if let Some(stop) = self.stop.as_mut() {
            stop.plan = Some(plan);
        }
        self.perform_plan(actions);
    }

    /// A stop has begun: grace takes the highest scheduling priority it may, as for one command (see
    /// `Supervisor::raise_priority`), so that services that keep the CPUs busy cannot make its deadlines late.
    fn raise_priority(&mut self) {
        if self.normal_nice.is_some() {
            return;
        }
        if let Ok(nice) = sys::own_nice() {
            if sys::set_own_nice(crate::supervisor::HIGHEST_PRIORITY).is_ok() {
                self.normal_nice = Some(nice);
            }
        }
    }

    /// Runs `spawn` at the priority grace had before the stop: a helper restarted during the drain must not
    /// inherit the stop's.
    fn at_normal_priority<T>(&self, spawn: impl FnOnce() -> T) -> T {
        let Some(nice) = self.normal_nice else {
            return spawn();
        };
        let _ = sys::set_own_nice(nice);
        let spawned = spawn();
        let _ = sys::set_own_nice(crate::supervisor::HIGHEST_PRIORITY);
        spawned
    }

    /// Carries out what the stop plan decided.
    fn perform_plan(&mut self, actions: Vec<plan::Action>) {
        for action in actions {
            match action {
                plan::Action::SignalOwn(id) => self.signal_own(id, "its turn to stop"),
                plan::Action::TerminateRest(id) => {
                    let rest = self.rest_of(id);
                    let signalled = self.remains.signal_processes(&rest, Signal::TERM, true);
                    if !signalled.sent.is_empty() {
                        let sent = &signalled.sent;
                        info!(
                            event = "service_terminating", service = self.name(id).as_str(), count = sent.len(),
                            pids:% = pid_list(sent), names:% = name_list(sent);
                            "{}: SIGTERM to {}: {}", self.name(id),
                            if id == self.unattributed() {
                                "the processes of no service, after every service"
                            } else {
                                "what remains of its tree, its process having exited"
                            },
                            tree::describe(sent)
                        );
                    }
                }
                plan::Action::KillTree(id) => {
                    let all = self.processes_of(id);
                    let signalled = self.remains.kill_processes(&all);
                    let timeout = self
                        .services
                        .get(id)
                        .and_then(|service| service.stop_timeout)
                        .unwrap_or_default();
                    warn!(
                        event = "service_killed", service = self.name(id).as_str(), count = signalled.sent.len(),
                        pids:% = pid_list(&signalled.sent), names:% = name_list(&signalled.sent);
                        "{}: stop-timeout of {} expired: SIGKILL to {}: {}",
                        self.name(id), configured(timeout), processes(signalled.sent.len()),
                        tree::describe(&signalled.sent)
                    );
                }
                plan::Action::SignalUnsignalled { service, own, rest } => {
                    if own {
                        self.signal_own(service, "grace period − cleanup timeout");
                    }
                    if rest {
                        let signal = self.stop_signal_of(service).unwrap_or(Signal::TERM);
                        let processes_left = self.rest_of(service);
                        let signalled =
                            self.remains.signal_processes(&processes_left, signal, true);
                        if !signalled.sent.is_empty() {
                            let sent = &signalled.sent;
                            info!(
                                event = "terminating", service = self.name(service).as_str(), count = sent.len(),
                                pids:% = pid_list(sent), names:% = name_list(sent);
                                "{}: {signal} to {}: {}", self.name(service), processes(sent.len()),
                                tree::describe(sent)
                            );
                        }
                    }
                }
            }
        }
    }

    /// The service's stop signal, then SIGCONT, to its own process; `why` says why now.
    fn signal_own(&mut self, id: ServiceId, why: &str) {
        let Some(pid) = self.runs.get(id).and_then(|run| run.pid) else {
            return;
        };
        let signal = self.stop_signal_of(id);
        let target = if id == self.main && self.config.process_group {
            -pid
        } else {
            pid
        };
        let outcome = match signal {
            Some(signal) => match sys::send_signal(target, signal.number()) {
                Ok(()) => format!("{signal} to pid {pid}"),
                Err(err) => format!("could not send {signal} to pid {pid}: {err}"),
            },
            None => "nothing (its stop signal is dropped by --rewrite)".to_string(),
        };
        let _ = sys::send_signal(target, Signal::CONT.number());
        std::thread::yield_now(); // let it run its handler before grace writes the log line
        let name = self.name(id);
        // Its SIGKILL comes at the deadline, or sooner by its stop-timeout if its turn has one.
        let now = Instant::now();
        let mut left = self.until_deadline(now);
        if let Some(kill_at) = self
            .stop
            .as_ref()
            .and_then(|stop| stop.plan.as_ref())
            .and_then(StopPlan::next_deadline)
            .filter(|_| why == "its turn to stop")
        {
            left = left.min(kill_at.saturating_duration_since(now));
        }
        info!(
            event = "service_stopping", service = name.as_str(), pid = pid,
            signal:% = signal.map_or_else(|| "none".to_string(), |signal| signal.to_string());
            "{name}: {why}: {outcome}; SIGKILL in {} at most", seconds(left)
        );
    }

    /// What `id`'s own process gets when it stops: the main service the received stop signal after
    /// `--rewrite` (the first stop signal when no signal began the stop), a helper its `stop-signal`
    /// (SIGTERM by default). `None`: dropped by `--rewrite`.
    fn stop_signal_of(&self, id: ServiceId) -> Option<Signal> {
        if id == self.main {
            let received = self.stop.as_ref().and_then(|stop| match &stop.cause {
                Cause::Signal(received) => Some(*received),
                _ => None,
            });
            return self.main_stop_signal(received);
        }
        Some(
            self.services
                .get(id)
                .and_then(|service| service.stop_signal)
                .unwrap_or(Signal::TERM),
        )
    }

    fn main_stop_signal(&self, received: Option<Received>) -> Option<Signal> {
        let signal = received.map_or_else(
            || {
                self.config
                    .stop_signals
                    .first()
                    .copied()
                    .unwrap_or(Signal::TERM)
            },
            |received| received.signal,
        );
        self.config.rewrites.apply(signal)
    }

    fn send_final(&mut self) {
        let signal = self.config.final_signal;
        let main = self.main_ref();
        if main.alive {
            let _ = sys::send_signal(main.pid, signal.number());
        }
        let signalled = self.remains.signal_rest(signal, false, main, true);
        warn!(
            event = "final_signal", signal:% = signal, count = signalled.sent.len() + usize::from(main.alive);
            "final signal {signal} to every process that remains; SIGKILL in {}",
            seconds(self.clock.kill_time().map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now())))
        );
    }

    fn kill_all(&mut self, reason: KillReason) {
        let main = self.main_ref();
        let killed = self.remains.kill_all(main, self.sent_signals());
        let delay = killed
            .sent_at
            .saturating_duration_since(self.clock.kill_due().unwrap_or(killed.sent_at));
        self.clock
            .on_swept(Instant::now(), !killed.survivors.is_empty() || main.alive);
        let why = match reason {
            KillReason::NoGracePeriod => "grace period is 0".to_string(),
            _ => format!(
                "grace period of {} expired",
                configured(self.config.grace_period)
            ),
        };
        let survivors = &killed.survivors;
        if survivors.is_empty() {
            return;
        }
        warn!(
            event = "deadline", count = survivors.len();
            "{why}: {} still alive", processes(survivors.len())
        );
        self.log_survivors(survivors);
        let listed: Vec<Process> = survivors
            .iter()
            .map(|entry| entry.process.clone())
            .collect();
        let since = self
            .clock
            .stopped_at()
            .map(|at| at.elapsed())
            .unwrap_or_default();
        warn!(
            event = "escalated", count = listed.len(), pids:% = pid_list(&listed), names:% = name_list(&listed),
            delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), elapsed_ms = millis(since);
            "{why}: SIGKILL to {}: {}; the last sent {} after it was due",
            processes(listed.len()), tree::describe(&listed), crate::wording::micros(delay)
        );
    }

    /// The survivors' report, grouped by service in stop order (the processes of no service last): full
    /// lines for the first, then a summary that names each process's service.
    fn log_survivors(&mut self, survivors: &[Surveyed]) {
        let members: Vec<Process> = survivors
            .iter()
            .map(|entry| entry.process.clone())
            .collect();
        let attributed = self.attribute(&members);
        let unattributed = self.unattributed();
        let mut grouped: Vec<(&Surveyed, Option<ServiceId>)> =
            survivors.iter().zip(attributed).collect();
        // Stop order: the last started first, no service last; a stable sort keeps the survey's order (the
        // main service's process first) within a service.
        crate::sort::by_key(&mut grouped, |(_, service)| {
            let position = match service {
                Some(id) if *id < unattributed => unattributed - 1 - id,
                _ => unattributed,
            };
            u64::try_from(position).unwrap_or(u64::MAX)
        });
        let detailed = grouped.len().min(survey::DETAILED);
        for (entry, service) in grouped.iter().take(detailed) {
            let process = &entry.process;
            let service_name = self.service_label(*service);
            let what = match &entry.detail {
                Detail::Full(diagnosis) => format!(
                    "{} {}: {} — `{}`",
                    diagnosis.disposition.as_str(),
                    entry.sent,
                    diagnosis.hint,
                    diagnosis.command_line
                ),
                Detail::Disposition(disposition) => {
                    format!("{} {}", disposition.as_str(), entry.sent)
                }
                Detail::NotExamined => {
                    "not examined (it appeared after the survey, or time ran out)".to_string()
                }
            };
            warn!(
                event = "survivor", service = service_name.as_str(), pid = process.pid, name = process.name.as_str(),
                parent_pid = process.parent_pid, state:% = process.state, signal:% = entry.sent;
                "  {service_name}: pid {} ({}), parent {}, state {}, {what}",
                process.pid, process.name, process.parent_pid, process.state
            );
        }
        let rest = grouped.get(detailed..).unwrap_or_default();
        if !rest.is_empty() {
            let kinds = rest.iter().map(|(entry, service)| {
                let disposition = match &entry.detail {
                    Detail::Full(diagnosis) => diagnosis.disposition,
                    Detail::Disposition(disposition) => *disposition,
                    Detail::NotExamined => crate::diagnosis::Disposition::Unknown,
                };
                let (service, name) = (self.service_label(*service), &entry.process.name);
                let participle = disposition.participle();
                // Grouped by service, then name, then disposition, then signal.
                let order = crate::wording::order_of(&[
                    &service,
                    name,
                    participle,
                    &format!("{:02}", entry.sent.number()),
                ]);
                let label = format!("{name} of {service} {participle} {}", entry.sent);
                (order, label)
            });
            let groups = crate::wording::counted_kinds(kinds, 6);
            let summary = format!("and {} more: {groups}", rest.len());
            warn!(
                event = "survivors_summary", count = rest.len(), summary = summary.as_str();
                "  {summary}"
            );
        }
    }

    fn sweep(&mut self) {
        let new = self.remains.sweep(self.main_ref());
        self.clock.on_swept(Instant::now(), !new.is_empty());
        if !new.is_empty() {
            warn!(
                event = "swept", count = new.len(), pids:% = pid_list(&new), names:% = name_list(&new);
                "SIGKILL to {} that appeared since the last SIGKILL: {}",
                processes(new.len()), tree::describe(&new)
            );
        }
    }

    fn give_up(&mut self) {
        self.sweep();
        let remaining = self.remains.remaining();
        let left: Vec<Process> = remaining
            .survived_kill
            .iter()
            .chain(&remaining.other)
            .cloned()
            .collect();
        if !left.is_empty() {
            error!(
                event = "gave_up", count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
                "giving up on {} that did not exit {} after SIGKILL: {}",
                processes(left.len()), configured(UNKILLABLE_WAIT), tree::describe(&left)
            );
        }
        self.gave_up = true;
    }

    /// Processes remain, and grace may signal none of them (another user's): nothing to wait for.
    fn only_unsignallable_remain(&self) -> bool {
        self.stop.is_some()
            && self.clock.kill_due().is_some()
            && self.remains.only_unsignallable_remain()
    }

    /// What each process was sent before the SIGKILL, for the report: a service's own process its stop
    /// signal, the rest SIGTERM.
    fn sent_signals(&self) -> impl Fn(&Process) -> Signal {
        let own: HashMap<i32, Signal> = self
            .runs
            .iter()
            .enumerate()
            .filter_map(|(id, run)| {
                Some((run.pid?, self.stop_signal_of(id).unwrap_or(Signal::TERM)))
            })
            .collect();
        move |process: &Process| own.get(&process.pid).copied().unwrap_or(Signal::TERM)
    }

    fn main_ref(&self) -> remains::MainChild {
        let pid = self.runs.get(self.main).and_then(|run| run.pid);
        remains::MainChild {
            pid: pid.unwrap_or(0),
            alive: pid.is_some(),
        }
    }

    // ---- what belongs to whom ----

    /// The pseudo-service of processes that belong to no service (it comes after every real one).
    fn unattributed(&self) -> ServiceId {
        self.services.len()
    }

    /// The service of each of `members`.
    fn attribute(&mut self, members: &[Process]) -> Vec<Option<ServiceId>> {
        let own: HashMap<i32, ServiceId> = self
            .runs
            .iter()
            .enumerate()
            .filter_map(|(id, run)| Some((run.pid?, id)))
            .collect();
        let services = &self.services;
        self.membership.attribute(members, &own, |name| {
            services
                .iter()
                .position(|service| service.name.as_bytes() == name)
        })
    }

    /// Every live process of `id`'s tree (its own process included); of the unattributed pseudo-service,
    /// every process no service owns.
    fn processes_of(&mut self, id: ServiceId) -> Vec<Process> {
        let members = self.remains.tree().members();
        let attributed = self.attribute(&members);
        let unattributed = self.unattributed();
        members
            .into_iter()
            .zip(attributed)
            .filter(|(_, service)| service.unwrap_or(unattributed) == id)
            .map(|(process, _)| process)
            .collect()
    }

    /// `id`'s tree but its own process.
    fn rest_of(&mut self, id: ServiceId) -> Vec<Process> {
        let own = self.runs.get(id).and_then(|run| run.pid);
        let mut processes = self.processes_of(id);
        processes.retain(|process| Some(process.pid) != own);
        processes
    }

    /// What is known of each service's processes (index: service; the last entry: the unattributed).
    fn facts(&mut self) -> Vec<Facts> {
        let members = self.remains.tree().members();
        let attributed = self.attribute(&members);
        self.membership.retain(&members);
        let mut facts: Vec<Facts> = self
            .runs
            .iter()
            .map(|run| Facts {
                own_alive: run.pid.is_some(),
                rest_alive: false,
            })
            .collect();
        facts.push(Facts::default());
        let unattributed = self.unattributed();
        for (process, service) in members.iter().zip(attributed) {
            let id = service.unwrap_or(unattributed);
            let own = self.runs.get(id).and_then(|run| run.pid) == Some(process.pid);
            if let Some(entry) = facts.get_mut(id) {
                if !own {
                    entry.rest_alive = true;
                }
            }
        }
        facts
    }

    /// After exits: the stop plan learns what is left of each service, and cleanups may be over.
    fn refresh(&mut self, now: Instant) {
        let cleaning = self
            .runs
            .iter()
            .any(|run| matches!(run.state, State::Cleaning { .. }));
        let planning = self.stop.as_ref().is_some_and(|stop| stop.plan.is_some());
        if !cleaning && !planning {
            return;
        }
        if planning {
            let facts = self.facts();
            let mut actions = Vec::new();
            if let Some(plan) = self.stop.as_mut().and_then(|stop| stop.plan.as_mut()) {
                for (id, facts) in facts.iter().enumerate() {
                    actions.extend(plan.on_facts(id, *facts, now));
                }
            }
            self.perform_plan(actions);
        }
        if cleaning {
            for id in 0..self.runs.len() {
                self.clean_on_time(id, now);
            }
        }
    }

    // ---- the end ----

    /// Logs the exit and returns the status: the first cause's. What the services wrote goes out first.
    fn exit(&mut self) -> u8 {
        self.output.drain_all(Instant::now());
        let main_run = self.runs.get(self.main);
        let main_status = || match main_run.and_then(|run| run.pid.is_none().then_some(run.status))
        {
            Some(Some(status)) => status,
            _ if main_run.is_some_and(|run| run.pid.is_some()) => 128 + Signal::KILL.number() as u8,
            _ => 0,
        };
        let (status, cause) = match self.stop.as_ref().map(|stop| &stop.cause) {
            Some(Cause::Signal(received)) => {
                if main_run.is_some_and(|run| run.starts > 0) {
                    (
                        exit_status::remap_success(main_status(), &self.config.success_exits),
                        format!("the main service's status, after {}", received.signal),
                    )
                } else {
                    (
                        (128 + received.signal.number()).min(255) as u8,
                        format!("{} before the main service started", received.signal),
                    )
                }
            }
            Some(Cause::MainExited) | None => (
                exit_status::remap_success(main_status(), &self.config.success_exits),
                "the main service's status".to_string(),
            ),
            Some(Cause::Ended {
                service, status, ..
            }) => (
                *status,
                format!("{} ended the container", self.name(*service)),
            ),
        };
        let since = self.clock.stopped_at().map(|at| at.elapsed());
        match since {
            Some(since) => info!(
                event = "exiting", status = status, elapsed_ms = millis(since);
                "exiting with status {status} ({cause}), {} after the stop began", seconds(since)
            ),
            None => {
                info!(event = "exiting", status = status; "exiting with status {status} ({cause})")
            }
        }
        self.output.write_out();
        status
    }

    // ---- wording ----

    fn name(&self, id: ServiceId) -> String {
        self.services.get(id).map_or_else(
            || "(no service)".to_string(),
            |service| service.name.clone(),
        )
    }

    fn service_label(&self, service: Option<ServiceId>) -> String {
        match service {
            Some(id) => self.name(id),
            None => "(no service)".to_string(),
        }
    }

    fn until_deadline(&self, now: Instant) -> Duration {
        self.clock
            .deadline()
            .map(|deadline| deadline.saturating_duration_since(now))
            .unwrap_or(self.config.grace_period)
    }
}

/// Whether `pid` is `own` (a service's process), descends from it, or carries the service's `name` in its
/// environment: who may tell grace that the service is ready.
fn is_of_service(pid: i32, own: Option<i32>, name: &str) -> bool {
    let mut current = pid;
    // The chain is short (a service's process and its children); a bound keeps a pid-reuse loop finite.
    for _ in 0..64 {
        if Some(current) == own {
            return true;
        }
        match tree::read_process(current) {
            Some(process) if process.parent_pid > 1 => current = process.parent_pid,
            _ => break,
        }
    }
    super::membership::marker_of(pid).is_some_and(|marker| marker == name.as_bytes())
}

/// The state of a service whose own process exited at `now` and that starts again at `restart_at`: its
/// leftovers get SIGTERM after the settle, SIGKILL after the cleanup timeout (never past `latest_kill`).
fn cleaning(
    now: Instant,
    restart_at: Instant,
    latest_kill: Instant,
    cleanup_timeout: Duration,
) -> State {
    State::Cleaning {
        restart_at,
        term_at: now + SETTLE,
        kill_at: (now + SETTLE + cleanup_timeout).min(latest_kill.max(now + SETTLE)),
        termed: false,
        killed: false,
        empty: false,
    }
}
