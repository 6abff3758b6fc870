//! Agents: the components every agent carries, its cadence, and the schedule that
//! finds the agents due in a step.
//!
//! An agent is an entity with an [`Agent`] (stable id, kind and priority), its
//! [`Cadence`], its own seeded [`AgentRng`], and its place in the world
//! ([`Position`], [`Velocity`], [`Body`]). Other plugins add the state of its
//! cycle as required components (perception and memory, intent, feedback,
//! budget) and give them their starting values in the [`AgentsAdmitted`]
//! schedule. Agents are created through the [`AgentPool`]; never spawn them by
//! hand, or the schedule will not know them.
//!
//! Each agent runs perceive → think → act → learn at its own [`TickRate`]. The
//! [`AgentSchedule`] is a timing wheel keyed by step index: finding the agents due
//! in a step costs in proportion to how many are due, not to how many exist.

mod components;
mod index;
mod plugin;
mod pool;
mod schedule;

pub use components::*;
pub use index::{AgentIndex, IndexedAgent};
pub use plugin::{Admitted, AgentPlugin, AgentSystems, AgentsAdmitted, ScheduleStats};
pub(crate) use pool::PoolImage;
pub use pool::{AgentBlueprint, AgentPool};
pub(crate) use schedule::ScheduleImage;
pub use schedule::{AgentLists, AgentSchedule, DueAgents};
