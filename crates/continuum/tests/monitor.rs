//! The resource monitor through the harness: budgets start from the formulae,
//! rebalancing keeps within the total, load is shed in order and restored with
//! hysteresis when fed synthetic step times.

mod common;

use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_time::TimeUpdateStrategy;
use continuum::agent::{Cadence, PriorityRates, ScheduleStats};
use continuum::memory::MemoryPlan;
use continuum::monitor::{
    BudgetLog, LEVELS, LoadMeasure, LoadShedding, RebalanceDiagnostics, ResourceStats,
};
use continuum::prelude::*;

#[test]
fn budgets_start_from_the_formulae() {
    let mut sim = SimHarness::new(common::three_priorities());
    sim.step(1);
    let per_agent = sim.world().resource::<MemoryPlan>().per_agent_bytes;
    for (_, budget) in sim.agents::<Budget>() {
        assert_eq!(
            budget.cpu_share,
            1.0 / 40.0,
            "a fair share: one over max_agents"
        );
    }
    for (_, agent) in sim.agents::<Agent>() {
        assert!(!agent.priority_boost);
    }
    for (_, memory) in sim.agents::<Memory>() {
        assert_eq!(u64::from(memory.limit()), per_agent);
    }
}

fn ticks(sim: &SimHarness) -> [u64; 3] {
    sim.world().resource::<ScheduleStats>().ticks_by_priority
}

fn full_rate_ticks(sim: &SimHarness) -> [u64; 3] {
    sim.world()
        .resource::<ScheduleStats>()
        .full_rate_ticks_by_priority
}

/// One step, in nanoseconds of virtual time (100 Hz).
const STEP_NS: u64 = 10_000_000;

/// `scenario` under synthetic load ([`FakeBusy`](common::FakeBusy)), paced in real time: the
/// overload policy acts only while steps follow real time, here a manual real
/// clock that advances by one 10 ms step each update.
fn under_fake_load(scenario: Scenario) -> SimHarness {
    let mut sim = SimHarness::with(scenario, common::add_fake_busy);
    sim.world_mut()
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_nanos(
            STEP_NS,
        )));
    sim
}

#[test]
fn overload_sheds_background_first_keeps_high_priority_and_restores_with_hysteresis() {
    let mut sim = under_fake_load(common::three_priorities());
    let step = STEP_NS;
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = step * 98 / 100;
    sim.run_for(3.05); // evaluations at 1, 2 and 3 s: load 0.98 each time
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 3);
    assert_eq!(sim.world().resource::<PriorityRates>().0, LEVELS[3].rate);
    let log = sim.world().resource::<BudgetLog>().clone();
    let sheds: Vec<_> = log
        .recent
        .iter()
        .filter(|c| c.what.starts_with("shed"))
        .collect();
    assert_eq!(sheds.len(), 3);
    assert!(sheds[0].what.starts_with("shed: level 1") && sheds[0].why.contains("98 %"));
    assert_eq!(
        (sheds[0].at, sheds[2].at),
        (1.0, 3.0),
        "logged at their virtual times"
    );

    let before = ticks(&sim);
    let full_before = full_rate_ticks(&sim);
    sim.run_for(2.0);
    let after = ticks(&sim);
    let full_after = full_rate_ticks(&sim);
    let per_sec = |p: usize| (after[p] - before[p]) as f64 / 2.0;
    let full = |p: usize| full_after[p] - full_before[p];
    assert_eq!(
        full(2),
        after[2] - before[2],
        "high priority: all at full rate"
    );
    assert_eq!(full(0), 0, "background: shed since level 1");
    assert!(
        full(1) > 0 && full(1) < after[1] - before[1],
        "normal: whole until level 5 at 5 s, then shed: {} of {}",
        full(1),
        after[1] - before[1]
    );
    assert_eq!(per_sec(2), 100.0, "10 high-priority agents keep 10 Hz each");
    assert_eq!(
        per_sec(1),
        100.0,
        "normal agents are untouched before background is cut deep"
    );
    assert!(
        per_sec(0) <= 30.0,
        "background agents slowed to a quarter: {}",
        per_sec(0)
    );
    assert_eq!(
        sim.world().resource::<ResourceStats>().overload.level,
        5,
        "still overloaded: two more levels"
    );
    assert!(
        sim.world().resource::<PriorityRates>().0[1] < 1.0,
        "then normal agents go"
    );

    // Calm: a level comes back only after three calm evaluations in a row.
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = step / 5;
    sim.run_for(2.0);
    assert_eq!(
        sim.world().resource::<ResourceStats>().overload.level,
        5,
        "two calm evaluations: hold"
    );
    sim.run_for(1.0);
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 4);
    sim.run_for(3.0 * 4.0);
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 0);
    assert_eq!(
        *sim.world().resource::<PriorityRates>(),
        PriorityRates::default()
    );
    assert_eq!(
        *sim.world().resource::<LoadShedding>(),
        LoadShedding::default()
    );
    let log = sim.world().resource::<BudgetLog>();
    assert!(
        log.recent
            .back()
            .unwrap()
            .what
            .starts_with("restored: level 0")
    );
}

/// Steps that take nearly twice the real time allowed them are shed in one
/// evaluation, down to the lightest level whose ticks would bring them back
/// under the line, rather than one level a second.
#[test]
fn a_heavy_overload_is_shed_at_once_as_deep_as_the_ticks_say() {
    let mut sim = under_fake_load(common::three_priorities());
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = STEP_NS * 19 / 10;
    // Over twice the line, the first evaluation comes after a quarter of
    // `evaluate_every`.
    sim.run_for(0.2);
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 0);
    sim.run_for(0.1); // one evaluation, at 0.25 s: load 1.9
    // As many ticks of each priority: level 5 would run (0.1 + 0.5 + 1) / 3 of
    // them (load 1.01), level 6 (0.1 + 0.25 + 1) / 3 (0.86).
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 6);
    assert_eq!(sim.world().resource::<PriorityRates>().0, LEVELS[6].rate);
    let log = sim.world().resource::<BudgetLog>();
    let shed = log.recent.back().unwrap();
    assert!(shed.what.starts_with("shed: level 6"), "{}", shed.what);
    assert!(
        shed.why.contains("190 %") && shed.why.contains("estimated at level 6: 86 %"),
        "{}",
        shed.why
    );
    // The fake load does not follow the ticks: at the next evaluation it is
    // still 1.9, now mostly high-priority ticks that no level slows, so even
    // the deepest level's estimate is over the line and it goes all the way.
    sim.run_for(0.25);
    assert_eq!(
        sim.world().resource::<ResourceStats>().overload.level,
        LEVELS.len() - 1
    );
    let before = ticks(&sim);
    sim.run_for(1.0);
    let after = ticks(&sim);
    assert_eq!(
        after[2] - before[2],
        100,
        "10 high-priority agents keep 10 Hz each"
    );
}

/// Quick steps with a slow one in every 25 (half the real time allowed a
/// step, and three times it): their mean, 0.6, is under the line and the
/// monitor holds; their 0.99 quantile, 3.0, is far over it and it sheds.
#[test]
fn a_quantile_sheds_for_the_slow_steps_that_the_mean_holds_through() {
    for (measure, sheds) in [
        (LoadMeasure::Mean, false),
        (LoadMeasure::Quantile(0.99), true),
    ] {
        let mut scenario = common::three_priorities();
        scenario.monitor.overload.measure = measure;
        let mut sim = under_fake_load(scenario);
        {
            let mut fake = sim.world_mut().resource_mut::<common::FakeBusy>();
            fake.per_step = STEP_NS / 2;
            fake.spike = STEP_NS * 3;
            fake.spike_every = 25;
        }
        sim.run_for(2.05); // evaluations at 1 and 2 s
        let stats = sim.world().resource::<ResourceStats>();
        assert_eq!(
            stats.overload.level > 0,
            sheds,
            "{measure:?}: level {}",
            stats.overload.level
        );
        if sheds {
            assert!(
                (stats.load - 3.0).abs() < 1e-9,
                "the load measured: {}",
                stats.load
            );
            let log = sim.world().resource::<BudgetLog>();
            let shed = log.recent.front().unwrap();
            assert!(
                shed.why
                    .starts_with("0.990 of the steps took at most 300 %"),
                "{}",
                shed.why
            );
        } else {
            assert!(
                (stats.load - 0.6).abs() < 0.01,
                "the load measured: {}",
                stats.load
            );
        }
    }
}

/// `count` background agents of an idle kind at 10 Hz on a 100 Hz step.
fn idle_background(name: &str, count: usize) -> SimHarness {
    SimHarness::new(common::scenario(&format!(
        r#"Scenario(
            name: "{name}",
            world: (size: (500.0, 500.0), sites: 10),
            clock: (fixed_hz: 100.0),
            archetypes: [{}],
            groups: [(kind: "idle", count: {count}, priority: Background)],
        )"#,
        common::idle_kind("idle", 10.0)
    )))
}

/// Background agents' ticks in each of the next `steps` steps.
fn background_ticks_by_step(sim: &mut SimHarness, steps: usize) -> Vec<u64> {
    (0..steps)
        .map(|_| {
            let t0 = ticks(sim)[0];
            sim.step(1);
            ticks(sim)[0] - t0
        })
        .collect()
}

/// A class slowed to a tenth of its rate is spread over the longer period:
/// every step takes its share, rather than a tenth of the class ticking
/// together one step in a hundred, and each agent keeps the slower rate.
#[test]
fn a_slowed_class_is_spread_over_its_longer_period() {
    let mut sim = idle_background("spread", 2000);
    sim.step(20);
    sim.world_mut()
        .insert_resource(PriorityRates([0.1, 1.0, 1.0]));
    // The first ticks after the change are spread over 20 + 100 ... 20 + 210
    // steps; from step 130 on, each agent ticks once every 100 steps.
    sim.step(110);
    let per_agent = |sim: &mut SimHarness| -> Vec<u32> {
        sim.agents::<Cadence>()
            .into_iter()
            .map(|(_, c)| c.ticks)
            .collect()
    };
    let before = per_agent(&mut sim);
    let per_step = background_ticks_by_step(&mut sim, 100);
    let after = per_agent(&mut sim);
    assert!(
        before.iter().zip(&after).all(|(b, a)| a - b == 1),
        "each agent ticks once in a period of 100 steps"
    );
    assert_eq!(per_step.iter().sum::<u64>(), 2000);
    // 20 a step on average; unspread, 200 in one step of ten, none in the others.
    let (least, most) = (
        *per_step.iter().min().unwrap(),
        *per_step.iter().max().unwrap(),
    );
    assert!(
        least >= 5 && most <= 40,
        "{least} to {most} a step: {per_step:?}"
    );
}

/// A class slowed twice in a row, the second time before its first ticks at
/// the first slower rate came (as a deep overload does: one level, then the
/// next), is still spread over its final period.
#[test]
fn a_class_slowed_twice_is_spread_over_its_final_period() {
    let mut sim = idle_background("twice", 5000);
    sim.step(20);
    // To a twentieth: 200 steps a period, the first ticks at it in 220..420.
    sim.world_mut()
        .insert_resource(PriorityRates([0.05, 1.0, 1.0]));
    sim.step(100);
    // To a fiftieth (500 steps) before them: spread from those ticks, the
    // class fills 720..1220 and then every period.
    sim.world_mut()
        .insert_resource(PriorityRates([0.02, 1.0, 1.0]));
    sim.step(1200);
    let per_step = background_ticks_by_step(&mut sim, 500);
    assert_eq!(per_step.iter().sum::<u64>(), 5000, "once each in a period");
    // 10 a step on average. Spread from the second change instead, the class
    // (whose ticks then ran from step 220 to 420, only those before 320 in
    // the old period from the change) bunched in part of the period: 25 a
    // step, and none in the rest.
    let (least, most) = (
        *per_step.iter().min().unwrap(),
        *per_step.iter().max().unwrap(),
    );
    assert!(
        least >= 3 && most <= 20,
        "{least} to {most} a step: {per_step:?}"
    );
}

/// Under load shedding, a boosted background agent runs at the normal rate
/// while the others of its class are slowed to a quarter.
#[test]
fn a_boosted_agent_keeps_the_rate_of_the_class_above_its_own() {
    let mut scenario = common::three_priorities();
    // No rebalancing decides within the test: the boosts set here stay.
    scenario.monitor.rebalance.every = 1000.0;
    let mut sim = under_fake_load(scenario);
    let step = STEP_NS;
    // Boost five of the ten background agents.
    let world = sim.world_mut();
    let mut agents = world.query::<&mut Agent>();
    let mut background: Vec<_> = agents
        .iter_mut(world)
        .filter(|a| a.priority == Priority::Background)
        .collect();
    background.sort_by_key(|a| a.id);
    for agent in background.iter_mut().take(5) {
        agent.priority_boost = true;
    }
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = step * 98 / 100;
    sim.run_for(3.05);
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 3);
    let rates = sim.world().resource::<PriorityRates>().0;
    assert_eq!((rates[0], rates[1]), (0.25, 1.0), "{rates:?}");
    let ticks_of = |sim: &mut SimHarness| {
        let agents = sim.agents::<Agent>();
        let cadences = sim.agents::<Cadence>();
        agents
            .into_iter()
            .zip(cadences)
            .map(|((id, agent), (_, cadence))| (id, agent, cadence.ticks))
            .collect::<Vec<_>>()
    };
    let before = ticks_of(&mut sim);
    sim.run_for(2.0);
    let after = ticks_of(&mut sim);
    let (mut boosted, mut slowed, mut normal) = (vec![], vec![], vec![]);
    for ((_, agent, t0), (_, _, t1)) in before.into_iter().zip(after) {
        match (agent.priority, agent.priority_boost) {
            (Priority::Background, true) => boosted.push(t1 - t0),
            (Priority::Background, false) => slowed.push(t1 - t0),
            (Priority::Normal, _) => normal.push(t1 - t0),
            _ => {}
        }
    }
    assert_eq!(boosted.len(), 5);
    assert!(normal.iter().all(|&t| t == 20), "10 Hz for 2 s: {normal:?}");
    assert!(boosted.iter().all(|&t| t == 20), "boosted: {boosted:?}");
    assert!(slowed.iter().all(|&t| t <= 6), "slowed: {slowed:?}");
}

#[test]
fn fast_runs_never_shed() {
    let mut sim = SimHarness::with(common::three_priorities(), common::add_fake_busy);
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = 100_000_000;
    sim.run_for(5.0);
    assert_eq!(sim.world().resource::<ResourceStats>().overload.level, 0);
    assert_eq!(ticks(&sim), [500, 500, 500]);
    assert_eq!(full_rate_ticks(&sim), [500, 500, 500]);
}

#[test]
fn rebalancing_moves_memory_to_full_agents_within_the_budget() {
    let mut sim = SimHarness::new(common::watchers_and_blind(200));
    sim.run_for(30.0);
    let plan = sim.world().resource::<MemoryPlan>().clone();
    let limits: Vec<u32> = sim
        .agents::<Memory>()
        .into_iter()
        .map(|(_, m)| m.limit())
        .collect();
    let total: u64 = limits.iter().map(|&l| u64::from(l)).sum();
    assert!(
        total <= plan.per_agent_bytes * 400,
        "{total} > {}",
        plan.per_agent_bytes * 400
    );
    assert!(
        limits.iter().any(|&l| u64::from(l) > plan.per_agent_bytes),
        "some agents got more"
    );
    assert!(
        limits.iter().any(|&l| u64::from(l) < plan.per_agent_bytes),
        "some gave some up"
    );
    let log = sim.world().resource::<BudgetLog>();
    assert!(log.recent.iter().any(|c| c.what.starts_with("memory:")));
    // Tiers follow the new limits, and what each memory's blocks really take
    // stays within its limit.
    for (id, memory) in sim.agents::<Memory>() {
        assert!(
            memory.caps().block_bytes() <= memory.limit() as usize,
            "{id}"
        );
        assert!(memory.block_bytes() <= memory.limit() as usize, "{id}");
    }
    // Each one-second round of 100 steps read the 400 agents over 49 steps,
    // weighed them over 17 and applied the new budgets over 34: no step did
    // it all.
    let spread = *sim.world().resource::<RebalanceDiagnostics>();
    assert_eq!(spread.rounds, 30, "{spread:?}");
    assert_eq!(spread.most_weighed, 400, "{spread:?}");
    assert_eq!(
        spread.most_read_in_a_step,
        400u64.div_ceil(49),
        "{spread:?}"
    );
    assert!(
        (1..=400u64.div_ceil(34)).contains(&spread.most_applied_in_a_step),
        "{spread:?}"
    );
    // Changes in many steps of many rounds, at most every agent each round.
    assert!(
        spread.budgets_changed > spread.most_applied_in_a_step
            && spread.budgets_changed <= 30 * 400,
        "{spread:?}"
    );
}

/// A component put on and taken off again, only to move agents in the tables.
#[derive(Component)]
struct Moved;

/// The rebalancer reads a round's agents a share per step in id order: the
/// same world with its agents in another order in the tables (as a restored
/// checkpoint has them) gets the same budgets.
#[test]
fn the_order_of_entities_in_the_tables_does_not_change_the_budgets() {
    let mut straight = SimHarness::new(common::watchers_and_blind(200));
    let mut shuffled = SimHarness::new(common::watchers_and_blind(200));
    let world = shuffled.world_mut();
    let mut agents = world.query::<(Entity, &Agent)>();
    let odd: Vec<Entity> = agents
        .iter(world)
        .filter(|(_, a)| a.id.0 % 2 == 1)
        .map(|(e, _)| e)
        .collect();
    assert!(odd.len() >= 190);
    for entity in odd {
        world.entity_mut(entity).insert(Moved).remove::<Moved>();
    }
    let table_order = |sim: &mut SimHarness| {
        let world = sim.world_mut();
        let mut agents = world.query::<&Agent>();
        agents.iter(world).map(|a| a.id).collect::<Vec<_>>()
    };
    assert_ne!(
        table_order(&mut straight),
        table_order(&mut shuffled),
        "the tables hold the agents in another order"
    );
    assert_eq!(straight.state_digest(), shuffled.state_digest());
    straight.run_for(10.0);
    shuffled.run_for(10.0);
    assert!(
        straight.world().resource::<BudgetLog>().count > 0,
        "budgets changed"
    );
    assert_eq!(straight.state_digest(), shuffled.state_digest());
}
