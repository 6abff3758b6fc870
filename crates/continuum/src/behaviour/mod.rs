//! The generic part of every agent's tick: perceive (sites and neighbours in
//! range, into working memory) and act (move by the [`Intent`], emit its
//! action). What an agent decides in between is its kind's behaviour: the
//! sites model's in [`crate::sites`], a model's or a game's own
//! (see [`RegisterBehaviour`](crate::archetype::RegisterBehaviour)).
//!
//! They are ordinary systems added to the public phases, exactly as a game would
//! add its own. Each runs only on the agents due in the step, in parallel, and
//! draws random numbers only from the agent's own generator.

mod intent;
mod plugin;

pub use intent::{Intent, Movement};
pub use plugin::{BehaviourPlugin, act, perceive, wander};
