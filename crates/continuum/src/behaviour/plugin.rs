use arrayvec::ArrayVec;
use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_math::Vec2;
use bevy_utils::Parallel;

use super::{Intent, Movement, analyzer, controller, explorer, planner};
use crate::action::{Action, PlannedAction};
use crate::agent::*;
use crate::archetype::{Archetypes, Behaviour};
use crate::clock::{SimClock, configure_phases};
use crate::memory::{Memory, Perception, Publication, SharedCache, WORKING_MAX};
use crate::monitor::{Budget, LoadShedding, fair_share, work_allowance};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::phases::{ContinuumSystems, LearnSystems, ThinkSystems};
use crate::think::{ThinkQueue, ThinkRegistry};
use crate::world::{SiteId, Sites, WorldMap};

/// Perception, movement and action emission for every agent, and the think and
/// learn systems of the built-in kinds. Every agent gets an [`Intent`] (a
/// required component of `Agent`). Disable it to drive agents entirely with
/// systems of your own.
pub struct BehaviourPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl BehaviourPlugin {
    /// Runs the behaviours in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for BehaviourPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        // What the behaviours read of the memory plugin's, so that they still
        // run without it (the memory plugin may have required them already).
        let _ = app.try_register_required_components::<Agent, Perception>();
        let _ = app.try_register_required_components::<Agent, Memory>();
        // And the monitor's budget, which perception obeys and action spends
        // (without the monitor: the fair share).
        let _ = app.try_register_required_components::<Agent, Budget>();
        app.register_required_components::<Agent, Intent>()
            .add_message::<Action>()
            .add_message::<Publication>()
            .init_resource::<Archetypes>()
            .init_resource::<Sites>()
            .init_resource::<WorldMap>()
            .init_resource::<SharedCache>()
            .init_resource::<AgentIndex>()
            .init_resource::<AgentPool>()
            .init_resource::<DueAgents>()
            .init_resource::<crate::action::InformedAgents>()
            .init_resource::<ThreadLoad>()
            .init_resource::<ThinkQueue>()
            .init_resource::<ThinkRegistry>()
            .add_systems(AgentsAdmitted, planner::give_routes)
            .add_systems(
                self.schedule,
                (
                    perceive.in_set(ContinuumSystems::Perceive),
                    (think, planner::think).chain().in_set(ThinkSystems::Decide),
                    act.in_set(ContinuumSystems::Act),
                    (
                        explorer::learn,
                        analyzer::learn,
                        controller::learn,
                        planner::learn,
                    )
                        .chain()
                        .in_set(LearnSystems::Behaviours),
                ),
            );
        // Planners plan as an asynchronous think (served by the think plugin).
        app.world_mut()
            .resource_mut::<ThinkRegistry>()
            .register_matching(
                |a| matches!(a.behaviour, Behaviour::Planner(_)),
                planner::RoutePlanner,
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
    let cpu_scale = shedding.map_or([1.0; 3], |s| s.cpu_scale);
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, budget, pos, body, mut perception) = item;
        let share = budget.share_or(fair);
        let allowance = work_allowance(share, active, cpu_scale[agent.shed_class()]);
        let mut view = perception.cleared();
        let radius = body.perception_radius;
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

/// What the built-in kinds read besides the agent itself.
pub(super) struct ThinkContext<'a> {
    pub step: u64,
    pub reach: f32,
    pub sites: &'a Sites,
    pub map: &'a WorldMap,
    pub cache: &'a SharedCache,
    /// What thinkers publish in the shared cache besides their actions'
    /// results (explorers' ground marks), gathered per thread.
    pub publish: &'a Parallel<Vec<Publication>>,
}

/// The thinking agent: what it reads and what it decides.
pub(super) struct Thinker<'a> {
    pub id: AgentId,
    pub perception: &'a Perception,
    pub body: &'a Body,
    pub cadence: &'a Cadence,
    pub pos: &'a Position,
    pub memory: &'a Memory,
    pub velocity: &'a mut Velocity,
    pub intent: &'a mut Intent,
    pub rng: &'a mut AgentRng,
}

/// Each due agent of a built-in kind decides: its [`Intent`] (and, when it
/// wanders, its [`Velocity`]) from its perception, memory and the shared cache,
/// by its kind's behaviour. One pass over every due agent, whatever its kind:
/// each pass costs a hand-over to the other threads.
pub fn think(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    archetypes: Res<Archetypes>,
    sites: Res<Sites>,
    map: Res<WorldMap>,
    cache: Res<SharedCache>,
    mut publications: MessageWriter<Publication>,
    mut published: Local<Parallel<Vec<Publication>>>,
    mut sorted: Local<Vec<Publication>>,
    mut agents: Query<(
        &Agent,
        &Perception,
        &Body,
        &Cadence,
        &Position,
        &Memory,
        &mut Velocity,
        &mut Intent,
        &mut AgentRng,
    )>,
) {
    let ctx = ThinkContext {
        step: clock.step(),
        reach: map.reach(),
        sites: &sites,
        map: &map,
        cache: &cache,
        publish: &published,
    };
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, perception, body, cadence, pos, memory, velocity, intent, rng) = item;
        let Some(archetype) = archetypes.try_get(agent.kind) else {
            return;
        };
        if matches!(
            archetype.behaviour,
            Behaviour::Idle | Behaviour::Planner(_) | Behaviour::Model { .. }
        ) {
            return;
        }
        let me = Thinker {
            id: agent.id,
            perception,
            body,
            cadence,
            pos,
            memory,
            velocity: velocity.into_inner(),
            intent: intent.into_inner(),
            rng: rng.into_inner(),
        };
        match &archetype.behaviour {
            Behaviour::Explorer(params) => explorer::think(&ctx, params, me),
            Behaviour::Analyzer(params) => analyzer::think(&ctx, params, me),
            Behaviour::Controller(params) => {
                controller::think(&ctx, params, archetype.memory.half_life, me);
            }
            Behaviour::Planner(_) | Behaviour::Idle | Behaviour::Model { .. } => {}
        }
    });
    // Publications are taken in order: the threads' order is replaced by the
    // keys' and the publishers'.
    sorted.clear();
    sorted.extend(published.drain());
    sorted.sort_unstable_by_key(|p| (p.key, p.fact.by));
    publications.write_batch(sorted.drain(..));
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
                + u32::from(intent.action.is_some()),
        );
        let dt = cadence.rate.period_ns(step_ns) as f32 * 1e-9;
        match intent.movement {
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
        if let Some(planned) = intent.action {
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

/// The intent of an agent working towards a site: with the site within reach,
/// stay and act on it (`action` says how); otherwise head for it; with no site
/// to go to, wander on.
pub(super) fn pursue(
    goal: Option<&crate::world::Site>,
    pos: Vec2,
    reach: f32,
    body: &Body,
    velocity: &mut Velocity,
    rng: &mut AgentRng,
    action: impl FnOnce(&mut AgentRng) -> crate::action::ActionKind,
) -> Intent {
    match goal {
        Some(site) if within_reach(pos, site.pos, reach) => Intent::new(
            Some(site.id),
            Movement::Stay,
            Some(PlannedAction {
                target: crate::action::Target::Site(site.id),
                kind: action(rng),
            }),
        ),
        Some(site) => Intent::new(Some(site.id), Movement::Toward(site.pos), None),
        None => {
            velocity.0 = wander(velocity.0, body.speed, 0.8, 0.5, Vec2::ZERO, rng);
            Intent::new(None, Movement::Drift, None)
        }
    }
}

/// The world's reach rule, shared by the behaviours: whether `pos` is close
/// enough to `target` to act on it.
fn within_reach(pos: Vec2, target: Vec2, reach: f32) -> bool {
    pos.distance_squared(target) <= reach * reach
}
