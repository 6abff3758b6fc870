use std::time::Duration;

use bevy_time::{Real, Time, TimeUpdateStrategy, Virtual};

use bevy_app::prelude::*;
use bevy_ecs::entity::UniqueEntitySlice;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::query::QueryFilter;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::agent::{Admitted, Agent, AgentPool, AgentsAdmitted, Cadence, PriorityRates};
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
    samples_seen: u64,
}

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

/// Bytes the maxima of every tier take: no limit above is of any use.
fn ceiling_bytes() -> u32 {
    TierCaps {
        working: WORKING_MAX as u8,
        short_term: SHORT_TERM_MAX as u8,
        intermediate: INTERMEDIATE_MAX as u8,
        long_term: LONG_TERM_MAX as u8,
    }
    .bytes() as u32
}

/// Every `rebalance.every` virtual seconds, moves memory budget and CPU shares
/// between agents (see [`rebalance`]). Deterministic: work units and memory
/// fill only, agents in table order. Reading every agent's load and applying
/// the new budgets are parallel passes, and only agents whose memory limit
/// changed have their tiers resized; the decisions in between are serial.
#[allow(clippy::too_many_arguments)]
fn rebalance_budgets(
    clock: Res<SimClock>,
    settings: Res<MonitorSettings>,
    kinds: Res<MemoryKinds>,
    pool: Res<AgentPool>,
    plan: Option<Res<MemoryPlan>>,
    load: Res<ThreadLoad>,
    mut tuners: Local<(BatchTuner, BatchTuner)>,
    mut log: ResMut<BudgetLog>,
    ids: Query<Entity, RebalancedAgent>,
    mut agents: Query<
        (&Agent, &mut Budget, &mut Memory, &mut Perception, &Cadence),
        RebalancedAgent,
    >,
) {
    let rules = &settings.rebalance;
    let every = secs_to_sim(rules.every).max(clock.step_ns());
    // The step that ends on (or just past) a multiple of the interval.
    let end = clock.now() + clock.step_ns();
    if end / every == clock.now() / every {
        return;
    }
    let Some(plan) = plan else {
        return;
    };
    let ceiling = ceiling_bytes();
    let defaults: Vec<u32> = kinds
        .0
        .iter()
        .map(|rules| rules.capacity.clamped().bytes() as u32)
        .collect();
    // Table order: the same on every run and thread count.
    let mut loads = vec![AgentLoad::default(); ids.iter().len()];
    for_each_block(&ids, |offset, block| {
        for_each_due_into(
            &mut agents,
            block,
            &mut loads[offset..offset + block.len()],
            &mut tuners.0,
            &load,
            |(agent, budget, memory, perception, cadence), out| {
                let defaults = defaults.get(agent.kind.index()).copied().unwrap_or(0);
                let held =
                    memory.held_bytes() + perception.sites().len() * crate::memory::RECORD_BYTES[0];
                // Fill counts against what the tiers can hold within the limit
                // (the capacities round down to whole records).
                let usable = memory.caps().bytes().max(1) as f32;
                let pressure = held as f32 / usable;
                let limit = memory.limit();
                *out = AgentLoad {
                    memory_limit: limit,
                    memory_held: (pressure * limit as f32) as u32,
                    memory_floor: (defaults / 4).min(limit),
                    memory_ceiling: ceiling.max(limit),
                    cpu_share: budget.cpu_share,
                    work: budget.usage.average,
                    ticks: cadence.ticks,
                };
            },
        );
    });
    let slots = if pool.max_agents() == usize::MAX {
        pool.active()
    } else {
        pool.max_agents()
    };
    let total = plan.per_agent_bytes.saturating_mul(slots as u64);
    let fair = fair_share(&pool);
    let (mut updates, summary) = rebalance(&loads, total, fair, rules);
    if updates.is_empty() {
        return;
    }
    drop(loads);
    let now = crate::memory::mem_time(clock.now());
    // The updates are in table order: walk the agents again, block by block,
    // and apply those of each block in one parallel pass.
    let mut next = 0;
    let mut picked = Vec::with_capacity(REBALANCE_BLOCK);
    for_each_block(&ids, |offset, block| {
        let first = next;
        picked.clear();
        while next < updates.len() && (updates[next].index as usize) < offset + block.len() {
            picked.push(block[updates[next].index as usize - offset]);
            next += 1;
        }
        // SAFETY: distinct indices (they strictly increase) into a block of
        // unique entities.
        let picked = unsafe { UniqueEntitySlice::from_slice_unchecked(&picked) };
        for_each_due_into(
            &mut agents,
            picked,
            &mut updates[first..next],
            &mut tuners.1,
            &load,
            |(agent, mut budget, mut memory, mut perception, ..), update| {
                budget.cpu_share = update.cpu_share;
                budget.priority_boost = update.priority_boost;
                if memory.limit() == update.memory_limit {
                    return;
                }
                // The tiers fit a new limit at once: an agent never holds more.
                match kinds.get(agent.kind) {
                    Some(rules) => memory.resize(&mut perception, update.memory_limit, rules, now),
                    None => memory.set_limit(update.memory_limit),
                }
            },
        );
    });
    let at = crate::clock::sim_to_secs(end);
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

/// Agents the rebalancer handles per parallel pass: its lists of entities stay
/// small (128 KiB) at any population.
const REBALANCE_BLOCK: usize = 16_384;

/// Calls `f` with each block of up to [`REBALANCE_BLOCK`] of the entities `ids`
/// matches, in table order, and the index of the block's first entity.
fn for_each_block<F: QueryFilter>(
    ids: &Query<Entity, F>,
    mut f: impl FnMut(usize, &UniqueEntitySlice),
) {
    let mut iter = ids.iter();
    let mut block = Vec::with_capacity(REBALANCE_BLOCK);
    let mut offset = 0;
    loop {
        block.clear();
        block.extend(iter.by_ref().take(REBALANCE_BLOCK));
        if block.is_empty() {
            return;
        }
        // SAFETY: one iteration of a query yields each entity once.
        f(offset, unsafe {
            UniqueEntitySlice::from_slice_unchecked(&block)
        });
        offset += block.len();
    }
}

/// While steps follow real time ([`paced_in_real_time`]), every
/// `overload.evaluate_every` real seconds: measures how busy the step loop was
/// against the real time allowed a step at the current speed of
/// `Time<Virtual>`, and sheds or restores one level (see [`decide_overload`]).
fn shed_load(
    settings: Res<MonitorSettings>,
    strategy: Option<Res<TimeUpdateStrategy>>,
    virt: Option<Res<Time<Virtual>>>,
    sim: Res<SimClock>,
    run: Res<RunStats>,
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
    let Some(last) = clock.last_eval else {
        clock.last_eval = Some(now);
        clock.busy_at_last_eval = run.busy_ns;
        clock.steps_at_last_eval = run.steps;
        return;
    };
    if now.saturating_sub(last).as_secs_f64() < rules.evaluate_every
        || run.steps == clock.steps_at_last_eval
    {
        return;
    }
    // The load is what a step costs over what real time allows it: the mean step
    // time over the step's share of real time. (Busy time alone would read 100 %
    // while the loop catches up after a slow spell.)
    let steps = run.steps - clock.steps_at_last_eval;
    let mean_step_ns = (run.busy_ns - clock.busy_at_last_eval) as f64 / steps as f64;
    let speed = virt.map_or(1.0, |v| v.relative_speed_f64()).max(1e-9);
    let allowed_ns = sim.step_ns() as f64 / speed;
    let load = mean_step_ns / allowed_ns;
    clock.last_eval = Some(now);
    clock.busy_at_last_eval = run.busy_ns;
    clock.steps_at_last_eval = run.steps;
    stats.load = load;
    let (state, decision) = decide_overload(stats.overload, load, rules);
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
                "steps took {:.0} % of the real time allowed them (above {:.0} %)",
                load * 100.0,
                rules.shed_above * 100.0
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

#[cfg(test)]
mod tests {
    use bevy_ecs::system::RunSystemOnce;

    use super::*;

    #[derive(Component)]
    struct Marked;

    #[test]
    fn blocks_cover_every_entity_once_in_table_order() {
        let mut world = World::new();
        let count = 2 * REBALANCE_BLOCK + 123;
        world.spawn_batch((0..count).map(|_| Marked));
        world
            .run_system_once(move |ids: Query<Entity, With<Marked>>| {
                let mut seen = Vec::new();
                let mut offsets = Vec::new();
                for_each_block(&ids, |offset, block| {
                    assert_eq!(offset, seen.len());
                    offsets.push(offset);
                    seen.extend_from_slice(block);
                });
                assert_eq!(offsets, [0, REBALANCE_BLOCK, 2 * REBALANCE_BLOCK]);
                assert_eq!(seen, ids.iter().collect::<Vec<_>>());
                assert_eq!(seen.len(), count);
            })
            .expect("runs");
    }
}
