//! The parameters of the sites model's behaviours, as kinds give them:
//! `behaviour: Model(name: "explorer", params: (...))`.

use serde::{Deserialize, Serialize};

use crate::archetype::{BehaviourParams, MAX_MAGNITUDE as M, check_range};
use crate::config::Validator;

/// Explorer parameters: a random walk with momentum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplorerParams {
    /// Share of the previous heading kept each tick, in `[0, 1]`.
    pub momentum: f32,
    /// Strength of the random turn each tick (relative to the heading).
    pub jitter: f32,
    /// Strength of the push away from the nearest agent in view.
    pub separation: f32,
    /// Strength of the push away from the sites in view it already remembers.
    #[serde(default)]
    pub avoid_known: f32,
    /// Strength of the push away from the ground explorers went over lately:
    /// the neighbouring cells of the shared cache's ground grid
    /// ([`SharedCache::ground`](crate::memory::SharedCache::ground)) marked
    /// less than [`explored_for`](Self::explored_for) ago, the fresher the
    /// stronger. Explorers mark the cells they go over.
    #[serde(default)]
    pub avoid_explored: f32,
    /// Virtual seconds a cell counts as explored after an explorer went over
    /// it (an explorer marks its cell again once its mark is half that old).
    #[serde(default = "default_explored_for")]
    pub explored_for: f32,
}

fn default_explored_for() -> f32 {
    30.0
}

/// Analyzer parameters: visit published sites and assess them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerParams {
    /// Relative measurement error: estimates are off by up to ± this fraction.
    pub noise: f32,
    /// An estimate older than this (virtual seconds) is worth assessing again.
    pub stale_after: f32,
}

/// Controller parameters: go to the best assessed site known and harvest it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerParams {
    /// Value taken per harvest action.
    pub harvest: f32,
    /// Sites estimated below this are not worth the trip.
    pub min_estimate: f32,
    /// Value a world unit of travel is worth giving up when choosing a site.
    pub travel_cost: f32,
}

/// Planner parameters: plan a route over several sites by a search over what
/// it knows, run as an asynchronous think (it takes the kind's
/// [`think_latency`](crate::archetype::Archetype::think_latency)), then harvest along it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerParams {
    /// Most sites on a route, 1 to [`MAX_ROUTE_STOPS`].
    pub stops: u8,
    /// Most sites a plan chooses among (the most valuable it knows of), 1 to
    /// [`MAX_CANDIDATES`]: the search looks at up to `candidates!/(candidates
    /// - stops)!` routes.
    pub candidates: u8,
    /// Value taken per harvest action.
    pub harvest: f32,
    /// A site worth less than this is not planned for, and left.
    pub min_estimate: f32,
    /// Value a world unit of travel is worth giving up.
    pub travel_cost: f32,
}

/// Most sites on a planner's route.
pub const MAX_ROUTE_STOPS: usize = 6;
/// Most sites a planner's search chooses among.
pub const MAX_CANDIDATES: usize = 12;

impl BehaviourParams for ExplorerParams {
    const NAME: &'static str = "explorer";

    fn validate(&self, v: &mut Validator) {
        check_range(v, self.momentum, "momentum", 0.0, 1.0, false, "a value");
        check_range(v, self.jitter, "jitter", 0.0, M, false, "a strength");
        check_range(
            v,
            self.separation,
            "separation",
            0.0,
            M,
            false,
            "a strength",
        );
        check_range(
            v,
            self.avoid_known,
            "avoid_known",
            0.0,
            M,
            false,
            "a strength",
        );
        let avoid = self.avoid_explored;
        check_range(v, avoid, "avoid_explored", 0.0, M, false, "a strength");
        check_range(
            v,
            self.explored_for,
            "explored_for",
            0.0,
            M,
            true,
            "seconds",
        );
    }
}

impl BehaviourParams for AnalyzerParams {
    const NAME: &'static str = "analyzer";

    fn validate(&self, v: &mut Validator) {
        v.check(
            self.noise.is_finite() && (0.0..1.0).contains(&self.noise),
            "noise",
            || format!("expected a fraction in [0, 1), got {}", self.noise),
        );
        check_range(v, self.stale_after, "stale_after", 0.0, M, true, "seconds");
    }
}

/// The harvesting parameters controllers and planners share.
fn check_harvesting(v: &mut Validator, harvest: f32, min_estimate: f32, travel_cost: f32) {
    check_range(v, harvest, "harvest", 0.0, M, true, "an amount");
    check_range(v, min_estimate, "min_estimate", 0.0, M, false, "a value");
    check_range(v, travel_cost, "travel_cost", 0.0, M, false, "a value");
}

impl BehaviourParams for ControllerParams {
    const NAME: &'static str = "controller";

    fn validate(&self, v: &mut Validator) {
        check_harvesting(v, self.harvest, self.min_estimate, self.travel_cost);
    }
}

impl BehaviourParams for PlannerParams {
    const NAME: &'static str = "planner";

    fn validate(&self, v: &mut Validator) {
        v.check(
            (1..=MAX_ROUTE_STOPS).contains(&usize::from(self.stops)),
            "stops",
            || format!("expected 1 to {MAX_ROUTE_STOPS} sites, got {}", self.stops),
        );
        v.check(
            (1..=MAX_CANDIDATES).contains(&usize::from(self.candidates)),
            "candidates",
            || {
                format!(
                    "expected 1 to {MAX_CANDIDATES} sites, got {}",
                    self.candidates
                )
            },
        );
        check_harvesting(v, self.harvest, self.min_estimate, self.travel_cost);
    }
}
