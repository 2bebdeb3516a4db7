//! When grace starts its command again: the policy for a main child that exits on its own (`--restart`),
//! and the delay before it, which grows while the command keeps failing fast and, after the first restart of
//! a crash loop, is never under a second, so that a crash loop cannot spin (as runit's one-second pause,
//! s6-supervise's one start per second, and systemd's RestartSec). Pure: the supervisor passes the facts in
//! and carries the decision out.

use std::time::Duration;

/// `--restart`: what grace does when the main child exits on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Exit with the child's status (a container's behaviour).
    #[default]
    Never,
    /// Start it again when its status (after `-e`) is not 0.
    OnFailure,
    /// Start it again whatever its status.
    Always,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        match text.to_ascii_lowercase().as_str() {
            "never" | "no" => Ok(Policy::Never),
            "on-failure" => Ok(Policy::OnFailure),
            "always" => Ok(Policy::Always),
            _ => Err("not a restart policy (never, on-failure or always)".to_string()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Never => "never",
            Policy::OnFailure => "on-failure",
            Policy::Always => "always",
        }
    }
}

/// The longest wait between two restarts, however often the command fails.
pub const LONGEST_DELAY: Duration = Duration::from_secs(60);

/// A run at least this long is not part of a crash loop: the delay goes back to its first value.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// The shortest wait of every restart of a crash loop but its first: a command that fails at once starts at
/// most once a second (runit pauses a second, s6-supervise starts a service at most once a second), and a
/// delay of 0, which doubling would leave at 0, still grows. The first restart waits `--restart-delay`, so
/// 0 still means "at once" for a command that fails now and then.
pub const SHORTEST_LOOP_DELAY: Duration = Duration::from_secs(1);

/// What follows a main child's exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// grace exits, with the child's status.
    Exit,
    /// grace exits: the policy would restart, but `--max-restarts` has been reached.
    LimitReached,
    /// The command starts again after this delay.
    RestartAfter(Duration),
}

/// The restart policy and where the backoff stands.
#[derive(Clone, Debug)]
pub struct Restarts {
    policy: Policy,
    first_delay: Duration,
    /// After this many restarts after exits, grace exits instead; `None`: no limit.
    max: Option<u32>,
    /// Restarts after exits so far (restarts by signal are the operator's, and do not count).
    done: u32,
    /// The delay the next restart after an exit waits.
    next_delay: Duration,
}

impl Restarts {
    pub fn new(policy: Policy, first_delay: Duration, max: Option<u32>) -> Restarts {
        Restarts {
            policy,
            first_delay,
            max,
            done: 0,
            next_delay: first_delay,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether an exit with `status` (after `-e`) would be followed by a restart: the policy wants one and
    /// the limit is not reached. [`Restarts::after_exit`] decides the same, and counts it.
    pub fn would_restart(&self, status: u8) -> bool {
        self.wanted(status) && !self.limit_reached()
    }

    /// The main child exited on its own with `status` (after `-e`) after running for `ran` — or could not
    /// be started again (`ran` zero): a failed run all the same.
    pub fn after_exit(&mut self, status: u8, ran: Duration) -> Decision {
        if !self.wanted(status) {
            return Decision::Exit;
        }
        if self.limit_reached() {
            return Decision::LimitReached;
        }
        if ran >= STABLE_RUN {
            self.next_delay = self.first_delay;
        }
        let delay = self.next_delay;
        // Never shorter than the configured delay, even when that is over a minute.
        let longest = LONGEST_DELAY.max(self.first_delay);
        self.next_delay = self
            .next_delay
            .saturating_mul(2)
            .max(SHORTEST_LOOP_DELAY)
            .min(longest);
        self.done += 1;
        Decision::RestartAfter(delay)
    }

    fn wanted(&self, status: u8) -> bool {
        match self.policy {
            Policy::Never => false,
            Policy::OnFailure => status != 0,
            Policy::Always => true,
        }
    }

    fn limit_reached(&self) -> bool {
        self.max.is_some_and(|max| self.done >= max)
    }

    /// How many restarts after an exit there have been.
    pub fn done(&self) -> u32 {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const QUICK: Duration = Duration::from_millis(100);

    #[test]
    fn each_policy_decides_by_the_status() {
        let cases = [
            (Policy::Never, 0, Decision::Exit),
            (Policy::Never, 3, Decision::Exit),
            (Policy::OnFailure, 0, Decision::Exit),
            (Policy::OnFailure, 3, Decision::RestartAfter(SECOND)),
            (Policy::OnFailure, 137, Decision::RestartAfter(SECOND)),
            (Policy::Always, 0, Decision::RestartAfter(SECOND)),
            (Policy::Always, 3, Decision::RestartAfter(SECOND)),
        ];
        for (policy, status, expected) in cases {
            let mut restarts = Restarts::new(policy, SECOND, None);
            assert_eq!(
                restarts.after_exit(status, QUICK),
                expected,
                "{policy:?} {status}"
            );
        }
    }

    #[test]
    fn the_delay_doubles_to_a_minute_and_resets_after_a_stable_run() {
        let mut restarts = Restarts::new(Policy::Always, SECOND, None);
        let delays: Vec<Duration> = (0..8)
            .map(|_| match restarts.after_exit(1, QUICK) {
                Decision::RestartAfter(delay) => delay,
                other => panic!("{other:?}"),
            })
            .collect();
        let seconds: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            restarts.after_exit(1, STABLE_RUN),
            Decision::RestartAfter(SECOND),
            "a run of 10 s is not a crash loop"
        );
        assert_eq!(
            restarts.after_exit(1, QUICK),
            Decision::RestartAfter(2 * SECOND)
        );
    }

    #[test]
    fn the_limit_ends_the_loop() {
        let mut restarts = Restarts::new(Policy::OnFailure, SECOND, Some(2));
        assert!(matches!(
            restarts.after_exit(1, QUICK),
            Decision::RestartAfter(_)
        ));
        assert!(matches!(
            restarts.after_exit(1, QUICK),
            Decision::RestartAfter(_)
        ));
        assert_eq!(restarts.after_exit(1, QUICK), Decision::LimitReached);
        assert_eq!(restarts.after_exit(0, QUICK), Decision::Exit);
        assert_eq!(restarts.done(), 2);
        assert_eq!(
            Restarts::new(Policy::Always, SECOND, Some(0)).after_exit(0, QUICK),
            Decision::LimitReached
        );
    }

    #[test]
    fn policies_parse() {
        assert_eq!(Policy::parse("on-failure"), Ok(Policy::OnFailure));
        assert_eq!(Policy::parse("ALWAYS"), Ok(Policy::Always));
        assert_eq!(Policy::parse("never"), Ok(Policy::Never));
        assert!(Policy::parse("sometimes").is_err());
        assert!(Policy::parse("").is_err());
    }

    #[test]
    fn a_delay_over_a_minute_is_kept() {
        let two_minutes = 120 * SECOND;
        let mut restarts = Restarts::new(Policy::Always, two_minutes, None);
        assert_eq!(
            restarts.after_exit(1, QUICK),
            Decision::RestartAfter(two_minutes)
        );
        assert_eq!(
            restarts.after_exit(1, QUICK),
            Decision::RestartAfter(two_minutes)
        );
    }

    /// The delays of `count` restarts after quick failures.
    fn delays(first: Duration, count: usize) -> Vec<Duration> {
        let mut restarts = Restarts::new(Policy::Always, first, None);
        (0..count)
            .map(|_| match restarts.after_exit(1, QUICK) {
                Decision::RestartAfter(delay) => delay,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_zero_delay_restarts_at_once_then_grows_from_a_second() {
        let millis: Vec<u128> = delays(Duration::ZERO, 9)
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(
            millis,
            [0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        // A short delay is kept for the first restart, and the floor holds from the second.
        let millis: Vec<u128> = delays(Duration::from_millis(200), 4)
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(millis, [200, 1000, 2000, 4000]);
        let millis: Vec<u128> = delays(Duration::from_millis(700), 3)
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(millis, [700, 1400, 2800]);
    }

    #[test]
    fn would_restart_agrees_with_the_decision() {
        for policy in [Policy::Never, Policy::OnFailure, Policy::Always] {
            for max in [None, Some(0), Some(1)] {
                let mut restarts = Restarts::new(policy, SECOND, max);
                for status in [0, 1, 0, 5] {
                    let would = restarts.would_restart(status);
                    let decided = restarts.after_exit(status, QUICK);
                    assert_eq!(
                        would,
                        matches!(decided, Decision::RestartAfter(_)),
                        "{policy:?} {max:?} {status}"
                    );
                }
            }
        }
    }
}

/// Properties over arbitrary first delays and runs: a crash loop never starts the command more than once a
/// second after its first restart, the delay never exceeds its bound, and a stable run starts the loop over.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_crash_loop_cannot_spin(
            first_millis in prop_oneof![Just(0u64), 0u64..3_000, 0u64..200_000],
            runs in prop::collection::vec(prop_oneof![3 => 0u64..2_000, 1 => 10_000u64..20_000], 1..40),
        ) {
            let first = Duration::from_millis(first_millis);
            let longest = LONGEST_DELAY.max(first);
            let mut restarts = Restarts::new(Policy::Always, first, None);
            let mut in_loop = 0usize;
            for ran in runs {
                let ran = Duration::from_millis(ran);
                let Decision::RestartAfter(delay) = restarts.after_exit(1, ran) else {
                    return Err(TestCaseError::fail("Always with no limit restarts"));
                };
                in_loop = if ran >= STABLE_RUN { 1 } else { in_loop + 1 };
                prop_assert!(delay <= longest, "{delay:?} over {longest:?}");
                if in_loop == 1 {
                    prop_assert_eq!(delay, first, "the first restart of a loop waits the configured delay");
                } else {
                    prop_assert!(delay >= SHORTEST_LOOP_DELAY.min(longest), "{:?} in a loop", delay);
                    prop_assert!(delay >= first, "{:?} under the configured {:?}", delay, first);
                }
            }
        }
    }
}
