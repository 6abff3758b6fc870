//! Parallel iteration over the due agents, measured: how busy each thread is, and
//! chunk sizes that follow the measured cost of the work.
//!
//! Every built-in per-agent system goes through [`for_each_due`]; a game's systems
//! can too. A pass splits the agents into one lane per thread; each thread works
//! through its own lane in chunks and then takes the back half of the fullest
//! lane left ([`Chunks`]), so that the threads finish a pass together, a worker
//! that starts late only takes less of it, and each thread keeps to the same
//! agents from one pass to the next. Through a step the compute workers spin,
//! and a pass is handed to them directly rather than started as tasks on the
//! pool. Lanes, chunk sizes and timings change how the work is spread over
//! threads, never its results.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bevy_ecs::entity::UniqueEntitySlice;
use bevy_ecs::prelude::*;
use bevy_ecs::query::{IterQueryData, QueryFilter};
use bevy_utils::Parallel;

use crate::agent::DueAgents;

/// Least estimated wall time of a pass (nanoseconds) for it to be shared: below
/// it, handing work to another thread costs more than it saves, and the pass
/// runs on the calling thread.
pub const MIN_SHARED_NS: f64 = 50_000.0;
/// The same while the compute workers sleep (steps with fewer than
/// [`SPIN_MIN_DUE`] due agents): a sleeping worker takes tens of microseconds
/// to wake, and at 10 000 agents (a thousand due a step, passes of 30 to 150
/// µs) sharing every pass made two threads slower than one.
pub const MIN_SHARED_ASLEEP_NS: f64 = 500_000.0;
/// Least wall time a chunk should take (nanoseconds): claiming one is an atomic
/// operation, cheap next to this.
pub const MIN_CHUNK_NS: f64 = 10_000.0;
/// Chunks never hold fewer agents than this.
pub const MIN_CHUNK: usize = 16;
/// Agents assumed per [`MIN_CHUNK_NS`] before any cost was measured.
const UNMEASURED_CHUNK: usize = 64;

/// How many threads parallel loops spread over, and how busy each thread is in
/// them, for load reports.
#[derive(Resource, Default)]
pub struct ThreadLoad {
    threads: Option<usize>,
    local: Parallel<(Option<String>, u64)>,
    totals: BTreeMap<String, u64>,
    since: Option<Instant>,
    /// Share every pass, however small ([`sharing_every_pass`](Self::sharing_every_pass)).
    share_all: bool,
    /// The spinning workers and the pass handed to them.
    spin: SpinHandle,
}

impl ThreadLoad {
    /// Loops spread over `threads` threads: the one that starts them (which
    /// takes part) and `threads - 1` compute workers.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads: Some(threads.max(1)),
            ..Default::default()
        }
    }

    /// Shares every pass between the threads in chunks of [`MIN_CHUNK`] agents,
    /// however small the pass, and keeps the workers spinning through every
    /// step (passes are handed to them as in a large world): slower, but a
    /// test's small world then runs every parallel path that a large one does.
    pub fn sharing_every_pass(mut self) -> Self {
        self.share_all = true;
        self
    }

    /// Spreads the loops that start from now on over `threads` threads: the
    /// calling thread and `threads - 1` compute workers (more than the pool
    /// has only queues tasks behind the busy ones). Results do not change, only
    /// how fast they come: a benchmark can compare thread counts within one run.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = Some(threads.max(1));
    }

    /// Threads a parallel loop spreads over: as set, or else as many as the
    /// compute pool has (Bevy's own rule for `par_iter`). One means loops run on
    /// the calling thread alone.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            bevy_tasks::ComputeTaskPool::get_or_init(Default::default).thread_num()
        })
    }

    /// The least chunk of a shared pass: `usual`, or [`MIN_CHUNK`] when every
    /// pass is shared.
    fn least_chunk(&self, usual: usize) -> usize {
        if self.share_all { MIN_CHUNK } else { usual }
    }

    /// Whether the compute workers are kept awake in this step, so that a pass
    /// handed to them starts at once.
    pub fn workers_awake(&self) -> bool {
        self.spin.running.load(Ordering::Relaxed)
    }

    fn record(&self, ns: u64) {
        self.local.scope(|(name, busy)| {
            if name.is_none() {
                *name = Some(
                    std::thread::current()
                        .name()
                        .unwrap_or("unnamed")
                        .to_owned(),
                );
            }
            *busy += ns;
        });
    }

    /// Folds the threads' counts into the totals.
    pub fn gather(&mut self) {
        self.since.get_or_insert_with(Instant::now);
        for (name, busy) in self.local.iter_mut() {
            if let Some(name) = name {
                *self.totals.entry(name.clone()).or_default() += std::mem::take(busy);
            }
        }
    }

    /// Each thread's share of the wall time since the first gather spent in
    /// parallel loops, by thread name.
    pub fn busy_fractions(&self) -> Vec<(String, f64)> {
        let wall = self.since.map_or(0.0, |s| s.elapsed().as_secs_f64());
        self.totals
            .iter()
            .map(|(name, ns)| {
                let fraction = if wall > 0.0 {
                    *ns as f64 / 1e9 / wall
                } else {
                    0.0
                };
                (name.clone(), fraction)
            })
            .collect()
    }
}

/// Chooses how a system's passes are shared from what its agents have cost so
/// far.
#[derive(Clone, Debug, Default)]
pub struct BatchTuner {
    /// Moving average of the wall time per agent, in nanoseconds.
    ns_per_agent: Option<f64>,
}

impl BatchTuner {
    /// Whether a pass over `agents` agents is worth sharing between threads:
    /// estimated at [`MIN_SHARED_NS`] or more, or not measured yet and more
    /// than two least chunks. While the workers sleep (`awake` false) the pass
    /// must be estimated at [`MIN_SHARED_ASLEEP_NS`] or more.
    pub fn worth_sharing(&self, agents: usize, awake: bool) -> bool {
        let least = if awake {
            MIN_SHARED_NS
        } else {
            MIN_SHARED_ASLEEP_NS
        };
        match self.ns_per_agent {
            Some(ns) => agents as f64 * ns >= least,
            None => awake && agents > 2 * UNMEASURED_CHUNK,
        }
    }

    /// The least chunk of agents a thread claims: about [`MIN_CHUNK_NS`] of work
    /// at the measured cost per agent, and no fewer than [`MIN_CHUNK`].
    pub fn min_chunk(&self) -> usize {
        match self.ns_per_agent {
            Some(ns) if ns > 0.0 => ((MIN_CHUNK_NS / ns) as usize).max(MIN_CHUNK),
            _ => UNMEASURED_CHUNK,
        }
    }

    /// Takes in one pass: `agents` processed in `ns` nanoseconds of wall time on
    /// `threads` threads.
    pub fn observe(&mut self, agents: usize, ns: u64, threads: usize) {
        if agents < MIN_CHUNK {
            return; // too few to tell anything
        }
        let per_agent = ns as f64 * threads.max(1) as f64 / agents as f64;
        self.ns_per_agent = Some(match self.ns_per_agent {
            Some(avg) => 0.9 * avg + 0.1 * per_agent,
            None => per_agent,
        });
    }
}

/// The indices `0..len`, split into one lane of consecutive indices per thread.
///
/// A task works through its own lane from the front, in chunks of `min`; once
/// that is empty it takes the back half of the fullest lane left, which becomes
/// its own, until every lane is empty. So the threads finish a pass together
/// (a worker that starts late only takes less of it), and each thread mostly
/// keeps the same part of the list from one pass to the next: the passes of a
/// step go over the same due agents, and an agent whose components one core
/// just wrote is read again from that core's cache rather than taken from the
/// other's.
#[derive(Debug)]
pub struct Chunks {
    lanes: Box<[Lane]>,
    min: usize,
}

/// One thread's lane: the indices `start..end` still to do, packed in one word
/// so that the owner taking from the front and a thief taking from the back
/// agree on it with one compare-and-swap; and whether a task has it.
/// Aligned so that two lanes never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Lane {
    span: AtomicU64,
    taken: AtomicBool,
}

fn pack(range: Range<usize>) -> u64 {
    ((range.start as u64) << 32) | range.end as u64
}

fn unpack(span: u64) -> Range<usize> {
    (span >> 32) as usize..(span & u64::from(u32::MAX)) as usize
}

impl Chunks {
    /// Lanes over `0..len` for `threads` threads, taken in chunks of `min`
    /// (the last of a lane may be shorter).
    ///
    /// # Panics
    /// If `len` does not fit in 32 bits.
    pub fn new(len: usize, threads: usize, min: usize) -> Self {
        assert!(u32::try_from(len).is_ok(), "at most 2^32 - 1 items a pass");
        let threads = threads.max(1);
        Self {
            lanes: (0..threads)
                .map(|k| Lane {
                    span: AtomicU64::new(pack(len * k / threads..len * (k + 1) / threads)),
                    taken: AtomicBool::new(false),
                })
                .collect(),
            min: min.max(1),
        }
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane a task takes: `home` (modulo the lanes) if no task has it yet,
    /// or else the first free one; `None` when every lane has a task. A lane
    /// has one task at most, and only that task takes from its front; a task
    /// without a lane has nothing to do, since the tasks that own lanes work
    /// until every lane is empty.
    pub fn take_lane(&self, home: usize) -> Option<usize> {
        let n = self.lanes.len();
        (0..n)
            .map(|k| (home + k) % n)
            .find(|&lane| !self.lanes[lane].taken.swap(true, Ordering::Relaxed))
    }

    /// The next chunk for the task that took `lane` ([`take_lane`](Self::take_lane)),
    /// or `None` once every lane is empty. Every index is in exactly one chunk.
    pub fn claim(&self, lane: usize) -> Option<Range<usize>> {
        loop {
            if let Some(chunk) = self.take_front(lane) {
                return Some(chunk);
            }
            if !self.steal_into(lane) {
                return None;
            }
        }
    }

    /// A chunk from the front of `lane`.
    fn take_front(&self, lane: usize) -> Option<Range<usize>> {
        let span = &self.lanes[lane].span;
        let mut now = span.load(Ordering::Relaxed);
        loop {
            let left = unpack(now);
            if left.is_empty() {
                return None;
            }
            let end = left.end.min(left.start + self.min);
            match span.compare_exchange_weak(
                now,
                pack(end..left.end),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(left.start..end),
                Err(seen) => now = seen,
            }
        }
    }

    /// Moves the back half of the fullest other lane (all of it when that is
    /// no more than a chunk) into `lane`, which is empty. Returns `false` when
    /// every other lane is empty.
    fn steal_into(&self, lane: usize) -> bool {
        loop {
            let Some((victim, now)) = (0..self.lanes.len())
                .filter(|&v| v != lane)
                .map(|v| (v, self.lanes[v].span.load(Ordering::Relaxed)))
                .filter(|&(_, span)| !unpack(span).is_empty())
                .max_by_key(|&(v, span)| (unpack(span).len(), std::cmp::Reverse(v)))
            else {
                return false;
            };
            let left = unpack(now);
            let keep = if left.len() <= self.min {
                0
            } else {
                left.len() / 2
            };
            let split = left.start + keep;
            if self.lanes[victim]
                .span
                .compare_exchange(
                    now,
                    pack(left.start..split),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // Only this task takes from the front of its lane, and no thief
                // takes from an empty one: nobody else writes it meanwhile.
                self.lanes[lane]
                    .span
                    .store(pack(split..left.end), Ordering::Relaxed);
                return true;
            }
        }
    }
}

/// The lane a thread's tasks prefer: 0 for the thread that starts the pass,
/// and for the compute workers 1, 2, ... in the order they first took part.
/// Stable from one pass to the next, so a thread keeps to the same part of the
/// due list.
fn home_lane(caller: std::thread::ThreadId, lanes: usize) -> usize {
    static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }
    if lanes <= 1 || std::thread::current().id() == caller {
        return 0;
    }
    let worker = WORKER.with(|w| {
        w.get().unwrap_or_else(|| {
            let id = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
            w.set(Some(id));
            id
        })
    });
    1 + worker % (lanes - 1)
}

/// Records a task's wall time on its thread when dropped.
struct BusyTimer<'a> {
    load: &'a ThreadLoad,
    started: Instant,
}

impl<'a> BusyTimer<'a> {
    fn start(load: &'a ThreadLoad) -> Self {
        Self {
            load,
            started: Instant::now(),
        }
    }
}

impl Drop for BusyTimer<'_> {
    fn drop(&mut self) {
        self.load.record(self.started.elapsed().as_nanos() as u64);
    }
}

/// A slice that tasks write to through disjoint [`Chunks`].
struct SharedSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks reach the elements only through `chunk`, whose callers hold
// disjoint ranges; the elements themselves move between threads.
unsafe impl<T: Send> Send for SharedSlice<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    fn new(slice: &mut [T]) -> Self {
        Self {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
        }
    }

    /// # Safety
    /// No two live results may overlap, and the slice `self` was made from must
    /// outlive them and not be used otherwise meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn chunk(&self, range: Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// Runs `f` on each agent of `due` that `query` matches, in parallel chunks
/// sized by `tuner`, timing each thread's share into `load`.
pub fn for_each_due<D, F>(
    query: &mut Query<D, F>,
    due: &UniqueEntitySlice,
    tuner: &mut BatchTuner,
    load: &ThreadLoad,
    f: impl for<'w, 's> Fn(D::Item<'w, 's>) + Send + Sync,
) where
    D: IterQueryData,
    F: QueryFilter,
{
    // A vector of a zero-sized type allocates nothing.
    let mut nothing = vec![(); due.len()];
    for_each_due_into(query, due, &mut nothing, tuner, load, |item, _| f(item));
}

/// Like [`for_each_due`], and `f` also gets the agent's own element of `out`
/// (`out[i]` for the agent at `due[i]`). What the agents write there comes out in
/// the order of `due`, whichever thread ran them: serial work that follows can
/// then go through the results in a deterministic order without looking the
/// agents up again.
///
/// # Panics
/// If `out` and `due` differ in length.
pub fn for_each_due_into<D, F, T: Send>(
    query: &mut Query<D, F>,
    due: &UniqueEntitySlice,
    out: &mut [T],
    tuner: &mut BatchTuner,
    load: &ThreadLoad,
    f: impl for<'w, 's> Fn(D::Item<'w, 's>, &mut T) + Send + Sync,
) where
    D: IterQueryData,
    F: QueryFilter,
{
    assert_eq!(due.len(), out.len(), "one output element per due agent");
    if due.is_empty() {
        return;
    }
    let threads = load.threads();
    let started = Instant::now();
    let shared = load.share_all || tuner.worth_sharing(due.len(), load.workers_awake());
    if threads <= 1 || !shared {
        // Too little to share: run it here rather than hand it to a worker
        // while this thread waits.
        let timer = BusyTimer::start(load);
        run_each(query, due, out, &f);
        drop(timer);
        tuner.observe(due.len(), started.elapsed().as_nanos() as u64, 1);
        return;
    }
    let chunks = Chunks::new(due.len(), threads, load.least_chunk(tuner.min_chunk()));
    let slots = SharedSlice::new(out);
    let query = &*query;
    let (f, slots) = (&f, &slots);
    share(threads, &chunks, load, || {
        // SAFETY: every task reaches only the agents of the chunks it claims;
        // chunks are disjoint parts of a `UniqueEntitySlice`, so no two reach
        // the same entity or component. The caller's `&mut Query` is held until
        // every task is done, so nothing else reaches them.
        let mut task_query = unsafe { query.reborrow_unsafe() };
        move |range: Range<usize>| {
            let entities = &due[range.clone()];
            // SAFETY: `claim` never hands out overlapping ranges, and `out` is
            // borrowed until every task is done.
            let slots = unsafe { slots.chunk(range) };
            run_each(&mut task_query, entities, slots, f);
        }
    });
    tuner.observe(due.len(), started.elapsed().as_nanos() as u64, threads);
}

/// Runs `f` on each agent of `due` with its element of `out`. A plain loop
/// rather than `zip`: zipping the query's iterator with the slice compiled to
/// about a tenth more instructions over a whole step (callgrind, 100 000
/// agents, one thread).
#[inline(always)]
fn run_each<D, F, T>(
    query: &mut Query<D, F>,
    due: &UniqueEntitySlice,
    out: &mut [T],
    f: &impl for<'w, 's> Fn(D::Item<'w, 's>, &mut T),
) where
    D: IterQueryData,
    F: QueryFilter,
{
    let mut items = query.iter_many_unique_mut(due);
    for slot in out {
        let Some(item) = items.next() else { break };
        if let Ok(item) = item {
            f(item, slot);
        }
    }
}

/// Runs `f` on every element of `items`, shared between threads in chunks as
/// [`for_each_due`] does (for light, even work over plain data).
pub fn for_each_chunk<T: Send>(
    items: &mut [T],
    load: &ThreadLoad,
    f: impl Fn(&mut T) + Send + Sync,
) {
    let threads = load.threads();
    let shared = load.share_all || (load.workers_awake() && items.len() >= 4 * UNMEASURED_CHUNK);
    if threads <= 1 || !shared {
        let _timer = BusyTimer::start(load);
        items.iter_mut().for_each(f);
        return;
    }
    let chunks = Chunks::new(items.len(), threads, load.least_chunk(UNMEASURED_CHUNK));
    let shared = SharedSlice::new(items);
    let (f, shared) = (&f, &shared);
    share(threads, &chunks, load, || {
        move |range: Range<usize>| {
            // SAFETY: `claim` never hands out overlapping ranges, and `items`
            // is borrowed until every task is done.
            unsafe { shared.chunk(range) }.iter_mut().for_each(f);
        }
    });
}

/// Runs a pass on `threads` threads, the calling thread taking part: each
/// runs a worker from `worker` on chunk after chunk of its lane of `chunks`
/// until none is left; returns when all are done.
///
/// While the compute workers spin ([`wake_workers`]) the pass is handed to
/// them directly ([`Spin::broadcast`]): they pick it up within a poll, where
/// starting a task on the pool costs tens of microseconds a pass. Otherwise
/// one task a thread is started on the compute pool.
fn share<'a, W: FnMut(Range<usize>) + 'a>(
    threads: usize,
    chunks: &'a Chunks,
    load: &'a ThreadLoad,
    worker: impl Fn() -> W + Sync,
) {
    let caller = std::thread::current().id();
    let task = || {
        let _timer = BusyTimer::start(load);
        let mut work = worker();
        // More tasks than lanes (workers left spinning by a step with more
        // threads): the extra ones have nothing to do.
        let Some(lane) = chunks.take_lane(home_lane(caller, chunks.lanes())) else {
            return;
        };
        while let Some(range) = chunks.claim(lane) {
            work(range);
        }
    };
    if load.workers_awake() && load.spin.broadcast(&task) {
        return;
    }
    let pool = bevy_tasks::ComputeTaskPool::get_or_init(Default::default);
    let task = &task;
    pool.scope(|scope| {
        for _ in 0..threads {
            scope.spawn(async move { task() });
        }
    });
}

/// Keeps the compute workers awake through a step's parallel passes, and hands
/// them the passes.
///
/// A worker with nothing to do goes to sleep, and waking it again costs tens of
/// microseconds on a virtual machine: paid at every pass, that is a large share
/// of a pass of a few hundred microseconds. Between [`wake_workers`] and
/// [`release_workers`] each worker runs a task that looks for a pass to join
/// and otherwise yields at once (so the worker still runs whatever else the
/// pool is given), and a pass is started by publishing it here.
#[derive(Default)]
struct Spin {
    /// Whether a step is handing passes to the workers (between
    /// [`wake_workers`] and [`release_workers`]).
    running: AtomicBool,
    /// Spinning tasks alive.
    spinners: AtomicUsize,
    /// Bits 0-31: the latest pass's number; bit 32: the pass is open to
    /// workers; bits 33-63: the workers inside it.
    state: AtomicU64,
    /// The pass: valid while it is open or a worker is inside.
    job: std::cell::UnsafeCell<Option<Job>>,
    /// Only one pass at a time is broadcast (a game's systems may start
    /// passes from several threads; the others use the pool).
    busy: AtomicBool,
    /// A panic of a worker inside a pass, raised again on the thread that
    /// started it.
    panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// A pass with its lifetime erased; [`Spin::broadcast`] keeps it alive for as
/// long as anyone may call it.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn() + Sync + 'static));

const OPEN: u64 = 1 << 32;
const ONE_WORKER: u64 = 1 << 33;

// SAFETY: `job` is written only by the thread that holds `busy`, while no
// worker may read it (the pass is closed and nobody is inside), and read by
// workers only inside an open pass; the pass itself is `Sync`.
unsafe impl Sync for Spin {}
// SAFETY: as above; nothing in it belongs to a thread.
unsafe impl Send for Spin {}

impl Spin {
    /// Runs `job` on this thread and on every spinning worker that joins
    /// before it is done here; returns once all of them are done, or `false`
    /// at once (without running it) if another pass is being broadcast.
    fn broadcast(&self, job: &(dyn Fn() + Sync)) -> bool {
        if self.busy.swap(true, Ordering::Acquire) {
            return false;
        }
        // SAFETY: only the lifetime changes. Workers call the job only
        // between opening and the wait below for the last of them to leave,
        // all within this call, while `job` is borrowed.
        let erased = unsafe {
            std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync + 'static)>(
                job,
            )
        };
        // SAFETY: `busy` is ours, no pass is open and nobody is inside one
        // (the previous broadcast waited for them): nobody reads `job`.
        unsafe { *self.job.get() = Some(Job(erased)) };
        let number = (self.state.load(Ordering::Relaxed) as u32).wrapping_add(1);
        self.state
            .store(u64::from(number) | OPEN, Ordering::Release);
        /// Closes the pass and waits for the workers inside, even if the job
        /// panics here.
        struct Close<'a>(&'a Spin);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.state.fetch_and(!OPEN, Ordering::AcqRel);
                while self.0.state.load(Ordering::Acquire) >= ONE_WORKER {
                    std::hint::spin_loop();
                }
                if std::thread::panicking() {
                    // This thread's panic goes on; a worker's is dropped.
                    self.0
                        .panic
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                }
                self.0.busy.store(false, Ordering::Release);
            }
        }
        let close = Close(self);
        job();
        drop(close);
        let panic = self
            .panic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        true
    }

    /// Joins the open pass if there is one newer than `seen`, and runs it.
    /// Returns whether it ran one.
    fn join(&self, seen: &mut u32) -> bool {
        let now = self.state.load(Ordering::Acquire);
        if now & OPEN == 0 || now as u32 == *seen {
            return false;
        }
        if self
            .state
            .compare_exchange(now, now + ONE_WORKER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false; // closed or joined meanwhile: look again
        }
        *seen = now as u32;
        // SAFETY: the pass is open and this worker is counted inside it, so
        // `broadcast` is still waiting and the job is alive; it was written
        // before the pass opened (the acquire above sees it).
        let Some(Job(job)) = (unsafe { *self.job.get() }) else {
            unreachable!("an open pass has a job");
        };
        // SAFETY: as above.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job)() }));
        if let Err(payload) = result {
            *self
                .panic
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(payload);
        }
        self.state.fetch_sub(ONE_WORKER, Ordering::Release);
        true
    }
}

/// Due agents below which a step's passes are mostly too small to share: the
/// workers are then left asleep (spinning would only take a core from the
/// process's other threads).
pub const SPIN_MIN_DUE: usize = 2048;

/// How long a spinning worker goes on after [`release_workers`] before it
/// goes to sleep: steps that follow one another at once (fast mode) then
/// find it awake, and do not pay for waking it.
pub const SPIN_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Keeps a spinning task on each compute worker, when there is more than one
/// thread and enough due agents for the passes to be shared.
pub fn wake_workers(load: Res<ThreadLoad>, due: Res<DueAgents>) {
    if load.threads() > 1 && (due.len() >= SPIN_MIN_DUE || load.share_all) {
        load.wake_workers();
    }
}

/// Ends the handing of passes to the workers for this step; they go to sleep
/// once [`SPIN_LINGER`] has passed without another step.
pub fn release_workers(load: Res<ThreadLoad>) {
    load.release_workers();
}

impl ThreadLoad {
    /// Hands the passes that start from now on to spinning compute workers,
    /// starting the spinning tasks that are missing (one a worker; a task
    /// lingers [`SPIN_LINGER`] after [`release_workers`](Self::release_workers)
    /// before it ends).
    pub fn wake_workers(&self) {
        let Some(wanted) = self.threads().checked_sub(1).filter(|&w| w > 0) else {
            return;
        };
        let spin = &self.spin;
        spin.running.store(true, Ordering::SeqCst);
        let live = spin.spinners.load(Ordering::SeqCst);
        if live >= wanted {
            return;
        }
        spin.spinners.fetch_add(wanted - live, Ordering::SeqCst);
        let pool = bevy_tasks::ComputeTaskPool::get_or_init(Default::default);
        // Passes from the next one on: a task that starts late still joins
        // the pass under way.
        let seen = spin.state.load(Ordering::Relaxed) as u32;
        for _ in live..wanted {
            pool.spawn(std::sync::Arc::clone(&self.spin.0).spinning(seen))
                .detach();
        }
    }

    /// Stops handing passes to the workers; they sleep again once
    /// [`SPIN_LINGER`] has passed without a call to
    /// [`wake_workers`](Self::wake_workers).
    pub fn release_workers(&self) {
        self.spin.running.store(false, Ordering::SeqCst);
    }
}

/// [`ThreadLoad`]'s share of the [`Spin`]: when the resource goes (an app
/// dropped between [`wake_workers`](ThreadLoad::wake_workers) and
/// [`release_workers`](ThreadLoad::release_workers), by a panic mid-step), the
/// workers still go to sleep.
#[derive(Default)]
struct SpinHandle(std::sync::Arc<Spin>);

impl std::ops::Deref for SpinHandle {
    type Target = std::sync::Arc<Spin>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for SpinHandle {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

impl Spin {
    /// A worker's spinning task: joins every pass after the one numbered
    /// `seen`, and yields to the pool's other tasks in between.
    async fn spinning(self: std::sync::Arc<Self>, mut seen: u32) {
        let mut idle_since = None;
        loop {
            if self.join(&mut seen) {
                idle_since = None;
                continue;
            }
            if self.running.load(Ordering::SeqCst) {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= SPIN_LINGER {
                // Leave, unless a step woke the workers meanwhile (it counted
                // this task as live and started none in its place).
                self.spinners.fetch_sub(1, Ordering::SeqCst);
                if !self.running.load(Ordering::SeqCst) {
                    return;
                }
                self.spinners.fetch_add(1, Ordering::SeqCst);
                idle_since = None;
            }
            YieldNow(false).await;
        }
    }
}

/// A future that is pending once, waking itself: the executor runs whatever
/// else is ready before polling it again.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(chunks: &Chunks, lane: usize) -> Vec<Range<usize>> {
        std::iter::from_fn(|| chunks.claim(lane)).collect()
    }

    /// Sorted, the ranges cover `0..len` exactly once.
    fn assert_cover(mut ranges: Vec<Range<usize>>, len: usize) {
        ranges.sort_by_key(|r| r.start);
        let mut next = 0;
        for range in &ranges {
            assert_eq!(range.start, next, "{ranges:?}");
            assert!(!range.is_empty());
            next = range.end;
        }
        assert_eq!(next, len);
    }

    #[test]
    fn one_task_takes_every_index_once_in_chunks_of_at_most_min() {
        for (len, threads, min) in [
            (0, 2, 16),
            (1, 2, 16),
            (10_000, 2, 16),
            (999, 3, 7),
            (50, 1, 64),
            (5, 4, 1),
        ] {
            let chunks = Chunks::new(len, threads, min);
            let ranges = drain(&chunks, chunks.take_lane(0).unwrap());
            assert!(ranges.iter().all(|r| r.len() <= min), "{ranges:?}");
            // Its own lane first, in order, then stolen halves.
            if len > 0 {
                assert_eq!(ranges[0].start, 0);
            }
            assert!(
                ranges.len() <= len.div_ceil(min) + 2 * threads * 32,
                "{ranges:?}"
            );
            assert_cover(ranges, len);
        }
    }

    #[test]
    fn each_task_starts_on_its_own_lane_and_the_last_one_steals_the_rest() {
        let chunks = Chunks::new(1000, 2, 10);
        let (a, b) = (chunks.take_lane(0).unwrap(), chunks.take_lane(0).unwrap());
        assert_eq!((a, b), (0, 1), "the second task takes the free lane");
        assert_eq!(chunks.take_lane(1), None, "a lane has one task at most");
        assert_eq!(chunks.claim(a), Some(0..10));
        assert_eq!(chunks.claim(b), Some(500..510));
        assert_eq!(chunks.claim(a), Some(10..20));
        // Lane 0 finishes everything while lane 1's task does nothing more:
        // it steals the back half of lane 1 (755..1000), then the rest.
        let mut ranges = vec![0..10, 500..510, 10..20];
        let rest = drain(&chunks, a);
        assert_eq!(rest[48], 755..765, "the first stolen chunk: {rest:?}");
        ranges.extend(rest);
        assert_eq!(chunks.claim(b), None);
        assert_cover(ranges, 1000);
    }

    /// Four threads, on four lanes or on two (the two without a lane do
    /// nothing), take every index exactly once.
    #[test]
    fn chunks_claimed_from_many_threads_are_disjoint() {
        for (lanes, min) in [(4, 1), (4, 16), (4, 1000), (2, 1), (2, 16)] {
            let chunks = Chunks::new(100_000, lanes, min);
            let claimed: Vec<Vec<Range<usize>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let chunks = &chunks;
                        s.spawn(move || {
                            chunks
                                .take_lane(t)
                                .map_or_else(Vec::new, |lane| drain(chunks, lane))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_cover(claimed.into_iter().flatten().collect(), 100_000);
        }
    }

    /// Passes handed to spinning workers reach every item exactly once, pass
    /// after pass, and a panic inside one reaches the caller without leaving
    /// the workers stuck.
    #[test]
    fn passes_handed_to_spinning_workers_reach_every_item_once() {
        let load = ThreadLoad::with_threads(2);
        let mut items = vec![0u32; 20_000];
        for pass in 1..=50 {
            load.wake_workers();
            assert!(load.workers_awake());
            for_each_chunk(&mut items, &load, |x| *x += 1);
            assert!(items.iter().all(|&x| x == pass), "pass {pass}");
            if pass % 10 == 0 {
                let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    for_each_chunk(&mut items, &load, |x| {
                        assert!(*x != pass, "a failing pass");
                    });
                }));
                assert!(failed.is_err(), "the panic reaches the caller");
            }
            load.release_workers();
        }
    }

    /// Workers left spinning by a step with more threads join the passes of
    /// one with fewer: more tasks than lanes, and still every item once.
    #[test]
    fn more_spinning_workers_than_lanes_still_reach_every_item_once() {
        let mut load = ThreadLoad::with_threads(3);
        load.wake_workers();
        load.release_workers();
        load.set_threads(2);
        let mut items = vec![0u32; 20_000];
        for pass in 1..=50 {
            load.wake_workers();
            for_each_chunk(&mut items, &load, |x| *x += 1);
            assert!(items.iter().all(|&x| x == pass), "pass {pass}");
            load.release_workers();
        }
    }

    #[test]
    fn min_chunk_follows_the_measured_cost() {
        let mut tuner = BatchTuner::default();
        assert_eq!(tuner.min_chunk(), UNMEASURED_CHUNK);
        assert!(!tuner.worth_sharing(2 * UNMEASURED_CHUNK, true));
        assert!(tuner.worth_sharing(2 * UNMEASURED_CHUNK + 1, true));
        assert!(
            !tuner.worth_sharing(1_000_000, false),
            "an unmeasured pass never wakes a sleeping worker"
        );
        // 1000 agents in 100 µs on two threads: 200 ns an agent.
        tuner.observe(1000, 100_000, 2);
        assert_eq!(tuner.min_chunk(), 50);
        assert!(tuner.worth_sharing(250, true));
        assert!(!tuner.worth_sharing(249, true));
        // Sleeping workers: 500 µs of work or more.
        assert!(tuner.worth_sharing(2500, false));
        assert!(!tuner.worth_sharing(2499, false));
        // Cheap agents make long chunks; costly ones never fewer than MIN_CHUNK.
        let mut cheap = BatchTuner::default();
        cheap.observe(1000, 1000, 1);
        assert_eq!(cheap.min_chunk(), 10_000);
        let mut costly = BatchTuner::default();
        costly.observe(1000, 1_000_000_000, 1);
        assert_eq!(costly.min_chunk(), MIN_CHUNK);
    }
}
