use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_time::prelude::*;
use std::time::Duration;

use super::{ClockSettings, PhaseTimes, SimClock, SimSeed, sim_running};
use crate::sets::ContinuumSystems;

/// Configures the phases of a step in the host schedule and counts the steps.
///
/// Every other Continuum plugin relies on the sets this plugin chains.
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
        app.init_resource::<SimClock>()
            .init_resource::<SimSeed>()
            .add_systems(PreStartup, apply_clock_settings)
            .add_systems(
                self.schedule,
                advance_step
                    .after(ContinuumSystems::Last)
                    .run_if(sim_running),
            );
        for set in ContinuumSystems::ALL {
            app.configure_sets(self.schedule, set.run_if(sim_running));
        }
        // Chained, in the order of `ALL`.
        for pair in ContinuumSystems::ALL.windows(2) {
            app.configure_sets(self.schedule, pair[1].after(pair[0]));
        }
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

/// Applies [`ClockSettings`] (if a scenario or game inserted them) to Bevy's clocks and
/// sets the step length of [`SimClock`]; without settings the clock adopts the
/// existing `Time<Fixed>` timestep.
fn apply_clock_settings(
    settings: Option<Res<ClockSettings>>,
    mut clock: ResMut<SimClock>,
    fixed: Option<ResMut<Time<Fixed>>>,
    virt: Option<ResMut<Time<Virtual>>>,
) {
    let step_ns = match (&settings, &fixed) {
        (Some(s), _) => s.step_ns(),
        (None, Some(f)) => f.timestep().as_nanos() as u64,
        (None, None) => ClockSettings::default().step_ns(),
    };
    let end_step = settings
        .as_ref()
        .and_then(|s| s.duration)
        .map(|secs| (secs * 1e9 / step_ns as f64).round() as u64);
    *clock = SimClock::new(step_ns, end_step);
    if let Some(mut fixed) = fixed {
        fixed.set_timestep(Duration::from_nanos(step_ns));
    }
    if let (Some(settings), Some(mut virt)) = (settings, virt) {
        virt.set_relative_speed_f64(settings.speed);
        // Let a slow step be caught up rather than silently dropping virtual time,
        // up to a second of it per frame.
        let step = Duration::from_nanos(step_ns);
        virt.set_max_delta(Duration::from_secs(1).max(step * 2));
    }
}

fn advance_step(mut clock: ResMut<SimClock>) {
    clock.advance();
}
