use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::action::{ActionKind, ActionResult, FeedbackResult, Target};
use crate::clock::SimTime;
use crate::memory::WORKING_MAX;
use crate::world::SiteId;

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

/// Index of an agent kind in [`Archetypes`](crate::archetype::Archetypes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AgentKind(pub u16);

impl AgentKind {
    /// The kind as an index into per-kind tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Who an agent is: its stable id, its kind and its priority.
#[derive(Component, Clone, Copy, Debug)]
pub struct Agent {
    pub id: AgentId,
    pub kind: AgentKind,
    pub priority: Priority,
    /// The cell of the [`AgentIndex`](crate::world::AgentIndex) that holds the
    /// agent. It sits in what would be padding: a component of its own would
    /// cost every agent 12 bytes (4, and 8 of change ticks).
    pub(crate) index_cell: u32,
}

impl Agent {
    /// An agent of `kind` with id `id` at `priority`.
    pub fn new(id: AgentId, kind: AgentKind, priority: Priority) -> Self {
        Self {
            id,
            kind,
            priority,
            index_cell: 0,
        }
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickRate(pub f32);

impl TickRate {
    /// The interval between two ticks in nanoseconds, never shorter than one step.
    pub fn period_ns(self, step_ns: u64) -> u64 {
        let hz = f64::from(self.0).max(1e-6);
        ((1e9 / hz).round() as u64).max(step_ns)
    }
}

/// Where an agent is in its own schedule, and how often it runs.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
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
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
pub struct Position(pub Vec2);

/// Velocity in world units per virtual second.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
pub struct Velocity(pub Vec2);

/// Physical traits, from the archetype and the group's overrides.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Body {
    /// Top speed in world units per virtual second.
    pub speed: f32,
    /// Perception radius in world units.
    pub perception_radius: f32,
    /// Whether the agent perceives other agents (sites are always perceived).
    pub senses_agents: bool,
}

/// What the agent perceived in its latest tick: the **working** tier of its
/// memory, overwritten every tick. Fixed capacity, stored inline in 40 bytes.
#[derive(Component, Clone, Debug, Default)]
pub struct Perception {
    /// The first `len` are the sites in view.
    sites: [SiteId; WORKING_MAX],
    len: u8,
    capacity: u8,
    /// Other agents in range, saturating.
    neighbours: u16,
    /// Offset to the nearest of them; meaningless while `neighbours` is 0.
    nearest: Vec2,
    /// Candidates examined (sites and agents in the cells overlapping the radius):
    /// the deterministic cost of this perception.
    pub examined: u32,
}

impl PartialEq for Perception {
    fn eq(&self, other: &Self) -> bool {
        self.sites() == other.sites()
            && self.capacity == other.capacity
            && self.neighbours == other.neighbours
            && self.nearest() == other.nearest()
            && self.examined == other.examined
    }
}

impl Perception {
    /// An empty perception holding at most `capacity` sites.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.min(WORKING_MAX) as u8,
            ..Default::default()
        }
    }

    /// Most sites perceived per tick (the working tier's capacity).
    pub fn capacity(&self) -> usize {
        usize::from(self.capacity)
    }

    /// Sites within the perception radius, nearest first (ties by id), at most
    /// [`capacity`](Self::capacity).
    pub fn sites(&self) -> &[SiteId] {
        &self.sites[..usize::from(self.len)]
    }

    /// Replaces the sites in view with `sites` (nearest first), keeping the first
    /// [`capacity`](Self::capacity) of them.
    pub fn set_sites(&mut self, sites: impl IntoIterator<Item = SiteId>) {
        let (mut len, capacity) = (0, self.capacity());
        for (slot, site) in self.sites[..capacity].iter_mut().zip(sites) {
            *slot = site;
            len += 1;
        }
        self.len = len;
    }

    /// How many other agents are within the perception radius (kinds that
    /// sense agents only), up to `u16::MAX`.
    pub fn neighbours(&self) -> u16 {
        self.neighbours
    }

    /// Offset from this agent to the nearest other agent in range.
    pub fn nearest(&self) -> Option<Vec2> {
        (self.neighbours > 0).then_some(self.nearest)
    }

    /// Records the other agents in range: how many, and the offset to the
    /// nearest (present whenever `count > 0`).
    pub fn set_agents(&mut self, count: u32, nearest: Option<Vec2>) {
        debug_assert_eq!(count > 0, nearest.is_some());
        self.neighbours = count.min(u32::from(u16::MAX)) as u16;
        self.nearest = nearest.unwrap_or_default();
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.min(WORKING_MAX) as u8;
        self.len = self.len.min(self.capacity);
    }

    /// Starts a new tick's perception: same capacity, nothing seen.
    pub fn cleared(&self) -> Self {
        Self::with_capacity(self.capacity())
    }
}

/// How an agent means to move during its act phase.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Movement {
    /// Stay where it is.
    #[default]
    Stay,
    /// Keep going along its [`Velocity`].
    Drift,
    /// Head for a point at full speed, stopping there.
    Toward(Vec2),
}

/// An action planned by the think phase, emitted by the act phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedAction {
    pub target: Target,
    pub kind: ActionKind,
}

/// What the agent decided in its latest think phase.
#[derive(Component, Clone, Copy, PartialEq)]
pub struct Intent {
    /// The site the agent is working towards, kept from tick to tick, or
    /// [`NO_GOAL`]: without an `Option`'s tag the component takes 32 bytes.
    goal: SiteId,
    pub movement: Movement,
    /// At most one action per tick.
    pub action: Option<PlannedAction>,
}

/// The id no site has (ids count up from zero), standing for no goal.
const NO_GOAL: SiteId = SiteId(u32::MAX);

impl Intent {
    /// An intent to work towards `goal` (if any), move and act.
    pub fn new(goal: Option<SiteId>, movement: Movement, action: Option<PlannedAction>) -> Self {
        Self {
            goal: goal.unwrap_or(NO_GOAL),
            movement,
            action,
        }
    }

    /// The site the agent is working towards.
    pub fn goal(&self) -> Option<SiteId> {
        (self.goal != NO_GOAL).then_some(self.goal)
    }

    /// Sets (or, with `None`, drops) the goal.
    pub fn set_goal(&mut self, goal: Option<SiteId>) {
        self.goal = goal.unwrap_or(NO_GOAL);
    }
}

impl Default for Intent {
    fn default() -> Self {
        Self::new(None, Movement::Stay, None)
    }
}

impl std::fmt::Debug for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intent")
            .field("goal", &self.goal())
            .field("movement", &self.movement)
            .field("action", &self.action)
            .finish()
    }
}

/// The agent's own random generator (PCG32), seeded from the scenario seed and the
/// agent's id. Draw from it only inside this agent's own phases: results then do
/// not depend on thread count or iteration order.
#[derive(Component, Clone, Debug, PartialEq, Eq)]
pub struct AgentRng(pub Pcg32);

impl AgentRng {
    /// The generator of agent `id` in a run seeded with `seed`.
    pub fn new(seed: u64, id: AgentId) -> Self {
        Self(Pcg32::seed_from_u64(crate::digest::mix(seed, id.0)))
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform draw in `[-1, 1)`.
    pub fn signed(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// A word that depends on the whole generator state, for digests.
    pub fn fingerprint(&self) -> u64 {
        let mut copy = self.0.clone();
        (u64::from(copy.next_u32()) << 32) | u64::from(copy.next_u32())
    }
}

/// What came of the agent's actions: the outcome of its latest one, delivered
/// in the learn phase of the step it was resolved in, and running totals.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
pub struct Feedback {
    /// The step the outcome belongs to, modulo 2^32 (see [`fresh`](Self::fresh)).
    pub step: u32,
    pub outcome: Option<(Target, ActionKind, FeedbackResult)>,
    pub tally: Tally,
}

impl Feedback {
    /// The outcome, if it was produced in `step`. Steps are told apart modulo
    /// 2^32: an agent that acted once and then not for 2^32 steps (about 500
    /// days at 100 Hz) would see its old outcome as fresh.
    pub fn fresh(&self, step: u64) -> Option<(Target, ActionKind, FeedbackResult)> {
        if self.step == step as u32 {
            self.outcome
        } else {
            None
        }
    }

    /// Keeps the outcome of this step's action in `step`, and counts it.
    pub(crate) fn deliver(
        &mut self,
        step: u64,
        target: Target,
        kind: ActionKind,
        result: ActionResult,
    ) {
        self.step = step as u32;
        self.outcome = Some((target, kind, result.into()));
        match result {
            ActionResult::Applied { value } => {
                self.tally.applied += 1;
                if matches!(kind, ActionKind::Harvest { .. }) {
                    self.tally.harvested += value;
                }
            }
            ActionResult::Rejected { .. } => self.tally.rejected += 1,
            ActionResult::Failed { .. } => {}
        }
    }
}

/// An agent's share of the resources, and what it used of them. The resource
/// monitor moves budget between agents; the agent follows at its next tick.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Memory limit in bytes: its tiers are sized to fit.
    pub memory_limit: u32,
    /// Its share of the run's work per tick (the shares of all agents add up to
    /// about 1). Perception stops examining candidates once the agent has spent
    /// `cpu_share × agents × WORK_ALLOWANCE` work units in a tick.
    pub cpu_share: f32,
    /// The monitor raised its share above the fair one.
    pub priority_boost: bool,
    /// What its ticks cost.
    pub usage: Usage,
}

impl Budget {
    /// Work units the agent may spend per tick when `agents` are active, with its
    /// share scaled by `scale` (load shedding).
    pub fn work_allowance(&self, agents: usize, scale: f32) -> u32 {
        let units = f64::from(self.cpu_share * scale) * agents as f64 * f64::from(WORK_ALLOWANCE);
        units.clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

/// Work units an agent with a fair share may spend per tick: enough that an
/// agent's view is never cut short at ordinary densities (a perception examines
/// a few dozen candidates).
pub const WORK_ALLOWANCE: u32 = 256;

/// What an agent's latest tick cost, in deterministic work units: candidates its
/// perception examined, sites its memory consolidated, and its action.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Usage {
    /// Units spent in the latest tick.
    pub last: u32,
    /// Moving average of units per tick.
    pub average: f32,
}

impl Usage {
    /// Takes in one tick's units.
    pub fn spend(&mut self, units: u32) {
        self.last = units;
        self.average = if self.average == 0.0 {
            units as f32
        } else {
            0.9 * self.average + 0.1 * units as f32
        };
    }
}

/// How much the monitor has slowed each priority down, indexed by
/// `Priority as usize` (background, normal, high). 1.0 is full rate.
#[derive(Resource, Clone, Debug, PartialEq)]
pub struct LoadShedding {
    /// Tick rate multipliers.
    pub rate_scale: [f32; 3],
    /// CPU share multipliers.
    pub cpu_scale: [f32; 3],
}

impl Default for LoadShedding {
    fn default() -> Self {
        Self {
            rate_scale: [1.0; 3],
            cpu_scale: [1.0; 3],
        }
    }
}

/// Running totals of what the agent achieved, kept in its [`Feedback`].
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Tally {
    /// Site value harvested in total.
    pub harvested: f32,
    /// Actions applied to the world.
    pub applied: u32,
    /// Actions that lost a conflict.
    pub rejected: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perception_keeps_its_capacity_and_reports_the_nearest_only_with_neighbours() {
        let mut p = Perception::with_capacity(3);
        p.set_sites((1..=5).map(SiteId));
        assert_eq!(p.sites(), &[SiteId(1), SiteId(2), SiteId(3)]);
        p.set_capacity(2);
        assert_eq!(p.sites(), &[SiteId(1), SiteId(2)]);
        p.set_sites([SiteId(9)]);
        assert_eq!(p.sites(), &[SiteId(9)]);
        assert_eq!(p.nearest(), None);
        p.set_agents(70_000, Some(Vec2::new(1.0, -2.0)));
        assert_eq!(p.neighbours(), u16::MAX, "the count saturates");
        assert_eq!(p.nearest(), Some(Vec2::new(1.0, -2.0)));
        p.set_agents(0, None);
        assert_eq!(p.nearest(), None);
        let mut fresh = p.cleared();
        fresh.set_sites([SiteId(9)]);
        assert_eq!(p, fresh, "stale slots do not count");
    }

    #[test]
    fn per_agent_components_stay_small() {
        // Every agent carries these: a byte here is a megabyte at a million.
        assert_eq!(size_of::<Agent>(), 16);
        assert_eq!(size_of::<Cadence>(), 16);
        assert_eq!(size_of::<Perception>(), 40);
        assert_eq!(size_of::<Budget>(), 20);
        assert_eq!(size_of::<Feedback>(), 40);
        assert_eq!(size_of::<Intent>(), 32);
        assert_eq!(size_of::<crate::memory::Memory>(), 24);
    }

    #[test]
    fn tick_periods_are_exact_and_never_shorter_than_a_step() {
        assert_eq!(TickRate(10.0).period_ns(10_000_000), 100_000_000);
        assert_eq!(TickRate(3.0).period_ns(10_000_000), 333_333_333);
        assert_eq!(TickRate(1000.0).period_ns(10_000_000), 10_000_000);
    }
}
