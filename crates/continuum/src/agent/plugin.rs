use std::sync::Arc;

use bevy_app::prelude::*;
use bevy_ecs::bundle::NoBundleEffect;
use bevy_ecs::entity::Entities;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{ScheduleLabel, SingleThreadedExecutor};
use bevy_math::Vec2;

use super::index::{index_admitted, index_moved_agents, unindex};
use super::pool::Waiting;
use super::spread::{self, RateChanges, ToSpread};
use super::*;
use crate::clock::{SimClock, SimSeed, SimTime, configure_phases};
use crate::hash::{mix, unit_f64};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due_into};
use crate::phases::{ContinuumStartup, ContinuumSystems};
use crate::spatial::GridGeometry;

/// Agents, their schedule, their spatial index and the pool that admits them.
pub struct AgentPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl AgentPlugin {
    /// Runs the agent systems in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

/// The agent plugin's systems, for ordering against.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentSystems {
    /// Admits waiting agents: at startup (in [`ContinuumStartup::Admit`]), at
    /// the start of a step (in [`ContinuumSystems::Clock`]) and after
    /// retirements (in [`ContinuumSystems::Pool`]).
    Admit,
    /// Retires agents whose time is up or who were asked to leave (in
    /// [`ContinuumSystems::Pool`]).
    Retire,
}

/// Runs right after each batch of agents is admitted, with the batch in
/// [`Admitted`]: plugins give the new agents their starting values here (the
/// memory plugin sizes their tiers to the budget, the monitor gives them their
/// fair share), and a game can too. Commands issued here are applied before
/// the admission returns.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentsAdmitted;

/// The agents of the admission batch under way, in admission order: read it
/// in the [`AgentsAdmitted`] schedule (it is empty outside it).
#[derive(Resource, Default)]
pub struct Admitted(pub(crate) AgentLists);

impl std::ops::Deref for Admitted {
    type Target = AgentLists;
    fn deref(&self) -> &AgentLists {
        &self.0
    }
}

impl Plugin for AgentPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        // Registered now, not at the first admission: the memory budget
        // counts what an agent's components take before any is admitted
        // (`engine_bytes_per_agent`).
        let world = app.world_mut();
        world.register_component::<Agent>();
        world.register_component::<Cadence>();
        world.register_component::<Position>();
        world.register_component::<Velocity>();
        world.register_component::<Body>();
        world.register_component::<AgentRng>();
        app.init_resource::<AgentPool>()
            .init_resource::<AgentSchedule>()
            .init_resource::<DueAgents>()
            .init_resource::<Admitted>()
            .init_resource::<ThreadLoad>()
            .init_resource::<PriorityRates>()
            .init_resource::<PerceptionReach>()
            .init_resource::<AgentIndex>()
            .init_resource::<IndexedKinds>()
            .init_resource::<ScheduleStats>()
            .init_resource::<RateChanges>()
            .init_schedule(AgentsAdmitted)
            .edit_schedule(AgentsAdmitted, |schedule| {
                schedule.set_executor(SingleThreadedExecutor::new());
            })
            .add_observer(release_slot)
            .add_systems(
                PostStartup,
                (size_schedule, admit_agents::<false>)
                    .chain()
                    .in_set(AgentSystems::Admit)
                    .in_set(ContinuumStartup::Admit),
            )
            .add_systems(
                self.schedule,
                (
                    (
                        admit_agents::<false>.in_set(AgentSystems::Admit),
                        pick_due,
                        start_passes,
                    )
                        .chain()
                        .in_set(ContinuumSystems::Clock),
                    (
                        index_moved_agents,
                        reschedule,
                        retire_agents.in_set(AgentSystems::Retire),
                        admit_agents::<true>.in_set(AgentSystems::Admit),
                    )
                        .chain()
                        .in_set(ContinuumSystems::Pool),
                    end_passes.in_set(ContinuumSystems::Last),
                ),
            );
    }
}

/// Agents the admission lists keep room for between batches.
const ADMITTED_KEPT: usize = 4096;

/// Agents spawned, indexed and scheduled together. A wave of admissions is
/// worked through in batches of this many, and the list of those still
/// waiting (about 100 bytes an agent) shrinks as they go: admitting a
/// million agents never holds all their requests beside all their components.
const ADMIT_BATCH: usize = 1 << 16;

/// Salt for start positions, so they do not correlate with other per-id draws.
const POSITION_SALT: u64 = 0x706f_7369_7469_6f6e;
const PHASE_SALT: u64 = 0x7068_6173_6500_0000;
const HEADING_SALT: u64 = 0x6865_6164_696e_6700;

fn size_schedule(clock: Res<SimClock>, mut schedule: ResMut<AgentSchedule>) {
    if schedule.is_empty() {
        *schedule = AgentSchedule::new(clock.step_ns());
    }
}

/// Admits waiting agents into free slots: spawns them, gives them the
/// components their requests carry, puts them in the spatial index and the
/// schedule, and runs [`AgentsAdmitted`]. At startup and at the start of a
/// step (`NEXT_STEP = false`) they may already be due in this step; at its
/// end, from the next one.
fn admit_agents<const NEXT_STEP: bool>(world: &mut World) {
    let clock = world.resource::<SimClock>().clone();
    let start = clock.now() + if NEXT_STEP { clock.step_ns() } else { 0 };
    let mut waiting = world.resource_mut::<AgentPool>().admit(start);
    if waiting.is_empty() {
        return;
    }
    tracing::debug!(count = waiting.len(), at = start, "agents admitted");
    let seed = world.resource::<SimSeed>().0;
    // Agents start within the area the spatial index covers (the world's).
    let geometry = world
        .get_resource::<AgentIndex>()
        .map(|index| *index.0.geometry());
    let size = geometry.map_or(Vec2::splat(1000.0), |g| g.size());
    let step_ns = clock.step_ns();
    // Bundles are built as they are spawned: admitting a million agents never
    // holds a million bundles at once.
    let spawners = world
        .get_resource::<KindSpawners>()
        .cloned()
        .unwrap_or_default();
    if let Some(geometry) = geometry {
        let kinds = world
            .get_resource::<IndexedKinds>()
            .cloned()
            .unwrap_or_default();
        order_by_space(&mut waiting, &geometry, &kinds, &spawners, |w| {
            (
                first_due(w, seed, start, step_ns) / step_ns,
                start_position(w, seed, size),
            )
        });
    }
    world.resource_mut::<Admitted>().0.clear(clock.step());
    // Batches are taken off the end of the list, which is reversed for it,
    // and the list gives back its room as it shrinks.
    waiting.reverse();
    let mut batch = Vec::with_capacity(waiting.len().min(ADMIT_BATCH));
    let mut entities = Vec::with_capacity(batch.capacity());
    while !waiting.is_empty() {
        let rest = waiting.len().saturating_sub(ADMIT_BATCH);
        batch.clear();
        batch.extend(waiting.drain(rest..).rev());
        waiting.shrink_to_fit();
        entities.clear();
        admit_batch(world, &batch, &mut entities, &spawners, |w| {
            agent_bundle(w, seed, size, start, step_ns)
        });
        let mut schedule = world.resource_mut::<AgentSchedule>();
        for (&entity, w) in entities.iter().zip(&batch) {
            schedule.insert(entity, first_due(w, seed, start, step_ns), w.blueprint.kind);
        }
        let mut pool = world.resource_mut::<AgentPool>();
        for (&entity, w) in entities.iter().zip(&batch) {
            if let Some(lifetime) = w.blueprint.lifetime {
                pool.expire_at(start + crate::clock::secs_to_sim(lifetime), w.id, entity);
            }
        }
        let mut admitted = world.resource_mut::<Admitted>();
        for (&entity, w) in entities.iter().zip(&batch) {
            admitted.0.push(entity, w.blueprint.kind);
        }
    }
    drop((waiting, batch, entities));
    let _ = world.try_run_schedule(AgentsAdmitted);
    // A startup batch of a million agents would otherwise keep 16 MB of lists.
    world.resource_mut::<Admitted>().0.release(ADMITTED_KEPT);
}

/// Spawns one batch of admitted agents, in order, appending their entities
/// to `entities`; gives them the components their requests carry and puts
/// them in the spatial index. Each run of agents whose kinds a model spawns
/// with its own components is spawned with them, straight into the table it
/// keeps them in.
fn admit_batch(
    world: &mut World,
    batch: &[Waiting],
    entities: &mut Vec<Entity>,
    spawners: &KindSpawners,
    bundle: impl Fn(&Waiting) -> AgentBundle,
) {
    let mut from = 0;
    while from < batch.len() {
        let spawner = spawners.of(batch[from].blueprint.kind);
        let to = from
            + batch[from..]
                .iter()
                .take_while(|w| same_spawner(spawners.of(w.blueprint.kind), spawner))
                .count();
        let mut bundles = batch[from..to].iter().map(&bundle);
        match spawner {
            Some(spawn) => spawn(world, &mut bundles, entities),
            None => entities.extend(world.spawn_batch(bundles)),
        }
        from = to;
    }
    for (&entity, w) in entities.iter().zip(batch) {
        if w.blueprint.has_extras() {
            w.blueprint.insert_extras(&mut world.entity_mut(entity));
        }
    }
    index_admitted(world, entities);
}

/// Despawns the agents that leave in this step (whose time is up by its end);
/// their slots are free for the admission that follows.
fn retire_agents(world: &mut World) {
    let clock = world.resource::<SimClock>();
    let end_of_step = clock.now() + clock.step_ns();
    let leaving = world.resource_mut::<AgentPool>().take_leaving(end_of_step);
    if !leaving.is_empty() {
        tracing::debug!(count = leaving.len(), "agents retiring");
    }
    for entity in leaving {
        if world.get::<Agent>(entity).is_some() {
            world.despawn(entity);
        }
    }
}

/// Whoever despawns an agent (the pool, or a game), its slot is released and
/// it leaves the spatial index.
fn release_slot(
    removed: On<Remove<Agent>>,
    pool: Option<ResMut<AgentPool>>,
    index: Option<ResMut<AgentIndex>>,
    agents: Query<&Agent>,
) {
    if let Some(mut pool) = pool {
        pool.release();
    }
    if let (Some(mut index), Ok(agent)) = (index, agents.get(removed.entity)) {
        unindex(&mut index, agent);
    }
}

/// When an admitted agent first ticks: `phase` of one period after `start`.
fn first_due(w: &Waiting, seed: u64, start: SimTime, step_ns: u64) -> SimTime {
    let period = TickRate(w.blueprint.tick_hz).period_ns(step_ns);
    let phase = w
        .blueprint
        .phase
        .unwrap_or_else(|| unit_f64(mix(seed ^ PHASE_SALT, w.id.0)));
    start + ((phase.clamp(0.0, 1.0) * period as f64) as u64).min(period - 1)
}

type AgentBundle = ((Agent, Cadence), (Position, Velocity, Body), AgentRng);

/// Spawns a run of admitted agents with the components a model gives their
/// kinds, appending the entities to the list.
pub(crate) type Spawner =
    Arc<dyn Fn(&mut World, &mut dyn Iterator<Item = AgentBundle>, &mut Vec<Entity>) + Send + Sync>;

/// A spawner of agents that also get `bundle`.
pub(crate) fn spawner_with<B>(bundle: B) -> Spawner
where
    B: Bundle + Clone + Send + Sync + 'static,
    B::Effect: NoBundleEffect,
{
    Arc::new(move |world, bundles, out| {
        out.extend(world.spawn_batch(bundles.map(|agent| (agent, bundle.clone()))));
    })
}

/// How admitted agents of each kind are spawned: with the engine's
/// components only, or also with a model's
/// ([`RegisterBehaviour::spawn_kinds_with`](crate::archetype::RegisterBehaviour::spawn_kinds_with)).
/// Filled from the kinds by the archetype plugin.
#[derive(Resource, Clone, Default)]
pub struct KindSpawners(pub(crate) Vec<Option<Spawner>>);

impl KindSpawners {
    fn of(&self, kind: AgentKind) -> Option<&Spawner> {
        self.0.get(kind.index()).and_then(Option::as_ref)
    }
}

fn same_spawner(a: Option<&Spawner>, b: Option<&Spawner>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Where an admitted agent starts: its blueprint's position, or a place drawn
/// from its id, inside `size`.
fn start_position(w: &Waiting, seed: u64, size: Vec2) -> Vec2 {
    let position = w.blueprint.position.unwrap_or_else(|| {
        let h = mix(seed ^ POSITION_SALT, w.id.0);
        Vec2::new(
            unit_f64(h) as f32 * size.x,
            unit_f64(mix(h, 1)) as f32 * size.y,
        )
    });
    position.clamp(Vec2::ZERO, size)
}

/// Orders an admission batch so that the agents the index keeps are spawned
/// by the step they are first due in, then by priority, then in the order of
/// their starting cells along a Z-order curve: a step's due agents are then a
/// run of rows in the ECS tables (the schedule keeps the order they were
/// inserted in, see [`AgentSchedule`]), and each is near the one before it, so
/// that they read neighbouring cells of the spatial indices one after the
/// other instead of all over the world. Under load shedding a priority's
/// agents slow down together, so a step's due agents stay runs of rows, one
/// per priority, instead of scattered picks. Agents of the same spawner stay
/// together (each run is one batch into its table); agents the index does not
/// keep keep their order; the sort is stable, so the order is the same on
/// every run. Results never depend on it: only where the agents' data sits.
fn order_by_space(
    waiting: &mut [Waiting],
    geometry: &GridGeometry,
    kinds: &IndexedKinds,
    spawners: &KindSpawners,
    place: impl Fn(&Waiting) -> (u64, Vec2),
) {
    if waiting.len() < 2 {
        return;
    }
    // Kinds that share a spawner share a rank: the first kind with it.
    let rank = |kind: AgentKind| {
        let spawner = spawners.of(kind);
        spawner.map_or(0, |_| {
            (0..spawners.0.len())
                .position(|k| same_spawner(spawners.of(AgentKind(k as u16)), spawner))
                .map_or(0, |k| k + 1)
        })
    };
    waiting.sort_by_cached_key(|w| {
        let kind = w.blueprint.kind;
        if !kinds.contains(kind) {
            return (rank(kind), 0, 0, 0);
        }
        let (step, position) = place(w);
        let (cx, cy) = geometry.cell_coords(position);
        let class = w.blueprint.priority as u8;
        (rank(kind), step, class, morton(cx, cy))
    });
}

/// The Z-order (Morton) code of cell `(x, y)`: the bits of the two
/// coordinates interleaved, so that cells near on the curve are near on the
/// plane.
fn morton(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = u64::from(v);
        v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
        v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
        v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        v = (v | (v << 1)) & 0x5555_5555_5555_5555;
        v
    }
    spread(x) | (spread(y) << 1)
}

fn agent_bundle(w: &Waiting, seed: u64, size: Vec2, start: SimTime, step_ns: u64) -> AgentBundle {
    let bp = &w.blueprint;
    let id = w.id;
    let rate = TickRate(bp.tick_hz);
    let position = start_position(w, seed, size);
    let angle = unit_f64(mix(seed ^ HEADING_SALT, id.0)) as f32 * std::f32::consts::TAU;
    (
        (
            Agent::new(id, bp.kind, bp.priority),
            Cadence {
                due: first_due(w, seed, start, step_ns),
                ticks: 0,
                rate,
            },
        ),
        (
            Position(position),
            Velocity(Vec2::from_angle(angle) * bp.body.speed),
            bp.body,
        ),
        AgentRng::new(seed, id),
    )
}

/// The step's parallel passes begin: with spinning workers on (the headless
/// runner's choice), a large step wakes them.
fn start_passes(load: Res<ThreadLoad>, due: Res<DueAgents>) {
    load.start_step(due.len());
}

/// The step's parallel passes are done.
fn end_passes(load: Res<ThreadLoad>) {
    load.end_step();
}

fn pick_due(
    clock: Res<SimClock>,
    entities: &Entities,
    mut schedule: ResMut<AgentSchedule>,
    mut due: ResMut<DueAgents>,
) {
    schedule.pop_due(clock.step(), entities, &mut due);
}

/// Puts every agent that ticked in this step back into the schedule at its next
/// due time, one period (at its current rate) after this one, or, on its first
/// tick since load shedding slowed its class, its piece of the longer period
/// later (see the `spread` module). The agents work out their next due times
/// and steps in parallel; the schedule takes them in the due order.
fn reschedule(
    mut tuner: Local<BatchTuner>,
    mut next: Local<Vec<Option<Rescheduled>>>,
    mut to_spread: Local<Vec<ToSpread>>,
    load: Res<ThreadLoad>,
    clock: Res<SimClock>,
    due: Res<DueAgents>,
    rates: Res<PriorityRates>,
    mut changes: ResMut<RateChanges>,
    index: Option<Res<AgentIndex>>,
    mut schedule: ResMut<AgentSchedule>,
    mut stats: ResMut<ScheduleStats>,
    mut agents: Query<(&Agent, &mut Cadence)>,
    positions: Query<&Position>,
) {
    let step_ns = clock.step_ns();
    changes.observe(&rates, clock.now());
    let changes = &*changes;
    let wheel = &*schedule;
    next.clear();
    next.resize(due.len(), None);
    for_each_due_into(
        &mut agents,
        due.all(),
        &mut next,
        &mut tuner,
        &load,
        |(agent, mut cadence), next| {
            let class = agent.shed_class();
            let shed = rates.0[class];
            let tick = cadence.due;
            cadence.due += TickRate(cadence.rate.0 * shed).period_ns(step_ns);
            cadence.ticks += 1;
            *next = Some(Rescheduled {
                step: wheel.step_of(cadence.due),
                kind: agent.kind,
                priority: agent.priority,
                full: shed >= 1.0,
                slowed: changes
                    .slowed(class, cadence.rate.0, tick, step_ns)
                    .is_some(),
            });
        },
    );
    if changes.any_slowed() {
        let spread = Spread {
            changes,
            rates: &rates,
            step_ns,
            geometry: index.map(|index| *index.0.geometry()),
        };
        spread.apply(
            &mut next,
            &mut to_spread,
            &mut agents,
            &positions,
            due.all(),
            wheel,
        );
    }
    // Agents no longer there (despawned during the step) leave the schedule.
    for (&entity, next) in due.all().iter().zip(next.iter()) {
        if let Some(next) = next {
            let p = next.priority as usize;
            stats.ticks_by_priority[p] += 1;
            stats.full_rate_ticks_by_priority[p] += u64::from(next.full);
            schedule.insert_at_step(entity, next.step, next.kind);
        }
    }
}

/// Where a due agent goes after its tick.
#[derive(Clone, Copy, Debug)]
struct Rescheduled {
    step: u64,
    kind: AgentKind,
    priority: Priority,
    /// Whether it ticked at full rate.
    full: bool,
    /// Whether it was its first tick since its class was slowed.
    slowed: bool,
}

/// What spreading a step's slowed agents needs (see the `spread` module).
struct Spread<'a> {
    changes: &'a RateChanges,
    rates: &'a PriorityRates,
    step_ns: u64,
    /// The agents' index's cells, along whose Z-order curve a step's agents
    /// are cut into pieces (ids alone without it).
    geometry: Option<GridGeometry>,
}

impl Spread<'_> {
    /// Delays the agents of the step whose class was just slowed by their
    /// pieces, in their cadences and in `next`.
    fn apply(
        &self,
        next: &mut [Option<Rescheduled>],
        to_spread: &mut Vec<ToSpread>,
        agents: &mut Query<(&Agent, &mut Cadence)>,
        positions: &Query<&Position>,
        due: &[Entity],
        wheel: &AgentSchedule,
    ) {
        to_spread.clear();
        for (index, next) in next.iter().enumerate() {
            if !next.is_some_and(|n| n.slowed) {
                continue;
            }
            let Ok((agent, cadence)) = agents.get(due[index]) else {
                continue;
            };
            let class = agent.shed_class();
            let period = TickRate(cadence.rate.0 * self.rates.0[class]).period_ns(self.step_ns);
            let tick = cadence.due - period;
            let Some(slowdown) = self
                .changes
                .slowed(class, cadence.rate.0, tick, self.step_ns)
            else {
                continue;
            };
            let place = match (self.geometry, positions.get(due[index])) {
                (Some(geometry), Ok(position)) => {
                    let (x, y) = geometry.cell_coords(position.0);
                    morton(x, y)
                }
                _ => 0,
            };
            to_spread.push(ToSpread {
                index,
                class,
                place,
                id: agent.id,
                slowdown,
            });
        }
        for (index, delay) in spread::delays(to_spread) {
            if delay == 0 {
                continue;
            }
            if let (Some(next), Ok((_, mut cadence))) =
                (&mut next[index], agents.get_mut(due[index]))
            {
                cadence.due += delay;
                next.step = wheel.step_of(cadence.due);
            }
        }
    }
}

/// Ticks counted as agents are rescheduled.
#[derive(Resource, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleStats {
    /// Agent ticks by priority (`Priority as usize`: background, normal, high).
    pub ticks_by_priority: [u64; 3],
    /// Of those, the ticks run while load shedding left the agent's rate whole
    /// (its class's [`PriorityRates`] multiplier at 1).
    #[serde(default)]
    pub full_rate_ticks_by_priority: [u64; 3],
}
