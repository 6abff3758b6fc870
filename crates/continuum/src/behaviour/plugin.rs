use arrayvec::ArrayVec;
use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_math::Vec2;
use bevy_utils::Parallel;

use super::{Intent, Movement};
use crate::action::Action;
use crate::agent::*;
use crate::clock::{SimClock, configure_phases};
use crate::memory::{Memory, Perception, SharedCache, WORKING_MAX};
use crate::monitor::{Budget, LoadShedding, fair_share, work_allowance};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::phases::ContinuumSystems;
use crate::world::{SiteId, Sites, WorldMap};

/// Perception and movement for every agent: the generic part of a tick, for
/// every kind. Every agent gets an [`Intent`] (a required component of
/// `Agent`), which its kind's think fills and [`act`] carries out. Disable it
/// to drive agents entirely with systems of your own.
pub struct BehaviourPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl BehaviourPlugin {
    /// Runs perceive and act in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for BehaviourPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        // What perceive reads of the memory plugin's, so that it still runs
        // without it (the memory plugin may have required them already).
        let _ = app.try_register_required_components::<Agent, Perception>();
        let _ = app.try_register_required_components::<Agent, Memory>();
        // And the monitor's budget, which perception obeys and action spends
        // (without the monitor: the fair share).
        let _ = app.try_register_required_components::<Agent, Budget>();
        app.register_required_components::<Agent, Intent>()
            .add_message::<Action>()
            .init_resource::<Sites>()
            .init_resource::<WorldMap>()
            .init_resource::<SharedCache>()
            .init_resource::<AgentIndex>()
            .init_resource::<AgentPool>()
            .init_resource::<DueAgents>()
            .init_resource::<ThreadLoad>()
            .add_systems(
                self.schedule,
                (
                    perceive.in_set(ContinuumSystems::Perceive),
                    act.in_set(ContinuumSystems::Act),
                ),
            );
    }
}

/// Fills each due agent's [`Perception`] (its working memory) from the sites' and
/// agents' spatial indices: the nearest sites within its radius, up to its
/// working capacity (ties broken by id), and, for kinds that sense agents, how
/// many other agents are in range and the offset to the nearest. An agent
/// examines no more candidates than its [`Budget`] allows (the fair share
/// until the resource monitor gives it one).
pub fn perceive(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    sites: Res<Sites>,
    index: Res<AgentIndex>,
    pool: Res<AgentPool>,
    shedding: Option<Res<LoadShedding>>,
    mut agents: Query<(&Agent, &Budget, &Position, &Body, &mut Perception)>,
) {
    let active = pool.active();
    let fair = fair_share(&pool);
    let shedding = shedding.map(|s| s.clone()).unwrap_or_default();
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, budget, pos, body, mut perception) = item;
        let share = budget.share_or(fair);
        let allowance = work_allowance(share, active, shedding.scale(agent.shed_class()));
        let mut view = perception.cleared();
        let radius = body.perception_radius;
        if body.senses_agents {
            // The agents' cells are read after the sites': asked for now,
            // their misses overlap the sites'.
            index.0.prefetch_around(pos.0, radius);
        }
        let capacity = view.capacity();
        // Nearest first, ties by id; distances kept alongside while sorting.
        let mut nearest_sites = ArrayVec::<(f32, SiteId), WORKING_MAX>::new();
        view.examined =
            sites
                .index()
                .for_each_within_budget(pos.0, radius, allowance, |_, &site, dist2| {
                    insert_nearest(&mut nearest_sites, capacity, (dist2, site));
                });
        view.set_sites(nearest_sites.iter().map(|&(_, site)| site));
        if body.senses_agents {
            let mut nearest: Option<(f32, AgentId, Vec2)> = None;
            let mut neighbours = 0u32;
            let left = allowance.saturating_sub(view.examined);
            view.examined +=
                index
                    .0
                    .for_each_within_budget(pos.0, radius, left, |p, other, dist2| {
                        if other.id == agent.id {
                            return;
                        }
                        neighbours += 1;
                        let closer = nearest
                            .as_ref()
                            .is_none_or(|(d, id, _)| dist2 < *d || (dist2 == *d && other.id < *id));
                        if closer {
                            nearest = Some((dist2, other.id, p - pos.0));
                        }
                    });
            view.set_agents(neighbours, nearest.map(|(_, _, offset)| offset));
        }
        *perception = view;
    });
}

/// Inserts `seen` into a list kept sorted by (distance, id), at most `capacity` long.
fn insert_nearest(
    list: &mut ArrayVec<(f32, SiteId), WORKING_MAX>,
    capacity: usize,
    seen: (f32, SiteId),
) {
    let at = list
        .iter()
        .position(|s| seen.0 < s.0 || (seen.0 == s.0 && seen.1 < s.1))
        .unwrap_or(list.len());
    if at >= capacity {
        return;
    }
    if list.len() >= capacity {
        list.pop();
    }
    list.insert(at, seen);
}

/// A new velocity for a random walk with momentum: keep `momentum` of the current
/// heading, turn by up to `jitter` at random, and add `push` (a direction with
/// its strength, e.g. away from a neighbour).
pub fn wander(
    velocity: Vec2,
    speed: f32,
    momentum: f32,
    jitter: f32,
    push: Vec2,
    rng: &mut AgentRng,
) -> Vec2 {
    let heading = velocity.normalize_or_zero();
    let turn = Vec2::new(rng.signed(), rng.signed()) * jitter;
    let direction = heading * momentum + turn + push;
    direction.try_normalize().unwrap_or(heading) * speed
}

/// Moves each due agent according to its [`Intent`] for the length of its tick
/// interval, and emits its planned action, stamped with its exact due time.
/// The tick's cost in work units goes into the agent's [`Budget`]: the
/// candidates its perception examined, the sites it will consolidate, and
/// its action.
pub fn act(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    map: Res<WorldMap>,
    mut actions: MessageWriter<Action>,
    mut emitted: Local<Parallel<Vec<Action>>>,
    mut agents: Query<(
        Entity,
        &Agent,
        &Cadence,
        &Body,
        &Intent,
        &Perception,
        &mut Budget,
        &mut Position,
        &mut Velocity,
    )>,
) {
    let step_ns = clock.step_ns();
    let size = map.size();
    let emitted_ref = &*emitted;
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (entity, agent, cadence, body, intent, perception, mut budget, mut pos, mut vel) = item;
        budget.spend(
            perception.examined
                + perception.sites().len() as u32
                + 1
                + u32::from(intent.has_action()),
        );
        let dt = cadence.rate.period_ns(step_ns) as f32 * 1e-9;
        match intent.movement() {
            Movement::Stay => {}
            Movement::Drift => {
                let (p, v) = bounce(pos.0 + vel.0 * dt, vel.0, size);
                pos.0 = p;
                if v != vel.0 {
                    vel.0 = v;
                }
            }
            Movement::Toward(target) => {
                let to = target - pos.0;
                let distance = to.length();
                let stride = body.speed * dt;
                pos.0 = if distance <= stride {
                    target
                } else {
                    pos.0 + to / distance * stride
                };
                pos.0 = pos.0.clamp(Vec2::ZERO, size);
                vel.0 = to.normalize_or_zero() * body.speed;
            }
        }
        if let Some(planned) = intent.action() {
            emitted_ref.scope(|buffer| {
                buffer.push(
                    Action::new(entity, agent, cadence.due, planned.target, planned.kind)
                        .from(pos.0),
                );
            });
        }
    });
    // Thread order is lost here on purpose: the resolver sorts actions into a
    // total order before it looks at them.
    actions.write_batch(emitted.drain());
}

/// Reflects a position that left the world back in, turning the velocity.
fn bounce(mut p: Vec2, mut v: Vec2, size: Vec2) -> (Vec2, Vec2) {
    for axis in 0..2 {
        if p[axis] < 0.0 {
            p[axis] = -p[axis];
            v[axis] = v[axis].abs();
        } else if p[axis] > size[axis] {
            p[axis] = 2.0 * size[axis] - p[axis];
            v[axis] = -v[axis].abs();
        }
    }
    (p.clamp(Vec2::ZERO, size), v)
}
