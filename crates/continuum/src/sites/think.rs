//! The think of explorers, analyzers and controllers: one pass over the due
//! agents of all three (each pass costs a hand-over to the other threads), and
//! what they share.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use bevy_utils::Parallel;

use super::params::{AnalyzerParams, ControllerParams, ExplorerParams};
use super::{analyzer, controller, explorer};
use crate::action::{ActionKind, PlannedAction, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::{Intent, Movement, wander};
use crate::clock::SimClock;
use crate::memory::{Memory, Perception, Publication, SharedCache};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::world::{Site, Sites, WorldMap};

/// What the sites model's kinds read besides the agent itself.
pub(super) struct ThinkContext<'a> {
    pub step: u64,
    pub reach: f32,
    pub sites: &'a Sites,
    pub map: &'a WorldMap,
    pub cache: &'a SharedCache,
    /// What thinkers publish in the shared cache besides their actions'
    /// results (explorers' ground marks), gathered per thread.
    pub publish: &'a Parallel<Vec<Publication>>,
}

/// The thinking agent: what it reads and what it decides.
pub(super) struct Thinker<'a> {
    pub id: AgentId,
    pub perception: &'a Perception,
    pub body: &'a Body,
    pub cadence: &'a Cadence,
    pub pos: &'a Position,
    pub memory: &'a Memory,
    pub velocity: &'a mut Velocity,
    pub intent: &'a mut Intent,
    pub rng: &'a mut AgentRng,
}

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

/// The intent of an agent working towards a site: with the site within reach,
/// stay and act on it (`action` says how); otherwise head for it; with no site
/// to go to, wander on.
pub(super) fn pursue(
    goal: Option<&Site>,
    pos: Vec2,
    reach: f32,
    body: &Body,
    velocity: &mut Velocity,
    rng: &mut AgentRng,
    action: impl FnOnce(&mut AgentRng) -> ActionKind,
) -> Intent {
    match goal {
        Some(site) if within_reach(pos, site.pos, reach) => Intent::new(
            Some(site.id),
            Movement::Stay,
            Some(PlannedAction {
                target: Target::Site(site.id),
                kind: action(rng),
            }),
        ),
        Some(site) => Intent::new(Some(site.id), Movement::Toward(site.pos), None),
        None => {
            velocity.0 = wander(velocity.0, body.speed, 0.8, 0.5, Vec2::ZERO, rng);
            Intent::new(None, Movement::Drift, None)
        }
    }
}

/// The world's reach rule, shared by the behaviours: whether `pos` is close
/// enough to `target` to act on it.
fn within_reach(pos: Vec2, target: Vec2, reach: f32) -> bool {
    pos.distance_squared(target) <= reach * reach
}
