//! Controllers: go to the best-assessed site they know of and harvest it.

use bevy_ecs::prelude::*;

use super::{wander, within_reach};
use crate::action::{ActionKind, FailReason, FeedbackResult, Target};
use crate::agent::due_batches;
use crate::agent::*;
use crate::archetype::{Archetypes, Behaviour};
use crate::clock::SimClock;
use crate::world::{SiteId, Sites, WorldMap};

/// A controller keeps its goal unless another site scores this much better.
const SWITCH_MARGIN: f32 = 1.25;
/// What a lost conflict does to the controller's estimate of the site: crowded
/// sites look less attractive.
const CROWDING_PENALTY: f32 = 0.8;

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
        let Behaviour::Controller(params) = &archetype.behaviour else {
            continue;
        };
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
                // Published estimates newer than what it remembers replace it.
                let board = sites.board(map.region_of(pos.0));
                let heard = perception
                    .sites
                    .iter()
                    .map(|s| s.site)
                    .chain(board.best().iter().map(|(s, _)| *s));
                for site_id in heard {
                    let Some(estimate) = sites.get(site_id).and_then(|s| s.estimate) else {
                        continue;
                    };
                    let newer = memory.get(site_id).is_none_or(|f| estimate.at > f.at);
                    if newer {
                        memory.remember(SiteFact {
                            site: site_id,
                            estimate: estimate.value,
                            at: estimate.at,
                            reported: true,
                        });
                    }
                }
                let score = |site: SiteId, estimate: f32| {
                    let s = sites.get(site)?;
                    (estimate >= params.min_estimate)
                        .then(|| estimate - params.travel_cost * s.pos.distance(pos.0))
                };
                let best = memory
                    .facts()
                    .iter()
                    .filter(|f| !f.estimate.is_nan())
                    .filter_map(|f| score(f.site, f.estimate).map(|v| (v, f.site)))
                    .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
                let current = intent.goal.and_then(|g| {
                    memory
                        .get(g)
                        .and_then(|f| score(g, f.estimate))
                        .map(|v| (v, g))
                });
                let goal = match (current, best) {
                    (Some((cur, g)), Some((top, _))) if cur * SWITCH_MARGIN >= top => Some(g),
                    (_, best) => best.map(|(_, g)| g),
                };
                *intent = match goal.and_then(|g| sites.get(g)) {
                    Some(site) if within_reach(pos.0, site.pos, reach) => Intent {
                        goal,
                        movement: Movement::Stay,
                        action: Some(PlannedAction {
                            target: Target::Site(site.id),
                            kind: ActionKind::Harvest {
                                amount: params.harvest,
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
                let _ = now;
            });
    }
}

/// After a harvest the controller knows what is left (the site's fresh
/// estimate); an empty site is dropped; a lost conflict makes the site look
/// crowded.
pub(super) fn learn(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    clock: Res<SimClock>,
    sites: Res<Sites>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory, &mut Intent)>,
) {
    let step = clock.step();
    for (kind, archetype) in archetypes.iter().enumerate() {
        if !matches!(archetype.behaviour, Behaviour::Controller(_)) {
            continue;
        }
        agents
            .par_iter_many_unique_mut(due.of_kind(AgentKind(kind as u16)))
            .batching_strategy(due_batches())
            .for_each(|item| {
                let Ok((feedback, cadence, mut memory, mut intent)) = item else {
                    return;
                };
                let Some((Target::Site(site), ActionKind::Harvest { .. }, result)) =
                    feedback.fresh(step)
                else {
                    return;
                };
                let now = cadence.due;
                match result {
                    FeedbackResult::Applied(_) | FeedbackResult::Failed(FailReason::Depleted) => {
                        let left = sites
                            .get(site)
                            .and_then(|s| s.estimate)
                            .map_or(0.0, |e| e.value);
                        memory.remember(SiteFact {
                            site,
                            estimate: left,
                            at: now,
                            reported: true,
                        });
                        if matches!(result, FeedbackResult::Failed(_)) {
                            intent.goal = None;
                        }
                    }
                    FeedbackResult::Rejected => {
                        if let Some(fact) = memory.get_mut(site) {
                            fact.estimate *= CROWDING_PENALTY;
                            fact.at = now;
                        }
                    }
                    FeedbackResult::Failed(_) => intent.goal = None,
                }
            });
    }
}
