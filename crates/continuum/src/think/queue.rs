//! The queue of asynchronous thinks: what waits for a slot, what is in flight,
//! and what is done but not yet handed to its agent.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_tasks::futures_lite::future::{block_on, poll_once};
use bevy_tasks::{AsyncComputeTaskPool, Task, TaskPool};
use bevy_utils::Parallel;
use serde::{Deserialize, Serialize};

use super::{AnyInput, AnyPlan, ErasedThink, ThinkDiagnostics, ThinkRegistry};
use crate::agent::{Agent, AgentId, AgentKind, Priority};
use crate::clock::SimTime;
use crate::hash::DigestHasher;

/// Where a request stands, as [`ThinkQueue::stage`] shows it. Times are
/// virtual nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThinkStage {
    /// Waiting for a slot.
    Waiting,
    /// Its task runs.
    InFlight {
        started_at: SimTime,
        deadline: SimTime,
    },
    /// Its result is collected; the agent gets it at its first tick at or
    /// after `deadline`.
    Done { deadline: SimTime },
}

/// A plan collected, or (restored from a checkpoint) being computed again.
enum PlanSlot {
    Ready(AnyPlan),
    Computing(Task<AnyPlan>),
}

enum Stage {
    Waiting,
    InFlight {
        started_at: SimTime,
        deadline: SimTime,
        task: Task<AnyPlan>,
        /// Counted late already (real time).
        late: bool,
    },
    Done {
        deadline: SimTime,
        plan: PlanSlot,
    },
}

/// One agent's request.
struct Record {
    entity: Entity,
    kind: AgentKind,
    priority: Priority,
    /// The agent's tick that asked.
    requested_at: SimTime,
    /// Kept until the plan is handed over: a checkpoint saves it.
    input: AnyInput,
    stage: Stage,
}

/// A request made during the step, before it joins the queue.
struct Incoming {
    entity: Entity,
    id: AgentId,
    kind: AgentKind,
    priority: Priority,
    at: SimTime,
    input: AnyInput,
}

/// Every request not yet handed to its agent (an agent has one at most), in
/// the orders the queue serves them. It is simulation state: checkpoints save
/// it, digests cover it.
#[derive(Resource, Default)]
pub struct ThinkQueue {
    records: BTreeMap<AgentId, Record>,
    /// Waiting requests in the order they start: highest priority first, then
    /// earliest request, then lowest agent id.
    waiting: BTreeSet<(Reverse<Priority>, SimTime, AgentId)>,
    /// Requests in flight by deadline.
    in_flight: BTreeSet<(SimTime, AgentId)>,
    /// Requests whose result is collected.
    done: BTreeSet<AgentId>,
    /// Requests made in this step's decide phase, from any thread.
    incoming: Parallel<Vec<Incoming>>,
    /// Plans handed over in this step, by agent id, until their kinds take them.
    delivered: Vec<(Entity, AgentId, AgentKind, AnyPlan)>,
}

impl ThinkQueue {
    /// Whether `agent` has a request that is not yet handed over.
    pub fn is_thinking(&self, agent: AgentId) -> bool {
        self.records.contains_key(&agent)
    }

    /// Where `agent`'s request stands.
    pub fn stage(&self, agent: AgentId) -> Option<ThinkStage> {
        self.records.get(&agent).map(|r| match &r.stage {
            Stage::Waiting => ThinkStage::Waiting,
            Stage::InFlight {
                started_at,
                deadline,
                ..
            } => ThinkStage::InFlight {
                started_at: *started_at,
                deadline: *deadline,
            },
            Stage::Done { deadline, .. } => ThinkStage::Done {
                deadline: *deadline,
            },
        })
    }

    /// The waiting requests' agents, in the order they will start.
    pub fn waiting(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.waiting.iter().map(|&(_, _, id)| id)
    }

    /// The agents whose tasks are in flight, by deadline.
    pub fn in_flight(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.in_flight.iter().map(|&(_, id)| id)
    }

    /// Requests not yet handed over.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes a request from any thread; it joins the queue in the launch phase.
    pub(crate) fn push_request(&self, entity: Entity, agent: &Agent, at: SimTime, input: AnyInput) {
        self.incoming.scope(|incoming| {
            incoming.push(Incoming {
                entity,
                id: agent.id,
                kind: agent.kind,
                priority: agent.priority,
                at,
                input,
            });
        });
    }

    /// The step's requests join the waiting line, in agent id order (an
    /// agent's first request of the step counts; one already thinking is
    /// ignored).
    pub(crate) fn admit_requests(&mut self) {
        let mut incoming: Vec<Incoming> = self.incoming.drain().collect();
        incoming.sort_by_key(|r| (r.id, r.at));
        for r in incoming {
            if self.records.contains_key(&r.id) {
                continue;
            }
            self.waiting.insert((Reverse(r.priority), r.at, r.id));
            self.records.insert(
                r.id,
                Record {
                    entity: r.entity,
                    kind: r.kind,
                    priority: r.priority,
                    requested_at: r.at,
                    input: r.input,
                    stage: Stage::Waiting,
                },
            );
        }
    }

    /// Starts waiting requests in order while fewer than `cap` are in flight,
    /// at `now` (the step's start) or at their request if later, each until
    /// its start plus `latency(kind)`. Requests of agents no longer there
    /// (`alive` says), or of kinds without a think, are dropped.
    pub(crate) fn launch(
        &mut self,
        now: SimTime,
        cap: usize,
        registry: &ThinkRegistry,
        latency: impl Fn(AgentKind) -> SimTime,
        alive: impl Fn(Entity, AgentId) -> bool,
        diag: &mut ThinkDiagnostics,
    ) {
        while self.in_flight.len() < cap {
            let Some(key) = self.waiting.pop_first() else {
                break;
            };
            let id = key.2;
            let record = self.records.get_mut(&id).expect("a waiting request");
            let think = registry.of_kind(record.kind);
            let (Some(think), true) = (think, alive(record.entity, id)) else {
                self.records.remove(&id);
                continue;
            };
            let started_at = record.requested_at.max(now);
            let deadline = started_at + latency(record.kind);
            record.stage = Stage::InFlight {
                started_at,
                deadline,
                task: think.spawn(&record.input),
                late: false,
            };
            self.in_flight.insert((deadline, id));
            diag.started += 1;
            diag.queue_seconds += crate::clock::sim_to_secs(started_at - record.requested_at);
        }
        diag.waiting = self.waiting.len();
        diag.in_flight = self.in_flight.len();
        diag.peak_in_flight = diag.peak_in_flight.max(self.in_flight.len());
    }

    /// Collects the results whose deadline is before `step_end` and frees
    /// their slots. With `wait` (fast mode) a task still running is waited
    /// for; without, it is counted late (once) and collected in the step it
    /// is done.
    pub(crate) fn collect(&mut self, step_end: SimTime, wait: bool, diag: &mut ThinkDiagnostics) {
        let due: Vec<(SimTime, AgentId)> = self
            .in_flight
            .range(..(step_end, AgentId(0)))
            .copied()
            .collect();
        for key in due {
            let record = self.records.get_mut(&key.1).expect("a request in flight");
            let Stage::InFlight { task, late, .. } = &mut record.stage else {
                unreachable!("the in-flight index names requests in flight");
            };
            if !task.is_finished() {
                tick_local_executor();
            }
            if !task.is_finished() {
                if wait {
                    diag.waits += 1;
                } else {
                    if !*late {
                        *late = true;
                        diag.late += 1;
                    }
                    continue;
                }
            }
            let Stage::InFlight { task, deadline, .. } =
                std::mem::replace(&mut record.stage, Stage::Waiting)
            else {
                unreachable!();
            };
            record.stage = Stage::Done {
                deadline,
                plan: PlanSlot::Ready(wait_for(task)),
            };
            self.in_flight.remove(&key);
            self.done.insert(key.1);
            diag.finished += 1;
        }
        diag.in_flight = self.in_flight.len();
    }

    /// Hands the collected plans to their agents ticking in this step at or
    /// after the deadline; `tick_of(entity)` is the agent's id and current
    /// due time, if it is still there. Requests of agents no longer there
    /// are dropped.
    pub(crate) fn deliver(
        &mut self,
        step_end: SimTime,
        tick_of: impl Fn(Entity) -> Option<(AgentId, SimTime)>,
        diag: &mut ThinkDiagnostics,
    ) {
        let done: Vec<AgentId> = self.done.iter().copied().collect();
        for id in done {
            let record = &self.records[&id];
            let Stage::Done { deadline, .. } = record.stage else {
                unreachable!("the done index names requests done");
            };
            match tick_of(record.entity) {
                Some((who, due)) if who == id => {
                    if due >= step_end || due < deadline {
                        continue;
                    }
                }
                _ => {
                    self.done.remove(&id);
                    self.records.remove(&id);
                    continue;
                }
            }
            self.done.remove(&id);
            let record = self.records.remove(&id).expect("listed");
            let Stage::Done { plan, .. } = record.stage else {
                unreachable!();
            };
            let plan = match plan {
                PlanSlot::Ready(plan) => plan,
                PlanSlot::Computing(task) => wait_for(task),
            };
            self.delivered.push((record.entity, id, record.kind, plan));
            diag.delivered += 1;
        }
    }

    /// Takes the plans handed over in this step to kinds `mine` accepts.
    pub(crate) fn take_delivered(
        &mut self,
        mine: impl Fn(AgentKind) -> bool,
    ) -> Vec<(Entity, AgentId, AnyPlan)> {
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delivered)
            .into_iter()
            .partition(|(_, _, kind, _)| mine(*kind));
        self.delivered = kept;
        taken
            .into_iter()
            .map(|(entity, id, _, plan)| (entity, id, plan))
            .collect()
    }

    /// Drops the plans no kind took in this step.
    pub(crate) fn clear_delivered(&mut self) {
        self.delivered.clear();
    }

    /// Feeds the queue to a state digest: nothing at all while it is empty
    /// (a run without asynchronous thinks keeps its digests), otherwise every
    /// request in agent id order with its stage, times and input.
    pub(crate) fn hash(&self, h: &mut DigestHasher, registry: Option<&ThinkRegistry>) {
        if self.records.is_empty() {
            return;
        }
        h.word(self.records.len() as u64);
        for (id, r) in &self.records {
            h.word(id.0)
                .word(u64::from(r.kind.0))
                .word(r.priority as u64)
                .word(r.requested_at);
            match &r.stage {
                Stage::Waiting => h.word(0),
                Stage::InFlight {
                    started_at,
                    deadline,
                    ..
                } => h.word(1).word(*started_at).word(*deadline),
                Stage::Done { deadline, .. } => h.word(2).word(*deadline),
            };
            if let Some(Ok(bytes)) = registry
                .and_then(|reg| reg.of_kind(r.kind))
                .map(|think| think.encode(&r.input))
            {
                h.bytes(&bytes);
            }
        }
    }

    /// The queue as a checkpoint holds it: each request's input, encoded, in
    /// place of its task.
    pub(crate) fn image(&self, registry: &ThinkRegistry) -> Result<ThinkImage, String> {
        let mut records = Vec::with_capacity(self.records.len());
        for (&agent, r) in &self.records {
            let think = registry.of_kind(r.kind).ok_or_else(|| {
                format!(
                    "agent {agent} thinks with kind {} no think serves",
                    r.kind.0
                )
            })?;
            records.push(RecordImage {
                agent,
                kind: r.kind,
                priority: r.priority,
                requested_at: r.requested_at,
                stage: match &r.stage {
                    Stage::Waiting => StageImage::Waiting,
                    Stage::InFlight {
                        started_at,
                        deadline,
                        late,
                        ..
                    } => StageImage::InFlight {
                        started_at: *started_at,
                        deadline: *deadline,
                        late: *late,
                    },
                    Stage::Done { deadline, .. } => StageImage::Done {
                        deadline: *deadline,
                    },
                },
                input: think.encode(&r.input)?,
            });
        }
        Ok(ThinkImage { records })
    }

    /// The queue a checkpoint held: tasks in flight start again, and plans
    /// collected but not handed over are computed again.
    pub(crate) fn from_image(
        image: ThinkImage,
        registry: &ThinkRegistry,
        entity_of: impl Fn(AgentId) -> Option<Entity>,
    ) -> Result<Self, String> {
        let mut queue = Self::default();
        for r in image.records {
            let think: &Arc<dyn ErasedThink> = registry.of_kind(r.kind).ok_or_else(|| {
                format!(
                    "agent {} was thinking as kind {}, which has no asynchronous think here",
                    r.agent, r.kind.0
                )
            })?;
            let input = think
                .decode(&r.input)
                .map_err(|e| format!("agent {}'s think input: {e}", r.agent))?;
            let stage = match r.stage {
                StageImage::Waiting => {
                    queue
                        .waiting
                        .insert((Reverse(r.priority), r.requested_at, r.agent));
                    Stage::Waiting
                }
                StageImage::InFlight {
                    started_at,
                    deadline,
                    late,
                } => {
                    queue.in_flight.insert((deadline, r.agent));
                    Stage::InFlight {
                        started_at,
                        deadline,
                        task: think.spawn(&input),
                        late,
                    }
                }
                StageImage::Done { deadline } => {
                    queue.done.insert(r.agent);
                    Stage::Done {
                        deadline,
                        plan: PlanSlot::Computing(think.spawn(&input)),
                    }
                }
            };
            // An agent gone since it asked keeps its place (and its slot)
            // until the queue drops it, as in the run never interrupted.
            let entity = entity_of(r.agent).unwrap_or(Entity::PLACEHOLDER);
            let record = Record {
                entity,
                kind: r.kind,
                priority: r.priority,
                requested_at: r.requested_at,
                input,
                stage,
            };
            if queue.records.insert(r.agent, record).is_some() {
                return Err(format!("agent {} has two think requests", r.agent));
            }
        }
        Ok(queue)
    }
}

/// Runs what the calling thread's executor holds: without Bevy's
/// `multi_threaded` feature the async pool runs its tasks there.
fn tick_local_executor() {
    AsyncComputeTaskPool::get_or_init(TaskPool::default)
        .with_local_executor(|executor| while executor.try_tick() {});
}

/// The task's result, waiting for it if need be.
fn wait_for(mut task: Task<AnyPlan>) -> AnyPlan {
    loop {
        if let Some(plan) = block_on(poll_once(&mut task)) {
            return plan;
        }
        tick_local_executor();
        if cfg!(feature = "parallel") {
            return block_on(task);
        }
        std::thread::yield_now();
    }
}

/// The queue in a checkpoint.
#[derive(Serialize, Deserialize)]
pub(crate) struct ThinkImage {
    records: Vec<RecordImage>,
}

#[derive(Serialize, Deserialize)]
struct RecordImage {
    agent: AgentId,
    kind: AgentKind,
    priority: Priority,
    requested_at: SimTime,
    stage: StageImage,
    /// The input, encoded with postcard.
    input: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum StageImage {
    Waiting,
    InFlight {
        started_at: SimTime,
        deadline: SimTime,
        late: bool,
    },
    Done {
        deadline: SimTime,
    },
}
