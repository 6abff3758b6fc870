//! What a run has done so far, and how fast it goes.
//!
//! - [`RunStats`]: agent ticks (in total and by kind) and the wall time of every
//!   step, in a histogram.
//! - [`Metrics`]: a [`Snapshot`] of the run at the end of every step: totals,
//!   rates over a sliding window of real time, CPU and memory, step-time
//!   percentiles, the real-time ratio.
//! - [`ProcessSampler`]: CPU and memory readings from a thread of their own.
//!
//! The resolver keeps its own counters in
//! [`ResolverDiagnostics`](crate::action::ResolverDiagnostics).

mod live;
mod plugin;

pub use crate::process::{ProcessSample, ProcessSampler, current_rss_bytes, peak_rss_bytes};
pub use live::{Metrics, Snapshot, TRACKED_KINDS};
pub use plugin::{MetricsPlugin, MetricsSettings, MetricsSystems};

use std::time::Instant;

use bevy_ecs::prelude::*;
use hdrhistogram::Histogram;

/// Longest step the histogram records exactly (longer ones are clamped), in ns.
const MAX_STEP_NS: u64 = 60 * 1_000_000_000;

/// Counters and step times of the run, cumulative from its start.
#[derive(Resource, Clone, Debug)]
pub struct RunStats {
    /// Steps completed.
    pub steps: u64,
    /// Agent ticks (one agent running one perceive-think-act-learn cycle).
    pub agent_ticks: u64,
    /// Agent ticks by kind, indexed by kind.
    pub ticks_by_kind: Vec<u64>,
    /// Wall time of each step, in nanoseconds.
    pub step_times: Histogram<u64>,
    /// Wall time of the latest step, in nanoseconds.
    pub last_step_ns: u64,
    /// Wall time of all steps so far, in nanoseconds.
    pub busy_ns: u64,
    pub(crate) step_started: Option<Instant>,
}

/// The counters of [`RunStats`] as a checkpoint holds them (step times as the
/// histogram's recorded `(value, count)` pairs).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RunStatsImage {
    steps: u64,
    agent_ticks: u64,
    ticks_by_kind: Vec<u64>,
    busy_ns: u64,
    step_times: Vec<(u64, u64)>,
}

impl RunStats {
    /// The counters, for a checkpoint.
    pub(crate) fn image(&self) -> RunStatsImage {
        RunStatsImage {
            steps: self.steps,
            agent_ticks: self.agent_ticks,
            ticks_by_kind: self.ticks_by_kind.clone(),
            busy_ns: self.busy_ns,
            step_times: self
                .step_times
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// The counters a checkpoint held: the resumed run's report counts the
    /// whole run.
    pub(crate) fn from_image(image: RunStatsImage) -> Self {
        let mut stats = Self {
            steps: image.steps,
            agent_ticks: image.agent_ticks,
            ticks_by_kind: image.ticks_by_kind,
            busy_ns: image.busy_ns,
            ..Self::default()
        };
        for (value, count) in image.step_times {
            stats.step_times.saturating_record_n(value, count);
        }
        stats
    }
}

impl Default for RunStats {
    fn default() -> Self {
        Self {
            steps: 0,
            agent_ticks: 0,
            ticks_by_kind: Vec::new(),
            step_times: Histogram::new_with_bounds(1, MAX_STEP_NS, 3)
                .expect("static histogram bounds are valid"),
            last_step_ns: 0,
            busy_ns: 0,
            step_started: None,
        }
    }
}

/// Virtual seconds per (wall second × speed): 1.0 is exactly real time.
pub fn realtime_ratio(virtual_seconds: f64, wall_seconds: f64, speed: f64) -> f64 {
    if wall_seconds <= 0.0 {
        0.0
    } else {
        virtual_seconds / (wall_seconds * speed)
    }
}

impl RunStats {
    /// A step-time quantile in milliseconds (0 before the first step).
    pub fn step_ms_quantile(&self, q: f64) -> f64 {
        if self.step_times.is_empty() {
            0.0
        } else {
            self.step_times.value_at_quantile(q) as f64 / 1e6
        }
    }

    /// The longest step in milliseconds.
    pub fn step_ms_max(&self) -> f64 {
        self.step_times.max() as f64 / 1e6
    }
}

/// The wall clock as the run's pacing saw it: real seconds weighted by the
/// speed of `Time<Virtual>` at each update, and real seconds spent paused.
///
/// The real-time ratio divides virtual seconds by [`paced_seconds`](Self::paced_seconds),
/// so a run that changes speed, or stands paused for a while, still reads 1.0
/// when every step came on time: time paused is not lag. Updated once per
/// update (frame), after Bevy's clocks, from `Time<Real>`'s delta, so a manual
/// real clock (a test's `TimeUpdateStrategy::ManualDuration`) drives it exactly.
/// Run statistics, not simulation state: the digest and checkpoints ignore it.
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct PaceLog {
    /// Sum over updates of real seconds × relative speed, while not paused.
    pub paced_seconds: f64,
    /// Real seconds while `Time<Virtual>` was paused (or its speed was 0).
    pub paused_seconds: f64,
    /// Real seconds in total since the first update.
    pub wall_seconds: f64,
    /// The relative speed of `Time<Virtual>` at the latest update.
    pub speed: f64,
    /// Whether `Time<Virtual>` was paused at the latest update.
    pub paused: bool,
}

impl PaceLog {
    /// Takes in one update of `real_secs` real seconds at `speed`, `paused` or not.
    pub fn record(&mut self, real_secs: f64, speed: f64, paused: bool) {
        self.wall_seconds += real_secs;
        self.speed = speed;
        self.paused = paused || speed <= 0.0;
        if self.paused {
            self.paused_seconds += real_secs;
        } else {
            self.paced_seconds += real_secs * speed;
        }
    }

    /// Virtual seconds per paced second: 1.0 is exactly on time at the speeds
    /// asked for (0 before any paced time).
    pub fn realtime_ratio(&self, virtual_seconds: f64) -> f64 {
        if self.paced_seconds <= 0.0 {
            0.0
        } else {
            virtual_seconds / self.paced_seconds
        }
    }
}

#[cfg(test)]
mod pace_tests {
    use super::PaceLog;

    #[test]
    fn paused_time_is_not_paced_and_speed_weights_real_time() {
        let mut log = PaceLog::default();
        log.record(1.0, 1.0, false);
        log.record(2.0, 1.0, true);
        log.record(0.5, 10.0, false);
        assert_eq!(log.paced_seconds, 6.0);
        assert_eq!(log.paused_seconds, 2.0);
        assert_eq!(log.wall_seconds, 3.5);
        assert_eq!(log.speed, 10.0);
        assert!(!log.paused);
        assert_eq!(log.realtime_ratio(6.0), 1.0);
        log.record(1.0, 0.0, false);
        assert!(log.paused);
        assert_eq!(log.paused_seconds, 3.0);
    }
}
