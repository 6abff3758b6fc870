//! Thinking for longer than a tick: a kind's think as a task on Bevy's
//! `AsyncComputeTaskPool` (a planner, a search, a call to an outside service).
//!
//! Most kinds decide within their tick. A kind whose decision takes longer
//! registers an [`AsyncThink`]: a function from a plain-data input (a snapshot
//! of what the agent knows, taken when it asks) to a future that returns the
//! plan. The kind's own think system, in [`ThinkSystems::Decide`], reads and
//! writes the queue through the [`Thinks`] parameter:
//!
//! - an agent with nothing to act on [`request`](Thinks::request)s a think
//!   with its input, and holds (no action) until the plan is in;
//! - while it [`is_thinking`](Thinks::is_thinking) it keeps perceiving and
//!   consolidating at its own rate, but does not act;
//! - at its first tick at or after the plan's deadline the plan is handed to it
//!   ([`take_plans`](Thinks::take_plans)) and it acts on it.
//!
//! ## Timing
//!
//! At most [`ThinkSettings::max_in_flight`] tasks are in flight at once; other
//! requests wait their turn by the agent's priority, then by the time they were
//! made, then by agent id. A request starts when a slot is free: at the time it
//! was made, or at the start of the step in which a slot freed. Its
//! **deadline** is its start plus the kind's
//! [`think_latency`](crate::archetype::Archetype::think_latency) (virtual
//! seconds). In the step whose interval holds the deadline its result is
//! collected and its slot freed; the agent gets the plan at its first tick at
//! or after the deadline.
//!
//! - **Fast mode** (steps not paced by the wall clock; the harness): a task not
//!   finished by its deadline step is waited for there. Every start, deadline
//!   and plan is a function of the scenario and the seed: the same run on any
//!   thread count, however fast the tasks really are.
//! - **Real time**: nothing waits. A result not in at its deadline step is
//!   counted as [late](ThinkDiagnostics::late) and applied in the step it
//!   arrives.
//!
//! ## Checkpoints
//!
//! A task is a pure function of its input, so a checkpoint saves each
//! request's input (encoded with the kind's serde types), not its task: a
//! restored run starts the tasks in flight again, and recomputes the plans
//! collected but not yet handed over, and so reaches the state of the run
//! never interrupted.
//!
//! ## A think of your own
//!
//! ```
//! use bevy_ecs::prelude::*;
//! use continuum::prelude::*;
//! use continuum::think::{AsyncThink, AsyncThinkAppExt, ThinkSystems, Thinks};
//!
//! /// Asks an oracle (here: counts to `n` slowly) what to do next.
//! struct Oracle;
//!
//! impl AsyncThink for Oracle {
//!     type Input = u32;
//!     type Plan = u32;
//!     fn think(&self, n: u32) -> impl Future<Output = u32> + Send + 'static {
//!         async move { (0..n).sum() }
//!     }
//! }
//!
//! /// Agents of the kind ask when they have no plan, and act on the answer.
//! fn decide(
//!     mut thinks: Thinks<Oracle>,
//!     due: Res<DueAgents>,
//!     archetypes: Res<Archetypes>,
//!     mut agents: Query<(&Agent, &Cadence, &mut Intent)>,
//! ) {
//!     let Some(kind) = archetypes.kind("seer") else { return };
//!     let answers = thinks.take_plans();
//!     for &entity in due.of_kind(kind) {
//!         let Ok((agent, cadence, mut intent)) = agents.get_mut(entity) else { continue };
//!         let answer = answers.iter().find(|(e, _, _)| *e == entity);
//!         // One action per answer; none while it waits for the next.
//!         intent.set_action(answer.map(|&(_, _, value)| PlannedAction {
//!             target: Target::Site(SiteId(0)),
//!             kind: ActionKind::Custom { code: 1, value: value as f32 },
//!         }));
//!         if answer.is_none() && !thinks.is_thinking(agent.id) {
//!             thinks.request(entity, agent, cadence, 100);
//!         }
//!     }
//! }
//!
//! # fn build(scenario: Scenario) {
//! let sim = SimHarness::with(scenario, |app| {
//!     app.add_async_think("seer", Oracle)
//!         .add_systems(bevy_app::FixedUpdate, decide.in_set(ThinkSystems::Decide));
//! });
//! # }
//! ```
//!
//! The sites model's `planner` kind (see [`PlannerParams`](crate::sites::PlannerParams))
//! is written the same way.

mod plugin;
mod queue;

pub use plugin::ThinkPlugin;
pub(crate) use queue::ThinkImage;
pub use queue::{ThinkQueue, ThinkStage};

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use bevy_tasks::{AsyncComputeTaskPool, Task, TaskPool};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId, AgentKind, Cadence};
use crate::archetype::{Archetype, Archetypes};
pub use crate::phases::ThinkSystems;

/// A think that takes longer than a tick: from `Input`, a snapshot of what the
/// agent knows taken when it asks, to a future that returns its `Plan`. The
/// future runs on Bevy's `AsyncComputeTaskPool`; it may compute (a search) or
/// await (a call to an outside service).
///
/// In fast mode the result must be a function of the input alone: a run is
/// reproducible only if its plans are. The input is saved in checkpoints,
/// hence its serde bounds; keep it plain data.
pub trait AsyncThink: Send + Sync + 'static {
    /// What the think works from.
    type Input: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// What it returns to the agent.
    type Plan: Send + Sync + 'static;
    /// The think: its future runs on the async compute pool.
    fn think(&self, input: Self::Input) -> impl Future<Output = Self::Plan> + Send + 'static;
}

/// A plan as the queue holds it, whatever its kind's types.
pub(crate) type AnyPlan = Box<dyn Any + Send + Sync>;
/// An input as the queue holds it.
pub(crate) type AnyInput = Box<dyn Any + Send + Sync>;

/// An [`AsyncThink`] with its types erased, as the registry keeps it.
pub(crate) trait ErasedThink: Send + Sync {
    /// The `TypeId` of the think's own type.
    fn think_type(&self) -> TypeId;
    /// Starts the think on `input` on the async compute pool.
    fn spawn(&self, input: &AnyInput) -> Task<AnyPlan>;
    /// The input, encoded for a checkpoint.
    fn encode(&self, input: &AnyInput) -> Result<Vec<u8>, String>;
    /// An input from a checkpoint.
    fn decode(&self, bytes: &[u8]) -> Result<AnyInput, String>;
}

struct Erased<T>(Arc<T>);

impl<T: AsyncThink> ErasedThink for Erased<T> {
    fn think_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn spawn(&self, input: &AnyInput) -> Task<AnyPlan> {
        let input = input
            .downcast_ref::<T::Input>()
            .expect("the queue keeps each request with its kind's input type")
            .clone();
        let future = self.0.think(input);
        AsyncComputeTaskPool::get_or_init(TaskPool::default)
            .spawn(async move { Box::new(future.await) as AnyPlan })
    }

    fn encode(&self, input: &AnyInput) -> Result<Vec<u8>, String> {
        let input = input
            .downcast_ref::<T::Input>()
            .ok_or_else(|| "an input of another type".to_string())?;
        postcard::to_allocvec(input).map_err(|e| e.to_string())
    }

    fn decode(&self, bytes: &[u8]) -> Result<AnyInput, String> {
        postcard::from_bytes::<T::Input>(bytes)
            .map(|input| Box::new(input) as AnyInput)
            .map_err(|e| e.to_string())
    }
}

/// Which kinds a registered think serves.
enum Serves {
    /// The kind of this name.
    Named(String),
    /// Every kind whose archetype passes the test (the built-in planner: every
    /// kind with the `Planner` behaviour).
    Matching(fn(&Archetype) -> bool),
}

/// The asynchronous thinks, and the kinds they serve. Register with
/// [`AsyncThinkAppExt::add_async_think`] (by kind name) or
/// [`register_matching`](Self::register_matching); a kind has at most one
/// (the latest registered that serves it). Kinds are matched when the app
/// starts and at the next step after [`Archetypes`] or the registry changes.
#[derive(Resource, Default)]
pub struct ThinkRegistry {
    entries: Vec<(Serves, Arc<dyn ErasedThink>)>,
    /// The think of each kind, by kind index.
    by_kind: Vec<Option<Arc<dyn ErasedThink>>>,
}

impl ThinkRegistry {
    /// Registers `think` for the kind called `kind`.
    pub fn register<T: AsyncThink>(&mut self, kind: impl Into<String>, think: T) {
        self.entries.push((
            Serves::Named(kind.into()),
            Arc::new(Erased(Arc::new(think))),
        ));
    }

    /// Registers `think` for every kind whose archetype passes `test`.
    pub fn register_matching<T: AsyncThink>(&mut self, test: fn(&Archetype) -> bool, think: T) {
        self.entries
            .push((Serves::Matching(test), Arc::new(Erased(Arc::new(think)))));
    }

    /// Matches the registered thinks to `archetypes`' kinds.
    pub fn resolve(&mut self, archetypes: &Archetypes) {
        self.by_kind = archetypes
            .iter()
            .map(|a| {
                self.entries
                    .iter()
                    .rev()
                    .find(|(serves, _)| match serves {
                        Serves::Named(name) => *name == a.kind,
                        Serves::Matching(test) => test(a),
                    })
                    .map(|(_, think)| think.clone())
            })
            .collect();
    }

    /// The think of `kind`, if it has one.
    pub(crate) fn of_kind(&self, kind: AgentKind) -> Option<&Arc<dyn ErasedThink>> {
        self.by_kind.get(kind.index()).and_then(Option::as_ref)
    }

    /// Whether `T` is the think of `kind`.
    pub fn serves<T: AsyncThink>(&self, kind: AgentKind) -> bool {
        self.of_kind(kind)
            .is_some_and(|t| t.think_type() == TypeId::of::<T>())
    }
}

/// Registering asynchronous thinks on an `App`.
pub trait AsyncThinkAppExt {
    /// Makes `think` the asynchronous think of the kind called `kind`.
    fn add_async_think<T: AsyncThink>(&mut self, kind: impl Into<String>, think: T) -> &mut Self;
}

impl AsyncThinkAppExt for App {
    fn add_async_think<T: AsyncThink>(&mut self, kind: impl Into<String>, think: T) -> &mut Self {
        self.world_mut()
            .get_resource_or_init::<ThinkRegistry>()
            .register(kind, think);
        self
    }
}

/// How asynchronous thinks are run (a scenario's `think` section).
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThinkSettings {
    /// Most tasks in flight at once, all kinds together; other requests wait
    /// their turn. A fixed number, not the machine's: runs stay the same on
    /// every machine.
    pub max_in_flight: usize,
}

/// Most tasks a scenario may allow in flight at once.
pub const MAX_IN_FLIGHT: usize = 1 << 20;

impl Default for ThinkSettings {
    fn default() -> Self {
        Self { max_in_flight: 8 }
    }
}

/// The think plugin's counters, for the metrics and the report. The counts
/// are of the whole run (a checkpoint keeps them); `waits` depends on how
/// fast the machine is, the rest (in fast mode) only on the scenario.
#[derive(Resource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkDiagnostics {
    /// Tasks started.
    pub started: u64,
    /// Results collected.
    pub finished: u64,
    /// Results not in by their deadline (real time only).
    pub late: u64,
    /// Requests waiting for a slot, at the end of the latest step.
    pub waiting: usize,
    /// Tasks in flight, at the end of the latest step.
    pub in_flight: usize,
    /// Most tasks in flight at once.
    pub peak_in_flight: usize,
    /// Plans handed to their agents.
    pub delivered: u64,
    /// Virtual seconds requests waited for a slot, in total.
    pub queue_seconds: f64,
    /// Fast mode: deadline steps that had to wait for a task still running
    /// (wall-clock dependent; nothing in the simulation reads it).
    pub waits: u64,
}

impl ThinkDiagnostics {
    /// Mean virtual seconds a started request waited for its slot.
    pub fn mean_queue_seconds(&self) -> f64 {
        if self.started == 0 {
            0.0
        } else {
            self.queue_seconds / self.started as f64
        }
    }
}

/// A kind's door to its asynchronous thinks, for systems in
/// [`ThinkSystems::Decide`]: requests (from parallel passes too), whether an
/// agent is thinking, and the plans due to agents ticking in this step.
#[derive(SystemParam)]
pub struct Thinks<'w, T: AsyncThink> {
    queue: ResMut<'w, ThinkQueue>,
    registry: Res<'w, ThinkRegistry>,
    marker: PhantomData<fn() -> T>,
}

impl<T: AsyncThink> Thinks<'_, T> {
    /// Whether `agent` has asked and its plan is not yet handed to it: it
    /// should not act.
    pub fn is_thinking(&self, agent: AgentId) -> bool {
        self.queue.is_thinking(agent)
    }

    /// Whether `T` is the registered think of `kind` (without it, requests of
    /// that kind are ignored: think synchronously instead).
    pub fn serves(&self, kind: AgentKind) -> bool {
        self.registry.serves::<T>(kind)
    }

    /// Asks for a think on `input` for the agent (`entity`, `agent`) ticking
    /// at `cadence.due`. Callable from a parallel pass: requests are put in
    /// order (by agent id) before they join the queue. An agent already
    /// thinking, or of a kind `T` does not serve, is ignored.
    pub fn request(&self, entity: Entity, agent: &Agent, cadence: &Cadence, input: T::Input) {
        if self.serves(agent.kind) {
            self.queue
                .push_request(entity, agent, cadence.due, Box::new(input));
        }
    }

    /// The plans of `T`'s kinds due to the agents ticking in this step, as
    /// `(entity, agent id, plan)` in agent id order. Plans not taken in this
    /// step are dropped at its end (the agent may ask again).
    pub fn take_plans(&mut self) -> Vec<(Entity, AgentId, T::Plan)> {
        let registry = &*self.registry;
        self.queue
            .take_delivered(|kind| registry.serves::<T>(kind))
            .into_iter()
            .filter_map(|(entity, id, plan)| {
                plan.downcast::<T::Plan>()
                    .ok()
                    .map(|plan| (entity, id, *plan))
            })
            .collect()
    }

    /// The queue itself (what waits, what is in flight).
    pub fn queue(&self) -> &ThinkQueue {
        &self.queue
    }
}
