//! Running an `App` without a window: building it from a scenario with the
//! right task pools and clocks, and driving it in realtime or fast mode.
//!
//! The CLI is a thin shell over this module; a tool of your own can use it the
//! same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_app::PluginGroupBuilder;
use bevy_app::prelude::*;
use bevy_app::{RunFixedMainLoop, TaskPoolOptions, TaskPoolPlugin, TaskPoolThreadAssignmentPolicy};
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{ScheduleLabel, SingleThreadedExecutor};
use bevy_time::{Fixed, Time, TimePlugin, TimeUpdateStrategy, Virtual};

use crate::ContinuumPlugins;
use crate::clock::{SimClock, paced_in_real_time};
use crate::parallel::ThreadLoad;
use crate::scenario::{ClockMode, Pacing, Scenario, ScenarioPlugin};

/// Threads working on the simulation by default: one per core (the main thread
/// and `cores - 1` compute workers).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Task pools for `threads` threads working on the simulation: the main thread,
/// which takes part in every parallel loop it starts, and `threads - 1` compute
/// workers (at least one, which a single thread leaves idle), plus one thread
/// each for the I/O and async pools, which the simulation does not use. Bevy's
/// pools are process-wide: the first configuration in a process wins.
pub fn task_pool_options(threads: usize) -> TaskPoolOptions {
    let workers = threads.saturating_sub(1).max(1);
    let fixed = |n: usize| TaskPoolThreadAssignmentPolicy {
        min_threads: n,
        max_threads: n,
        percent: 1.0,
        on_thread_spawn: None,
        on_thread_destroy: None,
    };
    TaskPoolOptions {
        min_total_threads: workers + 2,
        max_total_threads: workers + 2,
        io: fixed(1),
        async_compute: fixed(1),
        compute: fixed(workers),
    }
}

/// The headless base `App`: task pools for `threads` threads (see
/// [`task_pool_options`]; `None`: Bevy's defaults), Bevy's clocks and all of
/// Continuum's plugins.
///
/// Every schedule of the main and fixed loops gets the single-threaded executor:
/// the phases are chained and Bevy's own systems are tiny, so running each system
/// as a task on the pool would only add thread wake-ups (about 15 per frame);
/// Continuum's systems parallelise inside themselves (`par_iter`, regions).
pub fn base_app(threads: Option<usize>) -> App {
    base_app_with(threads, ContinuumPlugins::default().build())
}

/// The headless base `App` with a plugin group of your choosing, e.g.
/// `ContinuumPlugins::default().build().disable::<ResourceMonitorPlugin>()`.
pub fn base_app_with(threads: Option<usize>, plugins: PluginGroupBuilder) -> App {
    let mut app = App::new();
    app.add_plugins(TaskPoolPlugin {
        task_pool_options: threads.map(task_pool_options).unwrap_or_default(),
    })
    .add_plugins(TimePlugin)
    .add_plugins(plugins);
    if let Some(threads) = threads {
        app.insert_resource(ThreadLoad::with_threads(threads).spinning_workers());
    }
    let loops: [Interned<dyn ScheduleLabel>; 11] = [
        First.intern(),
        PreUpdate.intern(),
        RunFixedMainLoop.intern(),
        Update.intern(),
        PostUpdate.intern(),
        Last.intern(),
        FixedFirst.intern(),
        FixedPreUpdate.intern(),
        FixedUpdate.intern(),
        FixedPostUpdate.intern(),
        FixedLast.intern(),
    ];
    for label in loops {
        app.edit_schedule(label, |schedule| {
            schedule.set_executor(SingleThreadedExecutor::new());
        });
    }
    // The flag's resource exists from the start, so that `run` sets it in
    // place: a resource first inserted once a million agents exist gets an
    // entity index past theirs, and its storage an index array as long (4 MB).
    app.init_resource::<StopFlag>()
        .add_systems(FixedLast, end_update_early);
    app
}

/// A stop flag the fixed loop reads between steps (see [`run`], which sets
/// it): once it is set, the update under way runs no further steps.
#[derive(Resource, Clone, Debug, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

/// Ends the update's run of fixed steps after the step that just ran when the
/// clock has reached its end or the [`StopFlag`] is set. A realtime update at
/// a high speed may owe thousands of steps (Bevy runs them all before the update
/// returns): without this, a stop would wait for all of them, and so would the
/// end of a run that finishes early in such an update.
fn end_update_early(
    clock: Option<Res<SimClock>>,
    stop: Option<Res<StopFlag>>,
    fixed: Option<ResMut<Time<Fixed>>>,
) {
    let finished = clock.is_some_and(|c| c.is_finished());
    let stopped = stop.is_some_and(|s| s.0.load(Ordering::Relaxed));
    if (finished || stopped)
        && let Some(mut fixed) = fixed
    {
        let owed = fixed.overstep();
        fixed.discard_overstep(owed);
    }
}

/// Builds the headless `App` for `scenario` on `threads` threads (the main
/// thread included).
pub fn build_app(scenario: Scenario, threads: usize) -> App {
    build_app_with(scenario, threads, ContinuumPlugins::default().build())
}

/// Builds the headless `App` for `scenario` with a plugin group of your choosing.
pub fn build_app_with(scenario: Scenario, threads: usize, plugins: PluginGroupBuilder) -> App {
    let mut app = base_app_with(Some(threads), plugins);
    app.add_plugins(ScenarioPlugin::new(scenario));
    app
}

/// The highest realtime speed (see [`scenario::MAX_SPEED`](crate::scenario::MAX_SPEED)):
/// [`set_pacing`] clamps to it; the command line and scenario files refuse more.
pub use crate::scenario::MAX_SPEED;

/// Paces `app` as `pacing` says, through Bevy's clocks: realtime reads the wall
/// clock and runs virtual time at `pacing.speed` (`Time<Virtual>`'s relative
/// speed, which a game or the dashboard may change later); fast advances
/// exactly one step per update (virtual speed 1, whatever the scenario says).
/// A speed above [`MAX_SPEED`] is taken as `MAX_SPEED`, a negative one as 0
/// (paused) and one that is not a number as 1: this never panics.
pub fn set_pacing(app: &mut App, pacing: Pacing) {
    let speed = if pacing.speed.is_nan() {
        1.0
    } else {
        pacing.speed.clamp(0.0, MAX_SPEED)
    };
    let (strategy, speed) = match pacing.mode {
        ClockMode::Realtime => (TimeUpdateStrategy::Automatic, speed),
        ClockMode::Fast => (TimeUpdateStrategy::FixedTimesteps(1), 1.0),
    };
    app.insert_resource(strategy);
    if let Some(mut virt) = app.world_mut().get_resource_mut::<Time<Virtual>>() {
        virt.set_relative_speed_f64(speed);
    }
}

/// The fast pacing: one step per update, as fast as the machine allows.
pub const FAST: Pacing = Pacing {
    mode: ClockMode::Fast,
    speed: 1.0,
};

/// Runs Bevy's plugin `finish`/`cleanup` and one priming update: startup systems
/// run, Bevy's real clock takes its first reading, and no step runs yet.
pub fn prime(app: &mut App) {
    app.finish();
    app.cleanup();
    app.update();
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEnd {
    /// Wall seconds from the first step to the end.
    pub wall_seconds: f64,
    /// Stopped by the `stop` flag before its duration.
    pub interrupted: bool,
}

/// Drives a primed `app` until its clock reaches the scenario's duration or
/// `stop` is set. `observe` is called about every `period` of real time, and once
/// more at the end: it can read the app (e.g. its
/// [`Metrics`](crate::metrics::Metrics)), take recorded rows, or set `stop`. In
/// realtime mode (when Bevy's clock follows the wall clock) the loop sleeps
/// until the next step is due, [`MAX_SLEEP`] at most at a time; in fast mode it
/// never sleeps. `stop` is read between steps (through a [`StopFlag`]), so a
/// stop takes effect after the step under way, however many steps an update
/// owes.
pub fn run(
    app: &mut App,
    stop: &Arc<AtomicBool>,
    period: Duration,
    mut observe: impl FnMut(&mut App),
) -> RunEnd {
    app.insert_resource(StopFlag(stop.clone()));
    let realtime = paced_in_real_time(app.world().get_resource::<TimeUpdateStrategy>());
    let start = Instant::now();
    let mut next_observation = period;
    let mut interrupted = false;
    loop {
        if app.world().resource::<SimClock>().is_finished() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        app.update();
        if start.elapsed() >= next_observation {
            observe(app);
            next_observation = start.elapsed() + period;
        }
        // Paused, even a fast run waits rather than spin on empty updates.
        if realtime || is_paused(app.world()) {
            std::thread::sleep(until_next_step(app));
        }
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    observe(app);
    RunEnd {
        wall_seconds,
        interrupted,
    }
}

/// The longest sleep of [`run`] between two updates: at a low speed the next
/// step may be minutes away, and the stop flag is read between updates.
pub const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Real time until the next fixed step is due (a few milliseconds while paused),
/// [`MAX_SLEEP`] at most.
fn until_next_step(app: &App) -> Duration {
    let world = app.world();
    let virt = world.resource::<Time<Virtual>>();
    if virt.is_paused() || virt.relative_speed_f64() <= 0.0 {
        return Duration::from_millis(5);
    }
    let fixed = world.resource::<Time<Fixed>>();
    let virtual_wait = fixed.timestep().saturating_sub(fixed.overstep());
    Duration::try_from_secs_f64(virtual_wait.as_secs_f64() / virt.relative_speed_f64())
        .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
}

/// A speed [`set_speed`] refuses: not a number, zero or negative (pause
/// instead), or above [`MAX_SPEED`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeedError(pub f64);

impl std::fmt::Display for SpeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected a positive speed factor of at most {MAX_SPEED:e}, got {}",
            self.0
        )
    }
}

impl std::error::Error for SpeedError {}

/// Sets the realtime speed while a run goes: `Time<Virtual>`'s relative speed,
/// which paces the steps in realtime mode and which the real-time ratio and the
/// overload monitor read. In fast mode (one step per update) the speed has no
/// effect on the steps; it is set all the same. Pausing is
/// `Time<Virtual>::pause()` (see [`pause`]).
pub fn set_speed(world: &mut World, speed: f64) -> Result<(), SpeedError> {
    if !(speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED) {
        return Err(SpeedError(speed));
    }
    if let Some(mut virt) = world.get_resource_mut::<Time<Virtual>>() {
        virt.set_relative_speed_f64(speed);
    }
    Ok(())
}

/// Pauses the run: `Time<Virtual>` stops, so no step runs until [`resume`],
/// in either mode, and the real time that passes meanwhile is not counted as lag.
pub fn pause(world: &mut World) {
    if let Some(mut virt) = world.get_resource_mut::<Time<Virtual>>() {
        virt.pause();
    }
}

/// Resumes a paused run where it stood: virtual time continues from the same
/// instant, with no steps owed for the time paused.
pub fn resume(world: &mut World) {
    if let Some(mut virt) = world.get_resource_mut::<Time<Virtual>>() {
        virt.unpause();
    }
}

/// Whether `Time<Virtual>` is paused.
pub fn is_paused(world: &World) -> bool {
    world
        .get_resource::<Time<Virtual>>()
        .is_some_and(|v| v.is_paused())
}

/// The relative speed of `Time<Virtual>` (1 without Bevy's clocks).
pub fn speed(world: &World) -> f64 {
    world
        .get_resource::<Time<Virtual>>()
        .map_or(1.0, |v| v.relative_speed_f64())
}
