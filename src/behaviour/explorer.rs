//! Explorers: a random walk with momentum that keeps apart from other agents;
//! they remember the sites they see and publish those nobody has reported yet.

use bevy_ecs::prelude::*;

use super::wander;
use crate::action::{ActionKind, Target};
use crate::agent::due_batches;
use crate::agent::*;
use crate::archetype::{Archetypes, Behaviour};
use crate::world::Sites;

pub(super) fn think(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    sites: Res<Sites>,
    mut agents: Query<(
        &Perception,
        &Body,
        &Cadence,
        &mut Velocity,
        &mut Memory,
        &mut Intent,
        &mut AgentRng,
    )>,
) {
    for (kind, archetype) in archetypes.iter().enumerate() {
        let Behaviour::Explorer(params) = &archetype.behaviour else {
            continue;
        };
        let kind = AgentKind(kind as u16);
        agents
            .par_iter_many_unique_mut(due.of_kind(kind))
            .batching_strategy(due_batches())
            .for_each(|item| {
                let Ok((perception, body, cadence, mut velocity, mut memory, mut intent, mut rng)) =
                    item
                else {
                    return;
                };
                let now = cadence.due;
                for seen in &perception.sites {
                    let Some(site) = sites.get(seen.site) else {
                        continue;
                    };
                    let estimate = site.estimate.map_or(f32::NAN, |e| e.value);
                    memory.remember(SiteFact {
                        site: seen.site,
                        estimate,
                        at: now,
                        reported: site.discovered_by.is_some(),
                    });
                }
                let report = memory.facts().iter().find(|f| !f.reported).map(|f| f.site);
                let avoid = perception.nearest.map(|n| {
                    let closeness: f32 = 1.0 - n.offset.length() / body.perception_radius;
                    (n.offset, params.separation * closeness.max(0.0))
                });
                velocity.0 = wander(
                    velocity.0,
                    body.speed,
                    params.momentum,
                    params.jitter,
                    avoid,
                    &mut rng,
                );
                *intent = Intent {
                    goal: None,
                    movement: Movement::Drift,
                    action: report.map(|site| PlannedAction {
                        target: Target::Site(site),
                        kind: ActionKind::Report,
                    }),
                };
            });
    }
}

/// A published site, or one somebody else published in the same step, is
/// reported: the explorer moves on to the next one.
pub(super) fn learn(
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    clock: Res<crate::clock::SimClock>,
    mut agents: Query<(&Feedback, &mut Memory)>,
) {
    let step = clock.step();
    for (kind, archetype) in archetypes.iter().enumerate() {
        if !matches!(archetype.behaviour, Behaviour::Explorer(_)) {
            continue;
        }
        agents
            .par_iter_many_unique_mut(due.of_kind(AgentKind(kind as u16)))
            .batching_strategy(due_batches())
            .for_each(|item| {
                let Ok((feedback, mut memory)) = item else {
                    return;
                };
                if let Some((Target::Site(site), ActionKind::Report, _)) = feedback.fresh(step)
                    && let Some(fact) = memory.get_mut(site)
                {
                    fact.reported = true;
                }
            });
    }
}
