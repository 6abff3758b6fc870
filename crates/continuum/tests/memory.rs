//! Agent memory through the harness: tiers stay within their capacities over a
//! long run, budgets size the tiers and the shared cache, and memory makes
//! agents harvest more.

mod common;

use bevy_ecs::prelude::*;
use continuum::memory::{MemoryPlan, SharedCache, TierCaps};
use continuum::prelude::*;

fn harvest_of(scenario: &str, seed: u64) -> f32 {
    let mut scenario = common::shipped(scenario);
    scenario.seed = seed;
    let mut sim = SimHarness::new(scenario);
    sim.run_for(120.0);
    sim.world()
        .resource::<Sites>()
        .iter()
        .map(|s| s.harvested)
        .sum()
}

/// The same world, seeds and duration, with and without memory tiers: less
/// harvest without, over five seeds. (Seed by seed the difference swings both
/// ways: boards and the shared cache carry much of what memory would.)
#[test]
fn agents_without_memory_harvest_measurably_less() {
    let (mut with_total, mut without_total) = (0.0, 0.0);
    for seed in 1..=5 {
        let with = harvest_of("memory.ron", seed);
        let without = harvest_of("memory-none.ron", seed);
        println!("seed {seed}: harvested {with} with memory, {without} without");
        with_total += with;
        without_total += without;
    }
    assert!(
        with_total > without_total * 1.03,
        "{with_total} with memory, {without_total} without"
    );
}

#[test]
fn no_tier_ever_exceeds_its_capacity() {
    let mut sim = SimHarness::new(common::shipped("memory.ron"));
    let mut long_term_seen = 0;
    for _ in 0..60 {
        sim.run_for(1.0);
        for (id, memory) in sim.agents::<Memory>() {
            let caps = memory.caps();
            let (st, im, lt) = memory.lens();
            assert!(
                st <= usize::from(caps.short_term)
                    && im <= usize::from(caps.intermediate)
                    && lt <= usize::from(caps.long_term),
                "{id}: {:?} holds {st}/{im}/{lt}",
                caps
            );
            assert!(memory.held_bytes() + usize::from(caps.working) * 4 <= memory.limit() as usize);
            long_term_seen += lt;
        }
        for (id, perception) in sim.agents::<Perception>() {
            assert!(perception.sites().len() <= perception.capacity(), "{id}");
        }
        let cache = sim.world().resource::<SharedCache>();
        assert!(cache.len() <= cache.capacity());
    }
    assert!(long_term_seen > 0, "facts reach long-term memory");
}

fn with_budget(budget: &str) -> SimHarness {
    with_budget_shared(budget, 0.25)
}

fn with_budget_shared(budget: &str, shared: f64) -> SimHarness {
    let scenario = common::scenario(&format!(
        r#"Scenario(
            name: "budget",
            world: (sites: 200),
            clock: (fixed_hz: 100.0),
            max_agents: 100,
            memory: (budget: {budget}, shared_fraction: {shared}),
            groups: [(kind: "explorer", count: 40), (kind: "controller", count: 40)],
        )"#
    ));
    let mut sim = SimHarness::new(scenario);
    sim.step(1);
    sim
}

/// The budget that leaves each of the 100 agents `memory` bytes beside the
/// engine's own state, with `shared` of it for the cache.
fn budget_for(memory: u64, shared: f64) -> String {
    let engine = with_budget("Auto")
        .world()
        .resource::<MemoryPlan>()
        .engine_bytes_per_agent;
    format!(
        "Bytes({})",
        ((memory + engine) as f64 * 100.0 / (1.0 - shared)).ceil() as u64 + 100
    )
}

#[test]
fn the_budget_sizes_the_shared_cache_and_each_agents_tiers() {
    let budget = budget_for(480, 0.25);
    let sim = with_budget(&budget);
    let plan = sim.world().resource::<MemoryPlan>().clone();
    assert_eq!(plan.shared_bytes, plan.total_bytes / 4);
    assert_eq!(
        plan.per_agent_bytes,
        (plan.total_bytes - plan.shared_bytes) / 100 - plan.engine_bytes_per_agent,
        "(1 - shared) × budget / max_agents, less the engine's own bytes"
    );
    assert_eq!(plan.per_agent_bytes, 480);
    assert!(
        100 * (plan.per_agent_bytes + plan.engine_bytes_per_agent) + plan.shared_bytes
            <= plan.total_bytes,
        "the budget holds it all"
    );
    assert_eq!(
        sim.world().resource::<SharedCache>().capacity(),
        plan.shared_bytes as usize / SharedCache::ENTRY_BYTES
    );

    // 480 bytes each: more than the defaults' blocks (224), so tiers grow
    // toward the maxima, their blocks within the limit.
    let mut sim = sim;
    for (_, m) in sim.agents::<Memory>() {
        assert_eq!(m.limit(), 480);
        assert!(m.caps().block_bytes() <= 480);
        assert!(m.caps().bytes() > 208, "{:?}", m.caps());
    }

    // A tight budget: 112 bytes each, half the defaults' blocks.
    let mut tight = with_budget(&budget_for(112, 0.25));
    let expected = TierCaps {
        working: 6,
        short_term: 6,
        intermediate: 4,
        long_term: 3,
    }
    .scaled_to(112);
    assert!(expected.block_bytes() <= 112 && expected != TierCaps::NONE);
    for (_, m) in tight.agents::<Memory>() {
        assert_eq!(m.caps(), expected);
    }
}

#[test]
fn a_small_shared_cache_evicts_and_counts() {
    // 5 % of the budget: room for fewer facts than the world has sites.
    let mut sim = with_budget_shared(&budget_for(112, 0.05), 0.05);
    sim.run_for(60.0);
    let stats = sim.world().resource::<SharedCache>().stats();
    assert!(stats.capacity < 100, "{stats:?}");
    assert!(stats.len <= stats.capacity);
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    let live = sim
        .world()
        .resource::<continuum::metrics::Metrics>()
        .snapshot()
        .cache_evictions;
    assert_eq!(live, stats.evictions, "the live metrics count them too");
}

#[test]
fn a_changed_limit_resizes_the_tiers_at_the_next_tick() {
    let mut sim = with_budget("Auto");
    sim.run_for(20.0);
    let victim = {
        let world = sim.world_mut();
        let mut q = world.query::<(bevy_ecs::entity::Entity, &Memory)>();
        q.iter(world)
            .find(|(_, m)| m.held_bytes() > 40)
            .map(|(e, _)| e)
            .expect("a busy memory")
    };
    sim.world_mut()
        .get_mut::<Memory>(victim)
        .unwrap()
        .set_limit(40);
    let before = sim.world().get::<Memory>(victim).unwrap().caps();
    assert!(before.bytes() > 40, "resized only at the agent's tick");
    sim.run_for(0.2); // agents tick at 10 Hz
    let m = sim.world().get::<Memory>(victim).unwrap();
    assert!(!m.resize_pending());
    assert_eq!(m.limit(), 40);
    assert!(m.caps().bytes() <= 40);
    let (st, im, lt) = m.lens();
    assert!(
        st <= usize::from(m.caps().short_term)
            && im <= usize::from(m.caps().intermediate)
            && lt <= usize::from(m.caps().long_term)
    );
    let p = sim.world().get::<Perception>(victim).unwrap();
    assert!(p.capacity() <= usize::from(m.caps().working));
}

/// The engine's bytes per agent the budget holds are what the ECS says an
/// agent entity's components take, plus a little bookkeeping: measured from
/// the app's own registrations, so a component added to agents counts.
#[test]
fn the_engine_bytes_per_agent_are_those_of_an_agent_entity() {
    let mut sim = SimHarness::new(common::shipped("quickstart.ron"));
    let engine = sim.world().resource::<MemoryPlan>().engine_bytes_per_agent;
    let world = sim.world_mut();
    let entity = world
        .query_filtered::<Entity, With<Agent>>()
        .iter(world)
        .next()
        .expect("an agent");
    let components = world.components();
    let carried: usize = world
        .entity(entity)
        .archetype()
        .components()
        .iter()
        .filter_map(|&id| components.get_info(id))
        .map(|info| info.layout().size())
        .sum();
    assert!(carried > 100, "{carried}");
    assert_eq!(
        engine,
        continuum::agent::engine_bytes_per_agent(components),
        "the plan's figure"
    );
    let bookkeeping = engine as usize - carried;
    assert!(
        (16..=64).contains(&bookkeeping),
        "{engine} bytes counted for {carried} of components"
    );
}
