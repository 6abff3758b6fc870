use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

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
/// lines). Reads never write to it, so during a parallel pass its line stays
/// shared between the cores' caches.
#[repr(align(32))]
struct Slot {
    at: SimTime,
    by: u64,
    /// The step of the latest publication, or a later read step folded in
    /// by eviction. The entry's recency is the latest of this and the
    /// readers' stamps ([`SharedCache::last_access`]).
    stamp: u64,
    value: f32,
    held: bool,
}

impl Slot {
    fn empty() -> Self {
        Self {
            at: 0,
            by: 0,
            stamp: 0,
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

/// What one reading thread keeps: its hit and miss counts, and the latest step
/// in which it read each site. Only its own thread writes it (plain loads and
/// stores), so reads from many threads never write to the same cache line;
/// aligned so that two threads' counters never share one either.
#[repr(align(128))]
struct Reader {
    hits: AtomicU64,
    misses: AtomicU64,
    /// By site: the latest step this thread read its fact in, saturating at
    /// `u32::MAX` (reads stop renewing an entry after 2^32 steps, 16 months
    /// of 100 Hz steps; publications still do). Zero: never.
    stamps: Box<[AtomicU32]>,
}

impl Reader {
    fn new(sites: usize) -> Self {
        // Zeroed memory from the allocator: pages a thread never reads in are
        // never touched.
        let zeroed = std::mem::ManuallyDrop::new(vec![0u32; sites].into_boxed_slice());
        // SAFETY: `AtomicU32` has the size, alignment and bit validity of
        // `u32`, so the allocation is a valid `[AtomicU32]` of the same
        // length, and ownership passes to the new box.
        let stamps = unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                zeroed.as_ptr().cast_mut().cast::<AtomicU32>(),
                zeroed.len(),
            ))
        };
        Self {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stamps,
        }
    }

    /// Adds one to a counter only this thread writes.
    fn count(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
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
/// site id. Reads count hits and misses. Each reading thread keeps its own
/// stamps and counters, and an entry's stamp is the latest of its
/// publication's and the threads': a read writes only to memory of its own
/// thread, so threads reading the same facts do not take cache lines from
/// each other.
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
    /// Each reading thread's stamps, and its hits and misses since the latest
    /// settle.
    readers: ThreadLocal<Reader>,
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
    /// Bytes a held fact is counted at when a budget is turned into a
    /// capacity: its 32-byte slot, its place in the eviction queue (4 bytes)
    /// and each reading thread's 4-byte stamp, rounded up to leave room for
    /// up to seven readers. (Slots and stamps exist for every site, held or
    /// not; what the cache takes beyond its budget is the unheld sites'.)
    pub const ENTRY_BYTES: usize = 64;

    /// A cache for sites `0..sites` holding at most `capacity` facts.
    pub fn new(sites: usize, capacity: usize) -> Self {
        Self {
            slots: (0..sites).map(|_| Slot::empty()).collect(),
            order: VecDeque::new(),
            len: 0,
            capacity,
            readers: ThreadLocal::new(),
            totals: Counters::default(),
            evictions: 0,
            publications: 0,
        }
    }

    /// Reads the fact about `site` in step `step`: counts a hit or a miss and, on
    /// a hit, marks the fact as used in this step. Safe to call from many threads.
    pub fn read(&self, site: SiteId, step: u64) -> Option<SharedFact> {
        let i = site.0 as usize;
        let fact = self.slots.get(i).and_then(Slot::fact);
        let reader = self.readers.get_or(|| Reader::new(self.slots.len()));
        match fact {
            Some(_) => {
                Reader::count(&reader.hits);
                let stamp = &reader.stamps[i];
                let step = step.min(u64::from(u32::MAX)) as u32;
                if stamp.load(Ordering::Relaxed) < step {
                    stamp.store(step, Ordering::Relaxed);
                }
            }
            None => Reader::count(&reader.misses),
        }
        fact
    }

    /// The step of the latest access to `site`'s entry: its publication or the
    /// latest read on any thread.
    fn last_access(&self, site: usize) -> u64 {
        self.readers
            .iter()
            .map(|r| u64::from(r.stamps[site].load(Ordering::Relaxed)))
            .fold(self.slots[site].stamp, u64::max)
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
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.fact().map(|f| (SiteId(i as u32), f, self.last_access(i))))
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
        for r in self.readers.iter_mut() {
            self.totals.hits += std::mem::take(r.hits.get_mut());
            self.totals.misses += std::mem::take(r.misses.get_mut());
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
                let i = site.0 as usize;
                if !self.slots[i].held {
                    continue;
                }
                let stamp = self.last_access(i);
                let slot = &mut self.slots[i];
                slot.stamp = stamp;
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
        slot.stamp = step;
        if new {
            self.file(site, step);
        }
    }
}

/// A [`SharedCache`] as a checkpoint holds it: every slot with its recency
/// (the readers' stamps folded in), the eviction queue as it stands, and the
/// counters.
#[derive(Serialize, Deserialize)]
pub(crate) struct CacheImage {
    /// `(value, at, by, stamp, held)` of every site's slot.
    slots: Vec<(f32, SimTime, u64, u64, bool)>,
    /// `(step, sites, sorted, cursor)` of every bucket, oldest first.
    order: Vec<(u64, Vec<SiteId>, bool, usize)>,
    len: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    publications: u64,
}

impl SharedCache {
    /// The cache's whole state, for a checkpoint. Call between steps, after
    /// [`settle`](Self::settle).
    pub(crate) fn image(&self) -> CacheImage {
        CacheImage {
            slots: (0..self.slots.len())
                .map(|i| {
                    let s = &self.slots[i];
                    (s.value, s.at, s.by, self.last_access(i), s.held)
                })
                .collect(),
            order: self
                .order
                .iter()
                .map(|b| (b.step, b.sites.clone(), b.sorted, b.cursor))
                .collect(),
            len: self.len,
            capacity: self.capacity,
            hits: self.totals.hits,
            misses: self.totals.misses,
            evictions: self.evictions,
            publications: self.publications,
        }
    }

    /// The cache a checkpoint held; it behaves from here on exactly as the
    /// cache it was taken from.
    pub(crate) fn from_image(image: CacheImage) -> Self {
        Self {
            slots: image
                .slots
                .into_iter()
                .map(|(value, at, by, stamp, held)| Slot {
                    at,
                    by,
                    stamp,
                    value,
                    held,
                })
                .collect(),
            order: image
                .order
                .into_iter()
                .map(|(step, sites, sorted, cursor)| Bucket {
                    step,
                    sites,
                    sorted,
                    cursor,
                })
                .collect(),
            len: image.len,
            capacity: image.capacity,
            readers: ThreadLocal::new(),
            totals: Counters {
                hits: image.hits,
                misses: image.misses,
            },
            evictions: image.evictions,
            publications: image.publications,
        }
    }
}
