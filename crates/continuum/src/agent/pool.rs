use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use hdrhistogram::Histogram;

use super::*;
use crate::clock::SimTime;

/// Everything needed to start one agent. Build one with
/// [`Archetypes::blueprint`](crate::archetype::Archetypes::blueprint) (or
/// [`AgentBlueprint::new`]) and adjust fields before requesting it.
#[derive(Clone)]
pub struct AgentBlueprint {
    pub kind: AgentKind,
    pub priority: Priority,
    /// Ticks per virtual second.
    pub tick_hz: f32,
    pub body: Body,
    /// Where the agent starts; `None` places it uniformly at random (seeded by
    /// the scenario seed and the agent's id).
    pub position: Option<Vec2>,
    /// Where in its first interval the agent first ticks, as a fraction in
    /// `[0, 1)` of its period; `None` derives one from the seed and the id.
    pub phase: Option<f64>,
    /// Virtual seconds the agent runs before it retires; `None` runs forever.
    pub lifetime: Option<f64>,
    /// Components of the caller's own, inserted when the agent is admitted.
    extras: Option<Arc<Extras>>,
}

/// Inserts a request's own components into its newly spawned agent.
type Extras = dyn Fn(&mut EntityWorldMut) + Send + Sync;

impl AgentBlueprint {
    /// An agent of `kind` at 10 Hz and normal priority that neither moves nor
    /// perceives, placed at random.
    pub fn new(kind: AgentKind) -> Self {
        Self {
            kind,
            priority: Priority::Normal,
            tick_hz: 10.0,
            body: Body {
                speed: 0.0,
                perception_radius: 1.0,
                senses_agents: false,
            },
            position: None,
            phase: None,
            lifetime: None,
            extras: None,
        }
    }

    /// Gives the agent `bundle` (components of a game's own, or a plugin's
    /// starting values for its components) when it is admitted, after the
    /// agent's own components and before the [`AgentsAdmitted`] schedule
    /// runs. Blueprints cloned from this one share the bundle; each agent
    /// gets a clone.
    ///
    /// [`AgentsAdmitted`]: super::AgentsAdmitted
    pub fn with(mut self, bundle: impl Bundle + Clone) -> Self {
        let before = self.extras.take();
        self.extras = Some(Arc::new(move |entity: &mut EntityWorldMut| {
            if let Some(before) = &before {
                before(entity);
            }
            entity.insert(bundle.clone());
        }));
        self
    }

    /// Inserts the bundles given to [`with`](Self::with) into `entity`.
    pub(crate) fn insert_extras(&self, entity: &mut EntityWorldMut) {
        if let Some(extras) = &self.extras {
            extras(entity);
        }
    }

    /// Whether [`with`](Self::with) gave it components of its own.
    pub fn has_extras(&self) -> bool {
        self.extras.is_some()
    }
}

impl std::fmt::Debug for AgentBlueprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBlueprint")
            .field("kind", &self.kind)
            .field("priority", &self.priority)
            .field("tick_hz", &self.tick_hz)
            .field("body", &self.body)
            .field("position", &self.position)
            .field("phase", &self.phase)
            .field("lifetime", &self.lifetime)
            .field("extras", &self.extras.is_some())
            .finish()
    }
}

/// Blueprints compare by their fields; two with bundles are equal only when
/// they share them (clones of one blueprint).
impl PartialEq for AgentBlueprint {
    fn eq(&self, other: &Self) -> bool {
        let extras = match (&self.extras, &other.extras) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        extras
            && (self.kind, self.priority, self.tick_hz, self.body)
                == (other.kind, other.priority, other.tick_hz, other.body)
            && (self.position, self.phase, self.lifetime)
                == (other.position, other.phase, other.lifetime)
    }
}

/// A request waiting for a slot.
#[derive(Clone, Debug)]
pub(crate) struct Waiting {
    pub(crate) id: AgentId,
    pub(crate) blueprint: AgentBlueprint,
    pub(crate) requested_at: SimTime,
}

/// Longest wait the statistics record exactly, in virtual microseconds (a day).
const MAX_WAIT_US: u64 = 86_400_000_000;

/// The agent pool: every agent starts as a request here and ends retired.
///
/// At each admission point (the start of a step, and its end after retirements)
/// new requests join the queue of their priority, and while fewer than
/// [`limit`](Self::limit) agents are active, waiting agents start: all `High`
/// first, then `Normal`, then `Background`, first in first out within a queue.
/// Every request is at every moment exactly one of active, queued or retired:
/// `requested == active + queued + retired`.
#[derive(Resource, Debug)]
pub struct AgentPool {
    max_agents: usize,
    limit: usize,
    next_id: u64,
    /// Requests not yet seen by an admission point, in request order.
    incoming: Vec<(AgentId, AgentBlueprint)>,
    queues: [VecDeque<Waiting>; 3],
    active: usize,
    retired: u64,
    /// Agents retiring by lifetime, soonest first (ties by id).
    expiries: BinaryHeap<Reverse<(SimTime, AgentId, Entity)>>,
    /// Agents asked to retire through [`retire`](Self::retire).
    leaving: Vec<Entity>,
    /// Virtual microseconds waited, by priority (index of `Priority::HIGHEST_FIRST`).
    waits: [Histogram<u64>; 3],
}

impl Default for AgentPool {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl AgentPool {
    /// A pool that runs at most `max_agents` agents at once.
    pub fn new(max_agents: usize) -> Self {
        let histogram = || Histogram::new_with_bounds(1, MAX_WAIT_US, 3).expect("static bounds");
        Self {
            max_agents,
            limit: max_agents,
            next_id: 0,
            incoming: Vec::new(),
            queues: Default::default(),
            active: 0,
            retired: 0,
            expiries: BinaryHeap::new(),
            leaving: Vec::new(),
            waits: [histogram(), histogram(), histogram()],
        }
    }

    /// Requests a new agent and returns the id it will carry. Ids are given in
    /// request order. The agent starts at the next admission point if there is
    /// room, or waits in the queue of its priority.
    pub fn request(&mut self, blueprint: AgentBlueprint) -> AgentId {
        let id = AgentId(self.next_id);
        self.next_id += 1;
        self.incoming.push((id, blueprint));
        id
    }

    /// Asks the agent `entity` to retire at the end of the current step (or of
    /// the next one, if called between steps). Its slot is reused in that step.
    pub fn retire(&mut self, entity: Entity) {
        self.leaving.push(entity);
    }

    /// The configured maximum of active agents.
    pub fn max_agents(&self) -> usize {
        self.max_agents
    }

    /// The current limit of active agents (at most `max_agents`; the resource
    /// monitor may lower it under pressure).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sets the effective limit, capped at `max_agents`. Lowering it never stops
    /// running agents; it only stops admitting new ones.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.max_agents);
    }

    /// Agents running now.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Requests waiting for a slot (including requests made since the last
    /// admission point).
    pub fn queued(&self) -> usize {
        self.incoming.len() + self.queues.iter().map(VecDeque::len).sum::<usize>()
    }

    /// Requests waiting at one priority.
    pub fn queued_at(&self, priority: Priority) -> usize {
        self.queues[queue_index(priority)].len()
            + self
                .incoming
                .iter()
                .filter(|(_, b)| b.priority == priority)
                .count()
    }

    /// All requests ever made.
    pub fn requested(&self) -> u64 {
        self.next_id
    }

    /// Agents that have left the pool.
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Wait statistics of the agents admitted at `priority`: (count, mean, p99),
    /// in virtual seconds.
    pub fn wait_stats(&self, priority: Priority) -> (u64, f64, f64) {
        let h = &self.waits[queue_index(priority)];
        if h.is_empty() {
            return (0, 0.0, 0.0);
        }
        (
            h.len(),
            h.mean() / 1e6,
            h.value_at_quantile(0.99) as f64 / 1e6,
        )
    }

    /// Moves new requests into their queues (stamped `now`) and takes the
    /// waiting agents that fit under the limit, in admission order.
    pub(crate) fn admit(&mut self, now: SimTime) -> Vec<Waiting> {
        // Taken, not drained: a million requests at startup should not keep
        // their buffer for the rest of the run.
        for (id, blueprint) in std::mem::take(&mut self.incoming) {
            self.queues[queue_index(blueprint.priority)].push_back(Waiting {
                id,
                blueprint,
                requested_at: now,
            });
        }
        let free = self.limit.saturating_sub(self.active);
        let mut out = Vec::new();
        for priority in Priority::HIGHEST_FIRST {
            let q = queue_index(priority);
            let n = self.queues[q].len().min(free - out.len());
            for w in self.queues[q].drain(..n) {
                self.waits[q].saturating_record((now - w.requested_at) / 1_000);
                out.push(w);
            }
            let queue = &mut self.queues[q];
            if queue.capacity() > 4 * queue.len() + 64 {
                queue.shrink_to_fit(); // a drained wave should not keep its memory
            }
        }
        self.active += out.len();
        out
    }

    pub(crate) fn expire_at(&mut self, at: SimTime, id: AgentId, entity: Entity) {
        self.expiries.push(Reverse((at, id, entity)));
    }

    /// The agents that must leave by `until`: those asked to, then those whose
    /// lifetime ends, soonest first.
    pub(crate) fn take_leaving(&mut self, until: SimTime) -> Vec<Entity> {
        let mut out = std::mem::take(&mut self.leaving);
        while let Some(Reverse((at, _, entity))) = self.expiries.peek().copied() {
            if at > until {
                break;
            }
            self.expiries.pop();
            out.push(entity);
        }
        out
    }

    /// Admissions and departures so far: it changes whenever an agent
    /// starts or leaves (each adds one), and only then.
    pub fn changes(&self) -> u64 {
        self.active as u64 + 2 * self.retired
    }

    /// Accounts for an agent that left (whoever despawned it).
    pub(crate) fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
        self.retired += 1;
    }
}

/// An [`AgentBlueprint`] as a checkpoint holds it; `X` stands for its extra
/// components, which the checkpoint saves in its own way.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct BlueprintImage<X> {
    kind: AgentKind,
    priority: Priority,
    tick_hz: f32,
    body: Body,
    position: Option<Vec2>,
    phase: Option<f64>,
    lifetime: Option<f64>,
    extras: X,
}

impl AgentBlueprint {
    /// This blueprint for a checkpoint, its extras as `extras` made them.
    pub(crate) fn image<X>(&self, extras: X) -> BlueprintImage<X> {
        BlueprintImage {
            kind: self.kind,
            priority: self.priority,
            tick_hz: self.tick_hz,
            body: self.body,
            position: self.position,
            phase: self.phase,
            lifetime: self.lifetime,
            extras,
        }
    }

    /// The blueprint a checkpoint held, and its saved extras.
    pub(crate) fn from_image<X>(image: BlueprintImage<X>) -> (Self, X) {
        let blueprint = Self {
            kind: image.kind,
            priority: image.priority,
            tick_hz: image.tick_hz,
            body: image.body,
            position: image.position,
            phase: image.phase,
            lifetime: image.lifetime,
            extras: None,
        };
        (blueprint, image.extras)
    }
}

/// An [`AgentPool`] as a checkpoint holds it: agents named by id, waiting
/// times as the histograms' recorded `(value, count)` pairs.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct PoolImage<X> {
    max_agents: usize,
    limit: usize,
    next_id: u64,
    active: usize,
    retired: u64,
    incoming: Vec<(AgentId, BlueprintImage<X>)>,
    /// `(id, blueprint, requested at)` of each queue, highest priority first.
    queues: [Vec<(AgentId, BlueprintImage<X>, SimTime)>; 3],
    expiries: Vec<(SimTime, AgentId)>,
    leaving: Vec<AgentId>,
    waits: [Vec<(u64, u64)>; 3],
}

impl AgentPool {
    /// The blueprints of every request not yet admitted, in the order
    /// [`image`](Self::image) saves them.
    pub(crate) fn blueprints(&self) -> impl Iterator<Item = &AgentBlueprint> {
        self.incoming
            .iter()
            .map(|(_, b)| b)
            .chain(self.queues.iter().flatten().map(|w| &w.blueprint))
    }

    /// Allows up to `max` agents at once if that is more than now (a branch
    /// of a checkpointed run with a larger population).
    pub(crate) fn raise_max_agents(&mut self, max: usize) {
        if max > self.max_agents {
            self.limit = self.limit.saturating_add(max - self.max_agents);
            self.max_agents = max;
        }
    }

    /// The pool for a checkpoint: `extras` saves a blueprint's extra
    /// components (in the order of [`blueprints`](Self::blueprints)), `id_of`
    /// names an agent's entity.
    pub(crate) fn image<X>(
        &self,
        mut extras: impl FnMut(&AgentBlueprint) -> X,
        id_of: impl Fn(Entity) -> Option<AgentId>,
    ) -> PoolImage<X> {
        let mut blueprint = |b: &AgentBlueprint| b.image(extras(b));
        let incoming = self
            .incoming
            .iter()
            .map(|(id, b)| (*id, blueprint(b)))
            .collect();
        let mut queues: [Vec<_>; 3] = Default::default();
        for (queue, image) in self.queues.iter().zip(&mut queues) {
            for w in queue {
                image.push((w.id, blueprint(&w.blueprint), w.requested_at));
            }
        }
        let mut expiries: Vec<(SimTime, AgentId)> = self
            .expiries
            .iter()
            .filter(|Reverse((_, _, e))| id_of(*e).is_some())
            .map(|Reverse((at, id, _))| (*at, *id))
            .collect();
        expiries.sort_unstable();
        let waits = std::array::from_fn(|q| {
            self.waits[q]
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        });
        PoolImage {
            max_agents: self.max_agents,
            limit: self.limit,
            next_id: self.next_id,
            active: self.active,
            retired: self.retired,
            incoming,
            queues,
            expiries,
            leaving: self.leaving.iter().filter_map(|&e| id_of(e)).collect(),
            waits,
        }
    }

    /// The pool a checkpoint held: `extras` turns a saved blueprint and its
    /// extras back into a blueprint, `entity_of` finds an agent's entity.
    pub(crate) fn from_image<X>(
        image: PoolImage<X>,
        mut extras: impl FnMut(AgentBlueprint, X) -> AgentBlueprint,
        entity_of: impl Fn(AgentId) -> Option<Entity>,
    ) -> Result<Self, String> {
        let mut pool = Self::new(image.max_agents);
        pool.limit = image.limit.min(image.max_agents);
        pool.next_id = image.next_id;
        pool.active = image.active;
        pool.retired = image.retired;
        let mut blueprint = |b: BlueprintImage<X>| {
            let (blueprint, x) = AgentBlueprint::from_image(b);
            extras(blueprint, x)
        };
        for (id, b) in image.incoming {
            pool.incoming.push((id, blueprint(b)));
        }
        for (queue, saved) in pool.queues.iter_mut().zip(image.queues) {
            for (id, b, requested_at) in saved {
                queue.push_back(Waiting {
                    id,
                    blueprint: blueprint(b),
                    requested_at,
                });
            }
        }
        for (at, id) in image.expiries {
            let entity = entity_of(id)
                .ok_or_else(|| format!("an expiry names agent {id}, which is not saved"))?;
            pool.expiries.push(Reverse((at, id, entity)));
        }
        for id in image.leaving {
            let entity = entity_of(id)
                .ok_or_else(|| format!("a departure names agent {id}, which is not saved"))?;
            pool.leaving.push(entity);
        }
        for (histogram, values) in pool.waits.iter_mut().zip(image.waits) {
            for (value, count) in values {
                histogram
                    .record_n(value, count)
                    .map_err(|e| format!("a waiting time out of range: {e}"))?;
            }
        }
        Ok(pool)
    }
}

fn queue_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Background => 2,
    }
}
