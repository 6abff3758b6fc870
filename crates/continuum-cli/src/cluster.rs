//! Shares a list of tasks among the ranks of an MPI job (the `mpi` feature):
//! `mpirun -n R continuum ...` starts R copies of the command, and
//! [`Cluster::share`] hands each task to whichever rank is free next, so that
//! ranks with quick tasks take on more of them.
//!
//! Rank 0 leads: it hands out the task ids and receives every result, and it
//! also works, on a thread of its own. The other ranks ask rank 0 for a task,
//! run it and send back its result, which is also their request for the next
//! one. Only each process's main thread calls MPI (the `Funneled` threading
//! level); the work itself runs on another thread, so that the main thread
//! keeps answering messages and watching the stop flag while a task runs.
//!
//! The messages, each with a tag of its own:
//!
//! | tag | from | to | content | answered with |
//! | --- | --- | --- | --- | --- |
//! | `READY` | worker | rank 0 | nothing | `TASK` or `NO_MORE` |
//! | `RESULT` | worker | rank 0 | the task's id (8 bytes, little-endian), then its result | `TASK` or `NO_MORE` |
//! | `STOP` | worker | rank 0 | nothing: the worker's stop flag is set | nothing |
//! | `TASK` | rank 0 | worker | one id | a `RESULT` |
//! | `NO_MORE` | rank 0 | worker | nothing: every task is done | nothing |
//!
//! Rank 0 answers a request with `NO_MORE` only once every task that was
//! handed out is done, so that every rank returns from [`Cluster::share`] at
//! the same point, and no message is left in flight between two calls.
//!
//! Errors in MPI itself end the whole job: MPI's default error handler aborts
//! every rank, and `mpirun` reports which one failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::Duration;

use mpi::Tag;
use mpi::environment::{Threading, Universe};
use mpi::point_to_point::Status;
use mpi::topology::{Process, Rank, SimpleCommunicator};
use mpi::traits::*;

/// The rank that hands out the tasks and receives the results.
const LEADER: Rank = 0;

/// How long a main thread waits when nothing happened before it looks for
/// messages again: short beside a task, long enough that waiting costs next to
/// no processor time.
const POLL: Duration = Duration::from_millis(1);

/// Message tags (see the module's documentation).
mod tag {
    use mpi::Tag;

    /// Worker to rank 0, empty: the worker's first request for a task.
    pub const READY: Tag = 1;
    /// Worker to rank 0: a task's id and its result; also the request for the
    /// next task.
    pub const RESULT: Tag = 2;
    /// Worker to rank 0, empty: the worker's stop flag is set; not answered.
    pub const STOP: Tag = 3;
    /// Rank 0 to worker: the id of the worker's next task.
    pub const TASK: Tag = 4;
    /// Rank 0 to worker, empty: no task is left and every result is in.
    pub const NO_MORE: Tag = 5;
}

/// The MPI ranks this process belongs to, when it was launched by `mpirun`
/// with more than one rank.
///
/// Holding a `Cluster` keeps MPI initialised; dropping it finalises MPI, which
/// cannot be initialised again in the same process. Every rank of the job
/// must make the same calls to [`Cluster::share`], in the same order.
pub struct Cluster {
    /// Every rank of the job.
    world: SimpleCommunicator,
    /// This process's rank in `world`.
    rank: Rank,
    /// How many ranks `world` has (at least two).
    size: Rank,
    /// MPI's initialisation: dropping it finalises MPI, after `world`.
    _universe: Universe,
}

impl Cluster {
    /// Initialises MPI and gives the job's ranks, or `None` when this process
    /// is a rank of its own: not started by `mpirun` (Open MPI and MPICH then
    /// make it a job of one), or started with `-n 1`. The caller then does all
    /// the work alone. MPI is finalised before `None` is returned.
    ///
    /// Only the main thread may call MPI (the `Funneled` threading level):
    /// call `join` on the main thread, and use the `Cluster` there. A second
    /// call in the same process gives `None`, because MPI is initialised once
    /// per process.
    ///
    /// MPI's initialisation aborts the process when it fails (for example when
    /// `mpirun`'s daemon cannot be reached); that is MPI's way.
    pub fn join() -> Option<Cluster> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Funneled)?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        if size < 2 {
            return None;
        }
        if threading < Threading::Funneled {
            // Every implementation in use provides it; one that does not
            // still works as long as only the main thread calls MPI, which
            // this module ensures.
            tracing::warn!(
                "MPI provides no thread support (asked for Funneled): work runs on threads that never call MPI"
            );
        }
        Some(Cluster {
            world,
            rank,
            size,
            _universe: universe,
        })
    }

    /// This process's rank: 0 for the rank that hands out the tasks, then 1,
    /// 2 and so on.
    pub fn rank(&self) -> usize {
        to_index(self.rank)
    }

    /// How many ranks the job has (at least two).
    pub fn size(&self) -> usize {
        to_index(self.size)
    }

    /// Whether this process is rank 0, the one that hands out the tasks and
    /// receives their results.
    pub fn is_leader(&self) -> bool {
        self.rank == LEADER
    }

    /// Hands the task ids out to the ranks as they free up: each rank, rank 0
    /// included, runs `work(id)` for every id it is given, one at a time, and
    /// each result travels to rank 0, which calls `done(id, result)` for it,
    /// in the order the results arrive. Which rank runs which task depends on
    /// timing; every id in `tasks` (rank 0's list: the other ranks' lists are
    /// not read) is handed out once, in the list's order, and its result
    /// reaches `done` once. Rank 0 runs its own tasks on a separate thread,
    /// so that it keeps answering the other ranks meanwhile; `done` runs on
    /// the calling thread and holds up the other ranks while it runs, so it
    /// should be quick (record the result, write a line).
    ///
    /// Once `stop` is set, on any rank (by a signal handler, for instance),
    /// no further task is handed out; the tasks under way finish and their
    /// results are delivered. A stop set on another rank reaches rank 0
    /// within a few milliseconds while that rank runs a task, and as soon as
    /// it is handed one otherwise.
    ///
    /// Returns on every rank once every task handed out is done: on rank 0
    /// the number of results given to `done`, on the other ranks the number
    /// of tasks this rank ran. Every rank must call `share`; a rank that does
    /// not holds the others up until `mpirun` ends the job. `tasks` may be
    /// empty, or shorter than the number of ranks.
    ///
    /// # Panics
    ///
    /// A panic in `work` or `done` is raised again here, on that rank; the
    /// rank then ends without finalising MPI and `mpirun` ends the whole job.
    /// A result of 2 GiB or more cannot be sent (MPI counts in `int`) and
    /// panics.
    pub fn share<W, D>(&self, tasks: &[u64], work: W, done: D, stop: &AtomicBool) -> usize
    where
        W: Fn(u64) -> Vec<u8> + Send + Sync,
        D: FnMut(u64, Vec<u8>),
    {
        if self.is_leader() {
            self.lead(tasks, &work, done, stop)
        } else {
            self.follow(&work, stop)
        }
    }

    /// Rank 0's part of [`Cluster::share`]: hands out the tasks, runs some of
    /// them on its worker thread and delivers every result.
    fn lead<W, D>(&self, tasks: &[u64], work: &W, mut done: D, stop: &AtomicBool) -> usize
    where
        W: Fn(u64) -> Vec<u8> + Send + Sync,
        D: FnMut(u64, Vec<u8>),
    {
        let workers = to_index(self.size) - 1;
        let mut queue = Queue {
            tasks,
            next: 0,
            stopped: false,
        };
        thread::scope(|scope| {
            let local = Local::start(scope, work);
            let mut local_busy = false;
            let mut delivered = 0;
            // Ranks that asked for a task when none was left: they are told
            // `NO_MORE` once every result is in.
            let mut finished: Vec<Rank> = Vec::with_capacity(workers);
            loop {
                let mut busy = false;
                if stop.load(Ordering::Relaxed) {
                    queue.stopped = true;
                }
                if !local_busy && let Some(id) = queue.take() {
                    if !local.hand(id) {
                        break;
                    }
                    local_busy = true;
                    busy = true;
                }
                match local.results.try_recv() {
                    Ok((id, result)) => {
                        done(id, result);
                        delivered += 1;
                        local_busy = false;
                        busy = true;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => break,
                }
                while let Some((message, status)) =
                    self.world.any_process().immediate_matched_probe()
                {
                    busy = true;
                    let (bytes, _) = (message, status).matched_receive_vec::<u8>();
                    match status.tag() {
                        tag::STOP => {
                            queue.stopped = true;
                            continue;
                        }
                        tag::RESULT => {
                            let (id, result) = decode_result(bytes, &status);
                            done(id, result);
                            delivered += 1;
                        }
                        tag::READY => {}
                        other => unexpected(other, &status),
                    }
                    let from = status.source_rank();
                    if stop.load(Ordering::Relaxed) {
                        queue.stopped = true;
                    }
                    match queue.take() {
                        Some(id) => self
                            .world
                            .process_at_rank(from)
                            .send_with_tag(&id, tag::TASK),
                        None => finished.push(from),
                    }
                }
                // Every worker waits for its last answer, so none runs a
                // task: once rank 0's own task is done too, every result is in.
                if finished.len() == workers && !local_busy && queue.is_over() {
                    for &rank in &finished {
                        let nothing: &[u64] = &[];
                        self.world
                            .process_at_rank(rank)
                            .send_with_tag(nothing, tag::NO_MORE);
                    }
                    return delivered;
                }
                if !busy {
                    // Waits for rank 0's own task rather than sleeping, so
                    // its result is taken up as soon as it is there.
                    match local.results.recv_timeout(POLL) {
                        Ok((id, result)) => {
                            done(id, result);
                            delivered += 1;
                            local_busy = false;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            // The worker thread ended early: its `work` panicked.
            local.finish();
            delivered
        })
    }

    /// The part of [`Cluster::share`] of a rank other than 0: asks for tasks,
    /// runs them on a worker thread and sends their results, until rank 0 has
    /// none left.
    fn follow<W>(&self, work: &W, stop: &AtomicBool) -> usize
    where
        W: Fn(u64) -> Vec<u8> + Send + Sync,
    {
        let leader = self.world.process_at_rank(LEADER);
        thread::scope(|scope| {
            let local = Local::start(scope, work);
            let mut told_stop = false;
            let mut ran = 0;
            let nothing: &[u8] = &[];
            leader.send_with_tag(nothing, tag::READY);
            loop {
                let (ids, status) = wait_for(&leader);
                let id = match (status.tag(), ids.as_slice()) {
                    (tag::TASK, &[id]) => id,
                    (tag::NO_MORE, _) => return ran,
                    (other, _) => unexpected(other, &status),
                };
                if !local.hand(id) {
                    break;
                }
                // Watches the stop flag while the task runs: rank 0 learns of
                // it now, not at the end of the task. Telling rank 0 only while
                // holding a task means it is still listening: it waits for this
                // task's result, which follows.
                let mut tell_stop = || {
                    if !told_stop && stop.load(Ordering::Relaxed) {
                        leader.send_with_tag(nothing, tag::STOP);
                        told_stop = true;
                    }
                };
                let result = loop {
                    tell_stop();
                    match local.results.recv_timeout(POLL) {
                        Ok((_, result)) => break Some(result),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break None,
                    }
                };
                let Some(result) = result else { break };
                // The task itself may have set the flag (a signal arrived as
                // it ended): rank 0 must know before it answers the result.
                tell_stop();
                ran += 1;
                leader.send_with_tag(&encode_result(id, &result)[..], tag::RESULT);
            }
            // The worker thread ended early: its `work` panicked.
            local.finish();
            ran
        })
    }
}

/// The tasks rank 0 has still to hand out.
struct Queue<'a> {
    /// Every task, in the order they are handed out.
    tasks: &'a [u64],
    /// The index of the next task to hand out.
    next: usize,
    /// Whether a stop flag was seen: nothing more is handed out.
    stopped: bool,
}

impl Queue<'_> {
    /// The next task to hand out, if any.
    fn take(&mut self) -> Option<u64> {
        if self.stopped {
            return None;
        }
        let id = self.tasks.get(self.next).copied()?;
        self.next += 1;
        Some(id)
    }

    /// Whether no task will be handed out any more.
    fn is_over(&self) -> bool {
        self.stopped || self.next == self.tasks.len()
    }
}

/// A rank's worker thread: it runs the tasks its main thread hands it, one at
/// a time, and never calls MPI.
struct Local<'scope> {
    /// Task ids for the thread; dropping it ends the thread.
    tasks: Sender<u64>,
    /// Each task's id and result, as the thread finishes it.
    results: Receiver<(u64, Vec<u8>)>,
    /// The thread, to raise its panic again.
    thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> Local<'scope> {
    /// Starts the thread, which runs `work` for each id it is handed.
    fn start<'env, W>(scope: &'scope Scope<'scope, 'env>, work: &'env W) -> Local<'scope>
    where
        W: Fn(u64) -> Vec<u8> + Send + Sync,
    {
        let (tasks, inbox) = mpsc::channel::<u64>();
        let (outbox, results) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("cluster-work".into())
            .spawn_scoped(scope, move || {
                for id in inbox {
                    if outbox.send((id, work(id))).is_err() {
                        break;
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the thread that runs this rank's tasks: {e}"));
        Local {
            tasks,
            results,
            thread,
        }
    }

    /// Hands the thread a task; false when the thread has ended (its `work`
    /// panicked).
    fn hand(&self, id: u64) -> bool {
        self.tasks.send(id).is_ok()
    }

    /// Ends the thread and waits for it; raises its panic again, if it had
    /// one.
    fn finish(self) {
        drop(self.tasks);
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Waits for rank 0's answer to a request and receives it: the ids it holds
/// (one for `TASK`, none for `NO_MORE`) and its status. Probes without
/// blocking and sleeps in between, because a blocking MPI wait keeps a core
/// busy.
fn wait_for(leader: &Process<'_>) -> (Vec<u64>, Status) {
    loop {
        if let Some(message) = leader.immediate_matched_probe() {
            return message.matched_receive_vec::<u64>();
        }
        thread::sleep(POLL);
    }
}

/// A `RESULT` message: the task's id, little-endian, then its result.
fn encode_result(id: u64, result: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + result.len());
    message.extend_from_slice(&id.to_le_bytes());
    message.extend_from_slice(result);
    message
}

/// Splits a `RESULT` message into the task's id and its result.
fn decode_result(mut message: Vec<u8>, status: &Status) -> (u64, Vec<u8>) {
    let Some(id) = message.first_chunk::<8>().copied() else {
        panic!(
            "message from rank {} too short for a task's result ({} bytes): ranks running different programs?",
            status.source_rank(),
            message.len()
        );
    };
    message.drain(..8);
    (u64::from_le_bytes(id), message)
}

/// Fails on a message this module never sends: another program (or another
/// version of this one) shares the job.
fn unexpected(tag: Tag, status: &Status) -> ! {
    panic!(
        "unexpected message (tag {tag}) from rank {}: ranks running different programs?",
        status.source_rank()
    )
}

/// A rank or a number of ranks as an index; MPI never gives negative ones.
fn to_index(rank: Rank) -> usize {
    usize::try_from(rank).unwrap_or_default()
}
