use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_time::prelude::*;
use std::time::Duration;

use super::{ClockSettings, PhaseTimes, SimClock, SimSeed, sim_running};
use crate::phases::{ContinuumStartup, ContinuumSystems, LearnSystems, ThinkSystems};

/// Counts the steps, applies [`ClockSettings`] to Bevy's clocks, and times
/// each phase ([`PhaseTimes`]). Without it (a game with a clock of its own)
/// the phases still run, in order, but nothing advances [`SimClock`].
pub struct ClockPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ClockPlugin {
    /// Runs the simulation's step in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for ClockPlugin {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl Plugin for ClockPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.init_resource::<ClockSettings>()
            .add_systems(PreStartup, apply_clock_settings)
            .add_systems(
                self.schedule,
                advance_step
                    .after(ContinuumSystems::Last)
                    .run_if(sim_running),
            );
        // A lap of the phase clock after each phase: the sets are chained, so the
        // time since the previous lap is the phase's own.
        app.init_resource::<PhaseTimes>();
        for (i, set) in ContinuumSystems::ALL.into_iter().enumerate() {
            let lap = move |mut times: ResMut<PhaseTimes>| times.lap(i);
            let system = lap.after(set).run_if(sim_running);
            match ContinuumSystems::ALL.get(i + 1) {
                Some(next) => app.add_systems(self.schedule, system.before(*next)),
                None => app.add_systems(self.schedule, system.before(advance_step)),
            };
        }
    }
}

/// The schedules whose phases are configured.
#[derive(Resource, Default)]
struct ConfiguredPhases(Vec<Interned<dyn ScheduleLabel>>);

/// What every Continuum plugin stands on, set up once whichever plugin comes
/// first: the simulation clock and seed, the chained phases of a step in
/// `schedule` (running while the clock runs), the sub-phases of thinking and
/// learning, and
/// the startup sets. Each plugin calls it, so that any of them can be left out
/// of the group.
pub(crate) fn configure_phases(app: &mut App, schedule: Interned<dyn ScheduleLabel>) {
    app.init_resource::<SimClock>()
        .init_resource::<SimSeed>()
        .init_resource::<ConfiguredPhases>();
    let mut configured = app.world_mut().resource_mut::<ConfiguredPhases>();
    if configured.0.contains(&schedule) {
        return;
    }
    let first = configured.0.is_empty();
    configured.0.push(schedule);
    for set in ContinuumSystems::ALL {
        app.configure_sets(schedule, set.run_if(sim_running));
    }
    // Chained, in the order of `ALL`.
    for pair in ContinuumSystems::ALL.windows(2) {
        app.configure_sets(schedule, pair[1].after(pair[0]));
    }
    for set in LearnSystems::ALL {
        app.configure_sets(schedule, set.in_set(ContinuumSystems::Learn));
    }
    for pair in LearnSystems::ALL.windows(2) {
        app.configure_sets(schedule, pair[1].after(pair[0]));
    }
    for set in ThinkSystems::ALL {
        app.configure_sets(schedule, set.in_set(ContinuumSystems::Think));
    }
    for pair in ThinkSystems::ALL.windows(2) {
        app.configure_sets(schedule, pair[1].after(pair[0]));
    }
    if first {
        app.configure_sets(
            Startup,
            (ContinuumStartup::Kinds, ContinuumStartup::World).chain(),
        )
        .configure_sets(
            PostStartup,
            (ContinuumStartup::Plan, ContinuumStartup::Admit).chain(),
        );
    }
}

/// Applies [`ClockSettings`] to Bevy's fixed clock and sets the step length
/// and end of [`SimClock`]: the settings are the one source of the step rate
/// (100 Hz unless a scenario or a game says otherwise).
fn apply_clock_settings(
    settings: Res<ClockSettings>,
    mut clock: ResMut<SimClock>,
    fixed: Option<ResMut<Time<Fixed>>>,
    virt: Option<ResMut<Time<Virtual>>>,
) {
    let step_ns = settings.step_ns();
    let end_step = settings
        .duration
        .map(|secs| (secs * 1e9 / step_ns as f64).round() as u64);
    *clock = SimClock::new(step_ns, end_step);
    if let Some(mut fixed) = fixed {
        fixed.set_timestep(Duration::from_nanos(step_ns));
    }
    if let Some(mut virt) = virt {
        // Let a slow step be caught up rather than silently dropping virtual time,
        // up to a second of it per frame.
        let step = Duration::from_nanos(step_ns);
        virt.set_max_delta(Duration::from_secs(1).max(step * 2));
    }
}

fn advance_step(mut clock: ResMut<SimClock>) {
    clock.advance();
}
