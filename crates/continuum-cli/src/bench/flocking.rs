//! `continuum bench --model flocking`: agent-steps per second of the flocking
//! model at the published comparisons' scale (0.1 birds per unit area on a
//! torus, radius 10, every bird every step), one measurement per process.

use std::time::Instant;

use bevy_app::{App, PluginGroup};
use serde::{Deserialize, Serialize};

use continuum::ContinuumPlugins;
use continuum::action::ActionPlugin;
use continuum::archetype::{Archetype, Behaviour, ModelParams};
use continuum::behaviour::BehaviourPlugin;
use continuum::clock::ClockSettings;
use continuum::headless::{FAST, build_app_with, prime, set_pacing};
use continuum::memory::MemoryPlugin;
use continuum::monitor::ResourceMonitorPlugin;
use continuum::process::peak_rss_bytes;
use continuum::scenario::{ClockMode, GroupSpec, Scenario};
use continuum::think::ThinkPlugin;
use continuum::world::WorldSettings;
use continuum_models::ModelsPlugin;
use continuum_models::flocking::FlockingParams;

/// Birds per unit area of the published comparisons.
pub const DENSITY: f64 = 0.1;

/// One flocking measurement: the contract other engines' drivers print too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlockResult {
    pub model: String,
    pub agents: u64,
    pub threads: usize,
    pub steps: u64,
    /// Wall seconds of the measured steps.
    pub wall_seconds: f64,
    pub agent_steps_per_sec: f64,
    /// The process's peak resident memory (`VmHWM`), 0 where unknown.
    pub peak_rss_bytes: u64,
}

/// The comparisons' flock of `agents` birds: a square world of side
/// `sqrt(agents / 0.1)`, 10 steps per virtual second, every bird steering
/// every step with the default (krABMaga's) parameters.
pub fn scenario(agents: u64) -> Scenario {
    let side = (agents as f64 / DENSITY).sqrt() as f32;
    let count = u32::try_from(agents).unwrap_or(u32::MAX);
    let mut s = Scenario::new("flocking-bench", vec![GroupSpec::of(&["bird"], count)]);
    s.world = WorldSettings {
        size: bevy_math::Vec2::splat(side),
        regions: (1, 1),
        sites: 0,
        ..WorldSettings::default()
    };
    s.clock = ClockSettings {
        fixed_hz: 10.0,
        ..ClockSettings::default()
    };
    s.pacing.mode = ClockMode::Fast;
    let params = FlockingParams::default();
    s.archetypes.push(Archetype {
        kind: "bird".into(),
        tick_hz: 10.0,
        priority: Default::default(),
        speed: params.step * 10.0,
        perception_radius: params.radius,
        perceives_agents: false,
        memory: Default::default(),
        think_latency: 0.0,
        behaviour: Behaviour::Model {
            name: "flocking".into(),
            params: ModelParams::of(&params).expect("flocking parameters are RON"),
        },
    });
    s
}

/// The app a flocking model needs: the engine's clock, agents, pool, kinds,
/// world and metrics, and the model; not the sites model's behaviours, memory,
/// actions, asynchronous thinks or the resource monitor, which birds do not use.
pub fn app(agents: u64, threads: usize) -> App {
    let plugins = ContinuumPlugins::default()
        .build()
        .disable::<BehaviourPlugin>()
        .disable::<MemoryPlugin>()
        .disable::<ActionPlugin>()
        .disable::<ThinkPlugin>()
        .disable::<ResourceMonitorPlugin>()
        .add(ModelsPlugin::default());
    let mut app = build_app_with(scenario(agents), threads, plugins);
    set_pacing(&mut app, FAST);
    prime(&mut app);
    app
}

/// Runs `steps` steps of `agents` birds on `threads` threads after one warm-up
/// step, in this process.
pub fn run_flocking(agents: u64, threads: usize, steps: u64) -> FlockResult {
    let mut app = app(agents, threads);
    app.update();
    let started = Instant::now();
    for _ in 0..steps {
        app.update();
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    FlockResult {
        model: "flocking".into(),
        agents,
        threads,
        steps,
        wall_seconds,
        agent_steps_per_sec: (agents * steps) as f64 / wall_seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
    }
}
