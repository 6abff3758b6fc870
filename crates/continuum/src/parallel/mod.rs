//! Parallel iteration over the due agents, measured: how busy each thread is, and
//! chunk sizes that follow the measured cost of the work.
//!
//! Every built-in per-agent system goes through [`for_each_due`] or
//! [`for_each_due_into`]; a game's systems can too. A pass splits the agents
//! into one lane per thread; each thread works through its own lane in chunks
//! and then takes the back half of the fullest lane left ([`Chunks`]), so that
//! the threads finish a pass together, a worker that starts late only takes
//! less of it, and each thread keeps to the same agents from one pass to the
//! next. Lanes, chunk sizes and timings change how the work is spread over
//! threads, never its results.
//!
//! Passes run on Bevy's compute task pool, as tasks, which is what a game
//! expects of a library. The headless runner also opts into
//! [`ThreadLoad::spinning_workers`]: through a large step the compute workers
//! spin and each pass is handed to them through one atomic word, which saves
//! tens of microseconds a pass on a machine that does nothing else. Without the
//! crate's `parallel` feature every pass runs on the calling thread.
//!
//! The backend is this folder alone: `lanes.rs` splits a pass, `slice.rs`
//! lets the threads write disjoint parts of one output slice, `spin.rs` hands
//! a pass to spinning workers (the last two are the unsafe code; the crate's
//! `tests/parallel.rs` runs thousands of passes of random sizes on random
//! thread counts and counts every item).

mod lanes;
mod slice;
mod spin;

pub use lanes::Chunks;
pub use spin::SPIN_LINGER;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bevy_ecs::entity::UniqueEntitySlice;
use bevy_ecs::prelude::*;
use bevy_ecs::query::{IterQueryData, QueryFilter};
use bevy_utils::Parallel;

use lanes::home_lane;
use slice::SharedSlice;
use spin::SpinHandle;

/// Least estimated wall time of a pass (nanoseconds) for it to be shared: below
/// it, handing work to another thread costs more than it saves, and the pass
/// runs on the calling thread. Spinning workers take a pass within a poll, so
/// passes of 20 µs pay: at 10 000 agents on 2 threads, sharing the act and
/// learn passes too made steps about 8 % faster than with 50 µs.
pub const MIN_SHARED_NS: f64 = 20_000.0;
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
    /// Keep the compute workers spinning through large steps
    /// ([`spinning_workers`](Self::spinning_workers)).
    spinning: bool,
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
        self.spinning = true;
        self
    }

    /// Keeps the compute workers spinning through every step with
    /// [`SPIN_MIN_DUE`] due agents or more, and hands them each pass directly
    /// (they linger [`SPIN_LINGER`] after the step). Faster on a machine that
    /// runs nothing else, which is why the headless runner asks for it; a game
    /// leaves it off, so that its compute pool is never kept busy by waiting
    /// workers.
    pub fn spinning_workers(mut self) -> Self {
        self.spinning = true;
        self
    }

    /// Whether the compute workers spin through large steps
    /// ([`spinning_workers`](Self::spinning_workers)).
    pub fn spins(&self) -> bool {
        self.spinning
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
        if !cfg!(feature = "parallel") {
            return 1;
        }
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

    /// A step with `due` agents begins: with [`spinning_workers`](Self::spinning_workers)
    /// on, more than one thread and [`SPIN_MIN_DUE`] due agents or more (or
    /// [`sharing_every_pass`](Self::sharing_every_pass)), the compute workers
    /// are woken and spin until [`end_step`](Self::end_step).
    pub fn start_step(&self, due: usize) {
        if self.spinning && self.threads() > 1 && (due >= SPIN_MIN_DUE || self.share_all) {
            self.wake_workers();
        }
    }

    /// The step's passes are done: spinning workers go to sleep once
    /// [`SPIN_LINGER`] has passed without another step.
    pub fn end_step(&self) {
        self.release_workers();
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

/// Due agents below which a step's passes are mostly too small to share: the
/// workers are then left asleep (spinning would only take a core from the
/// process's other threads). At 10 000 agents ticking at 10 Hz on a 100 Hz
/// step (a thousand due a step, passes of 20 to 300 µs) spinning workers
/// make two threads about 1.5 times as fast as one; asleep, no faster.
pub const SPIN_MIN_DUE: usize = 512;
/// Least items for [`for_each_chunk`] to share its light, even work between
/// threads: below it the hand-over and the items' moves between the threads'
/// caches cost more than the work.
const MIN_SHARED_ITEMS: usize = 2048;

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
    for_each_run(items, load, |run| run.iter_mut().for_each(&f));
}

/// Like [`for_each_chunk`], but `f` gets a run of consecutive elements at a
/// time (the whole of `items`, or each chunk a thread claims): a loop over the
/// run can look ahead, to prefetch what a later element will touch.
pub fn for_each_run<T: Send>(
    items: &mut [T],
    load: &ThreadLoad,
    f: impl Fn(&mut [T]) + Send + Sync,
) {
    let threads = load.threads();
    let shared = load.share_all || (load.workers_awake() && items.len() >= MIN_SHARED_ITEMS);
    if threads <= 1 || !shared {
        let _timer = BusyTimer::start(load);
        f(items);
        return;
    }
    let chunks = Chunks::new(items.len(), threads, load.least_chunk(UNMEASURED_CHUNK));
    let shared = SharedSlice::new(items);
    let (f, shared) = (&f, &shared);
    share(threads, &chunks, load, || {
        move |range: Range<usize>| {
            // SAFETY: `claim` never hands out overlapping ranges, and `items`
            // is borrowed until every task is done.
            f(unsafe { shared.chunk(range) });
        }
    });
}

/// Runs a pass on `threads` threads, the calling thread taking part: each
/// runs a worker from `worker` on chunk after chunk of its lane of `chunks`
/// until none is left; returns when all are done.
///
/// While the compute workers spin ([`ThreadLoad::wake_workers`]) the pass is
/// handed to them directly (`Spin::broadcast`): they pick it up within a poll, where
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

impl ThreadLoad {
    /// Hands the passes that start from now on to spinning compute workers,
    /// starting the spinning tasks that are missing (one a worker; a task
    /// lingers [`SPIN_LINGER`] after [`release_workers`](Self::release_workers)
    /// before it ends).
    pub fn wake_workers(&self) {
        let Some(wanted) = self.threads().checked_sub(1).filter(|&w| w > 0) else {
            return;
        };
        spin::Spin::wake(&self.spin, wanted);
    }

    /// Stops handing passes to the workers; they sleep again once
    /// [`SPIN_LINGER`] has passed without a call to
    /// [`wake_workers`](Self::wake_workers).
    pub fn release_workers(&self) {
        self.spin.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside a game (the default) a large step never keeps the compute
    /// workers spinning; the headless runner's load does.
    #[test]
    fn only_a_load_that_asks_for_it_spins() {
        let game = ThreadLoad::with_threads(2);
        game.start_step(1_000_000);
        assert!(!game.workers_awake());
        let runner = ThreadLoad::with_threads(2).spinning_workers();
        runner.start_step(SPIN_MIN_DUE - 1);
        assert!(!runner.workers_awake(), "a small step leaves them asleep");
        runner.start_step(SPIN_MIN_DUE);
        assert_eq!(runner.workers_awake(), cfg!(feature = "parallel"));
        runner.end_step();
        assert!(!runner.workers_awake());
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
        assert!(tuner.worth_sharing(100, true));
        assert!(!tuner.worth_sharing(99, true));
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
