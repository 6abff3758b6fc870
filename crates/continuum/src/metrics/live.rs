//! Live metrics: totals and rates over a sliding window of real time, updated at
//! the end of every step.

use std::collections::VecDeque;
use std::time::Instant;

use bevy_ecs::prelude::*;
use serde::Serialize;

/// Kinds whose tick rates are tracked separately (kinds beyond are still counted
/// in the totals).
pub const TRACKED_KINDS: usize = 8;

/// Samples at least this far apart (real seconds) are kept in the window, so a
/// fast run's many steps cost no more memory than a slow one's.
const SAMPLE_SPACING: f64 = 0.01;

/// Cumulative counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Totals {
    pub wall: f64,
    pub virtual_secs: f64,
    pub agent_ticks: u64,
    pub submitted: u64,
    pub applied: u64,
    pub rejected: u64,
    pub conflicts: u64,
    pub hits: u64,
    pub misses: u64,
    pub by_kind: [u64; TRACKED_KINDS],
}

/// The figures of the run at the end of the latest step. Totals count from the
/// start; rates are per real second over the sliding window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub steps: u64,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
    pub agents_active: usize,
    pub agents_queued: usize,
    pub agents_retired: u64,
    pub agent_ticks: u64,
    pub agent_ticks_per_sec: f64,
    pub actions_submitted: u64,
    pub actions_applied: u64,
    pub actions_rejected: u64,
    pub actions_per_sec: f64,
    pub applied_per_sec: f64,
    pub rejected_per_sec: f64,
    pub conflicts: u64,
    pub conflicts_per_sec: f64,
    /// Shared cache hits over reads in the window (0 without reads).
    pub cache_hit_rate: f64,
    /// Facts the shared cache evicted since the start (its room was full).
    pub cache_evictions: u64,
    /// Process CPU in percent of one core, from the latest sample (0 if none).
    pub cpu_percent: f64,
    /// Resident memory from the latest sample (0 if none).
    pub rss_bytes: u64,
    pub step_ms_p50: f64,
    pub step_ms_p99: f64,
    pub step_ms_max: f64,
    /// Virtual seconds per paced second since the first update: real seconds
    /// weighted by the speed of each moment, time paused left out (see
    /// [`PaceLog`](super::PaceLog)). 1.0 is exactly on time.
    pub realtime_ratio: f64,
    /// The relative speed of `Time<Virtual>` (1 in fast mode).
    pub speed: f64,
    /// Whether `Time<Virtual>` is paused.
    pub paused: bool,
    /// Real seconds spent paused since the start.
    pub paused_wall_seconds: f64,
    /// Agent ticks per real second, by kind (the first [`TRACKED_KINDS`] kinds).
    pub ticks_per_sec_by_kind: Vec<f64>,
    /// Asynchronous thinks started, collected and late (real time) so far
    /// (see [`crate::think`]).
    pub thinks_started: u64,
    pub thinks_finished: u64,
    pub thinks_late: u64,
    /// Asynchronous thinks waiting for a slot and in flight, now.
    pub thinks_waiting: usize,
    pub thinks_in_flight: usize,
}

/// Live metrics any game or test can read. See [`Snapshot`].
#[derive(Resource)]
pub struct Metrics {
    /// Length of the sliding window, in real seconds.
    pub window_secs: f64,
    started: Option<Instant>,
    window: VecDeque<Totals>,
    snapshot: Snapshot,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(5.0)
    }
}

impl Metrics {
    /// Metrics with rates over the last `window_secs` real seconds.
    pub fn new(window_secs: f64) -> Self {
        Self {
            window_secs,
            started: None,
            window: VecDeque::new(),
            snapshot: Snapshot::default(),
        }
    }

    /// The figures at the end of the latest step.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Takes in the pace of the latest update: the speed, whether the run is
    /// paused and the time paused move on while no step runs (a paused run
    /// takes none), so they are refreshed every update, not every step.
    pub(crate) fn set_pace(&mut self, pace: &super::PaceLog) {
        self.snapshot.speed = pace.speed;
        self.snapshot.paused = pace.paused;
        self.snapshot.paused_wall_seconds = pace.paused_seconds;
    }

    /// Whether a step ending at `wall` adds a sample to the window (and is worth
    /// recomputing the slower figures, such as step-time percentiles, for).
    pub(crate) fn samples_at(&self, wall: f64) -> bool {
        self.window
            .back()
            .is_none_or(|last| wall - last.wall >= SAMPLE_SPACING)
    }

    /// Real seconds since the first step.
    pub(crate) fn wall_now(&mut self) -> f64 {
        self.started
            .get_or_insert_with(Instant::now)
            .elapsed()
            .as_secs_f64()
    }

    /// Takes in the counters at the end of a step and recomputes the rates.
    pub(crate) fn record(&mut self, totals: Totals, mut snapshot: Snapshot) {
        if self.samples_at(totals.wall) {
            self.window.push_back(totals);
        }
        // Keep one sample at or before the start of the window as the base.
        while self.window.len() > 2 && totals.wall - self.window[1].wall >= self.window_secs {
            self.window.pop_front();
        }
        let base = self.window.front().copied().unwrap_or_default();
        let dt = totals.wall - base.wall;
        let rate = |now: u64, then: u64| {
            if dt > 0.0 {
                (now - then) as f64 / dt
            } else {
                0.0
            }
        };
        snapshot.agent_ticks_per_sec = rate(totals.agent_ticks, base.agent_ticks);
        snapshot.actions_per_sec = rate(totals.submitted, base.submitted);
        snapshot.applied_per_sec = rate(totals.applied, base.applied);
        snapshot.rejected_per_sec = rate(totals.rejected, base.rejected);
        snapshot.conflicts_per_sec = rate(totals.conflicts, base.conflicts);
        let reads = (totals.hits + totals.misses) - (base.hits + base.misses);
        snapshot.cache_hit_rate = if reads > 0 {
            (totals.hits - base.hits) as f64 / reads as f64
        } else {
            0.0
        };
        snapshot.ticks_per_sec_by_kind = totals
            .by_kind
            .iter()
            .zip(base.by_kind)
            .map(|(&now, then)| rate(now, then))
            .collect();
        self.snapshot = snapshot;
    }
}
