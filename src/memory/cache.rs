use std::collections::VecDeque;
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

/// One site's entry: 32 bytes, aligned so that a read touches one cache line
/// (an `Option<SharedFact>` and its stamp took 40, and every other read two
/// lines).
#[repr(align(32))]
struct Slot {
    at: SimTime,
    by: u64,
    /// The step of the latest access (read or publication).
    last_access: AtomicU64,
    value: f32,
    held: bool,
}

impl Slot {
    fn empty() -> Self {
        Self {
            at: 0,
            by: 0,
            last_access: AtomicU64::new(0),
            value: 0.0,
            held: false,
        }
    }

    fn fact(&self) -> Option<SharedFact> {
        self.held.then_some(SharedFact {
            value: self.value,
            at: self.at,
            by: AgentId(self.by),
        })
    }

    fn set(&mut self, fact: SharedFact) {
        (self.value, self.at, self.by, self.held) = (fact.value, fact.at, fact.by.0, true);
    }
}

const _: () = assert!(size_of::<Slot>() == 32);

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
///
/// The eviction order is a queue of per-step buckets of site ids, filed lazily:
/// every held entry is in exactly one bucket, whose step is at most its stamp.
/// A read only stamps the entry. Eviction takes the oldest bucket in id order:
/// an entry whose stamp still matches the bucket is the least recently used;
/// one used since is filed again under its stamp. Keeping the order costs
/// nothing per read, and a move per entry that reaches the front of the queue
/// after it was used.
#[derive(Resource)]
pub struct SharedCache {
    slots: Vec<Slot>,
    /// Buckets of `(step, sites)` in step order, oldest first.
    order: VecDeque<Bucket>,
    len: usize,
    capacity: usize,
    /// Hits and misses counted on each thread since the latest settle.
    counters: Parallel<Counters>,
    totals: Counters,
    evictions: u64,
    publications: u64,
}

struct Bucket {
    step: u64,
    sites: Vec<SiteId>,
    /// Sorted (lowest id first), ready for eviction.
    sorted: bool,
    /// Sites before this index have been looked at by eviction.
    cursor: usize,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    hits: u64,
    misses: u64,
}

impl Default for SharedCache {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl SharedCache {
    /// Bytes one held fact costs: the fact, its slot and its places in the
    /// eviction queue. Budgets are turned into capacities with it.
    pub const ENTRY_BYTES: usize = 64;

    /// A cache for sites `0..sites` holding at most `capacity` facts.
    pub fn new(sites: usize, capacity: usize) -> Self {
        Self {
            slots: (0..sites).map(|_| Slot::empty()).collect(),
            order: VecDeque::new(),
            len: 0,
            capacity,
            counters: Parallel::default(),
            totals: Counters::default(),
            evictions: 0,
            publications: 0,
        }
    }

    /// Reads the fact about `site` in step `step`: counts a hit or a miss and, on
    /// a hit, marks the fact as used in this step. Safe to call from many threads.
    pub fn read(&self, site: SiteId, step: u64) -> Option<SharedFact> {
        let slot = self.slots.get(site.0 as usize);
        let found = slot.and_then(|s| s.fact().map(|f| (s, f)));
        self.counters.scope(|c| match found {
            Some(_) => c.hits += 1,
            None => c.misses += 1,
        });
        let (slot, fact) = found?;
        // Most reads find the entry already stamped: look before writing, so the
        // cache line stays shared between threads.
        if slot.last_access.load(Ordering::Relaxed) < step {
            slot.last_access.fetch_max(step, Ordering::Relaxed);
        }
        Some(fact)
    }

    /// The fact about `site`, without counting or marking anything.
    pub fn peek(&self, site: SiteId) -> Option<SharedFact> {
        self.slots.get(site.0 as usize).and_then(Slot::fact)
    }

    /// Facts held now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most facts held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters, as of the latest [`settle`](Self::settle) (the end of the
    /// latest step).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.totals.hits,
            misses: self.totals.misses,
            evictions: self.evictions,
            publications: self.publications,
            len: self.len,
            capacity: self.capacity,
        }
    }

    /// Held facts from the next to be evicted to the most recently used.
    pub fn lru_order(&self) -> impl Iterator<Item = SiteId> + '_ {
        let mut held: Vec<(u64, SiteId)> =
            self.iter().map(|(site, _, stamp)| (stamp, site)).collect();
        held.sort_unstable();
        held.into_iter().map(|(_, site)| site)
    }

    /// Every held fact with its last access step, in site order (for digests).
    pub fn iter(&self) -> impl Iterator<Item = (SiteId, SharedFact, u64)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.fact()
                .map(|f| (SiteId(i as u32), f, s.last_access.load(Ordering::Relaxed)))
        })
    }

    /// Files `site` in the bucket of `step`, made if there is none.
    fn file(&mut self, site: SiteId, step: u64) {
        // New entries go to the back; entries filed again to a later bucket.
        let at = match self.order.back() {
            Some(last) if last.step < step => Err(self.order.len()),
            Some(last) if last.step == step => Ok(self.order.len() - 1),
            _ => self.order.binary_search_by_key(&step, |b| b.step),
        };
        match at {
            Ok(i) => {
                let bucket = &mut self.order[i];
                bucket.sites.push(site);
                bucket.sorted = false;
            }
            Err(i) => self.order.insert(
                i,
                Bucket {
                    step,
                    sites: vec![site],
                    sorted: false,
                    cursor: 0,
                },
            ),
        }
    }

    /// Brings the hit and miss counters up to date with the reads so far.
    pub fn settle(&mut self) {
        for c in self.counters.iter_mut() {
            self.totals.hits += std::mem::take(&mut c.hits);
            self.totals.misses += std::mem::take(&mut c.misses);
        }
    }

    /// Removes the least recently used entry (oldest stamp, lowest id).
    fn evict_one(&mut self) -> bool {
        while let Some(mut bucket) = self.order.pop_front() {
            if !bucket.sorted {
                bucket.sites.drain(..bucket.cursor);
                bucket.cursor = 0;
                bucket.sites.sort_unstable();
                bucket.sorted = true;
            }
            while bucket.cursor < bucket.sites.len() {
                let site = bucket.sites[bucket.cursor];
                bucket.cursor += 1;
                let slot = &mut self.slots[site.0 as usize];
                if !slot.held {
                    continue;
                }
                let stamp = *slot.last_access.get_mut();
                if stamp == bucket.step {
                    slot.held = false;
                    self.len -= 1;
                    self.evictions += 1;
                    if bucket.cursor < bucket.sites.len() {
                        self.order.push_front(bucket);
                    }
                    return true;
                }
                // Used since it was filed: its place is under its latest use.
                self.file(site, stamp);
            }
        }
        false
    }

    /// Publishes `fact` about `site` in step `step`, replacing what was held. When
    /// the cache is full, the least recently used fact is evicted first.
    pub fn publish(&mut self, site: SiteId, fact: SharedFact, step: u64) {
        self.settle();
        if self.capacity == 0 || site.0 as usize >= self.slots.len() {
            return;
        }
        self.publications += 1;
        if !self.slots[site.0 as usize].held {
            if self.len >= self.capacity {
                self.evict_one();
            }
            self.len += 1;
        }
        let slot = &mut self.slots[site.0 as usize];
        let new = !slot.held;
        slot.set(fact);
        *slot.last_access.get_mut() = step;
        if new {
            self.file(site, step);
        }
    }
}
