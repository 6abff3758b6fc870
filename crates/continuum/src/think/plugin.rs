use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{ScheduleLabel, SystemCondition};
use bevy_time::TimeUpdateStrategy;

use super::{ThinkDiagnostics, ThinkQueue, ThinkRegistry, ThinkSettings, ThinkSystems};
use crate::agent::{Agent, Cadence};
use crate::archetype::Archetypes;
use crate::clock::{SimClock, configure_phases, paced_in_real_time, secs_to_sim};
use crate::phases::{ContinuumStartup, ContinuumSystems};

/// Runs the kinds' asynchronous thinks: keeps the [`ThinkQueue`], matches the
/// registered thinks to the kinds ([`ThinkRegistry`]), starts waiting requests
/// in the free slots ([`ThinkSettings`]), collects results at their deadlines
/// and hands them to their agents, and counts it all
/// ([`ThinkDiagnostics`]). Without it, requests are never served.
pub struct ThinkPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ThinkPlugin {
    /// Runs the queue in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for ThinkPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.init_resource::<ThinkQueue>()
            .init_resource::<ThinkRegistry>()
            .init_resource::<ThinkSettings>()
            .init_resource::<ThinkDiagnostics>()
            .init_resource::<Archetypes>()
            .add_systems(Startup, resolve_kinds.after(ContinuumStartup::Kinds))
            .add_systems(
                self.schedule,
                (
                    resolve_kinds
                        .run_if(
                            resource_changed::<Archetypes>
                                .or_eager(resource_changed::<ThinkRegistry>),
                        )
                        .in_set(ContinuumSystems::First),
                    collect.in_set(ThinkSystems::Collect),
                    launch.in_set(ThinkSystems::Launch),
                ),
            );
    }
}

/// Matches the registered thinks to the kinds (without marking the registry
/// changed: only a registration or new kinds call for it again).
fn resolve_kinds(archetypes: Res<Archetypes>, mut registry: ResMut<ThinkRegistry>) {
    registry.bypass_change_detection().resolve(&archetypes);
}

/// Results due in this step are collected (waited for in fast mode) and
/// handed to their agents ticking in it at or after their deadlines.
fn collect(
    clock: Res<SimClock>,
    strategy: Option<Res<TimeUpdateStrategy>>,
    mut queue: ResMut<ThinkQueue>,
    mut diag: ResMut<ThinkDiagnostics>,
    agents: Query<(&Agent, &Cadence)>,
) {
    if queue.is_empty() {
        return;
    }
    let step_end = clock.now() + clock.step_ns();
    let wait = !paced_in_real_time(strategy.as_deref());
    queue.collect(step_end, wait, &mut diag);
    queue.deliver(
        step_end,
        |entity| agents.get(entity).ok().map(|(a, c)| (a.id, c.due)),
        &mut diag,
    );
}

/// The step's requests join the line, and waiting requests start in the free
/// slots, each with its kind's latency.
fn launch(
    clock: Res<SimClock>,
    settings: Res<ThinkSettings>,
    archetypes: Res<Archetypes>,
    registry: Res<ThinkRegistry>,
    mut queue: ResMut<ThinkQueue>,
    mut diag: ResMut<ThinkDiagnostics>,
    agents: Query<&Agent>,
) {
    queue.clear_delivered();
    queue.admit_requests();
    if queue.is_empty() && diag.in_flight == 0 && diag.waiting == 0 {
        return;
    }
    let latency = |kind| {
        archetypes
            .try_get(kind)
            .map_or(0, |a| secs_to_sim(f64::from(a.think_latency)))
    };
    let alive = |entity, id| agents.get(entity).is_ok_and(|a: &Agent| a.id == id);
    queue.launch(
        clock.now(),
        settings.max_in_flight,
        &registry,
        latency,
        alive,
        &mut diag,
    );
}
