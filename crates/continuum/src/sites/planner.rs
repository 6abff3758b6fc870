//! Planners: plan a route over the most valuable sites they know of, by a
//! branch-and-bound search run as an asynchronous think, then harvest along
//! it. While the plan is being made they keep perceiving, and hold still.

use arrayvec::ArrayVec;
use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use super::context::{pursue, site_worth};
use super::params::{MAX_ROUTE_STOPS, PlannerParams};
use crate::action::{ActionKind, FailReason, Feedback, FeedbackResult, InformedAgents, Target};
use crate::agent::*;
use crate::archetype::{Archetypes, KindParams};
use crate::behaviour::Intent;
use crate::clock::SimClock;
use crate::memory::{Memory, Perception, SharedCache, mem_time};
use crate::parallel::{BatchTuner, ThreadLoad, for_each_due};
use crate::think::{AsyncThink, Thinks};
use crate::world::{SiteId, Sites, WorldMap};

/// A planner's route: the sites it means to harvest, in order. Planners get
/// one when they are admitted; it is empty until their first plan is in.
#[derive(Component, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    stops: ArrayVec<SiteId, MAX_ROUTE_STOPS>,
}

impl Route {
    /// A route through `stops` (the first [`MAX_ROUTE_STOPS`] of them).
    pub fn new(stops: impl IntoIterator<Item = SiteId>) -> Self {
        Self {
            stops: stops.into_iter().take(MAX_ROUTE_STOPS).collect(),
        }
    }

    /// The sites still to visit, in order.
    pub fn stops(&self) -> &[SiteId] {
        &self.stops
    }

    /// The site it is heading for.
    pub fn next(&self) -> Option<SiteId> {
        self.stops.first().copied()
    }

    /// Done with the site it was heading for.
    fn advance(&mut self) {
        if !self.stops.is_empty() {
            self.stops.remove(0);
        }
    }
}

/// A site a plan may visit, with what it is worth there.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub site: SiteId,
    pub pos: Vec2,
    /// Value expected from harvesting it (above the planner's minimum).
    pub gain: f32,
}

/// What a planner plans from: where it stands, the sites it may visit and
/// how much travel costs. Plain data, snapshotted when it asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteProblem {
    pub from: Vec2,
    /// Most stops on the route.
    pub stops: u8,
    /// Value a world unit of travel is worth giving up.
    pub travel_cost: f32,
    /// At most [`MAX_CANDIDATES`](super::MAX_CANDIDATES), most
    /// valuable first.
    pub candidates: Vec<Candidate>,
}

/// The planners' asynchronous think: [`plan_route`] as a task.
pub struct RoutePlanner;

impl AsyncThink for RoutePlanner {
    type Input = RouteProblem;
    type Plan = Route;
    // An `async fn` would borrow `self`: the task must own all it needs.
    #[allow(clippy::manual_async_fn)]
    fn think(&self, problem: RouteProblem) -> impl Future<Output = Route> + Send + 'static {
        async move { plan_route(&problem).0 }
    }
}

/// The route of at most `problem.stops` distinct candidates, in the order
/// visited, that gains the most value net of travel: a depth-first
/// branch-and-bound search over ordered selections. A branch is cut when even
/// the best remaining gains, with no travel, could not beat the best route
/// found. Candidates are tried most valuable first, ties by site id, and only
/// a strictly better route replaces the best: the result is a function of the
/// problem alone. Returns the route and the number of partial routes
/// examined. With any candidate the route has a stop, even at a loss (the
/// best is then the least bad trip, as a controller would take it); without
/// one it is empty.
pub fn plan_route(problem: &RouteProblem) -> (Route, u64) {
    let mut order: Vec<Candidate> = problem
        .candidates
        .iter()
        .copied()
        .filter(|c| c.gain.is_finite() && c.pos.is_finite())
        .collect();
    order.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.site.cmp(&b.site)));
    let mut search = Search {
        order: &order,
        used: vec![false; order.len()],
        path: ArrayVec::new(),
        best: ArrayVec::new(),
        best_value: f32::NEG_INFINITY,
        depth_limit: usize::from(problem.stops).min(MAX_ROUTE_STOPS),
        travel_cost: problem.travel_cost,
        examined: 0,
    };
    search.extend(problem.from, 0.0);
    let stops = search.best.iter().map(|&i| order[i].site);
    (Route::new(stops), search.examined)
}

struct Search<'a> {
    order: &'a [Candidate],
    used: Vec<bool>,
    path: ArrayVec<usize, MAX_ROUTE_STOPS>,
    best: ArrayVec<usize, MAX_ROUTE_STOPS>,
    best_value: f32,
    depth_limit: usize,
    travel_cost: f32,
    examined: u64,
}

impl Search<'_> {
    /// Tries every unused candidate after the path so far (at `at`, worth
    /// `value`).
    fn extend(&mut self, at: Vec2, value: f32) {
        self.examined += 1;
        if !self.path.is_empty() && value > self.best_value {
            self.best_value = value;
            self.best = self.path.clone();
        }
        let left = self.depth_limit - self.path.len();
        if left == 0 {
            return;
        }
        // The best it could still add: the largest unused gains, free travel.
        let bound: f32 = (0..self.order.len())
            .filter(|&i| !self.used[i])
            .take(left)
            .map(|i| self.order[i].gain.max(0.0))
            .sum();
        if value + bound <= self.best_value {
            return;
        }
        for i in 0..self.order.len() {
            if self.used[i] {
                continue;
            }
            let c = self.order[i];
            let next = value + c.gain - self.travel_cost * at.distance(c.pos);
            self.used[i] = true;
            self.path.push(i);
            self.extend(c.pos, next);
            self.path.pop();
            self.used[i] = false;
        }
    }
}

/// Gives admitted planners their (empty) route.
pub(super) fn give_routes(
    mut commands: Commands,
    admitted: Res<Admitted>,
    planners: Res<KindParams<PlannerParams>>,
) {
    for (kind, _) in planners.iter() {
        for &entity in admitted.of_kind(kind) {
            commands.entity(entity).insert(Route::default());
        }
    }
}

/// Each due planner: takes its plan if it is in; holds while it thinks;
/// otherwise follows its route, leaving sites no longer worth it, and asks
/// for a new plan when the route is done (or, without the think plugin,
/// plans on the spot).
pub(super) fn think(
    mut thinks: Thinks<RoutePlanner>,
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    (archetypes, planners): (Res<Archetypes>, Res<KindParams<PlannerParams>>),
    sites: Res<Sites>,
    map: Res<WorldMap>,
    cache: Res<SharedCache>,
    mut agents: Query<(
        Entity,
        &Agent,
        &Perception,
        &Body,
        &Cadence,
        &Position,
        &Memory,
        &mut Velocity,
        &mut Intent,
        &mut AgentRng,
        &mut Route,
    )>,
) {
    for (entity, _, route) in thinks.take_plans() {
        if let Ok(mut item) = agents.get_mut(entity) {
            *item.10 = route;
        }
    }
    let step = clock.step();
    let reach = map.reach();
    let (sites, map, cache) = (&*sites, &*map, &*cache);
    let thinks = &thinks;
    for (kind, params) in planners.iter() {
        let half_life = archetypes.get(kind).memory.half_life;
        let asynchronous = thinks.serves(kind);
        for_each_due(&mut agents, due.of_kind(kind), &mut tuner, &load, |item| {
            let (
                entity,
                agent,
                perception,
                body,
                cadence,
                pos,
                memory,
                velocity,
                intent,
                rng,
                route,
            ) = item;
            let (velocity, intent, rng) =
                (velocity.into_inner(), intent.into_inner(), rng.into_inner());
            if thinks.is_thinking(agent.id) {
                *intent = Intent::default(); // no action, no move
                return;
            }
            let now = mem_time(cadence.due);
            // What a site is worth to it: the fresher of its own belief
            // (weighed by its confidence) and the shared cache's value.
            let cache = cache.reader();
            let worth = |site: SiteId| site_worth(memory, &cache, site, (now, step), half_life);
            let worth_it = |site: SiteId| worth(site).is_some_and(|v| v >= params.min_estimate);
            let mut route = route;
            while let Some(next) = route.next()
                && !worth_it(next)
            {
                route.advance();
            }
            if route.next().is_none() {
                let board = sites.board(map.region_of(pos.0));
                let mut known: Vec<SiteId> = memory
                    .facts()
                    .map(|f| f.site)
                    .chain(perception.sites().iter().copied())
                    .chain(board.discovered().iter().copied())
                    .chain(board.best_sites())
                    .collect();
                known.sort_unstable();
                known.dedup();
                let mut candidates: Vec<Candidate> = known
                    .into_iter()
                    .filter_map(|site| {
                        let gain = worth(site)? - params.min_estimate;
                        let s = sites.get(site)?;
                        (gain >= 0.0).then_some(Candidate {
                            site,
                            pos: s.pos,
                            gain,
                        })
                    })
                    .collect();
                candidates.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.site.cmp(&b.site)));
                candidates.truncate(usize::from(params.candidates));
                if !candidates.is_empty() {
                    let problem = RouteProblem {
                        from: pos.0,
                        stops: params.stops,
                        travel_cost: params.travel_cost,
                        candidates,
                    };
                    if asynchronous {
                        thinks.request(entity, agent, cadence, problem);
                        *intent = Intent::default(); // no action, no move
                        return;
                    }
                    *route = plan_route(&problem).0;
                }
            }
            *intent = pursue(
                route.next().and_then(|site| sites.get(site)),
                pos.0,
                reach,
                body,
                velocity,
                rng,
                |_| ActionKind::Harvest {
                    amount: params.harvest,
                },
            );
        });
    }
}

/// After a harvest the planner knows what is left; it moves on when that is
/// below its minimum, when the site was found empty, or when the harvest
/// failed otherwise. A lost conflict makes the site less certain.
pub(super) fn learn(
    mut tuner: Local<BatchTuner>,
    load: Res<ThreadLoad>,
    informed: Res<InformedAgents>,
    archetypes: Res<Archetypes>,
    planners: Res<KindParams<PlannerParams>>,
    clock: Res<SimClock>,
    cache: Res<SharedCache>,
    mut agents: Query<(&Feedback, &Cadence, &mut Memory, &mut Route)>,
) {
    let step = clock.step();
    for (kind, params) in planners.iter() {
        let rules = &archetypes.get(kind).memory;
        for_each_due(
            &mut agents,
            informed.of_kind(kind),
            &mut tuner,
            &load,
            |item| {
                let (feedback, cadence, mut memory, mut route) = item;
                let Some((Target::Site(site), ActionKind::Harvest { .. }, result)) =
                    feedback.fresh(step)
                else {
                    return;
                };
                let now = mem_time(cadence.due);
                let leave = match result {
                    FeedbackResult::Applied(_) => {
                        let left = cache.peek(site).map_or(0.0, |f| f.value);
                        memory.learn(site, left, now, 0, rules);
                        left < params.min_estimate
                    }
                    FeedbackResult::Failed(FailReason::Depleted) => {
                        memory.contradict(site, Some(0.0), now, rules);
                        true
                    }
                    FeedbackResult::Rejected => {
                        memory.contradict(site, None, now, rules);
                        false
                    }
                    FeedbackResult::Failed(_) => true,
                };
                if leave && route.next() == Some(site) {
                    route.advance();
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(site: u32, x: f32, y: f32, gain: f32) -> Candidate {
        Candidate {
            site: SiteId(site),
            pos: Vec2::new(x, y),
            gain,
        }
    }

    /// Every ordered selection, by brute force: the search must match it.
    fn best_by_brute_force(p: &RouteProblem) -> f32 {
        fn go(p: &RouteProblem, at: Vec2, used: &mut Vec<bool>, depth: usize, value: f32) -> f32 {
            let mut best = if depth > 0 { value } else { f32::NEG_INFINITY };
            if depth == usize::from(p.stops) {
                return best;
            }
            for (i, c) in p.candidates.iter().enumerate() {
                if !used[i] {
                    used[i] = true;
                    let v = value + c.gain - p.travel_cost * at.distance(c.pos);
                    best = best.max(go(p, c.pos, used, depth + 1, v));
                    used[i] = false;
                }
            }
            best
        }
        go(p, p.from, &mut vec![false; p.candidates.len()], 0, 0.0)
    }

    fn value_of(p: &RouteProblem, route: &Route) -> f32 {
        let mut at = p.from;
        let mut value = 0.0;
        for site in route.stops() {
            let c = p.candidates.iter().find(|c| c.site == *site).unwrap();
            value += c.gain - p.travel_cost * at.distance(c.pos);
            at = c.pos;
        }
        value
    }

    #[test]
    fn the_search_finds_the_best_route_and_cuts_branches() {
        // Sites on a line and off it; the greedy choice (most valuable first)
        // is a long detour.
        let problem = RouteProblem {
            from: Vec2::ZERO,
            stops: 3,
            travel_cost: 0.1,
            candidates: vec![
                at(1, 10.0, 0.0, 5.0),
                at(2, 20.0, 0.0, 5.0),
                at(3, 30.0, 0.0, 5.0),
                at(4, -200.0, 0.0, 9.0),
                at(5, 0.0, 150.0, 8.0),
                at(6, 25.0, 5.0, 1.0),
                at(7, 100.0, 100.0, 3.0),
            ],
        };
        let (route, examined) = plan_route(&problem);
        assert_eq!(route.stops(), &[SiteId(1), SiteId(2), SiteId(3)]);
        let best = best_by_brute_force(&problem);
        assert_eq!(value_of(&problem, &route), best);
        // 7 + 7·6 + 7·6·5 partial routes without cuts, and the root.
        assert!(examined < 1 + 7 + 42 + 210, "no branch was cut: {examined}");
        assert_eq!(plan_route(&problem), (route, examined), "a pure function");
    }

    #[test]
    fn random_problems_match_brute_force() {
        let mut rng = AgentRng::new(5, AgentId(1));
        for _ in 0..200 {
            let n = 1 + (rng.unit() * 7.0) as usize;
            let problem = RouteProblem {
                from: Vec2::new(rng.unit() * 100.0, rng.unit() * 100.0),
                stops: 1 + (rng.unit() * 4.0) as u8,
                travel_cost: rng.unit() * 0.2,
                candidates: (0..n)
                    .map(|i| {
                        at(
                            i as u32,
                            rng.unit() * 100.0,
                            rng.unit() * 100.0,
                            rng.unit() * 10.0,
                        )
                    })
                    .collect(),
            };
            let (route, _) = plan_route(&problem);
            let best = best_by_brute_force(&problem);
            let found = value_of(&problem, &route);
            assert!(
                (found - best).abs() <= 1e-4 * best.abs().max(1.0),
                "{problem:?}: found {found}, best {best}"
            );
            assert!(route.stops().len() <= usize::from(problem.stops));
        }
    }

    #[test]
    fn a_route_goes_somewhere_even_at_a_loss() {
        let mut problem = RouteProblem {
            from: Vec2::ZERO,
            stops: 2,
            travel_cost: 1.0,
            candidates: vec![at(1, 100.0, 0.0, 5.0), at(2, 0.0, 50.0, 1.0)],
        };
        // Both trips lose value; the second loses less, and a second stop
        // would only lose more.
        assert_eq!(plan_route(&problem).0.stops(), &[SiteId(2)]);
        problem.candidates.clear();
        assert_eq!(plan_route(&problem).0, Route::default());
    }
}
