//! What remains of the tree once a shutdown has begun: signalling it, and keeping account of what each
//! process was sent, so that the log says exactly what happened — "SIGKILL to", "survived SIGKILL", "may not
//! be signalled" — and grace never waits for a process it cannot end.
//!
//! Where /proc cannot list the tree, what can still be reached is signalled as a whole: as PID 1 every other
//! process of the namespace with kill(-1); as a subreaper the main child's process group.
//!
//! As PID 1, a restart reaches only the run's own processes: processes that entered the namespace from
//! outside (`kubectl exec`, `nsenter`) are not its business, so they are neither listed, signalled nor
//! waited for, and kill(-1), which would reach them, is not used (see [`Reach`]).

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Instant;

use crate::signals::Signal;
use crate::survey::{self, Survey, Surveyed};
use crate::sys;
use crate::tree::{Delivery, Process, Scope, Tree};

/// Descriptors kept free for what grace opens besides its pins on the tree (its signalfd, the log,
/// /proc files, the child's pipes).
const RESERVED_DESCRIPTORS: u64 = 64;

/// How many listings one sweep makes, each stopping what the last did not see, before it SIGKILLs what it
/// stopped. A listing that finds nothing new ends it sooner, as it nearly always does: only a process
/// that was not yet stopped can have forked since.
const STOP_ROUNDS: usize = 16;

/// The main child, as far as the tree's signalling is concerned.
#[derive(Clone, Copy, Debug)]
pub struct MainChild {
    pub pid: i32,
    /// Not reaped yet: its pid (and its process group's id) cannot have been reused, so plain kill() is
    /// safe, and pidfds are not needed.
    pub alive: bool,
}

impl MainChild {
    /// Whether `process` is the main child, alive: it gets its own signals, by pid.
    pub fn is(&self, process: &Process) -> bool {
        self.alive && process.pid == self.pid
    }
}

/// What one round of signalling came to.
#[derive(Debug, Default)]
pub struct Signalled {
    /// Processes the signal was delivered to.
    pub sent: Vec<Process>,
    /// Processes grace may not signal, seen for the first time in this round.
    pub newly_not_permitted: Vec<Process>,
    /// Other failures, each with its process (already logged by nobody: the caller logs them).
    pub failed: Vec<(Process, std::io::Error)>,
    /// /proc could not list the tree, so the signal went to what could be reached as a whole.
    pub unlisted: Option<Unlisted>,
}

/// Where a signal went when /proc could not list the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlisted {
    /// kill(-1): every process of the namespace, the main child included.
    Namespace,
    /// kill(-group): the main child's process group.
    MainGroup(i32),
    /// Nothing could be reached (or nothing was wanted).
    Nothing,
}

/// What remained at a SIGKILL.
#[derive(Debug)]
pub struct Killed {
    /// When grace made its last SIGKILL call for the processes known before it (those forked since the
    /// survey come after a listing). Taken before the call: the kernel's delivery to a thousand processes
    /// takes it tens of milliseconds more, whoever sends them, while the victims' exits take the CPU.
    pub sent_at: Instant,
    /// The processes SIGKILLed, in the survey's order: what was surveyed, then what appeared since.
    pub survivors: Vec<Surveyed>,
    pub newly_not_permitted: Vec<Process>,
    pub unlisted: Option<Unlisted>,
    /// The main child's SIGKILL was refused (EPERM), whether or not /proc could name it.
    pub main_refused: bool,
}

/// Which processes the end of a generation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The whole tree: as PID 1 every other process of the namespace, processes that entered it from outside
    /// included. The final stop: as grace exits the kernel would SIGKILL them anyway, and this way they get
    /// their SIGTERM first.
    Everything,
    /// The run's own processes only: as PID 1, not those that entered the namespace from outside and their
    /// descendants (see [`crate::tree::mark_visitors`]). A restart: it starts the command again, and what
    /// an operator runs beside it is none of its business.
    Run,
}

/// The account of what was sent to whom.
#[derive(Debug)]
pub struct Remains {
    tree: Tree,
    reach: Reach,
    /// A listing of this generation's end found processes that entered from outside: grace's children may
    /// include some (a visitor's orphans), so the run's end must be read from a listing.
    visitors_seen: Cell<bool>,
    /// Processes sent SIGKILL, by (pid, start time).
    killed: HashSet<(i32, u64)>,
    /// Processes grace may not signal (EPERM), by (pid, start time).
    not_permitted: HashSet<(i32, u64)>,
    survey: Option<Survey>,
}

impl Remains {
    pub fn new(tree: Tree) -> Remains {
        Remains {
            tree,
            reach: Reach::Everything,
            visitors_seen: Cell::new(false),
            killed: HashSet::new(),
            not_permitted: HashSet::new(),
            survey: None,
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// A new generation starts: nothing of the last one's account applies to it, and until something
    /// decides otherwise its end is a final stop's.
    pub fn start_over(&mut self) {
        self.killed.clear();
        self.not_permitted.clear();
        self.survey = None;
        self.reach = Reach::Everything;
        self.visitors_seen.set(false);
    }

    /// What the end of this generation reaches from now on.
    pub fn set_reach(&mut self, reach: Reach) {
        self.reach = reach;
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Whether visitors are left out: as PID 1, for a restart. (Without /proc nothing tells them apart, and
    /// the paths for that case reach the whole namespace with kill(-1) whatever the reach.)
    fn spares_visitors(&self) -> bool {
        self.reach == Reach::Run && self.tree.scope() == Scope::Namespace
    }

    /// The live processes this generation's end reaches: the tree's members, less the processes that
    /// entered from outside while they are spared.
    pub fn members(&self) -> Vec<Process> {
        let mut members = self.tree.members();
        if self.spares_visitors() {
            let before = members.len();
            members.retain(|process| !process.entered_from_outside);
            if members.len() < before {
                self.visitors_seen.set(true);
            }
        }
        members
    }

    /// Whether a listing of this generation's end found processes that entered from outside.
    pub fn visitors_seen(&self) -> bool {
        self.visitors_seen.get()
    }

    /// Whether any process of the run remains, as a listing shows (true when /proc cannot tell).
    pub fn run_remains(&self) -> bool {
        !self.tree.can_list() || !self.members().is_empty()
    }

    /// SIGTERM and SIGCONT to the processes that entered from outside: a restart's cleanup that spared
    /// them became the final stop, which ends them too. Returns those it reached.
    pub fn terminate_visitors(&mut self) -> Signalled {
        let mut result = Signalled::default();
        if self.tree.scope() != Scope::Namespace || !self.tree.can_list() {
            return result;
        }
        for process in self.tree.members() {
            if process.entered_from_outside && self.deliver(&process, Signal::TERM, &mut result) {
                let _ = self.tree.signal(&process, Signal::CONT);
            }
        }
        result
    }

    /// Sends `signal` (and SIGCONT after it when `and_continue`, so that a stopped process can act on it) to
    /// every process of the tree except the main child while it is alive (it gets its own signals). Without
    /// /proc: as a whole, where that does not also reach the main child, unless `main_may_share` says the
    /// main child may get this signal too.
    pub fn signal_rest(
        &mut self,
        signal: Signal,
        and_continue: bool,
        main: MainChild,
        main_may_share: bool,
    ) -> Signalled {
        if !self.tree.can_list() {
            let whole = self.whole(main);
            if main.alive && !main_may_share {
                return Signalled {
                    unlisted: Some(Unlisted::Nothing),
                    ..Signalled::default()
                };
            }
            send_whole(whole, signal);
            if and_continue {
                send_whole(whole, Signal::CONT);
            }
            return Signalled {
                unlisted: Some(whole),
                ..Signalled::default()
            };
        }
        let mut result = Signalled::default();
        for process in self.members() {
            if main.is(&process) {
                continue;
            }
            if self.deliver(&process, signal, &mut result) && and_continue {
                let _ = self.tree.signal(&process, Signal::CONT);
            }
        }
        result
    }

    /// Sends `signal` (and SIGCONT after it when `and_continue`) to each of `processes`, members of the tree
    /// as listed, and files the outcomes: with several services, the processes of one service.
    pub fn signal_processes(
        &mut self,
        processes: &[Process],
        signal: Signal,
        and_continue: bool,
    ) -> Signalled {
        let mut result = Signalled::default();
        for process in processes {
            if self.deliver(process, signal, &mut result) && and_continue {
                let _ = self.tree.signal(process, Signal::CONT);
            }
        }
        result
    }

    /// SIGKILL to each of `processes`, members of the tree as listed; they count as killed for the report.
    pub fn kill_processes(&mut self, processes: &[Process]) -> Signalled {
        let mut result = Signalled::default();
        for process in processes {
            let delivery = self.tree.signal(process, Signal::KILL);
            self.record_kill(process, delivery, &mut result);
        }
        result
    }

    /// Reads what remains for the report of the SIGKILL due shortly; stops reading at `budget_end`. Whether
    /// it could (not without /proc).
    pub fn survey(
        &mut self,
        main: MainChild,
        sent: impl Fn(&Process) -> Signal,
        budget_end: Instant,
    ) -> bool {
        if !self.tree.can_list() {
            return false;
        }
        let members = self.members();
        // As PID 1, kill(-1) needs no pins. As a subreaper, or for a restart that spares visitors (no
        // kill(-1) then), one per process up to the descriptor limit, with room kept for everything else
        // grace opens.
        let max_pins = match self.tree.scope() {
            Scope::Namespace if !self.spares_visitors() => 0,
            _ => self.max_pins(),
        };
        let tree = &self.tree;
        let survey = Survey::take(
            members,
            main.pid,
            sent,
            |process| tree.pin(process),
            max_pins,
            budget_end,
        );
        self.survey = Some(survey);
        true
    }

    /// SIGKILL to everything that remains, first, then the account of what was there: the survey's entries
    /// that were still present, and what appeared since it.
    pub fn kill_all(&mut self, main: MainChild, sent: impl Fn(&Process) -> Signal) -> Killed {
        let survey = self.survey.take().unwrap_or_default();
        let mut signalled = Signalled::default();
        let mut main_refused = false;
        if main.alive {
            // grace's own unreaped child: plain kill(), whatever a seccomp profile says of pidfds.
            main_refused = sys::send_signal(main.pid, Signal::KILL.number())
                .is_err_and(|err| err.raw_os_error() == Some(libc::EPERM));
        }
        let mut present = Vec::new();
        // Unreaped, it is still in /proc (dying, or a zombie), however fast SIGKILL ended it.
        if let Some(listed) = main
            .alive
            .then(|| crate::tree::read_process(main.pid))
            .flatten()
        {
            if main_refused {
                if self.not_permitted.insert(survey::key(&listed)) {
                    signalled.newly_not_permitted.push(listed);
                }
            } else {
                self.killed.insert(survey::key(&listed));
                present.push(listed);
            }
        }
        let sent_at;
        match (self.tree.scope(), self.tree.can_list()) {
            (_, false) => {
                let whole = self.whole(main);
                sent_at = Instant::now();
                send_whole(whole, Signal::KILL);
                signalled.unlisted = Some(whole);
            }
            (Scope::Namespace, true) if !self.spares_visitors() => {
                // Which of the surveyed processes still exist, with signal 0: one cheap system call each (a
                // thousand take well under a millisecond), where reading /proc would make the kill late. After
                // the SIGKILL a parent dying of it may still reap its child, which then vanishes from /proc.
                let existing: Vec<Process> = survey
                    .entries
                    .iter()
                    .map(|entry| entry.process.clone())
                    .filter(|process| !main.is(process) && sys::send_signal(process.pid, 0).is_ok())
                    .collect();
                // From a namespace's PID 1, kill(-1) reaches every other process at once, and a process with a
                // pending SIGKILL cannot fork: nothing escapes, and nothing waits for a listing.
                sent_at = Instant::now();
                let _ = sys::send_signal(-1, Signal::KILL.number());
                // The listing after it (zombies included) shows what the survey did not see, and which zombies
                // had exited on their own, just before the SIGKILL (their status says so).
                let listed = self.tree.listing();
                let exited_before: HashSet<(i32, u64)> = listed
                    .iter()
                    .filter(|process| !process.ended_by_sigkill())
                    .map(survey::key)
                    .collect();
                let surveyed: HashSet<(i32, u64)> = existing.iter().map(survey::key).collect();
                let unsurveyed = listed.into_iter().filter(|process| {
                    process.ended_by_sigkill()
                        && !main.is(process)
                        && !surveyed.contains(&survey::key(process))
                });
                let killed: Vec<Process> = existing
                    .into_iter()
                    .filter(|process| !exited_before.contains(&survey::key(process)))
                    .chain(unsurveyed)
                    .collect();
                for process in &killed {
                    self.killed.insert(survey::key(process));
                }
                present.extend(killed);
            }
            (_, true) => {
                // As a subreaper, or as PID 1 sparing visitors: what the survey saw first (no listing stands
                // between the deadline and their SIGKILL), then a listing for what it did not see.
                // The pinned ones first: no reading of /proc between the deadline and their SIGKILL.
                let (pinned, unpinned): (Vec<_>, Vec<_>) = survey
                    .entries
                    .iter()
                    .filter(|entry| !main.is(&entry.process))
                    .map(|entry| (entry, survey.pins.get(&survey::key(&entry.process))))
                    .partition(|(_, pin)| pin.is_some());
                let mut last_call = Instant::now();
                for (entry, pin) in pinned.into_iter().chain(unpinned) {
                    last_call = Instant::now();
                    let delivery = match pin {
                        Some(pidfd) => self.tree.signal_pinned(&entry.process, pidfd, Signal::KILL),
                        None => self.tree.signal(&entry.process, Signal::KILL),
                    };
                    if self.record_kill(&entry.process, delivery, &mut signalled) {
                        present.push(entry.process.clone());
                    }
                }
                sent_at = last_call;
                present.extend(self.stop_then_kill_unkilled(main, &mut signalled));
            }
        }
        Killed {
            sent_at,
            survivors: survey.survivors(&present, sent),
            newly_not_permitted: signalled.newly_not_permitted,
            unlisted: signalled.unlisted,
            main_refused,
        }
    }

    /// SIGKILL to processes that appeared since the last SIGKILL (forked just before it, or children of a
    /// process that auto-reaps them, which give grace no SIGCHLD); returns them. As a subreaper they are
    /// stopped first (see [`Remains::stop_then_kill_unkilled`]); as PID 1, kill(-1) reaches them all at once.
    pub fn sweep(&mut self, main: MainChild) -> Vec<Process> {
        let mut signalled = Signalled::default();
        match (self.tree.scope(), self.tree.can_list()) {
            (_, false) => {
                send_whole(self.whole(main), Signal::KILL);
                Vec::new()
            }
            (Scope::Namespace, true) if !self.spares_visitors() => {
                let _ = sys::send_signal(-1, Signal::KILL.number());
                let new: Vec<Process> = self
                    .tree
                    .members()
                    .into_iter()
                    .filter(|process| self.killed.insert(survey::key(process)))
                    .collect();
                new
            }
            (_, true) => self.stop_then_kill_unkilled(main, &mut signalled),
        }
    }

    /// The live processes that remain, split into those sent SIGKILL (they survived it), those grace may not
    /// signal, and any other.
    pub fn remaining(&self) -> Remaining {
        let mut remaining = Remaining::default();
        for process in self.members() {
            let key = survey::key(&process);
            if self.killed.contains(&key) {
                remaining.survived_kill.push(process);
            } else if self.is_unsignallable(&process) {
                remaining.not_permitted.push(process);
            } else {
                remaining.other.push(process);
            }
        }
        remaining
    }

    /// Whether processes remain and grace may signal none of them: then there is nothing to wait for.
    pub fn only_unsignallable_remain(&self) -> bool {
        if !self.tree.can_list() {
            return false;
        }
        let members = self.members();
        !members.is_empty() && members.iter().all(|process| self.is_unsignallable(process))
    }

    /// Without /proc, as a subreaper, whether nothing grace can reach remains: the main child is reaped and
    /// its process group is empty. Children outside the group (setsid daemons, reparented to grace) may
    /// remain, but without /proc grace can neither name nor signal them.
    pub fn nothing_reachable_remains(&self, main: MainChild) -> bool {
        !self.tree.can_list()
            && matches!(self.tree.scope(), Scope::Descendants { .. })
            && !main.alive
            && sys::send_signal(-main.pid, 0)
                .is_err_and(|err| err.raw_os_error() == Some(libc::ESRCH))
    }

    /// As PID 1, whether other processes remain in the namespace that grace may signal, though none is its
    /// child: processes that entered from outside (`kubectl exec`, `nsenter`), whose exit no SIGCHLD reports.
    /// Zombies do not count (their parent is outside, and may never reap them), nor processes grace may not
    /// signal.
    pub fn others_remain(&self) -> bool {
        // kill(-1, 0) from a namespace's PID 1 asks whether any other process it may signal is in the
        // namespace: one system call, where listing /proc would put ~80 µs on every exit. It counts zombies
        // too, so when it says yes, the listing decides.
        if self.tree.scope() != Scope::Namespace || sys::send_signal(-1, 0).is_err() {
            return false;
        }
        if !self.tree.can_list() {
            // Kernel threads always answer kill(-1, 0); in a machine's first namespace nothing enters from
            // outside, and every process descends from grace: its last child's exit says it all.
            return !self.tree.has_kernel_threads();
        }
        self.tree
            .members()
            .iter()
            .any(|process| !self.is_unsignallable(process))
    }

    /// SIGSTOP to every live process not yet sent SIGKILL, but the main child while alive (the caller kills
    /// it by pid), listing again until a listing finds none; then SIGKILL to them all; returns those killed.
    ///
    /// Killed one by one while the others run, a fork bomb at its pids limit refills every slot a death
    /// frees, and its busy processes starve grace of the CPU it needs to keep up: sweeps that SIGKILLed what
    /// they found left up to 91 of 250 processes behind at the limit. A stopped process can neither fork nor
    /// run, and frees no slot: each listing can only find what forked before its parent was stopped, and the
    /// SIGKILLs then end the lot (a stopped process dies of SIGKILL like any other).
    fn stop_then_kill_unkilled(
        &mut self,
        main: MainChild,
        signalled: &mut Signalled,
    ) -> Vec<Process> {
        let mut stopped: Vec<Process> = Vec::new();
        let mut seen: HashSet<(i32, u64)> = HashSet::new();
        for _ in 0..STOP_ROUNDS {
            let mut found = false;
            for process in self.members() {
                let key = survey::key(&process);
                if main.is(&process) || self.killed.contains(&key) || !seen.insert(key) {
                    continue;
                }
                found = true;
                if self.deliver(&process, Signal::STOP, signalled) {
                    stopped.push(process);
                }
            }
            if !found {
                break;
            }
        }
        // Stopped, none can have forked since; each SIGKILL goes through a checked pidfd again.
        let mut killed = Vec::new();
        for process in stopped {
            let delivery = self.tree.signal(&process, Signal::KILL);
            if self.record_kill(&process, delivery, signalled) {
                killed.push(process);
            }
        }
        killed
    }

    /// How many pidfds grace may hold on the tree: one per process up to the descriptor limit, with room
    /// kept for everything else grace opens.
    fn max_pins(&self) -> usize {
        usize::try_from(sys::descriptor_limit().saturating_sub(RESERVED_DESCRIPTORS))
            .unwrap_or(usize::MAX)
    }

    /// Files the outcome of a SIGKILL to `process`, and counts it as killed if it was delivered.
    fn record_kill(
        &mut self,
        process: &Process,
        delivery: Delivery,
        signalled: &mut Signalled,
    ) -> bool {
        let delivered = self.file(process, delivery, signalled);
        if delivered {
            self.killed.insert(survey::key(process));
        }
        delivered
    }

    /// Whether grace may not signal `process`: refused before (EPERM), or another user's.
    fn is_unsignallable(&self, process: &Process) -> bool {
        self.not_permitted.contains(&survey::key(process)) || may_not_signal(process.pid)
    }

    /// Sends `signal` to `process` and files the outcome in `into`; whether it was delivered.
    fn deliver(&mut self, process: &Process, signal: Signal, into: &mut Signalled) -> bool {
        let delivery = self.tree.signal(process, signal);
        self.file(process, delivery, into)
    }

    /// Files the outcome of sending a signal to `process` in `into`; whether it was delivered.
    fn file(&mut self, process: &Process, delivery: Delivery, into: &mut Signalled) -> bool {
        match delivery {
            Delivery::Sent => {
                into.sent.push(process.clone());
                true
            }
            Delivery::Gone => false,
            Delivery::NotPermitted => {
                if self.not_permitted.insert(survey::key(process)) {
                    into.newly_not_permitted.push(process.clone());
                }
                false
            }
            Delivery::Failed(err) => {
                into.failed.push((process.clone(), err));
                false
            }
        }
    }

    /// What a signal to the whole tree reaches without /proc.
    fn whole(&self, main: MainChild) -> Unlisted {
        match self.tree.scope() {
            Scope::Namespace => Unlisted::Namespace,
            // The group's id cannot be reused while the main child lives, nor while any process is in the
            // group (a process group id is a pid that stays taken while the group has a member).
            Scope::Descendants { .. } => Unlisted::MainGroup(main.pid),
        }
    }
}

/// The live processes left at the end, by what was done to them.
#[derive(Debug, Default)]
pub struct Remaining {
    pub survived_kill: Vec<Process>,
    pub not_permitted: Vec<Process>,
    pub other: Vec<Process>,
}

/// Whether kill(pid, 0) says grace may not signal `pid` (EPERM). Signal 0 sends nothing, so a pid reused
/// meanwhile comes to no harm.
fn may_not_signal(pid: i32) -> bool {
    sys::send_signal(pid, 0).is_err_and(|err| err.raw_os_error() == Some(libc::EPERM))
}

fn send_whole(whole: Unlisted, signal: Signal) {
    let target = match whole {
        Unlisted::Namespace => -1,
        Unlisted::MainGroup(group) => -group,
        Unlisted::Nothing => return,
    };
    let _ = sys::send_signal(target, signal.number());
}
