//! What an agent decided: how to move, and what to do.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use crate::action::PlannedAction;
use crate::world::SiteId;

/// How an agent means to move during its act phase.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub enum Movement {
    /// Stay where it is.
    #[default]
    Stay,
    /// Keep going along its [`Velocity`](crate::agent::Velocity).
    Drift,
    /// Head for a point at full speed, stopping there.
    Toward(Vec2),
}

/// What the agent decided in its latest think phase.
#[derive(Component, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The site the agent is working towards, kept from tick to tick, or
    /// [`NO_GOAL`]: without an `Option`'s tag the component takes 32 bytes.
    goal: SiteId,
    pub movement: Movement,
    /// At most one action per tick.
    pub action: Option<PlannedAction>,
}

/// The id no site has (ids count up from zero), standing for no goal.
const NO_GOAL: SiteId = SiteId(u32::MAX);

impl Intent {
    /// An intent to work towards `goal` (if any), move and act.
    pub fn new(goal: Option<SiteId>, movement: Movement, action: Option<PlannedAction>) -> Self {
        Self {
            goal: goal.unwrap_or(NO_GOAL),
            movement,
            action,
        }
    }

    /// The site the agent is working towards.
    pub fn goal(&self) -> Option<SiteId> {
        (self.goal != NO_GOAL).then_some(self.goal)
    }

    /// Sets (or, with `None`, drops) the goal.
    pub fn set_goal(&mut self, goal: Option<SiteId>) {
        self.goal = goal.unwrap_or(NO_GOAL);
    }
}

impl Default for Intent {
    fn default() -> Self {
        Self::new(None, Movement::Stay, None)
    }
}

impl std::fmt::Debug for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intent")
            .field("goal", &self.goal())
            .field("movement", &self.movement)
            .field("action", &self.action)
            .finish()
    }
}
