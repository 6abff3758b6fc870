//! A rebalancing spread over the steps of its interval.
//!
//! Reading every agent's load, deciding and applying the new budgets in one
//! step made that step several times longer than the others (with 300 000
//! agents, a step p99 of 31 ms against a median of 6.7 ms). A round instead
//! takes the steps of its interval in three parts: the first steps read the
//! agents a share at a time, one step decides, and the remaining steps apply
//! the decided updates a share at a time. Every share is a fixed part of a list
//! taken when the round starts, so which agents a step touches depends on the
//! step's index only: the same on every run and thread count.

use std::ops::Range;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AgentLoad, BudgetUpdate, RebalanceScratch};
use crate::agent::AgentId;

/// What one step of a round does: read the loads of the agents `read` of the
/// round's list, decide (once the last are read), and apply its share of the
/// decided updates ([`share`](Self::share)). A round of one step does all three.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepWork {
    pub read: Range<usize>,
    pub decide: bool,
    /// This step's index among the applying steps, and how many there are.
    pub apply: Option<(u64, u64)>,
}

impl StepWork {
    /// The updates this step applies, of `updates` decided.
    pub fn share(&self, updates: usize) -> Range<usize> {
        match self.apply {
            Some((i, of)) => share(updates, i, of)..share(updates, i + 1, of),
            None => 0..0,
        }
    }
}

/// The first `done` of `of` equal parts of `total`, rounded up.
fn share(total: usize, done: u64, of: u64) -> usize {
    (total as u128 * u128::from(done)).div_ceil(u128::from(of.max(1))) as usize
}

/// The steps of a round: `steps` in all, starting at step `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoundSteps {
    /// The interval (virtual time over the rebalancing period) the round is in.
    pub interval: u64,
    /// The step the round started in.
    pub first: u64,
    /// Steps in the interval from `first` on (at least one).
    pub steps: u64,
}

impl RoundSteps {
    /// What step `step` does, with `agents` in the round's list: `None`
    /// outside the round. The first steps (about half) read, the next one
    /// decides, the rest apply; with two steps the first reads and decides.
    pub fn work(&self, step: u64, agents: usize) -> Option<StepWork> {
        let t = step.checked_sub(self.first)?;
        let n = self.steps.max(1);
        if t >= n {
            return None;
        }
        let reads = if n <= 2 { 1 } else { (n - 1) / 2 };
        let decide_at = if n <= 2 { 0 } else { reads };
        let apply_from = if n == 1 { 0 } else { decide_at + 1 };
        let read = if t < reads {
            share(agents, t, reads)..share(agents, t + 1, reads)
        } else {
            agents..agents
        };
        Some(StepWork {
            read,
            decide: t == decide_at,
            apply: (t >= apply_from).then(|| (t - apply_from, n - apply_from)),
        })
    }
}

/// The rebalancing under way. A round takes the steps of its interval in
/// three parts: the first steps (about half) read the agents' loads a share
/// at a time, one step decides, and the remaining steps apply the decided
/// updates a share at a time. Every share is a fixed part of the list of
/// agents taken when the round starts (in table order), so which agents a
/// step touches depends on the step's index only: the same on every run and
/// thread count. Checkpoints save it, agents named by id.
#[derive(Resource, Clone, Debug, Default)]
pub struct RebalanceRound {
    pub(crate) steps: Option<RoundSteps>,
    /// The agents of the round, in table order when it started.
    pub(crate) agents: Vec<Entity>,
    /// Loads read so far, one per agent of the list (`None`: gone when its
    /// turn came, or not read yet).
    pub(crate) loads: Vec<Option<AgentLoad>>,
    /// The decided updates; each `index` names an agent of the list.
    pub(crate) updates: Vec<BudgetUpdate>,
    /// Working lists of the decision, kept from one round to the next.
    pub(crate) scratch: DecisionScratch,
}

/// What a decision works in: the loads read (compacted) and where each is in
/// the round's list, and [`rebalance_into`](super::rebalance_into)'s lists.
#[derive(Clone, Debug, Default)]
pub(crate) struct DecisionScratch {
    /// The round's agents with their ids, to put them in id order.
    pub by_id: Vec<(AgentId, Entity)>,
    pub listed: Vec<u32>,
    pub loads: Vec<AgentLoad>,
    pub decision: RebalanceScratch,
}

impl RebalanceRound {
    /// The round for a checkpoint, agents named by `id_of` (`None`: gone).
    pub(crate) fn image(&self, id_of: impl Fn(Entity) -> Option<AgentId>) -> RoundImage {
        RoundImage {
            steps: self.steps,
            agents: self.agents.iter().map(|&e| id_of(e)).collect(),
            loads: self.loads.clone(),
            updates: self.updates.clone(),
        }
    }

    /// The round a checkpoint held; agents that were gone stay gone
    /// (`Entity::PLACEHOLDER`, which no query finds).
    pub(crate) fn from_image(
        image: RoundImage,
        entity_of: impl Fn(AgentId) -> Option<Entity>,
    ) -> Result<Self, String> {
        let agents = image
            .agents
            .into_iter()
            .map(|id| match id {
                None => Ok(Entity::PLACEHOLDER),
                Some(id) => entity_of(id)
                    .ok_or_else(|| format!("the rebalancing names agent {id}, which is not saved")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if image.loads.len() > agents.len()
            || image
                .updates
                .iter()
                .any(|u| u.index as usize >= agents.len())
        {
            return Err("the rebalancing's loads or updates name agents it does not list".into());
        }
        Ok(Self {
            steps: image.steps,
            agents,
            loads: image.loads,
            updates: image.updates,
            scratch: DecisionScratch::default(),
        })
    }
}

/// [`RebalanceRound`] in a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RoundImage {
    steps: Option<RoundSteps>,
    agents: Vec<Option<AgentId>>,
    loads: Vec<Option<AgentLoad>>,
    updates: Vec<BudgetUpdate>,
}

/// What the rebalancer did: how its work was spread over the steps.
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceDiagnostics {
    /// Rounds decided.
    pub rounds: u64,
    /// Most agents whose load one step read.
    pub most_read_in_a_step: u64,
    /// Most budget updates one step applied.
    pub most_applied_in_a_step: u64,
    /// Most agents one decision weighed.
    pub most_weighed: u64,
    /// Longest wall time the rebalancer took in one step, in nanoseconds
    /// (measured, so it varies from run to run).
    pub longest_step_ns: u64,
    /// Longest wall time one decision took, in nanoseconds (measured).
    pub longest_decision_ns: u64,
    /// Wall time of all decisions, in nanoseconds (measured): over `rounds`,
    /// the mean decision.
    pub decisions_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step's work in a round of `steps` over `agents` agents.
    fn works(steps: u64, agents: usize) -> Vec<StepWork> {
        let round = RoundSteps {
            interval: 3,
            first: 300,
            steps,
        };
        assert_eq!(round.work(299, agents), None);
        assert_eq!(round.work(300 + steps.max(1), agents), None);
        (300..300 + steps.max(1))
            .map(|s| round.work(s, agents).expect("in the round"))
            .collect()
    }

    /// Reads and applies cover every agent and update exactly once, in
    /// order, reads before the decision and applies after it.
    fn check(steps: u64, agents: usize, updates: usize) {
        let (mut read, mut applied, mut decisions) = (0, 0, 0);
        for work in works(steps, agents) {
            assert_eq!(work.read.start, read, "{steps} steps: reads follow on");
            assert!(
                decisions == 0 || work.read.is_empty(),
                "{steps} steps: read after the decision"
            );
            read = work.read.end;
            if work.decide {
                assert_eq!(read, agents, "{steps} steps: decided before reading all");
                decisions += 1;
            }
            let apply = work.share(updates);
            assert!(
                decisions == 1 || apply.is_empty(),
                "{steps} steps: applied before deciding"
            );
            assert_eq!(apply.start, applied, "{steps} steps: applies follow on");
            applied = apply.end;
        }
        assert_eq!(
            (read, applied, decisions),
            (agents, updates, 1),
            "{steps} steps"
        );
    }

    #[test]
    fn every_round_reads_decides_and_applies_everything_once() {
        for steps in 1..=12 {
            for (agents, updates) in [(0, 0), (1, 1), (7, 3), (300_000, 123_457)] {
                check(steps, agents, updates);
            }
        }
        check(100, 300_000, 300_000);
    }

    #[test]
    fn a_round_of_a_hundred_steps_spreads_its_work() {
        let works = works(100, 300_000);
        let reads: Vec<usize> = works
            .iter()
            .map(|w| w.read.len())
            .filter(|&n| n > 0)
            .collect();
        let applies: Vec<usize> = works
            .iter()
            .map(|w| w.share(300_000).len())
            .filter(|&n| n > 0)
            .collect();
        assert_eq!((reads.len(), applies.len()), (49, 50));
        assert!(reads.iter().all(|&n| n <= 300_000usize.div_ceil(49)));
        assert!(applies.iter().all(|&n| n <= 300_000 / 50));
        assert!(works[49].decide && works[49].read.is_empty() && works[49].apply.is_none());
    }
}
