//! A test harness: the same `App` the CLI runs, on a manual clock, stepped
//! exactly.
//!
//! ```no_run
//! use continuum::prelude::*;
//! # fn demo(scenario: Scenario) {
//! let mut sim = SimHarness::new(scenario);
//! sim.step(100); // exactly 100 fixed steps
//! sim.run_for(2.5); // 2.5 virtual seconds more
//! assert_eq!(sim.clock().elapsed_secs(), 100.0 * sim.clock().step_secs() + 2.5);
//! let digest = sim.state_digest();
//! # }
//! ```
//!

use bevy_app::App;
use bevy_ecs::prelude::*;

use crate::clock::SimClock;
use crate::digest::{StateDigest, state_digest};
use crate::headless::{FAST, base_app, prime, set_pacing};
use crate::scenario::{Scenario, ScenarioPlugin};

/// An `App` built from a scenario on a manual clock: every [`step`](Self::step)
/// runs exactly one fixed step, whatever the wall clock does.
pub struct SimHarness {
    app: App,
}

impl SimHarness {
    /// The harness for `scenario` with all of Continuum's plugins.
    pub fn new(scenario: Scenario) -> Self {
        Self::with(scenario, |_| {})
    }

    /// The harness for `scenario`; `customise` can add plugins, systems and
    /// resources before startup (e.g. a game system ordered against the phases,
    /// or a different conflict strategy).
    pub fn with(scenario: Scenario, customise: impl FnOnce(&mut App)) -> Self {
        let mut app = base_app(None);
        app.add_plugins(ScenarioPlugin::new(scenario));
        customise(&mut app);
        Self::from_app(app)
    }

    /// Wraps an `App` that already has task pools, `TimePlugin` and Continuum's
    /// plugins: puts it on the manual clock and primes it.
    pub fn from_app(mut app: App) -> Self {
        set_pacing(&mut app, FAST);
        prime(&mut app);
        Self { app }
    }

    /// Runs exactly `n` steps (fewer if the scenario's duration ends first).
    pub fn step(&mut self, n: u64) {
        for _ in 0..n {
            if self.clock().is_finished() {
                return;
            }
            self.app.update();
        }
    }

    /// Runs the steps that cover `seconds` of virtual time (rounded to whole steps).
    pub fn run_for(&mut self, seconds: f64) {
        let steps = (seconds * 1e9 / self.clock().step_ns() as f64).round() as u64;
        self.step(steps);
    }

    /// The simulation clock.
    pub fn clock(&self) -> &SimClock {
        self.app.world().resource::<SimClock>()
    }

    /// The world, to query components and resources.
    pub fn world(&self) -> &World {
        self.app.world()
    }

    /// The world, mutably (e.g. to run queries or request agents).
    pub fn world_mut(&mut self) -> &mut World {
        self.app.world_mut()
    }

    /// The app itself.
    pub fn app_mut(&mut self) -> &mut App {
        &mut self.app
    }

    /// The digest of the current simulation state.
    pub fn state_digest(&mut self) -> StateDigest {
        state_digest(self.app.world_mut())
    }

    /// Every entity's component `C`, keyed by agent id order.
    pub fn agents<C: Component + Clone>(&mut self) -> Vec<(crate::agent::AgentId, C)> {
        let world = self.app.world_mut();
        let mut q = world.query::<(&crate::agent::Agent, &C)>();
        let mut out: Vec<_> = q.iter(world).map(|(a, c)| (a.id, c.clone())).collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}
