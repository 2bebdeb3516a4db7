//! The loop: wait for a signal or the next deadline → reap → translate and forward → advance the shutdown →
//! act. Once the child runs, nothing here returns an error: failures are logged and the loop goes on,
//! because a PID 1 that gives up takes the container with it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::child::MainChild;
use crate::config::Config;
use crate::exit_status;
use crate::reaper;
use crate::shutdown::{Action, KillReason, Phase, Shutdown};
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
    own_pid: i32,
    /// Processes SIGKILLed so far, by (pid, start time), so a repeated sweep logs only the new ones.
    killed: HashSet<(i32, u64)>,
}

impl Supervisor {
    pub fn new(config: Config, signals: SignalSource, tree: Tree, main: MainChild) -> Supervisor {
        let shutdown = Shutdown::new(config.grace_period, config.cleanup_timeout);
        Supervisor {
            config,
            signals,
            tree,
            main,
            main_status: None,
            shutdown,
            own_pid: std::process::id() as i32,
            killed: HashSet::new(),
        }
    }

    /// Runs until the tree is empty (or its last processes cannot be killed) and returns the exit status.
    pub fn run(mut self) -> u8 {
        let mut received = Vec::with_capacity(64);
        loop {
            let reaped = reaper::reap_exited(self.main.pid, self.config.warn_on_reap);
            let now = Instant::now();
            if let Some(raw_status) = reaped.main_status {
                self.on_main_exit(raw_status, now);
            }
            if reaped.tree_empty {
                return self.finish();
            }
            if matches!(self.shutdown.phase(), Phase::Killing { .. })
                && self.tree.scope() != Scope::Namespace
            {
                // A process may have forked just before its SIGKILL; its child is new to the sweep.
                self.kill_remaining();
            }
            match self.shutdown.on_deadline(now) {
                Action::GiveUp => {
                    self.log_survivors();
                    return self.finish();
                }
                action => self.perform(action, None),
            }
            if let Err(err) = self.signals.wait(self.shutdown.next_deadline()) {
                log::error!("waiting for signals failed: {err}");
            }
            if let Err(err) = self.signals.read_pending(&mut received) {
                log::error!("reading signals failed: {err}");
            }
            for signal in received.drain(..) {
                self.on_signal(signal);
            }
        }
    }

    fn on_signal(&mut self, received: Received) {
        let signal = received.signal;
        if signal == Signal::CHLD {
            return; // reaping happens at the top of the loop
        }
        if received.sender_pid == self.own_pid {
            // Raised by grace itself, e.g. SIGPIPE from a log write to a closed stderr: not the child's business.
            // Not logged either: that write would raise it again, and grace would spin on its own SIGPIPE.
            return;
        }
        if self.config.is_stop_signal(signal) {
            let action = self.shutdown.on_stop_signal(Instant::now());
            self.perform(action, Some(received));
            return;
        }
        let Some(forwarded) = self.config.rewrites.apply(signal) else {
            log::debug!("dropping {signal} from {}", sender(received.sender_pid));
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
            "forwarded {signal} from {} as {forwarded} to {}",
            sender(received.sender_pid),
            self.target()
        );
    }

    fn perform(&mut self, action: Action, stop_signal: Option<Received>) {
        match action {
            Action::Nothing => {}
            Action::ForwardStop { repeat } => self.forward_stop(stop_signal, repeat),
            Action::StopAfterMainExit => {
                let signal = stop_signal.map(|received| received.signal);
                log::info!(
                    "{} received after the main child exited; the remaining processes get SIGKILL in {} at most",
                    signal.map_or_else(|| "stop signal".to_string(), |signal| signal.to_string()),
                    seconds(self.until_next_deadline()),
                );
            }
            Action::TerminateRest => self.terminate_rest(),
            Action::KillAll(reason) => {
                if let Some(received) = stop_signal {
                    log::info!(
                        "received {} from {}",
                        received.signal,
                        sender(received.sender_pid)
                    );
                }
                self.kill_all(reason);
            }
            Action::GiveUp => {}
        }
    }

    /// Forwards a stop signal (rewritten) and SIGCONT, so that a stopped child can act on it.
    fn forward_stop(&mut self, received: Option<Received>, repeat: u32) {
        let Some(received) = received else { return };
        let signal = received.signal;
        let from = sender(received.sender_pid);
        if self.main_status.is_some() {
            return;
        }
        let forwarded = self.config.rewrites.apply(signal);
        if let Some(forwarded) = forwarded {
            self.forward(forwarded);
        }
        self.forward(Signal::CONT);
        let what = match forwarded {
            Some(forwarded) => format!("forwarded {forwarded} to {}", self.target()),
            None => "forwarded nothing (dropped by --rewrite)".to_string(),
        };
        if repeat == 1 {
            log::info!(
                "received {signal} from {from}: {what}; grace period {}, SIGKILL of what remains in {}",
                configured(self.config.grace_period),
                seconds(self.until_deadline()),
            );
        } else {
            let since = self.since_stop().map(seconds).unwrap_or_default();
            log::info!("received {signal} from {from} (stop signal #{repeat}, {since} after the first): {what}; deadline unchanged");
        }
    }

    /// SIGTERM and SIGCONT to every process of the tree but the main child.
    fn terminate_rest(&mut self) {
        let main_alive = self.main_status.is_none();
        let mut rest: Vec<Process> = self.tree.members();
        rest.retain(|process| !(main_alive && process.pid == self.main.pid));
        let why = if main_alive {
            format!(
                "main child still running with {} of the grace period left",
                seconds(self.until_deadline())
            )
        } else {
            "main child has exited".to_string()
        };
        if !self.tree.can_list() {
            if self.tree.scope() == Scope::Namespace && !main_alive {
                log::info!("{why}: sending SIGTERM to every remaining process (names unknown: /proc is not this namespace's)");
                let _ = sys::send_signal(-1, Signal::TERM.number());
                let _ = sys::send_signal(-1, Signal::CONT.number());
            }
            return;
        }
        if rest.is_empty() {
            return;
        }
        let mut signalled = Vec::with_capacity(rest.len());
        for process in rest {
            if self.send(&process, Signal::TERM) {
                self.send(&process, Signal::CONT);
                signalled.push(process);
            }
        }
        if !signalled.is_empty() {
            log::info!(
                "{why}: {} processes remain, sending SIGTERM: {}; SIGKILL in {}",
                signalled.len(),
                tree::describe(&signalled),
                seconds(self.until_next_deadline()),
            );
        }
    }

    fn kill_all(&mut self, reason: KillReason) {
        let why = match reason {
            KillReason::NoGracePeriod => "grace period is 0".to_string(),
            KillReason::GracePeriodExpired => format!(
                "grace period of {} expired",
                configured(self.config.grace_period)
            ),
            KillReason::CleanupTimeoutExpired => {
                format!(
                    "cleanup timeout of {} expired",
                    configured(self.config.cleanup_timeout)
                )
            }
        };
        let killed = self.kill_remaining();
        if !killed.is_empty() {
            log::warn!(
                "{why}: SIGKILL to {} processes: {}",
                killed.len(),
                tree::describe(&killed)
            );
        } else if self.main_status.is_none() && !self.tree.can_list() {
            log::warn!("{why}: SIGKILL to the main child {}", self.target());
        }
    }

    /// SIGKILLs every process of the tree not yet killed; returns those it killed now.
    fn kill_remaining(&mut self) -> Vec<Process> {
        let mut killed = Vec::new();
        for process in self.tree.members() {
            let key = (process.pid, process.start_time);
            if self.killed.contains(&key) {
                let _ = self.tree.signal(&process, Signal::KILL); // harmless if it is dying already
                continue;
            }
            if self.send(&process, Signal::KILL) {
                self.killed.insert(key);
                killed.push(process);
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
                "pid {} ({}) survived SIGKILL, state {}{hint}",
                process.pid,
                process.name,
                process.state
            );
        }
        log::error!(
            "giving up on {} processes that did not exit {} after SIGKILL",
            survivors.len(),
            configured(crate::shutdown::UNKILLABLE_WAIT)
        );
    }

    fn on_main_exit(&mut self, raw_status: i32, now: Instant) {
        let status = exit_status::from_wait_status(raw_status);
        self.main_status = Some(status);
        let how = describe_wait_status(raw_status, status);
        match self.shutdown.stopped_at() {
            Some(stopped_at) => log::info!(
                "main child {} {how}, {} after the stop signal",
                self.main_name(),
                seconds(now.saturating_duration_since(stopped_at))
            ),
            None => log::info!("main child {} {how}", self.main_name()),
        }
        self.shutdown.on_main_exit(now);
    }

    fn finish(&self) -> u8 {
        // No status means the main child survived even SIGKILL (grace gave up on it): report it as killed.
        let status = self
            .main_status
            .unwrap_or(128 + Signal::KILL.number() as u8);
        let reported = exit_status::remap_success(status, &self.config.success_exits);
        let timing = self
            .since_stop()
            .map(|since| format!(", {} after the stop signal", seconds(since)))
            .unwrap_or_default();
        if reported == status {
            log::info!("exiting with status {status}{timing}");
        } else {
            log::info!("exiting with status {reported} (the child's {status}, mapped by --success-exit){timing}");
        }
        reported
    }

    /// Sends `signal` to one process of the tree; logs a failure. Returns whether it was sent.
    fn send(&self, process: &Process, signal: Signal) -> bool {
        match self.tree.signal(process, signal) {
            Delivery::Sent => true,
            Delivery::Gone => false,
            Delivery::Failed(err) => {
                log::warn!(
                    "could not send {signal} to pid {} ({}): {err}",
                    process.pid,
                    process.name
                );
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
            log::warn!("could not forward {signal} to {}: {err}", self.target());
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

    fn until_deadline(&self) -> Duration {
        match self.shutdown.phase() {
            Phase::Stopping { deadline, .. } => deadline.saturating_duration_since(Instant::now()),
            _ => self.until_next_deadline(),
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

/// Who sent a signal: a pid of this namespace, or the kernel or another namespace (pid 0).
fn sender(pid: i32) -> String {
    if pid == 0 {
        "outside the namespace".to_string()
    } else {
        format!(
            "pid {pid}{}",
            tree::read_process(pid)
                .map(|process| format!(" ({})", process.name))
                .unwrap_or_default()
        )
    }
}

/// `1.234s`, for measured times.
fn seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// `8s`, `1m 30s`, `500ms`, for configured durations: as the operator wrote them.
fn configured(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}
