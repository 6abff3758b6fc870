//! Agent memory: four bounded tiers, consolidation, a shared cache, and budgets.
//!
//! - **working**: what the agent perceives this tick, in its
//!   [`Perception`], cleared every tick;
//! - **short-term**: a ring of recent sightings ([`Observation`]s) of sites not
//!   yet known, with their virtual times and counts;
//! - **intermediate**: consolidated [`Fact`]s (a site, its value, when, whether the
//!   agent assessed it itself) whose confidence decays over virtual time;
//! - **long-term**: facts confirmed again and again; when full, the least valuable
//!   goes.
//!
//! The learn phase consolidates: a site not yet known that is seen
//! [`MemoryRules::promote_after`] times while in short-term becomes an
//! intermediate fact; a fact confirmed
//! [`MemoryRules::long_term_after`] times moves to long-term; a contradicted fact
//! (a site found empty, a lost conflict) loses confidence, and a long-term fact
//! that is contradicted falls back to intermediate. Every tier has a fixed
//! capacity; its records live in blocks of a shared slab (`SlabVec`) sized to
//! what the agent holds, so nothing is allocated from the heap per agent and an
//! agent that knows little takes little room.
//!
//! Agents also share what they learn through the [`SharedCache`], an LRU map of
//! published facts (site values, and the ground explorers went over) whose room
//! in bytes is its share of the memory budget ([`MemoryPlan`]).

mod cache;
mod perception;
mod plugin;
mod slab;

pub(crate) use cache::CacheImage;
pub use cache::{CacheReader, CacheStats, SharedCache, SharedFact, SharedKey};
pub use perception::Perception;
pub use plugin::{MemoryPlugin, check_budget};
pub use slab::SlabUsage;
use slab::{SLAB_VEC_MAX, SlabRecord, SlabVec, block_records};

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use crate::agent::AgentKind;
use crate::clock::SimTime;
use crate::world::SiteId;

/// Virtual time in milliseconds, as memory records store it: four bytes, enough
/// for 49 days of virtual time.
pub type MemTime = u32;

/// Converts [`SimTime`] to [`MemTime`] (saturating).
pub fn mem_time(t: SimTime) -> MemTime {
    (t / 1_000_000).min(u64::from(u32::MAX)) as MemTime
}

/// Most sites the working tier (perception) holds.
pub const WORKING_MAX: usize = 6;
/// Most observations the short-term ring holds.
pub const SHORT_TERM_MAX: usize = 8;
/// Most facts the intermediate tier holds.
pub const INTERMEDIATE_MAX: usize = 6;
/// Most facts the long-term tier holds.
pub const LONG_TERM_MAX: usize = 4;

// The facts of both tiers share one slab vector, the observations another.
const _: () = assert!(INTERMEDIATE_MAX + LONG_TERM_MAX <= SLAB_VEC_MAX);
const _: () = assert!(SHORT_TERM_MAX <= SLAB_VEC_MAX);

/// A fact published for every agent to read in the [`SharedCache`]: a
/// message that whoever learns it (the resolver, applying actions) writes
/// and the memory plugin takes in at the start of the learn phase
/// ([`LearnSystems::Publish`](crate::phases::LearnSystems::Publish)), in the
/// order written.
#[derive(Message, Clone, Copy, Debug, PartialEq)]
pub struct Publication {
    pub key: SharedKey,
    pub fact: SharedFact,
}

/// Bytes one record of each tier takes: working, short-term, intermediate, long-term.
pub const RECORD_BYTES: [usize; 4] = [
    size_of::<SiteId>(),
    size_of::<Observation>(),
    size_of::<Fact>(),
    size_of::<Fact>(),
];

/// Capacities of the four tiers, in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCaps {
    pub working: u8,
    pub short_term: u8,
    pub intermediate: u8,
    pub long_term: u8,
}

impl TierCaps {
    /// No memory at all beyond what is perceived.
    pub const NONE: TierCaps = TierCaps {
        working: 0,
        short_term: 0,
        intermediate: 0,
        long_term: 0,
    };

    /// Bytes these capacities take when full.
    pub fn bytes(&self) -> usize {
        let caps = [
            self.working,
            self.short_term,
            self.intermediate,
            self.long_term,
        ];
        caps.iter()
            .zip(RECORD_BYTES)
            .map(|(&c, b)| usize::from(c) * b)
            .sum()
    }

    /// Bytes the memory's slab blocks take at most with these capacities:
    /// the facts of the intermediate and long-term tiers share one block,
    /// the observations take another, each of the smallest size (2, 4, 8 or
    /// 16 records) that holds its tiers full. This is what a memory really
    /// holds, and what its limit bounds; the working tier lives in the
    /// agent's [`Perception`], inline.
    pub fn block_bytes(&self) -> usize {
        let caps = self.clamped();
        block_records(usize::from(caps.intermediate) + usize::from(caps.long_term))
            * size_of::<Fact>()
            + block_records(usize::from(caps.short_term)) * size_of::<Observation>()
    }

    /// The capacities clamped to the tier maxima.
    pub fn clamped(self) -> Self {
        Self {
            working: self.working.min(WORKING_MAX as u8),
            short_term: self.short_term.min(SHORT_TERM_MAX as u8),
            intermediate: self.intermediate.min(INTERMEDIATE_MAX as u8),
            long_term: self.long_term.min(LONG_TERM_MAX as u8),
        }
    }

    /// The largest capacities, in proportion to `self`, whose blocks fit in
    /// `limit` bytes ([`block_bytes`](Self::block_bytes); and in the tier
    /// maxima). With `limit` at or above `self.block_bytes()`, every tier may
    /// grow by the same factor. The working tier scales with the others.
    pub fn scaled_to(self, limit: usize) -> Self {
        let base = self.clamped();
        if base.block_bytes() == 0 {
            return base;
        }
        let factor = limit as f64 / base.block_bytes() as f64;
        let scale = |c: u8, max: usize| ((f64::from(c) * factor).floor() as usize).min(max) as u8;
        let mut caps = Self {
            working: scale(base.working, WORKING_MAX),
            short_term: scale(base.short_term, SHORT_TERM_MAX),
            intermediate: scale(base.intermediate, INTERMEDIATE_MAX),
            long_term: scale(base.long_term, LONG_TERM_MAX),
        };
        // Blocks come in whole sizes: take a record at a time from the tier
        // whose records take the most bytes until the blocks fit.
        while caps.block_bytes() > limit {
            let tiers = [caps.short_term, caps.intermediate, caps.long_term];
            let (i, _) = tiers
                .iter()
                .zip(&RECORD_BYTES[1..])
                .enumerate()
                .max_by_key(|(i, (c, b))| (usize::from(**c) * **b, std::cmp::Reverse(*i)))
                .expect("three tiers");
            match i {
                0 => caps.short_term -= 1,
                1 => caps.intermediate -= 1,
                _ => caps.long_term -= 1,
            }
        }
        caps
    }
}

/// How a kind's memory works: default capacities and consolidation rules. Lives
/// in the archetype files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRules {
    /// Default capacities (records per tier) before the budget scales them.
    pub capacity: TierCaps,
    /// Observations of a site in short-term that make it an intermediate fact.
    pub promote_after: u8,
    /// Confirmations of an intermediate fact that make it long-term.
    pub long_term_after: u8,
    /// Virtual seconds for an intermediate fact's confidence to halve.
    pub half_life: f32,
    /// Intermediate facts whose confidence falls below this are forgotten.
    pub forget_below: f32,
    /// Share of its confidence a contradicted fact keeps, in `[0, 1)`.
    pub contradiction: f32,
}

impl MemoryRules {
    /// Checks the values; errors carry the path of the field at fault.
    pub fn validate(&self, v: &mut crate::config::Validator) {
        let c = self.capacity;
        v.field("capacity", |v| {
            for (name, value, max) in [
                ("working", c.working, WORKING_MAX),
                ("short_term", c.short_term, SHORT_TERM_MAX),
                ("intermediate", c.intermediate, INTERMEDIATE_MAX),
                ("long_term", c.long_term, LONG_TERM_MAX),
            ] {
                v.check(usize::from(value) <= max, name, || {
                    format!("expected at most {max} records, got {value}")
                });
            }
        });
        v.check(self.promote_after >= 1, "promote_after", || {
            "expected at least 1 observation".into()
        });
        v.check(self.long_term_after >= 1, "long_term_after", || {
            "expected at least 1 confirmation".into()
        });
        v.check(
            self.half_life.is_finite()
                && self.half_life > 0.0
                && self.half_life <= crate::config::MAX_MAGNITUDE,
            "half_life",
            || {
                format!(
                    "expected a positive number of virtual seconds, at most 1e9, got {}",
                    self.half_life
                )
            },
        );
        v.check(
            (0.0..=1.0).contains(&self.forget_below),
            "forget_below",
            || format!("expected a confidence in [0, 1], got {}", self.forget_below),
        );
        v.check(
            (0.0..1.0).contains(&self.contradiction),
            "contradiction",
            || format!("expected a share in [0, 1), got {}", self.contradiction),
        );
    }
}

/// The rules of a kind that defines none of its own.
pub const DEFAULT_RULES: MemoryRules = MemoryRules {
    capacity: TierCaps {
        working: 6,
        short_term: 6,
        intermediate: 4,
        long_term: 3,
    },
    promote_after: 2,
    long_term_after: 3,
    half_life: 30.0,
    forget_below: 0.25,
    contradiction: 0.5,
};

impl Default for MemoryRules {
    fn default() -> Self {
        DEFAULT_RULES
    }
}

/// The memory rules of every agent kind, indexed by kind. Whoever defines the
/// kinds fills it (the built-in
/// [`ArchetypePlugin`](crate::archetype::ArchetypePlugin) does, from each
/// archetype's `memory` section); a kind without an entry has
/// [`DEFAULT_RULES`].
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct MemoryKinds(pub Vec<MemoryRules>);

impl MemoryKinds {
    /// The rules of `kind`, if it has its own.
    pub fn get(&self, kind: AgentKind) -> Option<&MemoryRules> {
        self.0.get(kind.index())
    }

    /// The rules of `kind`: its own, or [`DEFAULT_RULES`].
    pub fn rules(&self, kind: AgentKind) -> &MemoryRules {
        self.get(kind).unwrap_or(&DEFAULT_RULES)
    }

    /// Bytes the blocks of the largest default capacities of any kind take:
    /// what an agent needs under an automatic budget.
    pub fn largest_default_bytes(&self) -> u64 {
        let kinds = if self.0.is_empty() {
            std::slice::from_ref(&DEFAULT_RULES)
        } else {
            &self.0[..]
        };
        kinds
            .iter()
            .map(|r| r.capacity.clamped().block_bytes() as u64)
            .max()
            .unwrap_or(0)
    }
}

/// A site seen recently: when last, and how many times since it entered the
/// ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub site: SiteId,
    pub at: MemTime,
    pub count: u8,
}

/// The fact was published by this agent (explorers' reports).
pub const REPORTED: u8 = 1;
/// The value comes from this agent's own assessment.
pub const ASSESSED_BY_ME: u8 = 2;

/// What an agent holds about one site.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub site: SiteId,
    /// Best known value (`NAN` while unknown).
    pub value: f32,
    /// Virtual time of the last confirmation.
    pub at: MemTime,
    /// Confidence at `at`, in units of 1/65535.
    confidence: u16,
    /// Times the fact was confirmed.
    pub hits: u8,
    /// [`REPORTED`], [`ASSESSED_BY_ME`].
    pub flags: u8,
}

impl Fact {
    fn new(site: SiteId, value: f32, at: MemTime) -> Self {
        Self {
            site,
            value,
            at,
            confidence: u16::MAX,
            hits: 1,
            flags: 0,
        }
    }

    /// Confidence at `now`, halving every `half_life` virtual seconds.
    pub fn confidence_at(&self, now: MemTime, half_life: f32) -> f32 {
        let stored = f32::from(self.confidence) / f32::from(u16::MAX);
        let dt = now.saturating_sub(self.at) as f32 / 1000.0;
        if half_life > 0.0 {
            stored * (-dt / half_life).exp2()
        } else {
            stored
        }
    }

    /// Confidence as stored at `at`.
    pub fn confidence(&self) -> f32 {
        f32::from(self.confidence) / f32::from(u16::MAX)
    }

    fn set_confidence(&mut self, c: f32) {
        self.confidence = (c.clamp(0.0, 1.0) * f32::from(u16::MAX)).round() as u16;
    }

    /// The value, with an unknown one counting as zero.
    pub fn known_value(&self) -> f32 {
        if self.value.is_nan() { 0.0 } else { self.value }
    }
}

/// Which tier a fact sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Intermediate,
    LongTerm,
}

/// An agent's memory beyond the working tier. See the [module docs](self).
///
/// The records live in blocks of the memory slab (`SlabVec`), sized to what
/// the agent holds now rather than to what it may hold: the component itself is
/// 24 bytes. The facts sit in one vector, long-term first, then intermediate,
/// so that looking a site up reads one block.
///
/// Its capacities follow its byte limit: when the agent is admitted they are
/// its kind's defaults (or those it was requested with,
/// [`with_base`](Self::with_base)) scaled to the memory budget, and after
/// [`set_limit`](Self::set_limit) they are scaled to the new limit at its next
/// tick.
///
/// It serialises as its records (what a checkpoint saves), not as slab blocks.
#[derive(Component, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "MemoryImage", into = "MemoryImage")]
pub struct Memory {
    caps: TierCaps,
    /// The budget (bytes) the capacities were derived from.
    limit: u32,
    /// Long-term facts (the first `long_term` of them), then intermediate ones.
    facts: SlabVec<Fact>,
    short_term: SlabVec<Observation>,
    /// How many of `facts` are long-term.
    long_term: u8,
    sizing: Sizing,
}

/// A [`Memory`] as it is saved: its records rather than its slab blocks.
#[derive(Serialize, Deserialize)]
struct MemoryImage {
    caps: TierCaps,
    limit: u32,
    facts: Vec<Fact>,
    short_term: Vec<Observation>,
    long_term: u8,
    sizing: Sizing,
}

impl From<Memory> for MemoryImage {
    fn from(m: Memory) -> Self {
        Self {
            caps: m.caps,
            limit: m.limit,
            facts: m.facts.to_vec(),
            short_term: m.short_term.to_vec(),
            long_term: m.long_term,
            sizing: m.sizing,
        }
    }
}

impl From<MemoryImage> for Memory {
    fn from(image: MemoryImage) -> Self {
        let mut memory = Memory {
            caps: image.caps,
            limit: image.limit,
            long_term: image.long_term.min(image.facts.len() as u8),
            sizing: image.sizing,
            ..Default::default()
        };
        for fact in image.facts {
            memory.facts.push(fact);
        }
        for observation in image.short_term {
            memory.short_term.push(observation);
        }
        memory
    }
}

/// How a memory's capacities stand against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
enum Sizing {
    /// Not admitted yet: its kind's default capacities will be scaled to the
    /// budget.
    #[default]
    Kind,
    /// Not admitted yet: `caps` will be scaled to the budget.
    Base,
    /// The capacities fit `limit`.
    Sized,
    /// `limit` changed: its kind's capacities are scaled to it at the next tick.
    Resize,
}

slab::slab_record!(Fact);
slab::slab_record!(Observation);

/// What the memory slabs' blocks take now, over every agent of every world in
/// the process.
pub fn slab_usage() -> SlabUsage {
    let (facts, observations) = (Fact::slab().usage(), Observation::slab().usage());
    SlabUsage {
        live_bytes: facts.live_bytes + observations.live_bytes,
        reserved_bytes: facts.reserved_bytes + observations.reserved_bytes,
    }
}

impl Memory {
    /// An empty memory with these capacities (clamped to the tier maxima),
    /// derived from a budget of `limit` bytes.
    pub fn with_caps(caps: TierCaps, limit: u32) -> Self {
        Self {
            caps: caps.clamped(),
            limit,
            sizing: Sizing::Sized,
            ..Default::default()
        }
    }

    /// An empty memory for an agent not yet admitted, whose capacities start
    /// from `caps` rather than its kind's defaults: at admission they are
    /// scaled to the memory budget. Give it to a request with
    /// [`AgentBlueprint::with`](crate::agent::AgentBlueprint::with).
    pub fn with_base(caps: TierCaps) -> Self {
        Self {
            caps,
            sizing: Sizing::Base,
            ..Default::default()
        }
    }

    /// The budget (bytes) the capacities were derived from.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Gives the memory a new limit in bytes; at the agent's next tick its
    /// tiers take the capacities of its kind scaled to it (dropping their
    /// least useful records if they shrink).
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
        self.sizing = Sizing::Resize;
    }

    /// Whether the tiers wait to be resized to a limit given by
    /// [`set_limit`](Self::set_limit).
    pub fn resize_pending(&self) -> bool {
        self.sizing == Sizing::Resize
    }

    /// Sizes the tiers of a newly admitted agent: the starting capacities (its
    /// kind's, under `rules`, or those of [`with_base`](Self::with_base))
    /// scaled to `limit` bytes, or, without a budget (`None`), to what they
    /// take. The working tier is the perception's.
    pub fn admit(&mut self, perception: &mut Perception, limit: Option<u64>, rules: &MemoryRules) {
        let base = match self.sizing {
            Sizing::Kind => rules.capacity,
            Sizing::Base => self.caps,
            Sizing::Sized | Sizing::Resize => return,
        };
        let limit = limit
            .unwrap_or(base.block_bytes() as u64)
            .min(u64::from(u32::MAX)) as u32;
        let caps = base.scaled_to(limit as usize);
        *perception = Perception::with_capacity(usize::from(caps.working));
        *self = Memory::with_caps(caps, limit);
    }

    /// Gives the tiers the capacities `rules` allow within `limit` bytes: the
    /// kind's default capacities scaled to the limit (and to the tier maxima),
    /// the working tier's included. Tiers that shrink drop their least useful
    /// records.
    pub fn resize(
        &mut self,
        perception: &mut Perception,
        limit: u32,
        rules: &MemoryRules,
        now: MemTime,
    ) {
        let caps = rules.capacity.scaled_to(limit as usize);
        tracing::debug!(from = self.limit, to = limit, ?caps, "memory limit changed");
        self.set_caps(caps, now, rules);
        self.limit = limit;
        self.sizing = Sizing::Sized;
        perception.set_capacity(usize::from(caps.working));
    }

    /// The tiers' capacities.
    pub fn caps(&self) -> TierCaps {
        self.caps
    }

    fn n_long(&self) -> usize {
        usize::from(self.long_term)
    }

    /// Changes the capacities; tiers over their new capacity drop their least
    /// useful records (oldest observations, least confident or least valuable
    /// facts).
    pub fn set_caps(&mut self, caps: TierCaps, now: MemTime, rules: &MemoryRules) {
        self.caps = caps.clamped();
        while self.short_term.len() > usize::from(self.caps.short_term) {
            self.short_term.remove(0);
        }
        while self.intermediate().len() > usize::from(self.caps.intermediate) {
            let i = least_worth(self.intermediate(), now, rules.half_life);
            self.facts.remove(self.n_long() + i);
        }
        while self.n_long() > usize::from(self.caps.long_term) {
            let i = least_valuable(self.long_term());
            self.remove_long(i);
        }
        // Blocks no larger than the new capacities need: what the memory
        // holds stays within its limit.
        self.short_term.fit_to(usize::from(self.caps.short_term));
        self.facts
            .fit_to(usize::from(self.caps.intermediate) + usize::from(self.caps.long_term));
    }

    /// Recent observations, oldest first.
    pub fn short_term(&self) -> &[Observation] {
        &self.short_term
    }

    /// Intermediate facts.
    pub fn intermediate(&self) -> &[Fact] {
        &self.facts[self.n_long()..]
    }

    /// Long-term facts.
    pub fn long_term(&self) -> &[Fact] {
        &self.facts[..self.n_long()]
    }

    /// Every fact, long-term first.
    pub fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.facts.iter()
    }

    /// The fact about `site`, and its tier.
    pub fn fact(&self, site: SiteId) -> Option<(&Fact, Tier)> {
        let facts = &*self.facts;
        let i = facts.iter().position(|f| f.site == site)?;
        let tier = if i < self.n_long() {
            Tier::LongTerm
        } else {
            Tier::Intermediate
        };
        Some((&facts[i], tier))
    }

    /// The fact about `site`, for updating.
    pub fn fact_mut(&mut self, site: SiteId) -> Option<&mut Fact> {
        self.facts.iter_mut().find(|f| f.site == site)
    }

    /// Whether the agent holds a fact about `site`.
    pub fn knows(&self, site: SiteId) -> bool {
        self.facts.iter().any(|f| f.site == site)
    }

    /// Bytes of records held now (the working tier counted by the perception).
    pub fn held_bytes(&self) -> usize {
        self.short_term.len() * RECORD_BYTES[1]
            + self.intermediate().len() * RECORD_BYTES[2]
            + self.n_long() * RECORD_BYTES[3]
    }

    /// Bytes of the slab blocks the records take: at least
    /// [`held_bytes`](Self::held_bytes), as blocks hold 2, 4, 8 or 16 records.
    pub fn block_bytes(&self) -> usize {
        self.facts.capacity() * size_of::<Fact>()
            + self.short_term.capacity() * size_of::<Observation>()
    }

    /// Records held in each tier beyond working: (short-term, intermediate, long-term).
    pub fn lens(&self) -> (usize, usize, usize) {
        (
            self.short_term.len(),
            self.intermediate().len(),
            self.n_long(),
        )
    }

    /// Consolidates one tick's perception: a known fact seen again is confirmed
    /// (full confidence, one more hit) and, confirmed often enough, moves to
    /// long-term; any other site seen is a sighting in short-term, and seen often
    /// enough there it becomes an intermediate fact. Then intermediate facts whose
    /// confidence has
    /// decayed below the threshold are forgotten. `value_of` gives the best value
    /// the agent can see for a site (e.g. from the shared cache), if any.
    pub fn consolidate(
        &mut self,
        seen: &[SiteId],
        now: MemTime,
        rules: &MemoryRules,
        mut value_of: impl FnMut(SiteId) -> Option<f32>,
    ) {
        for &site in seen {
            let value = value_of(site);
            let n_long = self.n_long();
            let facts = &mut *self.facts;
            if let Some(i) = facts.iter().position(|f| f.site == site) {
                let fact = &mut facts[i];
                fact.at = now;
                fact.hits = fact.hits.saturating_add(1);
                fact.set_confidence(1.0);
                if let Some(v) = value {
                    fact.value = v;
                }
                if i >= n_long && fact.hits >= rules.long_term_after {
                    self.promote(i - n_long);
                }
                continue;
            }
            // Not known yet: a sighting in short-term.
            let seen_times = self.observe(site, now);
            if seen_times >= rules.promote_after.max(1) {
                // A fact now: short-term has no more to say about it.
                self.short_term.retain(|o| o.site != site);
                self.add_intermediate(Fact::new(site, value.unwrap_or(f32::NAN), now), now, rules);
            }
        }
        self.forget_faded(now, rules);
    }

    /// Forgets the intermediate facts whose confidence has decayed below the
    /// threshold.
    fn forget_faded(&mut self, now: MemTime, rules: &MemoryRules) {
        let (half_life, forget) = (rules.half_life, rules.forget_below);
        self.facts
            .retain_from(self.n_long(), |f| f.confidence_at(now, half_life) >= forget);
    }

    /// Records a sighting in the short-term ring: a site already there counts one
    /// more and becomes the most recent; a new one goes in, the least recent
    /// leaving when the ring is full. Returns how many times the site has now
    /// been seen (0 if the ring holds nothing).
    pub fn observe(&mut self, site: SiteId, at: MemTime) -> u8 {
        let cap = usize::from(self.caps.short_term);
        if cap == 0 {
            return 0;
        }
        // Records move within the ring's block rather than leave and come
        // back, so a ring that stays full or holds one site keeps its block.
        let ring = &mut *self.short_term;
        if let Some(i) = ring.iter().position(|o| o.site == site) {
            ring[i..].rotate_left(1);
            let latest = ring.last_mut().expect("the ring holds the site");
            latest.count = latest.count.saturating_add(1);
            latest.at = at;
            return latest.count;
        }
        while self.short_term.len() > cap {
            self.short_term.remove(0);
        }
        let seen = Observation { site, at, count: 1 };
        if self.short_term.len() == cap {
            self.short_term.rotate_left(1);
            self.short_term[cap - 1] = seen;
        } else {
            self.short_term.push(seen);
        }
        1
    }

    /// Records what the agent learned first-hand about `site` (an assessment, a
    /// harvest): the value, with full confidence. A site it did not know becomes
    /// an intermediate fact at once.
    pub fn learn(
        &mut self,
        site: SiteId,
        value: f32,
        now: MemTime,
        flags: u8,
        rules: &MemoryRules,
    ) {
        if let Some(fact) = self.fact_mut(site) {
            if !value.is_nan() {
                fact.value = value;
            }
            fact.at = now;
            fact.flags |= flags;
            fact.set_confidence(1.0);
            return;
        }
        let mut fact = Fact::new(site, value, now);
        fact.flags = flags;
        self.add_intermediate(fact, now, rules);
    }

    /// Marks the fact about `site` with `flags`, if there is one.
    pub fn flag(&mut self, site: SiteId, flags: u8) {
        if let Some(fact) = self.fact_mut(site) {
            fact.flags |= flags;
        }
    }

    /// The world contradicted what the agent believed about `site` (it was found
    /// empty, or someone else got it): confidence drops to `rules.contradiction`
    /// of what it was; a long-term fact falls back to intermediate. `value`, if
    /// given, replaces the believed value.
    pub fn contradict(
        &mut self,
        site: SiteId,
        value: Option<f32>,
        now: MemTime,
        rules: &MemoryRules,
    ) {
        match self.facts.iter().position(|f| f.site == site) {
            Some(i) if i < self.n_long() => {
                let mut fact = self.remove_long(i);
                fact.set_confidence(rules.contradiction);
                fact.hits = 1;
                fact.at = now;
                if let Some(v) = value {
                    fact.value = v;
                }
                self.add_intermediate(fact, now, rules);
            }
            Some(i) => {
                let fact = &mut self.facts[i];
                let c = fact.confidence_at(now, rules.half_life) * rules.contradiction;
                fact.set_confidence(c);
                fact.at = now;
                if let Some(v) = value {
                    fact.value = v;
                }
            }
            None => {}
        }
        self.forget_faded(now, rules);
    }

    fn remove_long(&mut self, i: usize) -> Fact {
        self.long_term -= 1;
        self.facts.remove(i)
    }

    /// Adds an intermediate fact. When the tier is full, the least worth of its
    /// facts and the newcomer stays out: a new sighting of unknown value does not
    /// push out a valuable fact, only one whose confidence has faded further.
    fn add_intermediate(&mut self, fact: Fact, now: MemTime, rules: &MemoryRules) {
        let cap = usize::from(self.caps.intermediate);
        if cap == 0 {
            return;
        }
        if self.intermediate().len() >= cap {
            let i = least_worth(self.intermediate(), now, rules.half_life);
            let worst = &self.intermediate()[i];
            if worth_cmp(&fact, worst, now, rules.half_life).is_le() {
                return;
            }
            self.facts.remove(self.n_long() + i);
        }
        self.facts.push(fact);
    }

    /// Moves intermediate fact `i` to long-term. When long-term is full, the least
    /// valuable of its facts and the newcomer stays out (a newcomer that loses
    /// stays intermediate).
    fn promote(&mut self, i: usize) {
        let cap = usize::from(self.caps.long_term);
        if cap == 0 {
            return;
        }
        let fact = self.intermediate()[i];
        if self.n_long() >= cap {
            let worst = least_valuable(self.long_term());
            if value_rank(&self.long_term()[worst]) >= value_rank(&fact) {
                return;
            }
            self.facts.remove(self.n_long() + i);
            self.remove_long(worst);
        } else {
            self.facts.remove(self.n_long() + i);
        }
        self.facts.insert(self.n_long(), fact);
        self.long_term += 1;
    }
}

/// Orders facts by value, then recency, then id (higher is more valuable).
fn value_rank(f: &Fact) -> (u32, MemTime, std::cmp::Reverse<SiteId>) {
    (f.known_value().to_bits(), f.at, std::cmp::Reverse(f.site))
}

fn least_valuable(facts: &[Fact]) -> usize {
    (0..facts.len())
        .min_by_key(|&i| value_rank(&facts[i]))
        .expect("not empty")
}

/// Orders intermediate facts by what they are worth now: value weighed by
/// confidence, then confidence (for facts of unknown value), then value, recency
/// and id.
fn worth_cmp(a: &Fact, b: &Fact, now: MemTime, half_life: f32) -> std::cmp::Ordering {
    let (ca, cb) = (
        a.confidence_at(now, half_life),
        b.confidence_at(now, half_life),
    );
    (a.known_value() * ca)
        .total_cmp(&(b.known_value() * cb))
        .then(ca.total_cmp(&cb))
        .then(value_rank(a).cmp(&value_rank(b)))
}

fn least_worth(facts: &[Fact], now: MemTime, half_life: f32) -> usize {
    (0..facts.len())
        .min_by(|&a, &b| worth_cmp(&facts[a], &facts[b], now, half_life))
        .expect("not empty")
}

/// How much memory the whole simulation may use.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub enum MemoryBudget {
    /// Enough for every agent's default capacities (plus the shared share).
    #[default]
    Auto,
    /// A number of bytes.
    Bytes(u64),
    /// A fraction of the machine's total memory (read with `sysinfo`).
    MachineFraction(f64),
}

/// Memory settings (a scenario's `memory` section), seeded by a scenario or a
/// game.
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// `Auto` (enough for every agent's default capacities), `Bytes(n)`, or
    /// `MachineFraction(f)` of the machine's memory.
    pub budget: MemoryBudget,
    /// Share of the budget given to the shared cache, in `[0, 1)`. The cache
    /// takes of it no more than the room for a fact about every site and
    /// ground cell ([`SharedCache::room_for`]): it never holds more.
    pub shared_fraction: f64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            budget: MemoryBudget::Auto,
            shared_fraction: 0.2,
        }
    }
}

/// The memory budget worked out at startup.
///
/// With a budget in bytes and a maximum of agents, the budget holds it all:
/// the shared cache's share, and for every agent the engine's own state
/// ([`engine_bytes_per_agent`](Self::engine_bytes_per_agent)) and its
/// memory's limit, what is left. An automatic budget is the total those
/// parts come to with every agent at its kind's default capacities.
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryPlan {
    /// The whole budget in bytes.
    pub total_bytes: u64,
    /// The shared cache's room in bytes: its share of the budget, or the
    /// room for a fact about every key ([`SharedCache::room_for`]) if that is
    /// less. An automatic budget counts only the room; a budget in bytes
    /// leaves the rest of the share unused.
    pub shared_bytes: u64,
    /// Each agent's memory limit (its slab blocks):
    /// `(total − shared_fraction × total) / max_agents − engine_bytes_per_agent`.
    pub per_agent_bytes: u64,
    /// What the engine itself keeps per agent beside its memory: its
    /// components, its entity's places in the ECS's tables and index, its
    /// entries in the schedule and the spatial index
    /// ([`engine_bytes_per_agent`](crate::agent::engine_bytes_per_agent)).
    pub engine_bytes_per_agent: u64,
    /// Facts the shared cache holds.
    pub cache_capacity: usize,
    /// Resident memory of the process when the plan was made (after the world
    /// was generated, before any agent started), to measure what agents add.
    pub baseline_rss: Option<u64>,
}

/// A budget in bytes that cannot hold `max_agents` agents: after the shared
/// cache's share, each agent's part is smaller than the engine's own state.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetTooSmall {
    pub budget: u64,
    pub shared: u64,
    pub fraction: f64,
    pub max_agents: usize,
    pub share: u64,
    pub engine: u64,
    pub needed: u64,
}

impl std::fmt::Display for BudgetTooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory.budget: {} bytes is too small for max_agents = {}: after the shared \
             cache's {} bytes ({} of the budget) it leaves {} bytes per agent, and the engine's \
             own state takes {} bytes per agent; at least {} bytes are needed (or a smaller \
             max_agents)",
            self.budget,
            self.max_agents,
            self.shared,
            self.fraction,
            self.share,
            self.engine,
            self.needed
        )
    }
}

impl std::error::Error for BudgetTooSmall {}

impl MemoryPlan {
    /// Works out the plan. `default_agent_bytes` is what the blocks of the
    /// largest default capacities take; `engine_bytes` the engine's own state
    /// per agent; `machine_bytes` the machine's total memory (for
    /// [`MemoryBudget::MachineFraction`]). Without a maximum of agents (`None`,
    /// an unlimited pool) an automatic budget gives every agent its defaults and
    /// the cache room for a fact about each of its `keys` (every site and
    /// ground cell), and an explicit budget gives every agent
    /// its defaults and the cache its share. The cache's room is never more
    /// than a fact about each of the `keys` needs. A budget too small for the engine's
    /// own state leaves the agents no memory ([`shortfall`](Self::shortfall)
    /// says so before a run).
    pub fn new(
        settings: &MemorySettings,
        max_agents: Option<usize>,
        default_agent_bytes: u64,
        engine_bytes: u64,
        machine_bytes: u64,
        keys: usize,
    ) -> Self {
        let shared = settings.shared_fraction.clamp(0.0, 0.99);
        // The cache never holds more than a fact per key: room beyond that
        // would be allocated and never used.
        let needed = SharedCache::room_for(keys);
        let (total, shared_bytes, per_agent) =
            match (explicit_bytes(settings.budget, machine_bytes), max_agents) {
                (Some(total), Some(n)) => {
                    let share_bytes = (total as f64 * shared) as u64;
                    let share = (total - share_bytes) / n.max(1) as u64;
                    (
                        total,
                        share_bytes.min(needed),
                        share.saturating_sub(engine_bytes),
                    )
                }
                (None, Some(n)) => {
                    let agents = n.max(1) as u64;
                    let each = default_agent_bytes.saturating_add(engine_bytes);
                    let total = (agents.saturating_mul(each) as f64 / (1.0 - shared)).ceil() as u64;
                    let share_bytes = (total as f64 * shared) as u64;
                    let shared_bytes = share_bytes.min(needed);
                    (
                        total - (share_bytes - shared_bytes),
                        shared_bytes,
                        default_agent_bytes,
                    )
                }
                (Some(total), None) => (
                    total,
                    ((total as f64 * shared) as u64).min(needed),
                    default_agent_bytes,
                ),
                (None, None) => (needed, needed, default_agent_bytes),
            };
        Self {
            total_bytes: total,
            shared_bytes,
            per_agent_bytes: per_agent,
            engine_bytes_per_agent: engine_bytes,
            cache_capacity: SharedCache::capacity_for(shared_bytes),
            baseline_rss: None,
        }
    }

    /// Whether a budget in bytes (or a fraction of `machine_bytes`) is too
    /// small for `max_agents` agents whose engine state takes `engine_bytes`
    /// each: `None` when it holds them (or for an automatic budget, or an
    /// unlimited pool).
    pub fn shortfall(
        settings: &MemorySettings,
        max_agents: Option<usize>,
        engine_bytes: u64,
        machine_bytes: u64,
    ) -> Option<BudgetTooSmall> {
        let total = explicit_bytes(settings.budget, machine_bytes)?;
        let n = max_agents?.max(1);
        let fraction = settings.shared_fraction.clamp(0.0, 0.99);
        let shared = (total as f64 * fraction) as u64;
        let share = (total - shared) / n as u64;
        (share < engine_bytes).then(|| BudgetTooSmall {
            budget: total,
            shared,
            fraction,
            max_agents: n,
            share,
            engine: engine_bytes,
            needed: ((n as u64).saturating_mul(engine_bytes) as f64 / (1.0 - fraction)).ceil()
                as u64,
        })
    }
}

/// The budget in bytes, unless it is automatic.
fn explicit_bytes(budget: MemoryBudget, machine_bytes: u64) -> Option<u64> {
    match budget {
        MemoryBudget::Auto => None,
        MemoryBudget::Bytes(b) => Some(b),
        MemoryBudget::MachineFraction(f) => Some((machine_bytes as f64 * f) as u64),
    }
}

#[cfg(test)]
mod tests;
