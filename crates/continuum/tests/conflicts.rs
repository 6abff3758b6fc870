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

/// What each contender aims at, by its id.
#[derive(Resource, Clone, Copy)]
struct Aim(fn(AgentId) -> Target);

impl Default for Aim {
    fn default() -> Self {
        Self(|_| Target::Site(SiteId(0)))
    }
}

fn contend(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    aim: Res<Aim>,
    mut intents: Query<(&Agent, &mut Intent)>,
) {
    let kind = archetypes.kind("contender").unwrap();
    for (agent, mut intent) in intents.iter_many_unique_mut(due.of_kind(kind)).flatten() {
        intent.set_action(Some(PlannedAction {
            target: (aim.0)(agent.id),
            kind: ActionKind::Custom {
                code: 1,
                value: 1.0,
            },
        }));
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
    run_aimed(strategy, Aim::default(), which, steps)
}

fn run_aimed(strategy: ConflictStrategy, aim: Aim, which: &[usize], steps: u64) -> SimHarness {
    let resolver = ConflictResolver {
        strategy,
        ..Default::default()
    };
    let contenders = which.iter().map(|&i| CONTENDERS[i]);
    let mut sim = aimed_arena(resolver, aim, contenders, |_| {});
    sim.step(steps);
    sim
}

/// The arena with `resolver`, contenders aiming by `aim`, and the contenders
/// `(priority, phase)` requested in order (ids from 1, after the bystander).
fn aimed_arena(
    resolver: ConflictResolver,
    aim: Aim,
    contenders: impl IntoIterator<Item = (Priority, f64)>,
    customise: impl FnOnce(&mut bevy_app::App),
) -> SimHarness {
    let mut sim = SimHarness::with(arena(), |app| {
        app.insert_resource(resolver)
            .insert_resource(aim)
            .init_resource::<Outcomes>()
            .add_systems(
                bevy_app::FixedUpdate,
                (
                    contend.in_set(ContinuumSystems::Think),
                    record.in_set(ContinuumSystems::Learn),
                ),
            );
        customise(app);
    });
    let world = sim.world_mut();
    let kind = world.resource::<Archetypes>().kind("contender").unwrap();
    let mut bp = world.resource::<Archetypes>().blueprint(kind);
    bp.position = Some(bevy_math::Vec2::new(10.0, 10.0));
    for (priority, phase) in contenders {
        bp.priority = priority;
        bp.phase = Some(phase);
        world.resource_mut::<AgentPool>().request(bp.clone());
    }
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

/// Targets of a model's own (a grid cell, an agent, a pair of ids) conflict
/// like sites, with every strategy.
#[test]
fn a_models_own_targets_conflict_like_sites() {
    let all = [0, 1, 2, 3, 4];
    for aim in [
        Aim(|_| Target::Cell { x: -3, y: 7 }),
        Aim(|_| Target::agent(AgentId(0))),
        Aim(|_| Target::Pair(2, 9)),
    ] {
        let sim = run_aimed(ConflictStrategy::PriorityThenTimestamp, aim, &all, 1);
        assert_eq!(winners(&sim), vec![id(1, &all)]);
        let sim = run_aimed(ConflictStrategy::Timestamp, aim, &all, 1);
        assert_eq!(winners(&sim), vec![id(3, &all)]);
        let sim = run_aimed(
            ConflictStrategy::Custom(Arc::new(HighestIdWins)),
            aim,
            &all,
            1,
        );
        assert_eq!(winners(&sim), vec![id(4, &all)]);
        let outcomes = &sim.world().resource::<Outcomes>().0;
        assert_eq!(outcomes.len(), 5, "one outcome per action");
        assert!(outcomes.iter().all(|o| o.target == (aim.0)(o.agent)));
    }
}

/// One winner per target: contenders on different cells do not conflict, and a
/// site's built-in action aimed at a model's target fails rather than touching
/// the world.
#[test]
fn one_winner_per_model_target() {
    let all = [0, 1, 2, 3, 4];
    // Ids 1 to 5: odd ids on one cell, even ids on another.
    let aim = Aim(|a| Target::Cell {
        x: (a.0 % 2) as i32,
        y: 0,
    });
    let sim = run_aimed(ConflictStrategy::PriorityThenTimestamp, aim, &all, 1);
    // Odd: ids 1, 3, 5 (contenders 0, 2, 4: normal, at 5, 2, 2 ms): id 3 at
    // 2 ms (the lower id of the tie). Even: ids 2, 4 (contenders 1, 3): the
    // high-priority id 2.
    let mut won = winners(&sim);
    won.sort();
    assert_eq!(won, vec![AgentId(2), AgentId(3)]);
    let diag = sim.world().resource::<ResolverDiagnostics>().clone();
    assert_eq!((diag.applied, diag.rejected, diag.conflicts), (2, 3, 2));
}

/// Random draws for a model's target are seeded and spread over contenders.
#[test]
fn random_over_model_targets_is_seeded_and_fair() {
    let all = [0, 1, 2, 3, 4];
    let aim = Aim(|_| Target::Pair(7, 7));
    let first = winners(&run_aimed(ConflictStrategy::Random, aim, &all, 2000));
    assert_eq!(first.len(), 200);
    let again = winners(&run_aimed(ConflictStrategy::Random, aim, &all, 2000));
    assert_eq!(first, again);
    for c in all {
        let wins = first.iter().filter(|&&w| w == id(c, &all)).count();
        assert!((20..=60).contains(&wins), "contender {c} won {wins} of 200");
    }
}

/// Many contenders on many cells, resolved in parallel over the model
/// buckets: the same outcomes, in the same order, on 1, 2 and 4 threads.
#[test]
fn model_targets_resolve_the_same_on_one_two_and_four_threads() {
    use bevy_tasks::{ComputeTaskPool, TaskPoolBuilder};
    use continuum::parallel::ThreadLoad;
    ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
    let run = |threads: usize| {
        let resolver = ConflictResolver {
            parallel_threshold: 1,
            ..Default::default()
        };
        let aim = Aim(|a| Target::Cell {
            x: (a.0 % 4) as i32,
            y: (a.0 % 3) as i32 - 1,
        });
        let priorities = [Priority::Normal, Priority::High, Priority::Background];
        let contenders = (0..99u32).map(|i| (priorities[i as usize % 3], f64::from(i % 10) / 10.0));
        let mut sim = aimed_arena(resolver, aim, contenders, |app| {
            app.insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
        });
        sim.step(30);
        sim.world().resource::<Outcomes>().0.clone()
    };
    let one = run(1);
    // 99 contenders at 10 Hz over 30 steps of 10 ms: each acts three times.
    assert_eq!(one.len(), 99 * 3);
    let lost = one
        .iter()
        .filter(|o| matches!(o.result, ActionResult::Rejected { .. }))
        .count();
    assert!(lost > 0, "some contenders met on a cell");
    assert_eq!(run(2), one, "2 threads");
    assert_eq!(run(4), one, "4 threads");
}

/// Doors kept in regions of a plugin's own: door `d` (of 8) is in region
/// `d % 3`; each region logs the doors opened in it, in order.
#[derive(Resource, Default)]
struct Doors(Vec<Vec<u32>>);

impl continuum::action::RegionalTargets for Doors {
    type Region = Vec<u32>;

    fn place(&self, target: Target) -> continuum::action::Placement {
        use continuum::action::Placement;
        match target {
            Target::Pair(7, door) if door < 8 => Placement::Region(door as usize % 3),
            Target::Pair(7, _) => Placement::Unknown,
            _ => Placement::Model,
        }
    }

    fn regions_mut(&mut self) -> &mut [Vec<u32>] {
        &mut self.0
    }

    fn apply(
        region: &mut Vec<u32>,
        action: &Action,
        _: &continuum::action::ApplyContext,
        _: &mut Vec<continuum::memory::Publication>,
    ) -> ActionResult {
        let Target::Pair(_, door) = action.target else {
            unreachable!("only doors are placed in regions")
        };
        region.push(door);
        ActionResult::Applied { value: door as f32 }
    }
}

#[test]
fn a_plugins_regional_targets_are_applied_region_by_region() {
    use continuum::action::RegionalTargetsAppExt;
    // Contenders 1 to 11 go for doors 1, 2, 3, 0, 1, ...; contender 12 for a
    // door that does not exist, 13 for a model's pair.
    let aim = Aim(|id| match id.0 {
        12 => Target::Pair(7, 99),
        13 => Target::Pair(8, 0),
        n => Target::Pair(7, (n % 4) as u32),
    });
    let contenders = (0..13).map(|i| (Priority::Normal, 0.01 + 0.005 * f64::from(i)));
    let mut sim = aimed_arena(ConflictResolver::default(), aim, contenders, |app| {
        app.insert_resource(Doors(vec![Vec::new(); 3]))
            .set_regional_targets::<Doors>();
    });
    sim.step(1);
    let doors = &sim.world().resource::<Doors>().0;
    assert_eq!(
        doors,
        &vec![vec![0, 3], vec![1], vec![2]],
        "one opening per door, in its region"
    );
    let outcomes = &sim.world().resource::<Outcomes>().0;
    assert_eq!(outcomes.len(), 13, "every action gets exactly one outcome");
    let of = |id: u64| {
        outcomes
            .iter()
            .find(|o| o.agent == AgentId(id))
            .unwrap()
            .result
    };
    assert_eq!(
        of(12),
        ActionResult::Failed {
            reason: continuum::action::FailReason::UnknownTarget
        }
    );
    assert_eq!(
        of(13),
        ActionResult::Applied { value: 1.0 },
        "a model's target"
    );
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o.result, ActionResult::Applied { .. }))
        .count();
    assert_eq!(applied, 4 + 1);
    // Earliest wins: contenders 1 to 4 open doors 1, 2, 3, 0.
    for id in 1..=4 {
        assert_eq!(
            of(id),
            ActionResult::Applied {
                value: (id % 4) as f32
            }
        );
    }
}
