//! The built-in behaviours: a generic perceive and act, and the think and learn
//! systems of explorers, analyzers and controllers.
//!
//! They are ordinary systems added to the public phases, exactly as a game would
//! add its own. Each runs only on the agents due in the step, in parallel, and
//! draws random numbers only from the agent's own generator.

mod analyzer;
mod controller;
mod explorer;
mod plugin;

use plugin::pursue;
pub use plugin::{BehaviourPlugin, act, perceive, wander};
