use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bevy_ecs::prelude::*;
use bevy_utils::Parallel;

use crate::agent::AgentId;
use crate::clock::SimTime;
use crate::world::SiteId;

/// A published fact about a site.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedFact {
    /// The published value; `NAN` for a site reported but not yet assessed.
    pub value: f32,
    /// Virtual time of the publication.
    pub at: SimTime,
    /// Who published it.
    pub by: AgentId,
}

struct Slot {
    fact: Option<SharedFact>,
    /// The step of the latest access (read or publication).
    last_access: AtomicU64,
}

/// Hit, miss and eviction counters of the [`SharedCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub publications: u64,
    /// Facts held now.
    pub len: usize,
    pub capacity: usize,
}

/// The facts agents publish and read, least recently used first out.
///
/// Explorers publish the sites they report, analyzers their assessments,
/// controllers what a harvest left; everyone reads. Its capacity comes from the
/// memory budget ([`MemoryPlan::cache_capacity`](super::MemoryPlan)).
///
/// Recency is kept per step, so that reads from many threads give the same
/// result in any order: a read stamps the entry with the current step; the
/// entry evicted first is the one with the oldest stamp, ties going to the lowest
/// site id. Reads count hits and misses.
#[derive(Resource)]
pub struct SharedCache {
    slots: Vec<Slot>,
    /// `(last access step, site)` of every held fact: the eviction order.
    order: BTreeSet<(u64, SiteId)>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: u64,
    publications: u64,
    /// Entries first touched in the current step, with their previous stamp.
    touched: Parallel<Vec<(SiteId, u64)>>,
}

impl Default for SharedCache {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl SharedCache {
    /// Bytes one held fact costs: the fact, its slot and its place in the
    /// eviction order. Budgets are turned into capacities with it.
    pub const ENTRY_BYTES: usize = 64;

    /// A cache for sites `0..sites` holding at most `capacity` facts.
    pub fn new(sites: usize, capacity: usize) -> Self {
        Self {
            slots: (0..sites)
                .map(|_| Slot {
                    fact: None,
                    last_access: AtomicU64::new(0),
                })
                .collect(),
            order: BTreeSet::new(),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: 0,
            publications: 0,
            touched: Parallel::default(),
        }
    }

    /// Reads the fact about `site` in step `step`: counts a hit or a miss and, on
    /// a hit, marks the fact as used in this step. Safe to call from many threads.
    pub fn read(&self, site: SiteId, step: u64) -> Option<SharedFact> {
        let slot = self.slots.get(site.0 as usize);
        match slot.and_then(|s| s.fact.map(|f| (s, f))) {
            Some((slot, fact)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let before = slot.last_access.fetch_max(step, Ordering::Relaxed);
                if before < step {
                    // Only the first reader of this step sees an older stamp.
                    self.touched.scope(|t| t.push((site, before)));
                }
                Some(fact)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The fact about `site`, without counting or marking anything.
    pub fn peek(&self, site: SiteId) -> Option<SharedFact> {
        self.slots.get(site.0 as usize).and_then(|s| s.fact)
    }

    /// Facts held now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Most facts held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions,
            publications: self.publications,
            len: self.len(),
            capacity: self.capacity,
        }
    }

    /// Held facts from the next to be evicted to the most recently used.
    pub fn lru_order(&self) -> impl Iterator<Item = SiteId> + '_ {
        self.order.iter().map(|(_, site)| *site)
    }

    /// Every held fact with its last access step, in site order (for digests).
    pub fn iter(&self) -> impl Iterator<Item = (SiteId, SharedFact, u64)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.fact
                .map(|f| (SiteId(i as u32), f, s.last_access.load(Ordering::Relaxed)))
        })
    }

    /// Brings the eviction order up to date with this step's reads.
    pub fn settle(&mut self) {
        for (site, before) in self.touched.drain() {
            let now = *self.slots[site.0 as usize].last_access.get_mut();
            self.order.remove(&(before, site));
            self.order.insert((now, site));
        }
    }

    /// Publishes `fact` about `site` in step `step`, replacing what was held. When
    /// the cache is full, the least recently used fact is evicted first.
    pub fn publish(&mut self, site: SiteId, fact: SharedFact, step: u64) {
        self.settle();
        let Some(slot) = self.slots.get_mut(site.0 as usize) else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        self.publications += 1;
        let last = *slot.last_access.get_mut();
        if slot.fact.is_some() {
            self.order.remove(&(last, site));
        } else if self.order.len() >= self.capacity
            && let Some((_, victim)) = self.order.pop_first()
        {
            self.slots[victim.0 as usize].fact = None;
            self.evictions += 1;
        }
        let slot = &mut self.slots[site.0 as usize];
        slot.fact = Some(fact);
        *slot.last_access.get_mut() = step;
        self.order.insert((step, site));
    }
}
