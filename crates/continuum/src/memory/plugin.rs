use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::action::LearnSystems;
use crate::agent::{Agent, AgentPool, Budget, Cadence, DueAgents, Intent, Perception};
use crate::archetype::Archetypes;
use crate::clock::SimClock;
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::sets::ContinuumSystems;
use crate::world::Sites;

/// Memory tiers, their consolidation, budgets, and the shared cache.
pub struct MemoryPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl MemoryPlugin {
    /// Runs consolidation in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

/// The memory plugin's systems, for ordering against.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemorySystems {
    /// In [`ContinuumSystems::Learn`], after the behaviours' learn systems: the
    /// due agents' perceptions are consolidated into their memories.
    Consolidate,
}

impl Plugin for MemoryPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<MemorySettings>()
            .init_resource::<SharedCache>()
            .add_systems(PostStartup, plan_memory)
            .configure_sets(
                self.schedule,
                MemorySystems::Consolidate
                    .in_set(ContinuumSystems::Learn)
                    .after(LearnSystems::Behaviours),
            )
            .add_systems(
                self.schedule,
                (
                    consolidate.in_set(MemorySystems::Consolidate),
                    settle_cache.in_set(ContinuumSystems::Monitor),
                ),
            );
    }
}

/// Bytes of the largest default capacities of any kind: what an agent needs
/// under an automatic budget.
fn default_agent_bytes(archetypes: &Archetypes) -> u64 {
    archetypes
        .iter()
        .map(|a| a.memory.capacity.clamped().bytes() as u64)
        .max()
        .unwrap_or(0)
}

fn machine_memory_bytes() -> u64 {
    let Ok(mut system) = sysinfo::System::new() else {
        return 0;
    };
    system.refresh_memory();
    system.total_memory()
}

/// Works out the memory plan and sizes the shared cache, once the world and the
/// pool exist.
fn plan_memory(
    mut commands: Commands,
    settings: Res<MemorySettings>,
    archetypes: Res<Archetypes>,
    pool: Res<AgentPool>,
    sites: Option<Res<Sites>>,
) {
    let machine = match settings.budget {
        MemoryBudget::MachineFraction(_) => machine_memory_bytes(),
        _ => 0,
    };
    let max_agents = (pool.max_agents() != usize::MAX).then_some(pool.max_agents());
    let site_count = sites.map_or(0, |s| s.len());
    let mut plan = MemoryPlan::new(
        &settings,
        max_agents,
        default_agent_bytes(&archetypes),
        machine,
        site_count,
    );
    plan.baseline_rss = crate::metrics::current_rss_bytes();
    tracing::info!(
        total = plan.total_bytes,
        per_agent = plan.per_agent_bytes,
        cache_facts = plan.cache_capacity,
        "memory budget planned"
    );
    commands.insert_resource(SharedCache::new(site_count, plan.cache_capacity));
    commands.insert_resource(plan);
}

/// Consolidates what each due agent perceived this tick into its memory, with
/// the rules of its kind and the values the shared cache holds. An agent whose
/// [`Budget`] changed first gets tier capacities that fit its new limit.
fn consolidate(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    archetypes: Res<Archetypes>,
    cache: Res<SharedCache>,
    mut agents: Query<(
        &Agent,
        &mut Budget,
        &Cadence,
        &Intent,
        &mut Perception,
        &mut Memory,
    )>,
) {
    let step = clock.step();
    let fallback = MemoryRules::default();
    // One pass over every due agent, whatever its kind: each pass costs a wake-up
    // of the other threads.
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, mut budget, cadence, intent, mut perception, mut memory) = item;
        let rules = archetypes
            .try_get(agent.kind)
            .map_or(&fallback, |a| &a.memory);
        let now = mem_time(cadence.due);
        if memory.limit() != budget.memory_limit {
            apply_budget(*budget, rules, now, &mut memory, &mut perception);
        }
        memory.consolidate(perception.sites(), now, rules, |site| {
            cache
                .read(site, step)
                .map(|f| f.value)
                .filter(|v| !v.is_nan())
        });
        // This tick's cost: what perception examined, the sites consolidated
        // (and the decay sweep), and the action.
        let units = perception.examined
            + perception.sites().len() as u32
            + 1
            + u32::from(intent.action.is_some());
        budget.usage.spend(units);
    });
}

/// Gives an agent the tier capacities its budget allows under `rules`: the
/// kind's default capacities scaled to the limit (and to the tier maxima).
pub fn apply_budget(
    budget: Budget,
    rules: &MemoryRules,
    now: MemTime,
    memory: &mut Memory,
    perception: &mut Perception,
) {
    let caps = rules.capacity.scaled_to(budget.memory_limit as usize);
    tracing::debug!(
        from = memory.limit(),
        to = budget.memory_limit,
        ?caps,
        "memory budget changed"
    );
    memory.set_caps(caps, now, rules);
    memory.set_limit(budget.memory_limit);
    perception.set_capacity(usize::from(caps.working));
}

fn settle_cache(mut cache: ResMut<SharedCache>) {
    cache.settle();
}
