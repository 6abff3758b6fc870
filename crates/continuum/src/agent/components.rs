use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::clock::SimTime;

/// An agent's stable identity: assigned in request order from the scenario's
/// groups and arrivals, the same on every run. Digests, conflict tie-breaks and
/// checkpoints key on it, never on the ECS `Entity`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct AgentId(pub u64);

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An agent kind: an index into the tables of kinds (the built-in ones are
/// [`Archetypes`](crate::archetype::Archetypes)).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct AgentKind(pub u16);

impl AgentKind {
    /// The kind as an index into per-kind tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Who an agent is: its stable id, its kind and its priority.
#[derive(Component, Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub kind: AgentKind,
    pub priority: Priority,
    /// While load shedding slows its priority class, the agent runs at the
    /// tick rate and CPU share of the class above its own (a boosted
    /// background agent as a normal one, a boosted normal agent as a high one,
    /// which is never slowed). The resource monitor boosts the agents whose
    /// CPU share it raised to
    /// [`RebalanceRules::boost_at`](crate::monitor::RebalanceRules::boost_at)
    /// fair shares or more: those that need far more work per tick than the
    /// others (see [`rebalance`](crate::monitor::rebalance)). Without load
    /// shedding it changes nothing. It does not change who wins a conflict.
    pub priority_boost: bool,
    /// The cell of the [`AgentIndex`] that holds the agent. It sits in what would be padding: a component of its own would
    /// cost every agent 12 bytes (4, and 8 of change ticks).
    #[serde(skip)]
    pub(crate) index_cell: u32,
}

impl Agent {
    /// An agent of `kind` with id `id` at `priority`.
    pub fn new(id: AgentId, kind: AgentKind, priority: Priority) -> Self {
        Self {
            id,
            kind,
            priority,
            priority_boost: false,
            index_cell: 0,
        }
    }

    /// The priority class whose tick rate and CPU share the agent gets under
    /// load shedding, as an index into [`PriorityRates`] (`Priority as usize`,
    /// one above its own while [`priority_boost`](Self::priority_boost)).
    pub fn shed_class(&self) -> usize {
        (self.priority as usize + usize::from(self.priority_boost)).min(Priority::High as usize)
    }
}

/// Agents compare by who they are, not by where the index keeps them.
impl PartialEq for Agent {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.kind, self.priority) == (other.id, other.kind, other.priority)
    }
}

impl Eq for Agent {}

/// Scheduling priority. It decides who wins a conflict (with the default
/// strategy), which queue a waiting agent joins, and who keeps its rate under load.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Priority {
    /// Runs when there is room; shed first under load.
    Background = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Admitted first, wins conflicts, keeps its full rate under load.
    High = 2,
}

impl Priority {
    /// All priorities, highest first (the order waiting agents are admitted in).
    pub const HIGHEST_FIRST: [Priority; 3] =
        [Priority::High, Priority::Normal, Priority::Background];

    /// The lower-case name used in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Background => "background",
        }
    }
}

/// How often an agent runs its cycle, in ticks per virtual second. It is capped
/// at the step rate (an agent ticks at most once per step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TickRate(pub f32);

impl TickRate {
    /// The interval between two ticks in nanoseconds, never shorter than one step.
    pub fn period_ns(self, step_ns: u64) -> u64 {
        let hz = f64::from(self.0).max(1e-6);
        ((1e9 / hz).round() as u64).max(step_ns)
    }
}

/// Where an agent is in its own schedule, and how often it runs.
#[derive(Component, Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cadence {
    /// The agent's current (or, between its ticks, next) due time. During the
    /// agent's tick this is the exact virtual time of the tick, which its actions
    /// carry as their timestamp.
    pub due: SimTime,
    /// Ticks completed since the agent was admitted.
    pub ticks: u32,
    /// Its rate. Change it at any time: the interval after the current one uses
    /// the new rate.
    pub rate: TickRate,
}

/// Position in the 2D continuous world, in world units.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Position(pub Vec2);

/// Velocity in world units per virtual second.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Velocity(pub Vec2);

/// Physical traits, from the archetype and the group's overrides.
#[derive(Component, Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Top speed in world units per virtual second.
    pub speed: f32,
    /// Perception radius in world units.
    pub perception_radius: f32,
    /// Whether the agent perceives other agents (sites are always perceived).
    pub senses_agents: bool,
}

/// The agent's own random generator, seeded from the scenario seed and the
/// agent's id. Draw from it only inside this agent's own phases: results then do
/// not depend on thread count or iteration order.
///
/// It is a SplitMix64 (Steele, Lea and Flood, 2014; 8 bytes of state, a million
/// agents keep a million of them): every agent walks the same sequence of
/// period 2^64 from its own starting point, a 64-bit hash of the seed and its
/// id. Two agents' draws overlap only if their starting points fall within as
/// many draws of each other: for `n` agents drawing `d` times each, a chance
/// of about `n² d / 2^64` that any pair does (one in 18 000 for a million
/// agents drawing a thousand times each).
#[derive(Component, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRng(pub SplitMix64);

impl AgentRng {
    /// The generator of agent `id` in a run seeded with `seed`.
    pub fn new(seed: u64, id: AgentId) -> Self {
        Self(SplitMix64::seed_from_u64(crate::hash::mix(seed, id.0)))
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform draw in `0..n` (0 when `n` is 0), by one multiplication of
    /// a 32-bit draw (its bias, at most `n / 2^32`, is far below what a
    /// model could see).
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.0.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// A uniform draw in `[-1, 1)`.
    pub fn signed(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// A word that depends on the whole generator state, for digests: the
    /// state itself.
    pub fn fingerprint(&self) -> u64 {
        u64::from_le_bytes(self.0.state())
    }
}

/// Tick-rate multipliers by priority, indexed by `Priority as usize`
/// (background, normal, high): the interval after an agent's tick is its
/// period at `rate × multiplier`. 1.0 is full rate; the resource monitor
/// lowers them to shed load.
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorityRates(pub [f32; 3]);

impl Default for PriorityRates {
    fn default() -> Self {
        Self([1.0; 3])
    }
}

/// The farthest any agent perceives, in world units: the side of the spatial
/// indices' cells, so that a query looks at 3 × 3 cells at most. Whoever
/// defines the kinds sets it (the built-in [`ArchetypePlugin`] does, from the
/// largest perception radius) before the world is generated.
///
/// [`ArchetypePlugin`]: crate::archetype::ArchetypePlugin
#[derive(Resource, Clone, Copy, Debug, PartialEq)]
pub struct PerceptionReach(pub f32);

impl Default for PerceptionReach {
    fn default() -> Self {
        Self(50.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_periods_are_exact_and_never_shorter_than_a_step() {
        assert_eq!(TickRate(10.0).period_ns(10_000_000), 100_000_000);
        assert_eq!(TickRate(3.0).period_ns(10_000_000), 333_333_333);
        assert_eq!(TickRate(1000.0).period_ns(10_000_000), 10_000_000);
    }
}
