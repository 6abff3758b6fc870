use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

use super::*;
use crate::agent::{Agent, DueAgents, Position};
use crate::archetype::Archetypes;
use crate::clock::SimSeed;
use crate::parallel::{BatchTuner, ThreadLoad, for_each_chunk, for_each_due_into};
use crate::sets::ContinuumSystems;
use bevy_math::Vec2;

/// The world: generates the map and sites at startup from [`WorldSettings`], and
/// keeps the agents' spatial index current.
pub struct WorldPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl WorldPlugin {
    /// Runs the world's per-step systems in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for WorldPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<WorldSettings>()
            .add_systems(Startup, generate_world)
            .add_systems(
                self.schedule,
                index_moved_agents.in_set(ContinuumSystems::Pool),
            )
            .add_observer(index_new_agent)
            .add_observer(unindex_agent);
    }
}

/// Side of the spatial index cells: the largest perception radius, so a query
/// looks at no more than 3 × 3 cells.
fn index_cell(archetypes: Option<&Archetypes>) -> f32 {
    archetypes
        .and_then(|a| a.iter().map(|a| a.perception_radius).max_by(f32::total_cmp))
        .unwrap_or(50.0)
        .max(1.0)
}

fn generate_world(
    mut commands: Commands,
    settings: Res<WorldSettings>,
    seed: Res<SimSeed>,
    archetypes: Option<Res<Archetypes>>,
) {
    let map = WorldMap::new(settings.size, settings.regions, settings.reach);
    let cell = index_cell(archetypes.as_deref());
    commands.insert_resource(Sites::generate(&map, &settings, seed.0, cell));
    commands.insert_resource(AgentIndex(CellGrid::new(map.size(), cell)));
    commands.insert_resource(map);
}

fn indexed(agent: &Agent) -> IndexedAgent {
    IndexedAgent { id: agent.id }
}

fn index_new_agent(
    added: On<Add<Agent>>,
    index: Option<ResMut<AgentIndex>>,
    mut agents: Query<(&mut Agent, &Position)>,
) {
    let (Some(mut index), Ok((mut agent, pos))) = (index, agents.get_mut(added.entity)) else {
        return;
    };
    agent.index_cell = index.0.insert(pos.0, indexed(&agent));
}

fn unindex_agent(
    removed: On<Remove<Agent>>,
    index: Option<ResMut<AgentIndex>>,
    agents: Query<&Agent>,
) {
    let (Some(mut index), Ok(agent)) = (index, agents.get(removed.entity)) else {
        return;
    };
    let id = agent.id;
    index.0.remove(agent.index_cell, |a| a.id == id);
}

/// Where a ticked agent was in the index and where it is now.
#[derive(Clone, Copy)]
struct Relocation {
    from: u32,
    pos: Vec2,
    agent: IndexedAgent,
}

/// Moves the agents that ticked in this step to their new places in the index,
/// in three passes: the agents note where they were and are (in parallel); the
/// ones still in their cell move their own entries there (in parallel, reading
/// only the notes, which keeps the index's cache misses apart from the ECS's);
/// the few that change cells are then moved in the due order.
fn index_moved_agents(
    mut tuner: Local<BatchTuner>,
    mut moves: Local<Vec<Option<Relocation>>>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    mut index: ResMut<AgentIndex>,
    mut agents: Query<(&mut Agent, &Position)>,
) {
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
    for_each_chunk(&mut moves, &load, |relocation| {
        if let Some(r) = relocation
            && grid.move_within(r.from, r.pos, |a| a.id == r.agent.id)
        {
            *relocation = None;
        }
    });
    let grid = &mut index.0;
    for r in moves.iter().flatten() {
        let id = r.agent.id;
        grid.relocate(r.from, r.pos, r.agent, |a| a.id == id);
    }
}
