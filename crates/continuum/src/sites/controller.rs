//! Controllers: go to the best site they know of (what they remember, what they
//! see, and their region's latest discoveries, valued from memory or the shared
//! cache, whichever is fresher) and harvest it.

use bevy_ecs::prelude::*;

use super::context::{ThinkContext, Thinker, candidate_sites, prefetch_sites, pursue, site_worth};
use super::params::ControllerParams;
use crate::action::{ActionKind, FailReason, Feedback, FeedbackResult, InformedAgents, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::Intent;
use crate::clock::SimClock;
use crate::memory::{Memory, SharedCache, mem_time};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::world::SiteId;

/// A controller keeps its goal unless another site scores this much better.
const SWITCH_MARGIN: f32 = 1.25;

/// A controller's decision: the best site it knows of, kept unless another
/// scores [`SWITCH_MARGIN`] times better.
pub(super) fn think(ctx: &ThinkContext, params: &ControllerParams, half_life: f32, me: Thinker) {
    let Thinker {
        perception,
        body,
        cadence,
        pos,
        memory,
        velocity,
        intent,
        rng,
        ..
    } = me;
    let (sites, cache, step) = (ctx.sites, ctx.cache.reader(), ctx.step);
    let now = mem_time(cadence.due);
    // What a site is worth to it: the fresher of its own belief (weighed by its
    // confidence) and the shared cache's value.
    let worth = |site: SiteId| site_worth(memory, &cache, site, (now, step), half_life);
    let score = |site: SiteId| {
        let value = worth(site)?;
        let s = sites.get(site)?;
        (value >= params.min_estimate).then(|| value - params.travel_cost * s.pos.distance(pos.0))
    };
    let board = sites.board(ctx.map.region_of(pos.0));
    let candidates = || candidate_sites(memory, perception, board);
    prefetch_sites(ctx, candidates());
    let best = candidates()
        .filter_map(|s| score(s).map(|v| (v, s)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let current = intent.goal().and_then(|g| score(g).map(|v| (v, g)));
    let goal = match (current, best) {
        (Some((cur, g)), Some((top, _))) if cur * SWITCH_MARGIN >= top => Some(g),
        (_, best) => best.map(|(_, g)| g),
    };
    *intent = pursue(
        goal.and_then(|g| sites.get(g)),
        pos.0,
        ctx.reach,
        body,
        velocity,
        rng,
        |_| ActionKind::Harvest {
            amount: params.harvest,
        },
    );
}

/// After a harvest the controller knows what is left (what it published in the
/// shared cache); a site found empty contradicts what it believed; a lost
/// conflict makes the site less certain (crowded).
pub(super) fn learn(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    informed: Res<InformedAgents>,
    archetypes: Res<Archetypes>,
    controllers: Res<KindParams<ControllerParams>>,
    clock: Res<SimClock>,
    cache: Res<SharedCache>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory, &mut Intent)>,
) {
    let step = clock.step();
    for (kind, params) in controllers.iter() {
        let rules = &archetypes.get(kind).memory;
        for_each_due(
            &mut agents,
            informed.of_kind(kind),
            &mut tuner,
            &load,
            |item| {
                let (feedback, cadence, mut memory, mut intent) = item;
                let Some((Target::Site(site), ActionKind::Harvest { .. }, result)) =
                    feedback.fresh(step)
                else {
                    return;
                };
                let now = mem_time(cadence.due);
                match result {
                    FeedbackResult::Applied(_) => {
                        let left = cache.peek(site).map_or(0.0, |f| f.value);
                        memory.learn(site, left, now, 0, rules);
                        if left < params.min_estimate {
                            intent.set_goal(None);
                        }
                    }
                    FeedbackResult::Failed(FailReason::Depleted) => {
                        memory.contradict(site, Some(0.0), now, rules);
                        intent.set_goal(None);
                    }
                    FeedbackResult::Rejected => memory.contradict(site, None, now, rules),
                    FeedbackResult::Failed(_) => intent.set_goal(None),
                }
            },
        );
    }
}
