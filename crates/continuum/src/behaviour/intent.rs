//! What an agent decided: how to move, and what to do.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use crate::action::PlannedAction;
use crate::action::packed::{NO_ACTION, PackedAction};
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

/// What the agent decided in its latest think phase: the site it works
/// towards, how it moves, and at most one action for this tick.
///
/// Kept packed in 32 bytes (40 as plain fields): read it with
/// [`goal`](Self::goal), [`movement`](Self::movement) and
/// [`action`](Self::action), change it with their setters. Checkpoints and
/// other serialised forms hold the plain fields.
#[derive(Component, Clone, Copy, Serialize, Deserialize)]
#[serde(from = "IntentImage", into = "IntentImage")]
pub struct Intent {
    /// The site the agent is working towards, kept from tick to tick, or
    /// [`NO_GOAL`]: without an `Option`'s tag the component takes 32 bytes.
    goal: SiteId,
    /// The point of a [`Movement::Toward`].
    toward: Vec2,
    action: PackedAction,
    action_tag: u8,
    movement_tag: u8,
}

/// The id no site has (ids count up from zero), standing for no goal.
const NO_GOAL: SiteId = SiteId(u32::MAX);

/// [`Intent`] with plain fields: its serialised form.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Intent")]
struct IntentImage {
    goal: Option<SiteId>,
    movement: Movement,
    action: Option<PlannedAction>,
}

impl From<Intent> for IntentImage {
    fn from(i: Intent) -> Self {
        Self {
            goal: i.goal(),
            movement: i.movement(),
            action: i.action(),
        }
    }
}

impl From<IntentImage> for Intent {
    fn from(i: IntentImage) -> Self {
        Intent::new(i.goal, i.movement, i.action)
    }
}

impl Intent {
    /// An intent to work towards `goal` (if any), move and act.
    pub fn new(goal: Option<SiteId>, movement: Movement, action: Option<PlannedAction>) -> Self {
        let mut intent = Self {
            goal: goal.unwrap_or(NO_GOAL),
            toward: Vec2::ZERO,
            action: PackedAction::default(),
            action_tag: NO_ACTION,
            movement_tag: 0,
        };
        intent.set_movement(movement);
        intent.set_action(action);
        intent
    }

    /// The site the agent is working towards.
    pub fn goal(&self) -> Option<SiteId> {
        (self.goal != NO_GOAL).then_some(self.goal)
    }

    /// Sets (or, with `None`, drops) the goal.
    pub fn set_goal(&mut self, goal: Option<SiteId>) {
        self.goal = goal.unwrap_or(NO_GOAL);
    }

    /// How the agent means to move during its act phase.
    pub fn movement(&self) -> Movement {
        match self.movement_tag {
            0 => Movement::Stay,
            1 => Movement::Drift,
            _ => Movement::Toward(self.toward),
        }
    }

    /// Sets how the agent moves.
    pub fn set_movement(&mut self, movement: Movement) {
        (self.movement_tag, self.toward) = match movement {
            Movement::Stay => (0, Vec2::ZERO),
            Movement::Drift => (1, Vec2::ZERO),
            Movement::Toward(point) => (2, point),
        };
    }

    /// The action planned for this tick, if any.
    pub fn action(&self) -> Option<PlannedAction> {
        self.action.unpack(self.action_tag)
    }

    /// Whether an action is planned (as `action().is_some()`, without
    /// unpacking it).
    pub fn has_action(&self) -> bool {
        self.action_tag != NO_ACTION
    }

    /// Sets (or, with `None`, drops) the action planned for this tick.
    pub fn set_action(&mut self, action: Option<PlannedAction>) {
        (self.action, self.action_tag) = PackedAction::pack(action);
    }
}

impl Default for Intent {
    fn default() -> Self {
        Self::new(None, Movement::Stay, None)
    }
}

/// Intents compare by what they say (floats as floats), not by their bits.
impl PartialEq for Intent {
    fn eq(&self, other: &Self) -> bool {
        (self.goal(), self.movement(), self.action())
            == (other.goal(), other.movement(), other.action())
    }
}

impl std::fmt::Debug for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intent")
            .field("goal", &self.goal())
            .field("movement", &self.movement())
            .field("action", &self.action())
            .finish()
    }
}
