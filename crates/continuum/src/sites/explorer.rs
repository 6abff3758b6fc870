//! Explorers: a random walk with momentum that keeps apart from other agents and
//! steers away from the sites it already remembers and from the ground others
//! went over lately; they publish the sites the shared cache does not hold yet,
//! and mark the ground they go over.

use arrayvec::ArrayVec;
use bevy_ecs::prelude::*;
use bevy_math::Vec2;

use super::context::{ThinkContext, Thinker, prefetch_sites};
use super::params::ExplorerParams;
use crate::action::{ActionKind, Feedback, InformedAgents, PlannedAction, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::{Intent, Movement, wander};
use crate::clock::{SimClock, SimTime, secs_to_sim};
use crate::memory::{
    CacheReader, Memory, Perception, Publication, REPORTED, SharedFact, SharedKey, mem_time,
};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};

/// An explorer's decision: publish the nearest site in view nobody has
/// published, and wander on, apart from its neighbours and the sites it knows.
pub(super) fn think(ctx: &ThinkContext, params: &ExplorerParams, me: Thinker) {
    let Thinker {
        id,
        perception,
        body,
        cadence,
        pos,
        memory,
        velocity,
        intent,
        rng,
    } = me;
    let (sites, cache, step) = (ctx.sites, ctx.cache.reader(), ctx.step);
    prefetch_sites(ctx, perception.sites().iter().copied());
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
    // The ground is looked at every few ticks, not every tick (each look reads
    // nine cells of the shared cache, which costs more than the rest of an
    // explorer's tick), and then turns it as much as every tick would have.
    if (cadence.ticks.wrapping_add(id.0 as u32)) % LOOK_EVERY == 0 {
        let me = (id, cadence.due);
        push += explored_ground(ctx, &cache, params, me, pos.0, perception)
            * (params.avoid_explored * LOOK_EVERY as f32);
    }
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

/// Away from the ground explorers went over lately, and a mark on its own
/// cell: the sum of the directions away from the eight neighbouring cells,
/// each weighed by how fresh its mark is (1 just marked, 0 once
/// `explored_for` old or never), at most 1 long. The explorer marks its own
/// cell (with the number of sites in view) unless it was marked less than
/// half of `explored_for` ago.
fn explored_ground(
    ctx: &ThinkContext,
    reader: &CacheReader,
    params: &ExplorerParams,
    me: (AgentId, SimTime),
    pos: Vec2,
    perception: &Perception,
) -> Vec2 {
    let (cache, step) = (ctx.cache, ctx.step);
    let Some(ground) = cache.ground() else {
        return Vec2::ZERO;
    };
    let (id, now) = me;
    let fresh_for = secs_to_sim(f64::from(params.explored_for)).max(1);
    let freshness = |cell: u32| {
        reader
            .read(SharedKey::Ground(cell), step)
            .map_or(0.0, |mark| {
                1.0 - now.saturating_sub(mark.at).min(fresh_for) as f32 / fresh_for as f32
            })
    };
    let here = ground.cell_of(pos);
    let avoid = params.avoid_explored != 0.0;
    let around: ArrayVec<u32, 8> = if avoid {
        ground.neighbours(pos).collect()
    } else {
        ArrayVec::new()
    };
    // Up to nine cells, each a miss in the processor's cache more often than
    // not: their lines are asked for together, so that the misses overlap.
    cache.prefetch(SharedKey::Ground(here));
    for &cell in &around {
        cache.prefetch(SharedKey::Ground(cell));
    }
    if freshness(here) < 0.5 {
        let fact = SharedFact {
            value: perception.sites().len() as f32,
            at: now,
            by: id,
        };
        let key = SharedKey::Ground(here);
        ctx.publish
            .scope(|published| published.push(Publication { key, fact }));
    }
    if !avoid {
        return Vec2::ZERO;
    }
    around
        .into_iter()
        .map(|cell| (pos - ground.cell_center(cell)).normalize_or_zero() * freshness(cell))
        .sum::<Vec2>()
        .clamp_length_max(1.0)
}

/// Ticks between an explorer's looks at the ground (staggered by id).
const LOOK_EVERY: u32 = 4;

/// A report, applied or beaten by someone else's in the same step, means the
/// site is published: the explorer remembers it reported it.
pub(super) fn learn(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    informed: Res<InformedAgents>,
    archetypes: Res<Archetypes>,
    explorers: Res<KindParams<ExplorerParams>>,
    clock: Res<SimClock>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory)>,
) {
    let step = clock.step();
    for (kind, _) in explorers.iter() {
        let rules = &archetypes.get(kind).memory;
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
