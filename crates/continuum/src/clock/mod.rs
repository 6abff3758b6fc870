//! Simulation time: the fixed step, its index, and the settings that pace it.
//!
//! Virtual time in Continuum is counted in whole nanoseconds from the start of the
//! run ([`SimTime`]). A step covers the half-open interval
//! `[step * step_ns, (step + 1) * step_ns)`; an agent is due in the step whose
//! interval contains its due time, and its actions carry that exact due time.
//! Integers keep the schedule exact: no drift, and the same results on every
//! machine.
//!
//! Bevy's clocks still drive the loop: `Time<Real>` is the wall clock,
//! `Time<Virtual>` can be paused and sped up, `Time<Fixed>` runs the host schedule
//! (by default `FixedUpdate`) once per step. [`SimClock`] counts the steps that
//! actually ran.

mod plugin;

pub use plugin::ClockPlugin;
pub(crate) use plugin::configure_phases;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

/// Virtual time in nanoseconds since the start of the run.
pub type SimTime = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Converts seconds of virtual time to [`SimTime`], rounding to the nearest nanosecond.
pub fn secs_to_sim(secs: f64) -> SimTime {
    (secs * NANOS_PER_SEC as f64).round().max(0.0) as SimTime
}

/// Converts [`SimTime`] to seconds.
pub fn sim_to_secs(t: SimTime) -> f64 {
    t as f64 / NANOS_PER_SEC as f64
}

/// The simulation clock's configuration (a scenario's `clock` section), read
/// at startup: the clock plugin sets `Time<Fixed>` to this step rate, and
/// [`SimClock`] stops after `duration`. How fast steps follow one another in
/// real time is Bevy's `Time<Virtual>` (its relative speed and pause) and the
/// runner's business, not the simulation's.
#[derive(Resource, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockSettings {
    /// Steps per virtual second.
    pub fixed_hz: f64,
    /// Virtual seconds to run; `None` (absent) runs until stopped.
    pub duration: Option<f64>,
}

impl Default for ClockSettings {
    fn default() -> Self {
        Self {
            fixed_hz: 100.0,
            duration: None,
        }
    }
}

impl ClockSettings {
    /// Length of one step in nanoseconds.
    pub fn step_ns(&self) -> u64 {
        secs_to_sim(1.0 / self.fixed_hz).max(1)
    }
}

/// The simulation's own step counter.
///
/// During a step, [`step`](Self::step) is the index of the step being run (the
/// first step is 0) and [`now`](Self::now) is the virtual time at its start. After
/// the step it is incremented, so between steps it equals the number of steps
/// completed.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct SimClock {
    step: u64,
    step_ns: u64,
    end_step: Option<u64>,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new(ClockSettings::default().step_ns(), None)
    }
}

impl SimClock {
    /// A clock at step 0 with the given step length, stopping after `end_step` steps.
    pub fn new(step_ns: u64, end_step: Option<u64>) -> Self {
        assert!(step_ns > 0, "a step must last at least one nanosecond");
        Self {
            step: 0,
            step_ns,
            end_step,
        }
    }

    /// Index of the current step (during a step) or steps completed (between steps).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Puts the clock at `step` steps completed (a run resumed from a
    /// checkpoint).
    pub(crate) fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    /// Length of one step in nanoseconds of virtual time.
    pub fn step_ns(&self) -> u64 {
        self.step_ns
    }

    /// Length of one step in seconds of virtual time.
    pub fn step_secs(&self) -> f64 {
        sim_to_secs(self.step_ns)
    }

    /// Virtual time at the start of the current step.
    pub fn now(&self) -> SimTime {
        self.step * self.step_ns
    }

    /// Virtual seconds simulated so far (between steps: all completed steps).
    pub fn elapsed_secs(&self) -> f64 {
        sim_to_secs(self.now())
    }

    /// The step at which the run ends, if it has a duration.
    pub fn end_step(&self) -> Option<u64> {
        self.end_step
    }

    /// Sets or clears the step at which the run ends.
    pub fn set_end_step(&mut self, end_step: Option<u64>) {
        self.end_step = end_step;
    }

    /// The step whose interval contains virtual time `t`.
    pub fn step_of(&self, t: SimTime) -> u64 {
        t / self.step_ns
    }

    /// Whether steps still run (the duration, if any, is not yet reached).
    pub fn is_running(&self) -> bool {
        self.end_step.is_none_or(|end| self.step < end)
    }

    /// Whether the run reached its duration.
    pub fn is_finished(&self) -> bool {
        !self.is_running()
    }

    /// Counts a step as done. The clock plugin does it after every step; a
    /// game that replaces that plugin does it itself.
    pub fn advance(&mut self) {
        self.step += 1;
    }
}

/// Whether steps follow real time: Bevy's clock reads the wall clock (or a
/// manual real clock), rather than advancing a fixed number of steps per
/// update as a fast run does. Load shedding acts only then.
pub fn paced_in_real_time(strategy: Option<&bevy_time::TimeUpdateStrategy>) -> bool {
    strategy.is_some_and(|s| !matches!(s, bevy_time::TimeUpdateStrategy::FixedTimesteps(_)))
}

/// Run condition: the simulation clock has not reached its end.
pub fn sim_running(clock: Res<SimClock>) -> bool {
    clock.is_running()
}

/// Wall time spent in each phase of the step ([`ContinuumSystems`] in order),
/// whoever's systems ran there: the latest step and the run's total. Diagnostics
/// only: nothing in the simulation reads it.
///
/// [`ContinuumSystems`]: crate::ContinuumSystems
#[derive(Resource, Clone, Debug, Default)]
pub struct PhaseTimes {
    /// Nanoseconds in the latest step, by phase.
    pub last_ns: [u64; 11],
    /// Nanoseconds since the start, by phase.
    pub total_ns: [u64; 11],
    mark: Option<std::time::Instant>,
}

impl PhaseTimes {
    /// Phase names, in order.
    pub const NAMES: [&'static str; 11] = [
        "first",
        "clock",
        "environment",
        "perceive",
        "think",
        "act",
        "resolve",
        "learn",
        "pool",
        "monitor",
        "last",
    ];

    pub(crate) fn lap(&mut self, phase: usize) {
        let now = std::time::Instant::now();
        // The first phase's lap starts the step; it has no time of its own to
        // measure from before it.
        let ns = match (phase, self.mark) {
            (0, _) | (_, None) => 0,
            (_, Some(mark)) => now.duration_since(mark).as_nanos() as u64,
        };
        self.last_ns[phase] = ns;
        self.total_ns[phase] += ns;
        self.mark = Some(now);
    }
}

/// The scenario's seed; every generator in the simulation is derived from it.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimSeed(pub u64);
