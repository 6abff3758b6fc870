//! The hand-over of passes to spinning compute workers.
//!
//! A worker with nothing to do goes to sleep, and waking it again costs tens of
//! microseconds on a virtual machine: paid at every pass, that is a large share
//! of a pass of a few hundred microseconds. While a step hands passes over,
//! each compute worker runs a task that looks for a pass to join and otherwise
//! yields at once (so it still runs whatever else the pool is given), and a
//! pass is started by publishing it in one atomic word. The headless runner
//! opts into this ([`ThreadLoad::spinning_workers`]); inside a game, whose
//! compute pool has other work to do, passes start as ordinary tasks on it.
//!
//! [`ThreadLoad::spinning_workers`]: super::ThreadLoad::spinning_workers

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// How long a spinning worker goes on after
/// [`release_workers`](super::ThreadLoad::release_workers) before it
/// goes to sleep: steps that follow one another at once (fast mode) then
/// find it awake, and do not pay for waking it.
pub const SPIN_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

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
pub(super) struct Spin {
    /// Whether a step is handing passes to the workers (between
    /// [`wake_workers`] and [`release_workers`]).
    pub(super) running: AtomicBool,
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
    pub(super) fn broadcast(&self, job: &(dyn Fn() + Sync)) -> bool {
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

/// [`ThreadLoad`]'s share of the [`Spin`]: when the resource goes (an app
/// dropped between [`wake_workers`](ThreadLoad::wake_workers) and
/// [`release_workers`](ThreadLoad::release_workers), by a panic mid-step), the
/// workers still go to sleep.
#[derive(Default)]
pub(super) struct SpinHandle(Arc<Spin>);

impl std::ops::Deref for SpinHandle {
    type Target = Arc<Spin>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Spin {
    /// Hands the passes that start from now on to `wanted` spinning compute
    /// workers, starting the spinning tasks that are missing.
    pub(super) fn wake(spin: &Arc<Spin>, wanted: usize) {
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
            pool.spawn(Arc::clone(spin).spinning(seen)).detach();
        }
    }

    /// Stops handing passes to the workers; they sleep again once
    /// [`SPIN_LINGER`] has passed without another [`wake`](Self::wake).
    pub(super) fn release(&self) {
        self.running.store(false, Ordering::SeqCst);
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
    async fn spinning(self: Arc<Self>, mut seen: u32) {
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
