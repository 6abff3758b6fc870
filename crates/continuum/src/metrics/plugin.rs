use std::time::{Duration, Instant};

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::live::Totals;
use super::*;
use crate::action::ResolverDiagnostics;
use crate::agent::{AgentPool, DueAgents};
use crate::clock::{SimClock, configure_phases};
use crate::memory::SharedCache;
use crate::phases::ContinuumStartup;
use crate::phases::ContinuumSystems;
use crate::think::ThinkDiagnostics;

/// How metrics are gathered.
#[derive(Resource, Clone, Debug, PartialEq)]
pub struct MetricsSettings {
    /// Real seconds over which rates are computed.
    pub window_secs: f64,
    /// How often CPU and memory are sampled (on a thread of their own); `None`
    /// does not sample.
    pub sample_process: Option<Duration>,
    /// Whether [`Metrics`] is updated every step (systems in
    /// [`MetricsSystems::Update`] run only then). [`RunStats`] always is.
    /// [`RunStats`] always are.
    pub live: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            window_secs: 5.0,
            sample_process: Some(Duration::from_secs(1)),
            live: true,
        }
    }
}

/// Keeps [`RunStats`] and [`Metrics`] and samples the process.
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

/// The metrics plugin's systems, for ordering against.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricsSystems {
    /// In [`ContinuumSystems::Last`]: [`Metrics`] takes in the step that ended
    /// (only while [`MetricsSettings::live`]). Systems that read the latest
    /// snapshot every step go after it.
    Update,
}

impl Plugin for MetricsPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.init_resource::<RunStats>()
            .init_resource::<MetricsSettings>()
            .init_resource::<DueAgents>()
            .init_resource::<AgentPool>()
            .init_resource::<PaceLog>()
            .add_systems(First, log_pace.after(bevy_time::TimeSystems))
            .add_systems(Startup, start_metrics.in_set(ContinuumStartup::World))
            .add_systems(
                self.schedule,
                (
                    start_step.in_set(ContinuumSystems::First),
                    gather_thread_load.in_set(ContinuumSystems::Monitor),
                    count_ticks.in_set(ContinuumSystems::Monitor),
                    finish_step
                        .in_set(ContinuumSystems::Last)
                        .before(MetricsSystems::Update),
                    update_metrics.in_set(MetricsSystems::Update),
                ),
            )
            .configure_sets(
                self.schedule,
                MetricsSystems::Update
                    .in_set(ContinuumSystems::Last)
                    .run_if(|s: Res<MetricsSettings>| s.live),
            );
    }
}

fn start_metrics(mut commands: Commands, settings: Res<MetricsSettings>) {
    commands.insert_resource(Metrics::new(settings.window_secs));
    if let Some(interval) = settings.sample_process {
        commands.insert_resource(ProcessSampler::start(interval));
    }
}

fn gather_thread_load(load: Option<ResMut<crate::parallel::ThreadLoad>>) {
    if let Some(mut load) = load {
        load.gather();
    }
}

/// Takes in this update's real time at the speed `Time<Virtual>` has after
/// Bevy's clocks moved (see [`PaceLog`]), and shows it in the live snapshot.
/// Paced in real time, that is `Time<Real>`'s delta (a test's manual real clock
/// drives it); in fast mode Bevy advances `Time<Real>` by the steps taken, so
/// the wall clock is read instead.
fn log_pace(
    real: Option<Res<bevy_time::Time<bevy_time::Real>>>,
    virt: Option<Res<bevy_time::Time<bevy_time::Virtual>>>,
    strategy: Option<Res<bevy_time::TimeUpdateStrategy>>,
    mut last_update: Local<Option<Instant>>,
    mut pace: ResMut<PaceLog>,
    metrics: Option<ResMut<Metrics>>,
) {
    let (Some(real), Some(virt)) = (real, virt) else {
        return;
    };
    let now = Instant::now();
    let wall = last_update.map_or(0.0, |last| (now - last).as_secs_f64());
    *last_update = Some(now);
    let real_secs = if crate::clock::paced_in_real_time(strategy.as_deref()) {
        real.delta_secs_f64()
    } else {
        wall
    };
    pace.record(real_secs, virt.relative_speed_f64(), virt.is_paused());
    if let Some(mut metrics) = metrics {
        metrics.set_pace(&pace);
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
        stats.busy_ns += ns;
        stats.step_times.saturating_record(ns);
    }
}

/// Takes in this step's counters (a few dozen words: negligible next to a step).
fn update_metrics(
    clock: Res<SimClock>,
    stats: Res<RunStats>,
    diag: Option<Res<ResolverDiagnostics>>,
    pool: Res<AgentPool>,
    cache: Option<Res<SharedCache>>,
    sampler: Option<Res<ProcessSampler>>,
    pace: Res<PaceLog>,
    thinks: Option<Res<ThinkDiagnostics>>,
    mut metrics: ResMut<Metrics>,
) {
    let wall = metrics.wall_now();
    // `clock.step()` is still this step's index: the step counter advances after.
    let virtual_secs = (clock.step() + 1) as f64 * clock.step_secs();
    let cache = cache.map(|c| c.stats()).unwrap_or_default();
    let diag = diag.map(|d| d.clone()).unwrap_or_default();
    let mut by_kind = [0; TRACKED_KINDS];
    for (slot, n) in by_kind.iter_mut().zip(&stats.ticks_by_kind) {
        *slot = *n;
    }
    let totals = Totals {
        wall,
        virtual_secs,
        agent_ticks: stats.agent_ticks,
        submitted: diag.submitted,
        applied: diag.applied,
        rejected: diag.rejected,
        conflicts: diag.conflicts,
        hits: cache.hits,
        misses: cache.misses,
        by_kind,
    };
    let sample = sampler.and_then(|s| s.latest());
    // Percentiles walk the histogram: only as often as the window takes a sample.
    let (p50, p99, max) = if metrics.samples_at(wall) {
        (
            stats.step_ms_quantile(0.5),
            stats.step_ms_quantile(0.99),
            stats.step_ms_max(),
        )
    } else {
        let s = metrics.snapshot();
        (s.step_ms_p50, s.step_ms_p99, s.step_ms_max)
    };
    let snapshot = Snapshot {
        steps: stats.steps,
        virtual_seconds: virtual_secs,
        wall_seconds: wall,
        agents_active: pool.active(),
        agents_queued: pool.queued(),
        agents_retired: pool.retired(),
        agent_ticks: stats.agent_ticks,
        actions_submitted: diag.submitted,
        actions_applied: diag.applied,
        actions_rejected: diag.rejected,
        conflicts: diag.conflicts,
        cache_evictions: cache.evictions,
        cpu_percent: sample.map_or(0.0, |s| f64::from(s.cpu_percent)),
        rss_bytes: sample.map_or(0, |s| s.rss_bytes),
        step_ms_p50: p50,
        step_ms_p99: p99,
        step_ms_max: max,
        realtime_ratio: pace.realtime_ratio(virtual_secs),
        speed: pace.speed,
        paused: pace.paused,
        paused_wall_seconds: pace.paused_seconds,
        ..Default::default()
    };
    let snapshot = match thinks {
        Some(t) => Snapshot {
            thinks_started: t.started,
            thinks_finished: t.finished,
            thinks_late: t.late,
            thinks_waiting: t.waiting,
            thinks_in_flight: t.in_flight,
            ..snapshot
        },
        None => snapshot,
    };
    metrics.record(totals, snapshot);
}
