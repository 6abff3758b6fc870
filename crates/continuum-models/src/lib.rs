//! # Continuum models
//!
//! Standard agent-based models on [Continuum](continuum), each written only
//! through the engine's public API, as a user's own model would be: a
//! behaviour registered with
//! [`RegisterBehaviour`](continuum::archetype::RegisterBehaviour), parameters
//! of its own type that scenario files give and `continuum validate` checks,
//! and systems in the engine's public phases.
//!
//! | model | plugin | behaviour |
//! | --- | --- | --- |
//! | flocking (boids) | [`FlockingPlugin`](flocking::FlockingPlugin) | `flocking` |
//! | Schelling segregation | [`SchellingPlugin`](schelling::SchellingPlugin) | `schelling` |
//! | wolf-sheep predation | [`WolfSheepPlugin`](wolf_sheep::WolfSheepPlugin) | `sheep`, `wolf` |
//!
//! Add [`ModelsPlugin`] beside `ContinuumPlugins` for all of them, and give
//! [`behaviours`] to the scenario loader
//! ([`Scenario::load_with`](continuum::scenario::Scenario::load_with)) so
//! that their parameters are checked with the file.

// Bevy systems take their data as parameters and queries as tuple types: these
// two lints fire on ordinary systems.
#![allow(clippy::too_many_arguments, clippy::type_complexity)]

pub mod flocking;
pub mod grid;
pub mod schelling;
pub mod wolf_sheep;

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::intern::Interned;
use bevy_ecs::schedule::ScheduleLabel;
use continuum::archetype::{BehaviourParams, BehaviourRegistry};

/// Every model of this crate.
pub struct ModelsPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ModelsPlugin {
    /// The models, stepped in `schedule` (the one Continuum's plugins step in).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for ModelsPlugin {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl Plugin for ModelsPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            flocking::FlockingPlugin::new(self.schedule),
            schelling::SchellingPlugin::new(self.schedule),
            wolf_sheep::WolfSheepPlugin::new(self.schedule),
        ));
    }
}

/// The behaviours of this crate's models, for checking scenario files before
/// an `App` is built.
pub fn behaviours() -> BehaviourRegistry {
    let mut registry = BehaviourRegistry::default();
    registry.register::<flocking::FlockingParams>();
    registry.register::<schelling::SchellingParams>();
    registry.register::<wolf_sheep::SheepParams>();
    registry.register::<wolf_sheep::WolfParams>();
    debug_assert!(registry.contains(flocking::FlockingParams::NAME));
    registry
}
