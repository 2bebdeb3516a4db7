//! The shutdown as a pure state machine: phase × event → action. No processes, no clock reads: the
//! supervisor passes `now` in and carries the actions out, so every rule here is unit-tested in isolation.
//!
//! The timeline after a stop signal at t0 with grace period G, cleanup timeout C, pre-stop delay P and, when
//! the final signal is not SIGKILL, final timeout F:
//! ```text
//! t0            start the clock; with P, wait (other signals are still forwarded at once)
//! t0+P          forward the stop signal (+ SIGCONT) to the main child
//! t0+G-C        main child still running: SIGTERM (+ SIGCONT) to the rest of the tree, so no daemon dies
//!               without one (not while the stop signal is held: with P > G-C, at t0+P, after the forward)
//! main exits    settle briefly, then SIGTERM the rest; SIGKILL after C, never past t0+G
//! t0+G-F        the final signal (e.g. SIGQUIT for a thread dump) to everything that remains
//! t0+G-L        survey what remains (for the report), so that reading /proc does not make the kill late;
//!               L is 100 ms, more for a large tree (as many as the rest's SIGTERM found), never before it
//! t0+G          SIGKILL to everything that remains
//! then          sweep again for processes forked just before their SIGKILL: at once while a sweep finds
//!               some, else after 10 ms, doubling to 200 ms; until 1 s after the last sweep that found one,
//!               and never past 3 s after the SIGKILL was due
//! ```
//! When the main child exits on its own, the rest gets the same settle, SIGTERM, and SIGKILL after C.
//! grace exits as soon as the tree is empty; that check belongs to the supervisor.
//!
//! The configuration guarantees F < C and F < G − P (see `config`), so the final signal never comes before
//! the SIGTERM it follows: not during the pre-stop delay, and not before the rest's SIGTERM.

use std::time::{Duration, Instant};

/// After the main child exits, how long the rest of the tree is left alone before its SIGTERM: processes
/// already on their way out (a `tee` draining a FIFO whose writer just exited) finish undisturbed.
pub const SETTLE: Duration = Duration::from_millis(200);

/// After the last sweep that SIGKILLed a process, how long grace waits for processes that cannot die at
/// once (uninterruptible sleep) before it gives up on them and exits.
pub const UNKILLABLE_WAIT: Duration = Duration::from_secs(1);

/// The longest grace keeps sweeping after the SIGKILL was due, however many processes keep appearing, and
/// however late a starved grace got to send it: the bound on the whole shutdown is grace period + this.
pub const KILLING_LIMIT: Duration = Duration::from_secs(3);

/// How long before a SIGKILL the survey of what remains is taken, at the least (a small tree).
pub const SURVEY_LEAD: Duration = Duration::from_millis(100);

/// How long before a SIGKILL the survey is taken, at the most: an older one would describe a tree that has
/// had time to change (and keep a descriptor open on each process for that long).
pub const LONGEST_SURVEY_LEAD: Duration = Duration::from_secs(1);

/// What the survey's reading costs per process, with room to spare: listing, a pidfd and /proc/PID/status
/// for each of 1,001 processes took 22–36 µs each in the release build and 34–130 µs in the debug build
/// (2 cores), and up to ~260 µs on a busier machine.
pub const SURVEY_COST_PER_PROCESS: Duration = Duration::from_micros(500);

/// The first and the longest interval between sweeps that find nothing. A process whose children are
/// reaped by the kernel (SIGCHLD ignored) gives grace no SIGCHLD when one of them exits, so sweeps run on a
/// timer. A sweep that found processes is followed by another at once: a fork bomb refills what it frees.
pub const FIRST_SWEEP_INTERVAL: Duration = Duration::from_millis(10);
pub const LAST_SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// How long before the SIGKILL the survey of a tree of `processes` begins: long enough to read them all at
/// [`SURVEY_COST_PER_PROCESS`], within [`SURVEY_LEAD`] and [`LONGEST_SURVEY_LEAD`].
pub fn survey_lead(processes: usize) -> Duration {
    let count = u32::try_from(processes).unwrap_or(u32::MAX);
    SURVEY_COST_PER_PROCESS
        .saturating_mul(count)
        .clamp(SURVEY_LEAD, LONGEST_SURVEY_LEAD)
}

/// The configured durations of a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub grace_period: Duration,
    pub cleanup_timeout: Duration,
    /// How long the first stop signal waits before it is forwarded (load balancers stop routing meanwhile).
    pub pre_stop_delay: Duration,
    /// How long before each SIGKILL the final signal goes out; `None` when the final signal is SIGKILL.
    pub final_timeout: Option<Duration>,
}

#[cfg(test)]
impl Timings {
    /// Only a grace period and a cleanup timeout: no pre-stop delay, SIGKILL as the final signal.
    pub fn new(grace_period: Duration, cleanup_timeout: Duration) -> Timings {
        Timings {
            grace_period,
            cleanup_timeout,
            pre_stop_delay: Duration::ZERO,
            final_timeout: None,
        }
    }
}

/// Where the shutdown stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No stop signal yet; the main child runs.
    Running,
    /// A stop signal arrived and waits out the pre-stop delay until `forward_at`; the main child runs.
    Delaying {
        forward_at: Instant,
        deadline: Instant,
    },
    /// The stop signal was forwarded; the main child runs. `rest_signalled`: the rest of the tree has had
    /// its SIGTERM; `final_sent`: the final signal has gone out.
    Stopping {
        deadline: Instant,
        rest_signalled: bool,
        final_sent: bool,
    },
    /// The main child exited; the rest of the tree settles until `until`. `final_sent` carries over from
    /// `Stopping`, so the final signal never goes out twice.
    Settling {
        until: Instant,
        deadline: Option<Instant>,
        final_sent: bool,
    },
    /// The rest of the tree has had SIGTERM and is SIGKILLed at `kill_at`.
    CleaningUp {
        kill_at: Instant,
        deadline: Option<Instant>,
        final_sent: bool,
    },
    /// Everything has had SIGKILL; grace sweeps again at `next_sweep` and gives up on survivors at
    /// `give_up_at`, never past `limit_at` ([`KILLING_LIMIT`] after the SIGKILL was due, or
    /// [`UNKILLABLE_WAIT`] after it went out if that is later). `sweep_interval` is the last pause between
    /// sweeps (zero after a sweep that found processes).
    Killing {
        limit_at: Instant,
        next_sweep: Instant,
        sweep_interval: Duration,
        give_up_at: Instant,
    },
}

/// Why everything is being SIGKILLed; logged with the escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// The grace period is zero: a stop signal means SIGKILL at once.
    NoGracePeriod,
    /// The grace period ran out.
    GracePeriodExpired,
    /// The main child had exited and the cleanup timeout ran out.
    CleanupTimeoutExpired,
}

/// What the supervisor must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// The first stop signal waits out the pre-stop delay before it is forwarded.
    DelayStop,
    /// A repeated stop signal arrived during the pre-stop delay: it is not forwarded before the delay ends.
    RepeatDuringDelay {
        repeat: u32,
    },
    /// Forward the stop signal to the main child (and SIGCONT). `repeat` is 1 for the first stop signal.
    ForwardStop {
        repeat: u32,
    },
    /// A stop signal arrived after the main child had exited; nothing to forward it to.
    StopAfterMainExit,
    /// SIGTERM and SIGCONT to every process of the tree but the main child.
    TerminateRest,
    /// The final signal to every process of the tree; SIGKILL follows at the deadline.
    SendFinal,
    /// Read what remains (pids, names, what each does with the signal it was sent), for the report that
    /// follows the SIGKILL due shortly.
    Survey,
    /// SIGKILL to every process of the tree.
    KillAll(KillReason),
    /// SIGKILL to processes of the tree that appeared since the last SIGKILL (stopped first, so that they
    /// can neither fork nor run meanwhile).
    Sweep,
    /// Stop waiting for the processes that survived SIGKILL.
    GiveUp,
}

/// The shutdown's timings and where it stands.
#[derive(Clone, Debug)]
pub struct Shutdown {
    timings: Timings,
    phase: Phase,
    stop_signals: u32,
    stopped_at: Option<Instant>,
    /// The SIGKILL time the last survey was taken for: one survey per SIGKILL.
    surveyed_for: Option<Instant>,
    /// When the last SIGKILL was due (not when it was acted on).
    kill_due: Option<Instant>,
    /// When the rest of the tree was sent SIGTERM, if it was: the survey never comes before it.
    rest_terminated_at: Option<Instant>,
    /// How long before the SIGKILL the survey begins (see [`survey_lead`]).
    survey_lead: Duration,
    /// Sweeps since the SIGKILL, and how many of them found processes.
    sweeps: Sweeps,
}

/// How many sweeps followed the SIGKILL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweeps {
    pub done: u32,
    /// Sweeps that found processes (forked since the last SIGKILL).
    pub found: u32,
}

impl Shutdown {
    pub fn new(timings: Timings) -> Shutdown {
        Shutdown {
            timings,
            phase: Phase::Running,
            stop_signals: 0,
            stopped_at: None,
            surveyed_for: None,
            kill_due: None,
            rest_terminated_at: None,
            survey_lead: SURVEY_LEAD,
            sweeps: Sweeps::default(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the first stop signal arrived.
    pub fn stopped_at(&self) -> Option<Instant> {
        self.stopped_at
    }

    /// The grace deadline, once a stop signal has set one.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Delaying { deadline, .. } | Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Settling { deadline, .. } | Phase::CleaningUp { deadline, .. } => deadline,
            Phase::Running | Phase::Killing { .. } => None,
        }
    }

    /// When the SIGKILL of what remains is due, as far as it is known yet (after the settle, the cleanup
    /// timeout decides it).
    pub fn kill_time(&self) -> Option<Instant> {
        match self.phase {
            Phase::CleaningUp { kill_at, .. } => Some(kill_at),
            _ => self.deadline(),
        }
    }

    /// When the last SIGKILL was due.
    pub fn kill_due(&self) -> Option<Instant> {
        self.kill_due
    }

    /// The sweeps since the SIGKILL.
    pub fn sweeps(&self) -> Sweeps {
        self.sweeps
    }

    /// The rest's SIGTERM found `processes` (the main child included): the survey before the SIGKILL begins
    /// early enough to read them all.
    pub fn on_rest_listed(&mut self, processes: usize) {
        self.survey_lead = survey_lead(processes);
    }

    /// When the survey for the coming SIGKILL is due, if it has not been taken yet: its lead before the
    /// SIGKILL, but not before the rest's SIGTERM, sent or still to come (what each process did with it is
    /// what the survey reads).
    fn survey_time(&self) -> Option<Instant> {
        let kill_at = self.kill_time()?;
        if self.surveyed_for == Some(kill_at) {
            return None;
        }
        let lead_at = kill_at.checked_sub(self.survey_lead).unwrap_or(kill_at);
        let not_before = self.rest_sigterm_pending_at().or(self.rest_terminated_at);
        Some(not_before.map_or(lead_at, |rest_at| lead_at.max(rest_at).min(kill_at)))
    }

    /// When the rest of the tree gets its SIGTERM, if that is still to come before the SIGKILL.
    fn rest_sigterm_pending_at(&self) -> Option<Instant> {
        let (at, kill_at) = match self.phase {
            Phase::Delaying {
                forward_at,
                deadline,
            } => (
                forward_at.max(self.rest_signal_time(deadline)),
                Some(deadline),
            ),
            Phase::Stopping {
                deadline,
                rest_signalled: false,
                ..
            } => (self.rest_signal_time(deadline), Some(deadline)),
            Phase::Settling {
                until, deadline, ..
            } => (until, deadline),
            _ => return None,
        };
        // At the deadline itself the SIGKILL comes first, and no SIGTERM.
        kill_at.map_or(true, |kill_at| at < kill_at).then_some(at)
    }

    /// Whether a shutdown is under way: until then no deadline exists, and the supervisor's loop neither reads
    /// the clock nor asks for one (every reap of an orphan storm passes through that loop).
    pub fn under_way(&self) -> bool {
        !matches!(self.phase, Phase::Running)
    }

    /// The next moment at which [`Shutdown::on_deadline`] has something to do; `None` while running.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.under_way() {
            return None;
        }
        let phase_deadline = self.next_phase_deadline();
        match (phase_deadline, self.survey_time()) {
            (Some(phase), Some(survey)) => Some(phase.min(survey)),
            (phase, survey) => phase.or(survey),
        }
    }

    fn next_phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Delaying {
                forward_at,
                deadline,
            } => Some(forward_at.min(deadline)),
            Phase::Stopping {
                deadline,
                rest_signalled,
                final_sent,
            } => {
                let mut next = deadline;
                if !rest_signalled {
                    next = next.min(self.rest_signal_time(deadline));
                }
                if let Some(final_at) = self.final_time(deadline, final_sent) {
                    next = next.min(final_at);
                }
                Some(next)
            }
            Phase::Settling {
                until, deadline, ..
            } => Some(deadline.map_or(until, |deadline| until.min(deadline))),
            Phase::CleaningUp {
                kill_at,
                final_sent,
                ..
            } => Some(
                self.final_time(kill_at, final_sent)
                    .map_or(kill_at, |final_at| final_at.min(kill_at)),
            ),
            Phase::Killing {
                next_sweep,
                give_up_at,
                ..
            } => Some(next_sweep.min(give_up_at)),
        }
    }

    /// A stop signal arrived. Repeats are forwarded again but never move the deadline.
    pub fn on_stop_signal(&mut self, now: Instant) -> Action {
        self.stop_signals = self.stop_signals.saturating_add(1);
        let repeat = self.stop_signals;
        match self.phase {
            Phase::Running => {
                self.stopped_at = Some(now);
                if self.timings.grace_period.is_zero() {
                    return self.kill_all(now, KillReason::NoGracePeriod);
                }
                let deadline = now + self.timings.grace_period;
                if !self.timings.pre_stop_delay.is_zero() {
                    self.phase = Phase::Delaying {
                        forward_at: now + self.timings.pre_stop_delay,
                        deadline,
                    };
                    return Action::DelayStop;
                }
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled: false,
                    final_sent: false,
                };
                Action::ForwardStop { repeat }
            }
            Phase::Delaying { .. } => Action::RepeatDuringDelay { repeat },
            Phase::Stopping { .. } => Action::ForwardStop { repeat },
            Phase::Settling {
                until,
                deadline: None,
                final_sent,
            } => {
                self.stopped_at = Some(now);
                self.phase = Phase::Settling {
                    until,
                    deadline: Some(now + self.timings.grace_period),
                    final_sent,
                };
                Action::StopAfterMainExit
            }
            Phase::CleaningUp {
                kill_at,
                deadline: None,
                final_sent,
            } => {
                self.stopped_at = Some(now);
                let deadline = now + self.timings.grace_period;
                self.phase = Phase::CleaningUp {
                    kill_at: kill_at.min(deadline),
                    deadline: Some(deadline),
                    final_sent,
                };
                Action::StopAfterMainExit
            }
            Phase::Settling { .. } | Phase::CleaningUp { .. } => Action::StopAfterMainExit,
            Phase::Killing { .. } => Action::Nothing,
        }
    }

    /// A stop that nothing outside asked for (with several services: the main service exited, or a service
    /// ended for good) begins at `now`: as a first stop signal would, but without the pre-stop delay, which
    /// only gives load balancers time to stop routing to a server that is still up.
    pub fn on_stop_without_delay(&mut self, now: Instant) -> Action {
        if self.phase != Phase::Running {
            return self.on_stop_signal(now);
        }
        let pre_stop_delay = std::mem::take(&mut self.timings.pre_stop_delay);
        let action = self.on_stop_signal(now);
        self.timings.pre_stop_delay = pre_stop_delay;
        action
    }

    /// The main child exited (and was reaped) at `now`.
    pub fn on_main_exit(&mut self, now: Instant) -> Action {
        self.phase = match self.phase {
            Phase::Running => Phase::Settling {
                until: now + SETTLE,
                deadline: None,
                final_sent: false,
            },
            Phase::Delaying { deadline, .. } => Phase::Settling {
                until: (now + SETTLE).min(deadline),
                deadline: Some(deadline),
                final_sent: false,
            },
            Phase::Stopping {
                deadline,
                rest_signalled: false,
                final_sent,
            } => Phase::Settling {
                until: (now + SETTLE).min(deadline),
                deadline: Some(deadline),
                final_sent,
            },
            Phase::Stopping {
                deadline,
                rest_signalled: true,
                final_sent,
            } => Phase::CleaningUp {
                kill_at: deadline,
                deadline: Some(deadline),
                final_sent,
            },
            other => other,
        };
        Action::Nothing
    }

    /// Time has passed; acts on the earliest deadline reached by `now` (the supervisor calls again at once
    /// when another one is due too).
    pub fn on_deadline(&mut self, now: Instant) -> Action {
        let kill_due = self.kill_time().is_some_and(|kill_at| now >= kill_at);
        // The rest's SIGTERM goes out before a survey due at the same moment.
        let rest_due = self
            .rest_sigterm_pending_at()
            .is_some_and(|rest_at| now >= rest_at);
        if !kill_due && !rest_due && self.survey_time().is_some_and(|survey_at| now >= survey_at) {
            self.surveyed_for = self.kill_time();
            return Action::Survey;
        }
        self.on_phase_deadline(now)
    }

    fn on_phase_deadline(&mut self, now: Instant) -> Action {
        match self.phase {
            Phase::Running => Action::Nothing,
            Phase::Delaying { deadline, .. } if now >= deadline => {
                self.kill_all(now, KillReason::GracePeriodExpired)
            }
            Phase::Delaying {
                forward_at,
                deadline,
            } if now >= forward_at => {
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled: false,
                    final_sent: false,
                };
                Action::ForwardStop { repeat: 1 }
            }
            Phase::Delaying { .. } => Action::Nothing,
            Phase::Stopping { deadline, .. } if now >= deadline => {
                self.kill_all(now, KillReason::GracePeriodExpired)
            }
            Phase::Stopping {
                deadline,
                rest_signalled: false,
                final_sent,
            } if now >= self.rest_signal_time(deadline) => {
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled: true,
                    final_sent,
                };
                self.rest_terminated_at = Some(now);
                Action::TerminateRest
            }
            Phase::Stopping {
                deadline,
                rest_signalled,
                final_sent: false,
            } if self
                .final_time(deadline, false)
                .is_some_and(|final_at| now >= final_at) =>
            {
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled,
                    final_sent: true,
                };
                Action::SendFinal
            }
            Phase::Stopping { .. } => Action::Nothing,
            Phase::Settling {
                deadline: Some(deadline),
                ..
            } if now >= deadline => self.kill_all(now, KillReason::GracePeriodExpired),
            Phase::Settling {
                until,
                deadline,
                final_sent,
            } if now >= until => {
                let cleanup_end = now + self.timings.cleanup_timeout;
                let kill_at = deadline.map_or(cleanup_end, |deadline| cleanup_end.min(deadline));
                self.phase = Phase::CleaningUp {
                    kill_at,
                    deadline,
                    final_sent,
                };
                self.rest_terminated_at = Some(now);
                Action::TerminateRest
            }
            Phase::Settling { .. } => Action::Nothing,
            Phase::CleaningUp {
                kill_at, deadline, ..
            } if now >= kill_at => {
                let reason = match deadline {
                    Some(deadline) if now >= deadline => KillReason::GracePeriodExpired,
                    _ => KillReason::CleanupTimeoutExpired,
                };
                self.kill_all(now, reason)
            }
            Phase::CleaningUp {
                kill_at,
                deadline,
                final_sent: false,
            } if self
                .final_time(kill_at, false)
                .is_some_and(|final_at| now >= final_at) =>
            {
                self.phase = Phase::CleaningUp {
                    kill_at,
                    deadline,
                    final_sent: true,
                };
                Action::SendFinal
            }
            Phase::CleaningUp { .. } => Action::Nothing,
            Phase::Killing { give_up_at, .. } if now >= give_up_at => Action::GiveUp,
            Phase::Killing {
                limit_at,
                next_sweep,
                sweep_interval,
                give_up_at,
            } if now >= next_sweep => {
                // Until the supervisor reports the sweep done, the next is a full interval away.
                self.phase = Phase::Killing {
                    limit_at,
                    next_sweep: now + sweep_interval.max(FIRST_SWEEP_INTERVAL),
                    sweep_interval,
                    give_up_at,
                };
                self.sweeps.done = self.sweeps.done.saturating_add(1);
                Action::Sweep
            }
            Phase::Killing { .. } => Action::Nothing,
        }
    }

    /// The supervisor finished the SIGKILL at `now`. The give-up clock starts after it, not before it (the
    /// SIGKILL of a large tree takes time); the first sweep follows shortly. What was SIGKILLed always gets
    /// [`UNKILLABLE_WAIT`] to die, even when a grace starved of the CPU sent the SIGKILL so late that this
    /// goes past the limit: giving up at once would leave dying processes behind, and call them unkillable.
    pub fn on_killed(&mut self, now: Instant) {
        let Phase::Killing { limit_at, .. } = self.phase else {
            return;
        };
        self.phase = Phase::Killing {
            limit_at: limit_at.max(now + UNKILLABLE_WAIT),
            next_sweep: now + FIRST_SWEEP_INTERVAL,
            sweep_interval: FIRST_SWEEP_INTERVAL,
            give_up_at: now + UNKILLABLE_WAIT,
        };
    }

    /// The supervisor finished a sweep at `now`; `found` tells whether it found processes that had not been
    /// sent SIGKILL before. Then the next sweep comes at once — a fork bomb at its pids limit refills every
    /// slot that a SIGKILL frees — and the give-up clock starts again, up to the limit.
    pub fn on_swept(&mut self, now: Instant, found: bool) {
        let Phase::Killing {
            limit_at,
            sweep_interval,
            give_up_at,
            ..
        } = self.phase
        else {
            return;
        };
        self.phase = if found {
            self.sweeps.found = self.sweeps.found.saturating_add(1);
            Phase::Killing {
                limit_at,
                next_sweep: now,
                sweep_interval: Duration::ZERO,
                give_up_at: (now + UNKILLABLE_WAIT).min(limit_at).max(give_up_at),
            }
        } else {
            let sweep_interval = if sweep_interval.is_zero() {
                FIRST_SWEEP_INTERVAL
            } else {
                (sweep_interval * 2).min(LAST_SWEEP_INTERVAL)
            };
            Phase::Killing {
                limit_at,
                next_sweep: now + sweep_interval,
                sweep_interval,
                give_up_at,
            }
        };
    }

    /// When the main child is still running with only the cleanup timeout of the grace period left, the
    /// rest of the tree gets its SIGTERM.
    fn rest_signal_time(&self, deadline: Instant) -> Instant {
        deadline
            .checked_sub(self.timings.cleanup_timeout)
            .unwrap_or(deadline)
    }

    /// When the final signal goes out before the SIGKILL at `kill_at`, unless it has or is SIGKILL itself.
    fn final_time(&self, kill_at: Instant, final_sent: bool) -> Option<Instant> {
        let final_timeout = self.timings.final_timeout.filter(|_| !final_sent)?;
        Some(kill_at.checked_sub(final_timeout).unwrap_or(kill_at))
    }

    fn kill_all(&mut self, now: Instant, reason: KillReason) -> Action {
        let due = self.kill_time().unwrap_or(now).min(now);
        self.kill_due = Some(due);
        let limit_at = due + KILLING_LIMIT;
        self.phase = Phase::Killing {
            limit_at,
            next_sweep: now + FIRST_SWEEP_INTERVAL,
            sweep_interval: FIRST_SWEEP_INTERVAL,
            give_up_at: (now + UNKILLABLE_WAIT).min(limit_at),
        };
        Action::KillAll(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const GRACE: Duration = Duration::from_secs(8);
    const CLEANUP: Duration = Duration::from_secs(2);

    /// `on_deadline`, with the survey before each SIGKILL taken out of the way (its own tests check it).
    fn due(shutdown: &mut Shutdown, now: Instant) -> Action {
        match shutdown.on_deadline(now) {
            Action::Survey => shutdown.on_deadline(now),
            action => action,
        }
    }

    /// The next deadline of the phase, the survey left aside.
    fn next(shutdown: &Shutdown) -> Option<Instant> {
        shutdown.next_phase_deadline()
    }

    fn stopped(t0: Instant) -> Shutdown {
        let mut shutdown = Shutdown::new(Timings::new(GRACE, CLEANUP));
        assert_eq!(
            shutdown.on_stop_signal(t0),
            Action::ForwardStop { repeat: 1 }
        );
        shutdown
    }

    #[test]
    fn idle_has_no_deadline() {
        let mut shutdown = Shutdown::new(Timings::new(GRACE, CLEANUP));
        assert_eq!(shutdown.next_deadline(), None);
        assert_eq!(shutdown.on_deadline(Instant::now()), Action::Nothing);
    }

    #[test]
    fn deadline_escalates_only_when_reached() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(next(&shutdown), Some(t0 + GRACE - CLEANUP));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP - MS),
            Action::Nothing
        );
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(next(&shutdown), Some(t0 + GRACE));
        assert_eq!(due(&mut shutdown, t0 + GRACE - MS), Action::Nothing);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        assert_eq!(
            due(&mut shutdown, t0 + GRACE + UNKILLABLE_WAIT),
            Action::GiveUp
        );
    }

    #[test]
    fn repeated_stop_signals_are_forwarded_and_keep_the_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            shutdown.on_stop_signal(t0 + 5 * MS),
            Action::ForwardStop { repeat: 2 }
        );
        assert_eq!(
            shutdown.on_stop_signal(t0 + GRACE - MS),
            Action::ForwardStop { repeat: 3 }
        );
        assert_eq!(shutdown.stopped_at(), Some(t0));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn a_stop_without_delay_skips_the_pre_stop_delay_only() {
        let t0 = Instant::now();
        let timings = Timings {
            pre_stop_delay: Duration::from_secs(3),
            ..Timings::new(GRACE, CLEANUP)
        };
        let mut shutdown = Shutdown::new(timings);
        assert_eq!(
            shutdown.on_stop_without_delay(t0),
            Action::ForwardStop { repeat: 1 }
        );
        assert_eq!(shutdown.deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_stop_signal(t0 + MS),
            Action::ForwardStop { repeat: 2 }
        );
        let mut delayed = Shutdown::new(timings);
        assert_eq!(delayed.on_stop_signal(t0), Action::DelayStop);
        assert_eq!(
            delayed.on_stop_without_delay(t0 + MS),
            Action::RepeatDuringDelay { repeat: 2 }
        );
    }

    #[test]
    fn zero_grace_period_kills_at_once() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Timings::new(Duration::ZERO, CLEANUP));
        assert_eq!(
            shutdown.on_stop_signal(t0),
            Action::KillAll(KillReason::NoGracePeriod)
        );
    }

    #[test]
    fn main_exit_on_its_own_settles_then_cleans_up() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Timings::new(GRACE, CLEANUP));
        shutdown.on_main_exit(t0);
        assert_eq!(next(&shutdown), Some(t0 + SETTLE));
        assert_eq!(due(&mut shutdown, t0 + SETTLE - MS), Action::Nothing);
        assert_eq!(due(&mut shutdown, t0 + SETTLE), Action::TerminateRest);
        assert_eq!(next(&shutdown), Some(t0 + SETTLE + CLEANUP));
        assert_eq!(
            due(&mut shutdown, t0 + SETTLE + CLEANUP),
            Action::KillAll(KillReason::CleanupTimeoutExpired)
        );
    }

    #[test]
    fn cleanup_never_runs_past_the_grace_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let exit = t0 + GRACE - CLEANUP - 100 * MS; // main exits just before the rest would get SIGTERM
        shutdown.on_main_exit(exit);
        assert_eq!(due(&mut shutdown, exit + SETTLE), Action::TerminateRest);
        assert_eq!(next(&shutdown), Some(t0 + GRACE));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn main_exit_after_the_rest_was_signalled_keeps_the_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        shutdown.on_main_exit(t0 + GRACE - MS);
        assert_eq!(next(&shutdown), Some(t0 + GRACE));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn settle_is_cut_short_by_the_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        shutdown.on_main_exit(t0 + GRACE - 10 * MS);
        assert_eq!(next(&shutdown), Some(t0 + GRACE));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn pre_stop_delay_holds_the_forward_inside_the_grace_period() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(3);
        let mut shutdown = Shutdown::new(Timings {
            pre_stop_delay: delay,
            ..Timings::new(GRACE, CLEANUP)
        });
        assert_eq!(shutdown.on_stop_signal(t0), Action::DelayStop);
        assert_eq!(next(&shutdown), Some(t0 + delay));
        assert_eq!(
            shutdown.on_stop_signal(t0 + MS),
            Action::RepeatDuringDelay { repeat: 2 }
        );
        assert_eq!(due(&mut shutdown, t0 + delay - MS), Action::Nothing);
        assert_eq!(
            due(&mut shutdown, t0 + delay),
            Action::ForwardStop { repeat: 1 }
        );
        assert_eq!(
            shutdown.deadline(),
            Some(t0 + GRACE),
            "the delay counts inside the grace period"
        );
        assert_eq!(
            shutdown.on_stop_signal(t0 + delay + MS),
            Action::ForwardStop { repeat: 3 }
        );
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn main_exit_during_the_pre_stop_delay_cleans_up_at_once() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Timings {
            pre_stop_delay: Duration::from_secs(3),
            ..Timings::new(GRACE, CLEANUP)
        });
        shutdown.on_stop_signal(t0);
        shutdown.on_main_exit(t0 + MS);
        assert_eq!(due(&mut shutdown, t0 + MS + SETTLE), Action::TerminateRest);
    }

    #[test]
    fn final_signal_goes_out_once_even_when_the_main_child_exits_after_it() {
        let t0 = Instant::now();
        let timings = Timings {
            final_timeout: Some(Duration::from_secs(3)),
            ..Timings::new(GRACE, CLEANUP)
        };
        let mut shutdown = Shutdown::new(timings);
        shutdown.on_stop_signal(t0);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - Duration::from_secs(3)),
            Action::SendFinal
        );
        let exit = t0 + GRACE - Duration::from_millis(2500);
        shutdown.on_main_exit(exit);
        assert_eq!(due(&mut shutdown, exit + SETTLE), Action::TerminateRest);
        // No second final signal before the cleanup's SIGKILL.
        assert_eq!(next(&shutdown), Some(exit + SETTLE + CLEANUP));
        assert_eq!(
            due(&mut shutdown, exit + SETTLE + CLEANUP),
            Action::KillAll(KillReason::CleanupTimeoutExpired)
        );
    }

    #[test]
    fn final_signal_goes_out_before_each_sigkill() {
        let t0 = Instant::now();
        let final_timeout = Duration::from_secs(1);
        let timings = Timings {
            final_timeout: Some(final_timeout),
            ..Timings::new(GRACE, CLEANUP)
        };
        let mut shutdown = Shutdown::new(timings);
        shutdown.on_stop_signal(t0);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(next(&shutdown), Some(t0 + GRACE - final_timeout));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - final_timeout),
            Action::SendFinal
        );
        assert_eq!(next(&shutdown), Some(t0 + GRACE));
        assert_eq!(
            due(&mut shutdown, t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );

        let mut cleanup = Shutdown::new(timings);
        cleanup.on_main_exit(t0);
        assert_eq!(due(&mut cleanup, t0 + SETTLE), Action::TerminateRest);
        assert_eq!(
            due(&mut cleanup, t0 + SETTLE + CLEANUP - final_timeout),
            Action::SendFinal
        );
        assert_eq!(
            due(&mut cleanup, t0 + SETTLE + CLEANUP),
            Action::KillAll(KillReason::CleanupTimeoutExpired)
        );
    }

    #[test]
    fn stop_signal_after_main_exit_bounds_the_cleanup() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Timings::new(
            Duration::from_millis(500),
            Duration::from_secs(60),
        ));
        shutdown.on_main_exit(t0);
        assert_eq!(due(&mut shutdown, t0 + SETTLE), Action::TerminateRest);
        assert_eq!(
            shutdown.on_stop_signal(t0 + SETTLE),
            Action::StopAfterMainExit
        );
        assert_eq!(
            next(&shutdown),
            Some(t0 + SETTLE + Duration::from_millis(500))
        );
    }

    #[test]
    fn a_survey_comes_before_each_sigkill_once() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE - SURVEY_LEAD));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - SURVEY_LEAD - MS),
            Action::Nothing
        );
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - SURVEY_LEAD),
            Action::Survey
        );
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - SURVEY_LEAD),
            Action::Nothing
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn a_sigkill_that_moves_earlier_gets_a_survey_of_its_own() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Timings::new(GRACE, CLEANUP));
        shutdown.on_main_exit(t0);
        assert_eq!(shutdown.on_deadline(t0 + SETTLE), Action::TerminateRest);
        let cleanup_kill = t0 + SETTLE + CLEANUP;
        assert_eq!(shutdown.next_deadline(), Some(cleanup_kill - SURVEY_LEAD));
        // A stop signal with a grace period shorter than what is left of the cleanup moves the SIGKILL.
        let mut short = Shutdown::new(Timings::new(Duration::from_millis(300), CLEANUP));
        short.on_main_exit(t0);
        assert_eq!(short.on_deadline(t0 + SETTLE), Action::TerminateRest);
        assert_eq!(short.on_stop_signal(t0 + SETTLE), Action::StopAfterMainExit);
        let kill_at = t0 + SETTLE + Duration::from_millis(300);
        assert_eq!(short.next_deadline(), Some(kill_at - SURVEY_LEAD));
        assert_eq!(short.on_deadline(kill_at - SURVEY_LEAD), Action::Survey);
        assert_eq!(
            short.on_deadline(kill_at),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn a_late_wake_up_kills_without_a_survey() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE + MS),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn sweeps_that_find_nothing_back_off_until_the_give_up() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let kill = t0 + GRACE;
        assert_eq!(
            due(&mut shutdown, kill),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        shutdown.on_killed(kill);
        let mut at = kill;
        let mut interval = FIRST_SWEEP_INTERVAL;
        for _ in 0..5 {
            assert_eq!(shutdown.next_deadline(), Some(at + interval));
            assert_eq!(shutdown.on_deadline(at + interval - MS), Action::Nothing);
            at += interval;
            assert_eq!(shutdown.on_deadline(at), Action::Sweep);
            shutdown.on_swept(at, false);
            interval = (interval * 2).min(LAST_SWEEP_INTERVAL);
        }
        assert_eq!(
            shutdown.on_deadline(kill + UNKILLABLE_WAIT - MS),
            Action::Sweep
        );
        assert_eq!(shutdown.on_deadline(kill + UNKILLABLE_WAIT), Action::GiveUp);
        assert_eq!(shutdown.sweeps(), Sweeps { done: 6, found: 0 });
    }

    /// A fork bomb at its pids limit refills every slot a SIGKILL frees: while a sweep finds processes the
    /// next comes at once, with no pause for the bomb to fork in.
    #[test]
    fn a_sweep_that_finds_processes_is_followed_by_another_at_once() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let kill = t0 + GRACE;
        assert_eq!(
            due(&mut shutdown, kill),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        shutdown.on_killed(kill);
        let first = kill + FIRST_SWEEP_INTERVAL;
        assert_eq!(shutdown.on_deadline(first), Action::Sweep);
        let swept = first + 40 * MS;
        shutdown.on_swept(swept, true);
        assert_eq!(shutdown.next_deadline(), Some(swept), "no pause");
        assert_eq!(shutdown.on_deadline(swept), Action::Sweep);
        shutdown.on_swept(swept + MS, false);
        assert_eq!(
            shutdown.next_deadline(),
            Some(swept + MS + FIRST_SWEEP_INTERVAL),
            "backs off from the first interval once a sweep finds nothing"
        );
        assert_eq!(shutdown.sweeps(), Sweeps { done: 2, found: 1 });
        // The give-up clock started again at the sweep that found processes.
        assert_eq!(
            shutdown.on_deadline(swept + UNKILLABLE_WAIT - MS),
            Action::Sweep
        );
        assert_eq!(
            shutdown.on_deadline(swept + UNKILLABLE_WAIT),
            Action::GiveUp
        );
    }

    /// A SIGKILL of a large tree takes time; and a fork bomb at its pids limit refills the slots a SIGKILL
    /// frees, so sweeps keep finding processes.
    #[test]
    fn the_give_up_clock_starts_after_the_sigkill_and_has_a_limit() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let kill = t0 + GRACE;
        assert_eq!(
            due(&mut shutdown, kill),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        let slow_kill_end = kill + 300 * MS;
        shutdown.on_killed(slow_kill_end);
        assert_eq!(
            shutdown.next_deadline(),
            Some(slow_kill_end + FIRST_SWEEP_INTERVAL)
        );
        assert_eq!(
            shutdown.on_deadline(slow_kill_end + UNKILLABLE_WAIT - MS),
            Action::Sweep
        );
        let mut at = slow_kill_end + UNKILLABLE_WAIT - MS;
        shutdown.on_swept(at, true);
        while at < kill + KILLING_LIMIT {
            at += 7 * MS;
            match shutdown.on_deadline(at) {
                Action::Sweep => shutdown.on_swept(at, true),
                Action::GiveUp => break,
                other => panic!("{other:?} at {:?}", at - kill),
            }
        }
        assert_eq!(
            shutdown.on_deadline(kill + KILLING_LIMIT),
            Action::GiveUp,
            "sweeps that keep killing do not hold grace past the limit"
        );
    }

    /// A grace starved of the CPU (a busy fork bomb) acts on its deadline late: the limit still counts from
    /// when the SIGKILL was due, so the bound holds.
    #[test]
    fn the_limit_counts_from_when_the_sigkill_was_due() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let late = t0 + GRACE + Duration::from_millis(1500);
        assert_eq!(
            due(&mut shutdown, late),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        assert_eq!(shutdown.kill_due(), Some(t0 + GRACE));
        shutdown.on_killed(late + 100 * MS);
        assert_eq!(
            shutdown.next_deadline(),
            Some(late + 100 * MS + FIRST_SWEEP_INTERVAL)
        );
        shutdown.on_swept(late + Duration::from_millis(1000), true);
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE + KILLING_LIMIT - MS),
            Action::Sweep
        );
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE + KILLING_LIMIT),
            Action::GiveUp
        );

        // Woken for its SIGKILL at the limit itself: what it killed still gets its time to die.
        let mut starved = stopped(t0);
        let at_the_limit = t0 + GRACE + KILLING_LIMIT;
        assert_eq!(
            due(&mut starved, at_the_limit),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        starved.on_killed(at_the_limit + 10 * MS);
        assert_eq!(
            starved.on_deadline(at_the_limit + 10 * MS + UNKILLABLE_WAIT - MS),
            Action::Sweep
        );
        assert_eq!(
            starved.on_deadline(at_the_limit + 10 * MS + UNKILLABLE_WAIT),
            Action::GiveUp
        );
    }

    #[test]
    fn the_survey_lead_grows_with_the_tree_within_its_bounds() {
        assert_eq!(survey_lead(0), SURVEY_LEAD);
        assert_eq!(survey_lead(10), SURVEY_LEAD);
        assert_eq!(survey_lead(1001), SURVEY_COST_PER_PROCESS * 1001);
        assert_eq!(survey_lead(100_000), LONGEST_SURVEY_LEAD);
        assert_eq!(survey_lead(usize::MAX), LONGEST_SURVEY_LEAD);
    }

    /// The rest's SIGTERM found 1,001 processes: the survey begins earlier, to read them all, but never
    /// before that SIGTERM (what each did with it is what the report says).
    #[test]
    fn a_large_tree_is_surveyed_earlier_but_not_before_its_sigterm() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            due(&mut shutdown, t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        shutdown.on_rest_listed(1001);
        let lead = survey_lead(1001);
        assert!(lead > SURVEY_LEAD);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE - lead));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - lead - MS),
            Action::Nothing
        );
        assert_eq!(shutdown.on_deadline(t0 + GRACE - lead), Action::Survey);

        // A cleanup timeout shorter than the lead: the survey comes right after the SIGTERM.
        let short = Duration::from_millis(200);
        let mut shutdown = Shutdown::new(Timings::new(GRACE, short));
        shutdown.on_stop_signal(t0);
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - short),
            Action::TerminateRest
        );
        shutdown.on_rest_listed(100_000);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE - short));
        assert_eq!(shutdown.on_deadline(t0 + GRACE - short), Action::Survey);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
    }
}

/// Properties over arbitrary valid timings and event times: the final signal never comes before the SIGTERM
/// it follows, nor during the pre-stop delay or the settle; nothing is killed before its time; and the
/// shutdown always ends.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// Timings as the configuration accepts them: F < C and F < G − P, P < G.
    fn timings() -> impl Strategy<Value = Timings> {
        (
            1u64..20_000,
            0u64..100,
            1u64..20_000,
            0u64..100,
            any::<bool>(),
        )
            .prop_filter_map(
                "valid timings",
                |(grace, delay_percent, cleanup, final_percent, with_final)| {
                    let grace_period = Duration::from_millis(grace);
                    let pre_stop_delay = grace_period * delay_percent as u32 / 100;
                    let cleanup_timeout = Duration::from_millis(cleanup);
                    let room = (grace_period - pre_stop_delay).min(cleanup_timeout);
                    let final_timeout =
                        (room * final_percent as u32 / 100).min(room.saturating_sub(MS));
                    if pre_stop_delay >= grace_period {
                        return None;
                    }
                    Some(Timings {
                        grace_period,
                        cleanup_timeout,
                        pre_stop_delay,
                        final_timeout: with_final.then_some(final_timeout),
                    })
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Also: the survey comes before its SIGKILL and at most [`LONGEST_SURVEY_LEAD`] before it, and
        /// never before a SIGTERM to the rest that follows it; a sweep that found processes is followed by
        /// another at once; and grace gives up no later than [`KILLING_LIMIT`] after the SIGKILL was due (and
        /// the sweep under way then, or [`UNKILLABLE_WAIT`] after a SIGKILL that went out later than that),
        /// however late it woke for the SIGKILL and however long the SIGKILL and the sweeps take.
        #[test]
        fn the_final_signal_follows_a_sigterm_and_the_shutdown_ends(
            timings in timings(),
            stop_at_ms in prop::option::of(0u64..30_000),
            main_exit_at_ms in prop::option::of(0u64..30_000),
            lateness_ms in prop::collection::vec(0u64..3, 1..8),
            rest_listed in prop::option::of(0usize..5_000),
            kill_ms in 0u64..500,
            starved_ms in prop::option::of(0u64..3_000),
            sweeps in prop::collection::vec((1u64..60, any::<bool>()), 1..8),
        ) {
            let t0 = Instant::now();
            let mut shutdown = Shutdown::new(timings);
            let mut events: Vec<(Instant, bool)> = Vec::new(); // (when, is the stop signal)
            if let Some(at) = stop_at_ms { events.push((t0 + Duration::from_millis(at), true)); }
            if let Some(at) = main_exit_at_ms { events.push((t0 + Duration::from_millis(at), false)); }
            events.sort();
            events.reverse(); // popped from the end: earliest first
            let mut lateness = lateness_ms.iter().cycle().map(|ms| Duration::from_millis(*ms));
            // Each sweep takes its time, and finds processes or not.
            let mut sweeps = sweeps.iter().cycle().map(|(ms, found)| (Duration::from_millis(*ms), *found));
            let longest_sweep = Duration::from_millis(60);
            let mut now = t0;
            let mut terminated = false;
            let mut surveyed = false;
            let mut killed_end = t0;
            for _ in 0..100_000 {
                let deadline = shutdown.next_deadline();
                let event = events.last().map(|(at, _)| *at);
                match (deadline, event) {
                    (None, None) => break,
                    (deadline, Some(at)) if deadline.map_or(true, |deadline| at < deadline) => {
                        let (at, is_stop) = events.pop().unwrap_or((at, true));
                        now = now.max(at);
                        let action = if is_stop { shutdown.on_stop_signal(now) } else { shutdown.on_main_exit(now) };
                        if let Action::KillAll(reason) = action {
                            prop_assert_eq!(reason, KillReason::NoGracePeriod);
                            now += Duration::from_millis(kill_ms);
                            killed_end = now;
                            shutdown.on_killed(now);
                        }
                        continue;
                    }
                    _ => {}
                }
                // A wake-up can be late; every action overdue is taken, earliest first. A grace starved of
                // the CPU (a busy fork bomb) may wake for its SIGKILL seconds late.
                let starved = match starved_ms {
                    Some(ms) if deadline.is_some() && deadline == shutdown.kill_time() => Duration::from_millis(ms),
                    _ => Duration::ZERO,
                };
                now = now.max(deadline.unwrap_or(now)) + lateness.next().unwrap_or_default() + starved;
                loop {
                    let phase = shutdown.phase();
                    let kill_time = shutdown.kill_time();
                    match shutdown.on_deadline(now) {
                        Action::Nothing => break,
                        Action::TerminateRest => {
                            prop_assert!(!surveyed, "a survey before the rest's SIGTERM, {:?}", phase);
                            terminated = true;
                            if let Some(count) = rest_listed {
                                shutdown.on_rest_listed(count);
                            }
                        }
                        Action::SendFinal => {
                            prop_assert!(!matches!(phase, Phase::Delaying { .. } | Phase::Settling { .. }), "{:?}", phase);
                            prop_assert!(terminated, "the final signal before the rest's SIGTERM, {:?}", phase);
                        }
                        Action::Survey => {
                            let kill_at = kill_time.unwrap_or(now);
                            prop_assert!(now < kill_at, "a survey at or after its SIGKILL");
                            prop_assert!(now + LONGEST_SURVEY_LEAD >= kill_at, "a survey too early");
                            surveyed = true;
                        }
                        Action::KillAll(_) => {
                            prop_assert!(kill_time.is_some_and(|kill_at| now >= kill_at), "killed early");
                            now += Duration::from_millis(kill_ms);
                            killed_end = now;
                            shutdown.on_killed(now);
                        }
                        Action::Sweep => {
                            let (took, found) = sweeps.next().unwrap_or_default();
                            now += took;
                            shutdown.on_swept(now, found);
                            if found {
                                prop_assert!(shutdown.next_deadline().is_some_and(|next| next <= now), "a pause after a sweep that found processes");
                            }
                        }
                        Action::GiveUp => {
                            // The SIGKILL itself, and the sweep under way at the limit, are not cut short, and
                            // what a late SIGKILL killed gets its time to die.
                            let limit = (shutdown.kill_due().unwrap_or(now) + KILLING_LIMIT).max(killed_end + UNKILLABLE_WAIT);
                            prop_assert!(now <= limit + longest_sweep + Duration::from_millis(3));
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
            prop_assert!(
                stop_at_ms.is_none() && main_exit_at_ms.is_none(),
                "a stop signal or an exit, and no end: {:?}", shutdown.phase()
            );
        }
    }
}
