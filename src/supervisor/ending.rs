//! What the supervisor does to the tree as a generation ends — SIGTERM to the rest, the final signal, the
//! survey, SIGKILL, the sweeps, giving up — and the log lines that say so. The shutdown machine decides
//! when; this carries it out.

use std::io;
use std::time::{Duration, Instant};

use super::{Supervisor, SURVEY_MARGIN};
use crate::diagnosis;
use crate::remains::Unlisted;
use crate::shutdown::{KillReason, Phase, UNKILLABLE_WAIT};
use crate::signals::Signal;
use crate::survey::{self, Detail, Surveyed};
use crate::tree::{self, Process, Scope};
use crate::wording::{configured, micros, millis, name_list, pid_list, processes, remain, seconds};

impl Supervisor {
    /// Whether processes remain that grace may signal none of, or (without /proc) none it can reach: it
    /// does not wait for them. Says so.
    pub(super) fn nothing_to_wait_for(&self) -> bool {
        if self.remains.nothing_reachable_remains(self.main_ref()) {
            warn!(
                event = "unreachable";
                "the main child and its process group are gone; other children of grace may remain (setsid \
                 daemons), which without /proc it can neither list nor signal: not waiting for them"
            );
            return true;
        }
        if self.run.main_refused
            && self.run.main_status.is_none()
            && !self.remains.tree().can_list()
        {
            // With /proc, the listing below says this of every process grace may not signal.
            warn!(
                event = "not_permitted", signal:% = Signal::KILL, count = 1, pids:% = self.run.main.pid,
                names:% = self.main_name_only();
                "SIGKILL not permitted for the main child {} (another user's); without /proc nothing else can \
                 be listed: not waiting for it",
                self.main_name(),
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
        warn!(
            event = "not_permitted", count = left.len(), pids:% = pid_list(&left), names:% = name_list(&left);
            "{} {} that grace may not signal (another user's): {}; not waiting for {}: {fate}",
            processes(left.len()), remain(left.len()), tree::describe(&left),
            if left.len() == 1 { "it" } else { "them" },
        );
        true
    }

    /// SIGTERM and SIGCONT to every process of the tree but the main child.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn terminate_rest(&mut self) {
        let main_alive = self.run.main_status.is_none();
        let why = if main_alive {
            format!(
                "main child still running with {} of the grace period left",
                seconds(self.until_grace_deadline())
            )
        } else {
            "main child has exited".to_string()
        };
        if crate::logging::enabled(crate::logging::Level::Debug) && self.remains.tree().can_list() {
            let members = self.remains.members();
            let parents: std::collections::HashSet<i32> =
                members.iter().map(|process| process.parent_pid).collect();
            for process in members
                .iter()
                .filter(|process| !self.main_ref().is(process))
            {
                let has_children = parents.contains(&process.pid);
                let diagnosis = diagnosis::diagnose(process, Signal::TERM, false, has_children);
                self.log_diagnosis(
                    process,
                    Signal::TERM,
                    &diagnosis,
                    crate::logging::Level::Debug,
                );
            }
        }
        // Without /proc the rest can only be reached together with the main child: acceptable when it was
        // sent SIGTERM already (a repeat, as a repeated stop signal would be), not when it was sent another.
        let main_had_term = self.run.forwarded_stop == Some(Signal::TERM);
        let signalled =
            self.remains
                .signal_rest(Signal::TERM, true, self.main_ref(), main_had_term);
        self.log_not_permitted(&signalled.newly_not_permitted, Signal::TERM);
        self.log_failures(&signalled.failed, Signal::TERM);
        if signalled.unlisted.is_none() {
            // The survey before the SIGKILL begins early enough to read them all.
            self.run
                .shutdown
                .on_rest_listed(signalled.sent.len() + usize::from(main_alive));
        }
        let until_kill = seconds(self.until_kill());
        match signalled.unlisted {
            Some(Unlisted::Nothing) => warn!(
                event = "terminating", count = 0;
                "{why}: no SIGTERM to the rest of the tree: without /proc it cannot be told apart from the main \
                 child, which was sent {}; what remains gets SIGKILL in {until_kill}",
                self.run.forwarded_stop.map_or_else(|| "nothing".to_string(), |signal| signal.to_string()),
            ),
            Some(Unlisted::Namespace) => info!(
                event = "terminating";
                "{why}: SIGTERM to every process of the namespace{} (kill(-1): /proc is not this namespace's, so \
                 they cannot be listed or named); SIGKILL in {until_kill}",
                if main_alive { ", the main child included" } else { "" },
            ),
            Some(Unlisted::MainGroup(group)) => info!(
                event = "terminating";
                "{why}: SIGTERM to the main child's process group {group}{}; without /proc, processes outside it \
                 (setsid daemons) cannot be listed or signalled; SIGKILL in {until_kill}",
                if main_alive { ", the main child included" } else { "" },
            ),
            None if !signalled.sent.is_empty() => {
                let sent = &signalled.sent;
                info!(
                    event = "terminating", count = sent.len(), pids:% = pid_list(sent), names:% = name_list(sent);
                    "{why}: {} {}, sending SIGTERM: {}; SIGKILL in {until_kill}",
                    processes(sent.len()), remain(sent.len()), tree::describe(sent),
                );
            }
            None => {}
        }
    }

    /// The final signal (`--final-signal`) to everything that remains, ahead of SIGKILL.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn send_final(&mut self) {
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
        warn!(
            event = "final_signal", signal:% = signal, count = sent.len(), pids:% = pid_list(&sent),
            names:% = name_list(&sent);
            "final signal {signal} to {whom}; SIGKILL in {}", seconds(self.until_kill()),
        );
    }

    /// Reads what remains, for the report of the SIGKILL due shortly.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn survey(&mut self) {
        let budget_end = self
            .run
            .shutdown
            .kill_time()
            .and_then(|kill_at| kill_at.checked_sub(SURVEY_MARGIN))
            .unwrap_or_else(Instant::now);
        let sent = self.sent_signals();
        let began = Instant::now();
        if self.remains.survey(self.main_ref(), sent, budget_end) {
            self.run.surveyed_at = Some(began);
        }
    }

    /// What each process was sent before the SIGKILL: the main child its forwarded stop signal, the rest
    /// SIGTERM.
    pub(super) fn sent_signals(&self) -> impl Fn(&Process) -> Signal {
        let main_pid = self.run.main.pid;
        let to_main = self.run.forwarded_stop.unwrap_or(Signal::TERM);
        move |process: &Process| {
            if process.pid == main_pid {
                to_main
            } else {
                Signal::TERM
            }
        }
    }

    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn kill_all(&mut self, reason: KillReason) {
        let main = self.main_ref();
        let killed = self.remains.kill_all(main, self.sent_signals());
        // Not from newly_not_permitted: without /proc the refused main child is not listed there.
        let main_refused = killed.main_refused;
        self.run.main_refused |= main_refused;
        // How late the SIGKILL went out: from when it was due to when it had reached every process known.
        let delay = killed
            .sent_at
            .saturating_duration_since(self.run.shutdown.kill_due().unwrap_or(killed.sent_at));
        self.run.main_killed |= main.alive && !main_refused;
        self.run.shutdown.on_killed(Instant::now());
        let (why, reason_name) = self.kill_reason(reason);
        self.log_not_permitted(&killed.newly_not_permitted, Signal::KILL);
        let survivors = &killed.survivors;
        if reason != KillReason::NoGracePeriod && !survivors.is_empty() {
            let examined = survivors
                .iter()
                .filter(|entry| !matches!(entry.detail, Detail::NotExamined))
                .count();
            // How long before the SIGKILL was due the report was read (longer for a larger tree); zero when
            // grace woke too late to read it.
            let lead = match (self.run.surveyed_at.take(), self.run.shutdown.kill_due()) {
                (Some(surveyed_at), Some(due)) => due.saturating_duration_since(surveyed_at),
                _ => Duration::ZERO,
            };
            warn!(
                event = "deadline", reason = reason_name, count = survivors.len(), examined = examined,
                surveyed_ms = millis(lead);
                "{why}: {} still alive ({examined} examined {} before it)",
                processes(survivors.len()), seconds(lead),
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
            Some(since) => warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str(),
                delay_us = delay_us, elapsed_ms = millis(since); "{message}"
            ),
            None => warn!(
                event = "escalated", reason = reason_name, count = count, pids = pids.as_str(), names = names.as_str(),
                delay_us = delay_us; "{message}"
            ),
        }
    }

    /// Full lines for the first survivors, then one summary of the rest.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn log_survivors_report(&self, survivors: &[Surveyed]) {
        let detailed = survivors.len().min(survey::DETAILED);
        let (first, rest) = survivors.split_at(detailed);
        for entry in first {
            match &entry.detail {
                Detail::Full(diagnosis) => self.log_diagnosis(
                    &entry.process,
                    entry.sent,
                    diagnosis,
                    crate::logging::Level::Warn,
                ),
                detail => {
                    let process = &entry.process;
                    let what = match detail {
                        Detail::Disposition(disposition) => {
                            format!("{} {}", disposition.as_str(), entry.sent)
                        }
                        _ => "not examined (it appeared after the survey, or time ran out)"
                            .to_string(),
                    };
                    warn!(
                        event = "survivor", pid = process.pid, name = process.name.as_str(),
                        parent_pid = process.parent_pid, state:% = process.state, signal:% = entry.sent;
                        "  pid {} ({}), parent {}, state {}, {what}",
                        process.pid, process.name, process.parent_pid, process.state,
                    );
                }
            }
        }
        if let Some(summary) = survey::summary(rest) {
            warn!(
                event = "survivors_summary", count = rest.len(), summary = summary.as_str();
                "  {summary}"
            );
        }
    }

    /// SIGKILL to what appeared since the last one.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn sweep(&mut self) {
        let new = self.remains.sweep(self.main_ref());
        self.run.shutdown.on_swept(Instant::now(), !new.is_empty());
        if !new.is_empty() {
            warn!(
                event = "swept", count = new.len(), pids:% = pid_list(&new), names:% = name_list(&new);
                "SIGKILL to {} that appeared since the last SIGKILL: {}",
                processes(new.len()), tree::describe(&new),
            );
        }
    }

    /// The tree is empty after its SIGKILL: how long that took, and how many sweeps (a fork storm makes
    /// them find processes forked since).
    pub(super) fn log_emptied(&self) {
        if !matches!(self.run.shutdown.phase(), Phase::Killing { .. }) {
            return;
        }
        let sweeps = self.run.shutdown.sweeps();
        let since = self.since_kill_due();
        info!(
            event = "emptied", sweeps = sweeps.done, sweeps_found = sweeps.found, elapsed_ms = millis(since);
            "the tree is empty {} after the SIGKILL was due; sweeps since: {}, {} of them finding processes \
             forked since",
            seconds(since), sweeps.done, sweeps.found,
        );
    }

    /// Since the last SIGKILL was due.
    fn since_kill_due(&self) -> std::time::Duration {
        self.run
            .shutdown
            .kill_due()
            .map(|due| due.elapsed())
            .unwrap_or_default()
    }

    pub(super) fn kill_reason(&self, reason: KillReason) -> (String, &'static str) {
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
    pub(super) fn log_diagnosis(
        &self,
        process: &Process,
        sent: Signal,
        diagnosis: &diagnosis::Diagnosis,
        level: crate::logging::Level,
    ) {
        let role = if process.pid == self.run.main.pid {
            "main child "
        } else {
            ""
        };
        log!(
            level,
            event = "survivor", pid = process.pid, name = process.name.as_str(), parent_pid = process.parent_pid,
            state:% = process.state, command_line = diagnosis.command_line.as_str(), signal:% = sent,
            disposition = diagnosis.disposition.as_str(), hint = diagnosis.hint.as_str();
            "  {role}pid {} ({}), parent {}, state {}, {} {sent}: {} — `{}`",
            process.pid, process.name, process.parent_pid, process.state, diagnosis.disposition.as_str(),
            diagnosis.hint, diagnosis.command_line,
        );
    }

    /// The end of waiting: a last sweep, then what survived SIGKILL, and what grace may not signal.
    #[inline(never)] // only a shutdown needs it: kept out of the pages an idle grace maps (tools/hot-functions)
    pub(super) fn give_up(&mut self) {
        self.sweep();
        let remaining = self.remains.remaining();
        for process in remaining.survived_kill.iter().take(survey::DETAILED) {
            let hint = match diagnosis::frozen_by(process.pid) {
                Some(freezer) => format!(" ({})", freezer.hint()),
                None if process.state == 'D' => " (uninterruptible sleep: blocked in the kernel, e.g. on I/O, a \
                    hung mount, or a cgroup freezer grace cannot see; SIGKILL takes effect when that ends)"
                    .to_string(),
                None => String::new(),
            };
            error!(
                event = "unkillable", pid = process.pid, name = process.name.as_str(), state:% = process.state;
                "pid {} ({}) survived SIGKILL, state {}{hint}", process.pid, process.name, process.state
            );
        }
        let survived = &remaining.survived_kill;
        if !survived.is_empty() {
            error!(
                event = "gave_up", count = survived.len(), pids:% = pid_list(survived), names:% = name_list(survived);
                "giving up on {} that did not exit {} after SIGKILL: {}",
                processes(survived.len()), configured(UNKILLABLE_WAIT), tree::describe(survived),
            );
        }
        let other = &remaining.other;
        if !other.is_empty() {
            error!(
                event = "gave_up", count = other.len(), pids:% = pid_list(other), names:% = name_list(other);
                "giving up on {} that appeared after the last SIGKILL: {}",
                processes(other.len()), tree::describe(other),
            );
        }
        if !remaining.not_permitted.is_empty() {
            self.unsignallable_seen = true;
            let _ = self.nothing_to_wait_for();
        }
        if self.run.main_status.is_none() && self.run.main_killed && !self.remains.tree().can_list()
        {
            error!(
                event = "gave_up";
                "giving up: the main child {} was sent SIGKILL and has not exited {} after it",
                self.main_name(), configured(UNKILLABLE_WAIT),
            );
        }
    }

    pub(super) fn log_not_permitted(&mut self, processes_refused: &[Process], signal: Signal) {
        if processes_refused.is_empty() {
            return;
        }
        self.unsignallable_seen = true;
        warn!(
            event = "not_permitted", signal:% = signal, count = processes_refused.len(),
            pids:% = pid_list(processes_refused), names:% = name_list(processes_refused);
            "{signal} not permitted for {} (another user's, or from a more privileged namespace): {}",
            processes(processes_refused.len()), tree::describe(processes_refused),
        );
    }

    pub(super) fn log_failures(&self, failures: &[(Process, io::Error)], signal: Signal) {
        for (process, err) in failures {
            warn!(event = "error"; "could not send {signal} to pid {} ({}): {err}", process.pid, process.name);
        }
    }
}
