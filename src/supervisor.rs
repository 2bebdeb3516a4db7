//! The loop: wait for a signal or the next deadline → reap → translate and forward → advance the shutdown →
//! act. Once the child runs, nothing here returns an error: failures are logged and the loop goes on,
//! because a PID 1 that gives up takes the container with it.
//!
//! Each lifecycle line carries an `event` name and fields (see the README's "Operating grace"), which the
//! JSON log format shows; the names are a stable interface for log pipelines.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::child::MainChild;
use crate::config::Config;
use crate::diagnosis;
use crate::exit_status;
use crate::reaper;
use crate::shutdown::{Action, KillReason, Phase, Shutdown, UNKILLABLE_WAIT};
use crate::signals::{Received, Signal, SignalSource};
use crate::sys;
use crate::tree::{self, Delivery, Process, Scope, Tree};

/// Runs the main child's life and the shutdown of its tree; returns grace's exit status.
pub struct Supervisor {
    config: Config,
    signals: SignalSource,
    tree: Tree,
    main: MainChild,
    /// The main child's exit status, once it has been reaped. Until then its pid is safe to signal.
    main_status: Option<u8>,
    shutdown: Shutdown,
    /// The first stop signal, kept to be forwarded when the pre-stop delay ends.
    first_stop: Option<Received>,
    /// What the main child was sent on the stop signal (after --rewrite), for the diagnosis.
    forwarded_stop: Option<Signal>,
    own_pid: i32,
    /// Processes SIGKILLed so far, by (pid, start time), so a repeated sweep logs only the new ones.
    killed: HashSet<(i32, u64)>,
    /// As PID 1, grace's own children are all gone but processes that entered the namespace from outside
    /// (`kubectl exec`, `nsenter`) remain: they are not grace's children, so no SIGCHLD reports their exit.
    outsiders: bool,
}

/// How often grace looks whether the processes it did not start are gone, once only they remain.
const OUTSIDER_RECHECK: Duration = Duration::from_millis(50);

impl Supervisor {
    pub fn new(config: Config, signals: SignalSource, tree: Tree, main: MainChild) -> Supervisor {
        let shutdown = Shutdown::new(config.timings());
        Supervisor {
            config,
            signals,
            tree,
            main,
            main_status: None,
            shutdown,
            first_stop: None,
            forwarded_stop: None,
            own_pid: std::process::id() as i32,
            killed: HashSet::new(),
            outsiders: false,
        }
    }

    /// Runs until the tree is empty (or its last processes cannot be killed) and returns the exit status.
    pub fn run(mut self) -> u8 {
        let mut received = Vec::with_capacity(64);
        // Reaping needs a SIGCHLD (one stands for any number of exits); a child may have exited before the
        // loop started, so the first round reaps regardless.
        let mut child_exited = true;
        loop {
            if child_exited {
                let reaped = reaper::reap_exited(self.main.pid, self.config.warn_on_reap);
                if let Some(raw_status) = reaped.main_status {
                    self.on_main_exit(raw_status, Instant::now());
                }
                if reaped.tree_empty {
                    if !self.outsiders_remain() {
                        return self.finish();
                    }
                    self.outsiders = true;
                }
                if matches!(self.shutdown.phase(), Phase::Killing { .. })
                    && self.tree.scope() != Scope::Namespace
                {
                    // A process may have forked just before its SIGKILL; its child is new to the sweep.
                    self.kill_remaining();
                }
            }
            if self.outsiders && !self.outsiders_remain() {
                return self.finish();
            }
            // Every deadline that is due, earliest first (two can fall at the same moment).
            loop {
                match self.shutdown.on_deadline(Instant::now()) {
                    Action::Nothing => break,
                    Action::GiveUp => {
                        self.log_survivors();
                        return self.finish();
                    }
                    action => self.perform(action, None),
                }
            }
            let mut deadline = self.shutdown.next_deadline();
            if self.outsiders {
                // No SIGCHLD tells when a process grace did not start exits: look again shortly.
                let recheck = Instant::now() + OUTSIDER_RECHECK;
                deadline = Some(deadline.map_or(recheck, |deadline| deadline.min(recheck)));
            }
            if let Err(err) = self.signals.next_signals(deadline, &mut received) {
                log::error!(event = "error"; "reading signals failed: {err}");
            }
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

    /// As PID 1, whether processes remain that grace cannot reap (they entered the namespace from outside):
    /// the kernel would SIGKILL them, without a SIGTERM, the moment grace exits.
    fn outsiders_remain(&self) -> bool {
        // kill(-1, 0) from a namespace's PID 1 asks whether any other process is in the namespace: one system
        // call, where listing /proc would put ~80 µs on every exit.
        self.tree.scope() == Scope::Namespace && sys::send_signal(-1, 0).is_ok()
    }

    fn on_signal(&mut self, received: Received) {
        let signal = received.signal;
        if received.sender_pid == self.own_pid {
            // Raised by grace itself, e.g. SIGPIPE from a log write to a closed stderr: not the child's
            // business. Not logged either: with stderr closed, that line would raise the next SIGPIPE.
            return;
        }
        if self.config.is_stop_signal(signal) {
            let action = self.shutdown.on_stop_signal(Instant::now());
            self.perform(action, Some(received));
            return;
        }
        let Some(forwarded) = self.config.rewrites.apply(signal) else {
            log::debug!(event = "dropped", signal:% = signal; "dropping {signal} from {}", sender(received.sender_pid));
            return;
        };
        if self.main_status.is_some() {
            log::debug!(
                "{signal} from {} not forwarded: the main child has exited",
                sender(received.sender_pid)
            );
            return;
        }
        self.forward(forwarded);
        log::debug!(
            event = "forwarded", signal:% = forwarded, received:% = signal, pid = self.main.pid;
            "forwarded {signal} from {} as {forwarded} to {}", sender(received.sender_pid), self.target()
        );
    }

    /// Carries out what the shutdown decided; `stop_signal` is the signal that caused it, if one did.
    fn perform(&mut self, action: Action, stop_signal: Option<Received>) {
        match action {
            Action::Nothing | Action::GiveUp => {}
            Action::DelayStop => {
                self.first_stop = stop_signal;
                if let Some(received) = stop_signal {
                    log::info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = 1,
                        pre_stop_delay_ms = millis(self.config.pre_stop_delay);
                        "received {} from {}: forwarding it after the pre-stop delay of {}; grace period {}, SIGKILL of what remains in {}",
                        received.signal, sender(received.sender_pid), configured(self.config.pre_stop_delay),
                        configured(self.config.grace_period), seconds(self.until_grace_deadline()),
                    );
                }
            }
            Action::RepeatDuringDelay { repeat } => {
                if let Some(received) = stop_signal {
                    log::info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = repeat;
                        "received {} from {} (stop signal #{repeat}) during the pre-stop delay: the first is forwarded when it ends, in {}",
                        received.signal, sender(received.sender_pid), seconds(self.until_next_deadline()),
                    );
                }
            }
            Action::ForwardStop { repeat } => {
                // From a deadline, it is the end of the pre-stop delay: forward the signal that started it.
                let received = stop_signal.or(self.first_stop);
                self.forward_stop(received, repeat, stop_signal.is_none());
            }
            Action::StopAfterMainExit => {
                let signal = stop_signal.map_or_else(
                    || "stop signal".to_string(),
                    |received| received.signal.to_string(),
                );
                log::info!(
                    event = "stop_signal", signal:% = signal;
                    "received {signal} after the main child exited; the remaining processes get SIGKILL in {} at most",
                    seconds(self.until_kill()),
                );
            }
            Action::TerminateRest => self.terminate_rest(),
            Action::SendFinal => self.send_final(),
            Action::KillAll(reason) => {
                if let Some(received) = stop_signal {
                    log::info!(
                        event = "stop_signal", signal:% = received.signal, sender_pid = received.sender_pid, repeat = 1;
                        "received {} from {}", received.signal, sender(received.sender_pid)
                    );
                }
                self.kill_all(reason);
            }
        }
    }

    /// Forwards a stop signal (rewritten) and SIGCONT, so that a stopped child can act on it.
    fn forward_stop(&mut self, received: Option<Received>, repeat: u32, after_delay: bool) {
        let Some(received) = received else { return };
        if self.main_status.is_some() {
            return;
        }
        let signal = received.signal;
        let forwarded = self.config.rewrites.apply(signal);
        if let Some(forwarded) = forwarded {
            self.forward(forwarded);
            self.forwarded_stop = Some(forwarded);
        }
        self.forward(Signal::CONT);
        // The child was just woken, quite likely onto this CPU: let it run its handler before grace spends
        // time on the log line (measured: ~10 µs off the forwarding latency on 2 cores).
        std::thread::yield_now();
        let from = sender(received.sender_pid); // may read /proc: after the forward, not before
        let what = match forwarded {
            Some(forwarded) => format!("forwarded {forwarded} to {}", self.target()),
            None => "forwarded nothing (dropped by --rewrite)".to_string(),
        };
        let forwarded_name =
            forwarded.map_or_else(|| "none".to_string(), |signal| signal.to_string());
        let pid = self.main.pid;
        let sender_pid = received.sender_pid;
        if after_delay {
            log::info!(
                event = "forwarded_after_delay", signal:% = forwarded_name, pid = pid;
                "pre-stop delay of {} over: {what}; SIGKILL of what remains in {}",
                configured(self.config.pre_stop_delay), seconds(self.until_grace_deadline()),
            );
        } else if repeat == 1 {
            log::info!(
                event = "stop_signal", signal:% = signal, sender_pid = sender_pid, repeat = repeat,
                forwarded:% = forwarded_name, pid = pid;
                "received {signal} from {from}: {what}; grace period {}, SIGKILL of what remains in {}",
                configured(self.config.grace_period), seconds(self.until_grace_deadline()),
            );
        } else {
            let since = self.since_stop().map(seconds).unwrap_or_default();
            log::info!(
                event = "stop_signal", signal:% = signal, sender_pid = sender_pid, repeat = repeat,
                forwarded:% = forwarded_name, pid = pid;
                "received {signal} from {from} (stop signal #{repeat}, {since} after the first): {what}; deadline unchanged, SIGKILL in {}",
                seconds(self.until_grace_deadline()),
            );
        }
    }

    /// SIGTERM and SIGCONT to every process of the tree but the main child.
    fn terminate_rest(&mut self) {
        let main_alive = self.main_status.is_none();
        let why = if main_alive {
            format!(
                "main child still running with {} of the grace period left",
                seconds(self.until_grace_deadline())
            )
        } else {
            "main child has exited".to_string()
        };
        if !self.tree.can_list() {
            if self.tree.scope() == Scope::Namespace && !main_alive {
                log::info!(
                    event = "terminating";
                    "{why}: sending SIGTERM to every remaining process (names unknown: /proc is not this namespace's)"
                );
                let _ = sys::send_signal(-1, Signal::TERM.number());
                let _ = sys::send_signal(-1, Signal::CONT.number());
            }
            return;
        }
        let members = self.tree.members();
        let rest: Vec<&Process> = members
            .iter()
            .filter(|process| !(main_alive && process.pid == self.main.pid))
            .collect();
        if log::log_enabled!(log::Level::Debug) {
            for process in &rest {
                let has_children = members.iter().any(|other| other.parent_pid == process.pid);
                let diagnosis = diagnosis::diagnose(process, Signal::TERM, false, has_children);
                self.log_diagnosis(process, Signal::TERM, &diagnosis, log::Level::Debug);
            }
        }
        let mut signalled = Vec::with_capacity(rest.len());
        for process in rest {
            if self.send(process, Signal::TERM) {
                self.send(process, Signal::CONT);
                signalled.push(process.clone());
            }
        }
        if !signalled.is_empty() {
            log::info!(
                event = "terminating", count = signalled.len(), pids:% = pid_list(&signalled), names:% = name_list(&signalled);
                "{why}: {} {}, sending SIGTERM: {}; SIGKILL in {}",
                processes(signalled.len()), if signalled.len() == 1 { "remains" } else { "remain" }, tree::describe(&signalled), seconds(self.until_kill()),
            );
        }
    }

    /// The final signal (`--final-signal`) to everything that remains, ahead of SIGKILL.
    fn send_final(&mut self) {
        let signal = self.config.final_signal;
        let mut signalled = Vec::new();
        for process in self.tree.members() {
            if self.send(&process, signal) {
                signalled.push(process);
            }
        }
        if self.tree.scope() == Scope::Namespace && !self.tree.can_list() {
            let _ = sys::send_signal(-1, signal.number());
        }
        log::warn!(
            event = "final_signal", signal:% = signal, count = signalled.len(), pids:% = pid_list(&signalled),
            names:% = name_list(&signalled);
            "final signal {signal} to {}: {}; SIGKILL in {}",
            processes(signalled.len()), tree::describe(&signalled), seconds(self.until_kill()),
        );
    }

    fn kill_all(&mut self, reason: KillReason) {
        let (why, reason_name) = match reason {
            KillReason::NoGracePeriod => ("grace period is 0".to_string(), "no_grace_period"),
            KillReason::GracePeriodExpired => (
                format!(
                    "grace period of {} expired",
                    configured(self.config.grace_period)
                ),
                "grace_period_expired",
            ),
            KillReason::CleanupTimeoutExpired => (
                format!(
                    "cleanup timeout of {} expired",
                    configured(self.config.cleanup_timeout)
                ),
                "cleanup_timeout_expired",
            ),
        };
        // Say why each of them is still alive: read before the SIGKILL, while the evidence exists, but
        // logged after it, so that the kill is not late by the time it takes to write the report.
        let members = self.tree.members();
        let diagnoses: Vec<(&Process, Signal, diagnosis::Diagnosis)> = if reason
            == KillReason::NoGracePeriod
        {
            Vec::new()
        } else {
            members
                .iter()
                .map(|process| {
                    let sent = if process.pid == self.main.pid {
                        self.forwarded_stop.unwrap_or(Signal::TERM)
                    } else {
                        Signal::TERM
                    };
                    let has_children = members.iter().any(|other| other.parent_pid == process.pid);
                    (
                        process,
                        sent,
                        diagnosis::diagnose(process, sent, true, has_children),
                    )
                })
                .collect()
        };
        let killed = self.kill_listed(&members);
        if !diagnoses.is_empty() {
            log::warn!(event = "deadline", reason = reason_name, count = diagnoses.len(); "{why}: {} still alive", processes(diagnoses.len()));
            for (process, sent, diagnosis) in &diagnoses {
                self.log_diagnosis(process, *sent, diagnosis, log::Level::Warn);
            }
        }
        let message = if !killed.is_empty() {
            format!(
                "{why}: SIGKILL to {}: {}",
                processes(killed.len()),
                tree::describe(&killed)
            )
        } else if self.main_status.is_none() && !self.tree.can_list() {
            format!("{why}: SIGKILL to the main child {}", self.target())
        } else {
            return;
        };
        let (count, pids, names) = (killed.len(), pid_list(&killed), name_list(&killed));
        // elapsed_ms counts from the stop signal, so a cleanup after the main child exited on its own has none.
        match self.since_stop() {
            Some(since) => log::warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str(),
                elapsed_ms = millis(since); "{message}"
            ),
            None => log::warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str();
                "{message}"
            ),
        }
    }

    /// One line: the process, what it does with the signal it was sent, and the likely cause.
    fn log_diagnosis(
        &self,
        process: &Process,
        sent: Signal,
        diagnosis: &diagnosis::Diagnosis,
        level: log::Level,
    ) {
        let role = if process.pid == self.main.pid {
            "main child "
        } else {
            ""
        };
        log::log!(
            level,
            event = "survivor", pid = process.pid, name = process.name.as_str(), parent_pid = process.parent_pid,
            state:% = process.state, command_line = diagnosis.command_line.as_str(), signal:% = sent,
            disposition = diagnosis.disposition.as_str(), hint = diagnosis.hint;
            "  {role}pid {} ({}), parent {}, state {}, {} {sent}: {} — `{}`",
            process.pid, process.name, process.parent_pid, process.state, diagnosis.disposition.as_str(),
            diagnosis.hint, diagnosis.command_line,
        );
    }

    /// SIGKILLs every process of the tree not yet killed; returns those it killed now.
    fn kill_remaining(&mut self) -> Vec<Process> {
        let members = self.tree.members();
        self.kill_listed(&members)
    }

    /// SIGKILLs `members` (and, as PID 1, everything else in the namespace); returns those killed now for
    /// the first time.
    fn kill_listed(&mut self, members: &[Process]) -> Vec<Process> {
        let mut killed = Vec::new();
        for process in members {
            let key = (process.pid, process.start_time);
            if self.killed.contains(&key) {
                let _ = self.tree.signal(process, Signal::KILL); // harmless if it is dying already
                continue;
            }
            if self.send(process, Signal::KILL) {
                self.killed.insert(key);
                killed.push(process.clone());
            }
        }
        if self.tree.scope() == Scope::Namespace {
            // As PID 1, kill(-1) reaches every other process in the namespace at once, including any forked
            // since the listing: a process with a pending SIGKILL cannot fork.
            let _ = sys::send_signal(-1, Signal::KILL.number());
        } else if self.main_status.is_none() && !self.tree.can_list() {
            self.forward(Signal::KILL);
        }
        killed
    }

    fn log_survivors(&self) {
        let survivors = self.tree.members();
        for process in &survivors {
            let hint = match process.state {
                'D' => " (uninterruptible sleep: blocked in the kernel, e.g. on I/O or a hung mount; SIGKILL takes effect when that ends)",
                _ => "",
            };
            log::error!(
                event = "unkillable", pid = process.pid, name = process.name.as_str(), state:% = process.state;
                "pid {} ({}) survived SIGKILL, state {}{hint}", process.pid, process.name, process.state
            );
        }
        log::error!(
            event = "gave_up", count = survivors.len();
            "giving up on {} that did not exit {} after SIGKILL", processes(survivors.len()), configured(UNKILLABLE_WAIT)
        );
    }

    fn on_main_exit(&mut self, raw_status: i32, now: Instant) {
        let status = exit_status::from_wait_status(raw_status);
        self.main_status = Some(status);
        let how = describe_wait_status(raw_status, status);
        let pid = self.main.pid;
        match self.shutdown.stopped_at() {
            Some(stopped_at) => {
                let since = now.saturating_duration_since(stopped_at);
                log::info!(
                    event = "main_exited", pid = pid, status = status, elapsed_ms = millis(since);
                    "main child {} {how}, {} after the stop signal", self.main_name(), seconds(since)
                );
            }
            None => {
                log::info!(event = "main_exited", pid = pid, status = status; "main child {} {how}", self.main_name())
            }
        }
        // Not after an escalation: then grace killed the shell itself, and what it left is being killed too.
        let killed_by_grace = matches!(self.shutdown.phase(), Phase::Killing { .. });
        if !killed_by_grace && diagnosis::is_shell(&self.main_name_only()) && self.tree.can_list() {
            // Processes that entered the namespace from outside (parent 0) are none of the shell's doing.
            let mut left = self.tree.members();
            left.retain(|process| process.parent_pid != 0);
            if !left.is_empty() {
                log::warn!(
                    event = "shell_did_not_exec", pid = pid, count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
                    "the main child was a shell and {} outlived it: {}; a shell that does not `exec` its server \
                     does not pass signals on to it (use `exec server` in the script, or run the server directly)",
                    processes(left.len()), tree::describe(&left),
                );
            }
        }
        self.shutdown.on_main_exit(now);
    }

    fn finish(&self) -> u8 {
        // No status means the main child survived even SIGKILL (grace gave up on it): report it as killed.
        let status = self
            .main_status
            .unwrap_or(128 + Signal::KILL.number() as u8);
        let reported = exit_status::remap_success(status, &self.config.success_exits);
        let since = self.since_stop();
        let timing = since
            .map(|since| format!(", {} after the stop signal", seconds(since)))
            .unwrap_or_default();
        let mapped = if reported == status {
            String::new()
        } else {
            format!(" (the child's {status}, mapped by --success-exit)")
        };
        match since {
            Some(since) => log::info!(
                event = "exiting", status = reported, child_status = status, elapsed_ms = millis(since);
                "exiting with status {reported}{mapped}{timing}"
            ),
            None => log::info!(
                event = "exiting", status = reported, child_status = status; "exiting with status {reported}{mapped}"
            ),
        }
        reported
    }

    /// Sends `signal` to one process of the tree; logs a failure. Returns whether it was sent.
    fn send(&self, process: &Process, signal: Signal) -> bool {
        match self.tree.signal(process, signal) {
            Delivery::Sent => true,
            Delivery::Gone => false,
            Delivery::Failed(err) => {
                log::warn!(event = "error"; "could not send {signal} to pid {} ({}): {err}", process.pid, process.name);
                false
            }
        }
    }

    /// Forwards to the main child, or to its process group with `-g`. Only called before it is reaped, so
    /// its pid (and the group's) cannot have been reused.
    fn forward(&self, signal: Signal) {
        let target = if self.config.process_group {
            -self.main.pid
        } else {
            self.main.pid
        };
        if let Err(err) = sys::send_signal(target, signal.number()) {
            log::warn!(event = "error"; "could not forward {signal} to {}: {err}", self.target());
        }
    }

    fn target(&self) -> String {
        if self.config.process_group {
            format!(
                "process group {} ({})",
                self.main.pid,
                self.main_name_only()
            )
        } else {
            self.main_name()
        }
    }

    fn main_name(&self) -> String {
        format!("pid {} ({})", self.main.pid, self.main_name_only())
    }

    fn main_name_only(&self) -> String {
        self.main
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn since_stop(&self) -> Option<Duration> {
        self.shutdown
            .stopped_at()
            .map(|stopped_at| stopped_at.elapsed())
    }

    fn until_grace_deadline(&self) -> Duration {
        match self.shutdown.deadline() {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.until_next_deadline(),
        }
    }

    /// Until the SIGKILL of what remains, as far as it is known.
    fn until_kill(&self) -> Duration {
        match self.shutdown.kill_time() {
            Some(kill_at) => kill_at.saturating_duration_since(Instant::now()),
            None => self.until_next_deadline(),
        }
    }

    fn until_next_deadline(&self) -> Duration {
        self.shutdown
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// `exited with status 3`, `was killed by SIGKILL (status 137)`.
fn describe_wait_status(raw_status: i32, status: u8) -> String {
    use std::os::unix::process::ExitStatusExt;
    let exit = std::process::ExitStatus::from_raw(raw_status);
    match exit.signal().and_then(Signal::from_number) {
        Some(signal) if exit.core_dumped() => {
            format!("was killed by {signal}, core dumped (status {status})")
        }
        Some(signal) => format!("was killed by {signal} (status {status})"),
        None => format!("exited with status {status}"),
    }
}

/// Who sent a signal: a pid of this namespace, or (pid 0) the kernel or a process outside the namespace.
fn sender(pid: i32) -> String {
    if pid == 0 {
        "the kernel or outside the namespace".to_string()
    } else {
        format!(
            "pid {pid}{}",
            tree::read_process(pid)
                .map(|process| format!(" ({})", process.name))
                .unwrap_or_default()
        )
    }
}

/// `1 process`, `3 processes`.
fn processes(count: usize) -> String {
    if count == 1 {
        "1 process".to_string()
    } else {
        format!("{count} processes")
    }
}

/// `12,15`, for the JSON fields.
fn pid_list(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|process| process.pid.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `tee,controller`, for the JSON fields.
fn name_list(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|process| process.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `1.234s`, for measured times.
fn seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// Whole milliseconds, for the JSON fields.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `8s`, `1m 30s`, `500ms`, for configured durations: as the operator wrote them.
fn configured(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}
