//! The think of explorers, analyzers and controllers: one pass over the due
//! agents of all three (each pass costs a hand-over to the other threads).

use bevy_ecs::prelude::*;
use bevy_utils::Parallel;

use super::context::{ThinkContext, Thinker};
use super::params::{AnalyzerParams, ControllerParams, ExplorerParams};
use super::{analyzer, controller, explorer};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::Intent;
use crate::clock::SimClock;
use crate::memory::{Memory, Perception, Publication, SharedCache};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::world::{Sites, WorldMap};

/// The role a kind plays in [`think`], with its parameters.
#[derive(Clone, Copy)]
enum Role<'a> {
    None,
    Explorer(&'a ExplorerParams),
    Analyzer(&'a AnalyzerParams),
    /// With its memory's half-life.
    Controller(&'a ControllerParams, f32),
}

/// Each due explorer, analyzer and controller decides: its [`Intent`] (and,
/// when it wanders, its [`Velocity`]) from its perception, memory and the
/// shared cache, by its kind's parameters. One pass over every due agent,
/// whatever its kind: each pass costs a hand-over to the other threads.
#[allow(clippy::too_many_arguments)]
pub fn think(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    (archetypes, explorers, analyzers, controllers): (
        Res<Archetypes>,
        Res<KindParams<ExplorerParams>>,
        Res<KindParams<AnalyzerParams>>,
        Res<KindParams<ControllerParams>>,
    ),
    (sites, map, cache): (Res<Sites>, Res<WorldMap>, Res<SharedCache>),
    mut publications: MessageWriter<Publication>,
    mut published: Local<Parallel<Vec<Publication>>>,
    mut sorted: Local<Vec<Publication>>,
    mut agents: Query<(
        &Agent,
        &Perception,
        &Body,
        &Cadence,
        &Position,
        &Memory,
        &mut Velocity,
        &mut Intent,
        &mut AgentRng,
    )>,
) {
    let roles: Vec<Role> = archetypes
        .kinds()
        .map(|(kind, archetype)| {
            if let Some(p) = explorers.get(kind) {
                Role::Explorer(p)
            } else if let Some(p) = analyzers.get(kind) {
                Role::Analyzer(p)
            } else if let Some(p) = controllers.get(kind) {
                Role::Controller(p, archetype.memory.half_life)
            } else {
                Role::None
            }
        })
        .collect();
    if roles.iter().all(|r| matches!(r, Role::None)) {
        return;
    }
    let ctx = ThinkContext {
        step: clock.step(),
        reach: map.reach(),
        sites: &sites,
        map: &map,
        cache: &cache,
        publish: &published,
    };
    for_each_due(&mut agents, due.all(), &mut tuner, &load, |item| {
        let (agent, perception, body, cadence, pos, memory, velocity, intent, rng) = item;
        let role = roles.get(agent.kind.index()).copied().unwrap_or(Role::None);
        if matches!(role, Role::None) {
            return;
        }
        let me = Thinker {
            id: agent.id,
            perception,
            body,
            cadence,
            pos,
            memory,
            velocity: velocity.into_inner(),
            intent: intent.into_inner(),
            rng: rng.into_inner(),
        };
        match role {
            Role::Explorer(params) => explorer::think(&ctx, params, me),
            Role::Analyzer(params) => analyzer::think(&ctx, params, me),
            Role::Controller(params, half_life) => controller::think(&ctx, params, half_life, me),
            Role::None => {}
        }
    });
    // Publications are taken in order: the threads' order is replaced by the
    // keys' and the publishers'.
    sorted.clear();
    sorted.extend(published.drain());
    sorted.sort_unstable_by_key(|p| (p.key, p.fact.by));
    publications.write_batch(sorted.drain(..));
}
