//! The harness steps exactly, and every agent ticks at its own rate with
//! staggered phases; actions carry the exact due time.

mod common;

use bevy_ecs::prelude::*;
use continuum::action::{Action, ActionKind, Target};

use continuum::clock::NANOS_PER_SEC;
use continuum::metrics::RunStats;
use continuum::prelude::*;

/// Agents at 100, 25, 10 and 3 Hz on a 100 Hz clock.
fn rates_scenario() -> Scenario {
    common::scenario(&format!(
        r#"Scenario(
            name: "rates",
            world: (sites: 1),
            clock: (fixed_hz: 100.0),
            archetypes: [{}],
            groups: [
                (kind: "ticker", count: 4, tick_hz: 100.0),
                (kind: "ticker", count: 8, tick_hz: 25.0),
                (kind: "ticker", count: 10, tick_hz: 10.0),
                (kind: "ticker", count: 7, tick_hz: 3.0),
            ],
        )"#,
        common::idle_kind("ticker", 10.0)
    ))
}

/// Ticks an agent with this period and first due time has in `[0, end)`.
fn expected_ticks(first_due: u64, period: u64, end: u64) -> u64 {
    if first_due >= end {
        0
    } else {
        (end - first_due - 1) / period + 1
    }
}

/// First due time of agent `i` of a group of `n`: evenly spread over one period.
fn first_due(i: u64, n: u64, period: u64) -> u64 {
    ((i as f64 / n as f64 * period as f64) as u64).min(period - 1)
}

#[test]
fn agents_tick_exactly_at_their_own_rates() {
    let mut sim = SimHarness::new(rates_scenario());
    assert_eq!(sim.clock().step(), 0, "priming must not run a step");
    sim.step(137);
    assert_eq!(sim.clock().step(), 137);
    let step_ns = sim.clock().step_ns();
    assert_eq!(step_ns, 10_000_000);
    let end = 137 * step_ns;

    let groups: [(u64, f64); 4] = [(4, 100.0), (8, 25.0), (10, 10.0), (7, 3.0)];
    let cadences = sim.agents::<Cadence>();
    let mut i = 0;
    let mut total = 0;
    for (n, hz) in groups {
        let period = (1e9 / hz).round() as u64;
        for member in 0..n {
            let (id, cadence) = cadences[i];
            assert_eq!(cadence.rate.0, hz as f32);
            let want = expected_ticks(first_due(member, n, period), period, end);
            assert_eq!(
                u64::from(cadence.ticks),
                want,
                "agent {id} at {hz} Hz (member {member} of {n}) ticked {} times in 137 steps",
                cadence.ticks
            );
            total += want;
            i += 1;
        }
    }
    assert_eq!(sim.world().resource::<RunStats>().agent_ticks, total);
    // 10 Hz agents: exactly 13 or 14 ticks in 1.37 s, depending on phase.
    assert!(
        cadences[12..22]
            .iter()
            .all(|(_, c)| c.ticks == 13 || c.ticks == 14)
    );
}

#[test]
fn run_for_counts_virtual_seconds_in_whole_steps() {
    let mut sim = SimHarness::new(rates_scenario());
    sim.run_for(2.5);
    assert_eq!(sim.clock().step(), 250);
    assert_eq!(sim.clock().now(), 5 * NANOS_PER_SEC / 2);
    // Every 10 Hz agent ticked exactly 25 times in 2.5 s.
    let cadences = sim.agents::<Cadence>();
    assert!(
        cadences[12..22].iter().all(|(_, c)| c.ticks == 25),
        "{cadences:?}"
    );
}

#[test]
fn duration_stops_the_clock_exactly() {
    let mut scenario = rates_scenario();
    scenario.clock.duration = Some(0.5);
    let mut sim = SimHarness::new(scenario);
    sim.step(1000);
    assert_eq!(sim.clock().step(), 50);
    assert!(sim.clock().is_finished());
    let ticks = sim.world().resource::<RunStats>().agent_ticks;
    sim.step(10);
    assert_eq!(
        sim.world().resource::<RunStats>().agent_ticks,
        ticks,
        "nothing runs after the end"
    );
}

/// Every ticker plans a custom action on site 0 each tick.
fn plan_every_tick(due: Res<DueAgents>, mut intents: Query<&mut Intent>) {
    for mut intent in intents.iter_many_unique_mut(due.all()).flatten() {
        intent.set_action(Some(PlannedAction {
            target: Target::Site(SiteId(0)),
            kind: ActionKind::Custom {
                code: 7,
                value: 1.0,
            },
        }));
    }
}

#[derive(Resource, Default)]
struct Seen(Vec<(AgentId, u64, u64)>); // (agent, timestamp, step)

fn record_actions(
    clock: Res<SimClock>,
    mut actions: MessageReader<Action>,
    mut seen: ResMut<Seen>,
) {
    for a in actions.read() {
        seen.0.push((a.agent, a.timestamp, clock.step()));
    }
}

#[test]
fn actions_carry_the_exact_due_time_of_their_tick() {
    let mut sim = SimHarness::with(rates_scenario(), |app| {
        app.init_resource::<Seen>().add_systems(
            bevy_app::FixedUpdate,
            (
                plan_every_tick.in_set(ContinuumSystems::Think),
                record_actions
                    .after(ContinuumSystems::Act)
                    .before(ContinuumSystems::Resolve),
            ),
        );
    });
    sim.step(100);
    let seen = &sim.world().resource::<Seen>().0;
    let step_ns = 10_000_000u64;
    // 4×100 + 8×25 + 10×10 + 7×3 (or 4, by phase) actions in one second.
    assert!(seen.len() >= 400 + 200 + 100 + 21, "{}", seen.len());
    let agent_7_period = 40_000_000u64; // the 4th member of the 25 Hz group: id 7
    let first = first_due(3, 8, agent_7_period);
    let mine: Vec<_> = seen.iter().filter(|(id, _, _)| *id == AgentId(7)).collect();
    assert_eq!(mine.len(), 25);
    for (k, (_, timestamp, step)) in mine.iter().enumerate() {
        assert_eq!(*timestamp, first + k as u64 * agent_7_period);
        assert_eq!(
            *step,
            timestamp / step_ns,
            "an action belongs to the step containing its time"
        );
    }
}

/// A game's own system writes an action for every due ticker, built with
/// `Action::new`; the resolver settles it like any other.
fn act_by_hand(
    due: Res<DueAgents>,
    agents: Query<(Entity, &Agent, &Cadence, &Position)>,
    mut actions: MessageWriter<Action>,
) {
    for (entity, agent, cadence, pos) in agents.iter_many(due.all()).flatten() {
        let kind = ActionKind::Custom {
            code: 1,
            value: agent.id.0 as f32,
        };
        actions.write(
            Action::new(entity, agent, cadence.due, Target::Site(SiteId(0)), kind).from(pos.0),
        );
    }
}

#[derive(Resource, Default)]
struct Outcomes(Vec<Outcome>);

fn record_outcomes(mut outcomes: MessageReader<Outcome>, mut log: ResMut<Outcomes>) {
    log.0.extend(outcomes.read().copied());
}

#[test]
fn an_action_built_by_hand_is_resolved_like_any_other() {
    let mut sim = SimHarness::with(rates_scenario(), |app| {
        app.init_resource::<Outcomes>().add_systems(
            bevy_app::FixedUpdate,
            (
                act_by_hand.in_set(ContinuumSystems::Act),
                record_outcomes.after(ContinuumSystems::Resolve),
            ),
        );
    });
    sim.step(10);
    let outcomes = &sim.world().resource::<Outcomes>().0;
    // The four 100 Hz tickers act every step; all on site 0, so one wins each.
    assert!(outcomes.len() >= 40, "{}", outcomes.len());
    for step in outcomes.chunk_by(|a, b| a.timestamp / 10_000_000 == b.timestamp / 10_000_000) {
        let winners: Vec<_> = step
            .iter()
            .filter(|o| matches!(o.result, ActionResult::Applied { .. }))
            .collect();
        assert_eq!(winners.len(), 1, "one winner per step: {step:?}");
        // Equal priorities: the earliest due time wins, then the lowest id.
        let best = step.iter().min_by_key(|o| (o.timestamp, o.agent)).unwrap();
        assert_eq!(winners[0].agent, best.agent);
        assert_eq!(
            winners[0].result,
            ActionResult::Applied {
                value: best.agent.0 as f32
            },
            "a custom action reports its own value"
        );
    }
}
