//! The built-in behaviours: a generic perceive and act, one think system that
//! runs each agent's kind, the planners' think (an asynchronous one, see
//! [`crate::think`]), and the learn systems of explorers, analyzers,
//! controllers and planners.
//!
//! They are ordinary systems added to the public phases, exactly as a game would
//! add its own. Each runs only on the agents due in the step, in parallel, and
//! draws random numbers only from the agent's own generator.

mod analyzer;
mod controller;
mod explorer;
mod intent;
mod planner;
mod plugin;

pub use intent::{Intent, Movement};
pub use planner::{Candidate, Route, RoutePlanner, RouteProblem, plan_route};
pub use plugin::{BehaviourPlugin, act, perceive, think, wander};
use plugin::{ThinkContext, Thinker, pursue};
