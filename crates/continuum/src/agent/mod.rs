//! Agents: the components every agent carries, its cadence, and the schedule that
//! finds the agents due in a step.
//!
//! An agent is an entity with an [`Agent`] (stable id, kind and priority), its
//! [`Cadence`], its own seeded [`AgentRng`], and its place in the world
//! ([`Position`], [`Velocity`], [`Body`]). Other plugins add the state of its
//! cycle as required components (perception and memory, intent, feedback,
//! budget) and give them their starting values in the [`AgentsAdmitted`]
//! schedule. Agents are created through the [`AgentPool`]; never spawn them by
//! hand, or the schedule will not know them.
//!
//! Each agent runs perceive → think → act → learn at its own [`TickRate`]. The
//! [`AgentSchedule`] is a timing wheel keyed by step index: finding the agents due
//! in a step costs in proportion to how many are due, not to how many exist.

mod components;
mod index;
mod plugin;
mod pool;
mod schedule;
mod spread;

pub use components::*;
pub use index::{AgentIndex, IndexedAgent, IndexedKinds};
pub use plugin::{
    Admitted, AgentPlugin, AgentSystems, AgentsAdmitted, KindSpawners, ScheduleStats,
};
pub(crate) use plugin::{Spawner, spawner_with};
pub(crate) use pool::PoolImage;
pub use pool::{AgentBlueprint, AgentPool};
pub(crate) use schedule::ScheduleImage;
pub use schedule::{AgentLists, AgentSchedule, DueAgents};
pub(crate) use spread::RateChanges;

/// The engine's own bytes per agent, outside its memory's slab blocks: the
/// components an agent entity carries (those it is spawned with and those the
/// app's plugins require of [`Agent`], as registered in `components`: the
/// sizes are the ECS's own), the entity's place in its table and in the
/// entity index, and its entries in the [`AgentSchedule`] and the
/// [`AgentIndex`]. Without [`Agent`] registered, 0.
///
/// A component counts by its inline size: one that owns heap memory (a
/// `Vec`, a `Box`) is counted without it. The built-in components own none
/// (their lists are inline, the memory's records live in its slab blocks); a
/// game whose agent components do should leave room for it in the budget.
pub fn engine_bytes_per_agent(components: &bevy_ecs::component::Components) -> u64 {
    let Some(agent) = components.component_id::<Agent>() else {
        return 0;
    };
    let spawned = [
        components.component_id::<Cadence>(),
        components.component_id::<Position>(),
        components.component_id::<Velocity>(),
        components.component_id::<Body>(),
        components.component_id::<AgentRng>(),
    ];
    let required = components
        .get_info(agent)
        .map(|info| info.required_components().iter_ids().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut ids: Vec<_> = std::iter::once(agent)
        .chain(spawned.into_iter().flatten())
        .chain(required)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let component_bytes: usize = ids
        .iter()
        .filter_map(|&id| components.get_info(id))
        .map(|info| info.layout().size())
        .sum();
    let bookkeeping = size_of::<bevy_ecs::entity::Entity>()
        + size_of::<bevy_ecs::entity::EntityLocation>()
        + schedule::ENTRY_BYTES
        + index::entry_bytes();
    (component_bytes + bookkeeping) as u64
}
