use std::collections::VecDeque;

use bevy_ecs::prelude::*;
use bevy_math::Vec2;

use super::*;
use crate::clock::SimTime;

/// Everything needed to start one agent. Build one with
/// [`Archetypes::blueprint`](crate::archetype::Archetypes::blueprint) and adjust
/// fields before requesting it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentBlueprint {
    pub kind: AgentKind,
    pub priority: Priority,
    /// Ticks per virtual second.
    pub tick_hz: f32,
    pub body: Body,
    /// Site facts the agent may remember.
    pub memory_sites: usize,
    /// Where the agent starts; `None` places it uniformly at random (seeded by
    /// the scenario seed and the agent's id).
    pub position: Option<Vec2>,
    /// Where in its first interval the agent first ticks, as a fraction in
    /// `[0, 1)` of its period; `None` derives one from the seed and the id.
    pub phase: Option<f64>,
}

/// A request waiting for a slot.
#[derive(Clone, Debug)]
pub(crate) struct Waiting {
    pub(crate) id: AgentId,
    pub(crate) blueprint: AgentBlueprint,
    pub(crate) requested_at: SimTime,
}

/// The agent pool: every agent starts as a request here.
///
/// While fewer than [`limit`](Self::limit) agents are active, requests are
/// admitted at the next admission point (the start of the next step, or the end
/// of the current one); otherwise they wait in the queue of their priority.
/// Waiting agents are admitted high first, then normal, then background, first in
/// first out within a queue.
#[derive(Resource, Debug)]
pub struct AgentPool {
    max_agents: usize,
    limit: usize,
    next_id: u64,
    queues: [VecDeque<Waiting>; 3],
    active: usize,
    requested: u64,
    admitted: u64,
}

impl Default for AgentPool {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl AgentPool {
    /// A pool that runs at most `max_agents` agents at once.
    pub fn new(max_agents: usize) -> Self {
        Self {
            max_agents,
            limit: max_agents,
            next_id: 0,
            queues: Default::default(),
            active: 0,
            requested: 0,
            admitted: 0,
        }
    }

    /// Requests a new agent and returns the id it will carry. Ids are given in
    /// request order.
    pub fn request(&mut self, blueprint: AgentBlueprint, now: SimTime) -> AgentId {
        let id = AgentId(self.next_id);
        self.next_id += 1;
        self.requested += 1;
        self.queues[queue_index(blueprint.priority)].push_back(Waiting {
            id,
            blueprint,
            requested_at: now,
        });
        id
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

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Requests waiting at one priority.
    pub fn queued_at(&self, priority: Priority) -> usize {
        self.queues[queue_index(priority)].len()
    }

    /// All requests ever made.
    pub fn requested(&self) -> u64 {
        self.requested
    }

    /// All requests ever admitted.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Takes the requests that fit under the limit now, in admission order.
    pub(crate) fn take_admissible(&mut self) -> Vec<Waiting> {
        let free = self.limit.saturating_sub(self.active);
        let mut out = Vec::new();
        for priority in Priority::HIGHEST_FIRST {
            let queue = &mut self.queues[queue_index(priority)];
            let n = queue.len().min(free - out.len());
            out.extend(queue.drain(..n));
            if queue.capacity() > 4 * queue.len() + 64 {
                queue.shrink_to_fit(); // a drained startup wave should not keep its memory
            }
        }
        self.active += out.len();
        self.admitted += out.len() as u64;
        out
    }
}

fn queue_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Background => 2,
    }
}
