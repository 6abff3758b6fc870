//! Analyzers: go to sites that have no fresh estimate, assess them and publish
//! the estimate.

use bevy_ecs::prelude::*;

use super::context::{ThinkContext, Thinker, candidate_sites, prefetch_sites, pursue};
use super::params::AnalyzerParams;
use crate::action::{ActionKind, Feedback, FeedbackResult, InformedAgents, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::Intent;
use crate::clock::{SimClock, secs_to_sim};
use crate::memory::{ASSESSED_BY_ME, Memory, mem_time};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::world::SiteId;

/// An analyzer's decision: the nearest site that needs an assessment, among
/// what it remembers, what it sees and what its region's board says was found.
pub(super) fn think(ctx: &ThinkContext, params: &AnalyzerParams, me: Thinker) {
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
    let stale = secs_to_sim(f64::from(params.stale_after));
    let stale_ms = mem_time(stale);
    let now = cadence.due;
    // Not if it assessed the site itself recently; otherwise if the shared
    // cache has no fresh estimate of it.
    let needs_assessment = |site: SiteId| {
        let mine = memory.fact(site).is_some_and(|(f, _)| {
            f.flags & ASSESSED_BY_ME != 0 && mem_time(now).saturating_sub(f.at) <= stale_ms
        });
        !mine
            && cache
                .read(site, step)
                .is_none_or(|f| f.value.is_nan() || now.saturating_sub(f.at) > stale)
    };
    let board = sites.board(ctx.map.region_of(pos.0));
    let candidates = || candidate_sites(memory, perception, board);
    prefetch_sites(ctx, intent.goal().into_iter().chain(candidates()));
    let goal = intent.goal().filter(|&g| needs_assessment(g)).or_else(|| {
        candidates()
            .filter_map(|s| {
                sites
                    .get(s)
                    .map(|site| (site.pos.distance_squared(pos.0), s))
            })
            .filter(|&(_, s)| needs_assessment(s))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, site)| site)
    });
    *intent = pursue(
        goal.and_then(|g| sites.get(g)),
        pos.0,
        ctx.reach,
        body,
        velocity,
        rng,
        |rng| ActionKind::Assess {
            noise: rng.signed() * params.noise,
        },
    );
}

/// An applied assessment is remembered as the analyzer's own, and the goal is
/// done; a rejected one is retried next tick unless somebody else's estimate
/// makes it unnecessary.
pub(super) fn learn(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    informed: Res<InformedAgents>,
    archetypes: Res<Archetypes>,
    analyzers: Res<KindParams<AnalyzerParams>>,
    clock: Res<SimClock>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory, &mut Intent)>,
) {
    let step = clock.step();
    for (kind, _) in analyzers.iter() {
        let rules = &archetypes.get(kind).memory;
        for_each_due(
            &mut agents,
            informed.of_kind(kind),
            &mut tuner,
            &load,
            |item| {
                let (feedback, cadence, mut memory, mut intent) = item;
                let Some((Target::Site(site), ActionKind::Assess { .. }, result)) =
                    feedback.fresh(step)
                else {
                    return;
                };
                if let FeedbackResult::Applied(value) = result {
                    memory.learn(site, value, mem_time(cadence.due), ASSESSED_BY_ME, rules);
                    intent.set_goal(None);
                }
            },
        );
    }
}
