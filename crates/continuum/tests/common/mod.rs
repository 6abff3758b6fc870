//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use bevy_ecs::prelude::*;
use continuum::metrics::RunStats;
use continuum::prelude::*;

/// Parses and validates a scenario written inline in a test.
pub fn scenario(ron: &str) -> Scenario {
    Scenario::from_ron(ron, Path::new("test.ron")).unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario file shipped in `scenarios/`.
pub fn shipped(name: &str) -> Scenario {
    let path = root().join("scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// An archetype of kind `name` that does nothing by itself (its agents are
/// driven by the test's own systems), at `tick_hz`.
pub fn idle_kind(name: &str, tick_hz: f32) -> String {
    format!(
        r#"Archetype(kind: "{name}", tick_hz: {tick_hz:?}, speed: 0.0, perception_radius: 10.0,
                     behaviour: Idle)"#
    )
}

/// What the engine itself keeps per agent (its components and index
/// entries), which a budget in bytes holds beside the agents' memories.
pub fn engine_bytes_per_agent() -> u64 {
    let sim = SimHarness::new(shipped("quickstart.ron"));
    sim.world()
        .resource::<continuum::memory::MemoryPlan>()
        .engine_bytes_per_agent
}

/// Watchers standing among many sites, whose memories fill, and as many
/// agents that see nothing and keep theirs empty: `each` of both, with 224
/// bytes of memory each (what the blocks of the default capacities take: 5
/// facts and 6 observations in blocks of 8), so that the rebalancer moves
/// memory from the blind to the watchers. Watchers hold about three fifths of
/// what their tiers can: that counts as pressure here.
pub fn watchers_and_blind(each: u32) -> Scenario {
    // 224 bytes of memory and the engine's own state each, after the
    // cache's 20 %.
    let budget = (u64::from(each) * 2 * (224 + engine_bytes_per_agent())).div_ceil(4) * 5;
    scenario(&format!(
        r#"Scenario(
            name: "rebalance",
            world: (size: (300.0, 300.0), sites: 400),
            clock: (fixed_hz: 100.0),
            memory: (budget: Bytes({budget}), shared_fraction: 0.2),
            monitor: (rebalance: (memory_high: 0.5)),
            archetypes: [{}],
            groups: [
                (kind: "still", count: {each}, perception_radius: 40.0),
                (kind: "still", count: {each}, perception_radius: 0.01),
            ],
        )"#,
        idle_kind("still", 10.0)
    ))
}

/// The repository's root, where `scenarios/` is.
pub fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// 30 agents at 10 Hz on a 100 Hz clock, ten of each priority.
pub fn three_priorities() -> Scenario {
    scenario(&format!(
        r#"Scenario(
            name: "priorities",
            world: (sites: 40),
            clock: (fixed_hz: 100.0),
            max_agents: 40,
            archetypes: [{}],
            groups: [
                (kind: "idle", count: 10, priority: High),
                (kind: "idle", count: 10, priority: Normal),
                (kind: "idle", count: 10, priority: Background),
            ],
        )"#,
        idle_kind("idle", 10.0)
    ))
}

/// Synthetic load: the step loop's busy time per step, in nanoseconds.
#[derive(Resource, Default)]
pub struct FakeBusy {
    pub per_step: u64,
    /// One step in every `spike_every` (none while 0) takes `spike` instead.
    pub spike: u64,
    pub spike_every: u64,
    steps: u64,
    total: u64,
}

fn fake_busy(mut fake: ResMut<FakeBusy>, mut stats: ResMut<RunStats>) {
    fake.steps += 1;
    let spiked = fake.spike_every > 0 && fake.steps.is_multiple_of(fake.spike_every);
    fake.total += if spiked { fake.spike } else { fake.per_step };
    stats.busy_ns = fake.total;
}

/// Makes every step of `app` count [`FakeBusy::per_step`] nanoseconds of busy
/// time, as the overload monitor reads it.
pub fn add_fake_busy(app: &mut bevy_app::App) {
    app.init_resource::<FakeBusy>().add_systems(
        bevy_app::FixedUpdate,
        fake_busy.in_set(ContinuumSystems::Resolve),
    );
}
