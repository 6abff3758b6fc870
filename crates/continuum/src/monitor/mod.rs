//! The resource monitor: budgets that follow what agents use, and real time that
//! holds under overload.
//!
//! - **Rebalancing** (every [`RebalanceRules::every`] virtual seconds, in every
//!   mode, its work spread over the steps of that interval: see
//!   [`RebalanceRound`]): memory budget moves from agents that leave most of
//!   it unused to agents whose memory is nearly full, never exceeding the total; CPU shares
//!   grow for agents that use much more than the average work and shrink for those
//!   that use much less. It depends on deterministic work units only, so fast runs
//!   stay deterministic.
//! - **Overload** (realtime mode only, every [`OverloadRules::evaluate_every`]
//!   real seconds): when steps take more than [`OverloadRules::shed_above`] of
//!   the real time allowed them (the step length over the speed), the monitor
//!   sheds load down the [`LEVELS`], as many at once as the load needs (its
//!   estimate scales the load by the ticks a level would run): background
//!   agents first (lower rate, then lower CPU share), then normal ones, and at
//!   the deepest level it stops admitting new agents. High-priority agents keep their full rate, and an agent the
//!   rebalancer boosted ([`Agent::priority_boost`](crate::agent::Agent::priority_boost):
//!   its CPU share is at least [`RebalanceRules::boost_at`] fair shares) gets
//!   the rate and share of the class above its own. When the load stays under
//!   [`OverloadRules::restore_below`] for [`OverloadRules::restore_after`]
//!   evaluations in a row it restores one level, background last.
//!
//! The decisions are plain functions of their inputs ([`decide_overload`],
//! [`rebalance`]); only the sampler touches the machine. Every change is logged
//! in [`BudgetLog`] with its virtual time and reason.

mod plugin;
mod round;

pub use plugin::ResourceMonitorPlugin;
pub(crate) use round::RoundImage;
use round::{Listing, RoundSteps, Weighing, part};
pub use round::{RebalanceDiagnostics, RebalanceRound};

use std::collections::VecDeque;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use crate::agent::AgentPool;

/// An agent's share of the run's work, and what its ticks cost. The resource
/// monitor gives every agent one (a required component of `Agent`) with the
/// fair share, and moves shares between agents. Its memory limit is its
/// [`Memory`](crate::memory::Memory)'s.
#[derive(Component, Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Budget {
    /// Its share of the run's work per tick, before the rebalancer's scale
    /// ([`LoadShedding::share_scale`], which makes all shares add up to at most
    /// 1). Perception stops examining candidates once the agent has spent
    /// `cpu_share × share_scale × agents × WORK_ALLOWANCE` work units in a
    /// tick (less under load shedding). Zero until the monitor gives the
    /// agent a share: the fair share ([`fair_share`]).
    pub cpu_share: f32,
    /// What its ticks cost.
    pub usage: Usage,
}

impl Budget {
    /// Work units the agent may spend per tick when `agents` are active, with its
    /// share scaled by `scale` (load shedding).
    pub fn work_allowance(&self, agents: usize, scale: f32) -> u32 {
        work_allowance(self.cpu_share, agents, scale)
    }

    /// Its share, or `fair` while the monitor has given it none.
    pub fn share_or(&self, fair: f32) -> f32 {
        if self.cpu_share > 0.0 {
            self.cpu_share
        } else {
            fair
        }
    }

    /// Takes in one tick's work units (see [`Usage::spend`]).
    pub fn spend(&mut self, units: u32) {
        self.usage.spend(units);
    }
}

/// Work units an agent with `cpu_share` may spend per tick when `agents` are
/// active, with its share scaled by `scale` (load shedding).
pub fn work_allowance(cpu_share: f32, agents: usize, scale: f32) -> u32 {
    let units = f64::from(cpu_share * scale) * agents as f64 * f64::from(WORK_ALLOWANCE);
    units.clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The fair share of the run's work: one over the most agents the pool runs
/// (or, for an unlimited pool, over the agents running now). Agents start
/// with it, and without the resource monitor keep it.
pub fn fair_share(pool: &AgentPool) -> f32 {
    1.0 / if pool.max_agents() == usize::MAX {
        pool.active().max(1)
    } else {
        pool.max_agents().max(1)
    } as f32
}

/// Work units an agent with a fair share may spend per tick: enough that an
/// agent's view is never cut short at ordinary densities (a perception examines
/// a few dozen candidates).
pub const WORK_ALLOWANCE: u32 = 256;

/// What an agent's latest tick cost, in deterministic work units: candidates its
/// perception examined, sites its memory consolidated, and its action.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Units spent in the latest tick.
    pub last: u32,
    /// Moving average of units per tick.
    pub average: f32,
}

impl Usage {
    /// Takes in one tick's units.
    pub fn spend(&mut self, units: u32) {
        self.last = units;
        self.average = if self.average == 0.0 {
            units as f32
        } else {
            0.9 * self.average + 0.1 * units as f32
        };
    }
}

/// How much the monitor scales agents' CPU shares: each priority's cut under
/// load shedding, and the rebalancer's scale of every share.
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadShedding {
    /// CPU share multipliers by priority, indexed by `Priority as usize`
    /// (background, normal, high). 1.0 is the full share. (Load shedding also
    /// slows their tick rates, through
    /// [`PriorityRates`](crate::agent::PriorityRates).)
    pub cpu_scale: [f32; 3],
    /// What every agent's [`Budget::cpu_share`] is multiplied by where it is
    /// used: at most 1, so that the shares add up to at most one whole. The
    /// rebalancer sets it at the end of each round
    /// ([`RebalanceSummary::share_scale`]). Shares are kept unscaled, so an
    /// agent whose share is at a bound stays there, untouched, from round to
    /// round.
    #[serde(default = "one")]
    pub share_scale: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for LoadShedding {
    fn default() -> Self {
        Self {
            cpu_scale: [1.0; 3],
            share_scale: 1.0,
        }
    }
}

impl LoadShedding {
    /// What the CPU share of an agent of shedding class `class`
    /// ([`Agent::shed_class`](crate::agent::Agent::shed_class)) is multiplied by.
    pub fn scale(&self, class: usize) -> f32 {
        self.cpu_scale[class] * self.share_scale
    }
}

/// How budgets are rebalanced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebalanceRules {
    /// Virtual seconds between two rebalancings.
    pub every: f64,
    /// An agent whose memory is at least this full (held / limit) gets more.
    pub memory_high: f32,
    /// An agent whose memory is at most this full gives some of its limit away.
    pub memory_low: f32,
    /// Share of its limit an agent gives or gets in one rebalancing.
    pub memory_step: f32,
    /// An agent whose work is at least this many times the average gets a larger
    /// CPU share.
    pub cpu_high: f32,
    /// An agent whose work is at most this fraction of the average gets a smaller
    /// one.
    pub cpu_low: f32,
    /// Relative change of a share in one rebalancing.
    pub cpu_step: f32,
    /// Shares stay between these multiples of the fair share.
    pub cpu_min: f32,
    pub cpu_max: f32,
    /// An agent whose share is at least this many fair shares is boosted
    /// ([`Agent::priority_boost`](crate::agent::Agent::priority_boost)): while
    /// load is shed it gets the rate of the class above its own. The default
    /// is `cpu_max`'s, so that only agents whose shares reached the cap are:
    /// the few that need far more work than the rest. Shares add up to one,
    /// so whenever work is uneven about half the agents are above the fair
    /// share, and a whole kind that needs more work than the others can sit
    /// well above it; boosting those undid most of the shedding.
    pub boost_at: f32,
    /// Agents younger than this many ticks give nothing away (their memory has
    /// not had time to fill).
    pub settle_ticks: u32,
}

impl RebalanceRules {
    /// Whether an agent with CPU share `share` is boosted, `fair` being the
    /// fair share.
    pub fn boosts(&self, share: f32, fair: f32) -> bool {
        share >= fair * self.boost_at
    }
}

impl Default for RebalanceRules {
    fn default() -> Self {
        Self {
            every: 1.0,
            memory_high: 0.8,
            memory_low: 0.3,
            memory_step: 0.25,
            cpu_high: 2.0,
            cpu_low: 0.5,
            cpu_step: 0.25,
            cpu_min: 0.25,
            cpu_max: 4.0,
            boost_at: 4.0,
            settle_ticks: 50,
        }
    }
}

/// When load is shed and restored (realtime mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadRules {
    pub enabled: bool,
    /// Real seconds between two evaluations (a quarter of them when steps take
    /// more than twice `shed_above`, over at least five steps).
    pub evaluate_every: f64,
    /// Shed a level when steps take more than this share of the real time
    /// allowed them; above twice this, as many levels as the load needs.
    pub shed_above: f64,
    /// Count an evaluation as calm when they take less than this share.
    pub restore_below: f64,
    /// Calm evaluations in a row before one level is restored.
    pub restore_after: u32,
    /// What an evaluation measures of the steps since the one before.
    pub measure: LoadMeasure,
}

/// What an overload evaluation measures of the steps since the one before,
/// as a share of the real time allowed a step: the load that
/// [`OverloadRules::shed_above`] and [`OverloadRules::restore_below`] bound.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub enum LoadMeasure {
    /// Their mean time: shedding holds the average step under the line, and
    /// a step now and then may take longer than the real time allowed it.
    #[default]
    Mean,
    /// The time that this share of them stayed within (`Quantile(0.99)`:
    /// all but the slowest step in a hundred): shedding holds the slow steps
    /// under the line, for runs whose steps must (nearly) all keep up. It
    /// sheds deeper than the mean would, and restores later.
    Quantile(f64),
}

impl LoadMeasure {
    /// The measure of `steps` (their times, in any order; reordered).
    pub fn of(self, steps: &mut [u64]) -> Option<f64> {
        if steps.is_empty() {
            return None;
        }
        match self {
            LoadMeasure::Mean => {
                Some(steps.iter().map(|&ns| ns as f64).sum::<f64>() / steps.len() as f64)
            }
            LoadMeasure::Quantile(q) => {
                // The smallest time that at least `q` of the steps stay within.
                let rank = ((q.clamp(0.0, 1.0) * steps.len() as f64).ceil() as usize)
                    .clamp(1, steps.len());
                let (_, nth, _) = steps.select_nth_unstable(rank - 1);
                Some(*nth as f64)
            }
        }
    }
}

impl Default for OverloadRules {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluate_every: 1.0,
            shed_above: 0.9,
            restore_below: 0.6,
            restore_after: 3,
            measure: LoadMeasure::Mean,
        }
    }
}

/// The resource monitor's configuration, seeded by a scenario or a game.
#[derive(Resource, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    pub rebalance: RebalanceRules,
    pub overload: OverloadRules,
}

/// One level of load shedding: multipliers by priority (background, normal,
/// high) and whether admission stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub rate: [f32; 3],
    pub cpu: [f32; 3],
    /// New agents wait, even below the pool's limit.
    pub hold_admission: bool,
}

const fn level(bg_rate: f32, bg_cpu: f32, normal_rate: f32, normal_cpu: f32, hold: bool) -> Level {
    Level {
        rate: [bg_rate, normal_rate, 1.0],
        cpu: [bg_cpu, normal_cpu, 1.0],
        hold_admission: hold,
    }
}

/// The shedding levels, lightest first. Background agents lose rate, then CPU
/// share; then normal agents do; the deepest levels slow background agents to
/// a twentieth, a fiftieth, then a hundredth of their rate and normal ones to
/// a tenth, then a twentieth; the last two levels also hold admission. High
/// priority is never touched.
pub const LEVELS: [Level; 11] = [
    level(1.0, 1.0, 1.0, 1.0, false),
    level(0.5, 1.0, 1.0, 1.0, false),
    level(0.25, 1.0, 1.0, 1.0, false),
    level(0.25, 0.5, 1.0, 1.0, false),
    level(0.1, 0.5, 1.0, 1.0, false),
    level(0.1, 0.5, 0.5, 1.0, false),
    level(0.1, 0.5, 0.25, 0.5, false),
    level(0.05, 0.5, 0.25, 0.5, false),
    level(0.02, 0.5, 0.1, 0.5, false),
    level(0.02, 0.5, 0.1, 0.5, true),
    level(0.01, 0.5, 0.05, 0.5, true),
];

/// Where the overload policy stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverloadState {
    /// Index into [`LEVELS`].
    pub level: usize,
    /// Calm evaluations in a row.
    pub calm: u32,
}

/// What one evaluation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Hold,
    Shed,
    Restore,
}

/// The overload policy: from where it stands, the measured load (mean step
/// time over the real time allowed a step) and the agent ticks by priority
/// (background, normal, high) run since the last evaluation, the next state
/// and what changed.
///
/// Above `shed_above` it sheds one level. Above twice `shed_above` it sheds as
/// many as the load needs at once: the load each deeper level would leave is
/// estimated as proportional to the ticks it would run ([`estimated_load`]),
/// and the lightest level whose estimate is back under `shed_above` is taken
/// (the deepest if none is). Five times the real time allowed thus goes most
/// of the way down in one evaluation rather than a level a second while real
/// time is lost; near the line, where a level that only lowers CPU shares may
/// be enough, it still goes one level at a time. With no ticks counted it
/// sheds one level. Levels come back one at a time.
pub fn decide_overload(
    state: OverloadState,
    load: f64,
    ticks: [u64; 3],
    rules: &OverloadRules,
) -> (OverloadState, Decision) {
    if load > rules.shed_above {
        let deepest = LEVELS.len() - 1;
        if state.level < deepest {
            let jump = load > 2.0 * rules.shed_above && ticks.iter().any(|&t| t > 0);
            let level = if !jump {
                state.level + 1
            } else {
                (state.level + 1..deepest)
                    .find(|&to| estimated_load(load, ticks, state.level, to) <= rules.shed_above)
                    .unwrap_or(deepest)
            };
            return (OverloadState { level, calm: 0 }, Decision::Shed);
        }
        return (OverloadState { calm: 0, ..state }, Decision::Hold);
    }
    if load < rules.restore_below && state.level > 0 {
        let calm = state.calm + 1;
        if calm >= rules.restore_after {
            return (
                OverloadState {
                    level: state.level - 1,
                    calm: 0,
                },
                Decision::Restore,
            );
        }
        return (OverloadState { calm, ..state }, Decision::Hold);
    }
    (OverloadState { calm: 0, ..state }, Decision::Hold)
}

/// The load level `to` would leave, from `load` measured at level `from` with
/// `ticks` by priority: the load scaled by the ticks each class would run at
/// `to`'s rates over those it ran at `from`'s. Step costs that do not follow
/// the ticks make it an underestimate when shedding; the next evaluation
/// sheds again if it was.
pub fn estimated_load(load: f64, ticks: [u64; 3], from: usize, to: usize) -> f64 {
    let (from, to) = (LEVELS[from].rate, LEVELS[to].rate);
    let ran: f64 = ticks.iter().map(|&t| t as f64).sum();
    if ran == 0.0 {
        return load;
    }
    let would: f64 = (0..3)
        .map(|c| ticks[c] as f64 * f64::from(to[c]) / f64::from(from[c]))
        .sum();
    load * would / ran
}

/// What the rebalancer knows of one agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentLoad {
    /// Memory limit, bytes.
    pub memory_limit: u32,
    /// Bytes its memory holds now.
    pub memory_held: u32,
    /// Below this limit its tiers would shrink under its default capacities'
    /// smallest useful size; it never gives away more.
    pub memory_floor: u32,
    /// Above this limit its tiers cannot grow (tier maxima).
    pub memory_ceiling: u32,
    pub cpu_share: f32,
    /// Average work units per tick.
    pub work: f32,
    /// Ticks run so far.
    pub ticks: u32,
    /// Its [`Agent::priority_boost`](crate::agent::Agent::priority_boost) now.
    pub priority_boost: bool,
}

/// A budget change for one agent (index into the slice given to [`rebalance`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetUpdate {
    pub index: u32,
    pub memory_limit: u32,
    /// Its new share, before the scale ([`RebalanceSummary::share_scale`]).
    pub cpu_share: f32,
    /// The agent's [`Agent::priority_boost`](crate::agent::Agent::priority_boost):
    /// its share, scaled, is at least [`RebalanceRules::boost_at`] fair shares.
    pub priority_boost: bool,
}

/// What a rebalancing did, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RebalanceSummary {
    pub memory_donors: usize,
    pub memory_receivers: usize,
    pub memory_moved: u64,
    pub boosted: usize,
    pub trimmed: usize,
    /// What every share is to be multiplied by ([`LoadShedding::share_scale`]):
    /// one over their sum when they add up to more than one, else 1.
    pub share_scale: f32,
}

/// Rebalances memory and CPU budgets. `memory_total` is what all agents' limits
/// may add up to; the result never exceeds it (nor does it take from agents
/// below their floor). Agents are considered in the order given (ids, ties).
/// The new CPU shares are unscaled; the summary's
/// [`share_scale`](RebalanceSummary::share_scale) makes them add up to at
/// most one.
///
/// # Panics
/// If there are 2^32 agents or more (updates name them by a 32-bit index).
pub fn rebalance(
    agents: &[AgentLoad],
    memory_total: u64,
    fair_share: f32,
    rules: &RebalanceRules,
) -> (Vec<BudgetUpdate>, RebalanceSummary) {
    let mut updates = Vec::new();
    let summary = rebalance_into(
        agents,
        memory_total,
        fair_share,
        rules,
        &mut RebalanceScratch::default(),
        &mut updates,
    );
    (updates, summary)
}

/// Lists [`rebalance_into`] reuses from one rebalancing to the next: once
/// they have grown to the population, a decision allocates nothing (fresh
/// pages for a large population cost more than the decision itself).
#[derive(Clone, Debug, Default)]
pub struct RebalanceScratch {
    limits: Vec<u32>,
    shares: Vec<f32>,
    needy: Vec<u64>,
}

/// [`rebalance`], with its working lists in `scratch` and the updates written
/// to `updates` (cleared first).
///
/// # Panics
/// If there are 2^32 agents or more (updates name them by a 32-bit index).
pub fn rebalance_into(
    agents: &[AgentLoad],
    memory_total: u64,
    fair_share: f32,
    rules: &RebalanceRules,
    scratch: &mut RebalanceScratch,
    updates: &mut Vec<BudgetUpdate>,
) -> RebalanceSummary {
    assert!(
        u32::try_from(agents.len()).is_ok(),
        "fewer than 2^32 agents"
    );
    let RebalanceScratch {
        limits,
        shares,
        needy,
    } = scratch;
    let mut summary = RebalanceSummary {
        share_scale: 1.0,
        ..RebalanceSummary::default()
    };
    limits.clear();
    limits.extend(agents.iter().map(|a| a.memory_limit));
    let used: u64 = limits.iter().map(|&l| u64::from(l)).sum();
    let mut free = memory_total.saturating_sub(used);
    for (i, a) in agents.iter().enumerate() {
        let give = a.gives(rules);
        if give > 0 {
            limits[i] -= give;
            free += u64::from(give);
            summary.memory_donors += 1;
        }
    }
    // The fullest first, ties in the given order (see `AgentLoad::needy_key`).
    // With nothing free, nobody gets more; with enough for every want, the
    // order does not matter.
    needy.clear();
    let mut wanted = 0u64;
    if free > 0 {
        for (i, a) in agents.iter().enumerate() {
            if let Some(key) = a.needy_key(i as u32, rules) {
                needy.push(key);
                wanted += u64::from(a.wants(rules));
            }
        }
    }
    if wanted > free {
        needy.sort_unstable();
    }
    for i in needy.iter().map(|&key| key as u32 as usize) {
        let take = u64::from(agents[i].wants(rules)).min(free) as u32;
        if take > 0 {
            limits[i] += take;
            free -= u64::from(take);
            summary.memory_receivers += 1;
            summary.memory_moved += u64::from(take);
        }
    }

    let mean_work = if agents.is_empty() {
        0.0
    } else {
        agents.iter().map(|a| f64::from(a.work)).sum::<f64>() / agents.len() as f64
    } as f32;
    shares.clear();
    shares.extend(agents.iter().map(|a| a.cpu_share));
    if mean_work > 0.0 {
        for (i, a) in agents.iter().enumerate() {
            shares[i] = a.share(mean_work, fair_share, rules);
            summary.boosted += usize::from(shares[i] > a.cpu_share);
            summary.trimmed += usize::from(shares[i] < a.cpu_share);
        }
        // Shares, scaled, add up to at most one whole.
        let sum: f64 = shares.iter().map(|&s| f64::from(s)).sum();
        if sum > 1.0 {
            summary.share_scale = (1.0 / sum) as f32;
        }
    }
    let scale = summary.share_scale;
    updates.clear();
    updates.extend(
        agents
            .iter()
            .enumerate()
            .map(|(i, a)| (i, a, rules.boosts(shares[i] * scale, fair_share)))
            .filter(|&(i, a, boost)| {
                limits[i] != a.memory_limit || shares[i] != a.cpu_share || boost != a.priority_boost
            })
            .map(|(i, _, boost)| BudgetUpdate {
                index: i as u32,
                memory_limit: limits[i],
                cpu_share: shares[i],
                priority_boost: boost,
            }),
    );
    summary
}

impl AgentLoad {
    /// How full its memory is (held over limit; full without a limit).
    pub fn pressure(&self) -> f32 {
        if self.memory_limit == 0 {
            1.0
        } else {
            self.memory_held as f32 / self.memory_limit as f32
        }
    }

    /// Bytes of its limit it gives away: a settled agent whose memory is at
    /// most `memory_low` full gives `memory_step` of its limit, down to its floor.
    pub fn gives(&self, rules: &RebalanceRules) -> u32 {
        if self.pressure() <= rules.memory_low
            && self.memory_limit > self.memory_floor
            && self.ticks >= rules.settle_ticks
        {
            ((self.memory_limit as f32 * rules.memory_step) as u32)
                .min(self.memory_limit - self.memory_floor)
        } else {
            0
        }
    }

    /// Bytes it asks for when it is needy: `memory_step` of its limit, up to
    /// its ceiling.
    pub fn wants(&self, rules: &RebalanceRules) -> u32 {
        ((self.memory_limit.max(1) as f32 * rules.memory_step).ceil() as u32)
            .min(self.memory_ceiling.saturating_sub(self.memory_limit))
    }

    /// Its place among the needy, as agent `index`: `None` unless its memory
    /// is at least `memory_high` full and below its ceiling. Keys sort the
    /// fullest first, ties by index: the pressure's bits (a pressure is never
    /// negative, so its bits order as it does) inverted above the index.
    pub fn needy_key(&self, index: u32, rules: &RebalanceRules) -> Option<u64> {
        let p = self.pressure();
        (p >= rules.memory_high && self.memory_limit < self.memory_ceiling)
            .then(|| u64::from(!p.to_bits()) << 32 | u64::from(index))
    }

    /// Its CPU share after a rebalancing (unscaled: see
    /// [`LoadShedding::share_scale`]): `cpu_step` more if its work is at least `cpu_high`
    /// times `mean_work`, up to `cpu_max` fair shares; `cpu_step` less if at
    /// most `cpu_low` times, down to `cpu_min` fair shares.
    pub fn share(&self, mean_work: f32, fair_share: f32, rules: &RebalanceRules) -> f32 {
        next_share(self.cpu_share, self.work, mean_work, fair_share, rules)
    }
}

/// [`AgentLoad::share`] of an agent with `cpu_share` doing `work`.
pub(crate) fn next_share(
    cpu_share: f32,
    work: f32,
    mean_work: f32,
    fair_share: f32,
    rules: &RebalanceRules,
) -> f32 {
    let ratio = work / mean_work;
    if ratio >= rules.cpu_high {
        (cpu_share * (1.0 + rules.cpu_step)).min(fair_share * rules.cpu_max)
    } else if ratio <= rules.cpu_low {
        (cpu_share * (1.0 - rules.cpu_step)).max(fair_share * rules.cpu_min)
    } else {
        cpu_share
    }
}

/// One change of budgets or load shedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetChange {
    /// Virtual seconds.
    pub at: f64,
    pub what: String,
    pub why: String,
}

/// Most recent changes kept in [`BudgetLog`].
pub const LOG_KEEP: usize = 32;

/// Every budget change the monitor made: a count and the latest few.
#[derive(Resource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetLog {
    pub count: u64,
    pub recent: VecDeque<BudgetChange>,
}

impl BudgetLog {
    pub(crate) fn record(&mut self, at: f64, what: String, why: String) {
        tracing::debug!(at, %what, %why, "budget change");
        self.count += 1;
        if self.recent.len() == LOG_KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(BudgetChange { at, what, why });
    }
}

/// What the monitor has seen of the machine: CPU and memory samples (mean, max).
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct ResourceStats {
    pub samples: u64,
    pub cpu_sum: f64,
    pub cpu_max: f64,
    pub rss_sum: f64,
    pub rss_max: u64,
    pub total_memory: u64,
    pub available_memory: u64,
    /// Wall time of the latest sampler refresh, in ms.
    pub refresh_ms: f64,
    /// The overload policy's state.
    pub overload: OverloadState,
    /// The latest load measured (mean step time over the real time allowed).
    pub load: f64,
}

#[cfg(test)]
mod tests;
