//! # Continuum
//!
//! Runs many agents continuously inside one Bevy ECS world: every agent perceives,
//! thinks, acts and learns at its own rate, in real time or as fast as the machine
//! allows, and the same scenario and seed give the same result on every run and
//! every thread count.
//!
//! ## Three ways in
//! - **Headless**: `continuum run scenarios/quickstart.ron` (see the `continuum`
//!   binary and [`headless`]).
//! - **In a game**: add [`ContinuumPlugins`] to your `App` (it never adds
//!   `TimePlugin` or `TaskPoolPlugin`: your game has them), request agents through
//!   the [`AgentPool`](agent::AgentPool), and order your systems against
//!   [`ContinuumSystems`].
//! - **In tests**: [`harness::SimHarness`] builds the same `App` on a manual clock
//!   and steps it exactly.
//!
//! ## Plugins
//! | plugin | concern |
//! | --- | --- |
//! | [`ClockPlugin`](clock::ClockPlugin) | the phases of a step ([`ContinuumSystems`]), the step counter |
//! | [`AgentPlugin`](agent::AgentPlugin) | agents, their schedule (timing wheel), their spatial index, the pool that admits them |
//! | [`WorldPlugin`](world::WorldPlugin) | the map, regions and sites |
//! | [`MemoryPlugin`](memory::MemoryPlugin) | four memory tiers, consolidation, budgets, the shared cache |
//! | [`ActionPlugin`](action::ActionPlugin) | actions as messages, conflict resolution, outcomes |
//! | [`ArchetypePlugin`](archetype::ArchetypePlugin) | the agent kinds and their per-kind tables |
//! | [`ThinkPlugin`](think::ThinkPlugin) | thinks that take longer than a tick, as tasks on the async compute pool |
//! | [`BehaviourPlugin`](behaviour::BehaviourPlugin) | the generic perceive and act of every kind |
//! | [`SitesModelPlugin`](sites::SitesModelPlugin) | the sites model's behaviours: explorer, analyzer, controller, planner |
//! | [`MetricsPlugin`](metrics::MetricsPlugin) | run statistics, live metrics, CPU and memory sampling |
//! | [`ResourceMonitorPlugin`](monitor::ResourceMonitorPlugin) | budget rebalancing, load shedding under overload |
//!
//! Swap one out like any Bevy plugin group:
//! `ContinuumPlugins::default().build().disable::<BehaviourPlugin>()`.

// Bevy systems take their data as parameters and queries as tuple types: these
// two lints fire on ordinary systems.
#![allow(clippy::too_many_arguments, clippy::type_complexity)]

pub mod action;
pub mod agent;
pub mod archetype;
pub mod atomic_file;
pub mod behaviour;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod digest;
pub mod harness;
pub mod hash;
pub mod headless;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod parallel;
pub mod phases;
mod prefetch;
pub mod process;
pub mod scenario;
pub mod sites;
pub mod spatial;
pub mod sweep;
pub mod think;
pub mod world;

pub use phases::{ContinuumStartup, ContinuumSystems, LearnSystems, ThinkSystems};

use bevy_app::{FixedUpdate, PluginGroup, PluginGroupBuilder};
use bevy_ecs::intern::Interned;
use bevy_ecs::schedule::ScheduleLabel;

/// Everything a user of the library needs most.
pub mod prelude {
    pub use crate::action::{
        Action, ActionKind, ActionPlugin, ActionResult, ConflictContext, ConflictResolver,
        ConflictRule, ConflictStrategy, Feedback, FeedbackResult, InformedAgents, Outcome,
        PlannedAction, ResolverDiagnostics, Tally, Target,
    };
    pub use crate::agent::{
        Admitted, Agent, AgentBlueprint, AgentId, AgentIndex, AgentKind, AgentPlugin, AgentPool,
        AgentRng, AgentsAdmitted, Body, Cadence, DueAgents, Position, Priority, TickRate, Velocity,
    };
    pub use crate::archetype::{
        Archetype, ArchetypePlugin, Archetypes, Behaviour, BehaviourParams, BehaviourRegistry,
        KindParams, ModelParams, RegisterBehaviour,
    };
    pub use crate::behaviour::{BehaviourPlugin, Intent, Movement};
    pub use crate::clock::{ClockPlugin, ClockSettings, SimClock, SimSeed};
    pub use crate::digest::{StateDigest, state_digest};
    pub use crate::harness::SimHarness;
    pub use crate::memory::{
        Memory, MemoryBudget, MemoryPlugin, MemorySettings, Perception, SharedCache, TierCaps,
    };
    pub use crate::metrics::{Metrics, MetricsPlugin, RunStats};
    pub use crate::monitor::{Budget, ResourceMonitorPlugin};
    pub use crate::scenario::{ClockMode, Pacing, Scenario, ScenarioPlugin};
    pub use crate::sites::SitesModelPlugin;
    pub use crate::think::{
        AsyncThink, AsyncThinkAppExt, ThinkDiagnostics, ThinkPlugin, ThinkSettings, Thinks,
    };
    pub use crate::world::{SiteId, Sites, WorldMap, WorldPlugin, WorldSettings};
    pub use crate::{
        ContinuumPlugins, ContinuumStartup, ContinuumSystems, LearnSystems, ThinkSystems,
    };
}

/// All of Continuum's plugins, running the simulation step in one host schedule
/// (`FixedUpdate` by default).
pub struct ContinuumPlugins {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ContinuumPlugins {
    /// Runs the simulation step in `schedule`.
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for ContinuumPlugins {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl PluginGroup for ContinuumPlugins {
    fn build(self) -> PluginGroupBuilder {
        let s = self.schedule;
        PluginGroupBuilder::start::<Self>()
            .add(clock::ClockPlugin::new(s))
            .add(agent::AgentPlugin::new(s))
            .add(world::WorldPlugin::new(s))
            .add(memory::MemoryPlugin::new(s))
            .add(action::ActionPlugin::new(s))
            .add(archetype::ArchetypePlugin::new(s))
            .add(think::ThinkPlugin::new(s))
            .add(behaviour::BehaviourPlugin::new(s))
            .add(sites::SitesModelPlugin::new(s))
            .add(metrics::MetricsPlugin::new(s))
            .add(monitor::ResourceMonitorPlugin::new(s))
    }
}

#[cfg(test)]
mod tests {
    /// Every agent carries these (plus 8 bytes of change ticks each): a byte
    /// here is a megabyte at a million agents.
    #[test]
    fn per_agent_components_stay_small() {
        use crate::prelude::*;
        assert_eq!(size_of::<Agent>(), 16);
        assert_eq!(size_of::<Cadence>(), 16);
        assert_eq!(size_of::<Position>(), 8);
        assert_eq!(size_of::<Velocity>(), 8);
        assert_eq!(size_of::<Body>(), 12);
        assert_eq!(size_of::<AgentRng>(), 8);
        assert_eq!(size_of::<Perception>(), 40);
        assert_eq!(size_of::<Memory>(), 24);
        // A target is 12 bytes (a model's cell, agent or pair), 8 while only sites were.
        assert_eq!(size_of::<Feedback>(), 40);
        assert_eq!(size_of::<Intent>(), 32);
        assert_eq!(size_of::<Budget>(), 12);
    }
}
