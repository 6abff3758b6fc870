//! The process and the machine: CPU and memory sampled with `sysinfo` on a
//! thread of its own, so that a refresh (a few hundred microseconds of reading
//! `/proc`) never stalls a step, and resident memory read on the spot. A leaf:
//! it imports nothing of the crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;

/// One reading of the process and the machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessSample {
    /// CPU used by the process since the previous reading, in percent of one
    /// core (200 % is two cores busy).
    pub cpu_percent: f32,
    /// Resident memory of the process.
    pub rss_bytes: u64,
    /// The machine's memory.
    pub total_memory: u64,
    pub available_memory: u64,
    /// Wall time one refresh took.
    pub refresh_cost: Duration,
    /// Readings taken so far.
    pub count: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    latest: Mutex<Option<ProcessSample>>,
}

/// Samples CPU and memory every `interval` of real time on a background thread;
/// systems read the latest sample without waiting.
#[derive(Resource)]
pub struct ProcessSampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
}

impl ProcessSampler {
    /// Starts sampling every `interval`.
    pub fn start(interval: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("continuum sampler".into())
            .spawn(move || sample_loop(&worker, interval))
            .ok();
        Self {
            shared,
            thread,
            interval,
        }
    }

    /// The latest sample, if one was taken.
    pub fn latest(&self) -> Option<ProcessSample> {
        *self.shared.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Drop for ProcessSampler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn sample_loop(shared: &Shared, interval: Duration) {
    let Ok(pid) = sysinfo::get_current_pid() else {
        return;
    };
    let Ok(mut system) = sysinfo::System::new() else {
        return;
    };
    let which = sysinfo::ProcessesToUpdate::Some(&[pid]);
    let refresh = sysinfo::ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory();
    let mut count = 0;
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        // The first reading comes at once (its CPU usage is 0: it only sets the
        // baseline); the others every interval.
        if !first {
            std::thread::park_timeout(interval);
        }
        first = false;
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        system.refresh_processes_specifics(which, true, refresh);
        system.refresh_memory();
        let cost = started.elapsed();
        let Some(process) = system.process(pid) else {
            continue;
        };
        count += 1;
        let sample = ProcessSample {
            cpu_percent: process.cpu_usage(),
            rss_bytes: process.memory(),
            total_memory: system.total_memory(),
            available_memory: system.available_memory(),
            refresh_cost: cost,
            count,
        };
        *shared.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
    }
}

/// The process's peak resident memory in bytes: `VmHWM` on Linux, otherwise the
/// current resident size as `sysinfo` reads it.
pub fn peak_rss_bytes() -> Option<u64> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = proc_status_kib(&status, "VmHWM:")
    {
        return Some(kib * 1024);
    }
    current_rss_bytes()
}

/// The process's current resident memory in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = proc_status_kib(&status, "VmRSS:")
    {
        return Some(kib * 1024);
    }
    let pid = sysinfo::get_current_pid().ok()?;
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    system.process(pid).map(|p| p.memory())
}

fn proc_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
