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

use std::time::Duration;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_time::TimeUpdateStrategy;

use crate::clock::SimClock;
use crate::digest::{StateDigest, state_digest};
use crate::headless::{self, FAST, SpeedError, base_app, prime, set_pacing};
use crate::scenario::{ClockMode, Pacing, Scenario, ScenarioPlugin};

/// The real time of one update in [`SimHarness::advance_real`]: a 60 Hz frame,
/// short enough that no speed up to 15 meets Bevy's 250 ms cap on a frame's
/// virtual time.
pub const REAL_FRAME: Duration = Duration::from_nanos(16_666_667);

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

    /// The harness for `scenario` paced in real time at `speed`, on a manual
    /// real clock: no step runs until [`advance_real`](Self::advance_real) moves
    /// the wall clock, and then as many as that real time at the current speed
    /// allows, as in a realtime run. A speed outside (0, `MAX_SPEED`] is an error.
    pub fn realtime(scenario: Scenario, speed: f64) -> Result<Self, SpeedError> {
        if !(speed.is_finite() && speed > 0.0 && speed <= headless::MAX_SPEED) {
            return Err(SpeedError(speed));
        }
        let mut app = base_app(None);
        app.add_plugins(ScenarioPlugin::new(scenario));
        set_pacing(
            &mut app,
            Pacing {
                mode: ClockMode::Realtime,
                speed,
            },
        );
        app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::ZERO));
        prime(&mut app);
        Ok(Self { app })
    }

    /// Moves a [`realtime`](Self::realtime) harness's wall clock on by `real`,
    /// one update per [`REAL_FRAME`] (the last one shorter), running the steps
    /// that fall due. In a fast harness it changes to realtime pacing on the
    /// manual real clock.
    pub fn advance_real(&mut self, real: Duration) {
        let mut left = real;
        while !left.is_zero() && !self.clock().is_finished() {
            let frame = left.min(REAL_FRAME);
            left -= frame;
            self.app
                .insert_resource(TimeUpdateStrategy::ManualDuration(frame));
            self.app.update();
        }
    }

    /// Pauses the run (`Time<Virtual>::pause`): until [`resume`](Self::resume),
    /// updates ([`step`](Self::step), [`advance_real`](Self::advance_real)) run
    /// no step and virtual time stands still.
    pub fn pause(&mut self) {
        headless::pause(self.app.world_mut());
    }

    /// Resumes a paused run exactly where it stood.
    pub fn resume(&mut self) {
        headless::resume(self.app.world_mut());
    }

    /// Whether the run is paused.
    pub fn is_paused(&self) -> bool {
        headless::is_paused(self.app.world())
    }

    /// Sets the realtime speed (`Time<Virtual>`'s relative speed; see
    /// [`headless::set_speed`]). A fast harness still runs one step per update.
    pub fn set_speed(&mut self, speed: f64) -> Result<(), SpeedError> {
        headless::set_speed(self.app.world_mut(), speed)
    }

    /// The current relative speed.
    pub fn speed(&self) -> f64 {
        headless::speed(self.app.world())
    }

    /// Runs `n` updates: exactly `n` steps (fewer if the scenario's duration
    /// ends first), none while paused.
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
