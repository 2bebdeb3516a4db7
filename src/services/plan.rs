//! The ordered stop of several services, as a pure state machine: services (in stop order, the reverse of
//! their start order) × what is known of each (its own process alive, other processes of its tree alive) ×
//! events → actions. No processes, no clock reads: the supervisor tells it facts and the time and carries
//! its actions out. The container's one clock — pre-stop delay, grace period − cleanup timeout, final signal,
//! SIGKILL at the deadline — stays with [`crate::shutdown::Shutdown`]; this only orders the services inside it.
//!
//! One service at a time, last started first:
//! ```text
//! its turn       its own process gets its stop signal (and SIGCONT); with a stop timeout, a clock starts
//! own exited     what remains of its tree (daemons) gets SIGTERM (and SIGCONT) at once
//! tree empty     the next service's turn
//! stop timeout   SIGKILL to its tree, and the next service's turn
//! G − C          every process of every tree not yet signalled gets its service's stop signal: each keeps
//!                the cleanup timeout to react, and turns go on only to wait
//! ```
//! Services waiting for their turn keep running and may be restarted until G − C ([`StopPlan::may_restart`]).

use std::time::{Duration, Instant};

/// A service's index in the start order (the service table's order).
pub type ServiceId = usize;

/// What is known of one service's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The process grace started for it (its command) is alive: not reaped yet.
    pub own_alive: bool,
    /// Other processes of its tree are alive: its children, daemons it left behind.
    pub rest_alive: bool,
}

impl Facts {
    pub fn empty(self) -> bool {
        !self.own_alive && !self.rest_alive
    }
}

/// What the supervisor must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The service's turn: its own process gets the service's stop signal, then SIGCONT.
    SignalOwn(ServiceId),
    /// Its own process has exited: SIGTERM, then SIGCONT, to every other process of its tree.
    TerminateRest(ServiceId),
    /// Its stop timeout ran out: SIGKILL to its whole tree.
    KillTree(ServiceId),
    /// Grace period − cleanup timeout: the service's stop signal, then SIGCONT, to what of its tree was not
    /// signalled yet — its own process when `own`, the other processes when `rest`.
    SignalUnsignalled {
        service: ServiceId,
        own: bool,
        rest: bool,
    },
}

/// Where one service stands in the stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// Its turn has not come: it runs (and may be restarted).
    Waiting,
    /// Its turn: grace waits for its tree to empty, or for `kill_at` (its stop timeout).
    Current { kill_at: Option<Instant> },
    /// Nothing of it is left, or its tree was SIGKILLed.
    Done,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    service: ServiceId,
    stop_timeout: Option<Duration>,
    facts: Facts,
    turn: Turn,
    /// Its own process was sent the stop signal (by its turn, or at G − C).
    own_signalled: bool,
    /// The rest of its tree was signalled (SIGTERM after the own process exited, or the stop signal at G − C).
    rest_signalled: bool,
}

/// The ordered stop.
#[derive(Clone, Debug)]
pub struct StopPlan {
    /// In stop order.
    entries: Vec<Entry>,
    /// Grace period − cleanup timeout has been reached: everything has been signalled once.
    everything_signalled: bool,
}

/// One service as the plan takes it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub service: ServiceId,
    pub stop_timeout: Option<Duration>,
    pub facts: Facts,
}

impl StopPlan {
    /// A plan over `members`, given in start order; the stop runs in reverse. Nothing happens until
    /// [`StopPlan::begin`].
    pub fn new(members: &[Member]) -> StopPlan {
        let entries = members
            .iter()
            .rev()
            .map(|member| Entry {
                service: member.service,
                stop_timeout: member.stop_timeout,
                facts: member.facts,
                turn: Turn::Waiting,
                own_signalled: false,
                rest_signalled: false,
            })
            .collect();
        StopPlan {
            entries,
            everything_signalled: false,
        }
    }

    /// The stop begins at `now` (after the pre-stop delay, if any): the first service's turn.
    pub fn begin(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.advance(now, &mut actions);
        actions
    }

    /// What is known of `service` changed (its own process exited, it was restarted, its tree emptied).
    pub fn on_facts(&mut self, service: ServiceId, facts: Facts, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(entry) = self.entry_mut(service) {
            entry.facts = facts;
            // A restarted service's new process has not been signalled; a restart is allowed only before
            // G − C and before its turn, so this never undoes a signal that counts.
            if facts.own_alive && matches!(entry.turn, Turn::Waiting) && !entry.own_signalled {
                entry.rest_signalled = false;
            }
        }
        self.advance(now, &mut actions);
        actions
    }

    /// Time passed: a stop timeout may have run out.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(entry) = self.current_mut() {
            if let Turn::Current {
                kill_at: Some(kill_at),
            } = entry.turn
            {
                if now >= kill_at {
                    entry.turn = Turn::Done;
                    actions.push(Action::KillTree(entry.service));
                }
            }
        }
        self.advance(now, &mut actions);
        actions
    }

    /// Grace period − cleanup timeout: everything not yet signalled is, with its service's stop signal.
    pub fn on_rest_time(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.everything_signalled = true;
        for entry in self
            .entries
            .iter_mut()
            .filter(|entry| entry.turn != Turn::Done)
        {
            let own = entry.facts.own_alive && !entry.own_signalled;
            let rest = entry.facts.rest_alive && !entry.rest_signalled;
            entry.own_signalled = true;
            entry.rest_signalled = true;
            if own || rest {
                actions.push(Action::SignalUnsignalled {
                    service: entry.service,
                    own,
                    rest,
                });
            }
        }
        self.advance(now, &mut actions);
        actions
    }

    /// A repeated stop signal: the services whose own process was signalled and is still alive get it again.
    pub fn repeat(&self) -> Vec<Action> {
        self.entries
            .iter()
            .filter(|entry| entry.own_signalled && entry.facts.own_alive)
            .map(|entry| Action::SignalOwn(entry.service))
            .collect()
    }

    /// The next moment [`StopPlan::on_deadline`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.current()?.turn {
            Turn::Current { kill_at } => kill_at,
            _ => None,
        }
    }

    /// Whether `service` may be started again after an exit: only while its turn has not come and before
    /// G − C, so that a helper stays up for the whole drain of what depends on it, and nothing new starts
    /// unsignalled once everything has been signalled.
    pub fn may_restart(&self, service: ServiceId) -> bool {
        !self.everything_signalled
            && self
                .entry(service)
                .is_some_and(|entry| entry.turn == Turn::Waiting && !entry.own_signalled)
    }

    /// The service whose turn it is, if the stop has not gone through every service.
    #[cfg(test)]
    pub fn current_service(&self) -> Option<ServiceId> {
        self.current().map(|entry| entry.service)
    }

    /// Whether every service's turn is over.
    #[cfg(test)]
    pub fn finished(&self) -> bool {
        self.entries.iter().all(|entry| entry.turn == Turn::Done)
    }

    /// Whether `service`'s own process has been sent its stop signal.
    pub fn own_signalled(&self, service: ServiceId) -> bool {
        self.entry(service).is_some_and(|entry| entry.own_signalled)
    }

    /// Gives turns to services in order for as long as the current one has nothing left.
    fn advance(&mut self, now: Instant, actions: &mut Vec<Action>) {
        while let Some(entry) = self.current_mut() {
            if entry.turn == Turn::Waiting {
                entry.turn = Turn::Current {
                    kill_at: entry.stop_timeout.map(|timeout| now + timeout),
                };
            }
            if entry.facts.own_alive {
                if !entry.own_signalled {
                    entry.own_signalled = true;
                    actions.push(Action::SignalOwn(entry.service));
                }
                return; // its own process first
            }
            if entry.facts.rest_alive {
                if !entry.rest_signalled {
                    entry.rest_signalled = true;
                    actions.push(Action::TerminateRest(entry.service));
                }
                return;
            }
            entry.turn = Turn::Done;
        }
    }

    fn current(&self) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.turn != Turn::Done)
    }

    fn current_mut(&mut self) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|entry| entry.turn != Turn::Done)
    }

    fn entry(&self, service: ServiceId) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.service == service)
    }

    fn entry_mut(&mut self, service: ServiceId) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|entry| entry.service == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: Facts = Facts {
        own_alive: true,
        rest_alive: false,
    };
    const WITH_DAEMON: Facts = Facts {
        own_alive: true,
        rest_alive: true,
    };
    const DAEMON_ONLY: Facts = Facts {
        own_alive: false,
        rest_alive: true,
    };
    const GONE: Facts = Facts {
        own_alive: false,
        rest_alive: false,
    };
    const MS: Duration = Duration::from_millis(1);

    fn member(service: ServiceId, facts: Facts) -> Member {
        Member {
            service,
            stop_timeout: None,
            facts,
        }
    }

    #[test]
    fn services_stop_one_at_a_time_last_started_first() {
        let t0 = Instant::now();
        let mut plan = StopPlan::new(&[member(0, RUNNING), member(1, RUNNING), member(2, RUNNING)]);
        assert_eq!(plan.begin(t0), [Action::SignalOwn(2)]);
        assert!(plan.may_restart(0) && plan.may_restart(1) && !plan.may_restart(2));
        assert_eq!(plan.on_facts(1, GONE, t0), []); // not its turn: noted only
                                                    // 1 had nothing left: 0's turn at once.
        assert_eq!(plan.on_facts(2, GONE, t0 + MS), [Action::SignalOwn(0)]);
        assert_eq!(plan.current_service(), Some(0));
        assert_eq!(plan.on_facts(0, GONE, t0 + 2 * MS), []);
        assert!(plan.finished());
    }

    #[test]
    fn the_next_turn_waits_for_the_daemons() {
        let t0 = Instant::now();
        let mut plan = StopPlan::new(&[member(0, RUNNING), member(1, WITH_DAEMON)]);
        assert_eq!(plan.begin(t0), [Action::SignalOwn(1)]);
        assert_eq!(
            plan.on_facts(1, DAEMON_ONLY, t0 + MS),
            [Action::TerminateRest(1)]
        );
        assert_eq!(plan.on_facts(1, DAEMON_ONLY, t0 + 2 * MS), []); // once
        assert_eq!(plan.current_service(), Some(1));
        assert_eq!(plan.on_facts(1, GONE, t0 + 3 * MS), [Action::SignalOwn(0)]);
    }

    #[test]
    fn a_stop_timeout_kills_the_tree_and_moves_on() {
        let t0 = Instant::now();
        let mut members = [member(0, RUNNING), member(1, RUNNING)];
        members[1].stop_timeout = Some(Duration::from_secs(2));
        let mut plan = StopPlan::new(&members);
        assert_eq!(plan.begin(t0), [Action::SignalOwn(1)]);
        assert_eq!(plan.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(plan.on_deadline(t0 + Duration::from_secs(2) - MS), []);
        assert_eq!(
            plan.on_deadline(t0 + Duration::from_secs(2)),
            [Action::KillTree(1), Action::SignalOwn(0)]
        );
        assert_eq!(plan.next_deadline(), None);
    }

    #[test]
    fn rest_time_signals_only_what_was_not_signalled() {
        let t0 = Instant::now();
        let mut plan = StopPlan::new(&[
            member(0, WITH_DAEMON),
            member(1, DAEMON_ONLY),
            member(2, WITH_DAEMON),
        ]);
        assert_eq!(plan.begin(t0), [Action::SignalOwn(2)]);
        assert_eq!(
            plan.on_rest_time(t0 + MS),
            [
                Action::SignalUnsignalled {
                    service: 2,
                    own: false,
                    rest: true
                },
                Action::SignalUnsignalled {
                    service: 1,
                    own: false,
                    rest: true
                },
                Action::SignalUnsignalled {
                    service: 0,
                    own: true,
                    rest: true
                },
            ]
        );
        assert!(!plan.may_restart(0));
        // Turns go on, to wait only.
        assert_eq!(plan.on_facts(2, GONE, t0 + 2 * MS), []);
        assert_eq!(plan.on_facts(1, GONE, t0 + 3 * MS), []);
        assert_eq!(plan.current_service(), Some(0));
    }

    #[test]
    fn a_service_restarted_while_waiting_gets_its_turn_as_usual() {
        let t0 = Instant::now();
        let mut plan = StopPlan::new(&[member(0, RUNNING), member(1, RUNNING)]);
        assert_eq!(plan.begin(t0), [Action::SignalOwn(1)]);
        assert_eq!(plan.on_facts(0, GONE, t0 + MS), []);
        assert!(plan.may_restart(0));
        assert_eq!(plan.on_facts(0, RUNNING, t0 + 2 * MS), []);
        assert_eq!(plan.on_facts(1, GONE, t0 + 3 * MS), [Action::SignalOwn(0)]);
    }

    #[test]
    fn repeats_go_to_the_services_already_signalled() {
        let t0 = Instant::now();
        let mut plan = StopPlan::new(&[member(0, RUNNING), member(1, RUNNING)]);
        plan.begin(t0);
        assert_eq!(plan.repeat(), [Action::SignalOwn(1)]);
    }
}

/// Properties over arbitrary service counts, facts and event timings: the order holds, nothing is killed
/// but by a stop timeout, and every stop ends.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Event {
        /// A service's facts change to these (its own process can only die, or come back by a restart).
        Facts(ServiceId, bool, bool),
        /// Time passes by this many milliseconds.
        Wait(u64),
        RestTime,
    }

    fn event(services: usize) -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (0..services, any::<bool>(), any::<bool>()).prop_map(|(s, o, r)| Event::Facts(s, o, r)),
            2 => (0u64..3_000).prop_map(Event::Wait),
            1 => Just(Event::RestTime),
        ]
    }

    fn scenario() -> impl Strategy<Value = (Vec<(Facts, Option<u64>)>, Vec<Event>)> {
        (1usize..7).prop_flat_map(|services| {
            (
                prop::collection::vec(
                    (any::<bool>(), any::<bool>(), prop::option::of(0u64..5_000)).prop_map(
                        |(own_alive, rest_alive, timeout)| {
                            (
                                Facts {
                                    own_alive,
                                    rest_alive,
                                },
                                timeout,
                            )
                        },
                    ),
                    services,
                ),
                prop::collection::vec(event(services), 0..60),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// A service is signalled (its own process, or its rest by its turn) only once every service after it
        /// in the stop order has nothing left or was SIGKILLed by its stop timeout — unless G − C was reached;
        /// a tree is SIGKILLed only by its own stop timeout, once it ran out; and once every tree is empty,
        /// the plan is finished.
        #[test]
        fn order_and_bounds_hold((services, events) in scenario()) {
            let t0 = Instant::now();
            let members: Vec<Member> = services
                .iter()
                .enumerate()
                .map(|(service, (facts, timeout))| Member {
                    service,
                    stop_timeout: timeout.map(Duration::from_millis),
                    facts: *facts,
                })
                .collect();
            let mut facts: Vec<Facts> = members.iter().map(|member| member.facts).collect();
            let mut killed = vec![false; members.len()];
            let mut turn_started: Vec<Option<Instant>> = vec![None; members.len()];
            let mut rest_time = false;
            let mut now = t0;
            let mut plan = StopPlan::new(&members);
            let check = |actions: Vec<Action>, now: Instant, facts: &[Facts], killed: &mut [bool],
                             turn_started: &mut [Option<Instant>], rest_time: bool, plan: &StopPlan| -> Result<(), TestCaseError> {
                for action in actions {
                    match action {
                        Action::SignalOwn(service) | Action::TerminateRest(service) => {
                            // Every service started after it is empty or was killed.
                            for later in service + 1..facts.len() {
                                prop_assert!(
                                    rest_time || facts[later].empty() || killed[later],
                                    "{service} signalled while {later} still has processes"
                                );
                            }
                            turn_started[service].get_or_insert(now);
                        }
                        Action::KillTree(service) => {
                            let timeout = members[service].stop_timeout;
                            prop_assert!(timeout.is_some(), "killed without a stop timeout");
                            let started = turn_started[service].unwrap_or(now);
                            prop_assert!(now >= started + timeout.unwrap_or_default(), "killed early");
                            killed[service] = true;
                        }
                        Action::SignalUnsignalled { .. } => prop_assert!(rest_time),
                    }
                }
                let _ = plan;
                Ok(())
            };
            let actions = plan.begin(now);
            for (service, _) in members.iter().enumerate() {
                if plan.current_service() == Some(service) {
                    turn_started[service].get_or_insert(now);
                }
            }
            check(actions, now, &facts, &mut killed, &mut turn_started, rest_time, &plan)?;
            for event in events {
                let actions = match event {
                    Event::Facts(service, own_alive, rest_alive) => {
                        // A process that is gone comes back only through a restart, which the plan allows.
                        let own_alive = own_alive && (facts[service].own_alive || plan.may_restart(service));
                        let rest_alive = rest_alive && (facts[service].rest_alive || own_alive);
                        facts[service] = Facts { own_alive, rest_alive };
                        plan.on_facts(service, facts[service], now)
                    }
                    Event::Wait(ms) => {
                        now += Duration::from_millis(ms);
                        plan.on_deadline(now)
                    }
                    Event::RestTime => {
                        rest_time = true;
                        plan.on_rest_time(now)
                    }
                };
                if let Some(current) = plan.current_service() {
                    turn_started[current].get_or_insert(now);
                }
                check(actions, now, &facts, &mut killed, &mut turn_started, rest_time, &plan)?;
                if let Some(deadline) = plan.next_deadline() {
                    prop_assert!(deadline >= now || plan.current_service().is_some());
                }
            }
            // Everything empties: the plan finishes.
            for service in 0..facts.len() {
                facts[service] = Facts::default();
                let actions = plan.on_facts(service, facts[service], now);
                check(actions, now, &facts, &mut killed, &mut turn_started, rest_time, &plan)?;
            }
            prop_assert!(plan.finished());
        }
    }
}

/// The plan inside the container's clock, as the services loop runs them: over arbitrary services, facts,
/// stop timeouts and timings, no service is signalled by its turn before the services after it are empty or
/// killed (unless G − C was reached), no tree is SIGKILLed before the deadline but by its own stop timeout,
/// everything is SIGKILLed at the deadline, and the stop is over by then once SIGKILL works.
#[cfg(test)]
mod with_the_clock {
    use super::*;
    use crate::shutdown::{Action as ClockAction, Shutdown, Timings};
    use proptest::prelude::*;

    /// A grace period and a cleanup timeout (ms); each service's own process and rest alive, and its stop
    /// timeout (ms); exits of own processes: which, and when (ms after the stop).
    type Scenario = (u64, u64, Vec<(bool, bool, Option<u64>)>, Vec<(usize, u64)>);

    fn scenario() -> impl Strategy<Value = Scenario> {
        (1u64..20_000, 0u64..20_000, 1usize..6).prop_flat_map(|(grace, cleanup, services)| {
            (
                Just(grace),
                Just(cleanup.min(grace)),
                prop::collection::vec(
                    (any::<bool>(), any::<bool>(), prop::option::of(0u64..10_000)),
                    services,
                ),
                // Exits: service index, and when (ms after the stop), in any order.
                prop::collection::vec((0..services, 0u64..25_000), 0..12),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_plan_holds_inside_the_clock((grace, cleanup, services, mut exits) in scenario()) {
            let grace = Duration::from_millis(grace);
            let cleanup = Duration::from_millis(cleanup);
            let t0 = Instant::now();
            let mut facts: Vec<Facts> = services
                .iter()
                .map(|(own_alive, rest_alive, _)| Facts { own_alive: *own_alive, rest_alive: *rest_alive })
                .collect();
            let members: Vec<Member> = services
                .iter()
                .enumerate()
                .map(|(service, (_, _, timeout))| Member {
                    service,
                    stop_timeout: timeout.map(Duration::from_millis),
                    facts: facts[service],
                })
                .collect();
            let mut clock = Shutdown::new(Timings::new(grace, cleanup));
            let mut plan = StopPlan::new(&members);
            let mut killed = vec![false; facts.len()];
            let mut rest_time = false;
            let mut killed_all_at = None;
            let apply = |actions: Vec<Action>, _now: Instant, facts: &mut Vec<Facts>,
                             killed: &mut Vec<bool>, rest_time: bool| -> Result<(), TestCaseError> {
                for action in actions {
                    match action {
                        Action::SignalOwn(service) | Action::TerminateRest(service) => {
                            for later in service + 1..facts.len() {
                                prop_assert!(rest_time || facts[later].empty() || killed[later]);
                            }
                        }
                        Action::KillTree(service) => {
                            prop_assert!(members[service].stop_timeout.is_some());
                            killed[service] = true;
                            facts[service] = Facts::default(); // SIGKILL works here
                        }
                        Action::SignalUnsignalled { .. } => prop_assert!(rest_time),
                    }
                }
                Ok(())
            };
            // The stop signal.
            match clock.on_stop_signal(t0) {
                ClockAction::ForwardStop { repeat: 1 } => {
                    let actions = plan.begin(t0);
                    apply(actions, t0, &mut facts, &mut killed, rest_time)?;
                }
                ClockAction::KillAll(_) => killed_all_at = Some(t0),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
            exits.sort_by_key(|(_, at)| *at);
            let mut exits = exits.into_iter().peekable();
            let mut now = t0;
            // Step through time: the next deadline of either machine, or the next exit.
            for _ in 0..10_000 {
                if killed_all_at.is_some() {
                    break;
                }
                let next_exit = exits.peek().map(|(_, at)| t0 + Duration::from_millis(*at));
                let next = [clock.next_deadline(), plan.next_deadline(), next_exit]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next else { break };
                now = now.max(next);
                if next_exit == Some(next) {
                    let (service, _) = exits.next().unwrap_or_default();
                    // Its own process exits; its daemons, if any, stay.
                    facts[service].own_alive = false;
                    let actions = plan.on_facts(service, facts[service], now);
                    apply(actions, now, &mut facts, &mut killed, rest_time)?;
                    continue;
                }
                let actions = plan.on_deadline(now);
                apply(actions, now, &mut facts, &mut killed, rest_time)?;
                loop {
                    match clock.on_deadline(now) {
                        ClockAction::Nothing => break,
                        ClockAction::TerminateRest => {
                            prop_assert!(now >= t0 + grace - cleanup);
                            rest_time = true;
                            let actions = plan.on_rest_time(now);
                            apply(actions, now, &mut facts, &mut killed, rest_time)?;
                        }
                        ClockAction::KillAll(_) => {
                            prop_assert!(now >= t0 + grace, "killed at {:?}", now - t0);
                            killed_all_at = Some(now);
                            break;
                        }
                        ClockAction::Survey => {}
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
            }
            // The deadline always comes: at G exactly, as the clock computes it.
            let killed_all_at = killed_all_at.unwrap_or(now);
            prop_assert!(killed_all_at <= t0 + grace, "no SIGKILL by the deadline");
            // Once SIGKILL has ended everything, the plan finishes.
            for service in 0..facts.len() {
                facts[service] = Facts::default();
                let actions = plan.on_facts(service, facts[service], killed_all_at);
                apply(actions, killed_all_at, &mut facts, &mut killed, true)?;
            }
            prop_assert!(plan.finished());
        }
    }
}
