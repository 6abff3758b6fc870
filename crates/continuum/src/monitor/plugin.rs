use std::time::{Duration, Instant};

use bevy_time::{Real, Time, TimeUpdateStrategy, Virtual};

use bevy_app::prelude::*;
use bevy_ecs::entity::UniqueEntitySlice;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::agent::{
    Admitted, Agent, AgentPool, AgentsAdmitted, Cadence, PriorityRates, ScheduleStats,
};
use crate::clock::{SimClock, configure_phases, paced_in_real_time, secs_to_sim};
use crate::memory::{
    INTERMEDIATE_MAX, LONG_TERM_MAX, Memory, MemoryKinds, MemoryPlan, Perception, SHORT_TERM_MAX,
    TierCaps, WORKING_MAX,
};
use crate::metrics::RunStats;
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due, for_each_due_into};
use crate::phases::ContinuumSystems;
use crate::process::ProcessSampler;

/// The agents whose budgets the rebalancer manages.
type RebalancedAgent = (
    With<Agent>,
    With<Budget>,
    With<Memory>,
    With<Perception>,
    With<Cadence>,
);

/// Budgets that follow use, and load shedding under overload. See the
/// [module docs](super). Every agent gets a [`Budget`] (a required component
/// of `Agent`) with the fair share. Remove it from the group to run without:
/// every agent then keeps the fair share.
pub struct ResourceMonitorPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ResourceMonitorPlugin {
    /// Runs the monitor in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

/// The monitor's wall-clock bookkeeping (inputs to the overload policy only).
#[derive(Resource, Default)]
struct OverloadClock {
    /// `Time<Real>` elapsed at the latest evaluation.
    last_eval: Option<Duration>,
    busy_at_last_eval: u64,
    steps_at_last_eval: u64,
    /// [`ScheduleStats::ticks_by_priority`] at the latest evaluation.
    ticks_at_last_eval: [u64; 3],
    samples_seen: u64,
    /// The time of each step since the latest evaluation, in ns, for a
    /// [`LoadMeasure::Quantile`]; and the busy time and steps counted so far.
    window: Vec<u64>,
    busy_seen: u64,
    steps_seen: u64,
}

impl OverloadClock {
    /// Takes in the steps run since the latest call: each one's time, from
    /// the busy time they added (their mean, if more than one ran).
    fn see_steps(&mut self, run: &RunStats, measure: LoadMeasure) {
        let steps = run.steps.saturating_sub(self.steps_seen);
        if steps > 0 && matches!(measure, LoadMeasure::Quantile(_)) {
            let each = run.busy_ns.saturating_sub(self.busy_seen) / steps;
            // At most a window's worth: a long pause between calls is one
            // evaluation's steps, not more.
            let room = MAX_WINDOW.saturating_sub(self.window.len());
            self.window
                .extend(std::iter::repeat_n(each, (steps as usize).min(room)));
        }
        self.busy_seen = run.busy_ns;
        self.steps_seen = run.steps;
    }
}

/// Most step times an evaluation's window keeps (a minute of 100 Hz steps).
const MAX_WINDOW: usize = 6_000;

impl Plugin for ResourceMonitorPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        let _ = app.try_register_required_components::<Agent, Budget>();
        app.init_resource::<MonitorSettings>()
            .init_resource::<ThreadLoad>()
            .init_resource::<AgentPool>()
            .init_resource::<PriorityRates>()
            .init_resource::<LoadShedding>()
            .init_resource::<MemoryKinds>()
            .init_resource::<RunStats>()
            .init_resource::<BudgetLog>()
            .init_resource::<ResourceStats>()
            .init_resource::<OverloadClock>()
            .init_resource::<RebalanceRound>()
            .init_resource::<RebalanceDiagnostics>()
            .add_systems(AgentsAdmitted, give_fair_shares)
            .add_systems(
                self.schedule,
                (take_samples, rebalance_budgets, shed_load)
                    .chain()
                    .in_set(ContinuumSystems::Monitor),
            );
    }
}

/// The agents just admitted start with the fair share of the work.
fn give_fair_shares(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    admitted: Res<Admitted>,
    pool: Res<AgentPool>,
    mut budgets: Query<&mut Budget>,
) {
    let fair = fair_share(&pool);
    for_each_due(
        &mut budgets,
        admitted.all(),
        &mut tuner,
        &load,
        |mut budget| {
            budget.cpu_share = fair;
        },
    );
}

/// Folds new CPU and memory samples into [`ResourceStats`].
fn take_samples(
    sampler: Option<Res<ProcessSampler>>,
    mut clock: ResMut<OverloadClock>,
    mut stats: ResMut<ResourceStats>,
) {
    let Some(sample) = sampler.and_then(|s| s.latest()) else {
        return;
    };
    if sample.count <= clock.samples_seen {
        return;
    }
    clock.samples_seen = sample.count;
    stats.samples += 1;
    stats.cpu_sum += f64::from(sample.cpu_percent);
    stats.cpu_max = stats.cpu_max.max(f64::from(sample.cpu_percent));
    stats.rss_sum += sample.rss_bytes as f64;
    stats.rss_max = stats.rss_max.max(sample.rss_bytes);
    stats.total_memory = sample.total_memory;
    stats.available_memory = sample.available_memory;
    stats.refresh_ms = sample.refresh_cost.as_secs_f64() * 1e3;
}

/// Bytes the blocks of every tier at its maximum take: no limit above is of
/// any use.
fn ceiling_bytes() -> u32 {
    TierCaps {
        working: WORKING_MAX as u8,
        short_term: SHORT_TERM_MAX as u8,
        intermediate: INTERMEDIATE_MAX as u8,
        long_term: LONG_TERM_MAX as u8,
    }
    .block_bytes() as u32
}

/// Every `rebalance.every` virtual seconds, moves memory budget and CPU shares
/// between agents (see [`rebalance`]), as a [`RebalanceRound`] spread over the
/// steps of the interval: about half of its steps read the agents' loads a
/// share at a time, the next sixth weigh them, the rest apply the new budgets
/// a share at a time. Deterministic: work units and memory fill only, agents
/// in id order, shares fixed by the step's index. Only agents whose memory
/// limit changed have their tiers resized.
#[allow(clippy::too_many_arguments)]
fn rebalance_budgets(
    mut scratch: Local<ReadScratch>,
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    clock: Res<SimClock>,
    settings: Res<MonitorSettings>,
    kinds: Res<MemoryKinds>,
    pool: Res<AgentPool>,
    plan: Option<Res<MemoryPlan>>,
    mut round: ResMut<RebalanceRound>,
    mut shedding: Option<ResMut<LoadShedding>>,
    mut diagnostics: ResMut<RebalanceDiagnostics>,
    mut log: ResMut<BudgetLog>,
    mut agents: Query<
        (
            Entity,
            &mut Agent,
            &mut Budget,
            &mut Memory,
            &mut Perception,
            &Cadence,
        ),
        RebalancedAgent,
    >,
) {
    let Some(plan) = plan else {
        return;
    };
    let started = Instant::now();
    let rules = &settings.rebalance;
    let step_ns = clock.step_ns();
    let every = secs_to_sim(rules.every).max(step_ns);
    let interval = clock.now() / every;
    let round = &mut *round;
    if round.steps.is_none_or(|s| s.interval != interval) {
        // The interval's last step is the one that ends on or past its end.
        let last = ((interval + 1) * every - 1) / step_ns;
        let steps = RoundSteps {
            interval,
            first: clock.step(),
            steps: last + 1 - clock.step(),
        };
        let listing = Listing {
            pool_changes: pool.changes(),
            agents: agents.count() as u64,
        };
        round.start(steps, rules, listing, || {
            agents.iter().map(|(entity, agent, ..)| (agent.id, entity))
        });
    }
    let Some(work) = round
        .steps
        .and_then(|steps| steps.work(clock.step(), round.agents.len()))
    else {
        return;
    };
    let RebalanceRound {
        rules,
        agents: listed,
        loads,
        tally,
        weighing,
        ..
    } = round;

    if !work.read.is_empty() {
        let ceiling = ceiling_bytes();
        let ReadScratch {
            order,
            entities,
            fetched,
            read,
        } = &mut *scratch;
        // Read in the order the agents' data sits in (their entities'), which
        // ids do not follow when agents are spawned in the order of space, on
        // every thread; counted in id order below. Agents gone before a
        // checkpoint was taken are not looked for.
        order.clear();
        order.extend(
            work.read
                .clone()
                .filter(|&i| listed[i] != Entity::PLACEHOLDER),
        );
        order.sort_unstable_by_key(|&i| listed[i].index());
        entities.clear();
        entities.extend(order.iter().map(|&i| listed[i]));
        fetched.clear();
        fetched.resize(order.len(), None);
        // SAFETY: the list holds each agent once (one entity per id), and
        // the placeholders are left out.
        let unique = unsafe { UniqueEntitySlice::from_slice_unchecked(entities) };
        let kinds = &*kinds;
        for_each_due_into(
            &mut agents,
            unique,
            fetched,
            &mut tuner,
            &load,
            |(_, agent, budget, memory, perception, cadence), out| {
                let defaults = kinds
                    .get(agent.kind)
                    .map_or(0, |rules| rules.capacity.clamped().block_bytes() as u32);
                let held =
                    memory.held_bytes() + perception.sites().len() * crate::memory::RECORD_BYTES[0];
                // Fill counts against what the tiers can hold within the
                // limit (the capacities round down to whole records).
                let usable = memory.caps().bytes().max(1) as f32;
                let pressure = held as f32 / usable;
                let limit = memory.limit();
                *out = Some(AgentLoad {
                    memory_limit: limit,
                    memory_held: (pressure * limit as f32) as u32,
                    memory_floor: (defaults / 4).min(limit),
                    memory_ceiling: ceiling.max(limit),
                    cpu_share: budget.cpu_share,
                    work: budget.usage.average,
                    ticks: cadence.ticks,
                    priority_boost: agent.priority_boost,
                });
            },
        );
        read.clear();
        read.resize(work.read.len(), None);
        for (&i, load) in order.iter().zip(fetched.iter()) {
            read[i - work.read.start] = *load;
        }
        for (i, load) in work.read.clone().zip(read.iter()) {
            loads[i] = load.as_ref().map(|load| tally.add(i as u32, load, rules));
        }
        diagnostics.most_read_in_a_step =
            diagnostics.most_read_in_a_step.max(work.read.len() as u64);
    }

    if let Some(weigh) = work.weigh {
        let weighing_started = Instant::now();
        if weigh.0 == 0 {
            let slots = if pool.max_agents() == usize::MAX {
                pool.active()
            } else {
                pool.max_agents()
            };
            let total = plan.per_agent_bytes.saturating_mul(slots as u64);
            *weighing = Some(Weighing::start(
                tally,
                total,
                fair_share(&pool),
                loads.len(),
            ));
        }
        if let Some(weighing) = weighing {
            weighing.weigh(part(loads.len(), weigh), loads, rules);
            if weigh.0 + 1 == weigh.1 {
                weighing.finish();
                diagnostics.rounds += 1;
                diagnostics.most_weighed = diagnostics.most_weighed.max(tally.read);
                log_round(
                    &mut log,
                    &weighing.summary(tally),
                    rules,
                    clock.now() + step_ns,
                );
            }
        }
        let weighed_in = weighing_started.elapsed().as_nanos() as u64;
        diagnostics.longest_decision_ns = diagnostics.longest_decision_ns.max(weighed_in);
        diagnostics.decisions_ns += weighed_in;
    }

    if let (Some(apply), Some(weighing)) = (work.apply, weighing.as_ref()) {
        let now = crate::memory::mem_time(clock.now());
        let range = weighing.apply_range(apply, loads.len());
        let mut takes = weighing.takes[weighing
            .takes
            .partition_point(|&(i, _)| (i as usize) < range.start)..]
            .iter()
            .peekable();
        let mut changed = 0;
        for i in range {
            let take = takes
                .next_if(|&&(at, _)| at as usize == i)
                .map_or(0, |t| t.1);
            let Some(load) = &loads[i] else { continue };
            let Some((limit, share, boost)) = weighing.budget(load, take, rules) else {
                continue;
            };
            // An agent gone since it was read has nothing to update.
            let Ok((_, mut agent, mut budget, mut memory, mut perception, _)) =
                agents.get_mut(listed[i])
            else {
                continue;
            };
            changed += 1;
            budget.cpu_share = share;
            if agent.priority_boost != boost {
                agent.priority_boost = boost;
            }
            if memory.limit() == limit {
                continue;
            }
            // The tiers fit a new limit at once: an agent never holds more.
            match kinds.get(agent.kind) {
                Some(rules) => memory.resize(&mut perception, limit, rules, now),
                None => memory.set_limit(limit),
            }
        }
        diagnostics.most_applied_in_a_step = diagnostics.most_applied_in_a_step.max(changed);
        diagnostics.budgets_changed += changed;
        // The shares were weighed against the new scale: it holds from the
        // round's end.
        if apply.0 + 1 == apply.1
            && let Some(shedding) = shedding.as_mut()
        {
            shedding.share_scale = weighing.scale;
        }
    }
    diagnostics.longest_step_ns = diagnostics
        .longest_step_ns
        .max(started.elapsed().as_nanos() as u64);
}

/// The lists a rebalancing step's reads go through, kept from step to step:
/// the round's list indices to read, in the order of their entities; those
/// entities; the loads in that order; and the loads in the list's order.
#[derive(Default)]
struct ReadScratch {
    order: Vec<usize>,
    entities: Vec<Entity>,
    fetched: Vec<Option<AgentLoad>>,
    read: Vec<Option<AgentLoad>>,
}

/// Logs what a round did (virtual time `at`, nanoseconds), when it changed
/// anything.
fn log_round(log: &mut BudgetLog, summary: &RebalanceSummary, rules: &RebalanceRules, at: u64) {
    let at = crate::clock::sim_to_secs(at);
    if summary.memory_moved > 0 || summary.memory_donors > 0 {
        log.record(
            at,
            format!(
                "memory: {} bytes to {} agents; {} agents gave some up",
                summary.memory_moved, summary.memory_receivers, summary.memory_donors
            ),
            format!(
                "memory at least {:.0} % full, or at most {:.0} %",
                rules.memory_high * 100.0,
                rules.memory_low * 100.0
            ),
        );
    }
    if summary.boosted + summary.trimmed > 0 {
        log.record(
            at,
            format!(
                "cpu: {} shares boosted, {} trimmed",
                summary.boosted, summary.trimmed
            ),
            format!(
                "work at least {}× the average, or at most {}×",
                rules.cpu_high, rules.cpu_low
            ),
        );
    }
}

/// The share of `overload.evaluate_every` after which a load over twice
/// `shed_above` is evaluated, if at least [`EARLY_STEPS`] steps ran.
const EARLY_SHARE: f64 = 0.25;
/// Steps an early evaluation needs: one long step is not an overload.
const EARLY_STEPS: u64 = 5;

/// While steps follow real time ([`paced_in_real_time`]), every
/// `overload.evaluate_every` real seconds (a quarter of that when the load is
/// over twice `shed_above`): measures how busy the step loop was against the
/// real time allowed a step at the current speed of `Time<Virtual>`, and sheds
/// as many levels as that load needs or restores one (see
/// [`decide_overload`]).
#[allow(clippy::too_many_arguments)]
fn shed_load(
    settings: Res<MonitorSettings>,
    strategy: Option<Res<TimeUpdateStrategy>>,
    virt: Option<Res<Time<Virtual>>>,
    sim: Res<SimClock>,
    run: Res<RunStats>,
    scheduled: Option<Res<ScheduleStats>>,
    mut clock: ResMut<OverloadClock>,
    mut stats: ResMut<ResourceStats>,
    mut shedding: ResMut<LoadShedding>,
    mut rates: ResMut<PriorityRates>,
    mut pool: ResMut<AgentPool>,
    mut log: ResMut<BudgetLog>,
    real: Option<Res<Time<Real>>>,
) {
    let rules = &settings.overload;
    let realtime = paced_in_real_time(strategy.as_deref());
    let Some(real) = real.filter(|_| rules.enabled && realtime) else {
        return;
    };
    // Bevy's real clock: the wall clock in a run, a manual one in tests.
    let now = real.elapsed();
    let ticks_now = scheduled.map_or([0; 3], |s| s.ticks_by_priority);
    let Some(last) = clock.last_eval else {
        clock.last_eval = Some(now);
        clock.busy_at_last_eval = run.busy_ns;
        clock.steps_at_last_eval = run.steps;
        clock.ticks_at_last_eval = ticks_now;
        clock.busy_seen = run.busy_ns;
        clock.steps_seen = run.steps;
        clock.window.clear();
        return;
    };
    clock.see_steps(&run, rules.measure);
    let elapsed = now.saturating_sub(last).as_secs_f64();
    let steps = run.steps - clock.steps_at_last_eval;
    if elapsed < rules.evaluate_every * EARLY_SHARE || steps == 0 {
        return;
    }
    // The load is what a step costs over what real time allows it: the mean step
    // time (or the rules' quantile of the steps' times) over the step's share
    // of real time. (Busy time alone would read 100 % while the loop catches
    // up after a slow spell.)
    let mean_step_ns = (run.busy_ns - clock.busy_at_last_eval) as f64 / steps as f64;
    let speed = virt.map_or(1.0, |v| v.relative_speed_f64()).max(1e-9);
    let allowed_ns = sim.step_ns() as f64 / speed;
    // A heavy overload is acted on early: every second at five times the real
    // time allowed loses most of a second. Only the mean says so: a slow step
    // or two among the first few is not an overload.
    let early = steps >= EARLY_STEPS && mean_step_ns / allowed_ns > 2.0 * rules.shed_above;
    if elapsed < rules.evaluate_every && !early {
        return;
    }
    let step_ns = match rules.measure {
        LoadMeasure::Mean => mean_step_ns,
        measure => measure.of(&mut clock.window).unwrap_or(mean_step_ns),
    };
    let load = step_ns / allowed_ns;
    let ticks: [u64; 3] =
        std::array::from_fn(|c| ticks_now[c].saturating_sub(clock.ticks_at_last_eval[c]));
    clock.last_eval = Some(now);
    clock.busy_at_last_eval = run.busy_ns;
    clock.steps_at_last_eval = run.steps;
    clock.ticks_at_last_eval = ticks_now;
    clock.window.clear();
    stats.load = load;
    let from = stats.overload.level;
    let (state, decision) = decide_overload(stats.overload, load, ticks, rules);
    stats.overload = state;
    if decision == Decision::Hold {
        return;
    }
    let level = LEVELS[state.level];
    rates.0 = level.rate;
    shedding.cpu_scale = level.cpu;
    if level.hold_admission {
        let active = pool.active();
        pool.set_limit(active);
    } else {
        let max = pool.max_agents();
        pool.set_limit(max);
    }
    let (what, why) = match decision {
        Decision::Shed => (
            "shed",
            format!(
                "{} {:.0} % of the real time allowed them (above {:.0} %); \
                 estimated at level {}: {:.0} %",
                match rules.measure {
                    LoadMeasure::Mean => "steps took".to_string(),
                    LoadMeasure::Quantile(q) => format!("{:.3} of the steps took at most", q),
                },
                load * 100.0,
                rules.shed_above * 100.0,
                state.level,
                estimated_load(load, ticks, from, state.level) * 100.0
            ),
        ),
        _ => (
            "restored",
            format!(
                "{} calm evaluations in a row (below {:.0} %)",
                rules.restore_after,
                rules.restore_below * 100.0
            ),
        ),
    };
    log.record(
        sim.elapsed_secs(),
        format!(
            "{what}: level {} (rate background ×{}, normal ×{}; cpu background ×{}, normal ×{}{})",
            state.level,
            level.rate[0],
            level.rate[1],
            level.cpu[0],
            level.cpu[1],
            if level.hold_admission {
                "; admission held"
            } else {
                ""
            }
        ),
        why,
    );
}
