use std::time::Instant;

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::{MAX_STEP_NS, RunStats};
use crate::agent::DueAgents;
use crate::sets::ContinuumSystems;

/// Keeps [`RunStats`]: agent ticks and step times.
pub struct MetricsPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl MetricsPlugin {
    /// Measures the steps run in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for MetricsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<RunStats>().add_systems(
            self.schedule,
            (
                start_step.in_set(ContinuumSystems::First),
                count_ticks.in_set(ContinuumSystems::Monitor),
                finish_step.in_set(ContinuumSystems::Last),
            ),
        );
    }
}

fn start_step(mut stats: ResMut<RunStats>) {
    stats.step_started = Some(Instant::now());
}

fn count_ticks(due: Res<DueAgents>, mut stats: ResMut<RunStats>) {
    stats.agent_ticks += due.len() as u64;
    for (kind, n) in due.counts_by_kind() {
        if stats.ticks_by_kind.len() <= kind.index() {
            stats.ticks_by_kind.resize(kind.index() + 1, 0);
        }
        stats.ticks_by_kind[kind.index()] += n as u64;
    }
}

fn finish_step(mut stats: ResMut<RunStats>) {
    stats.steps += 1;
    if let Some(started) = stats.step_started.take() {
        let ns = (started.elapsed().as_nanos() as u64).clamp(1, MAX_STEP_NS);
        stats.last_step_ns = ns;
        stats.step_times.saturating_record(ns);
    }
}
