//! The shutdown as a pure state machine: phase × event → action. No processes, no clock reads: the
//! supervisor passes `now` in and carries the actions out, so every rule here is unit-tested in isolation.
//!
//! The timeline after a stop signal at t0 with grace period G, cleanup timeout C, pre-stop delay P and, when
//! the final signal is not SIGKILL, final timeout F:
//! ```text
//! t0            start the clock; with P, wait (other signals are still forwarded at once)
//! t0+P          forward the stop signal (+ SIGCONT) to the main child
//! t0+G-C        main child still running: SIGTERM (+ SIGCONT) to the rest of the tree, so no daemon dies
//!               without one
//! main exits    settle briefly, then SIGTERM the rest; SIGKILL after C, never past t0+G
//! t0+G-F        the final signal (e.g. SIGQUIT for a thread dump) to everything that remains
//! t0+G          SIGKILL to everything that remains
//! ```
//! When the main child exits on its own, the rest gets the same settle, SIGTERM, and SIGKILL after C.
//! grace exits as soon as the tree is empty; that check belongs to the supervisor.

use std::time::{Duration, Instant};

/// After the main child exits, how long the rest of the tree is left alone before its SIGTERM: processes
/// already on their way out (a `tee` draining a FIFO whose writer just exited) finish undisturbed.
pub const SETTLE: Duration = Duration::from_millis(200);

/// After SIGKILL, how long grace waits for processes that cannot die at once (uninterruptible sleep)
/// before it gives up on them and exits.
pub const UNKILLABLE_WAIT: Duration = Duration::from_secs(1);

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
    /// Everything has had SIGKILL; grace gives up on survivors at `give_up_at`.
    Killing { give_up_at: Instant },
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
    /// SIGKILL to every process of the tree.
    KillAll(KillReason),
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
}

impl Shutdown {
    pub fn new(timings: Timings) -> Shutdown {
        Shutdown {
            timings,
            phase: Phase::Running,
            stop_signals: 0,
            stopped_at: None,
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

    /// The next moment at which [`Shutdown::on_deadline`] has something to do; `None` while running.
    pub fn next_deadline(&self) -> Option<Instant> {
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
            Phase::Killing { give_up_at } => Some(give_up_at),
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
            Phase::Killing { give_up_at } if now >= give_up_at => Action::GiveUp,
            Phase::Killing { .. } => Action::Nothing,
        }
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
        self.phase = Phase::Killing {
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
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE - CLEANUP));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - CLEANUP - MS),
            Action::Nothing
        );
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(shutdown.on_deadline(t0 + GRACE - MS), Action::Nothing);
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE + UNKILLABLE_WAIT));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE + UNKILLABLE_WAIT),
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
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
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
        assert_eq!(shutdown.next_deadline(), Some(t0 + SETTLE));
        assert_eq!(shutdown.on_deadline(t0 + SETTLE - MS), Action::Nothing);
        assert_eq!(shutdown.on_deadline(t0 + SETTLE), Action::TerminateRest);
        assert_eq!(shutdown.next_deadline(), Some(t0 + SETTLE + CLEANUP));
        assert_eq!(
            shutdown.on_deadline(t0 + SETTLE + CLEANUP),
            Action::KillAll(KillReason::CleanupTimeoutExpired)
        );
    }

    #[test]
    fn cleanup_never_runs_past_the_grace_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        let exit = t0 + GRACE - CLEANUP - 100 * MS; // main exits just before the rest would get SIGTERM
        shutdown.on_main_exit(exit);
        assert_eq!(shutdown.on_deadline(exit + SETTLE), Action::TerminateRest);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn main_exit_after_the_rest_was_signalled_keeps_the_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        shutdown.on_main_exit(t0 + GRACE - MS);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );
    }

    #[test]
    fn settle_is_cut_short_by_the_deadline() {
        let t0 = Instant::now();
        let mut shutdown = stopped(t0);
        shutdown.on_main_exit(t0 + GRACE - 10 * MS);
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
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
        assert_eq!(shutdown.next_deadline(), Some(t0 + delay));
        assert_eq!(
            shutdown.on_stop_signal(t0 + MS),
            Action::RepeatDuringDelay { repeat: 2 }
        );
        assert_eq!(shutdown.on_deadline(t0 + delay - MS), Action::Nothing);
        assert_eq!(
            shutdown.on_deadline(t0 + delay),
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
            shutdown.on_deadline(t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
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
        assert_eq!(
            shutdown.on_deadline(t0 + MS + SETTLE),
            Action::TerminateRest
        );
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
            shutdown.on_deadline(t0 + GRACE - Duration::from_secs(3)),
            Action::SendFinal
        );
        let exit = t0 + GRACE - Duration::from_millis(2500);
        shutdown.on_main_exit(exit);
        assert_eq!(shutdown.on_deadline(exit + SETTLE), Action::TerminateRest);
        // No second final signal before the cleanup's SIGKILL.
        assert_eq!(shutdown.next_deadline(), Some(exit + SETTLE + CLEANUP));
        assert_eq!(
            shutdown.on_deadline(exit + SETTLE + CLEANUP),
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
            shutdown.on_deadline(t0 + GRACE - CLEANUP),
            Action::TerminateRest
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE - final_timeout));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE - final_timeout),
            Action::SendFinal
        );
        assert_eq!(shutdown.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            shutdown.on_deadline(t0 + GRACE),
            Action::KillAll(KillReason::GracePeriodExpired)
        );

        let mut cleanup = Shutdown::new(timings);
        cleanup.on_main_exit(t0);
        assert_eq!(cleanup.on_deadline(t0 + SETTLE), Action::TerminateRest);
        assert_eq!(
            cleanup.on_deadline(t0 + SETTLE + CLEANUP - final_timeout),
            Action::SendFinal
        );
        assert_eq!(
            cleanup.on_deadline(t0 + SETTLE + CLEANUP),
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
        assert_eq!(shutdown.on_deadline(t0 + SETTLE), Action::TerminateRest);
        assert_eq!(
            shutdown.on_stop_signal(t0 + SETTLE),
            Action::StopAfterMainExit
        );
        assert_eq!(
            shutdown.next_deadline(),
            Some(t0 + SETTLE + Duration::from_millis(500))
        );
    }
}
