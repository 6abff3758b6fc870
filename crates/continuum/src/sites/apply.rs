//! The sites as the resolver's regional targets: an action on a site is
//! applied to its region (the site's value, its region's board) and publishes
//! what it teaches everyone in the shared cache.

use crate::action::{
    Action, ActionKind, ActionResult, ApplyContext, FailReason, Placement, RegionalTargets, Target,
    apply_model,
};
use crate::memory::{Publication, SharedFact, SharedKey};
use crate::world::{Region, Sites};

impl RegionalTargets for Sites {
    type Region = Region;

    fn place(&self, target: Target) -> Placement {
        match target {
            Target::Site(site) => self
                .region_of(site)
                .map_or(Placement::Unknown, |r| Placement::Region(r.0 as usize)),
            _ => Placement::Model,
        }
    }

    fn regions_mut(&mut self) -> &mut [Region] {
        Sites::regions_mut(self)
    }

    fn apply(
        region: &mut Region,
        action: &Action,
        ctx: &ApplyContext,
        published: &mut Vec<Publication>,
    ) -> ActionResult {
        apply(region, action, ctx, published)
    }
}

/// Below this a site counts as empty.
const DEPLETED: f32 = 1e-3;

/// Applies a winning action to its site's region, and notes what it
/// publishes.
fn apply(
    region: &mut Region,
    action: &Action,
    rules: &ApplyContext,
    published: &mut Vec<Publication>,
) -> ActionResult {
    let Target::Site(id) = action.target else {
        return apply_model(action);
    };
    let Some(site) = region.site_mut(id) else {
        return ActionResult::Failed {
            reason: FailReason::UnknownTarget,
        };
    };
    let t = action.timestamp;
    let reach = rules.reach;
    let in_reach = action.origin.distance_squared(site.pos) <= reach * reach;
    let fact = |value: f32| Publication {
        key: SharedKey::Site(id),
        fact: SharedFact {
            value,
            at: t,
            by: action.agent,
        },
    };
    match action.kind {
        ActionKind::Report => {
            let new = site.discovered_by.is_none();
            if new {
                site.discovered_by = Some(action.agent);
                region.board.publish_discovery(id);
            }
            // Publish the discovery unless the cache still holds the site (it may
            // have been evicted since someone else found it).
            if rules.cache.is_none_or(|cache| cache.peek(id).is_none()) {
                published.push(fact(f32::NAN));
            }
            ActionResult::Applied {
                value: if new { 1.0 } else { 0.0 },
            }
        }
        ActionKind::Assess { .. } | ActionKind::Harvest { .. } if !in_reach => {
            ActionResult::Failed {
                reason: FailReason::OutOfReach,
            }
        }
        ActionKind::Assess { noise } => {
            let value = (site.value_at(t) * (1.0 + noise)).max(0.0);
            site.assessments += 1;
            region.board.publish_estimate(id, value);
            published.push(fact(value));
            ActionResult::Applied { value }
        }
        ActionKind::Harvest { amount } => {
            let available = site.value_at(t);
            let taken = amount.max(0.0).min(available);
            let remaining = available - taken;
            site.set_value(remaining, t);
            site.harvested += taken;
            // The harvester saw what is left: that is the freshest estimate.
            region.board.publish_estimate(id, remaining);
            published.push(fact(remaining));
            if available < DEPLETED {
                ActionResult::Failed {
                    reason: FailReason::Depleted,
                }
            } else {
                ActionResult::Applied { value: taken }
            }
        }
        ActionKind::Custom { value, .. } => ActionResult::Applied { value },
    }
}
