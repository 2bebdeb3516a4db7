//! The loop: wait for a signal or the next deadline → reap → translate and forward → advance the shutdown →
//! act. Once the child runs, nothing here returns an error: failures are logged and the loop goes on,
//! because a PID 1 that gives up takes the container with it.
//!
//! Each lifecycle line carries an `event` name and fields (see the README's "Operating grace"), which the
//! JSON log format shows; the names are a stable interface for log pipelines.

use std::io;
use std::time::{Duration, Instant};

use crate::child::MainChild;
use crate::config::Config;
use crate::diagnosis;
use crate::exit_status;
use crate::log_sink;
use crate::reaper;
use crate::remains::{self, Remains, Unlisted};
use crate::shutdown::{Action, KillReason, Phase, Shutdown, UNKILLABLE_WAIT};
use crate::signals::{Received, Signal, SignalSource};
use crate::survey::{self, Detail, Surveyed};
use crate::sys;
use crate::tree::{self, Process, Scope, Tree};
use crate::wording::{
    configured, micros, millis, name_list, pid_list, processes, remain, seconds, sender,
    wait_status,
};

/// Runs the main child's life and the shutdown of its tree; returns grace's exit status.
pub struct Supervisor {
    config: Config,
    signals: SignalSource,
    remains: Remains,
    main: MainChild,
    /// The main child's exit status, once it has been reaped. Until then its pid is safe to signal.
    main_status: Option<u8>,
    /// The main child was sent SIGKILL (and may be dying of it, in uninterruptible sleep).
    main_killed: bool,
    shutdown: Shutdown,
    /// The first stop signal, kept to be forwarded when the pre-stop delay ends.
    first_stop: Option<Received>,
    /// What the main child was sent on the stop signal (after --rewrite), for the diagnosis.
    forwarded_stop: Option<Signal>,
    own_pid: i32,
    /// As PID 1, grace's own children are all gone but processes that entered the namespace from outside
    /// (`kubectl exec`, `nsenter`) remain: they are not grace's children, so no SIGCHLD reports their exit.
    outsiders: bool,
    /// A process refused a signal with EPERM: from then on, each reap looks whether only such processes
    /// remain, which grace never waits for.
    unsignallable_seen: bool,
}

/// How often grace looks whether the processes it did not start are gone, once only they remain.
const OUTSIDER_RECHECK: Duration = Duration::from_millis(50);

/// The survey before a SIGKILL stops reading /proc this long before it, so that the kill is on time.
const SURVEY_MARGIN: Duration = Duration::from_millis(5);

/// The longest command the `started` line shows, in characters.
const MAX_COMMAND_SHOWN: usize = 512;

impl Supervisor {
    pub fn new(config: Config, signals: SignalSource, tree: Tree, main: MainChild) -> Supervisor {
        let shutdown = Shutdown::new(config.timings());
        Supervisor {
            config,
            signals,
            remains: Remains::new(tree),
            main,
            main_status: None,
            main_killed: false,
            shutdown,
            first_stop: None,
            forwarded_stop: None,
            own_pid: std::process::id() as i32,
            outsiders: false,
            unsignallable_seen: false,
        }
    }

    /// Runs until the tree is empty (or its last processes cannot be killed or may not be signalled) and
    /// returns the exit status.
    pub fn run(mut self) -> u8 {
        let mut received = Vec::with_capacity(64);
        // Reaping needs a SIGCHLD (one stands for any number of exits); a child may have exited before the
        // loop started, so the first round reaps regardless.
        let mut child_exited = true;
        loop {
            if child_exited {
                let reaped = reaper::reap_exited(self.main.pid, self.config.warn_on_reap);
                let main_exited = reaped.main_status.is_some();
                if let Some(raw_status) = reaped.main_status {
                    self.on_main_exit(raw_status, Instant::now());
                }
                if reaped.tree_empty {
                    if !self.remains.others_remain() {
                        return self.finish();
                    }
                    self.outsiders = true;
                }
                if (main_exited || self.unsignallable_seen || !self.remains.tree().can_list())
                    && self.nothing_to_wait_for()
                {
                    return self.finish();
                }
            }
            if self.outsiders && !self.remains.others_remain() {
                return self.finish();
            }
            // Every deadline that is due, earliest first (two can fall at the same moment).
            loop {
                match self.shutdown.on_deadline(Instant::now()) {
                    Action::Nothing => break,
                    Action::GiveUp => {
                        self.give_up();
                        return self.finish();
                    }
                    action => {
                        self.perform(action, None);
                        if (self.unsignallable_seen || !self.remains.tree().can_list())
                            && self.nothing_to_wait_for()
                        {
                            return self.finish();
                        }
                    }
                }
            }
            let mut deadline = self.shutdown.next_deadline();
            if self.outsiders {
                // No SIGCHLD tells when a process grace did not start exits: look again shortly.
                let recheck = Instant::now() + OUTSIDER_RECHECK;
                deadline = Some(deadline.map_or(recheck, |deadline| deadline.min(recheck)));
            }
            let log_waiting = log_sink::waiting_descriptor();
            if let Err(err) = self
                .signals
                .next_signals(deadline, log_waiting, &mut received)
            {
                log::error!(event = "error"; "reading signals failed: {err}");
            }
            if log_waiting.is_some() {
                log_sink::flush();
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

    /// Whether processes remain that grace may signal none of, or (without /proc) none it can reach: it
    /// does not wait for them. Says so.
    fn nothing_to_wait_for(&self) -> bool {
        if self.remains.nothing_reachable_remains(self.main_ref()) {
            log::warn!(
                event = "unreachable";
                "the main child and its process group are gone; other children of grace may remain (setsid \
                 daemons), which without /proc it can neither list nor signal: not waiting for them"
            );
            return true;
        }
        if !self.remains.only_unsignallable_remain() {
            return false;
        }
        let left = self.remains.remaining().not_permitted;
        let fate = if self.remains.tree().scope() == Scope::Namespace {
            "the kernel SIGKILLs them when grace, PID 1, exits"
        } else {
            "they go on running"
        };
        log::warn!(
            event = "not_permitted", count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
            "{} {} that grace may not signal (another user's): {}; not waiting for {}: {fate}",
            processes(left.len()), remain(left.len()), tree::describe(&left),
            if left.len() == 1 { "it" } else { "them" },
        );
        true
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
        if self.forward(forwarded).is_err() {
            return;
        }
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
            Action::Survey => self.survey(),
            Action::Sweep => self.sweep(),
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
        let mut failure = None;
        if let Some(forwarded) = forwarded {
            match self.forward_to_main(forwarded) {
                Ok(()) => self.forwarded_stop = Some(forwarded),
                Err(err) => failure = Some(explain(&err)),
            }
        }
        let _ = self.forward_to_main(Signal::CONT);
        // The child was just woken, quite likely onto this CPU: let it run its handler before grace spends
        // time on the log line (measured: ~10 µs off the forwarding latency on 2 cores).
        std::thread::yield_now();
        let from = sender(received.sender_pid); // may read /proc: after the forward, not before
        let what = match (forwarded, failure) {
            (Some(forwarded), None) => format!("forwarded {forwarded} to {}", self.target()),
            (Some(forwarded), Some(why)) => {
                format!("could not forward {forwarded} to {}: {why}", self.target())
            }
            (None, _) => "forwarded nothing (dropped by --rewrite)".to_string(),
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
        if log::log_enabled!(log::Level::Debug) && self.remains.tree().can_list() {
            let members = self.remains.tree().members();
            let parents: std::collections::HashSet<i32> =
                members.iter().map(|process| process.parent_pid).collect();
            for process in members
                .iter()
                .filter(|process| !(main_alive && process.pid == self.main.pid))
            {
                let has_children = parents.contains(&process.pid);
                let diagnosis = diagnosis::diagnose(process, Signal::TERM, false, has_children);
                self.log_diagnosis(process, Signal::TERM, &diagnosis, log::Level::Debug);
            }
        }
        // Without /proc the rest can only be reached together with the main child: acceptable when it was
        // sent SIGTERM already (a repeat, as a repeated stop signal would be), not when it was sent another.
        let main_had_term = self.forwarded_stop == Some(Signal::TERM);
        let signalled =
            self.remains
                .signal_rest(Signal::TERM, true, self.main_ref(), main_had_term);
        self.log_not_permitted(&signalled.newly_not_permitted, Signal::TERM);
        self.log_failures(&signalled.failed, Signal::TERM);
        let until_kill = seconds(self.until_kill());
        match signalled.unlisted {
            Some(Unlisted::Nothing) => log::warn!(
                event = "terminating", count = 0;
                "{why}: no SIGTERM to the rest of the tree: without /proc it cannot be told apart from the main \
                 child, which was sent {}; what remains gets SIGKILL in {until_kill}",
                self.forwarded_stop.map_or_else(|| "nothing".to_string(), |signal| signal.to_string()),
            ),
            Some(Unlisted::Namespace) => log::info!(
                event = "terminating";
                "{why}: SIGTERM to every process of the namespace{} (kill(-1): /proc is not this namespace's, so \
                 they cannot be listed or named); SIGKILL in {until_kill}",
                if main_alive { ", the main child included" } else { "" },
            ),
            Some(Unlisted::MainGroup(group)) => log::info!(
                event = "terminating";
                "{why}: SIGTERM to the main child's process group {group}{}; without /proc, processes outside it \
                 (setsid daemons) cannot be listed or signalled; SIGKILL in {until_kill}",
                if main_alive { ", the main child included" } else { "" },
            ),
            None if !signalled.sent.is_empty() => {
                let sent = &signalled.sent;
                log::info!(
                    event = "terminating", count = sent.len(), pids:% = pid_list(sent), names:% = name_list(sent);
                    "{why}: {} {}, sending SIGTERM: {}; SIGKILL in {until_kill}",
                    processes(sent.len()), remain(sent.len()), tree::describe(sent),
                );
            }
            None => {}
        }
    }

    /// The final signal (`--final-signal`) to everything that remains, ahead of SIGKILL.
    fn send_final(&mut self) {
        let signal = self.config.final_signal;
        let main = self.main_ref();
        if main.alive && self.remains.tree().can_list() {
            let _ = self.forward_to_main(signal);
        }
        let signalled = self.remains.signal_rest(signal, false, main, true);
        self.log_not_permitted(&signalled.newly_not_permitted, signal);
        self.log_failures(&signalled.failed, signal);
        let mut sent = signalled.sent;
        if main.alive {
            if let Some(listed) = tree::read_process(main.pid) {
                sent.insert(0, listed);
            }
        }
        let whom = match signalled.unlisted {
            Some(Unlisted::Namespace) => "every process of the namespace (kill(-1))".to_string(),
            Some(Unlisted::MainGroup(group)) => format!("the main child's process group {group}"),
            _ => format!("{}: {}", processes(sent.len()), tree::describe(&sent)),
        };
        log::warn!(
            event = "final_signal", signal:% = signal, count = sent.len(), pids:% = pid_list(&sent),
            names:% = name_list(&sent);
            "final signal {signal} to {whom}; SIGKILL in {}", seconds(self.until_kill()),
        );
    }

    /// Reads what remains, for the report of the SIGKILL due shortly.
    fn survey(&mut self) {
        let budget_end = self
            .shutdown
            .kill_time()
            .and_then(|kill_at| kill_at.checked_sub(SURVEY_MARGIN))
            .unwrap_or_else(Instant::now);
        let sent = self.sent_signals();
        self.remains.survey(self.main_ref(), sent, budget_end);
    }

    /// What each process was sent before the SIGKILL: the main child its forwarded stop signal, the rest
    /// SIGTERM.
    fn sent_signals(&self) -> impl Fn(&Process) -> Signal {
        let main_pid = self.main.pid;
        let to_main = self.forwarded_stop.unwrap_or(Signal::TERM);
        move |process: &Process| {
            if process.pid == main_pid {
                to_main
            } else {
                Signal::TERM
            }
        }
    }

    fn kill_all(&mut self, reason: KillReason) {
        let main = self.main_ref();
        let killed = self.remains.kill_all(main, self.sent_signals());
        let main_refused = killed
            .newly_not_permitted
            .iter()
            .any(|process| process.pid == main.pid);
        // How late the SIGKILL went out: from when it was due to when it had reached every process known.
        let delay = killed
            .sent_at
            .saturating_duration_since(self.shutdown.kill_due().unwrap_or(killed.sent_at));
        self.main_killed |= main.alive && !main_refused;
        let killed_any = !killed.survivors.is_empty() || main.alive;
        self.shutdown.on_swept(Instant::now(), killed_any);
        let (why, reason_name) = self.kill_reason(reason);
        self.log_not_permitted(&killed.newly_not_permitted, Signal::KILL);
        let survivors = &killed.survivors;
        if reason != KillReason::NoGracePeriod && !survivors.is_empty() {
            log::warn!(
                event = "deadline", reason = reason_name, count = survivors.len();
                "{why}: {} still alive", processes(survivors.len())
            );
            self.log_survivors_report(survivors);
        }
        let listed: Vec<Process> = survivors
            .iter()
            .map(|entry| entry.process.clone())
            .collect();
        let message = match killed.unlisted {
            Some(Unlisted::Namespace) => format!(
                "{why}: SIGKILL to every process of the namespace (kill(-1): /proc is not this namespace's, so \
                 they cannot be named)"
            ),
            Some(Unlisted::MainGroup(group)) => format!(
                "{why}: SIGKILL to the main child's process group {group}; without /proc, processes outside it \
                 cannot be listed or signalled"
            ),
            _ if !listed.is_empty() => format!(
                "{why}: SIGKILL to {}: {}; the last sent {} after it was due",
                processes(listed.len()),
                tree::describe(&listed),
                micros(delay)
            ),
            _ => return,
        };
        let (count, pids, names) = (listed.len(), pid_list(&listed), name_list(&listed));
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        // elapsed_ms counts from the stop signal, so a cleanup after the main child exited on its own has none.
        match self.since_stop() {
            Some(since) => log::warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str(),
                delay_us = delay_us, elapsed_ms = millis(since); "{message}"
            ),
            None => log::warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str(),
                delay_us = delay_us; "{message}"
            ),
        }
    }

    /// Full lines for the first survivors, then one summary of the rest.
    fn log_survivors_report(&self, survivors: &[Surveyed]) {
        let detailed = survivors.len().min(survey::DETAILED);
        let (first, rest) = survivors.split_at(detailed);
        for entry in first {
            match &entry.detail {
                Detail::Full(diagnosis) => {
                    self.log_diagnosis(&entry.process, entry.sent, diagnosis, log::Level::Warn)
                }
                detail => {
                    let process = &entry.process;
                    let what = match detail {
                        Detail::Disposition(disposition) => {
                            format!("{} {}", disposition.as_str(), entry.sent)
                        }
                        _ => "not examined (it appeared after the survey, or time ran out)"
                            .to_string(),
                    };
                    log::warn!(
                        event = "survivor", pid = process.pid, name = process.name.as_str(),
                        parent_pid = process.parent_pid, state:% = process.state, signal:% = entry.sent;
                        "  pid {} ({}), parent {}, state {}, {what}",
                        process.pid, process.name, process.parent_pid, process.state,
                    );
                }
            }
        }
        if let Some(summary) = survey::summary(rest) {
            log::warn!(
                event = "survivors_summary", count = rest.len(), summary = summary.as_str();
                "  {summary}"
            );
        }
    }

    /// SIGKILL to what appeared since the last one.
    fn sweep(&mut self) {
        let new = self.remains.sweep(self.main_ref());
        self.shutdown.on_swept(Instant::now(), !new.is_empty());
        if !new.is_empty() {
            log::warn!(
                event = "swept", count = new.len(), pids:% = pid_list(&new), names:% = name_list(&new);
                "SIGKILL to {} that appeared since the last SIGKILL: {}",
                processes(new.len()), tree::describe(&new),
            );
        }
    }

    fn kill_reason(&self, reason: KillReason) -> (String, &'static str) {
        match reason {
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

    /// The end of waiting: a last sweep, then what survived SIGKILL, and what grace may not signal.
    fn give_up(&mut self) {
        self.sweep();
        let remaining = self.remains.remaining();
        for process in remaining.survived_kill.iter().take(survey::DETAILED) {
            let hint = match process.state {
                'D' => " (uninterruptible sleep: blocked in the kernel, e.g. on I/O or a hung mount; SIGKILL takes effect when that ends)",
                _ => "",
            };
            log::error!(
                event = "unkillable", pid = process.pid, name = process.name.as_str(), state:% = process.state;
                "pid {} ({}) survived SIGKILL, state {}{hint}", process.pid, process.name, process.state
            );
        }
        let survived = &remaining.survived_kill;
        if !survived.is_empty() {
            log::error!(
                event = "gave_up", count = survived.len(), pids:% = pid_list(survived), names:% = name_list(survived);
                "giving up on {} that did not exit {} after SIGKILL: {}",
                processes(survived.len()), configured(UNKILLABLE_WAIT), tree::describe(survived),
            );
        }
        let other = &remaining.other;
        if !other.is_empty() {
            log::error!(
                event = "gave_up", count = other.len(), pids:% = pid_list(other), names:% = name_list(other);
                "giving up on {} that appeared after the last SIGKILL: {}",
                processes(other.len()), tree::describe(other),
            );
        }
        if !remaining.not_permitted.is_empty() {
            self.unsignallable_seen = true;
            let _ = self.nothing_to_wait_for();
        }
        if self.main_status.is_none() && !self.remains.tree().can_list() {
            log::error!(
                event = "gave_up";
                "giving up: the main child {} was sent SIGKILL and has not exited {} after it",
                self.main_name(), configured(UNKILLABLE_WAIT),
            );
        }
    }

    fn log_not_permitted(&mut self, processes_refused: &[Process], signal: Signal) {
        if processes_refused.is_empty() {
            return;
        }
        self.unsignallable_seen = true;
        log::warn!(
            event = "not_permitted", signal:% = signal, count = processes_refused.len(),
            pids:% = pid_list(processes_refused), names:% = name_list(processes_refused);
            "{signal} not permitted for {} (another user's, or from a more privileged namespace): {}",
            processes(processes_refused.len()), tree::describe(processes_refused),
        );
    }

    fn log_failures(&self, failures: &[(Process, io::Error)], signal: Signal) {
        for (process, err) in failures {
            log::warn!(event = "error"; "could not send {signal} to pid {} ({}): {err}", process.pid, process.name);
        }
    }

    fn on_main_exit(&mut self, raw_status: i32, now: Instant) {
        let status = exit_status::from_wait_status(raw_status);
        self.main_status = Some(status);
        let how = wait_status(raw_status, status);
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
        self.warn_if_the_shell_did_not_exec(raw_status);
        self.shutdown.on_main_exit(now);
    }

    /// The classic hang: a shell as the main child dies of the stop signal, and the server it started (rather
    /// than exec'd) never hears of it. Only when a signal ended the shell — one that exits with a status did
    /// not die of the stop signal (it may have failed to fork) — and not when grace killed it; and only for
    /// processes that descend from grace (not those an `nsenter` or `kubectl exec` started).
    fn warn_if_the_shell_did_not_exec(&self, raw_status: i32) {
        use std::os::unix::process::ExitStatusExt;
        let killed_by_a_signal = std::process::ExitStatus::from_raw(raw_status)
            .signal()
            .is_some();
        let killed_by_grace = matches!(self.shutdown.phase(), Phase::Killing { .. });
        if !killed_by_a_signal
            || killed_by_grace
            || !diagnosis::is_shell(&self.main_name_only())
            || !self.remains.tree().can_list()
        {
            return;
        }
        let left = descended_from_grace(self.remains.tree().members(), self.own_pid_in_tree());
        if !left.is_empty() {
            log::warn!(
                event = "shell_did_not_exec", pid = self.main.pid, count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
                "the main child was a shell and {} outlived it: {}; a shell that does not `exec` its server \
                 does not pass signals on to it (use `exec server` in the script, or run the server directly)",
                processes(left.len()), tree::describe(&left),
            );
        }
    }

    /// grace's pid as the tree's listing names parents.
    fn own_pid_in_tree(&self) -> i32 {
        match self.remains.tree().scope() {
            Scope::Namespace => 1,
            Scope::Descendants { root } => root,
        }
    }

    fn finish(&self) -> u8 {
        let status = match self.main_status {
            Some(status) => status,
            // Not reaped: it is alive, or dying in uninterruptible sleep. As PID 1 the kernel SIGKILLs it as
            // grace exits, and a SIGKILL already sent ends it once the kernel lets go of it: either way it dies
            // of SIGKILL. Otherwise it goes on running, and grace must not report a death.
            None if self.remains.tree().scope() == Scope::Namespace || self.main_killed => {
                128 + Signal::KILL.number() as u8
            }
            None => {
                log::error!(
                    event = "main_running";
                    "the main child {} is still running (grace may not signal it): exiting with status {}",
                    self.main_name(), exit_status::INIT_FAILED,
                );
                exit_status::INIT_FAILED
            }
        };
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

    fn main_ref(&self) -> remains::MainChild {
        remains::MainChild {
            pid: self.main.pid,
            alive: self.main_status.is_none(),
        }
    }

    /// Forwards to the main child, or to its process group with `-g`, and logs a failure. Only called before
    /// it is reaped, so its pid (and the group's) cannot have been reused.
    fn forward(&self, signal: Signal) -> io::Result<()> {
        let sent = self.forward_to_main(signal);
        if let Err(err) = &sent {
            log::warn!(event = "error"; "could not forward {signal} to {}: {}", self.target(), explain(err));
        }
        sent
    }

    fn forward_to_main(&self, signal: Signal) -> io::Result<()> {
        let target = if self.config.process_group {
            -self.main.pid
        } else {
            self.main.pid
        };
        sys::send_signal(target, signal.number())
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

/// An error from signalling, said plainly where it has a plain meaning.
fn explain(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => "not permitted (it runs as another user)".to_string(),
        Some(libc::ESRCH) => "no such process".to_string(),
        _ => err.to_string(),
    }
}

/// The members whose chain of parents, within the listing, leads to `root` (grace) without passing through
/// a process whose parent is outside the namespace (pid 0: started by `nsenter` or `kubectl exec`).
fn descended_from_grace(members: Vec<Process>, root: i32) -> Vec<Process> {
    use std::collections::HashMap;
    let parents: HashMap<i32, i32> = members
        .iter()
        .map(|process| (process.pid, process.parent_pid))
        .collect();
    let leads_to_root = |pid: i32| {
        let mut current = pid;
        // A chain longer than the listing would be a loop: pid reuse in a racing listing.
        for _ in 0..=parents.len() {
            match parents.get(&current) {
                Some(&parent) if parent == root => return true,
                Some(&parent) => current = parent,
                None => return false,
            }
        }
        false
    };
    members
        .into_iter()
        .filter(|process| leads_to_root(process.pid))
        .collect()
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

    fn process(pid: i32, parent_pid: i32) -> Process {
        Process {
            pid,
            parent_pid,
            name: format!("p{pid}"),
            state: 'S',
            start_time: 0,
            exited: false,
            wait_status: None,
        }
    }

    #[test]
    fn processes_under_an_outsider_are_not_grace_s() {
        let members = vec![
            process(2, 1), // the shell's server
            process(3, 2), // its worker
            process(7, 0), // entered from outside (nsenter)
            process(8, 7), // a child of the outsider
            process(9, 1), // an orphan, reparented to grace
        ];
        let ours: Vec<i32> = descended_from_grace(members, 1)
            .iter()
            .map(|process| process.pid)
            .collect();
        assert_eq!(ours, [2, 3, 9]);
    }

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
