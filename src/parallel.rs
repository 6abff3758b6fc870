//! Parallel iteration over the due agents, measured: how busy each thread is, and
//! batch sizes that follow the measured cost of the work.
//!
//! Every built-in per-agent system goes through [`for_each_due`]; a game's systems
//! can too. Batch sizes and timings change how the work is spread over threads,
//! never its results.

use std::collections::BTreeMap;
use std::time::Instant;

use bevy_ecs::entity::UniqueEntitySlice;
use bevy_ecs::prelude::*;
use bevy_ecs::query::{IterQueryData, QueryFilter};
use bevy_utils::Parallel;

use crate::agent::DueAgents;

/// Least wall time a batch of agents should take (nanoseconds): long enough that
/// handing it to another thread is worth it (waking a sleeping worker takes tens
/// of microseconds on a virtual machine).
pub const MIN_BATCH_NS: f64 = 100_000.0;
/// Batches per thread to aim for, so that threads finishing early find more work.
pub const BATCHES_PER_THREAD: usize = 4;
/// Batches never hold fewer agents than this.
pub const MIN_BATCH: usize = 64;
/// Batches never hold more agents than this.
pub const MAX_BATCH: usize = 16_384;

/// How many threads parallel loops spread over, and how busy each thread is in
/// them, for load reports.
#[derive(Resource, Default)]
pub struct ThreadLoad {
    threads: Option<usize>,
    local: Parallel<(Option<String>, u64)>,
    totals: BTreeMap<String, u64>,
    since: Option<Instant>,
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

    /// Threads a parallel loop spreads over: as set, or else as many as the
    /// compute pool has (Bevy's own rule for `par_iter`). One means loops run on
    /// the calling thread alone.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            bevy_tasks::ComputeTaskPool::get_or_init(Default::default).thread_num()
        })
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
    /// parallel batches, by thread name.
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

/// Chooses a system's batch size from what its agents have cost so far.
#[derive(Clone, Debug, Default)]
pub struct BatchTuner {
    /// Moving average of the wall time per agent, in nanoseconds.
    ns_per_agent: Option<f64>,
}

impl BatchTuner {
    /// The batch size for `agents` agents on `threads` threads: about
    /// [`BATCHES_PER_THREAD`] batches per thread, but none shorter than
    /// [`MIN_BATCH_NS`] at the measured cost per agent.
    pub fn batch_size(&self, agents: usize, threads: usize) -> usize {
        let worth = match self.ns_per_agent {
            Some(ns) if ns > 0.0 => (MIN_BATCH_NS / ns) as usize,
            _ => 512,
        };
        let balanced = agents.div_ceil(threads.max(1) * BATCHES_PER_THREAD);
        balanced.max(worth).clamp(MIN_BATCH, MAX_BATCH)
    }

    /// Takes in one pass: `agents` processed in `ns` nanoseconds of wall time on
    /// `threads` threads.
    pub fn observe(&mut self, agents: usize, ns: u64, threads: usize) {
        if agents < MIN_BATCH {
            return; // too few to tell anything
        }
        let per_agent = ns as f64 * threads.max(1) as f64 / agents as f64;
        self.ns_per_agent = Some(match self.ns_per_agent {
            Some(avg) => 0.9 * avg + 0.1 * per_agent,
            None => per_agent,
        });
    }
}

/// Records a batch's wall time on its thread when dropped.
struct BusyTimer<'a> {
    load: &'a ThreadLoad,
    started: Instant,
}

impl Drop for BusyTimer<'_> {
    fn drop(&mut self) {
        self.load.record(self.started.elapsed().as_nanos() as u64);
    }
}

/// Runs `f` on each agent of `due` that `query` matches, in parallel batches
/// sized by `tuner`, timing each batch on its thread into `load`.
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
    let pool = bevy_tasks::ComputeTaskPool::get_or_init(Default::default);
    let threads = load.threads();
    let batch = tuner.batch_size(due.len(), threads);
    let started = Instant::now();
    if threads <= 1 || due.len() <= batch {
        // One batch: run it here rather than wake a worker to run it while this
        // thread waits.
        let timer = BusyTimer {
            load,
            started: Instant::now(),
        };
        for (item, slot) in query.iter_many_unique_mut(due).zip(out) {
            if let Ok(item) = item {
                f(item, slot);
            }
        }
        drop(timer);
        tuner.observe(due.len(), started.elapsed().as_nanos() as u64, 1);
        return;
    }
    let query = &*query;
    let f = &f;
    pool.scope(|scope| {
        for (entities, slots) in due.chunks(batch).zip(out.chunks_mut(batch)) {
            // SAFETY: the batches are disjoint parts of a `UniqueEntitySlice`, so
            // no entity is in two batches and no two batches reach the same
            // component; the caller's `&mut Query` is held until every batch is
            // done, so nothing else reaches them either.
            let batch_query = unsafe { query.reborrow_unsafe() };
            scope.spawn(async move {
                let _timer = BusyTimer {
                    load,
                    started: Instant::now(),
                };
                for (item, slot) in batch_query.iter_many_unique_inner(entities).zip(slots) {
                    if let Ok(item) = item {
                        f(item, slot);
                    }
                }
            });
        }
    });
    let threads = threads.min(due.len().div_ceil(batch)).max(1);
    tuner.observe(due.len(), started.elapsed().as_nanos() as u64, threads);
}

/// Runs `f` on every element of `items`, in one batch per thread (for light,
/// even work over plain data, where finer batches would not pay).
pub fn for_each_chunk<T: Send>(
    items: &mut [T],
    load: &ThreadLoad,
    f: impl Fn(&mut T) + Send + Sync,
) {
    let pool = bevy_tasks::ComputeTaskPool::get_or_init(Default::default);
    let threads = load.threads();
    if threads <= 1 || items.len() < MIN_BATCH * threads {
        let _timer = BusyTimer {
            load,
            started: Instant::now(),
        };
        items.iter_mut().for_each(f);
        return;
    }
    let f = &f;
    pool.scope(|scope| {
        for chunk in items.chunks_mut(items.len().div_ceil(threads)) {
            scope.spawn(async move {
                let _timer = BusyTimer {
                    load,
                    started: Instant::now(),
                };
                chunk.iter_mut().for_each(f);
            });
        }
    });
}

/// Keeps the compute workers awake through a step's parallel passes.
///
/// A worker with nothing to do goes to sleep, and waking it again costs tens of
/// microseconds on a virtual machine: paid at every pass, that is a large share
/// of a pass of a few hundred microseconds. Between [`wake_workers`] and
/// [`release_workers`] each worker polls a task that yields at once whenever it
/// runs, so the worker stays awake and picks up the batches of the next pass
/// as soon as they are handed out.
#[derive(Resource, Default)]
pub struct WorkerSpin {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Due agents below which a step's passes mostly fit one batch each: the
/// workers are then left asleep (spinning would only take a core from the
/// process's other threads).
pub const SPIN_MIN_DUE: usize = 2048;

/// Starts a spinning task for each compute worker, when there is more than one
/// thread and enough due agents for the passes to be shared.
pub fn wake_workers(load: Res<ThreadLoad>, due: Res<DueAgents>, spin: Res<WorkerSpin>) {
    use std::sync::atomic::Ordering;
    if load.threads() <= 1 || due.len() < SPIN_MIN_DUE || spin.running.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let pool = bevy_tasks::ComputeTaskPool::get_or_init(Default::default);
    for _ in 1..load.threads() {
        let running = spin.running.clone();
        pool.spawn(async move {
            while running.load(Ordering::Acquire) {
                YieldNow(false).await;
            }
        })
        .detach();
    }
}

/// Lets the workers sleep again.
pub fn release_workers(spin: Res<WorkerSpin>) {
    spin.running
        .store(false, std::sync::atomic::Ordering::Release);
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
