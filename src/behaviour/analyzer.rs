//! Analyzers: go to published sites that have no fresh estimate and assess them.

use bevy_ecs::prelude::*;

use super::{wander, within_reach};
use crate::action::{ActionKind, FeedbackResult, Target};
use crate::agent::due_batches;
use crate::agent::*;
use crate::archetype::{Archetypes, Behaviour};
use crate::clock::{SimClock, secs_to_sim};
use crate::world::{Sites, WorldMap};

pub(super) fn think(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    sites: Res<Sites>,
    map: Res<WorldMap>,
    mut agents: Query<(
        &Perception,
        &Body,
        &Cadence,
        &Position,
        &mut Velocity,
        &mut Memory,
        &mut Intent,
        &mut AgentRng,
    )>,
) {
    let reach = map.reach();
    for (kind, archetype) in archetypes.iter().enumerate() {
        let Behaviour::Analyzer(params) = &archetype.behaviour else {
            continue;
        };
        let stale = secs_to_sim(f64::from(params.stale_after));
        agents
            .par_iter_many_unique_mut(due.of_kind(AgentKind(kind as u16)))
            .batching_strategy(due_batches())
            .for_each(|item| {
                let Ok((
                    perception,
                    body,
                    cadence,
                    pos,
                    mut velocity,
                    mut memory,
                    mut intent,
                    mut rng,
                )) = item
                else {
                    return;
                };
                let now = cadence.due;
                let needs_assessment = |site: crate::world::SiteId| {
                    sites.get(site).is_some_and(|s| {
                        s.discovered_by.is_some()
                            && s.estimate.is_none_or(|e| now.saturating_sub(e.at) > stale)
                    })
                };
                // It remembers the sites it sees that need assessing...
                for seen in &perception.sites {
                    if needs_assessment(seen.site) && memory.get(seen.site).is_none() {
                        memory.remember(SiteFact {
                            site: seen.site,
                            estimate: f32::NAN,
                            at: now,
                            reported: true,
                        });
                    }
                }
                // ...and picks the nearest one needing it among those and what its
                // region's board says was found.
                let board = sites.board(map.region_of(pos.0));
                let goal = intent.goal.filter(|&g| needs_assessment(g)).or_else(|| {
                    memory
                        .facts()
                        .iter()
                        .map(|f| f.site)
                        .chain(board.discovered().iter().copied())
                        .filter(|&s| needs_assessment(s))
                        .filter_map(|s| {
                            sites
                                .get(s)
                                .map(|site| (site.pos.distance_squared(pos.0), s))
                        })
                        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                        .map(|(_, site)| site)
                });
                *intent = match goal.and_then(|g| sites.get(g)) {
                    Some(site) if within_reach(pos.0, site.pos, reach) => Intent {
                        goal,
                        movement: Movement::Stay,
                        action: Some(PlannedAction {
                            target: Target::Site(site.id),
                            kind: ActionKind::Assess {
                                noise: rng.signed() * params.noise,
                            },
                        }),
                    },
                    Some(site) => Intent {
                        goal,
                        movement: Movement::Toward(site.pos),
                        action: None,
                    },
                    None => {
                        velocity.0 = wander(velocity.0, body.speed, 0.8, 0.5, None, &mut rng);
                        Intent {
                            goal: None,
                            movement: Movement::Drift,
                            action: None,
                        }
                    }
                };
            });
    }
}

/// An applied assessment is remembered and the goal is done; a rejected one is
/// retried next tick (unless somebody else's estimate makes it unnecessary).
pub(super) fn learn(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    clock: Res<SimClock>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory, &mut Intent)>,
) {
    let step = clock.step();
    for (kind, archetype) in archetypes.iter().enumerate() {
        if !matches!(archetype.behaviour, Behaviour::Analyzer(_)) {
            continue;
        }
        agents
            .par_iter_many_unique_mut(due.of_kind(AgentKind(kind as u16)))
            .batching_strategy(due_batches())
            .for_each(|item| {
                let Ok((feedback, cadence, mut memory, mut intent)) = item else {
                    return;
                };
                let Some((Target::Site(site), ActionKind::Assess { .. }, result)) =
                    feedback.fresh(step)
                else {
                    return;
                };
                if let FeedbackResult::Applied(value) = result {
                    memory.remember(SiteFact {
                        site,
                        estimate: value,
                        at: cadence.due,
                        reported: true,
                    });
                    intent.goal = None;
                }
            });
    }
}
