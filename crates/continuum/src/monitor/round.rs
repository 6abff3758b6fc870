//! A rebalancing spread over the steps of its interval.
//!
//! Reading every agent's load, deciding and applying the new budgets in one
//! step made that step several times longer than the others (with 300 000
//! agents, a step p99 of 31 ms against a median of 6.7 ms). A round instead
//! takes the steps of its interval in three parts, each a share of the agents
//! per step:
//!
//! 1. **Reads** (about the first half): each agent's load is read, and what
//!    depends on that agent alone is tallied as it comes: the memory it gives
//!    away, whether it is needy and what it wants, its work.
//! 2. **Weighing** (about a sixth): the first weighing step shares out the
//!    free memory among the needy (the only part that needs them all: a sort
//!    of the needy alone, when their wants exceed what is free); each weighing
//!    step then works out the new CPU shares of its share of the agents, and
//!    the last one works out the scale that makes them add up to one at most
//!    (applied where shares are used, from the round's end:
//!    [`LoadShedding::share_scale`](super::LoadShedding::share_scale)).
//! 3. **Applies** (the rest): each agent's new budget is worked out again
//!    from its load and the round's figures, and set. An agent whose budget
//!    changes costs far more to apply than one whose budget stays, and the
//!    changes gather where the list holds the busiest agents (the ones that
//!    tick most, often admitted together); so the weighing also counts what
//!    applying each block of the list will cost, and each applying step takes
//!    an equal share of that cost rather than of the agents.
//!
//! The result is exactly [`rebalance`](super::rebalance)'s on the loads read.
//! Every share is a fixed part of the list of agents taken (in id order) when
//! the round starts, so which agents a step touches depends on the step's
//! index and the loads read only: the same on every run and thread count.

use std::ops::Range;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AgentLoad, RebalanceRules, RebalanceSummary, next_share};
use crate::agent::AgentId;

/// What one step of a round does: read the loads of the agents `read` of the
/// round's list, weigh its share of the agents (the `i`-th of `of`), and
/// apply the new budgets of its share. A round of one step does all three.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepWork {
    pub read: Range<usize>,
    /// This step's index among the weighing steps, and how many there are.
    pub weigh: Option<(u64, u64)>,
    /// This step's index among the applying steps, and how many there are.
    pub apply: Option<(u64, u64)>,
}

/// The `i`-th of `of` equal parts of `0..total`.
pub(crate) fn part(total: usize, (i, of): (u64, u64)) -> Range<usize> {
    share(total, i, of)..share(total, i + 1, of)
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
    /// outside the round. Of `n` steps, the first `(n - 1) / 2` read, the next
    /// sixth or so weigh, the rest apply; with two steps the first reads and
    /// weighs, with one it does everything.
    pub fn work(&self, step: u64, agents: usize) -> Option<StepWork> {
        let t = step.checked_sub(self.first)?;
        let n = self.steps.max(1);
        if t >= n {
            return None;
        }
        let (reads, weighs) = match n {
            1 | 2 => (1, 1),
            _ => {
                let reads = (n - 1) / 2;
                (reads, ((n - reads) / 3).max(1))
            }
        };
        let weigh_from = if n <= 2 { 0 } else { reads };
        let apply_from = if n == 1 { 0 } else { weigh_from + weighs };
        let read = if t < reads {
            part(agents, (t, reads))
        } else {
            agents..agents
        };
        Some(StepWork {
            read,
            weigh: (weigh_from..weigh_from + weighs)
                .contains(&t)
                .then(|| (t - weigh_from, weighs)),
            apply: (t >= apply_from).then(|| (t - apply_from, n - apply_from)),
        })
    }
}

/// What a round keeps of a load it read: what weighing it and applying its
/// budget need. As an `Option` it takes 16 bytes, half an [`AgentLoad`]'s;
/// a round keeps one per agent from its first step to its last.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// Its memory limit less what it gives away.
    pub limit: u32,
    pub cpu_share: f32,
    /// Average work units per tick.
    pub work: f32,
    /// Whether it gives memory away.
    pub gives: bool,
    /// Its [`Agent::priority_boost`](crate::agent::Agent::priority_boost)
    /// when it was read.
    pub boosted: bool,
}

/// What a round's reads tally, agent by agent as they come.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Loads read (agents still there when their turn came).
    pub read: u64,
    /// Their memory limits, in total.
    pub used: u64,
    /// Bytes the donors give away, and how many donors there are.
    pub given: u64,
    pub donors: u64,
    /// What the needy want, in total, and their keys
    /// ([`AgentLoad::needy_key`]) and wants in list order.
    pub wanted: u64,
    pub needy: Vec<(u64, u32)>,
    /// Their work, summed in list order.
    pub work: f64,
}

impl Tally {
    /// Takes in the load of the agent at `index` of the round's list, and
    /// gives what the round keeps of it.
    pub fn add(&mut self, index: u32, load: &AgentLoad, rules: &RebalanceRules) -> Kept {
        self.read += 1;
        self.used += u64::from(load.memory_limit);
        let give = load.gives(rules);
        if give > 0 {
            self.given += u64::from(give);
            self.donors += 1;
        }
        if let Some(key) = load.needy_key(index, rules) {
            let wants = load.wants(rules);
            self.needy.push((key, wants));
            self.wanted += u64::from(wants);
        }
        self.work += f64::from(load.work);
        Kept {
            limit: load.memory_limit - give,
            cpu_share: load.cpu_share,
            work: load.work,
            gives: give > 0,
            boosted: load.priority_boost,
        }
    }
}

/// The figures a round's weighing fixes: the same for every agent it applies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Weighing {
    pub fair_share: f32,
    pub mean_work: f32,
    /// The memory the needy get: `(list index, bytes)` in index order.
    pub takes: Vec<(u32, u32)>,
    pub moved: u64,
    /// The new CPU shares (before scaling) weighed so far: their sum in list
    /// order, and how many went up and down.
    pub share_sum: f64,
    pub boosted: u64,
    pub trimmed: u64,
    /// What every share is to be multiplied by where it is used (once the
    /// last weighing step is done; see [`LoadShedding::share_scale`](super::LoadShedding::share_scale)).
    pub scale: f32,
    /// The cost of applying each block of `block` agents of the list, as
    /// weighed: one for each agent, [`CHANGE_COST`] more for each whose budget
    /// is likely to change. The applying steps share the list by it
    /// ([`apply_range`](Self::apply_range)).
    pub costs: Vec<u32>,
    pub block: u32,
}

/// What applying a changed budget costs (an agent's components fetched and
/// written, its tiers perhaps resized) against one left as it is (its kept
/// load looked at), about.
const CHANGE_COST: u32 = 32;
/// Blocks the list is cut into for the applying steps' shares.
const COST_BLOCKS: usize = 1024;

impl Weighing {
    /// The memory decision, at the first weighing step: the free memory of
    /// `memory_total` (what the round's agents hold now, and what the donors
    /// give) goes to the needy, the fullest first when it does not go round.
    pub fn start(tally: &mut Tally, memory_total: u64, fair_share: f32, listed: usize) -> Self {
        let mut free = memory_total.saturating_sub(tally.used) + tally.given;
        let block = listed.div_ceil(COST_BLOCKS).max(1);
        let mut weighing = Self {
            costs: vec![0; listed.div_ceil(block)],
            block: block as u32,
            fair_share,
            mean_work: if tally.read == 0 {
                0.0
            } else {
                (tally.work / tally.read as f64) as f32
            },
            scale: 1.0,
            ..Self::default()
        };
        if free > 0 {
            if tally.wanted > free {
                tally.needy.sort_unstable();
            }
            for &(key, wants) in &tally.needy {
                let index = key as u32;
                let take = u64::from(wants).min(free) as u32;
                if take > 0 {
                    free -= u64::from(take);
                    weighing.moved += u64::from(take);
                    weighing.takes.push((index, take));
                }
            }
            weighing.takes.sort_unstable();
        }
        weighing
    }

    /// Weighs the new CPU shares of the loads of `range` of the list (a share
    /// of it, in order), and what applying them will cost.
    pub fn weigh(&mut self, range: Range<usize>, loads: &[Option<Kept>], rules: &RebalanceRules) {
        let block = self.block.max(1) as usize;
        let first = self
            .takes
            .partition_point(|&(i, _)| (i as usize) < range.start);
        let mut takes = self.takes[first..]
            .iter()
            .map(|&(i, _)| i as usize)
            .peekable();
        for i in range {
            let taken = takes.next_if_eq(&i).is_some();
            let mut cost = 1;
            if let Some(load) = &loads[i] {
                let mut changes = load.gives || taken;
                if self.mean_work > 0.0 {
                    let share = self.share(load, rules);
                    self.boosted += u64::from(share > load.cpu_share);
                    self.trimmed += u64::from(share < load.cpu_share);
                    self.share_sum += f64::from(share);
                    changes |= share != load.cpu_share;
                }
                cost += CHANGE_COST * u32::from(changes);
            }
            if let Some(c) = self.costs.get_mut(i / block) {
                *c = c.saturating_add(cost);
            }
        }
    }

    /// The agents of the list (`listed` of them) whose new budgets the
    /// applying step `i` of `of` sets: the list cut where the costs weighed
    /// add up to `i / of` of their sum, at a block's start, so that each
    /// step takes its share of the work, whichever agents' budgets change.
    pub fn apply_range(&self, (i, of): (u64, u64), listed: usize) -> Range<usize> {
        let block = self.block.max(1) as usize;
        let total: u64 = self.costs.iter().map(|&c| u64::from(c)).sum();
        let cut = |j: u64| -> usize {
            if j == 0 {
                return 0;
            }
            if j >= of {
                return listed;
            }
            let target = (u128::from(total) * u128::from(j) / u128::from(of)) as u64;
            let mut sum = 0u64;
            let mut b = 0;
            while b < self.costs.len() && sum < target {
                sum += u64::from(self.costs[b]);
                b += 1;
            }
            (b * block).min(listed)
        };
        cut(i)..cut(i + 1)
    }

    /// The new CPU share of `load`, before scaling.
    fn share(&self, load: &Kept, rules: &RebalanceRules) -> f32 {
        next_share(
            load.cpu_share,
            load.work,
            self.mean_work,
            self.fair_share,
            rules,
        )
    }

    /// At the last weighing step: shares, scaled, add up to at most one whole.
    pub fn finish(&mut self) {
        if self.mean_work > 0.0 && self.share_sum > 1.0 {
            self.scale = (1.0 / self.share_sum) as f32;
        }
    }

    /// The new budget of the agent with `load`: its memory limit (`take`:
    /// what it gets, if needy), CPU share (unscaled) and boost; `None` if all
    /// three stay as they were.
    pub fn budget(
        &self,
        load: &Kept,
        take: u32,
        rules: &RebalanceRules,
    ) -> Option<(u32, f32, bool)> {
        let share = if self.mean_work > 0.0 {
            self.share(load, rules)
        } else {
            load.cpu_share
        };
        let boost = rules.boosts(share * self.scale, self.fair_share);
        // A donor is never needy: it is at most `memory_low` full, the needy
        // at least `memory_high`.
        (load.gives || take > 0 || share != load.cpu_share || boost != load.boosted).then_some((
            load.limit + take,
            share,
            boost,
        ))
    }

    /// What the round did, for the log.
    pub fn summary(&self, tally: &Tally) -> RebalanceSummary {
        RebalanceSummary {
            memory_donors: tally.donors as usize,
            memory_receivers: self.takes.len(),
            memory_moved: self.moved,
            boosted: self.boosted as usize,
            trimmed: self.trimmed as usize,
            share_scale: self.scale,
        }
    }
}

/// Puts the entities of `agents` (an iterator that can be started twice) in
/// `out`, in id order: which step reads an agent must not depend on the order
/// its entity has in the tables (a restored checkpoint's differs, and agents
/// are laid out by place). Ids are handed out in order, so the agents alive
/// mostly fill a range of ids: each is placed at its id's offset in the range,
/// in one pass, without a sort and without a list of pairs. A range much wider
/// than the agents (after much churn) is sorted instead.
pub(crate) fn in_id_order<I>(out: &mut Vec<Entity>, agents: impl Fn() -> I)
where
    I: Iterator<Item = (AgentId, Entity)>,
{
    out.clear();
    let (mut first, mut last, mut count) = (u64::MAX, 0, 0usize);
    for (id, _) in agents() {
        first = first.min(id.0);
        last = last.max(id.0);
        count += 1;
    }
    if count == 0 {
        return;
    }
    let range = last - first + 1;
    if range <= 2 * count as u64 + 1024 {
        out.resize(range as usize, Entity::PLACEHOLDER);
        for (id, entity) in agents() {
            out[(id.0 - first) as usize] = entity;
        }
        out.retain(|&entity| entity != Entity::PLACEHOLDER);
    } else {
        let mut pairs: Vec<_> = agents().collect();
        pairs.sort_unstable_by_key(|&(id, _)| id);
        out.extend(pairs.into_iter().map(|(_, entity)| entity));
    }
}

/// The rebalancing under way (see the module's documentation). Checkpoints
/// save it, agents named by id.
#[derive(Resource, Clone, Debug, Default)]
pub struct RebalanceRound {
    pub(crate) steps: Option<RoundSteps>,
    /// The rules the round started with.
    pub(crate) rules: RebalanceRules,
    /// The agents of the round, in id order.
    pub(crate) agents: Vec<Entity>,
    /// What the list was taken at (see [`Listing`]): a round that starts at
    /// the same keeps it.
    pub(crate) listed: Option<Listing>,
    /// What the round keeps of the loads read so far, one per agent of the
    /// list (`None`: gone when its turn came). Each is written when its
    /// agent's turn to be read comes, before anything uses it; until then it
    /// holds the round before's.
    pub(crate) loads: Vec<Option<Kept>>,
    pub(crate) tally: Tally,
    /// Fixed by the first weighing step.
    pub(crate) weighing: Option<Weighing>,
}

/// When a round's list of agents was taken: the pool's admissions and
/// departures so far ([`AgentPool::changes`](crate::agent::AgentPool::changes)),
/// and how many agents the rebalancer's query matched. While both stay the
/// same, so do the agents (an agent that joins or leaves the query without
/// the pool, by a component a game adds or removes, changes the count), and a
/// new round keeps the list: listing a million agents in id order takes
/// longer than a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listing {
    pub pool_changes: u64,
    pub agents: u64,
}

impl RebalanceRound {
    /// Starts the round of `steps` over `agents` with `rules`, listing them in
    /// id order (see [`in_id_order`]) unless they are those of the list the
    /// round before had (taken at `listing`).
    pub(crate) fn start<I>(
        &mut self,
        steps: RoundSteps,
        rules: &RebalanceRules,
        listing: Listing,
        agents: impl Fn() -> I,
    ) where
        I: Iterator<Item = (AgentId, Entity)>,
    {
        self.steps = Some(steps);
        self.rules = rules.clone();
        if self.listed != Some(listing) {
            in_id_order(&mut self.agents, agents);
            self.listed = Some(listing);
        }
        self.loads.resize(self.agents.len(), None);
        self.tally = Tally::default();
        self.weighing = None;
    }

    /// The round for a checkpoint, agents named by `id_of` (`None`: gone).
    pub(crate) fn image(&self, id_of: impl Fn(Entity) -> Option<AgentId>) -> RoundImage {
        RoundImage {
            steps: self.steps,
            rules: self.rules.clone(),
            agents: self.agents.iter().map(|&e| id_of(e)).collect(),
            listed: self.listed,
            loads: self.loads.clone(),
            tally: self.tally.clone(),
            weighing: self.weighing.clone(),
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
        // Reads fetch the listed agents on several threads at once: each must
        // be listed once.
        let mut named: Vec<Entity> = agents
            .iter()
            .copied()
            .filter(|&e| e != Entity::PLACEHOLDER)
            .collect();
        named.sort_unstable();
        if named.windows(2).any(|w| w[0] == w[1]) {
            return Err("the rebalancing lists an agent twice".into());
        }
        drop(named);
        let listed = |index: u64| index < agents.len() as u64;
        if image.loads.len() != agents.len()
            || !image
                .tally
                .needy
                .iter()
                .all(|&(key, _)| listed(key & 0xffff_ffff))
            || !image
                .weighing
                .as_ref()
                .is_none_or(|w| w.takes.iter().all(|&(i, _)| listed(u64::from(i))))
        {
            return Err("the rebalancing's loads or decisions name agents it does not list".into());
        }
        Ok(Self {
            steps: image.steps,
            rules: image.rules,
            agents,
            listed: image.listed,
            loads: image.loads,
            tally: image.tally,
            weighing: image.weighing,
        })
    }
}

/// [`RebalanceRound`] in a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RoundImage {
    steps: Option<RoundSteps>,
    rules: RebalanceRules,
    agents: Vec<Option<AgentId>>,
    listed: Option<Listing>,
    loads: Vec<Option<Kept>>,
    tally: Tally,
    weighing: Option<Weighing>,
}

/// What the rebalancer did: how its work was spread over the steps.
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceDiagnostics {
    /// Rounds weighed.
    pub rounds: u64,
    /// Most agents whose load one step read.
    pub most_read_in_a_step: u64,
    /// Most agents whose budget one step changed.
    pub most_applied_in_a_step: u64,
    /// Budgets changed in all rounds (over `rounds`, the agents a round
    /// changes).
    #[serde(default)]
    pub budgets_changed: u64,
    /// Most agents one round weighed.
    pub most_weighed: u64,
    /// Longest wall time the rebalancer took in one step, in nanoseconds
    /// (measured, so it varies from run to run).
    pub longest_step_ns: u64,
    /// Longest wall time one weighing step took, in nanoseconds (measured).
    pub longest_decision_ns: u64,
    /// Wall time of all weighing steps, in nanoseconds (measured): over
    /// `rounds`, the mean weighing of a round.
    pub decisions_ns: u64,
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_pcg::Pcg32;

    use super::*;
    use crate::monitor::{BudgetUpdate, rebalance};

    /// Agents listed in id order whatever the order they come in: ids that
    /// fill their range, ids with holes (both placed at their offsets) and
    /// ids far apart (sorted).
    #[test]
    fn agents_are_listed_in_id_order() {
        let mut rng = Pcg32::seed_from_u64(5);
        // (gap between ids, leave out every third)
        for (gap, holes) in [(1u64, false), (1, true), (5000, false)] {
            let mut agents: Vec<(AgentId, Entity)> = (0..3000u32)
                .filter(|i| !holes || i % 3 != 0)
                .map(|i| {
                    let id = AgentId(700 + u64::from(i) * gap);
                    (id, Entity::from_raw_u32(i).unwrap())
                })
                .collect();
            let expected: Vec<Entity> = agents.iter().map(|&(_, e)| e).collect();
            for i in (1..agents.len()).rev() {
                agents.swap(i, rng.random_range(0..=i));
            }
            let mut out = vec![Entity::PLACEHOLDER; 7]; // left from a round before
            in_id_order(&mut out, || agents.iter().copied());
            assert_eq!(out, expected, "gap {gap}, holes {holes}");
        }
        let mut out = vec![Entity::PLACEHOLDER];
        in_id_order(&mut out, std::iter::empty);
        assert!(out.is_empty());
    }

    /// A checkpoint's round that lists an agent twice is refused: its reads
    /// would fetch that agent on two threads at once. Gone agents may repeat.
    #[test]
    fn a_round_image_listing_an_agent_twice_is_refused() {
        let image = |ids: &[Option<u64>]| RoundImage {
            steps: None,
            rules: RebalanceRules::default(),
            agents: ids.iter().map(|id| id.map(AgentId)).collect(),
            listed: None,
            loads: vec![None; ids.len()],
            tally: Tally::default(),
            weighing: None,
        };
        let entity_of = |id: AgentId| Entity::from_raw_u32(id.0 as u32 + 1);
        let twice = RebalanceRound::from_image(image(&[Some(1), Some(2), Some(1)]), entity_of);
        assert_eq!(
            twice.err().as_deref(),
            Some("the rebalancing lists an agent twice")
        );
        let gone = RebalanceRound::from_image(image(&[None, Some(2), None]), entity_of);
        assert!(gone.is_ok(), "{:?}", gone.err());
    }

    /// A round that starts at the listing the round before was taken at
    /// keeps its list; an admission or a departure, or another count of
    /// agents, lists them again.
    #[test]
    fn a_round_keeps_its_list_while_its_agents_stay() {
        let listed = std::cell::Cell::new(0);
        let mut pairs: Vec<(AgentId, Entity)> = (0..5u32)
            .map(|i| (AgentId(u64::from(i)), Entity::from_raw_u32(i).unwrap()))
            .collect();
        pairs.reverse();
        let in_order: Vec<Entity> = pairs.iter().rev().map(|&(_, e)| e).collect();
        let agents = || {
            listed.set(listed.get() + 1);
            pairs.iter().copied()
        };
        let rules = RebalanceRules::default();
        let steps = |interval| RoundSteps {
            interval,
            first: interval * 10,
            steps: 10,
        };
        let at = |pool_changes, agents| Listing {
            pool_changes,
            agents,
        };
        let mut round = RebalanceRound::default();
        round.start(steps(0), &rules, at(5, 5), agents);
        let lists = listed.get();
        assert!(lists > 0);
        assert_eq!(round.agents, in_order);
        assert_eq!(round.loads.len(), 5);
        round.start(steps(1), &rules, at(5, 5), agents);
        assert_eq!(listed.get(), lists, "the same agents: the list is kept");
        assert_eq!((round.agents.len(), round.loads.len()), (5, 5));
        assert_eq!(round.steps, Some(steps(1)));
        round.start(steps(2), &rules, at(6, 5), agents);
        assert_eq!(listed.get(), 2 * lists, "an admission or a departure");
        round.start(steps(3), &rules, at(6, 4), agents);
        assert_eq!(listed.get(), 3 * lists, "another count of agents");
        round.start(steps(4), &rules, at(6, 4), agents);
        assert_eq!(listed.get(), 3 * lists);
        assert_eq!(round.agents, in_order);
    }

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

    /// Reads, weighings and applies each cover every agent exactly once, in
    /// order: all reads before the first weighing, all weighing before the
    /// first apply.
    fn check(steps: u64, agents: usize) {
        let (mut read, mut weighed, mut applied) = (0, 0, 0);
        for work in works(steps, agents) {
            assert_eq!(work.read.start, read, "{steps} steps: reads follow on");
            read = work.read.end;
            if let Some(weigh) = work.weigh {
                assert_eq!(read, agents, "{steps} steps: weighed before reading all");
                let part = part(agents, weigh);
                assert_eq!(part.start, weighed, "{steps} steps: weighing follows on");
                weighed = part.end;
            }
            if let Some(apply) = work.apply {
                assert!(
                    weighed == agents && work.weigh.is_none_or(|(i, of)| i + 1 == of),
                    "{steps} steps: applied before weighing all"
                );
                let part = part(agents, apply);
                assert_eq!(part.start, applied, "{steps} steps: applies follow on");
                applied = part.end;
            }
        }
        assert_eq!(
            (read, weighed, applied),
            (agents, agents, agents),
            "{steps} steps"
        );
    }

    #[test]
    fn every_round_reads_weighs_and_applies_everything_once() {
        for steps in 1..=12 {
            for agents in [0, 1, 7, 300_000] {
                check(steps, agents);
            }
        }
        check(100, 300_000);
    }

    #[test]
    fn a_round_of_a_hundred_steps_spreads_its_work() {
        let works = works(100, 300_000);
        let count = |f: &dyn Fn(&StepWork) -> bool| works.iter().filter(|w| f(w)).count();
        assert_eq!(count(&|w| !w.read.is_empty()), 49);
        assert_eq!(count(&|w| w.weigh.is_some()), 17);
        assert_eq!(count(&|w| w.apply.is_some()), 34);
        assert_eq!(count(&|w| w.weigh.is_some() && w.apply.is_some()), 0);
        let most = |f: &dyn Fn(&StepWork) -> usize| works.iter().map(f).max().unwrap();
        assert!(most(&|w| w.read.len()) <= 300_000usize.div_ceil(49));
        assert!(most(&|w| w.weigh.map_or(0, |p| part(300_000, p).len())) <= 300_000 / 17 + 1);
        assert!(most(&|w| w.apply.map_or(0, |p| part(300_000, p).len())) <= 300_000 / 34 + 1);
    }

    /// The applying steps share the changes out, not the agents: with the
    /// changes all among the first tenth of the list (donors there, nothing
    /// to do for the rest), no step sets many more than its share of them,
    /// and the steps still cover the list once, in order.
    #[test]
    fn applying_steps_share_the_changes_out() {
        let n = 10_000;
        let kept: Vec<Option<Kept>> = (0..n)
            .map(|i| {
                (i % 97 != 5).then_some(Kept {
                    limit: 100,
                    cpu_share: 0.01,
                    work: 0.0,
                    gives: i < n / 10,
                    boosted: false,
                })
            })
            .collect();
        let changing = kept.iter().flatten().filter(|k| k.gives).count();
        let mut weighing = Weighing::start(&mut Tally::default(), 0, 0.01, n);
        for i in 0..17 {
            weighing.weigh(part(n, (i, 17)), &kept, &RebalanceRules::default());
        }
        let mut next = 0;
        let mut most = 0;
        for i in 0..34 {
            let range = weighing.apply_range((i, 34), n);
            assert_eq!(range.start, next, "step {i} follows on");
            next = range.end;
            let changed = kept[range].iter().flatten().filter(|k| k.gives).count();
            most = most.max(changed);
        }
        assert_eq!(next, n, "every agent once");
        // Equal parts of the list would set 294 in the first step.
        assert!(
            most <= 2 * changing / 34 + weighing.block as usize,
            "{most} of {changing} in one step"
        );
    }

    /// Loads of every kind: donors, needy, busy and idle agents, some gone.
    fn loads(rng: &mut Pcg32, n: usize) -> Vec<Option<AgentLoad>> {
        (0..n)
            .map(|_| {
                (rng.random_range(0..10) > 0).then(|| {
                    let limit = rng.random_range(0..400);
                    AgentLoad {
                        memory_limit: limit,
                        memory_held: rng.random_range(0..=limit.max(1)),
                        memory_floor: rng.random_range(0..100).min(limit),
                        memory_ceiling: limit + rng.random_range(0..200),
                        cpu_share: rng.random_range(0.0..0.02),
                        work: if rng.random_range(0..4) == 0 {
                            rng.random_range(0.0..200.0)
                        } else {
                            rng.random_range(0.0..20.0)
                        },
                        ticks: rng.random_range(0..20),
                        priority_boost: rng.random_range(0..8) == 0,
                    }
                })
            })
            .collect()
    }

    /// The budgets a round of `steps` sets, as [`BudgetUpdate`]s naming the
    /// agents among those read.
    fn by_round(
        loads: &[Option<AgentLoad>],
        steps: u64,
        total: u64,
        fair: f32,
        rules: &RebalanceRules,
    ) -> Vec<BudgetUpdate> {
        let round = RoundSteps {
            interval: 0,
            first: 0,
            steps,
        };
        let mut tally = Tally::default();
        let mut weighing = None;
        let mut updates = Vec::new();
        let mut kept = vec![None; loads.len()];
        let mut applied = 0;
        let read: Vec<usize> = (0..loads.len()).filter(|&i| loads[i].is_some()).collect();
        for step in 0..steps {
            let work = round.work(step, loads.len()).unwrap();
            for i in work.read {
                if let Some(load) = &loads[i] {
                    kept[i] = Some(tally.add(i as u32, load, rules));
                }
            }
            if let Some(weigh) = work.weigh {
                if weigh.0 == 0 {
                    weighing = Some(Weighing::start(&mut tally, total, fair, loads.len()));
                }
                let w = weighing.as_mut().unwrap();
                w.weigh(part(loads.len(), weigh), &kept, rules);
                if weigh.0 + 1 == weigh.1 {
                    w.finish();
                }
            }
            if let Some(apply) = work.apply {
                let w = weighing.as_ref().unwrap();
                let range = w.apply_range(apply, loads.len());
                assert_eq!(range.start, applied, "applies follow on");
                applied = range.end;
                for i in range {
                    let Some(load) = &kept[i] else { continue };
                    let take = w
                        .takes
                        .iter()
                        .find(|t| t.0 as usize == i)
                        .map_or(0, |t| t.1);
                    if let Some((limit, share, boost)) = w.budget(load, take, rules) {
                        updates.push(BudgetUpdate {
                            index: read.binary_search(&i).unwrap() as u32,
                            memory_limit: limit,
                            cpu_share: share,
                            priority_boost: boost,
                        });
                    }
                }
            }
        }
        assert_eq!(applied, loads.len(), "every agent applied");
        updates
    }

    /// A round spread over its steps sets exactly the budgets one
    /// [`rebalance`] of the loads read would: memory short or plenty, shares
    /// to scale or not, any number of steps.
    #[test]
    fn a_spread_round_decides_as_one_rebalancing() {
        let mut rng = Pcg32::seed_from_u64(7);
        let rules = RebalanceRules::default();
        let mut checked = 0;
        for case in 0..60 {
            let n = rng.random_range(0..300);
            let loads = loads(&mut rng, n);
            let read: Vec<AgentLoad> = loads.iter().flatten().copied().collect();
            let used: u64 = read.iter().map(|a| u64::from(a.memory_limit)).sum();
            // Nothing free, a little, or plenty; fair shares that do and do
            // not make the shares add up to more than one.
            let total = [0, used, used + 500, used * 2][case % 4];
            let fair = [0.002, 0.01, 0.05][case % 3];
            let (expected, summary) = rebalance(&read, total, fair, &rules);
            for steps in [1, 2, 3, 10, 100] {
                assert_eq!(
                    by_round(&loads, steps, total, fair, &rules),
                    expected,
                    "case {case}, {steps} steps"
                );
            }
            checked += usize::from(summary.memory_receivers > 0 && summary.boosted > 0);
        }
        assert!(checked > 10, "memory and shares moved in {checked} cases");
    }
}
