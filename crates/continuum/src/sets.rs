//! The public phases of one simulation step.

use bevy_ecs::schedule::SystemSet;

/// The phases of one fixed step, in order. They are chained: every system in one
/// set runs after every system of the previous set.
///
/// A game or a test adds its own systems with `.in_set(ContinuumSystems::Think)`,
/// or orders them against a phase with `.after(ContinuumSystems::Act)`. The
/// built-in behaviours use exactly the same door.
///
/// Systems in these sets only run while the simulation clock is running (see
/// [`SimClock::is_running`](crate::clock::SimClock::is_running)).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContinuumSystems {
    /// Empty hook point: runs before anything else in the step.
    First,
    /// Advances the step index, admits waiting agents and picks the agents that
    /// are due in this step into [`DueAgents`](crate::agent::DueAgents).
    Clock,
    /// The environment's own update and the spatial indices agents perceive through.
    Environment,
    /// Due agents read the world into their `Perception`.
    Perceive,
    /// Due agents decide: they update their `Intent` from perception and memory.
    Think,
    /// Due agents move and emit [`Action`](crate::action::Action) messages.
    Act,
    /// Actions are put into a total order, conflicts are resolved per region and
    /// winners are applied to the world; every action gets an
    /// [`Outcome`](crate::action::Outcome).
    Resolve,
    /// Due agents learn from their outcomes and update their memory.
    Learn,
    /// Due agents are rescheduled at their next due time; agents retire and
    /// waiting agents take the freed slots.
    Pool,
    /// Diagnostics and metrics are gathered.
    Monitor,
    /// Empty hook point: runs after everything else in the step.
    Last,
}

impl ContinuumSystems {
    /// Every phase, in execution order.
    pub const ALL: [ContinuumSystems; 11] = [
        ContinuumSystems::First,
        ContinuumSystems::Clock,
        ContinuumSystems::Environment,
        ContinuumSystems::Perceive,
        ContinuumSystems::Think,
        ContinuumSystems::Act,
        ContinuumSystems::Resolve,
        ContinuumSystems::Learn,
        ContinuumSystems::Pool,
        ContinuumSystems::Monitor,
        ContinuumSystems::Last,
    ];
}
