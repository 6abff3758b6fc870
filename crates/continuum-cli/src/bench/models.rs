//! `continuum bench --model flocking|schelling`: agent-steps per second of a
//! model of `continuum-models`, one measurement per process. Flocking runs at
//! the published comparisons' scale (0.1 birds per unit area on a torus,
//! radius 10, every bird every step); Schelling on a grid four fifths full,
//! every resident looking around every step, from the random start (so the
//! first steps' moves and conflicts are in the figure); wolf-sheep at
//! NetLogo's density and parameters, every animal every step (agent-steps
//! count the animals alive in each step, as the populations change).

use std::time::Instant;

use bevy_app::{App, PluginGroup};
use serde::{Deserialize, Serialize};

use continuum::ContinuumPlugins;
use continuum::action::ActionPlugin;
use continuum::agent::AgentPool;
use continuum::archetype::{Archetype, Behaviour, ModelParams};
use continuum::behaviour::BehaviourPlugin;
use continuum::clock::ClockSettings;
use continuum::headless::{FAST, build_app_with, prime, set_pacing};
use continuum::memory::MemoryPlugin;
use continuum::monitor::ResourceMonitorPlugin;
use continuum::process::peak_rss_bytes;
use continuum::scenario::{ClockMode, GroupSpec, Scenario};
use continuum::sites::SitesModelPlugin;
use continuum::think::ThinkPlugin;
use continuum::world::WorldSettings;
use continuum_models::ModelsPlugin;
use continuum_models::flocking::FlockingParams;
use continuum_models::schelling::SchellingParams;
use continuum_models::wolf_sheep::{SheepParams, WolfParams};

use crate::args::BenchModel;

/// Birds per unit area of the published comparisons.
pub const DENSITY: f64 = 0.1;

/// Schelling residents per grid cell.
pub const SCHELLING_DENSITY: f64 = 0.8;

/// One measurement of a model: the contract other engines' drivers print too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
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

/// A model's benchmark scenario: `groups` on a square world of `side`
/// without sites, 10 steps per virtual second, fast.
fn model_scenario(name: &str, groups: Vec<GroupSpec>, side: f32) -> Scenario {
    let mut s = Scenario::new(name, groups);
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
    s
}

/// A kind whose agents tick every step (10 Hz) with the model behaviour
/// `name` and its parameters `params`.
fn model_kind<P: Serialize>(
    kind: &str,
    speed: f32,
    perception_radius: f32,
    name: &str,
    params: &P,
) -> Archetype {
    Archetype {
        kind: kind.into(),
        tick_hz: 10.0,
        priority: Default::default(),
        speed,
        perception_radius,
        perceives_agents: false,
        // The models keep their own grids: the engine's index of agents
        // would be upkeep nobody reads.
        indexed: false,
        memory: Default::default(),
        think_latency: 0.0,
        behaviour: Behaviour::Model {
            name: name.into(),
            params: ModelParams::of(params).expect("model parameters are RON"),
        },
    }
}

/// The comparisons' flock of `agents` birds: a square world of side
/// `sqrt(agents / 0.1)`, 10 steps per virtual second, every bird steering
/// every step with the default (krABMaga's) parameters.
pub fn flocking_scenario(agents: u64) -> Scenario {
    let side = (agents as f64 / DENSITY).sqrt() as f32;
    let count = u32::try_from(agents).unwrap_or(u32::MAX);
    let mut s = model_scenario(
        "flocking-bench",
        vec![GroupSpec::of(&["bird"], count)],
        side,
    );
    let params = FlockingParams::default();
    s.archetypes.push(model_kind(
        "bird",
        params.step * 10.0,
        params.radius,
        "flocking",
        &params,
    ));
    s
}

/// Schelling with `agents` residents, half of each kind, on a square grid
/// four fifths full, 10 steps per virtual second, every resident looking
/// around every step, with the default share wanted (3 of 8).
pub fn schelling_scenario(agents: u64) -> Scenario {
    let side = (agents as f64 / SCHELLING_DENSITY).sqrt().ceil() as f32;
    let count = u32::try_from(agents).unwrap_or(u32::MAX);
    let groups = vec![
        GroupSpec::of(&["red"], count / 2),
        GroupSpec::of(&["blue"], count - count / 2),
    ];
    let mut s = model_scenario("schelling-bench", groups, side);
    let params = SchellingParams::default();
    for kind in ["red", "blue"] {
        s.archetypes
            .push(model_kind(kind, 0.0, 1.5, "schelling", &params));
    }
    s
}

/// Animals per cell in NetLogo's wolf-sheep (150 on 51 × 51).
pub const WOLF_SHEEP_DENSITY: f64 = 150.0 / (51.0 * 51.0);

/// Wolf-sheep with `agents` animals at the start, two sheep to a wolf, at
/// NetLogo's density on a square pasture, every animal every step (10 steps
/// per virtual second), with room in the pool for four times as many.
pub fn wolf_sheep_scenario(agents: u64) -> Scenario {
    let side = (agents as f64 / WOLF_SHEEP_DENSITY).sqrt().ceil() as f32;
    let count = u32::try_from(agents).unwrap_or(u32::MAX / 4);
    let wolves = count / 3;
    let groups = vec![
        GroupSpec::of(&["sheep"], count - wolves),
        GroupSpec::of(&["wolf"], wolves),
    ];
    let mut s = model_scenario("wolf-sheep-bench", groups, side);
    s.max_agents = Some(count as usize * 4);
    s.conflicts = continuum::action::ConflictStrategyKind::Random;
    s.archetypes.push(model_kind(
        "sheep",
        0.0,
        1.0,
        "sheep",
        &SheepParams::default(),
    ));
    s.archetypes
        .push(model_kind("wolf", 0.0, 1.0, "wolf", &WolfParams::default()));
    s
}

/// The app a model needs: the engine's clock, agents, pool, kinds, world,
/// actions (Schelling's moves and wolf-sheep's meals go through the conflict
/// resolver; birds emit none, so flocking goes without, and its birds
/// without the `Feedback` the action plugin gives every agent) and metrics,
/// and the models; not the sites model's behaviours, memory, asynchronous
/// thinks or the resource monitor, which the models do not use.
pub fn app(model: BenchModel, agents: u64, threads: usize) -> App {
    let plugins = ContinuumPlugins::default()
        .build()
        .disable::<BehaviourPlugin>()
        .disable::<SitesModelPlugin>()
        .disable::<MemoryPlugin>()
        .disable::<ThinkPlugin>()
        .disable::<ResourceMonitorPlugin>()
        .add(ModelsPlugin::default());
    let (scenario, plugins) = match model {
        BenchModel::Schelling => (schelling_scenario(agents), plugins),
        BenchModel::WolfSheep => (wolf_sheep_scenario(agents), plugins),
        _ => (flocking_scenario(agents), plugins.disable::<ActionPlugin>()),
    };
    let mut app = build_app_with(scenario, threads, plugins);
    set_pacing(&mut app, FAST);
    prime(&mut app);
    app
}

/// Runs `steps` steps of `model` with `agents` agents on `threads` threads
/// after one warm-up step, in this process.
pub fn run_model(model: BenchModel, agents: u64, threads: usize, steps: u64) -> ModelResult {
    let mut app = app(model, agents, threads);
    app.update();
    let started = Instant::now();
    // Agent-steps: the agents active in each step (wolf-sheep's change).
    let mut agent_steps = 0u64;
    for _ in 0..steps {
        app.update();
        agent_steps += app.world().resource::<AgentPool>().active() as u64;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    ModelResult {
        model: model.name().into(),
        agents,
        threads,
        steps,
        wall_seconds,
        agent_steps_per_sec: agent_steps as f64 / wall_seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
    }
}
