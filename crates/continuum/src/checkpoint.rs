//! Checkpoints: the whole simulation in one versioned file, to resume a run
//! exactly where it stopped or to branch a variant from it.
//!
//! A checkpoint holds the scenario, the step, every agent with all of its
//! components (memory tiers included), the pool's queues and expiries, the
//! schedule and the spatial index in their exact order, the sites and region
//! boards, the shared cache with its eviction order, the budgets and load
//! shedding, the asynchronous thinks under way (their inputs: a restored run
//! starts their tasks again), and the run's counters. A run resumed from it reaches the same
//! [`state_digest`](crate::digest::state_digest) as the same run never
//! interrupted, on any thread count.
//!
//! ```no_run
//! # use continuum::checkpoint::Checkpoint;
//! # use continuum::headless::build_app;
//! # let mut app = bevy_app::App::new();
//! // Save between steps (e.g. from the loop that drives the app)...
//! continuum::checkpoint::write(app.world_mut(), "run.ckpt".as_ref())?;
//! // ...and later, in another process:
//! let checkpoint = Checkpoint::read("run.ckpt".as_ref())?;
//! let mut app = build_app(checkpoint.scenario()?, 2);
//! checkpoint.restore(&mut app)?; // in place of `headless::prime`
//! # Ok::<(), continuum::checkpoint::CheckpointError>(())
//! ```
//!
//! The file: 8 bytes of magic, the format version (u32, little-endian), the
//! payload (postcard), then the payload's length and a checksum (u64 each).
//! A file from another format or engine version, truncated or corrupted, is
//! refused with a [`CheckpointError`] before anything is built from it.
//!
//! A plugin's own state goes in too once it is registered
//! ([`CheckpointAppExt`]: `app.checkpoint_component::<C>()`,
//! `checkpoint_resource::<R>()`), saved after the agents under the types'
//! names; a checkpoint holding state of a plugin the app lacks is refused.
//!
//! What it does not hold: components or resources nobody registered (an agent
//! carrying such a component is refused, by [`check`] before a run and at save
//! time, naming its kind and behaviour), a queued request's extra components
//! other than a [`Memory`], and wall-clock measurements (live rates, CPU
//! samples), which start afresh.

use std::fmt;
use std::path::{Path, PathBuf};

use bevy_app::App;
use bevy_ecs::component::ComponentId;
use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::action::{Feedback, ResolverDiagnostics};
use crate::agent::{
    Agent, AgentBlueprint, AgentId, AgentIndex, AgentPool, AgentRng, AgentSchedule, Body, Cadence,
    Position, PriorityRates, ScheduleStats, Velocity,
};
use crate::agent::{PoolImage, RateChanges, ScheduleImage};
use crate::behaviour::Intent;
use crate::clock::SimClock;
use crate::hash::DigestHasher;
use crate::memory::{CacheImage, Memory, MemoryPlan, Perception, SharedCache};
use crate::metrics::{RunStats, RunStatsImage};
use crate::monitor::{
    Budget, BudgetLog, LoadShedding, RebalanceDiagnostics, RebalanceRound, RoundImage,
};
use crate::scenario::{ActiveScenario, Scenario, TimelineImage};
use crate::sites::Route;
use crate::spatial::CellGrid;
use crate::think::{ThinkDiagnostics, ThinkImage, ThinkQueue, ThinkRegistry};
use crate::world::{Board, Site, Sites};

/// The first bytes of every checkpoint file.
const MAGIC: &[u8; 8] = b"CONTCKPT";
/// The layout of the payload; a change to what is saved bumps it.
pub const FORMAT_VERSION: u32 = 9;
/// The engine that wrote a checkpoint must be this one.
const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Magic and format version.
const HEADER: usize = 12;
/// Payload length and checksum.
const TRAILER: usize = 16;

/// Why a checkpoint could not be written, read or restored.
#[derive(Debug)]
pub enum CheckpointError {
    /// The file could not be read or written.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not a checkpoint, or not one this engine can read.
    Invalid { path: PathBuf, reason: String },
    /// The world holds something a checkpoint cannot save.
    Unsupported(String),
    /// The checkpoint does not fit the app it is restored into.
    Mismatch(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Invalid { path, reason } => {
                write!(f, "{}: not a usable checkpoint: {reason}", path.display())
            }
            Self::Unsupported(what) => write!(f, "cannot checkpoint this world: {what}"),
            Self::Mismatch(what) => write!(f, "the checkpoint does not fit the app: {what}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// One agent: every component the engine gives agents.
#[derive(Serialize, Deserialize)]
struct AgentImage {
    agent: Agent,
    cadence: Cadence,
    position: Position,
    velocity: Velocity,
    body: Body,
    rng: AgentRng,
    perception: Option<Perception>,
    memory: Option<Memory>,
    intent: Option<Intent>,
    budget: Option<Budget>,
    feedback: Option<Feedback>,
    route: Option<Route>,
}

/// Everything but the agents, which follow it in the payload one by one.
#[derive(Serialize, Deserialize)]
struct Head {
    engine: String,
    /// The scenario as RON (what the run was built from).
    scenario: String,
    timeline: Option<TimelineImage>,
    step: u64,
    pool: PoolImage<Option<Memory>>,
    schedule: ScheduleImage,
    /// Every agent in the spatial index with its position, in the index's order.
    index: Option<Vec<(Vec2, AgentId)>>,
    sites: Option<Vec<(Vec<Site>, Board)>>,
    cache: Option<CacheImage>,
    plan: Option<MemoryPlan>,
    rates: Option<PriorityRates>,
    /// When the rates last changed: slowed classes are being spread.
    rate_changes: Option<RateChanges>,
    shedding: Option<LoadShedding>,
    budget_log: Option<BudgetLog>,
    run_stats: Option<RunStatsImage>,
    schedule_stats: Option<ScheduleStats>,
    resolver: Option<ResolverDiagnostics>,
    /// The rebalancing under way, agents named by id.
    rebalance: Option<RoundImage>,
    rebalance_diagnostics: Option<RebalanceDiagnostics>,
    /// The thinks under way, their inputs in place of their tasks.
    think: Option<ThinkImage>,
    think_stats: Option<ThinkDiagnostics>,
}

/// A plugin's own state that checkpoints save beside the engine's: the
/// components of its agents and the resources it keeps, each under its
/// type's name, encoded with its serde types. Register with
/// [`CheckpointAppExt`].
#[derive(Resource, Default)]
pub struct CheckpointedState {
    components: Vec<SavedComponent>,
    resources: Vec<SavedResource>,
}

#[derive(Clone, Copy)]
struct SavedComponent {
    name: &'static str,
    id: fn(&World) -> Option<ComponentId>,
    save: fn(&World, Entity) -> Result<Option<Vec<u8>>, String>,
    load: fn(&mut World, Entity, &[u8]) -> Result<(), String>,
}

#[derive(Clone, Copy)]
struct SavedResource {
    name: &'static str,
    save: fn(&World) -> Result<Option<Vec<u8>>, String>,
    load: fn(&mut World, &[u8]) -> Result<(), String>,
}

fn save_component<C: Component + Serialize>(
    world: &World,
    entity: Entity,
) -> Result<Option<Vec<u8>>, String> {
    world
        .get::<C>(entity)
        .map(|c| postcard::to_allocvec(c).map_err(|e| e.to_string()))
        .transpose()
}

fn load_component<C: Component + DeserializeOwned>(
    world: &mut World,
    entity: Entity,
    bytes: &[u8],
) -> Result<(), String> {
    let c: C = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    world.entity_mut(entity).insert(c);
    Ok(())
}

fn save_resource<R: Resource + Serialize>(world: &World) -> Result<Option<Vec<u8>>, String> {
    world
        .get_resource::<R>()
        .map(|r| postcard::to_allocvec(r).map_err(|e| e.to_string()))
        .transpose()
}

fn load_resource<R: Resource + DeserializeOwned>(
    world: &mut World,
    bytes: &[u8],
) -> Result<(), String> {
    let r: R = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    world.insert_resource(r);
    Ok(())
}

/// Registers a plugin's own state with checkpoints.
pub trait CheckpointAppExt {
    /// Agents' `C` components are saved with them and restored onto them.
    fn checkpoint_component<C: Component + Serialize + DeserializeOwned>(&mut self) -> &mut Self;
    /// The resource `R` is saved and restored (replacing the app's own).
    fn checkpoint_resource<R: Resource + Serialize + DeserializeOwned>(&mut self) -> &mut Self;
}

impl CheckpointAppExt for App {
    fn checkpoint_component<C: Component + Serialize + DeserializeOwned>(&mut self) -> &mut Self {
        let entry = SavedComponent {
            name: std::any::type_name::<C>(),
            id: |world| world.components().component_id::<C>(),
            save: save_component::<C>,
            load: load_component::<C>,
        };
        let mut state = self.world_mut().get_resource_or_init::<CheckpointedState>();
        if !state.components.iter().any(|c| c.name == entry.name) {
            state.components.push(entry);
        }
        self
    }

    fn checkpoint_resource<R: Resource + Serialize + DeserializeOwned>(&mut self) -> &mut Self {
        let entry = SavedResource {
            name: std::any::type_name::<R>(),
            save: save_resource::<R>,
            load: load_resource::<R>,
        };
        let mut state = self.world_mut().get_resource_or_init::<CheckpointedState>();
        if !state.resources.iter().any(|r| r.name == entry.name) {
            state.resources.push(entry);
        }
        self
    }
}

/// The registered state of plugins, after the agents: each component's
/// values by agent id, and each resource.
#[derive(Serialize, Deserialize, Default)]
struct ModelImage {
    components: Vec<(String, Vec<(AgentId, Vec<u8>)>)>,
    resources: Vec<(String, Vec<u8>)>,
}

/// The components [`AgentImage`] saves: an agent with any other is refused.
fn known_components(world: &World) -> Vec<ComponentId> {
    let c = world.components();
    [
        c.component_id::<Agent>(),
        c.component_id::<Cadence>(),
        c.component_id::<Position>(),
        c.component_id::<Velocity>(),
        c.component_id::<Body>(),
        c.component_id::<AgentRng>(),
        c.component_id::<Perception>(),
        c.component_id::<Memory>(),
        c.component_id::<Intent>(),
        c.component_id::<Budget>(),
        c.component_id::<Feedback>(),
        c.component_id::<Route>(),
    ]
    .into_iter()
    .flatten()
    .chain(
        world
            .get_resource::<CheckpointedState>()
            .into_iter()
            .flat_map(|s| s.components.iter().filter_map(|c| (c.id)(world))),
    )
    .collect()
}

/// A component's name (Bevy's `debug` feature keeps the names; without it,
/// Bevy's hint to turn it on).
fn component_name(world: &World, id: ComponentId) -> String {
    let name = world
        .components()
        .get_info(id)
        .map_or_else(|| format!("{id:?}"), |i| i.name().to_string());
    if name.starts_with('<') {
        // Bevy keeps names only with its `debug` feature.
        format!("#{}", id.index())
    } else {
        format!("`{name}`")
    }
}

/// Who an agent is, for an error: its id, kind and behaviour.
fn describe(world: &World, agent: &Agent) -> String {
    let archetype = world
        .get_resource::<crate::archetype::Archetypes>()
        .and_then(|a| a.try_get(agent.kind));
    match archetype {
        Some(a) => match a.behaviour.name() {
            Some(behaviour) => format!(
                "agent {} (kind `{}`, behaviour `{behaviour}`)",
                agent.id, a.kind
            ),
            None => format!("agent {} (kind `{}`)", agent.id, a.kind),
        },
        None => format!("agent {}", agent.id),
    }
}

/// Whether `world`'s agents carry only what checkpoints save, so that
/// [`save`] will not refuse them: one agent of each ECS table is looked at,
/// which costs next to nothing (a run that asks for checkpoints checks
/// before its first step, not when the first checkpoint is due). A model's
/// own components are not saved yet.
///
/// # Errors
///
/// [`CheckpointError::Unsupported`], naming the agent, its kind and
/// behaviour, and the component.
pub fn check(world: &World) -> Result<(), CheckpointError> {
    let Some(agent_id) = world.components().component_id::<Agent>() else {
        return Ok(());
    };
    let known = known_components(world);
    for archetype in world.archetypes().iter() {
        if !archetype.contains(agent_id) {
            continue;
        }
        let Some(first) = archetype.entities().first() else {
            continue;
        };
        if let Some(name) = unknown_component(world, first.id(), &known) {
            let who = world
                .get::<Agent>(first.id())
                .map_or_else(|| "an agent".to_owned(), |a| describe(world, a));
            return Err(CheckpointError::Unsupported(format!(
                "{who} carries the component {name}, which checkpoints do not save (its plugin registers it with `app.checkpoint_component`)"
            )));
        }
    }
    Ok(())
}

/// The first component of `entity` that is not one of `known`, by name.
fn unknown_component(world: &World, entity: Entity, known: &[ComponentId]) -> Option<String> {
    world
        .entity(entity)
        .archetype()
        .iter_components()
        .find(|id| !known.contains(id))
        .map(|id| component_name(world, id))
}

/// The extra components of a queued request: a [`Memory`] (what scenario
/// groups give), or nothing. Anything else is refused.
fn blueprint_extras(
    world: &mut World,
    blueprint: &AgentBlueprint,
) -> Result<Option<Memory>, CheckpointError> {
    if !blueprint.has_extras() {
        return Ok(None);
    }
    let mut entity = world.spawn_empty();
    blueprint.insert_extras(&mut entity);
    let id = entity.id();
    let memory = world.get::<Memory>(id).cloned();
    let known: Vec<ComponentId> = world
        .components()
        .component_id::<Memory>()
        .into_iter()
        .collect();
    let other = unknown_component(world, id, &known);
    world.despawn(id);
    match other {
        Some(name) => Err(CheckpointError::Unsupported(format!(
            "a queued agent's request carries the component {name}"
        ))),
        None => Ok(memory),
    }
}

/// The checkpoint of `world`, taken between steps, as the bytes of a file.
pub fn save(world: &mut World) -> Result<Vec<u8>, CheckpointError> {
    let scenario = world
        .get_resource::<ActiveScenario>()
        .map(|a| &a.scenario)
        .ok_or_else(|| {
            CheckpointError::Unsupported(
                "it was not built from a scenario (no ActiveScenario)".into(),
            )
        })?;
    let scenario = ron::to_string(scenario)
        .map_err(|e| CheckpointError::Unsupported(format!("the scenario: {e}")))?;
    // The queued requests' extras are saved first: it takes a scratch entity.
    let queued: Vec<AgentBlueprint> = world
        .get_resource::<AgentPool>()
        .map(|p| p.blueprints().cloned().collect())
        .unwrap_or_default();
    let mut extras = Vec::with_capacity(queued.len());
    for blueprint in &queued {
        extras.push(blueprint_extras(world, blueprint)?);
    }
    if let Some(mut cache) = world.get_resource_mut::<SharedCache>() {
        cache.settle();
    }
    let world = &*world;
    let think = match (
        world.get_resource::<ThinkQueue>(),
        world.get_resource::<ThinkRegistry>(),
    ) {
        (Some(queue), Some(registry)) => Some(
            queue
                .image(registry)
                .map_err(|e| CheckpointError::Unsupported(format!("the think queue: {e}")))?,
        ),
        _ => None,
    };
    let id_of = |e: Entity| world.get::<Agent>(e).map(|a| a.id);
    let mut extras = extras.into_iter();
    let pool = match world.get_resource::<AgentPool>() {
        Some(pool) => pool.image(|_| extras.next().flatten(), id_of),
        None => AgentPool::default().image(|_| None, id_of),
    };
    let head = Head {
        engine: ENGINE_VERSION.into(),
        scenario,
        timeline: world
            .get_resource::<ActiveScenario>()
            .map(ActiveScenario::image),
        step: world.get_resource::<SimClock>().map_or(0, SimClock::step),
        pool,
        schedule: world
            .get_resource::<AgentSchedule>()
            .map(|s| s.image(id_of))
            .unwrap_or_else(|| AgentSchedule::default().image(id_of)),
        index: world.get_resource::<AgentIndex>().map(|index| {
            index
                .0
                .iter_in_order()
                .map(|(pos, a)| (pos, a.id))
                .collect()
        }),
        sites: world.get_resource::<Sites>().map(Sites::image),
        cache: world.get_resource::<SharedCache>().map(SharedCache::image),
        plan: world.get_resource::<MemoryPlan>().cloned(),
        rates: world.get_resource::<PriorityRates>().cloned(),
        rate_changes: world.get_resource::<RateChanges>().cloned(),
        shedding: world.get_resource::<LoadShedding>().cloned(),
        budget_log: world.get_resource::<BudgetLog>().cloned(),
        run_stats: world.get_resource::<RunStats>().map(RunStats::image),
        schedule_stats: world.get_resource::<ScheduleStats>().cloned(),
        resolver: world.get_resource::<ResolverDiagnostics>().cloned(),
        rebalance: world
            .get_resource::<RebalanceRound>()
            .map(|r| r.image(id_of)),
        rebalance_diagnostics: world.get_resource::<RebalanceDiagnostics>().copied(),
        think,
        think_stats: world.get_resource::<ThinkDiagnostics>().cloned(),
    };
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let encode = |e: postcard::Error| CheckpointError::Unsupported(format!("encoding: {e}"));
    out = postcard::to_extend(&head, out).map_err(encode)?;
    // The agents, in id order, one at a time: the same bytes as a `Vec`.
    let known = known_components(world);
    let mut agents: Vec<(AgentId, Entity)> = world
        .iter_entities()
        .filter_map(|e| e.get::<Agent>().map(|a| (a.id, e.id())))
        .collect();
    agents.sort_unstable();
    let registered = world
        .get_resource::<CheckpointedState>()
        .map(|s| (s.components.clone(), s.resources.clone()))
        .unwrap_or_default();
    let mut model = ModelImage {
        components: registered
            .0
            .iter()
            .map(|c| (c.name.to_owned(), Vec::new()))
            .collect(),
        resources: Vec::new(),
    };
    out = postcard::to_extend(&agents.len(), out).map_err(encode)?;
    for &(id, entity) in &agents {
        if let Some(name) = unknown_component(world, entity, &known) {
            let who = world
                .get::<Agent>(entity)
                .map_or_else(|| format!("agent {id}"), |a| describe(world, a));
            return Err(CheckpointError::Unsupported(format!(
                "{who} carries the component {name}, which checkpoints do not save (its plugin registers it with `app.checkpoint_component`)"
            )));
        }
        let e = world.entity(entity);
        let required = || {
            CheckpointError::Unsupported(format!(
                "agent {id} lacks one of Cadence, Position, Velocity, Body, AgentRng"
            ))
        };
        let image = AgentImage {
            agent: *e.get::<Agent>().expect("listed as an agent"),
            cadence: *e.get::<Cadence>().ok_or_else(required)?,
            position: *e.get::<Position>().ok_or_else(required)?,
            velocity: *e.get::<Velocity>().ok_or_else(required)?,
            body: *e.get::<Body>().ok_or_else(required)?,
            rng: e.get::<AgentRng>().ok_or_else(required)?.clone(),
            perception: e.get::<Perception>().cloned(),
            memory: e.get::<Memory>().cloned(),
            intent: e.get::<Intent>().copied(),
            budget: e.get::<Budget>().copied(),
            feedback: e.get::<Feedback>().copied(),
            route: e.get::<Route>().cloned(),
        };
        out = postcard::to_extend(&image, out).map_err(encode)?;
        for (c, (_, saved)) in registered.0.iter().zip(&mut model.components) {
            if let Some(bytes) = (c.save)(world, entity).map_err(|e| {
                CheckpointError::Unsupported(format!("{} of agent {id}: {e}", c.name))
            })? {
                saved.push((id, bytes));
            }
        }
    }
    for r in &registered.1 {
        if let Some(bytes) =
            (r.save)(world).map_err(|e| CheckpointError::Unsupported(format!("{}: {e}", r.name)))?
        {
            model.resources.push((r.name.to_owned(), bytes));
        }
    }
    out = postcard::to_extend(&model, out).map_err(encode)?;
    let payload = &out[HEADER..];
    let (len, sum) = (payload.len() as u64, checksum(payload));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Writes the checkpoint of `world` to `path`, atomically: an interrupted or
/// failed write leaves the previous checkpoint in place.
pub fn write(world: &mut World, path: &Path) -> Result<u64, CheckpointError> {
    let bytes = save(world)?;
    crate::atomic_file::write_bytes_atomically(path, &bytes).map_err(|error| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        }
    })?;
    Ok(bytes.len() as u64)
}

/// A 64-bit checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = DigestHasher::default();
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        h.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h.word(u64::from_le_bytes(tail)).word(bytes.len() as u64);
    h.finish()
}

/// A checkpoint read and checked, ready to restore.
pub struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    head: Head,
    /// Where the agents start in `bytes`.
    agents_at: usize,
}

impl Checkpoint {
    /// Reads and checks the checkpoint at `path`: its magic, format and engine
    /// versions, length and checksum.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let io = |error| CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(Self::invalid(path, "not a regular file".into()));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(bytes, path)
    }

    /// Checks the bytes of a checkpoint; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self, CheckpointError> {
        let invalid = |reason: String| Self::invalid(path, reason);
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(invalid("it does not start like a checkpoint".into()));
        }
        if bytes.len() < HEADER + TRAILER {
            return Err(invalid("it is truncated".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(invalid(format!(
                "it has format version {version}, this engine reads version {FORMAT_VERSION}"
            )));
        }
        let end = bytes.len() - TRAILER;
        let len = u64::from_le_bytes(bytes[end..end + 8].try_into().expect("8 bytes"));
        let sum = u64::from_le_bytes(bytes[end + 8..].try_into().expect("8 bytes"));
        let payload = &bytes[HEADER..end];
        if len != payload.len() as u64 {
            return Err(invalid(format!(
                "it is truncated or extended: {} bytes of state where it says {len}",
                payload.len()
            )));
        }
        if checksum(payload) != sum {
            return Err(invalid(
                "it is corrupted (its checksum does not match)".into(),
            ));
        }
        let (head, rest) = postcard::take_from_bytes::<Head>(payload)
            .map_err(|e| invalid(format!("its state cannot be decoded: {e}")))?;
        if head.engine != ENGINE_VERSION {
            return Err(invalid(format!(
                "it was written by engine version {}, this is {ENGINE_VERSION}",
                head.engine
            )));
        }
        let agents_at = end - rest.len();
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            head,
            agents_at,
        })
    }

    fn invalid(path: &Path, reason: String) -> CheckpointError {
        CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason,
        }
    }

    /// The scenario the checkpointed run was built from. Build the app to
    /// restore into from it, changed or not (another conflict strategy, a
    /// longer duration, more arrivals: a branch of the run).
    pub fn scenario(&self) -> Result<Scenario, CheckpointError> {
        let source = &self.head.scenario;
        let name = PathBuf::from(format!("{} (its scenario)", self.path.display()));
        Scenario::from_ron(source, &name).map_err(|e| Self::invalid(&self.path, e.to_string()))
    }

    /// [`scenario`](Self::scenario), checking the kinds' behaviours against
    /// `behaviours` (as [`Scenario::load_with`] does).
    pub fn scenario_with(
        &self,
        behaviours: &crate::archetype::BehaviourRegistry,
    ) -> Result<Scenario, CheckpointError> {
        let source = &self.head.scenario;
        let name = PathBuf::from(format!("{} (its scenario)", self.path.display()));
        Scenario::from_ron_with(source, &name, behaviours)
            .map_err(|e| Self::invalid(&self.path, e.to_string()))
    }

    /// Steps completed when the checkpoint was taken.
    pub fn step(&self) -> u64 {
        self.head.step
    }

    /// Agents saved.
    pub fn agents(&self) -> usize {
        postcard::take_from_bytes::<usize>(&self.bytes[self.agents_at..self.bytes.len() - TRAILER])
            .map_or(0, |(n, _)| n)
    }

    /// Restores the checkpoint into `app`, built from [`scenario`](Self::scenario)
    /// (or a variant of it) and not yet primed: this primes it (startup runs,
    /// without requesting the starting groups again) and puts back the saved
    /// state. Call it in place of [`prime`](crate::headless::prime).
    pub fn restore(self, app: &mut App) -> Result<(), CheckpointError> {
        let head = self.head;
        if let (Some(timeline), Some(mut active)) = (
            head.timeline,
            app.world_mut().get_resource_mut::<ActiveScenario>(),
        ) {
            active.resume_from(timeline);
        }
        crate::headless::prime(app);
        let world = app.world_mut();
        let mismatch = CheckpointError::Mismatch;
        let step_ns = world.get_resource::<SimClock>().map(SimClock::step_ns);
        if let Some(step_ns) = step_ns
            && step_ns != head.schedule.step_ns()
        {
            return Err(mismatch(format!(
                "the checkpoint's steps last {} ns, the app's {step_ns} ns (clock.fixed_hz changed)",
                head.schedule.step_ns()
            )));
        }
        if let Some(mut clock) = world.get_resource_mut::<SimClock>() {
            clock.set_step(head.step);
        }
        if let (Some(saved), Some(mut sites)) = (head.sites, world.get_resource_mut::<Sites>()) {
            sites.restore(saved).map_err(mismatch)?;
        }
        if let Some(image) = head.cache
            && let Some(cache) = world.get_resource::<SharedCache>()
        {
            let restored = cache.restored(image).ok_or_else(|| {
                mismatch("the checkpoint's shared cache holds keys outside this world".into())
            })?;
            world.insert_resource(restored);
        }
        if let Some(plan) = head.plan {
            world.insert_resource(plan);
        }
        if let Some(rates) = head.rates {
            world.insert_resource(rates);
        }
        if let Some(changes) = head.rate_changes {
            world.insert_resource(changes);
        }
        if let Some(shedding) = head.shedding {
            world.insert_resource(shedding);
        }
        if let Some(log) = head.budget_log {
            world.insert_resource(log);
        }
        if let Some(stats) = head.run_stats {
            world.insert_resource(RunStats::from_image(stats));
        }
        if let Some(stats) = head.schedule_stats {
            world.insert_resource(stats);
        }
        if let Some(diagnostics) = head.resolver {
            world.insert_resource(diagnostics);
        }
        if let Some(diagnostics) = head.rebalance_diagnostics {
            world.insert_resource(diagnostics);
        }
        // The agents, spawned in id order as they are decoded.
        let invalid = |reason: String| Self::invalid(&self.path, reason);
        let mut rest = &self.bytes[self.agents_at..self.bytes.len() - TRAILER];
        let (count, after) = postcard::take_from_bytes::<usize>(rest)
            .map_err(|e| invalid(format!("the agents cannot be decoded: {e}")))?;
        rest = after;
        let mut spawned: Vec<(AgentId, Entity)> = Vec::with_capacity(count.min(rest.len()));
        for _ in 0..count {
            let (a, after) = postcard::take_from_bytes::<AgentImage>(rest)
                .map_err(|e| invalid(format!("an agent cannot be decoded: {e}")))?;
            rest = after;
            let id = a.agent.id;
            let mut e = world.spawn((a.agent, a.cadence, a.position, a.velocity, a.body, a.rng));
            if let Some(c) = a.perception {
                e.insert(c);
            }
            if let Some(c) = a.memory {
                e.insert(c);
            }
            if let Some(c) = a.intent {
                e.insert(c);
            }
            if let Some(c) = a.budget {
                e.insert(c);
            }
            if let Some(c) = a.feedback {
                e.insert(c);
            }
            if let Some(c) = a.route {
                e.insert(c);
            }
            spawned.push((id, e.id()));
        }
        let (model, after) = postcard::take_from_bytes::<ModelImage>(rest)
            .map_err(|e| invalid(format!("the plugins' state cannot be decoded: {e}")))?;
        rest = after;
        if !rest.is_empty() {
            return Err(invalid(format!(
                "{} bytes follow the plugins' state",
                rest.len()
            )));
        }
        if !spawned.is_sorted() {
            return Err(invalid("the agents are not in id order".into()));
        }
        let entity_of = |id: AgentId| {
            spawned
                .binary_search_by_key(&id, |s| s.0)
                .ok()
                .map(|i| spawned[i].1)
        };
        let registered = world
            .get_resource::<CheckpointedState>()
            .map(|s| (s.components.clone(), s.resources.clone()))
            .unwrap_or_default();
        for (name, values) in model.components {
            let c = registered
                .0
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    mismatch(format!(
                        "it holds the component `{name}` of a plugin this app lacks"
                    ))
                })?;
            for (id, bytes) in values {
                let entity = entity_of(id).ok_or_else(|| {
                    invalid(format!("`{name}` names agent {id}, which is not saved"))
                })?;
                (c.load)(world, entity, &bytes)
                    .map_err(|e| invalid(format!("`{name}` of agent {id}: {e}")))?;
            }
        }
        for (name, bytes) in model.resources {
            let r = registered
                .1
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| {
                    mismatch(format!(
                        "it holds the resource `{name}` of a plugin this app lacks"
                    ))
                })?;
            (r.load)(world, &bytes).map_err(|e| invalid(format!("`{name}`: {e}")))?;
        }
        if let (Some(saved), Some(index)) = (head.index, world.get_resource::<AgentIndex>()) {
            let geometry = *index.0.geometry();
            let mut grid = CellGrid::new(geometry.size(), geometry.cell_size());
            for (pos, id) in saved {
                let entity = entity_of(id).ok_or_else(|| {
                    invalid(format!(
                        "the spatial index names agent {id}, which is not saved"
                    ))
                })?;
                let cell = grid.insert(pos, crate::agent::IndexedAgent { id });
                world
                    .get_mut::<Agent>(entity)
                    .expect("spawned above")
                    .index_cell = cell;
            }
            world.insert_resource(AgentIndex(grid));
        }
        if let Some(stats) = head.think_stats {
            world.insert_resource(stats);
        }
        if let Some(image) = head.think {
            let registry = world.get_resource::<ThinkRegistry>().ok_or_else(|| {
                mismatch("the checkpoint has thinks under way; the app has no ThinkPlugin".into())
            })?;
            let queue = ThinkQueue::from_image(image, registry, entity_of).map_err(mismatch)?;
            world.insert_resource(queue);
        }
        let schedule = AgentSchedule::from_image(head.schedule, entity_of).map_err(invalid)?;
        world.insert_resource(schedule);
        if let Some(round) = head.rebalance
            && world.contains_resource::<RebalanceRound>()
        {
            let round = RebalanceRound::from_image(round, entity_of).map_err(invalid)?;
            world.insert_resource(round);
        }
        let pool = AgentPool::from_image(
            head.pool,
            |blueprint, memory| match memory {
                Some(memory) => blueprint.with(memory),
                None => blueprint,
            },
            entity_of,
        )
        .map_err(invalid)?;
        let limit = world.get_resource::<AgentPool>().map(AgentPool::max_agents);
        world.insert_resource(pool);
        if let Some(max) = limit {
            // A variant may allow more agents at once than the original.
            world.resource_mut::<AgentPool>().raise_max_agents(max);
        }
        Ok(())
    }
}
