use arrayvec::ArrayVec;
use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::action::{ActionKind, FeedbackResult, Target};
use crate::clock::SimTime;
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

/// Who an agent is: its stable id and its kind.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub kind: AgentKind,
}

/// Scheduling priority. It decides who wins a conflict (with the default
/// strategy), which queue a waiting agent joins, and who keeps its rate under load.
#[derive(
    Component,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
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

/// How often an agent runs its cycle, in ticks per virtual second. Change it at
/// any time: the next interval uses the new rate. It is capped at the step rate
/// (an agent ticks at most once per step).
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct TickRate(pub f32);

impl TickRate {
    /// The interval between two ticks in nanoseconds, never shorter than one step.
    pub fn period_ns(self, step_ns: u64) -> u64 {
        let hz = f64::from(self.0).max(1e-6);
        ((1e9 / hz).round() as u64).max(step_ns)
    }
}

/// Where an agent is in its own schedule.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// The agent's current (or, between its ticks, next) due time. During the
    /// agent's tick this is the exact virtual time of the tick, which its actions
    /// carry as their timestamp.
    pub due: SimTime,
    /// Ticks completed since the agent was admitted.
    pub ticks: u32,
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

/// Most sites an agent perceives in one tick (the nearest ones win).
pub const PERCEIVED_SITES_MAX: usize = 8;

/// A site seen this tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenSite {
    pub site: SiteId,
    /// Squared distance in world units².
    pub dist2: f32,
}

/// Another agent seen this tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenAgent {
    pub id: AgentId,
    /// Offset from this agent to the other one, in world units.
    pub offset: Vec2,
}

/// What the agent perceived in its latest tick: its working view of the world,
/// overwritten every tick. Fixed capacity, stored inline.
#[derive(Component, Clone, Debug, Default, PartialEq)]
pub struct Perception {
    /// Sites within the perception radius, nearest first (ties by id).
    pub sites: ArrayVec<SeenSite, PERCEIVED_SITES_MAX>,
    /// How many other agents are within the perception radius.
    pub neighbours: u32,
    /// The nearest other agent within the radius.
    pub nearest: Option<SeenAgent>,
    /// Candidates examined (sites and agents in the cells overlapping the radius):
    /// the deterministic cost of this perception.
    pub examined: u32,
}

/// Most site facts an agent can hold, whatever its archetype asks.
pub const MEMORY_SITES_MAX: usize = 16;

/// What an agent remembers about one site.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SiteFact {
    pub site: SiteId,
    /// Best known value of the site (`NAN` while unknown).
    pub estimate: f32,
    /// Virtual time the fact was last confirmed.
    pub at: SimTime,
    /// The agent has published this site (explorers).
    pub reported: bool,
}

/// An agent's memory of the world: a bounded, inline list of site facts.
#[derive(Component, Clone, Debug, PartialEq)]
pub struct Memory {
    facts: ArrayVec<SiteFact, MEMORY_SITES_MAX>,
    capacity: u8,
}

impl Default for Memory {
    fn default() -> Self {
        Self::with_capacity(MEMORY_SITES_MAX)
    }
}

impl Memory {
    /// An empty memory holding at most `capacity` facts (capped at [`MEMORY_SITES_MAX`]).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            facts: ArrayVec::new(),
            capacity: capacity.min(MEMORY_SITES_MAX) as u8,
        }
    }

    /// How many facts this agent may hold.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The facts currently held.
    pub fn facts(&self) -> &[SiteFact] {
        &self.facts
    }

    /// The fact about `site`, if remembered.
    pub fn get(&self, site: SiteId) -> Option<&SiteFact> {
        self.facts.iter().find(|f| f.site == site)
    }

    /// The fact about `site`, if remembered, for updating.
    pub fn get_mut(&mut self, site: SiteId) -> Option<&mut SiteFact> {
        self.facts.iter_mut().find(|f| f.site == site)
    }

    /// Remembers `fact`, replacing what was known about the same site. When full,
    /// the least useful fact goes: the lowest known estimate (unknown counts as
    /// zero), then the oldest. Returns whether the fact was stored.
    pub fn remember(&mut self, fact: SiteFact) -> bool {
        if let Some(existing) = self.get_mut(fact.site) {
            *existing = SiteFact {
                reported: existing.reported || fact.reported,
                ..fact
            };
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        if self.facts.len() >= self.capacity() {
            let worst = self
                .facts
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    usefulness(a)
                        .total_cmp(&usefulness(b))
                        .then(a.at.cmp(&b.at))
                        .then(a.site.cmp(&b.site))
                })
                .map(|(i, _)| i)
                .expect("capacity is non-zero");
            self.facts.swap_remove(worst);
        }
        self.facts.push(fact);
        true
    }

    /// Forgets what is known about `site`.
    pub fn forget(&mut self, site: SiteId) {
        self.facts.retain(|f| f.site != site);
    }
}

fn usefulness(f: &SiteFact) -> f32 {
    if f.estimate.is_nan() { 0.0 } else { f.estimate }
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
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
pub struct Intent {
    /// The site the agent is working towards, kept from tick to tick.
    pub goal: Option<SiteId>,
    pub movement: Movement,
    /// At most one action per tick.
    pub action: Option<PlannedAction>,
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

/// The outcome of the agent's action in its latest tick, delivered in the learn
/// phase. `step` tells whether it is fresh.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
pub struct Feedback {
    /// The step the outcome belongs to.
    pub step: u64,
    pub outcome: Option<(Target, ActionKind, FeedbackResult)>,
}

impl Feedback {
    /// The outcome, if it was produced in `step`.
    pub fn fresh(&self, step: u64) -> Option<(Target, ActionKind, FeedbackResult)> {
        if self.step == step {
            self.outcome
        } else {
            None
        }
    }
}

/// Running totals of what the agent achieved.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default)]
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

    fn fact(site: u32, estimate: f32, at: SimTime) -> SiteFact {
        SiteFact {
            site: SiteId(site),
            estimate,
            at,
            reported: false,
        }
    }

    #[test]
    fn memory_never_exceeds_its_capacity_and_evicts_the_least_useful() {
        let mut m = Memory::with_capacity(3);
        assert!(m.remember(fact(1, 5.0, 10)));
        assert!(m.remember(fact(2, f32::NAN, 20)));
        assert!(m.remember(fact(3, 9.0, 30)));
        assert!(m.remember(fact(4, 7.0, 40))); // evicts site 2: unknown counts as 0
        let mut held: Vec<u32> = m.facts().iter().map(|f| f.site.0).collect();
        held.sort_unstable();
        assert_eq!(held, [1, 3, 4]);
        assert!(m.remember(fact(5, 5.0, 50))); // ties with site 1 at 5.0: the older goes
        assert!(m.get(SiteId(1)).is_none() && m.get(SiteId(5)).is_some());
        assert_eq!(m.facts().len(), 3);
        for i in 0..100 {
            m.remember(fact(100 + i, i as f32, u64::from(i)));
            assert!(m.facts().len() <= 3);
        }
    }

    #[test]
    fn remembering_a_known_site_updates_it_and_keeps_it_reported() {
        let mut m = Memory::with_capacity(2);
        m.remember(SiteFact {
            reported: true,
            ..fact(1, 5.0, 10)
        });
        m.remember(fact(1, 2.0, 20));
        assert_eq!(m.facts().len(), 1);
        let f = m.get(SiteId(1)).unwrap();
        assert_eq!((f.estimate, f.at, f.reported), (2.0, 20, true));
    }

    #[test]
    fn a_zero_capacity_memory_holds_nothing() {
        let mut m = Memory::with_capacity(0);
        assert!(!m.remember(fact(1, 5.0, 10)));
        assert!(m.facts().is_empty());
    }

    #[test]
    fn tick_periods_are_exact_and_never_shorter_than_a_step() {
        assert_eq!(TickRate(10.0).period_ns(10_000_000), 100_000_000);
        assert_eq!(TickRate(3.0).period_ns(10_000_000), 333_333_333);
        assert_eq!(TickRate(1000.0).period_ns(10_000_000), 10_000_000);
    }
}
