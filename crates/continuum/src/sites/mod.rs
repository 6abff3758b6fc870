//! The sites model: explorers find sites, analyzers assess them, controllers
//! and planners harvest them, and all of them share what they learn through
//! the region boards and the shared cache.
//!
//! It is one model among others, built on the same extension points as the
//! models of `continuum-models` (flocking, Schelling, wolf-sheep): each kind's
//! behaviour is registered with
//! [`register_behaviour`](crate::archetype::RegisterBehaviour::register_behaviour)
//! and named in its archetype,
//!
//! ```ron
//! behaviour: Model(name: "controller", params: (harvest: 1.0, min_estimate: 2.0, travel_cost: 0.01)),
//! ```
//!
//! its systems run in the public phases on its kinds' due agents (see
//! [`KindParams`](crate::archetype::KindParams)), and the planner's route
//! search is an asynchronous think ([`crate::think`]). [`SitesModelPlugin`]
//! adds it all; it is part of [`ContinuumPlugins`](crate::ContinuumPlugins).

mod analyzer;
mod apply;
mod context;
mod controller;
mod explorer;
mod params;
mod planner;
mod think;

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

pub use params::{
    AnalyzerParams, ControllerParams, ExplorerParams, MAX_CANDIDATES, MAX_ROUTE_STOPS,
    PlannerParams,
};
pub use planner::{Candidate, Route, RoutePlanner, RouteProblem, plan_route};
pub use think::think;

use crate::action::{InformedAgents, RegionalTargetsAppExt};
use crate::agent::AgentsAdmitted;
use crate::archetype::{Archetypes, BehaviourParams, BehaviourRegistry, RegisterBehaviour};
use crate::clock::configure_phases;
use crate::memory::{Publication, SharedCache};
use crate::phases::{LearnSystems, ThinkSystems};
use crate::think::ThinkRegistry;
use crate::world::{Sites, WorldMap};

/// The sites model's behaviours (`explorer`, `analyzer`, `controller`,
/// `planner`): their think and learn systems, and the planners' routes and
/// route search. The world (sites, regions), perception and the resolver's
/// site actions are the world, behaviour and action plugins'.
pub struct SitesModelPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl SitesModelPlugin {
    /// Runs the model in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for SitesModelPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.register_behaviour::<ExplorerParams>()
            .register_behaviour::<AnalyzerParams>()
            .register_behaviour::<ControllerParams>()
            .register_behaviour::<PlannerParams>()
            .set_regional_targets::<Sites>()
            .add_message::<Publication>()
            .init_resource::<Archetypes>()
            .init_resource::<Sites>()
            .init_resource::<WorldMap>()
            .init_resource::<SharedCache>()
            .init_resource::<InformedAgents>()
            .init_resource::<crate::think::ThinkQueue>()
            .init_resource::<ThinkRegistry>()
            .add_systems(AgentsAdmitted, planner::give_routes)
            .add_systems(
                self.schedule,
                (
                    (think, planner::think).chain().in_set(ThinkSystems::Decide),
                    (
                        explorer::learn,
                        analyzer::learn,
                        controller::learn,
                        planner::learn,
                    )
                        .chain()
                        .in_set(LearnSystems::Behaviours),
                ),
            );
        // Planners plan as an asynchronous think (served by the think plugin).
        app.world_mut()
            .resource_mut::<ThinkRegistry>()
            .register_matching(|a| a.behaviour.is::<PlannerParams>(), RoutePlanner);
    }
}

/// The sites model's behaviours, for checking scenario files before an `App`
/// is built (what [`SitesModelPlugin`] registers in one).
pub fn behaviours() -> BehaviourRegistry {
    let mut registry = BehaviourRegistry::default();
    registry
        .register::<ExplorerParams>()
        .register::<AnalyzerParams>()
        .register::<ControllerParams>()
        .register::<PlannerParams>();
    debug_assert!(registry.contains(PlannerParams::NAME));
    registry
}
