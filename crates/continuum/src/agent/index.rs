//! The agents' spatial index: where every agent is, for agents to perceive
//! each other without an all-pairs scan.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;

use super::{Agent, AgentId, AgentKind, DueAgents, Position};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due_into, for_each_run};
use crate::spatial::CellGrid;

/// How many agents ahead the index's passes ask for the cells they will
/// touch: a cell is a miss in the processor's caches more often than not, and
/// sixteen misses in flight overlap where one after another would not.
const PREFETCH_AHEAD: usize = 16;

/// An agent as the spatial index sees it: its id (with its position, 16 bytes
/// an entry).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct IndexedAgent {
    pub id: AgentId,
}

/// Every agent's position, for agents to perceive each other without an
/// all-pairs scan.
///
/// Kept current at a cost proportional to the agents that moved: agents are
/// inserted when admitted, removed when despawned, and relocated after each of
/// their ticks (the only time the built-in systems move them). A position changed
/// by other code outside the agent's tick shows up here at its next tick.
#[derive(Resource, Clone, Debug)]
pub struct AgentIndex(pub CellGrid<IndexedAgent>);

/// Which kinds' agents the [`AgentIndex`] keeps, by kind; a kind past the
/// end is kept. The archetype plugin fills it from each kind's
/// [`indexed`](crate::archetype::Archetype::indexed). A kind left out is
/// found by no one through the index (not by the kinds that perceive
/// agents, not by game code), and costs the index nothing: a model that
/// keeps its own index of its agents leaves them out.
#[derive(Resource, Clone, Debug, Default, PartialEq)]
pub struct IndexedKinds(pub Vec<bool>);

impl IndexedKinds {
    /// Whether the index keeps agents of `kind`.
    pub fn contains(&self, kind: AgentKind) -> bool {
        self.0.get(kind.index()).copied().unwrap_or(true)
    }
}

/// An agent's `index_cell` while the index does not keep it.
pub(crate) const NOT_INDEXED: u32 = u32::MAX;

/// Bytes of one agent's entry in the index.
pub(crate) fn entry_bytes() -> usize {
    CellGrid::<IndexedAgent>::bytes_per_item()
}

impl Default for AgentIndex {
    fn default() -> Self {
        Self(CellGrid::new(
            Vec2::splat(1000.0),
            super::PerceptionReach::default().0,
        ))
    }
}

fn indexed(agent: &Agent) -> IndexedAgent {
    IndexedAgent { id: agent.id }
}

/// Puts newly admitted agents into the index, in admission order (which the
/// order of a cell's entries follows), if there is an index.
pub(super) fn index_admitted(world: &mut World, entities: &[Entity]) {
    if !world.contains_resource::<AgentIndex>() {
        return;
    }
    let kinds = world
        .get_resource::<IndexedKinds>()
        .cloned()
        .unwrap_or_default();
    world.resource_scope(|world, mut index: Mut<AgentIndex>| {
        for &entity in entities {
            let mut agent = world.entity_mut(entity);
            let pos = agent.get::<Position>().map_or(Vec2::ZERO, |p| p.0);
            if let Some(mut agent) = agent.get_mut::<Agent>() {
                agent.index_cell = if kinds.contains(agent.kind) {
                    index.0.insert(pos, indexed(&agent))
                } else {
                    NOT_INDEXED
                };
            }
        }
    });
}

/// Takes an agent that leaves out of the index.
pub(super) fn unindex(index: &mut AgentIndex, agent: &Agent) {
    if agent.index_cell == NOT_INDEXED {
        return;
    }
    let id = agent.id;
    index.0.remove(agent.index_cell, |a| a.id == id);
}

/// Where a ticked agent was in the index and where it is now.
#[derive(Clone, Copy)]
pub(super) struct Relocation {
    from: u32,
    pos: Vec2,
    agent: IndexedAgent,
}

/// Moves the agents that ticked in this step to their new places in the index,
/// in three passes: the agents note where they were and are (in parallel); the
/// ones still in their cell move their own entries there (in parallel, reading
/// only the notes, which keeps the index's cache misses apart from the ECS's);
/// the few that change cells are then moved in the due order. The last two
/// ask for each cell [`PREFETCH_AHEAD`] agents before they reach it. Agents
/// of kinds the index does not keep ([`IndexedKinds`]) are passed over; with
/// none due of the kinds it keeps, nothing is read.
pub(super) fn index_moved_agents(
    mut tuner: Local<BatchTuner>,
    mut moves: Local<Vec<Option<Relocation>>>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    kinds: Option<Res<IndexedKinds>>,
    mut index: ResMut<AgentIndex>,
    mut agents: Query<(&mut Agent, &Position)>,
) {
    let every_kind = IndexedKinds::default();
    let kinds = kinds.as_deref().unwrap_or(&every_kind);
    let (mut any_kept, mut all_kept) = (false, true);
    for (kind, count) in due.counts_by_kind() {
        if count > 0 {
            let kept = kinds.contains(kind);
            any_kept |= kept;
            all_kept &= kept;
        }
    }
    if !any_kept {
        return;
    }
    moves.clear();
    moves.resize(due.len(), None);
    let geometry = *index.0.geometry();
    for_each_due_into(
        &mut agents,
        due.all(),
        &mut moves,
        &mut tuner,
        &load,
        |(mut agent, pos), relocation| {
            if !all_kept && !kinds.contains(agent.kind) {
                return;
            }
            *relocation = Some(Relocation {
                from: agent.index_cell,
                pos: pos.0,
                agent: indexed(&agent),
            });
            let new = geometry.cell_of(pos.0);
            if new != agent.index_cell {
                agent.index_cell = new;
            }
        },
    );
    let grid = &index.0;
    for_each_run(&mut moves, &load, |run| {
        for i in 0..run.len() {
            if let Some(Some(ahead)) = run.get(i + PREFETCH_AHEAD) {
                grid.prefetch(ahead.from);
            }
            if let Some(r) = &run[i]
                && grid.move_within(r.from, r.pos, |a| a.id == r.agent.id)
            {
                run[i] = None;
            }
        }
    });
    let grid = &mut index.0;
    let mut ahead = moves.iter().flatten().skip(PREFETCH_AHEAD);
    for r in moves.iter().flatten() {
        if let Some(a) = ahead.next() {
            grid.prefetch(a.from);
            grid.prefetch(geometry.cell_of(a.pos));
        }
        let id = r.agent.id;
        grid.relocate(r.from, r.pos, r.agent, |a| a.id == id);
    }
}
