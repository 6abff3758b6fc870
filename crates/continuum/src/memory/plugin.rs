use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::agent::{
    Admitted, Agent, AgentPool, AgentsAdmitted, Cadence, DueAgents, PerceptionReach,
};
use crate::clock::{SimClock, configure_phases};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::phases::{ContinuumStartup, ContinuumSystems, LearnSystems};
use crate::spatial::GridGeometry;
use crate::world::{Sites, WorldMap};

/// Memory tiers, their consolidation, budgets, and the shared cache.
///
/// Every agent gets a [`Perception`] and a [`Memory`] (required components of
/// `Agent`), sized to the budget when it is admitted. Facts reach the shared
/// cache as [`Publication`] messages, taken in at the start of the learn phase.
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

impl Plugin for MemoryPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        // The behaviours require them too, to run without this plugin: whoever
        // comes first registers them.
        let _ = app.try_register_required_components::<Agent, Perception>();
        let _ = app.try_register_required_components::<Agent, Memory>();
        app.add_message::<Publication>()
            .init_resource::<MemorySettings>()
            .init_resource::<MemoryKinds>()
            .init_resource::<SharedCache>()
            .init_resource::<DueAgents>()
            .init_resource::<ThreadLoad>()
            .add_systems(PostStartup, plan_memory.in_set(ContinuumStartup::Plan))
            .add_systems(AgentsAdmitted, size_new_memories)
            .add_systems(
                self.schedule,
                (
                    publish_facts.in_set(LearnSystems::Publish),
                    consolidate.in_set(LearnSystems::Consolidate),
                    settle_cache.in_set(ContinuumSystems::Monitor),
                ),
            );
    }
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
    kinds: Res<MemoryKinds>,
    pool: Option<Res<AgentPool>>,
    sites: Option<Res<Sites>>,
    map: Option<Res<WorldMap>>,
    reach: Option<Res<PerceptionReach>>,
    components: &bevy_ecs::component::Components,
) {
    let machine = match settings.budget {
        MemoryBudget::MachineFraction(_) => machine_memory_bytes(),
        _ => 0,
    };
    let max_agents = pool
        .map(|p| p.max_agents())
        .filter(|&max| max != usize::MAX);
    let engine = crate::agent::engine_bytes_per_agent(components);
    if let Some(shortfall) = MemoryPlan::shortfall(&settings, max_agents, engine, machine) {
        tracing::error!("{shortfall}; the agents get no memory");
    }
    if max_agents.is_none() && !matches!(settings.budget, MemoryBudget::Auto) {
        tracing::warn!(
            "memory.budget in bytes with no maximum of agents: it cannot be shared among \
             them, so every agent gets its kind's default capacities; give the AgentPool a \
             maximum for the budget to hold"
        );
    }
    let site_count = sites.map_or(0, |s| s.len());
    // The ground explorers mark: cells as wide as the longest perception
    // radius, so that going over a cell sees all of it.
    let ground = map.map(|m| GridGeometry::new(m.size(), reach.map_or(50.0, |r| r.0)));
    let keys = site_count + ground.map_or(0, |g| g.cells());
    let mut plan = MemoryPlan::new(
        &settings,
        max_agents,
        kinds.largest_default_bytes(),
        engine,
        machine,
        keys,
    );
    plan.baseline_rss = crate::process::current_rss_bytes();
    tracing::info!(
        total = plan.total_bytes,
        per_agent = plan.per_agent_bytes,
        engine_per_agent = plan.engine_bytes_per_agent,
        cache_bytes = plan.shared_bytes,
        cache_facts = plan.cache_capacity,
        "memory budget planned"
    );
    commands.insert_resource(SharedCache::new(site_count, ground, plan.shared_bytes));
    commands.insert_resource(plan);
}

/// Whether the app's memory budget holds its `max_agents` agents (see
/// [`MemoryPlan::shortfall`]): call it after the plugins are added and before
/// the app starts, to refuse a run whose budget cannot hold its agents before
/// any is admitted. Reads the machine's memory for a `MachineFraction` budget.
pub fn check_budget(world: &World) -> Result<(), BudgetTooSmall> {
    let Some(settings) = world.get_resource::<MemorySettings>() else {
        return Ok(());
    };
    let machine = match settings.budget {
        MemoryBudget::MachineFraction(_) => machine_memory_bytes(),
        _ => 0,
    };
    let max_agents = world
        .get_resource::<AgentPool>()
        .map(|p| p.max_agents())
        .filter(|&max| max != usize::MAX);
    let engine = crate::agent::engine_bytes_per_agent(world.components());
    MemoryPlan::shortfall(settings, max_agents, engine, machine).map_or(Ok(()), Err)
}

/// Sizes the tiers of the agents just admitted: their starting capacities
/// scaled to each agent's share of the budget.
fn size_new_memories(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    admitted: Res<Admitted>,
    plan: Option<Res<MemoryPlan>>,
    kinds: Res<MemoryKinds>,
    mut agents: Query<(&Agent, &mut Memory, &mut Perception)>,
) {
    let limit = plan.map(|p| p.per_agent_bytes);
    for_each_due(&mut agents, admitted.all(), &mut tuner, &load, |item| {
        let (agent, mut memory, mut perception) = item;
        memory.admit(&mut perception, limit, kinds.rules(agent.kind));
    });
}

/// Takes the step's publications into the shared cache, in the order they
/// were written.
fn publish_facts(
    clock: Res<SimClock>,
    mut publications: MessageReader<Publication>,
    mut cache: ResMut<SharedCache>,
) {
    let step = clock.step();
    for p in publications.read() {
        cache.publish(p.key, p.fact, step);
    }
}

/// Consolidates what each due agent perceived this tick into its memory, with
/// the rules of its kind and the values the shared cache holds. An agent whose
/// limit changed ([`Memory::set_limit`]) first gets tier capacities that fit it.
fn consolidate(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    kinds: Res<MemoryKinds>,
    cache: Res<SharedCache>,
    mut agents: Query<(&Agent, &Cadence, &mut Perception, &mut Memory)>,
) {
    let step = clock.step();
    // One pass over every due agent, whatever its kind: each pass costs a
    // hand-over to the other threads.
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, cadence, mut perception, mut memory) = item;
        let rules = kinds.rules(agent.kind);
        let now = mem_time(cadence.due);
        if memory.resize_pending() {
            let limit = memory.limit();
            memory.resize(&mut perception, limit, rules, now);
        }
        let cache = cache.reader();
        memory.consolidate(perception.sites(), now, rules, |site| {
            cache
                .read(site, step)
                .map(|f| f.value)
                .filter(|v| !v.is_nan())
        });
    });
}

fn settle_cache(mut cache: ResMut<SharedCache>) {
    cache.settle();
}
