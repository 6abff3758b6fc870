use bevy_app::prelude::*;
use bevy_ecs::entity::EntityHashSet;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::{GroupSpec, Scenario};
use crate::action::ConflictResolver;
use crate::agent::{Agent, AgentPool, AgentSystems, Body};
use crate::archetype::Archetypes;
use crate::clock::{SimClock, secs_to_sim};
use crate::hash::mix;
use crate::memory::Memory;
use crate::phases::ContinuumSystems;

/// Seeds an `App` from a [`Scenario`]: the seed, clock, world, pool, conflict
/// strategy and kinds as resources; the scenario's groups as spawn requests at
/// startup; its arrivals and departures at their times.
pub struct ScenarioPlugin {
    scenario: Scenario,
    schedule: Interned<dyn ScheduleLabel>,
}

impl ScenarioPlugin {
    /// Seeds the app from `scenario` (which should have been validated); its
    /// timeline runs in `FixedUpdate`.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            schedule: FixedUpdate.intern(),
        }
    }

    /// Runs the scenario's timeline in `schedule`, the one given to
    /// [`ContinuumPlugins::new`](crate::ContinuumPlugins::new).
    pub fn in_schedule(mut self, schedule: impl ScheduleLabel) -> Self {
        self.schedule = schedule.intern();
        self
    }
}

/// The scenario an app was built from, and how far its timeline has run.
#[derive(Resource, Clone, Debug)]
pub struct ActiveScenario {
    pub scenario: Scenario,
    /// Agents requested so far (numbers the random kind draws).
    requested: u64,
    /// Arrivals and departures already handled, in time order.
    arrivals_done: usize,
    departures_done: usize,
    /// The starting groups have been requested (a run resumed from a
    /// checkpoint starts with them in place).
    started: bool,
}

/// How far a scenario's timeline has run, as a checkpoint holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimelineImage {
    requested: u64,
    arrivals_done: usize,
    departures_done: usize,
}

impl ActiveScenario {
    /// How far the timeline has run.
    pub(crate) fn image(&self) -> TimelineImage {
        TimelineImage {
            requested: self.requested,
            arrivals_done: self.arrivals_done,
            departures_done: self.departures_done,
        }
    }

    /// Continues the timeline from where `image` left it: the starting
    /// groups are not requested again.
    pub(crate) fn resume_from(&mut self, image: TimelineImage) {
        self.requested = image.requested;
        self.arrivals_done = image.arrivals_done.min(self.scenario.arrivals.len());
        self.departures_done = image.departures_done.min(self.scenario.departures.len());
        self.started = true;
    }

    /// Requests `count` more agents now, shared among the starting groups in
    /// their proportions (as `--agents` scales them; a scenario that started
    /// empty shares them among its arrivals' groups): a run resumed from a
    /// checkpoint can branch into a larger population.
    pub fn request_more(&mut self, count: u64, archetypes: &Archetypes, pool: &mut AgentPool) {
        if count == 0 {
            return;
        }
        let mut extra = self.scenario.clone();
        extra.max_agents = None;
        if extra.groups.is_empty() {
            extra.groups = extra.arrivals.iter().map(|a| a.group.clone()).collect();
        }
        extra.arrivals.clear();
        extra.departures.clear();
        extra.scale_agents(count);
        let seed = self.scenario.seed;
        for group in &extra.groups {
            request_group(group, seed, &mut self.requested, archetypes, pool);
        }
    }
}

impl Plugin for ScenarioPlugin {
    fn build(&self, app: &mut App) {
        let s = &self.scenario;
        let mut timeline = s.clone();
        timeline.arrivals = s.arrival_waves();
        timeline.departures.sort_by(|a, b| a.at.total_cmp(&b.at));
        app.insert_resource(crate::clock::SimSeed(s.seed))
            .insert_resource(s.clock.clone())
            .insert_resource(s.world.clone())
            .insert_resource(AgentPool::new(s.max_agents()))
            .insert_resource(ConflictResolver {
                strategy: s.conflicts.into(),
                ..Default::default()
            })
            .insert_resource(s.archetypes())
            .insert_resource(s.memory.clone())
            .insert_resource(s.monitor.clone())
            .insert_resource(s.think.clone())
            .insert_resource(ActiveScenario {
                scenario: timeline,
                requested: 0,
                arrivals_done: 0,
                departures_done: 0,
                started: false,
            })
            .add_systems(Startup, request_groups)
            .add_systems(
                self.schedule,
                (
                    request_arrivals
                        .in_set(ContinuumSystems::Clock)
                        .before(AgentSystems::Admit),
                    schedule_departures
                        .in_set(ContinuumSystems::Pool)
                        .before(AgentSystems::Retire),
                ),
            );
    }
}

const KIND_SALT: u64 = 0x6b69_6e64_0000_0000;

/// Requests every agent of `group`. Agents' first ticks are spread evenly over
/// one period, so every step carries the same load.
fn request_group(
    group: &GroupSpec,
    seed: u64,
    counter: &mut u64,
    archetypes: &Archetypes,
    pool: &mut AgentPool,
) {
    let kinds: Vec<_> = group
        .kind
        .iter()
        .chain(&group.kinds)
        .filter_map(|k| archetypes.kind(k))
        .collect();
    if kinds.is_empty() {
        return;
    }
    for i in 0..group.count {
        let kind = kinds[(mix(seed ^ KIND_SALT, *counter) % kinds.len() as u64) as usize];
        *counter += 1;
        let mut bp = archetypes.blueprint(kind);
        bp.tick_hz = group.tick_hz.unwrap_or(bp.tick_hz);
        bp.priority = group.priority.unwrap_or(bp.priority);
        bp.body = Body {
            speed: group.speed.unwrap_or(bp.body.speed),
            perception_radius: group.perception_radius.unwrap_or(bp.body.perception_radius),
            ..bp.body
        };
        bp.lifetime = group.lifetime;
        bp.phase = Some(f64::from(i) / f64::from(group.count));
        if let Some(caps) = group.memory {
            bp = bp.with(Memory::with_base(caps));
        }
        pool.request(bp);
    }
}

/// Requests the starting groups, and the arrivals due at the very start, so
/// that they are admitted before the first step.
fn request_groups(
    clock: Res<SimClock>,
    mut active: ResMut<ActiveScenario>,
    archetypes: Res<Archetypes>,
    mut pool: ResMut<AgentPool>,
) {
    if active.started {
        return;
    }
    active.started = true;
    let state = &mut *active;
    for group in &state.scenario.groups {
        request_group(
            group,
            state.scenario.seed,
            &mut state.requested,
            &archetypes,
            &mut pool,
        );
    }
    request_due_arrivals(&clock, &mut active, &archetypes, &mut pool);
}

/// Requests the arrivals whose time has come (at the first step boundary at or
/// after their time).
fn request_arrivals(
    clock: Res<SimClock>,
    mut active: ResMut<ActiveScenario>,
    archetypes: Res<Archetypes>,
    mut pool: ResMut<AgentPool>,
) {
    request_due_arrivals(&clock, &mut active, &archetypes, &mut pool);
}

fn request_due_arrivals(
    clock: &SimClock,
    active: &mut ActiveScenario,
    archetypes: &Archetypes,
    pool: &mut AgentPool,
) {
    let now = clock.now();
    while let Some(arrival) = active.scenario.arrivals.get(active.arrivals_done) {
        if secs_to_sim(arrival.at) > now {
            break;
        }
        let seed = active.scenario.seed;
        request_group(
            &arrival.group,
            seed,
            &mut active.requested,
            archetypes,
            pool,
        );
        active.arrivals_done += 1;
    }
}

/// Asks the pool to retire the agents of departures whose time falls in this
/// step: the matching active agents with the lowest ids.
fn schedule_departures(
    clock: Res<SimClock>,
    mut active: ResMut<ActiveScenario>,
    archetypes: Res<Archetypes>,
    mut pool: ResMut<AgentPool>,
    agents: Query<(Entity, &Agent)>,
) {
    let end_of_step = clock.now() + clock.step_ns();
    let mut leaving = EntityHashSet::default();
    let mut order = Vec::new();
    while let Some(departure) = active.scenario.departures.get(active.departures_done) {
        if secs_to_sim(departure.at) > end_of_step {
            break;
        }
        let kind = departure.kind.as_deref().and_then(|k| archetypes.kind(k));
        let mut matching: Vec<_> = agents
            .iter()
            .filter(|(e, a)| {
                kind.is_none_or(|k| a.kind == k)
                    && departure.priority.is_none_or(|want| a.priority == want)
                    && !leaving.contains(e)
            })
            .map(|(e, a)| (a.id, e))
            .collect();
        matching.sort_unstable();
        for (_, entity) in matching.into_iter().take(departure.count as usize) {
            leaving.insert(entity);
            order.push(entity);
        }
        active.departures_done += 1;
    }
    for entity in order {
        pool.retire(entity);
    }
}
