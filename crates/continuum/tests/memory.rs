//! Agent memory through the harness: tiers stay within their capacities over a
//! long run, budgets size the tiers and the shared cache, and memory makes
//! agents harvest more.

mod common;

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
    let scenario = common::scenario(&format!(
        r#"Scenario(
            name: "budget",
            world: (sites: 200),
            clock: (fixed_hz: 100.0),
            max_agents: 100,
            memory: (budget: {budget}, shared_fraction: 0.25),
            groups: [(kind: "explorer", count: 40), (kind: "controller", count: 40)],
        )"#
    ));
    let mut sim = SimHarness::new(scenario);
    sim.step(1);
    sim
}

#[test]
fn the_budget_sizes_the_shared_cache_and_each_agents_tiers() {
    let sim = with_budget("Bytes(64000)");
    let plan = sim.world().resource::<MemoryPlan>();
    assert_eq!(plan.shared_bytes, 16_000);
    assert_eq!(
        plan.per_agent_bytes,
        48_000 / 100,
        "(1 - shared) × budget / max_agents"
    );
    assert_eq!(
        sim.world().resource::<SharedCache>().capacity(),
        16_000 / SharedCache::ENTRY_BYTES
    );

    // 480 bytes each: more than the defaults (184), so tiers grow to the maxima.
    let mut sim = sim;
    for (_, m) in sim.agents::<Memory>() {
        assert_eq!(m.limit(), 480);
        assert!(m.caps().bytes() <= 480);
    }

    // A tight budget: 92 bytes each, half the defaults.
    let mut tight = with_budget("Bytes(12267)");
    let expected = TierCaps {
        working: 6,
        short_term: 6,
        intermediate: 4,
        long_term: 3,
    }
    .scaled_to(92);
    assert!(expected.bytes() <= 92 && expected != TierCaps::NONE);
    for (_, m) in tight.agents::<Memory>() {
        assert_eq!(m.caps(), expected);
    }
    let small_cache = tight.world().resource::<SharedCache>().capacity();
    assert_eq!(small_cache, 3066 / SharedCache::ENTRY_BYTES);
}

#[test]
fn a_small_shared_cache_evicts_and_counts() {
    let mut sim = with_budget("Bytes(12267)");
    sim.run_for(60.0);
    let stats = sim.world().resource::<SharedCache>().stats();
    assert_eq!(stats.capacity, 47);
    assert!(stats.len <= 47);
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
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
