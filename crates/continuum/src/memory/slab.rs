//! Room for memory records: [`SlabVec`], a small vector whose records live in
//! fixed-size blocks of a process-wide slab rather than inline in the agent.
//!
//! Most agents hold two or three records at a time, yet a tier must be able to
//! hold its full capacity. Inline arrays pay for that capacity in every agent;
//! a `SlabVec` is six bytes in the agent and takes a block only as large as
//! what it holds (two, four, eight or sixteen records), and none while empty.
//!
//! Blocks come from chunks that are allocated once and never move or go back to
//! the system; freed blocks are reused first. A vector takes or frees a block
//! only when it outgrows its block, falls to a quarter of it or empties, never
//! on every record, and then mostly from its thread's [`Stock`] without a lock;
//! a stock refills or returns its blocks in batches, behind one lock per size
//! class. A block
//! belongs to exactly one `SlabVec`, which reads and writes it through its own
//! `&`/`&mut` borrows: that ownership, like a `Box`'s, is what makes the
//! accesses sound. Which block a vector gets never changes what it holds, so
//! results do not depend on the order in which threads take blocks.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, PoisonError};

/// Records a block of each size class holds: `2 << class`.
const CLASS_RECORDS: [usize; 4] = [2, 4, 8, 16];
const _: () = {
    let mut class = 0;
    while class < CLASS_RECORDS.len() {
        assert!(CLASS_RECORDS[class] == 2 << class);
        class += 1;
    }
};
/// Most records a [`SlabVec`] holds.
pub const SLAB_VEC_MAX: usize = CLASS_RECORDS[CLASS_RECORDS.len() - 1];
/// Blocks in a class's first chunk, as a power of two; chunk `k` holds twice as
/// many as chunk `k - 1`, so a handful of chunks covers any number of agents and
/// the last one is at most half unused.
const FIRST_CHUNK_LOG2: u32 = 10;
/// Bits of a block id that give the block's index in its chunk; the bits
/// above give the chunk.
const BLOCK_BITS: u32 = 27;
/// Chunks a class may have: the last holds `1 << BLOCK_BITS` blocks, and all
/// together about 268 million (at least 8 GiB of records).
const MAX_CHUNKS: u32 = BLOCK_BITS - FIRST_CHUNK_LOG2 + 1;
/// Room in the chunk table for every value of a block id's chunk bits.
const CHUNKS: usize = 1 << (32 - BLOCK_BITS);

/// Blocks a thread's [`Stock`] fetches from, or returns to, its slab at once.
const STOCK_BATCH: usize = 32;

/// A record type with its own slab and, on every thread, a [`Stock`] of free
/// blocks of it. Implemented with `slab_record!`.
pub trait SlabRecord: Copy + Send + Sync + 'static {
    /// The slab this type's vectors take their blocks from.
    fn slab() -> &'static Slab<Self>;

    /// Runs `f` with this thread's stock of free blocks of [`slab`](Self::slab),
    /// or with `None` while the thread is exiting and its stock is gone.
    fn with_stock<R>(f: impl FnOnce(Option<&mut Stock<Self>>) -> R) -> R;
}

/// Implements [`SlabRecord`] for a type: a slab of its own and a per-thread
/// stock.
macro_rules! slab_record {
    ($t:ty) => {
        impl $crate::memory::slab::SlabRecord for $t {
            fn slab() -> &'static $crate::memory::slab::Slab<Self> {
                static SLAB: $crate::memory::slab::Slab<$t> = $crate::memory::slab::Slab::new();
                &SLAB
            }

            fn with_stock<R>(
                f: impl FnOnce(Option<&mut $crate::memory::slab::Stock<Self>>) -> R,
            ) -> R {
                thread_local! {
                    static STOCK: ::std::cell::RefCell<$crate::memory::slab::Stock<$t>> =
                        ::std::cell::RefCell::new($crate::memory::slab::Stock::new(
                            <$t as $crate::memory::slab::SlabRecord>::slab(),
                        ));
                }
                let mut f = Some(f);
                STOCK
                    .try_with(|stock| {
                        (f.take().expect("called once"))(Some(&mut stock.borrow_mut()))
                    })
                    .unwrap_or_else(|_| (f.take().expect("called once"))(None))
            }
        }
    };
}

pub(crate) use slab_record;

/// One thread's free blocks of one slab, by class: most blocks are taken from
/// and given back to it, without a lock; it fetches or returns
/// [`STOCK_BATCH`] at a time, and returns all it holds when the thread ends.
pub struct Stock<T: SlabRecord> {
    slab: &'static Slab<T>,
    free: [Vec<u32>; CLASS_RECORDS.len()],
}

impl<T: SlabRecord> Stock<T> {
    /// An empty stock of `slab`'s blocks.
    pub fn new(slab: &'static Slab<T>) -> Self {
        Self {
            slab,
            free: Default::default(),
        }
    }

    fn take(&mut self, class: usize) -> u32 {
        if let Some(id) = self.free[class].pop() {
            return id;
        }
        self.slab
            .take_into(class, STOCK_BATCH, &mut self.free[class]);
        self.free[class].pop().expect("the slab gave a batch")
    }

    fn give_back(&mut self, class: usize, id: u32) {
        let free = &mut self.free[class];
        free.push(id);
        if free.len() >= 2 * STOCK_BATCH {
            let rest = free.len() - STOCK_BATCH;
            self.slab.give_back(class, free.drain(rest..));
        }
    }
}

impl<T: SlabRecord> Drop for Stock<T> {
    fn drop(&mut self) {
        for (class, free) in self.free.iter_mut().enumerate() {
            self.slab.give_back(class, free.drain(..));
        }
    }
}

/// Takes a block of class `class` for a vector of `T`s.
fn take_block<T: SlabRecord>(class: usize) -> u32 {
    T::with_stock(|stock| match stock {
        Some(stock) => stock.take(class),
        None => {
            let mut one = Vec::with_capacity(1);
            T::slab().take_into(class, 1, &mut one);
            one[0]
        }
    })
}

/// Gives block `id` of class `class` back.
fn give_back_block<T: SlabRecord>(class: usize, id: u32) {
    T::with_stock(|stock| match stock {
        Some(stock) => stock.give_back(class, id),
        None => T::slab().give_back(class, std::iter::once(id)),
    });
}

/// Blocks of records of one type, in four size classes.
pub struct Slab<T> {
    classes: [Class<T>; CLASS_RECORDS.len()],
}

struct Class<T> {
    /// The chunks' first records (null until a chunk is needed). A chunk is
    /// allocated under `state`'s lock, before any of its blocks is handed out,
    /// and never freed.
    chunks: [AtomicPtr<T>; CHUNKS],
    state: Mutex<ClassState>,
}

#[derive(Default)]
struct ClassState {
    /// Blocks handed out so far (the next fresh id).
    next: u64,
    /// Freed blocks, reused last-freed first.
    free: Vec<u32>,
    /// Blocks out of the slab now: in vectors or in threads' stocks.
    live: u64,
}

/// Blocks of one slab in use and handed out, over all classes, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabUsage {
    /// Bytes of blocks out of the slab now: held by vectors or in threads'
    /// stocks.
    pub live_bytes: u64,
    /// Bytes of every block ever handed out (live or free for reuse).
    pub reserved_bytes: u64,
}

impl<T: SlabRecord> Slab<T> {
    /// An empty slab; chunks come as blocks are taken.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self {
            classes: [const {
                Class {
                    chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS],
                    state: Mutex::new(ClassState {
                        next: 0,
                        free: Vec::new(),
                        live: 0,
                    }),
                }
            }; CLASS_RECORDS.len()],
        }
    }

    /// What the slab's blocks take now.
    pub fn usage(&self) -> SlabUsage {
        let mut usage = SlabUsage::default();
        for (class, records) in self.classes.iter().zip(CLASS_RECORDS) {
            let state = class.state.lock().unwrap_or_else(PoisonError::into_inner);
            let bytes = (records * size_of::<T>()) as u64;
            usage.live_bytes += state.live * bytes;
            usage.reserved_bytes += state.next * bytes;
        }
        usage
    }

    /// Appends `n` blocks of class `class` to `out`: freed ones first, then
    /// fresh ones.
    fn take_into(&self, class: usize, n: usize, out: &mut Vec<u32>) {
        let c = &self.classes[class];
        let mut state = c.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.live += n as u64;
        let reused = state.free.len().min(n);
        let from = state.free.len() - reused;
        out.extend(state.free.drain(from..));
        for _ in reused..n {
            let (chunk, block) = locate(state.next);
            assert!(chunk < MAX_CHUNKS as usize, "out of memory blocks");
            state.next += 1;
            if c.chunks[chunk].load(Ordering::Acquire).is_null() {
                let records = (1usize << (FIRST_CHUNK_LOG2 + chunk as u32)) << (class + 1);
                // Leaked: the chunk lives as long as the process, so a
                // block's records never move and never dangle.
                let cells: &'static mut [MaybeUninit<T>] =
                    Box::leak(Box::new_uninit_slice(records));
                c.chunks[chunk].store(cells.as_mut_ptr().cast::<T>(), Ordering::Release);
            }
            out.push(((chunk as u32) << BLOCK_BITS) | block as u32);
        }
    }

    fn give_back(&self, class: usize, ids: impl ExactSizeIterator<Item = u32>) {
        let mut state = self.classes[class]
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.live -= ids.len() as u64;
        state.free.extend(ids);
    }

    /// The first record of block `id` of class `class`, which must have been
    /// taken.
    #[inline]
    fn records(&self, class: usize, id: u32) -> *mut T {
        let (chunk, block) = ((id >> BLOCK_BITS) as usize, id & ((1 << BLOCK_BITS) - 1));
        // The chunk was stored before the block was taken, and the block was
        // handed over to its vector's thread with a happens-before edge.
        let first = self.classes[class].chunks[chunk].load(Ordering::Acquire);
        debug_assert!(
            !first.is_null(),
            "block {id} of class {class} was never taken"
        );
        first.wrapping_add((block as usize) << (class + 1))
    }
}

/// The chunk of the `n`th block a class hands out, and its index there.
fn locate(n: u64) -> (usize, usize) {
    let v = n + (1 << FIRST_CHUNK_LOG2);
    let chunk = 63 - v.leading_zeros() - FIRST_CHUNK_LOG2;
    let block = v - (1 << (FIRST_CHUNK_LOG2 + chunk));
    (chunk as usize, block as usize)
}

/// The smallest class that holds `len` records.
fn class_for(len: usize) -> usize {
    CLASS_RECORDS
        .iter()
        .position(|&r| r >= len)
        .expect("at most SLAB_VEC_MAX records")
}

/// Records in the block a [`SlabVec`] of `records` records at most ever
/// takes: the smallest class that holds them (none for none).
pub fn block_records(records: usize) -> usize {
    match records {
        0 => 0,
        n => CLASS_RECORDS[class_for(n.min(SLAB_VEC_MAX))],
    }
}

/// A vector of at most [`SLAB_VEC_MAX`] records whose storage is a block of its
/// type's [`Slab`]: six bytes inline, the block sized to what it holds, no
/// block while empty. It dereferences to a slice.
///
/// Packed to an alignment of two so that a `Memory` with two of them takes 24
/// bytes, not 28: its fields are only ever read and written by value.
#[repr(C, packed(2))]
pub struct SlabVec<T: SlabRecord> {
    /// The block, valid while `class > 0`.
    id: u32,
    len: u8,
    /// Size class plus one; zero while there is no block.
    class: u8,
    _records: PhantomData<T>,
}

impl<T: SlabRecord> SlabVec<T> {
    /// An empty vector (no block).
    pub const fn new() -> Self {
        Self {
            id: 0,
            len: 0,
            class: 0,
            _records: PhantomData,
        }
    }

    /// Records the vector can hold before it needs a larger block.
    pub fn capacity(&self) -> usize {
        match self.class {
            0 => 0,
            c => CLASS_RECORDS[usize::from(c) - 1],
        }
    }

    fn block(&self) -> *mut T {
        debug_assert!(self.class > 0);
        T::slab().records(usize::from(self.class) - 1, self.id)
    }

    /// Moves the records to a block of class `class` (or none).
    fn move_to(&mut self, class: Option<usize>) {
        let slab = T::slab();
        let new = class.map(|c| (c, take_block::<T>(c)));
        if let Some((c, id)) = new {
            if self.class > 0 {
                // SAFETY: both blocks are this vector's (the new one was just
                // taken); the first `len` records of the old one are
                // initialised and the new one has room for them.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.block(),
                        slab.records(c, id),
                        usize::from(self.len),
                    );
                }
            }
            debug_assert!(CLASS_RECORDS[c] >= usize::from(self.len));
        }
        if self.class > 0 {
            give_back_block::<T>(usize::from(self.class) - 1, self.id);
        }
        (self.class, self.id) = match new {
            Some((c, id)) => (c as u8 + 1, id),
            None => (0, 0),
        };
    }

    /// Inserts `value` at `index`, shifting later records up.
    ///
    /// # Panics
    /// If `index > len` or the vector already holds [`SLAB_VEC_MAX`] records.
    pub fn insert(&mut self, index: usize, value: T) {
        let len = usize::from(self.len);
        assert!(index <= len, "insert at {index} past the length {len}");
        assert!(
            len < SLAB_VEC_MAX,
            "a SlabVec holds at most {SLAB_VEC_MAX} records"
        );
        if len == self.capacity() {
            self.move_to(Some(class_for(len + 1)));
        }
        let p = self.block();
        // SAFETY: the block is this vector's and has room for `len + 1`
        // records; the first `len` are initialised.
        unsafe {
            std::ptr::copy(p.add(index), p.add(index + 1), len - index);
            p.add(index).write(value);
        }
        self.len += 1;
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        self.insert(self.len(), value);
    }

    /// Removes and returns the record at `index`, shifting later ones down. A
    /// vector left empty gives its block back; one left using a quarter of a
    /// large block moves to a smaller one.
    ///
    /// # Panics
    /// If `index >= len`.
    pub fn remove(&mut self, index: usize) -> T {
        let len = usize::from(self.len);
        assert!(index < len, "remove at {index} from a length of {len}");
        let p = self.block();
        // SAFETY: the block is this vector's; records `0..len` are initialised.
        let value = unsafe {
            let value = p.add(index).read();
            std::ptr::copy(p.add(index + 1), p.add(index), len - index - 1);
            value
        };
        self.len -= 1;
        self.settle();
        value
    }

    /// Keeps only the records for which `keep` is true, in order.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.retain_from(0, keep);
    }

    /// Keeps the records before `start`, and of the others only those for
    /// which `keep` is true, in order.
    pub fn retain_from(&mut self, start: usize, mut keep: impl FnMut(&T) -> bool) {
        let records = &mut **self;
        let Some(first) = records
            .iter()
            .skip(start)
            .position(|r| !keep(r))
            .map(|i| start + i)
        else {
            return;
        };
        let mut kept = first;
        for i in first + 1..records.len() {
            let record = records[i];
            if keep(&record) {
                records[kept] = record;
                kept += 1;
            }
        }
        self.len = kept as u8;
        self.settle();
    }

    /// Moves the records to a smaller block if the one it has is larger than
    /// a vector of at most `capacity` records ever takes ([`block_records`]):
    /// after its capacity shrank, the vector takes no more room than a new
    /// one would.
    pub fn fit_to(&mut self, capacity: usize) {
        let len = usize::from(self.len);
        debug_assert!(len <= capacity.max(len));
        if self.capacity() > block_records(capacity.max(len)) {
            self.move_to((len > 0).then(|| class_for(len)));
        }
    }

    /// After records went: no block for no records, a smaller block for a
    /// quarter of a large one (a vector that shrinks by one and grows again
    /// keeps its block).
    fn settle(&mut self) {
        let len = usize::from(self.len);
        if len == 0 {
            if self.class > 0 {
                self.move_to(None);
            }
        } else if len * 4 <= self.capacity() && self.capacity() > CLASS_RECORDS[0] {
            self.move_to(Some(class_for(len)));
        }
    }
}

impl<T: SlabRecord> Default for SlabVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: SlabRecord> Drop for SlabVec<T> {
    fn drop(&mut self) {
        if self.class > 0 {
            give_back_block::<T>(usize::from(self.class) - 1, self.id);
        }
    }
}

impl<T: SlabRecord> Deref for SlabVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        if self.class == 0 {
            return &[];
        }
        // SAFETY: the block is this vector's, borrowed shared with `self`, and
        // its first `len` records are initialised.
        unsafe { std::slice::from_raw_parts(self.block(), usize::from(self.len)) }
    }
}

impl<T: SlabRecord> DerefMut for SlabVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        if self.class == 0 {
            return &mut [];
        }
        // SAFETY: the block is this vector's, borrowed exclusively with `self`,
        // and its first `len` records are initialised.
        unsafe { std::slice::from_raw_parts_mut(self.block(), usize::from(self.len)) }
    }
}

impl<T: SlabRecord> Clone for SlabVec<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        if !self.is_empty() {
            copy.move_to(Some(usize::from(self.class) - 1));
            copy.len = self.len;
            copy.copy_from_slice(self);
        }
        copy
    }
}

impl<T: SlabRecord + PartialEq> PartialEq for SlabVec<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: SlabRecord + std::fmt::Debug> std::fmt::Debug for SlabVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Rec(u32, u8);

    slab_record!(Rec);

    #[test]
    fn block_ids_map_onto_growing_chunks() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1023), (0, 1023));
        assert_eq!(locate(1024), (1, 0));
        assert_eq!(locate(3071), (1, 2047));
        assert_eq!(locate(3072), (2, 0));
        // The last block fits the id's bits.
        let last = (1u64 << FIRST_CHUNK_LOG2) * ((1 << MAX_CHUNKS) - 1) - 1;
        assert_eq!(
            locate(last),
            (MAX_CHUNKS as usize - 1, (1 << BLOCK_BITS) - 1)
        );
    }

    /// A `SlabVec` behaves like a `Vec` through growth, removal, retain and
    /// clone, and its blocks follow what it holds.
    #[test]
    fn behaves_like_a_vec_and_sizes_its_block() {
        let mut v = SlabVec::<Rec>::new();
        let mut model = Vec::new();
        assert_eq!(v.capacity(), 0);
        for i in 0..SLAB_VEC_MAX as u32 {
            let at = (i as usize * 7) % (model.len() + 1);
            v.insert(at, Rec(i, i as u8));
            model.insert(at, Rec(i, i as u8));
            assert_eq!(&*v, &model[..]);
            assert!(v.capacity() >= v.len() && v.capacity() < 2 * v.len().max(2));
        }
        let copy = v.clone();
        let full = model.clone();
        assert_eq!(copy, v);
        v.retain(|r| r.0 % 3 == 0);
        model.retain(|r| r.0 % 3 == 0);
        assert_eq!(&*v, &model[..]);
        assert_eq!(v.capacity(), 16, "6 of 16 records keep their block");
        v.retain(|r| r.0 % 2 == 0);
        model.retain(|r| r.0 % 2 == 0);
        assert_eq!(&*v, &model[..]);
        assert_eq!(v.capacity(), 4, "3 of 16 records move to a block of 4");
        v[1].1 = 99;
        model[1].1 = 99;
        while !model.is_empty() {
            assert_eq!(v.remove(0), model.remove(0));
            assert_eq!(&*v, &model[..]);
        }
        assert_eq!(v.capacity(), 0, "an empty vector holds no block");
        assert_eq!(&*copy, &full[..], "the clone has its own block");
    }

    /// Blocks are given back and reused, most recently freed first, through a
    /// thread's stock; the stock returns what it holds when it goes.
    #[test]
    fn freed_blocks_are_reused() {
        // The test's own slab, so other tests' vectors do not count.
        static OTHER: Slab<Rec> = Slab::new();
        let live = || OTHER.usage().live_bytes / (4 * size_of::<Rec>() as u64);
        let mut stock = Stock::new(&OTHER);
        let first = stock.take(1);
        assert_eq!(live(), STOCK_BATCH as u64, "a stock fetches a batch");
        stock.give_back(1, first);
        assert_eq!(stock.take(1), first, "the freed block comes back first");
        let reserved = OTHER.usage().reserved_bytes;
        let mut held = vec![first];
        for round in 0..10 {
            for _ in 0..3 * STOCK_BATCH {
                held.push(stock.take(1));
            }
            for id in held.drain(..) {
                stock.give_back(1, id);
            }
            if round == 0 {
                assert!(
                    live() < 3 * STOCK_BATCH as u64,
                    "a full stock returns blocks"
                );
            }
        }
        let mut ids: Vec<u32> = (0..3 * STOCK_BATCH + 1).map(|_| stock.take(1)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            3 * STOCK_BATCH + 1,
            "no block is handed out twice"
        );
        assert_eq!(
            OTHER.usage().reserved_bytes,
            reserved + (3 * STOCK_BATCH as u64) * 4 * size_of::<Rec>() as u64,
            "rounds of taking and freeing reuse the same blocks"
        );
        for id in ids {
            stock.give_back(1, id);
        }
        drop(stock);
        assert_eq!(live(), 0, "a stock that goes gives everything back");
    }
}
