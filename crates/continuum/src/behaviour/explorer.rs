//! Explorers: a random walk with momentum that keeps apart from other agents and
//! steers away from the sites it already remembers; they publish the sites the
//! shared cache does not hold yet.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;

use super::{Intent, Movement};
use super::{ThinkContext, Thinker, wander};
use crate::action::{ActionKind, Feedback, InformedAgents, PlannedAction, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, Behaviour, ExplorerParams};
use crate::clock::SimClock;
use crate::memory::{Memory, REPORTED, mem_time};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};

/// An explorer's decision: publish the nearest site in view nobody has
/// published, and wander on, apart from its neighbours and the sites it knows.
pub(super) fn think(ctx: &ThinkContext, params: &ExplorerParams, me: Thinker) {
    let Thinker {
        perception,
        body,
        pos,
        memory,
        velocity,
        intent,
        rng,
        ..
    } = me;
    let (sites, cache, step) = (ctx.sites, ctx.cache, ctx.step);
    // Publish the nearest site in view that nobody has published (as far as
    // the shared cache knows) and it has not reported itself.
    let report = perception.sites().iter().copied().find(|&site| {
        let reported = memory
            .fact(site)
            .is_some_and(|(f, _)| f.flags & REPORTED != 0);
        !reported && cache.read(site, step).is_none()
    });
    // Keep apart from the nearest agent, and away from the sites it already
    // remembers: new ground is where new sites are.
    let mut push = Vec2::ZERO;
    if let Some(offset) = perception.nearest() {
        let closeness: f32 = 1.0 - offset.length() / body.perception_radius;
        push -= offset.normalize_or_zero() * params.separation * closeness.max(0.0);
    }
    let known: Vec2 = perception
        .sites()
        .iter()
        .filter(|&&s| memory.knows(s))
        .filter_map(|&s| sites.get(s))
        .map(|s| (pos.0 - s.pos).normalize_or_zero())
        .sum();
    push += known.normalize_or_zero() * params.avoid_known;
    velocity.0 = wander(
        velocity.0,
        body.speed,
        params.momentum,
        params.jitter,
        push,
        rng,
    );
    *intent = Intent::new(
        None,
        Movement::Drift,
        report.map(|site| PlannedAction {
            target: Target::Site(site),
            kind: ActionKind::Report,
        }),
    );
}

/// A report, applied or beaten by someone else's in the same step, means the
/// site is published: the explorer remembers it reported it.
pub(super) fn learn(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    informed: Res<InformedAgents>,
    archetypes: Res<Archetypes>,
    clock: Res<SimClock>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory)>,
) {
    let step = clock.step();
    for (kind, archetype) in archetypes.kinds() {
        if !matches!(archetype.behaviour, Behaviour::Explorer(_)) {
            continue;
        }
        let rules = &archetype.memory;
        for_each_due(
            &mut agents,
            informed.of_kind(kind),
            &mut tuner,
            &load,
            |item| {
                let (feedback, cadence, mut memory) = item;
                if let Some((Target::Site(site), ActionKind::Report, _)) = feedback.fresh(step) {
                    memory.learn(site, f32::NAN, mem_time(cadence.due), REPORTED, rules);
                }
            },
        );
    }
}
