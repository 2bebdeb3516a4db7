//! The loop: wait for a signal or the next deadline → reap → translate and forward → advance the shutdown →
//! act. Once the child runs, nothing here returns an error: failures are logged and the loop goes on,
//! because a PID 1 that gives up takes the container with it.
//!
//! Each lifecycle line carries an `event` name and fields (see docs/operating.md), which the
//! JSON log format shows; the names are a stable interface for log pipelines.

use std::io;
use std::time::{Duration, Instant};

use crate::child::{self, MainChild};
use crate::config::Config;
use crate::diagnosis;
use crate::exit_status;
use crate::generation::{Ending, Generation};
use crate::log_sink;
use crate::reaper;
use crate::remains::{self, Reach, Remains};
use crate::restart::{Decision, Restarts};
use crate::shutdown::{Action, Phase};
use crate::signals::{OwnSignals, Received, Signal, SignalSource};
use crate::sys;
use crate::sys::ChildSetup;
use crate::tree::{self, Scope, Tree};
use crate::wording::{
    configured, millis, name_list, pid_list, processes, seconds, sender, wait_status,
};

mod ending;
mod job_control;

use job_control::has_controlling_terminal;
pub use job_control::owns_terminal_foreground;

/// Runs the command's generations and the shutdown of each one's tree; returns grace's exit status.
pub struct Supervisor {
    config: Config,
    signals: SignalSource,
    remains: Remains,
    /// The current generation, or, while grace waits to restart, the last one.
    run: Generation,
    restarts: Restarts,
    /// How each generation's main child is started (kept for restarts; whether it takes the terminal is
    /// decided again at each start).
    setup: ChildSetup,
    own_pid: i32,
    /// Tells signals grace raised itself from those pending when it started.
    own_signals: OwnSignals,
    /// Job control applies: grace, not PID 1, has a controlling terminal on stdin, so it may be a job of a
    /// shell (in the foreground or, started with `&`, in the background), and stops and continues with its
    /// child.
    job_control: bool,
    /// As PID 1, grace's own children are all gone but processes that entered the namespace from outside
    /// (`kubectl exec`, `nsenter`) remain: they are not grace's children, so no SIGCHLD reports their exit.
    outsiders: bool,
    /// A process refused a signal with EPERM: from then on, each reap looks whether only such processes
    /// remain, which grace never waits for.
    unsignallable_seen: bool,
    /// The shell continued grace (job control), which then continued its child: the SIGCONT that woke it
    /// is still queued, and forwarding it late could continue a child stopped again meanwhile (Ctrl-Z typed
    /// at once), whose stop grace would then miss.
    swallow_continue: bool,
    /// grace's own nice value before a shutdown raised its priority, while raised.
    normal_nice: Option<i32>,
}

/// How a generation ended.
#[derive(Clone, Copy, Debug)]
struct Ended {
    /// The main child's status (see [`Supervisor::generation_status`]).
    status: u8,
    /// Every process of the generation is gone: a new one may start without meeting the old.
    clean: bool,
}

/// What follows the end of a generation.
enum Next {
    Exit(u8),
    Start,
}

/// How often grace looks whether the processes it did not start are gone, once only they remain.
const OUTSIDER_RECHECK: Duration = Duration::from_millis(50);

/// The survey before a SIGKILL stops reading /proc this long before it, so that the kill is on time.
const SURVEY_MARGIN: Duration = Duration::from_millis(5);

/// The nice value grace takes for a shutdown: the highest priority.
pub const HIGHEST_PRIORITY: i32 = -20;

/// The longest command the `started` line shows, in characters.
const MAX_COMMAND_SHOWN: usize = 512;

impl Supervisor {
    pub fn new(
        config: Config,
        signals: SignalSource,
        tree: Tree,
        main: MainChild,
        setup: ChildSetup,
    ) -> Supervisor {
        let run = Generation::new(1, main, config.timings());
        let restarts = Restarts::new(config.restart, config.restart_delay, config.max_restarts);
        let job_control = has_controlling_terminal() && tree.scope() != Scope::Namespace;
        Supervisor {
            config,
            signals,
            remains: Remains::new(tree),
            run,
            restarts,
            setup,
            own_pid: std::process::id() as i32,
            own_signals: OwnSignals::new(),
            job_control,
            outsiders: false,
            unsignallable_seen: false,
            swallow_continue: false,
            normal_nice: None,
        }
    }

    /// Runs generation after generation until one ends with nothing to follow it, and returns the exit
    /// status: the last run's.
    pub fn run(mut self) -> u8 {
        let mut received = Vec::with_capacity(64);
        loop {
            let ended = self.run_generation(&mut received);
            let mut next = self.next_after(ended, &mut received);
            // A start that fails is a failed run: the policy decides what follows it, as after an exit.
            while let Next::Start = next {
                match self.start_next() {
                    Ok(()) => break,
                    Err(status) => next = self.after_failed_start(status, &mut received),
                }
            }
            if let Next::Exit(status) = next {
                return self.exit(status);
            }
        }
    }

    /// Runs the current generation until its tree is empty (or its last processes cannot be killed, or may
    /// not be signalled).
    fn run_generation(&mut self, received: &mut Vec<Received>) -> Ended {
        // Reaping needs a SIGCHLD (one stands for any number of exits); a child may have exited before the
        // loop started, so the first round reaps regardless.
        let mut child_exited = true;
        loop {
            if child_exited {
                let reaped = reaper::reap_exited(self.run.main.pid, self.config.warn_on_reap);
                let main_exited = reaped.main_status.is_some();
                if let Some(raw_status) = reaped.main_status {
                    self.on_main_exit(raw_status, Instant::now());
                }
                if let Some(signal) = reaped.main_stopped.filter(|_| !main_exited) {
                    self.on_main_stopped(signal);
                }
                if reaped.tree_empty {
                    // No child of grace is left, so no process of the run is (each descends from grace, or
                    // was reparented to it); a restart leaves the processes that entered from outside alone.
                    if self.remains.reach() == Reach::Run || !self.remains.others_remain() {
                        self.log_emptied();
                        return self.ended(true);
                    }
                    self.outsiders = true;
                } else if self.run_is_over() {
                    return self.ended(true);
                }
                if (main_exited || self.unsignallable_seen || !self.remains.tree().can_list())
                    && self.nothing_to_wait_for()
                {
                    return self.ended(false);
                }
            }
            if self.outsiders && !self.remains.others_remain() {
                return self.ended(true);
            }
            // Every deadline that is due, earliest first (two can fall at the same moment).
            while self.run.shutdown.under_way() {
                match self.run.shutdown.on_deadline(Instant::now()) {
                    Action::Nothing => break,
                    Action::GiveUp => {
                        self.give_up();
                        return self.ended(false);
                    }
                    action => {
                        self.perform(action, None);
                        if self.run_is_over() {
                            return self.ended(true);
                        }
                        if (self.unsignallable_seen || !self.remains.tree().can_list())
                            && self.nothing_to_wait_for()
                        {
                            return self.ended(false);
                        }
                        if action == Action::Sweep {
                            // Reap what it killed before the next, which may be due at once.
                            break;
                        }
                    }
                }
            }
            let mut deadline = self.run.shutdown.next_deadline();
            if self.outsiders {
                // No SIGCHLD tells when a process grace did not start exits: look again shortly.
                let recheck = Instant::now() + OUTSIDER_RECHECK;
                deadline = Some(deadline.map_or(recheck, |deadline| deadline.min(recheck)));
            }
            self.next_signals(deadline, received);
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

    /// For a restart as PID 1, whether the run is over though grace still has children: processes that
    /// entered the namespace from outside were seen, and grace may have inherited their orphans, so that only
    /// a listing says that nothing of the run is left.
    fn run_is_over(&self) -> bool {
        self.run.main_status.is_some()
            && self.remains.reach() == Reach::Run
            && self.remains.visitors_seen()
            && !self.remains.run_remains()
    }

    /// Waits for signals until `deadline` (or for the log to take output), into `received`.
    fn next_signals(&mut self, deadline: Option<Instant>, received: &mut Vec<Received>) {
        let log_waiting = log_sink::waiting_descriptor();
        if let Err(err) = self.signals.next_signals(deadline, log_waiting, received) {
            error!(event = "error"; "reading signals failed: {err}");
        }
        if log_waiting.is_some() {
            log_sink::flush();
        }
    }

    fn ended(&self, clean: bool) -> Ended {
        Ended {
            status: self.generation_status(),
            clean,
        }
    }

    /// Exit, restart at once, or restart after a delay: why the generation ended decides, and `--restart`
    /// when nothing but the main child's own exit ended it.
    fn next_after(&mut self, ended: Ended, received: &mut Vec<Received>) -> Next {
        let status = ended.status;
        let reason = match self.run.ending {
            Ending::Stop => return Next::Exit(status),
            Ending::Restart(by) => {
                format!("{} from {}", by.signal, sender(by.sender_pid))
            }
            Ending::Undecided => {
                let reported = exit_status::remap_success(status, &self.config.success_exits);
                let ran = self.run.ran();
                let why = format!(
                    "the main child exited with status {reported} after {}",
                    seconds(ran)
                );
                return self.after_failure(status, ran, ended.clean, "exit", &why, received);
            }
        };
        if !ended.clean {
            return self.not_restarting(status);
        }
        info!(
            event = "restarting", reason = "signal", status = status, delay_ms = 0u64,
            generation = self.run.number;
            "restarting now: {reason}; the last run's status was {status}"
        );
        Next::Start
    }

    /// The command could not be started again (`status` 126, 127, or 1 for a limit): a run that failed at
    /// once, for `--restart` as for `--max-restarts` (a deploy may be rewriting the binary: the backoff gives
    /// it time). Without a policy that restarts it (a restart by signal with `--restart never`), grace exits.
    fn after_failed_start(&mut self, status: u8, received: &mut Vec<Received>) -> Next {
        let why = format!("the command could not be started again (status {status})");
        self.after_failure(status, Duration::ZERO, true, "start_failed", &why, received)
    }

    /// A run ended by itself with `status` after `ran` (`clean`: nothing of it remains): exit, or wait and
    /// start again, as `--restart`, the backoff and `--max-restarts` say. `reason` and `why` go to the
    /// `restarting` line.
    fn after_failure(
        &mut self,
        status: u8,
        ran: Duration,
        clean: bool,
        reason: &str,
        why: &str,
        received: &mut Vec<Received>,
    ) -> Next {
        let reported = exit_status::remap_success(status, &self.config.success_exits);
        let delay = match self.restarts.after_exit(reported, ran) {
            Decision::Exit => return Next::Exit(status),
            Decision::LimitReached => {
                warn!(
                    event = "restart_limit", restarts = self.restarts.done();
                    "not restarting: --max-restarts reached ({} restarts)", self.restarts.done()
                );
                return Next::Exit(status);
            }
            Decision::RestartAfter(delay) => delay,
        };
        if !clean {
            return self.not_restarting(status);
        }
        info!(
            event = "restarting", reason = reason, status = status, delay_ms = millis(delay),
            generation = self.run.number;
            "restarting in {}: {why} (--restart {})", seconds(delay), self.restarts.policy().as_str()
        );
        match self.wait_to_restart(delay, status, received) {
            Some(status) => Next::Exit(status),
            None => Next::Start,
        }
    }

    /// A restart was due, but processes of the last run remain (they survived SIGKILL, or grace may not
    /// signal them): the next run would meet them (a port still held). grace exits instead.
    fn not_restarting(&self, status: u8) -> Next {
        error!(
            event = "restart_refused";
            "not restarting: processes of the last run remain, and the next run would meet them"
        );
        Next::Exit(status)
    }

    /// Waits `delay` before a restart; a stop signal meanwhile ends grace at once with the last status
    /// (returned), the restart signal starts the command at once, other signals have no one to go to.
    #[inline(never)] // only a restart needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    fn wait_to_restart(
        &mut self,
        delay: Duration,
        status: u8,
        received: &mut Vec<Received>,
    ) -> Option<u8> {
        let until = Instant::now() + delay;
        loop {
            if Instant::now() >= until {
                return None;
            }
            self.next_signals(Some(until), received);
            for signal in received.drain(..) {
                if signal.sender_pid == self.own_pid {
                    continue;
                }
                if signal.signal == Signal::CHLD {
                    // Nothing of the last run is left (a restart waits for that); reap whatever came since.
                    let _ = reaper::reap_exited(self.run.main.pid, self.config.warn_on_reap);
                } else if self.config.is_stop_signal(signal.signal) {
                    info!(
                        event = "stop_signal", signal:% = signal.signal, sender_pid = signal.sender_pid;
                        "received {} from {} while waiting to restart: nothing more starts",
                        signal.signal, sender(signal.sender_pid)
                    );
                    return Some(status);
                } else if self.stop_while_waiting(signal.signal, until) {
                    continue;
                } else if Some(signal.signal) == self.config.restart_signal {
                    info!(
                        event = "restart_signal", signal:% = signal.signal, sender_pid = signal.sender_pid;
                        "received {} from {} while waiting to restart: starting now",
                        signal.signal, sender(signal.sender_pid)
                    );
                    return None;
                } else {
                    debug!(
                        "{} from {} not forwarded: waiting to restart, no command runs",
                        signal.signal,
                        sender(signal.sender_pid)
                    );
                }
            }
        }
    }

    /// A shutdown has begun: grace takes the highest scheduling priority it may (nice −20), so that it keeps
    /// its deadlines on CPUs the tree keeps busy. A fork bomb's busy processes, at grace's own priority,
    /// delayed its cleanup SIGTERM by 0.3–2 s and its SIGKILL by up to 4 s on 2 cores; at −20 both went out
    /// within tens of milliseconds. grace sleeps between deadlines, so a tree that drains loses nothing.
    /// Where it may not (no CAP_SYS_NICE, as in most containers), nothing changes.
    fn raise_priority(&mut self) {
        if self.normal_nice.is_some() {
            return;
        }
        if let Ok(nice) = sys::own_nice() {
            if sys::set_own_nice(HIGHEST_PRIORITY).is_ok() {
                self.normal_nice = Some(nice);
            }
        }
    }

    /// Gives back the priority a shutdown raised, before the next generation starts (it would inherit it).
    fn restore_priority(&mut self) {
        if let Some(nice) = self.normal_nice.take() {
            let _ = sys::set_own_nice(nice);
        }
    }

    /// Starts the command again: the next generation. A command that cannot be started gives the usual
    /// status (126, 127, or 1), for the policy to decide what follows.
    fn start_next(&mut self) -> Result<(), u8> {
        self.restore_priority();
        // Only a foreground job takes the terminal: after Ctrl-Z and `bg`, the shell has it, and keeps it.
        self.setup.take_terminal = owns_terminal_foreground();
        let spawned = child::spawn(&self.config.command, self.setup);
        self.signals.after_fork();
        let main = match spawned {
            Ok(main) => main,
            Err(err) => {
                error!(event = "failed", status = err.status; "restart failed: {err}");
                return Err(err.status);
            }
        };
        let number = self.run.number + 1;
        self.run = Generation::new(number, main, self.config.timings());
        self.remains.start_over();
        self.outsiders = false;
        self.unsignallable_seen = false;
        info!(
            event = "restarted", pid = self.run.main.pid, generation = number;
            "restarted pid {}: {} (generation {number})",
            self.run.main.pid, shown_command(&self.config.command),
        );
        Ok(())
    }

    fn on_signal(&mut self, received: Received) {
        let signal = received.signal;
        // Not logged either: with stderr closed, that line would raise the next SIGPIPE.
        if self.own_signals.raised_by_grace(received) {
            return;
        }
        if self.config.is_stop_signal(signal) {
            if let Ending::Restart(by) = self.run.ending {
                info!(
                    event = "stop_signal", signal:% = signal, sender_pid = received.sender_pid;
                    "received {signal} from {} during the restart that {} started: this is the final shutdown now",
                    sender(received.sender_pid), by.signal,
                );
            }
            self.run.ending = Ending::Stop;
            self.reach_everything();
            let action = self.run.shutdown.on_stop_signal(Instant::now());
            self.perform(action, Some(received));
            return;
        }
        if Some(signal) == self.config.restart_signal {
            self.on_restart_signal(received);
            return;
        }
        if signal == Signal::CONT && std::mem::take(&mut self.swallow_continue) {
            debug!(
                "SIGCONT from {}: the one that continued grace, passed on already",
                sender(received.sender_pid)
            );
            return;
        }
        if signal == Signal::CONT && self.on_continued() {
            return;
        }
        let Some(forwarded) = self.config.rewrites.apply(signal) else {
            debug!(event = "dropped", signal:% = signal; "dropping {signal} from {}", sender(received.sender_pid));
            return;
        };
        if self.run.main_status.is_some() {
            debug!(
                "{signal} from {} not forwarded: the main child has exited",
                sender(received.sender_pid)
            );
            return;
        }
        if self.forward(forwarded).is_err() {
            return;
        }
        let ignored = if self.config.inherited_ignore(signal) {
            " (not a stop signal: grace was started with it ignored)"
        } else {
            ""
        };
        debug!(
            event = "forwarded", signal:% = forwarded, received:% = signal, pid = self.run.main.pid;
            "forwarded {signal} from {} as {forwarded} to {}{ignored}", sender(received.sender_pid), self.target()
        );
    }

    /// The restart signal: the generation ends as a shutdown would — its first stop signal, rewritten, to
    /// the main child, and so on — and the command starts again once its tree is gone. Repeats meanwhile
    /// are one restart; during a shutdown there is no restart.
    #[inline(never)] // only a restart needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    fn on_restart_signal(&mut self, received: Received) {
        match self.run.ending {
            Ending::Stop => {
                info!(
                    event = "restart_signal", signal:% = received.signal, sender_pid = received.sender_pid;
                    "received {} from {} during the shutdown: nothing restarts",
                    received.signal, sender(received.sender_pid)
                );
                return;
            }
            Ending::Restart(_) => {
                debug!(
                    "received {} from {}: a restart is under way already",
                    received.signal,
                    sender(received.sender_pid)
                );
                return;
            }
            Ending::Undecided => {}
        }
        self.run.ending = Ending::Restart(received);
        self.remains.set_reach(Reach::Run);
        let as_stop = Received {
            signal: self
                .config
                .stop_signals
                .first()
                .copied()
                .unwrap_or(Signal::TERM),
            sender_pid: received.sender_pid,
        };
        let action = self.run.shutdown.on_stop_signal(Instant::now());
        self.perform(action, Some(as_stop));
    }

    /// The generation's end is the final stop now, though a restart's cleanup began: it reaches the
    /// processes that entered the namespace from outside too, and if the rest of the tree has had its SIGTERM
    /// already, they get theirs now.
    fn reach_everything(&mut self) {
        if self.remains.reach() == Reach::Everything {
            return;
        }
        self.remains.set_reach(Reach::Everything);
        let rest_signalled = match self.run.shutdown.phase() {
            Phase::Stopping { rest_signalled, .. } => rest_signalled,
            Phase::CleaningUp { .. } | Phase::Killing { .. } => true,
            Phase::Running | Phase::Delaying { .. } | Phase::Settling { .. } => false,
        };
        if !rest_signalled {
            return;
        }
        let signalled = self.remains.terminate_visitors();
        self.log_not_permitted(&signalled.newly_not_permitted, Signal::TERM);
        self.log_failures(&signalled.failed, Signal::TERM);
        let sent = &signalled.sent;
        if !sent.is_empty() {
            info!(
                event = "terminating", count = sent.len(), pids:% = pid_list(sent), names:% = name_list(sent);
                "the restart became the final stop: {} that entered the namespace from outside, spared until \
                 now, sending SIGTERM: {}; SIGKILL in {}",
                processes(sent.len()), tree::describe(sent), seconds(self.until_kill()),
            );
        }
    }

    /// `SIGTERM`, or `SIGHUP (the restart signal)` when the stop in progress is a restart's.
    fn cause(&self, received: Received) -> String {
        match self.run.ending {
            Ending::Restart(by) => format!("{} (the restart signal)", by.signal),
            _ => received.signal.to_string(),
        }
    }

    /// Carries out what the shutdown decided; `stop_signal` is the signal that caused it, if one did.
    fn perform(&mut self, action: Action, stop_signal: Option<Received>) {
        // A forward goes out first: raising the priority is two system calls the child's handler need not wait
        // for.
        if !matches!(action, Action::Nothing | Action::ForwardStop { .. }) {
            self.raise_priority();
        }
        match action {
            Action::Nothing | Action::GiveUp => {}
            Action::DelayStop => {
                self.run.first_stop = stop_signal;
                if let Some(received) = stop_signal {
                    info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = 1,
                        pre_stop_delay_ms = millis(self.config.pre_stop_delay);
                        "received {} from {}: forwarding it after the pre-stop delay of {}; grace period {}, SIGKILL of what remains in {}",
                        self.cause(received), sender(received.sender_pid), configured(self.config.pre_stop_delay),
                        configured(self.config.grace_period), seconds(self.until_grace_deadline()),
                    );
                }
            }
            Action::RepeatDuringDelay { repeat } => {
                if let Some(received) = stop_signal {
                    info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = repeat;
                        "received {} from {} (stop signal #{repeat}) during the pre-stop delay: the first is forwarded when it ends, in {}",
                        received.signal, sender(received.sender_pid), seconds(self.until_next_deadline()),
                    );
                }
            }
            Action::ForwardStop { repeat } => {
                // From a deadline, it is the end of the pre-stop delay: forward the signal that started it.
                let received = stop_signal.or(self.run.first_stop);
                self.forward_stop(received, repeat, stop_signal.is_none());
                self.raise_priority();
            }
            Action::StopAfterMainExit => {
                let signal = stop_signal.map_or_else(
                    || "stop signal".to_string(),
                    |received| received.signal.to_string(),
                );
                info!(
                    event = "stop_signal", signal:% = signal;
                    "received {signal} after the main child exited; the remaining processes get SIGKILL in {} at most",
                    seconds(self.until_kill()),
                );
            }
            Action::TerminateRest => self.terminate_rest(),
            Action::SendFinal => self.send_final(),
            Action::Survey => self.survey(),
            Action::Sweep => self.sweep(),
            Action::KillAll(reason) => {
                if let Some(received) = stop_signal {
                    info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = 1;
                        "received {} from {}", self.cause(received), sender(received.sender_pid)
                    );
                }
                self.kill_all(reason);
            }
        }
    }

    /// Forwards a stop signal (rewritten) and SIGCONT, so that a stopped child can act on it.
    fn forward_stop(&mut self, received: Option<Received>, repeat: u32, after_delay: bool) {
        let Some(received) = received else { return };
        if self.run.main_status.is_some() {
            return;
        }
        let signal = received.signal;
        let forwarded = self.config.rewrites.apply(signal);
        let mut failure = None;
        if let Some(forwarded) = forwarded {
            match self.forward_to_main(forwarded) {
                Ok(()) => self.run.forwarded_stop = Some(forwarded),
                Err(err) => failure = Some(explain(&err)),
            }
        }
        let _ = self.forward_to_main(Signal::CONT);
        // The child was just woken, quite likely onto this CPU: let it run its handler before grace spends
        // time on the log line (measured: ~10 µs off the forwarding latency on 2 cores).
        std::thread::yield_now();
        let from = sender(received.sender_pid); // may read /proc: after the forward, not before
        let forwarded_ok = forwarded.filter(|_| failure.is_none());
        let what = match (forwarded, failure) {
            (Some(forwarded), None) => format!("forwarded {forwarded} to {}", self.target()),
            (Some(forwarded), Some(why)) => {
                format!("could not forward {forwarded} to {}: {why}", self.target())
            }
            (None, _) => "forwarded nothing (dropped by --rewrite)".to_string(),
        };
        let forwarded_name =
            forwarded.map_or_else(|| "none".to_string(), |signal| signal.to_string());
        let pid = self.run.main.pid;
        let sender_pid = received.sender_pid;
        if after_delay {
            info!(
                event = "forwarded_after_delay", signal:% = forwarded_name, pid = pid;
                "pre-stop delay of {} over: {what}; SIGKILL of what remains in {}",
                configured(self.config.pre_stop_delay), seconds(self.until_grace_deadline()),
            );
        } else if let (1, Ending::Restart(by)) = (repeat, self.run.ending) {
            info!(
                event = "restart_signal", signal:% = by.signal, sender_pid = sender_pid,
                forwarded:% = forwarded_name, pid = pid;
                "received {} (the restart signal) from {from}: {what}; the command starts again once its tree \
                 is gone; grace period {}, SIGKILL of what remains in {}",
                by.signal, configured(self.config.grace_period), seconds(self.until_grace_deadline()),
            );
        } else if repeat == 1 {
            info!(
                event = "stop_signal", signal:% = signal, sender_pid = sender_pid, repeat = repeat,
                forwarded:% = forwarded_name, pid = pid;
                "received {signal} from {from}: {what}; grace period {}, SIGKILL of what remains in {}",
                configured(self.config.grace_period), seconds(self.until_grace_deadline()),
            );
        } else {
            let since = self.since_stop().map(seconds).unwrap_or_default();
            info!(
                event = "stop_signal", signal:% = signal, sender_pid = sender_pid, repeat = repeat,
                forwarded:% = forwarded_name, pid = pid;
                "received {signal} from {from} (stop signal #{repeat}, {since} after the first): {what}; deadline unchanged, SIGKILL in {}",
                seconds(self.until_grace_deadline()),
            );
        }
        if let (1, Some(forwarded)) = (repeat, forwarded_ok) {
            self.warn_if_the_stop_cannot_stop(signal, forwarded);
        }
    }

    /// The stop signal went out as one that does nothing to a process that does not handle it (`--rewrite
    /// TERM:WINCH`, `--stop-signals WINCH`): Apache httpd handles SIGWINCH as its graceful stop, most servers
    /// do not. If the main child does not, grace says so now rather than at the SIGKILL.
    fn warn_if_the_stop_cannot_stop(&self, received: Signal, forwarded: Signal) {
        let Some(fate) = forwarded.default_action().as_a_stop() else {
            return;
        };
        let pid = self.run.main.pid;
        let takes_it = match diagnosis::disposition_of(pid, forwarded) {
            // At the default only if it is asleep or stopped: one that waits in sigwaitinfo shows the
            // signal unblocked, and the forward has just woken it; its mask is restored only as it returns,
            // and while it runs, /proc cannot tell it from a process at the default action. A process truly
            // at the default was not woken at all: the kernel discards such a signal unqueued.
            diagnosis::Disposition::Default => {
                diagnosis::waits_for_signals(pid)
                    || !tree::read_process(pid)
                        .is_some_and(|process| matches!(process.state, 'S' | 'D' | 'T' | 't'))
            }
            diagnosis::Disposition::Ignores => false,
            // Caught, blocked (read from a signalfd, or taken later), or not known: no warning.
            _ => true,
        };
        if takes_it {
            return;
        }
        warn!(
            event = "stop_not_handled";
            "the main child {} does not handle {forwarded}, {fate}: the stop signal {received}, forwarded as \
             {forwarded}, does not stop it; SIGKILL of what remains in {}",
            self.main_name(), seconds(self.until_grace_deadline()),
        );
    }

    fn on_main_exit(&mut self, raw_status: i32, now: Instant) {
        let status = exit_status::from_wait_status(raw_status);
        self.run.main_status = Some(status);
        self.run.exited_at = Some(now);
        // First: once the line says the main child exited, Ctrl-C reaches grace.
        self.take_back_terminal();
        let reported = exit_status::remap_success(status, &self.config.success_exits);
        if matches!(self.run.ending, Ending::Undecided) && self.restarts.would_restart(reported) {
            // The cleanup that follows is a restart's.
            self.remains.set_reach(Reach::Run);
        }
        let how = wait_status(raw_status, status);
        let pid = self.run.main.pid;
        match self.run.shutdown.stopped_at() {
            Some(stopped_at) => {
                let since = now.saturating_duration_since(stopped_at);
                info!(
                    event = "main_exited", pid = pid, status = status, elapsed_ms = millis(since);
                    "main child {} {how}, {} after the stop signal", self.main_name(), seconds(since)
                );
            }
            None => {
                info!(event = "main_exited", pid = pid, status = status; "main child {} {how}", self.main_name())
            }
        }
        self.warn_if_the_shell_did_not_exec(raw_status);
        self.run.shutdown.on_main_exit(now);
    }

    /// The classic hang: a shell as the main child dies of the stop signal, and the server it started (rather
    /// than exec'd) never hears of it. Only when a signal ended the shell — one that exits with a status did
    /// not die of the stop signal (it may have failed to fork) — and not when grace killed it; and only for
    /// the command's processes (not those that entered the namespace from outside, with `nsenter` or `kubectl
    /// exec`).
    fn warn_if_the_shell_did_not_exec(&self, raw_status: i32) {
        use std::os::unix::process::ExitStatusExt;
        let killed_by_a_signal = std::process::ExitStatus::from_raw(raw_status)
            .signal()
            .is_some();
        let killed_by_grace = matches!(self.run.shutdown.phase(), Phase::Killing { .. });
        if !killed_by_a_signal
            || killed_by_grace
            || !diagnosis::is_shell(&self.main_name_only())
            || !self.remains.tree().can_list()
        {
            return;
        }
        let mut left = self.remains.tree().members();
        left.retain(|process| !process.entered_from_outside);
        if !left.is_empty() {
            warn!(
                event = "shell_did_not_exec", pid = self.run.main.pid, count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
                "the main child was a shell and {} outlived it: {}; a shell that does not `exec` its server \
                 does not pass signals on to it (use `exec server` in the script, or run the server directly)",
                processes(left.len()), tree::describe(&left),
            );
        }
    }

    /// The main child's status, for what follows the end of its generation.
    fn generation_status(&self) -> u8 {
        match self.run.main_status {
            Some(status) => status,
            // Not reaped: it is alive, or dying in uninterruptible sleep. As PID 1 the kernel SIGKILLs it as
            // grace exits, and a SIGKILL already sent ends it once the kernel lets go of it: either way it dies
            // of SIGKILL. Otherwise it goes on running, and grace must not report a death.
            None if self.remains.tree().scope() == Scope::Namespace || self.run.main_killed => {
                128 + Signal::KILL.number() as u8
            }
            None => {
                error!(
                    event = "main_running";
                    "the main child {} is still running (grace may not signal it): exiting with status {}",
                    self.main_name(), exit_status::INIT_FAILED,
                );
                exit_status::INIT_FAILED
            }
        }
    }

    /// Logs the exit, with the child's `status` mapped by `-e`, and returns grace's exit status.
    fn exit(&self, status: u8) -> u8 {
        self.take_back_terminal();
        let reported = exit_status::remap_success(status, &self.config.success_exits);
        // Only a stop signal's shutdown has a time to count from: a restart's signal (or a failed start
        // after it) does not end grace.
        let since = self
            .since_stop()
            .filter(|_| matches!(self.run.ending, Ending::Stop));
        let timing = since
            .map(|since| format!(", {} after the stop signal", seconds(since)))
            .unwrap_or_default();
        let mapped = if reported == status {
            String::new()
        } else {
            format!(" (the child's {status}, mapped by --success-exit)")
        };
        match since {
            Some(since) => info!(
                event = "exiting", status = reported, child_status = status, elapsed_ms = millis(since);
                "exiting with status {reported}{mapped}{timing}"
            ),
            None => info!(
                event = "exiting", status = reported, child_status = status; "exiting with status {reported}{mapped}"
            ),
        }
        reported
    }

    fn main_ref(&self) -> remains::MainChild {
        remains::MainChild {
            pid: self.run.main.pid,
            alive: self.run.main_status.is_none(),
        }
    }

    /// Forwards to the main child, or to its process group with `-g`, and logs a failure. Only called before
    /// it is reaped, so its pid (and the group's) cannot have been reused.
    fn forward(&self, signal: Signal) -> io::Result<()> {
        let sent = self.forward_to_main(signal);
        if let Err(err) = &sent {
            warn!(event = "error"; "could not forward {signal} to {}: {}", self.target(), explain(err));
        }
        sent
    }

    fn forward_to_main(&self, signal: Signal) -> io::Result<()> {
        let target = if self.config.process_group {
            -self.run.main.pid
        } else {
            self.run.main.pid
        };
        sys::send_signal(target, signal.number())
    }

    fn target(&self) -> String {
        if self.config.process_group {
            format!(
                "process group {} ({})",
                self.run.main.pid,
                self.main_name_only()
            )
        } else {
            self.main_name()
        }
    }

    fn main_name(&self) -> String {
        format!("pid {} ({})", self.run.main.pid, self.main_name_only())
    }

    fn main_name_only(&self) -> String {
        self.run
            .main
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn since_stop(&self) -> Option<Duration> {
        self.run
            .shutdown
            .stopped_at()
            .map(|stopped_at| stopped_at.elapsed())
    }

    fn until_grace_deadline(&self) -> Duration {
        match self.run.shutdown.deadline() {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.until_next_deadline(),
        }
    }

    /// Until the SIGKILL of what remains, as far as it is known.
    fn until_kill(&self) -> Duration {
        match self.run.shutdown.kill_time() {
            Some(kill_at) => kill_at.saturating_duration_since(Instant::now()),
            None => self.until_next_deadline(),
        }
    }

    fn until_next_deadline(&self) -> Duration {
        self.run
            .shutdown
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// An error from signalling, said plainly where it has a plain meaning.
fn explain(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => "not permitted (it runs as another user)".to_string(),
        Some(libc::ESRCH) => "no such process".to_string(),
        _ => err.to_string(),
    }
}

/// `python3 -u 'a b'`: the command as a shell would show it, cut to [`MAX_COMMAND_SHOWN`] characters with
/// its full length, so that a 2 MB argv does not make a 2 MB log line.
pub fn shown_command(command: &[std::ffi::OsString]) -> String {
    let quote = |word: &std::ffi::OsString| {
        let text = word.to_string_lossy();
        if !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
        {
            text.into_owned()
        } else {
            format!("'{}'", text.replace('\'', r"'\''"))
        }
    };
    let full = command.iter().map(quote).collect::<Vec<_>>().join(" ");
    let length = full.chars().count();
    if length <= MAX_COMMAND_SHOWN {
        return full;
    }
    let mut cut: String = full.chars().take(MAX_COMMAND_SHOWN).collect();
    cut.push_str(&format!("… ({length} characters in all)"));
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_command_is_cut_with_its_length() {
        let long = std::ffi::OsString::from("x".repeat(2_000_000));
        let shown = shown_command(&[std::ffi::OsString::from("echo"), long]);
        assert!(shown.len() < 600, "{}", shown.len());
        assert!(shown.ends_with("… (2000005 characters in all)"));
        assert_eq!(
            shown_command(&["sh".into(), "-c".into(), "exit 3".into()]),
            "sh -c 'exit 3'"
        );
    }
}
