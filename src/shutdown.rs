//! The shutdown as a pure state machine: phase × event → action. No processes, no clock reads: the
//! supervisor passes `now` in and carries the actions out, so every rule here is unit-tested in isolation.
//!
//! The timeline after a stop signal at t0 with grace period G and cleanup timeout C:
//! ```text
//! t0            forward the stop signal (+ SIGCONT) to the main child
//! t0+G-C        main child still running: SIGTERM (+ SIGCONT) to the rest of the tree, so no daemon dies
//!               without one
//! main exits    settle briefly, then SIGTERM the rest; SIGKILL after C, never past t0+G
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

/// Where the shutdown stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No stop signal yet; the main child runs.
    Running,
    /// A stop signal arrived; the main child runs. `rest_signalled`: the rest of the tree has had its SIGTERM.
    Stopping {
        deadline: Instant,
        rest_signalled: bool,
    },
    /// The main child exited; the rest of the tree settles until `until`.
    Settling {
        until: Instant,
        deadline: Option<Instant>,
    },
    /// The rest of the tree has had SIGTERM and is SIGKILLed at `kill_at`.
    CleaningUp {
        kill_at: Instant,
        deadline: Option<Instant>,
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
    /// Forward the stop signal to the main child (and SIGCONT). `repeat` is 1 for the first stop signal.
    ForwardStop {
        repeat: u32,
    },
    /// A stop signal arrived after the main child had exited; nothing to forward it to.
    StopAfterMainExit,
    /// SIGTERM and SIGCONT to every process of the tree but the main child.
    TerminateRest,
    /// SIGKILL to every process of the tree.
    KillAll(KillReason),
    /// Stop waiting for the processes that survived SIGKILL.
    GiveUp,
}

/// The shutdown's timings and where it stands.
#[derive(Clone, Debug)]
pub struct Shutdown {
    grace_period: Duration,
    cleanup_timeout: Duration,
    phase: Phase,
    stop_signals: u32,
    stopped_at: Option<Instant>,
}

impl Shutdown {
    pub fn new(grace_period: Duration, cleanup_timeout: Duration) -> Shutdown {
        Shutdown {
            grace_period,
            cleanup_timeout,
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

    /// The next moment at which [`Shutdown::on_deadline`] has something to do; `None` while running.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping {
                deadline,
                rest_signalled: true,
            } => Some(deadline),
            Phase::Stopping {
                deadline,
                rest_signalled: false,
            } => Some(self.rest_signal_time(deadline)),
            Phase::Settling { until, deadline } => {
                Some(deadline.map_or(until, |deadline| until.min(deadline)))
            }
            Phase::CleaningUp { kill_at, .. } => Some(kill_at),
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
                if self.grace_period.is_zero() {
                    return self.kill_all(now, KillReason::NoGracePeriod);
                }
                let deadline = now + self.grace_period;
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled: false,
                };
                Action::ForwardStop { repeat }
            }
            Phase::Stopping { .. } => Action::ForwardStop { repeat },
            Phase::Settling {
                until,
                deadline: None,
            } => {
                self.stopped_at = Some(now);
                self.phase = Phase::Settling {
                    until,
                    deadline: Some(now + self.grace_period),
                };
                Action::StopAfterMainExit
            }
            Phase::CleaningUp {
                kill_at,
                deadline: None,
            } => {
                self.stopped_at = Some(now);
                let deadline = now + self.grace_period;
                self.phase = Phase::CleaningUp {
                    kill_at: kill_at.min(deadline),
                    deadline: Some(deadline),
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
            },
            Phase::Stopping {
                deadline,
                rest_signalled: true,
            } => Phase::CleaningUp {
                kill_at: deadline,
                deadline: Some(deadline),
            },
            Phase::Stopping {
                deadline,
                rest_signalled: false,
            } => Phase::Settling {
                until: (now + SETTLE).min(deadline),
                deadline: Some(deadline),
            },
            other => other,
        };
        Action::Nothing
    }

    /// Time has passed; acts on whatever deadline has been reached by `now`.
    pub fn on_deadline(&mut self, now: Instant) -> Action {
        match self.phase {
            Phase::Running => Action::Nothing,
            Phase::Stopping { deadline, .. } if now >= deadline => {
                self.kill_all(now, KillReason::GracePeriodExpired)
            }
            Phase::Stopping {
                deadline,
                rest_signalled: false,
            } if now >= self.rest_signal_time(deadline) => {
                self.phase = Phase::Stopping {
                    deadline,
                    rest_signalled: true,
                };
                Action::TerminateRest
            }
            Phase::Stopping { .. } => Action::Nothing,
            Phase::Settling {
                deadline: Some(deadline),
                ..
            } if now >= deadline => self.kill_all(now, KillReason::GracePeriodExpired),
            Phase::Settling { until, deadline } if now >= until => {
                let cleanup_end = now + self.cleanup_timeout;
                let kill_at = deadline.map_or(cleanup_end, |deadline| cleanup_end.min(deadline));
                self.phase = Phase::CleaningUp { kill_at, deadline };
                Action::TerminateRest
            }
            Phase::Settling { .. } => Action::Nothing,
            Phase::CleaningUp { kill_at, deadline } if now >= kill_at => {
                let reason = match deadline {
                    Some(deadline) if now >= deadline => KillReason::GracePeriodExpired,
                    _ => KillReason::CleanupTimeoutExpired,
                };
                self.kill_all(now, reason)
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
            .checked_sub(self.cleanup_timeout)
            .unwrap_or(deadline)
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
        let mut shutdown = Shutdown::new(GRACE, CLEANUP);
        assert_eq!(
            shutdown.on_stop_signal(t0),
            Action::ForwardStop { repeat: 1 }
        );
        shutdown
    }

    #[test]
    fn idle_has_no_deadline() {
        let mut shutdown = Shutdown::new(GRACE, CLEANUP);
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
        let mut shutdown = Shutdown::new(Duration::ZERO, CLEANUP);
        assert_eq!(
            shutdown.on_stop_signal(t0),
            Action::KillAll(KillReason::NoGracePeriod)
        );
    }

    #[test]
    fn main_exit_on_its_own_settles_then_cleans_up() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(GRACE, CLEANUP);
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
        shutdown.on_deadline(t0 + GRACE - CLEANUP);
        let mut late = stopped(t0);
        late.on_main_exit(t0 + GRACE - 10 * MS);
        assert_eq!(
            late.next_deadline(),
            Some(t0 + GRACE - 10 * MS + SETTLE).map(|t| t.min(t0 + GRACE))
        );
    }

    #[test]
    fn stop_signal_after_main_exit_bounds_the_cleanup() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::new(Duration::from_millis(500), Duration::from_secs(60));
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
