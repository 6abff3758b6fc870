//! The public phases of one simulation step, and the startup sets.

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

/// Inside [`ContinuumSystems::Learn`], in this order: what the step
/// published reaches the shared cache, outcomes reach the agents'
/// `Feedback` (and [`InformedAgents`](crate::action::InformedAgents)), the
/// behaviours learn from them, and memories consolidate. Put learn systems
/// that read `Feedback` in [`Behaviours`](Self::Behaviours).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnSystems {
    /// Facts published by the step's actions enter the shared cache.
    Publish,
    /// Every outcome of the step is delivered to its agent.
    Deliver,
    /// The kinds' own learning from their outcomes.
    Behaviours,
    /// Due agents consolidate what they perceived into their memories.
    Consolidate,
}

impl LearnSystems {
    /// Every sub-phase, in execution order.
    pub const ALL: [LearnSystems; 4] = [
        LearnSystems::Publish,
        LearnSystems::Deliver,
        LearnSystems::Behaviours,
        LearnSystems::Consolidate,
    ];
}

/// Inside [`ContinuumSystems::Think`], in this order: asynchronous thinks'
/// results come in, the kinds decide, and waiting thinks start. Systems that
/// use [`Thinks`](crate::think::Thinks) go in [`Decide`](Self::Decide).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThinkSystems {
    /// Results whose deadline falls in this step are collected (in fast mode,
    /// waited for) and their slots freed.
    Collect,
    /// The kinds take their plans and make their requests.
    Decide,
    /// Waiting requests start in the free slots, by priority.
    Launch,
}

impl ThinkSystems {
    /// Every sub-phase, in execution order.
    pub const ALL: [ThinkSystems; 3] = [
        ThinkSystems::Collect,
        ThinkSystems::Decide,
        ThinkSystems::Launch,
    ];
}

/// What Continuum sets up before the first step, in order. `Kinds` and
/// `World` run in `Startup`, `Plan` and `Admit` in `PostStartup`, so a game's
/// own `Startup` systems (requesting agents, say) run before the agents are
/// admitted; order a system against these to read what they make.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContinuumStartup {
    /// `Startup`: the agent kinds fill the other plugins' per-kind tables
    /// (memory rules, how far agents perceive).
    Kinds,
    /// `Startup`: the world is generated (`Sites`, `WorldMap`, the agents'
    /// spatial index) and the metrics start.
    World,
    /// `PostStartup`: the memory budget is planned and the shared cache sized.
    Plan,
    /// `PostStartup`: agents requested so far are admitted, so that they exist
    /// before the first step.
    Admit,
}
