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
//! t0+G-100ms    survey what remains (for the report), so that reading /proc does not make the kill late
//! t0+G          SIGKILL to everything that remains
//! then          sweep again (10 ms, doubling to 200 ms) for processes forked just before their SIGKILL,
//!               until 1 s after the last sweep that found one, 3 s after the SIGKILL at most
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

/// The longest grace keeps sweeping after the first SIGKILL, however many processes keep appearing: the
/// bound on the whole shutdown is grace period + this.
pub const KILLING_LIMIT: Duration = Duration::from_secs(3);

/// How long before a SIGKILL the survey of what remains is taken.
pub const SURVEY_LEAD: Duration = Duration::from_millis(100);

/// The first and the longest interval between sweeps. A process whose children are reaped by the kernel
/// (SIGCHLD ignored) gives grace no SIGCHLD when one of them exits, so sweeps run on a timer.
pub const FIRST_SWEEP_INTERVAL: Duration = Duration::from_millis(10);
pub const LAST_SWEEP_INTERVAL: Duration = Duration::from_millis(200);

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
    /// `give_up_at`.
    Killing {
        killed_at: Instant,
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
    /// SIGKILL to processes of the tree that appeared since the last SIGKILL.
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

    /// When the survey for the coming SIGKILL is due, if it has not been taken yet.
    fn survey_time(&self) -> Option<Instant> {
        let kill_at = self.kill_time()?;
        if self.surveyed_for == Some(kill_at) {
            return None;
        }
        Some(kill_at.checked_sub(SURVEY_LEAD).unwrap_or(kill_at))
    }

    /// The next moment at which [`Shutdown::on_deadline`] has something to do; `None` while running.
    pub fn next_deadline(&self) -> Option<Instant> {
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
        if !kill_due && self.survey_time().is_some_and(|survey_at| now >= survey_at) {
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
                killed_at,
                next_sweep,
                sweep_interval,
                give_up_at,
            } if now >= next_sweep => {
                let sweep_interval = (sweep_interval * 2).min(LAST_SWEEP_INTERVAL);
                self.phase = Phase::Killing {
                    killed_at,
                    next_sweep: now + sweep_interval,
                    sweep_interval,
                    give_up_at,
                };
                Action::Sweep
            }
            Phase::Killing { .. } => Action::Nothing,
        }
    }

    /// The supervisor finished a SIGKILL or a sweep at `now`; `killed_new` tells whether it SIGKILLed a
    /// process that had not been sent one before. The give-up clock starts after the sweep, not before it
    /// (a sweep of a large tree takes time), and starts again while sweeps keep finding processes — a fork
    /// bomb at its pids limit refills every slot that a SIGKILL frees — up to [`KILLING_LIMIT`].
    pub fn on_swept(&mut self, now: Instant, killed_new: bool) {
        let Phase::Killing {
            killed_at,
            sweep_interval,
            give_up_at,
            ..
        } = self.phase
        else {
            return;
        };
        let (sweep_interval, give_up_at) = if killed_new {
            let restarted = (now + UNKILLABLE_WAIT).min(killed_at + KILLING_LIMIT);
            (FIRST_SWEEP_INTERVAL, restarted.max(give_up_at))
        } else {
            (sweep_interval, give_up_at)
        };
        self.phase = Phase::Killing {
            killed_at,
            next_sweep: now + sweep_interval,
            sweep_interval,
            give_up_at,
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
        self.kill_due = Some(self.kill_time().unwrap_or(now).min(now));
        self.phase = Phase::Killing {
            killed_at: now,
            next_sweep: now + FIRST_SWEEP_INTERVAL,
            sweep_interval: FIRST_SWEEP_INTERVAL,
            give_up_at: now + UNKILLABLE_WAIT,
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
    fn sweeps_repeat_with_a_doubling_interval_until_the_give_up() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let kill = t0 + GRACE;
        assert_eq!(
            due(&mut shutdown, kill),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        shutdown.on_swept(kill, true);
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
    }

    /// A SIGKILL sweep of a large tree takes time; and a fork bomb at its pids limit refills the slots a
    /// SIGKILL frees, so sweeps keep finding processes.
    #[test]
    fn the_give_up_clock_starts_after_a_sweep_that_killed_and_has_a_limit() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let kill = t0 + GRACE;
        assert_eq!(
            due(&mut shutdown, kill),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        let slow_sweep_end = kill + 300 * MS;
        shutdown.on_swept(slow_sweep_end, true);
        assert_eq!(
            shutdown.next_deadline(),
            Some(slow_sweep_end + FIRST_SWEEP_INTERVAL)
        );
        let mut at = slow_sweep_end;
        while at < kill + KILLING_LIMIT {
            at += FIRST_SWEEP_INTERVAL;
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

        #[test]
        fn the_final_signal_follows_a_sigterm_and_the_shutdown_ends(
            timings in timings(),
            stop_at_ms in prop::option::of(0u64..30_000),
            main_exit_at_ms in prop::option::of(0u64..30_000),
            lateness_ms in prop::collection::vec(0u64..3, 1..8),
        ) {
            let t0 = Instant::now();
            let mut shutdown = Shutdown::new(timings);
            let mut events: Vec<(Instant, bool)> = Vec::new(); // (when, is the stop signal)
            if let Some(at) = stop_at_ms { events.push((t0 + Duration::from_millis(at), true)); }
            if let Some(at) = main_exit_at_ms { events.push((t0 + Duration::from_millis(at), false)); }
            events.sort();
            events.reverse(); // popped from the end: earliest first
            let mut lateness = lateness_ms.iter().cycle().map(|ms| Duration::from_millis(*ms));
            let mut now = t0;
            let mut terminated = false;
            let mut killed_at = None;
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
                            killed_at = Some(now);
                            shutdown.on_swept(now, true);
                        }
                        continue;
                    }
                    _ => {}
                }
                // A wake-up can be late; every action overdue is taken, earliest first.
                now = now.max(deadline.unwrap_or(now)) + lateness.next().unwrap_or_default();
                loop {
                    let phase = shutdown.phase();
                    let kill_time = shutdown.kill_time();
                    match shutdown.on_deadline(now) {
                        Action::Nothing => break,
                        Action::TerminateRest => terminated = true,
                        Action::SendFinal => {
                            prop_assert!(!matches!(phase, Phase::Delaying { .. } | Phase::Settling { .. }), "{:?}", phase);
                            prop_assert!(terminated, "the final signal before the rest's SIGTERM, {:?}", phase);
                        }
                        Action::KillAll(_) => {
                            prop_assert!(kill_time.is_some_and(|kill_at| now >= kill_at), "killed early");
                            killed_at = Some(now);
                            shutdown.on_swept(now, true);
                        }
                        Action::Sweep => shutdown.on_swept(now, false),
                        Action::GiveUp => {
                            let killed_at = killed_at.unwrap_or(now);
                            prop_assert!(now <= killed_at + KILLING_LIMIT + Duration::from_millis(3));
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
