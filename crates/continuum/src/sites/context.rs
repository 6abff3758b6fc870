//! What the sites model's kinds share when they think: the context they read,
//! the agent thinking, and the pursuit of a site.

use bevy_math::Vec2;
use bevy_utils::Parallel;

use crate::action::{ActionKind, PlannedAction, Target};
use crate::agent::*;
use crate::behaviour::{Intent, Movement, wander};
use crate::memory::{CacheReader, Memory, Perception, Publication, SharedCache, mem_time};
use crate::world::{Board, Site, SiteId, Sites, WorldMap};

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

/// The sites a thinker weighs for its goal: those it remembers, those in
/// view, and those its region's board lists as found lately (a site may come
/// more than once).
pub(super) fn candidate_sites<'a>(
    memory: &'a Memory,
    perception: &'a Perception,
    board: &'a Board,
) -> impl Iterator<Item = SiteId> + 'a {
    memory
        .facts()
        .map(|f| f.site)
        .chain(perception.sites().iter().copied())
        .chain(board.discovered().iter().copied())
}

/// Asks for the shared facts and the records of `sites` before a thinker
/// weighs them one by one: each is a miss in the processor's caches more
/// often than not, and asked for together their misses overlap.
pub(super) fn prefetch_sites(ctx: &ThinkContext, sites: impl Iterator<Item = SiteId>) {
    for site in sites {
        ctx.cache.prefetch(site);
        ctx.sites.prefetch(site);
    }
}

/// What `site` is worth to an agent that remembers what `memory` holds: the
/// fresher of its own belief (weighed by its confidence, which halves every
/// `half_life`) and the shared cache's value; `None` if it knows no value.
/// `(now, step)`: the agent's memory time and the step.
pub(super) fn site_worth(
    memory: &Memory,
    cache: &CacheReader,
    site: SiteId,
    (now, step): (u32, u64),
    half_life: f32,
) -> Option<f32> {
    let own = memory
        .fact(site)
        .map(|(f, _)| (f.at, f.value * f.confidence_at(now, half_life)));
    let shared = cache.read(site, step).map(|f| (mem_time(f.at), f.value));
    let (_, value) = match (own, shared) {
        (Some(o), Some(s)) if s.0 > o.0 => s,
        (Some(o), _) => o,
        (None, Some(s)) => s,
        (None, None) => return None,
    };
    (!value.is_nan()).then_some(value)
}
