use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

use crate::agent::AgentId;
use crate::clock::SimTime;
use crate::spatial::GridGeometry;
use crate::world::SiteId;

/// A published fact: a site's value, or when a patch of ground was last
/// explored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedFact {
    /// The published value: a site's value (`NAN` for a site reported but not
    /// yet assessed), or the sites seen on a patch of ground.
    pub value: f32,
    /// Virtual time of the publication.
    pub at: SimTime,
    /// Who published it.
    pub by: AgentId,
}

/// What a shared fact is about: a site, or a cell of the ground grid
/// ([`SharedCache::ground`]), whose fact says when an explorer last went over
/// it. Keys are ordered sites first, then cells, each by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SharedKey {
    Site(SiteId),
    Ground(u32),
}

impl From<SiteId> for SharedKey {
    fn from(site: SiteId) -> Self {
        Self::Site(site)
    }
}

/// One held fact: 32 bytes. Two make a [`Set`], one cache line, so that a
/// read touches one line. Reads never write to it, so during a parallel pass
/// its line stays shared between the cores' caches.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    at: SimTime,
    by: u64,
    /// The step of the publication (in a restored cache, the latest access
    /// as the checkpoint saw it). The fact's recency is the latest of this
    /// and the readers' stamps ([`SharedCache::last_access`]).
    stamp: u64,
    value: f32,
    /// The key's ordinal + 1 ([`Layout::ordinal`]); 0: empty.
    key: u32,
}

impl Slot {
    #[cfg(test)]
    const EMPTY: Slot = Slot {
        at: 0,
        by: 0,
        stamp: 0,
        value: 0.0,
        key: 0,
    };

    fn fact(&self) -> SharedFact {
        SharedFact {
            value: self.value,
            at: self.at,
            by: AgentId(self.by),
        }
    }
}

const _: () = assert!(size_of::<Slot>() == 32);

/// Facts a set holds.
const WAYS: usize = 2;

/// The facts whose keys map to one set: a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Set([Slot; WAYS]);

const _: () = assert!(size_of::<Set>() == 64);

/// `n` zeroed `T`s from the allocator: the memory is reserved, but pages
/// nobody touches are never resident.
///
/// # Safety
///
/// All-zero bytes must be a valid `T`.
unsafe fn zeroed_slice<T>(n: usize) -> Box<[T]> {
    let layout = std::alloc::Layout::array::<T>(n).expect("the cache's room fits in memory");
    if layout.size() == 0 {
        return Vec::new().into_boxed_slice();
    }
    // SAFETY: the layout's size is not zero; the caller vouches that zeroed
    // memory holds valid `T`s. The allocation has the layout of `[T; n]`, and
    // ownership passes to the box, which frees it with that layout.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

/// `n` empty sets (see [`zeroed_slice`]).
fn empty_sets(n: usize) -> Box<[Set]> {
    // SAFETY: all-zero bytes are two empty slots (`Slot::EMPTY` is all zeros,
    // checked by a test).
    unsafe { zeroed_slice(n) }
}

#[cfg(test)]
mod zeroed {
    use super::*;

    #[test]
    fn an_empty_slot_is_all_zero_bytes() {
        let e = Slot::EMPTY;
        assert_eq!(
            (e.at, e.by, e.stamp, e.value.to_bits(), e.key),
            (0, 0, 0, 0, 0)
        );
        let sets = empty_sets(3);
        assert!(
            sets.iter()
                .flat_map(|s| s.0)
                .all(|s| s.key == 0 && s.value.to_bits() == 0)
        );
    }
}

/// The keys a cache can hold, numbered densely: sites `0..sites`, then the
/// ground's cells.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Layout {
    sites: u32,
    ground: Option<GridGeometry>,
}

impl Layout {
    fn keys(&self) -> usize {
        self.sites as usize + self.ground.map_or(0, |g| g.cells())
    }

    #[inline]
    fn ordinal(&self, key: SharedKey) -> Option<u32> {
        match key {
            SharedKey::Site(s) => (s.0 < self.sites).then_some(s.0),
            SharedKey::Ground(c) => {
                let cells = self.ground.map_or(0, |g| g.cells());
                ((c as usize) < cells).then(|| self.sites + c)
            }
        }
    }

    fn key(&self, ordinal: u32) -> SharedKey {
        if ordinal < self.sites {
            SharedKey::Site(SiteId(ordinal))
        } else {
            SharedKey::Ground(ordinal - self.sites)
        }
    }
}

/// What one reading thread keeps: its hit and miss counts, and the latest step
/// in which it read each slot. Only its own thread writes it (plain loads and
/// stores), so reads from many threads never write to the same cache line;
/// aligned so that two threads' counters never share one either.
#[repr(align(128))]
struct Reader {
    hits: AtomicU64,
    misses: AtomicU64,
    /// By slot: the latest step this thread read the slot's fact in,
    /// saturating at `u32::MAX` (reads stop renewing a fact after 2^32
    /// steps, 16 months of 100 Hz steps; publications still do). Zero: never.
    /// A slot's stamps outlive its fact; they are never later than the
    /// eviction, so never later than the next fact's publication.
    stamps: Box<[AtomicU32]>,
}

impl Reader {
    fn new(slots: usize) -> Self {
        Self {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            // SAFETY: zero is a valid `AtomicU32`.
            stamps: unsafe { zeroed_slice(slots) },
        }
    }

    /// Adds one to a counter only this thread writes.
    fn count(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Hit, miss and eviction counters of the [`SharedCache`], and its room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub publications: u64,
    /// Facts held now.
    pub len: usize,
    /// Most facts held at once.
    pub capacity: usize,
    /// Bytes the facts held now take ([`SharedCache::ENTRY_BYTES`] each).
    pub bytes: u64,
    /// The cache's share of the memory budget, in bytes.
    pub capacity_bytes: u64,
    /// Site facts held now (the rest are ground cells).
    pub site_facts: usize,
}

/// What agents publish and read, least recently used first out, within a
/// room in bytes.
///
/// Two kinds of shared knowledge live side by side ([`SharedKey`]):
/// - **site facts**: explorers publish the sites they report, analyzers
///   their assessments, controllers what a harvest left; everyone reads;
/// - **ground**: explorers mark the cells of a grid over the world
///   ([`ground`](Self::ground)) they go over, and steer away from the cells
///   others went over lately. Their number grows with the world, and how many
///   are fresh at once with the explorers.
///
/// Its room is its share of the memory budget, in bytes
/// ([`MemoryPlan::shared_bytes`](super::MemoryPlan)): `room / ENTRY_BYTES`
/// facts (rounded down to whole sets), whatever their kind, allocated once.
///
/// It is set-associative, as a processor's caches are: a key's fact can only
/// sit in the two slots of its set, one cache line, so a read looks at one
/// line and nothing else. Keys go two by two to the sets in turn (keys 0 and
/// 1 to the first, 2 and 3 to the second, and round again when the sets run
/// out), so that neighbouring keys share a line. A world with no more keys
/// than the room has slots never evicts (each set gets at most two keys); in
/// a wider one, publishing a key whose set is full evicts the set's least
/// recently used fact (oldest stamp, then lowest key).
///
/// Recency is kept per step, so that reads from many threads give the same
/// result in any order: a read stamps the fact with the current step. Reads
/// count hits and misses. Each reading thread keeps its own stamps and
/// counters, and a fact's stamp is the latest of its publication's and the
/// threads': a read writes only to memory of its own thread, so threads
/// reading the same facts do not take cache lines from each other.
#[derive(Resource)]
pub struct SharedCache {
    layout: Layout,
    sets: Box<[Set]>,
    len: usize,
    site_facts: usize,
    capacity_bytes: u64,
    /// Each reading thread's stamps, and its hits and misses since the latest
    /// settle.
    readers: ThreadLocal<Reader>,
    totals: Counters,
    evictions: u64,
    publications: u64,
}

/// One thread's handle for reading a [`SharedCache`]
/// ([`SharedCache::reader`]): reads through it count and stamp as
/// [`SharedCache::read`] does. It cannot leave its thread: the stamps and
/// counters it writes are that thread's alone.
pub struct CacheReader<'a> {
    cache: &'a SharedCache,
    reader: &'a Reader,
    _thread: PhantomData<*const ()>,
}

impl CacheReader<'_> {
    /// Reads the fact about `key` in step `step` (see [`SharedCache::read`]).
    #[inline(always)]
    pub fn read(&self, key: impl Into<SharedKey>, step: u64) -> Option<SharedFact> {
        let (cache, reader) = (self.cache, self.reader);
        match cache.slot_of(key.into()) {
            Some(i) => {
                Reader::count(&reader.hits);
                let stamp = &reader.stamps[i];
                let step = step.min(u64::from(u32::MAX)) as u32;
                if stamp.load(Ordering::Relaxed) < step {
                    stamp.store(step, Ordering::Relaxed);
                }
                Some(cache.slot(i).fact())
            }
            None => {
                Reader::count(&reader.misses);
                None
            }
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    hits: u64,
    misses: u64,
}

impl Default for SharedCache {
    fn default() -> Self {
        Self::new(0, None, 0)
    }
}

impl SharedCache {
    /// Bytes a held fact is counted at against the cache's room: its 32-byte
    /// slot and each reading thread's 4-byte stamp, rounded up to leave room
    /// for up to eight readers.
    pub const ENTRY_BYTES: usize = 64;

    /// A cache for sites `0..sites` and the cells of `ground`, holding at most
    /// `room` bytes of facts.
    pub fn new(sites: usize, ground: Option<GridGeometry>, room: u64) -> Self {
        let layout = Layout {
            sites: sites.min(u32::MAX as usize / 2) as u32,
            ground,
        };
        let sets = Self::capacity_for(room) / WAYS;
        Self {
            layout,
            sets: empty_sets(sets),
            len: 0,
            site_facts: 0,
            capacity_bytes: room,
            readers: ThreadLocal::new(),
            totals: Counters::default(),
            evictions: 0,
            publications: 0,
        }
    }

    /// Facts a room of `room` bytes holds: whole sets of two.
    pub fn capacity_for(room: u64) -> usize {
        (room / (Self::ENTRY_BYTES * WAYS) as u64).min(u64::from(u32::MAX) / 4) as usize * WAYS
    }

    /// The room that holds a fact about each of `keys` keys without ever
    /// evicting one.
    pub fn room_for(keys: usize) -> u64 {
        (keys.div_ceil(WAYS) * WAYS * Self::ENTRY_BYTES) as u64
    }

    /// A cache of sites only, holding at most `facts` facts (rounded down to
    /// an even number).
    pub fn for_sites(sites: usize, facts: usize) -> Self {
        Self::new(sites, None, (facts * Self::ENTRY_BYTES) as u64)
    }

    /// The grid whose cells explorers mark ([`SharedKey::Ground`]), if any.
    pub fn ground(&self) -> Option<&GridGeometry> {
        self.layout.ground.as_ref()
    }

    /// The set of the key `ordinal`: keys two by two, so that neighbouring
    /// keys (sites of one region, cells of one row) share lines.
    #[inline]
    fn set_of(&self, ordinal: u32) -> usize {
        let block = ordinal as usize / WAYS;
        // No division while the sets outnumber the blocks (a world no wider
        // than the room).
        if block < self.sets.len() {
            block
        } else {
            block % self.sets.len()
        }
    }

    /// The slot (set × ways + way) holding `key`'s fact, if it is held.
    #[inline]
    fn slot_of(&self, key: SharedKey) -> Option<usize> {
        let ordinal = self.layout.ordinal(key)?;
        if self.sets.is_empty() {
            return None;
        }
        let set = self.set_of(ordinal);
        let way = self.sets[set].0.iter().position(|s| s.key == ordinal + 1)?;
        Some(set * WAYS + way)
    }

    #[inline]
    fn slot(&self, slot: usize) -> &Slot {
        &self.sets[slot / WAYS].0[slot % WAYS]
    }

    /// Asks the processor to bring the line of `key`'s set into its cache,
    /// without waiting for it: a reader about to read several keys prefetches
    /// them all first, so that their misses overlap instead of following one
    /// another. Changes nothing the cache holds or counts.
    #[inline]
    pub fn prefetch(&self, key: impl Into<SharedKey>) {
        let Some(ordinal) = self.layout.ordinal(key.into()) else {
            return;
        };
        if !self.sets.is_empty() {
            crate::prefetch::prefetch(&self.sets[self.set_of(ordinal)]);
        }
    }

    /// Reads the fact about `key` in step `step`: counts a hit or a miss and,
    /// on a hit, marks the fact as used in this step. Safe to call from many
    /// threads. Each call looks up the calling thread's stamps; code that
    /// reads several facts in a row takes a [`reader`](Self::reader) once.
    #[inline(always)]
    pub fn read(&self, key: impl Into<SharedKey>, step: u64) -> Option<SharedFact> {
        self.reader().read(key, step)
    }

    /// The calling thread's reader: [`read`](Self::read) without looking the
    /// thread's stamps up on every read. It stays on the thread that took it.
    #[inline(always)]
    pub fn reader(&self) -> CacheReader<'_> {
        CacheReader {
            cache: self,
            reader: self.readers.get_or(|| Reader::new(self.capacity())),
            _thread: PhantomData,
        }
    }

    /// The step of the latest access to the fact in `slot`: its publication
    /// or the latest read on any thread.
    fn last_access(&self, slot: usize) -> u64 {
        self.readers
            .iter()
            .map(|r| u64::from(r.stamps[slot].load(Ordering::Relaxed)))
            .fold(self.slot(slot).stamp, u64::max)
    }

    /// The fact about `key`, without counting or marking anything.
    pub fn peek(&self, key: impl Into<SharedKey>) -> Option<SharedFact> {
        self.slot_of(key.into()).map(|i| self.slot(i).fact())
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
        self.sets.len() * WAYS
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
            capacity: self.capacity(),
            bytes: (self.len * Self::ENTRY_BYTES) as u64,
            capacity_bytes: self.capacity_bytes,
            site_facts: self.site_facts,
        }
    }

    /// Every held fact's slot and key ordinal, in key order.
    fn held(&self) -> Vec<(u32, usize)> {
        let mut held: Vec<(u32, usize)> = (0..self.capacity())
            .filter_map(|i| {
                let key = self.slot(i).key;
                (key != 0).then(|| (key - 1, i))
            })
            .collect();
        held.sort_unstable();
        held
    }

    /// Held facts from the least to the most recently used (ties: lowest key
    /// first).
    pub fn lru_order(&self) -> impl Iterator<Item = SharedKey> + '_ {
        let mut held: Vec<(u64, SharedKey)> =
            self.iter().map(|(key, _, stamp)| (stamp, key)).collect();
        held.sort_unstable();
        held.into_iter().map(|(_, key)| key)
    }

    /// Every held fact with its last access step, in key order (for digests).
    pub fn iter(&self) -> impl Iterator<Item = (SharedKey, SharedFact, u64)> + '_ {
        self.held().into_iter().map(|(ordinal, i)| {
            (
                self.layout.key(ordinal),
                self.slot(i).fact(),
                self.last_access(i),
            )
        })
    }

    /// Brings the hit and miss counters up to date with the reads so far.
    pub fn settle(&mut self) {
        for r in self.readers.iter_mut() {
            self.totals.hits += std::mem::take(r.hits.get_mut());
            self.totals.misses += std::mem::take(r.misses.get_mut());
        }
    }

    /// Publishes `fact` about `key` in step `step`, replacing what was held.
    /// When the key's set is full, its least recently used fact is evicted
    /// first.
    pub fn publish(&mut self, key: impl Into<SharedKey>, fact: SharedFact, step: u64) {
        let Some(ordinal) = self.layout.ordinal(key.into()) else {
            return;
        };
        if self.sets.is_empty() {
            return;
        }
        self.publications += 1;
        let set = self.set_of(ordinal);
        let ways = &self.sets[set].0;
        let way = match ways.iter().position(|s| s.key == ordinal + 1) {
            Some(way) => way,
            None => {
                let way = match ways.iter().position(|s| s.key == 0) {
                    Some(empty) => empty,
                    None => {
                        // The least recently used, ties to the lowest key.
                        let way = (0..WAYS)
                            .min_by_key(|&w| (self.last_access(set * WAYS + w), ways[w].key))
                            .expect("a set has ways");
                        self.evictions += 1;
                        self.len -= 1;
                        if ways[way].key - 1 < self.layout.sites {
                            self.site_facts -= 1;
                        }
                        way
                    }
                };
                self.len += 1;
                if ordinal < self.layout.sites {
                    self.site_facts += 1;
                }
                way
            }
        };
        self.sets[set].0[way] = Slot {
            at: fact.at,
            by: fact.by.0,
            stamp: step,
            value: fact.value,
            key: ordinal + 1,
        };
    }
}

/// A [`SharedCache`] as a checkpoint holds it: every held fact with its slot
/// and its recency (the readers' stamps folded in), and the counters. (The
/// ground grid is the world's, rebuilt with it.)
#[derive(Serialize, Deserialize)]
pub(crate) struct CacheImage {
    /// `(slot, key ordinal, value, at, by, stamp)` of every held fact, in key
    /// order.
    facts: Vec<(u32, u32, f32, SimTime, u64, u64)>,
    capacity_bytes: u64,
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
            facts: self
                .held()
                .into_iter()
                .map(|(ordinal, i)| {
                    let s = self.slot(i);
                    (i as u32, ordinal, s.value, s.at, s.by, self.last_access(i))
                })
                .collect(),
            capacity_bytes: self.capacity_bytes,
            hits: self.totals.hits,
            misses: self.totals.misses,
            evictions: self.evictions,
            publications: self.publications,
        }
    }

    /// The cache a checkpoint held, over the same sites and ground as `self`
    /// (the cache the restored app made); it behaves from here on exactly as
    /// the cache it was taken from. `None` if the image holds a key outside
    /// them, or a fact out of its set.
    pub(crate) fn restored(&self, image: CacheImage) -> Option<Self> {
        let mut cache = Self::new(
            self.layout.sites as usize,
            self.layout.ground,
            image.capacity_bytes,
        );
        let keys = cache.layout.keys();
        for (slot, ordinal, value, at, by, stamp) in image.facts {
            let slot = slot as usize;
            if ordinal as usize >= keys
                || slot >= cache.capacity()
                || cache.set_of(ordinal) != slot / WAYS
                || cache.slot(slot).key != 0
            {
                return None;
            }
            cache.sets[slot / WAYS].0[slot % WAYS] = Slot {
                at,
                by,
                stamp,
                value,
                key: ordinal + 1,
            };
            cache.len += 1;
            if ordinal < cache.layout.sites {
                cache.site_facts += 1;
            }
        }
        cache.totals = Counters {
            hits: image.hits,
            misses: image.misses,
        };
        cache.evictions = image.evictions;
        cache.publications = image.publications;
        Some(cache)
    }
}
