use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::agent::{AgentIndex, PerceptionReach};
use crate::clock::{SimSeed, configure_phases};
use crate::phases::ContinuumStartup;
use crate::spatial::CellGrid;

/// The world: generates the map, the regions and their sites at startup from
/// [`WorldSettings`], and sizes the agents' spatial index to it.
pub struct WorldPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl WorldPlugin {
    /// The world of a simulation stepped in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for WorldPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.init_resource::<WorldSettings>()
            .init_resource::<PerceptionReach>()
            .add_systems(Startup, generate_world.in_set(ContinuumStartup::World));
    }
}

/// Generates the world. The spatial indices' cells are as wide as the farthest
/// any agent perceives, so that a query looks at no more than 3 × 3 cells.
fn generate_world(
    mut commands: Commands,
    settings: Res<WorldSettings>,
    seed: Res<SimSeed>,
    reach: Res<PerceptionReach>,
) {
    let map = WorldMap::new(settings.size, settings.regions, settings.reach);
    let cell = reach.0.max(1.0);
    commands.insert_resource(Sites::generate(&map, &settings, seed.0, cell));
    commands.insert_resource(AgentIndex(CellGrid::new(map.size(), cell)));
    commands.insert_resource(map);
}
