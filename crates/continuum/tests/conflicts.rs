//! Conflict resolution: the right winner for each strategy, losers told, and a
//! game's own rule.

mod common;

use std::sync::Arc;

use bevy_ecs::prelude::*;
use continuum::action::{
    Action, ActionKind, ActionResult, ConflictContext, FeedbackResult, Outcome,
    ResolverDiagnostics, Target,
};

use continuum::prelude::*;

/// Contenders: (priority, phase within their 100 ms period). All are due in the
/// first 10 ms step, at 5, 8, 2, 1 and 2 ms.
const CONTENDERS: [(Priority, f64); 5] = [
    (Priority::Normal, 0.05),     // id 0, t = 5 ms
    (Priority::High, 0.08),       // id 1, t = 8 ms
    (Priority::Normal, 0.02),     // id 2, t = 2 ms
    (Priority::Background, 0.01), // id 3, t = 1 ms
    (Priority::Normal, 0.02),     // id 4, t = 2 ms (ties with id 2)
];

fn arena() -> Scenario {
    // The scenario's own group is a single bystander that never acts.
    common::scenario(&format!(
        r#"Scenario(
            name: "arena",
            seed: 11,
            world: (size: (100.0, 100.0), regions: (2, 2), sites: 4),
            clock: (fixed_hz: 100.0),
            max_agents: 100,
            archetypes: [{}, {}],
            groups: [(kind: "bystander", count: 1)],
        )"#,
        common::idle_kind("contender", 10.0),
        common::idle_kind("bystander", 0.5),
    ))
}

fn contend(due: Res<DueAgents>, archetypes: Res<Archetypes>, mut intents: Query<&mut Intent>) {
    let kind = archetypes.kind("contender").unwrap();
    for mut intent in intents.iter_many_unique_mut(due.of_kind(kind)).flatten() {
        intent.action = Some(PlannedAction {
            target: Target::Site(SiteId(0)),
            kind: ActionKind::Custom {
                code: 1,
                value: 1.0,
            },
        });
    }
}

#[derive(Resource, Default)]
struct Outcomes(Vec<Outcome>);

fn record(mut outcomes: MessageReader<Outcome>, mut log: ResMut<Outcomes>) {
    log.0.extend(outcomes.read().copied());
}

/// Starts an arena with `strategy` and the contenders `which` (indices into
/// `CONTENDERS`; ids are given in that order, after the bystander's id 0).
fn run_arena(strategy: ConflictStrategy, which: &[usize], steps: u64) -> SimHarness {
    let mut sim = SimHarness::with(arena(), |app| {
        app.insert_resource(ConflictResolver {
            strategy,
            ..Default::default()
        })
        .init_resource::<Outcomes>()
        .add_systems(
            bevy_app::FixedUpdate,
            (
                contend.in_set(ContinuumSystems::Think),
                record.in_set(ContinuumSystems::Learn),
            ),
        );
    });
    let world = sim.world_mut();
    let kind = world.resource::<Archetypes>().kind("contender").unwrap();
    let mut bp = world.resource::<Archetypes>().blueprint(kind);
    bp.position = Some(bevy_math::Vec2::new(10.0, 10.0));
    for &i in which {
        let (priority, phase) = CONTENDERS[i];
        bp.priority = priority;
        bp.phase = Some(phase);
        world.resource_mut::<AgentPool>().request(bp.clone());
    }
    sim.step(steps);
    sim
}

/// The id a contender gets (the bystander has id 0).
fn id(contender: usize, which: &[usize]) -> AgentId {
    AgentId(1 + which.iter().position(|&c| c == contender).unwrap() as u64)
}

fn winners(sim: &SimHarness) -> Vec<AgentId> {
    sim.world()
        .resource::<Outcomes>()
        .0
        .iter()
        .filter(|o| matches!(o.result, ActionResult::Applied { .. }))
        .map(|o| o.agent)
        .collect()
}

#[test]
fn priority_then_timestamp_prefers_high_priority() {
    let all = [0, 1, 2, 3, 4];
    let mut sim = run_arena(ConflictStrategy::PriorityThenTimestamp, &all, 1);
    let winner = id(1, &all);
    assert_eq!(winners(&sim), vec![winner]);
    let outcomes = &sim.world().resource::<Outcomes>().0;
    assert_eq!(outcomes.len(), 5, "every action gets exactly one outcome");
    for o in outcomes.iter().filter(|o| o.agent != winner) {
        assert_eq!(o.result, ActionResult::Rejected { winner });
    }
    let diag = sim.world().resource::<ResolverDiagnostics>().clone();
    assert_eq!(
        (diag.submitted, diag.applied, diag.rejected, diag.conflicts),
        (5, 1, 4, 1)
    );

    // Losers see the rejection in their feedback, in the step it happened.
    for (agent, feedback) in sim
        .agents::<Feedback>()
        .into_iter()
        .filter(|(a, _)| a.0 > 0)
    {
        let (_, _, result) = feedback.fresh(0).expect("every contender acted in step 0");
        let expected = if agent == winner {
            FeedbackResult::Applied(1.0)
        } else {
            FeedbackResult::Rejected
        };
        assert_eq!(result, expected, "{agent}");
    }
    let tallies = sim.agents::<Feedback>();
    assert_eq!(
        tallies.iter().map(|(_, f)| f.tally.rejected).sum::<u32>(),
        4
    );
}

#[test]
fn among_equal_priorities_the_earliest_wins() {
    let normal = [0, 2, 4];
    let sim = run_arena(ConflictStrategy::PriorityThenTimestamp, &normal, 1);
    assert_eq!(winners(&sim), vec![id(2, &normal)]);
}

#[test]
fn timestamp_ignores_priority() {
    let all = [0, 1, 2, 3, 4];
    let sim = run_arena(ConflictStrategy::Timestamp, &all, 1);
    assert_eq!(
        winners(&sim),
        vec![id(3, &all)],
        "the background agent acted first"
    );
}

#[test]
fn equal_timestamps_go_to_the_lowest_id() {
    let tied = [4, 2]; // contender 4 gets the lower id here
    let sim = run_arena(ConflictStrategy::Timestamp, &tied, 1);
    assert_eq!(winners(&sim), vec![id(4, &tied)]);
    let sim = run_arena(ConflictStrategy::PriorityThenTimestamp, &tied, 1);
    assert_eq!(winners(&sim), vec![id(4, &tied)]);
}

#[test]
fn random_is_seeded_fair_and_ignores_priority() {
    let all = [0, 1, 2, 3, 4];
    // 10 Hz contenders on a 100 Hz clock: one conflict every 10 steps.
    let first = winners(&run_arena(ConflictStrategy::Random, &all, 2000));
    assert_eq!(first.len(), 200);
    let again = winners(&run_arena(ConflictStrategy::Random, &all, 2000));
    assert_eq!(first, again, "the same seed gives the same winners");
    for c in all {
        let wins = first.iter().filter(|&&w| w == id(c, &all)).count();
        assert!((20..=60).contains(&wins), "contender {c} won {wins} of 200");
    }
}

struct HighestIdWins;

impl ConflictRule for HighestIdWins {
    fn winner(&self, contenders: &[Action], _: &ConflictContext) -> usize {
        contenders.len() - 1 // contenders come in agent-id order
    }
}

#[test]
fn a_game_can_bring_its_own_rule() {
    let all = [0, 1, 2, 3, 4];
    let sim = run_arena(ConflictStrategy::Custom(Arc::new(HighestIdWins)), &all, 1);
    assert_eq!(winners(&sim), vec![id(4, &all)]);
}
