//! The state digest of a world.
//!
//! The digest covers everything that makes up the simulation's state (agents by
//! id, sites, the shared cache, the thinks under way, the step index) and
//! nothing that depends on how the run was executed (entity ids, storage order,
//! thread count, wall time, diagnostics). Two runs of the same scenario and
//! seed must give the same digest.

use bevy_ecs::prelude::*;

use crate::hash::DigestHasher;

use crate::action::{ActionKind, Feedback, FeedbackResult, Target};
use crate::agent::*;
use crate::behaviour::{Intent, Movement};
use crate::clock::SimClock;
use crate::memory::{Memory, SharedCache, SharedKey};
use crate::sites::Route;
use crate::think::{ThinkQueue, ThinkRegistry};
use crate::world::Sites;

/// A state digest, shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateDigest(pub u64);

impl std::fmt::Display for StateDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An agent's state: its own components, and those of the plugins that may be
/// left out of the group (hashed when present).
type DigestQuery<'a> = (
    &'a Agent,
    &'a Cadence,
    &'a Position,
    &'a Velocity,
    Option<&'a Memory>,
    Option<&'a Intent>,
    &'a AgentRng,
    Option<&'a Feedback>,
    Option<&'a Route>,
);

/// The digest of the whole simulation state in `world`.
pub fn state_digest(world: &mut World) -> StateDigest {
    let mut h = DigestHasher::default();
    if let Some(clock) = world.get_resource::<SimClock>() {
        h.word(clock.step()).word(clock.step_ns());
    }
    // Each agent's state is hashed on its own where it sits in storage (reads
    // that walk memory forward), keyed by its id, and the agents' hashes are
    // added up: the sum does not depend on the order they are visited in, so
    // no list of a million agents is built and sorted to put them in id order.
    let mut query = world.query::<DigestQuery>();
    let (count, sum) = query.iter(world).fold((0u64, 0u64), |(count, sum), agent| {
        let keyed = crate::hash::mix(agent.0.id.0, agent_digest(agent));
        (count + 1, sum.wrapping_add(keyed))
    });
    h.word(count).word(sum);
    if let Some(sites) = world.get_resource::<Sites>() {
        h.word(sites.len() as u64);
        for site in sites.iter() {
            h.word(u64::from(site.id.0)).f32(site.pos.x).f32(site.pos.y);
            h.f32(site.stored_value())
                .word(site.updated_at())
                .f32(site.capacity);
            h.f32(site.harvested);
            h.word(site.discovered_by.map_or(u64::MAX, |a| a.0));
            h.word(u64::from(site.assessments));
        }
        for region in sites.regions() {
            for &site in region.board.discovered() {
                h.word(u64::from(site.0));
            }
            for &(site, value) in region.board.best() {
                h.word(u64::from(site.0)).f32(value);
            }
        }
    }
    if let Some(cache) = world.get_resource::<SharedCache>() {
        h.word(cache.len() as u64).word(cache.capacity() as u64);
        for (key, fact, last_access) in cache.iter() {
            let key = match key {
                SharedKey::Site(site) => u64::from(site.0),
                SharedKey::Ground(cell) => (1 << 32) | u64::from(cell),
            };
            h.word(key).f32(fact.value).word(fact.at);
            h.word(fact.by.0).word(last_access);
        }
    }
    if let Some(queue) = world.get_resource::<ThinkQueue>() {
        queue.hash(&mut h, world.get_resource::<ThinkRegistry>());
    }
    StateDigest(h.finish())
}

/// One agent's state, hashed on its own (its id is chained with it).
fn agent_digest(
    (agent, cadence, pos, vel, memory, intent, rng, feedback, route): DigestQuery<'_>,
) -> u64 {
    let mut h = DigestHasher::default();
    h.word(u64::from(agent.kind.0))
        .word(agent.priority as u64 | u64::from(agent.priority_boost) << 8);
    h.f32(cadence.rate.0)
        .word(cadence.due)
        .word(u64::from(cadence.ticks));
    h.f32(pos.0.x).f32(pos.0.y).f32(vel.0.x).f32(vel.0.y);
    if let Some(memory) = memory {
        hash_memory(&mut h, memory);
    }
    if let Some(intent) = intent {
        hash_intent(&mut h, intent);
    }
    h.word(rng.fingerprint());
    if let Some(feedback) = feedback {
        hash_feedback(&mut h, feedback);
    }
    if let Some(route) = route {
        h.word(route.stops().len() as u64);
        for site in route.stops() {
            h.word(u64::from(site.0));
        }
    }
    h.finish()
}

fn hash_feedback(h: &mut DigestHasher, feedback: &Feedback) {
    h.word(u64::from(feedback.step));
    if let Some((target, kind, result)) = feedback.outcome() {
        hash_action(h, target, kind);
        match result {
            FeedbackResult::Applied(v) => h.word(1).f32(v),
            FeedbackResult::Rejected => h.word(2),
            FeedbackResult::Failed(reason) => h.word(3).word(reason as u64),
        };
    }
    let tally = feedback.tally;
    h.f32(tally.harvested)
        .word(u64::from(tally.applied))
        .word(u64::from(tally.rejected));
}

fn hash_memory(h: &mut DigestHasher, memory: &Memory) {
    let caps = memory.caps();
    h.word(u64::from(memory.limit()));
    h.word(u64::from_le_bytes([
        caps.working,
        caps.short_term,
        caps.intermediate,
        caps.long_term,
        0,
        0,
        0,
        0,
    ]));
    for o in memory.short_term() {
        h.word(u64::from(o.site.0) << 32 | u64::from(o.at));
        h.word(u64::from(o.count));
    }
    for (tier, facts) in [(1, memory.intermediate()), (2, memory.long_term())] {
        h.word(tier);
        for f in facts {
            h.word(u64::from(f.site.0) << 32 | u64::from(f.at));
            h.f32(f.value).f32(f.confidence());
            h.word(u64::from(f.hits) << 8 | u64::from(f.flags));
        }
    }
}

fn hash_intent(h: &mut DigestHasher, intent: &Intent) {
    h.word(intent.goal().map_or(u64::MAX, |s| u64::from(s.0)));
    match intent.movement() {
        Movement::Stay => h.word(0),
        Movement::Drift => h.word(1),
        Movement::Toward(p) => h.word(2).f32(p.x).f32(p.y),
    };
    if let Some(planned) = intent.action() {
        hash_action(h, planned.target, planned.kind);
    }
}

fn hash_action(h: &mut DigestHasher, target: Target, kind: ActionKind) {
    match target {
        Target::Site(s) => h.word(u64::from(s.0)),
        Target::Cell { x, y } => h
            .word(u64::MAX - 1)
            .word(x as u32 as u64)
            .word(y as u32 as u64),
        Target::Agent(a) => h.word(u64::MAX - 2).word(AgentId::from(a).0),
        Target::Pair(a, b) => h.word(u64::MAX - 3).word(u64::from(a)).word(u64::from(b)),
    };
    match kind {
        ActionKind::Report => h.word(10),
        ActionKind::Assess { noise } => h.word(11).f32(noise),
        ActionKind::Harvest { amount } => h.word(12).f32(amount),
        ActionKind::Custom { code, value } => h.word(13).word(u64::from(code)).f32(value),
    };
}

#[cfg(test)]
mod tests {
    use bevy_math::Vec2;

    use super::*;

    /// A world holding agents `0..positions.len()` at those positions,
    /// spawned in the order `order` gives.
    fn world_of(positions: &[Vec2], order: &[usize]) -> World {
        let mut world = World::new();
        for &i in order {
            let id = AgentId(i as u64);
            world.spawn((
                Agent::new(id, AgentKind(0), Priority::Normal),
                Cadence {
                    due: 0,
                    ticks: 0,
                    rate: TickRate(10.0),
                },
                Position(positions[i]),
                Velocity(Vec2::ZERO),
                AgentRng::new(7, id),
            ));
        }
        world
    }

    #[test]
    fn the_digest_keys_agents_by_id_not_by_where_they_are_stored() {
        let at = [
            Vec2::new(1.0, 2.0),
            Vec2::new(3.0, 4.0),
            Vec2::new(5.0, 6.0),
        ];
        let digest =
            |positions: &[Vec2], order: &[usize]| state_digest(&mut world_of(positions, order));
        let first = digest(&at, &[0, 1, 2]);
        assert_eq!(first, digest(&at, &[2, 0, 1]), "storage order");
        let swapped = [at[1], at[0], at[2]];
        assert_ne!(
            first,
            digest(&swapped, &[0, 1, 2]),
            "two agents' places swapped"
        );
        let moved = [at[0], at[1], Vec2::new(5.0, 6.5)];
        assert_ne!(first, digest(&moved, &[0, 1, 2]), "one agent moved");
        assert_ne!(first, digest(&at[..2], &[0, 1]), "one agent fewer");
    }
}
