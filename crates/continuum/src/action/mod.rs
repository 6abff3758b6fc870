//! Actions, conflicts and outcomes.
//!
//! In the act phase every due agent may emit one [`Action`] message: who acts, at
//! what priority, at which exact virtual time, on what target, and what it wants.
//! In the resolve phase the [`ConflictResolver`] groups the step's actions by
//! target, region by region in parallel. In a group of several contenders one
//! wins, chosen by the configured [`ConflictStrategy`]; the others are rejected.
//! Winners are applied to the world. Every action gets exactly one [`Outcome`]
//! message, and the learn phase delivers it to the agent's
//! [`Feedback`].
//!
//! Before resolution the actions are put in a total order (target, agent id,
//! timestamp, kind), so nothing depends on which thread emitted what first.

pub(crate) mod packed;
mod plugin;

pub use plugin::{
    ActionPlugin, ApplyContext, InformedAgents, Placement, RegionalTargets, RegionalTargetsAppExt,
    apply_model,
};

use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId, Priority};
use crate::clock::SimTime;
use crate::world::SiteId;

/// What an action is aimed at: the key agents contend for. Actions on the
/// same target in the same step conflict: at most one of them is applied.
///
/// Targets are ordered (variant first, then fields), and the resolver groups
/// and sorts by that order, so any of them works with every strategy and
/// custom rule. The resolver picks one winner per target. A target a plugin
/// keeps in regions of its own ([`RegionalTargets`]: the sites model's sites)
/// is applied by the resolver, region by region in parallel; any other
/// belongs to the model that aims at it: the resolver reports the winner
/// ([`ActionResult::Applied`] for an [`ActionKind::Custom`] action), and the
/// model's own system, after [`ContinuumSystems::Resolve`](crate::ContinuumSystems::Resolve),
/// reads the [`Outcome`] messages and applies the winners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// A site of the world (the sites model).
    Site(SiteId),
    /// A cell of a model's grid: two agents moving into one cell conflict.
    Cell { x: i32, y: i32 },
    /// Another agent (made by [`Target::agent`], read by
    /// [`Target::as_agent`]): two wolves after one sheep conflict.
    Agent(PackedId),
    /// A pair of the model's own ids: `(what, which)` for a door, a trade,
    /// an edge of a graph.
    Pair(u32, u32),
}

impl Target {
    /// The agent `id` as a target.
    pub fn agent(id: AgentId) -> Self {
        Target::Agent(PackedId::from(id))
    }

    /// The agent this target is, if it is one.
    pub fn as_agent(&self) -> Option<AgentId> {
        match *self {
            Target::Agent(id) => Some(id.into()),
            _ => None,
        }
    }

    /// A well-mixed word for the target, the same on every run (the
    /// [`Random`](ConflictStrategy::Random) strategy's draw and the spreading
    /// of model targets over the resolver's buckets use it).
    pub fn key(&self) -> u64 {
        use crate::hash::mix;
        match *self {
            // Unmixed, as it always was: a site's draw keeps its value.
            Target::Site(site) => u64::from(site.0),
            Target::Cell { x, y } => mix(mix(1, x as u32 as u64), y as u32 as u64),
            Target::Agent(agent) => mix(2, AgentId::from(agent).0),
            Target::Pair(a, b) => mix(mix(3, u64::from(a)), u64::from(b)),
        }
    }
}

/// An [`AgentId`] kept as two 32-bit halves (high first, so it orders as the
/// id does): a [`Target`] then needs 4-byte alignment, not 8, which saves 8
/// bytes in every agent's `Intent` and `Feedback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackedId([u32; 2]);

impl From<AgentId> for PackedId {
    fn from(id: AgentId) -> Self {
        Self([(id.0 >> 32) as u32, id.0 as u32])
    }
}

impl From<PackedId> for AgentId {
    fn from(p: PackedId) -> Self {
        AgentId((u64::from(p.0[0]) << 32) | u64::from(p.0[1]))
    }
}

/// What an agent wants to do to its target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ActionKind {
    /// Publish a site the agent discovered (explorers).
    Report,
    /// Measure the site's value and publish the estimate (analyzers). `noise` is
    /// the agent's relative measurement error, drawn from its own generator.
    Assess { noise: f32 },
    /// Take up to `amount` value from the site (controllers).
    Harvest { amount: f32 },
    /// A model's or a game's own action: `code` says which of its actions
    /// it is, `value` carries its payload. The resolver settles its conflicts
    /// and reports `Applied { value }` to the winner without touching the
    /// world; the model applies it.
    Custom { code: u32, value: f32 },
}

impl ActionKind {
    /// A small number that orders kinds in the total order of actions.
    pub fn code(&self) -> u64 {
        match self {
            ActionKind::Report => 0,
            ActionKind::Assess { .. } => 1,
            ActionKind::Harvest { .. } => 2,
            ActionKind::Custom { code, .. } => 3 + u64::from(*code),
        }
    }
}

/// An agent's request to change the world, emitted in the act phase.
#[derive(Message, Clone, Copy, Debug, PartialEq)]
pub struct Action {
    pub agent: AgentId,
    pub entity: Entity,
    pub priority: Priority,
    /// The agent's exact due time (virtual nanoseconds).
    pub timestamp: SimTime,
    pub target: Target,
    pub kind: ActionKind,
    /// Where the agent stood when it acted.
    pub origin: Vec2,
}

impl Action {
    /// The action of `agent` (the entity `entity`), stamped with the virtual
    /// time `timestamp` (its tick's due time, `Cadence::due`), on `target`.
    /// It is taken from the origin of the world until [`from`](Self::from)
    /// says where the agent stands, which matters for actions that need reach.
    pub fn new(
        entity: Entity,
        agent: &Agent,
        timestamp: SimTime,
        target: Target,
        kind: ActionKind,
    ) -> Self {
        Self {
            agent: agent.id,
            entity,
            priority: agent.priority,
            timestamp,
            target,
            kind,
            origin: Vec2::ZERO,
        }
    }

    /// The same action, taken from `origin`.
    pub fn from(mut self, origin: Vec2) -> Self {
        self.origin = origin;
        self
    }
}

/// An action planned by the think phase, for the act phase to emit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    pub target: Target,
    pub kind: ActionKind,
}

/// Why an action that won (or had no contender) could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailReason {
    /// The agent was farther from the target than the world's reach.
    OutOfReach,
    /// Nothing was left to harvest.
    Depleted,
    /// The target does not exist.
    UnknownTarget,
}

/// What happened to an action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActionResult {
    /// Applied to the world. `value` depends on the kind: 1 for a new discovery
    /// (0 if it was already known), the published estimate for an assessment, the
    /// value taken for a harvest.
    Applied { value: f32 },
    /// Lost a conflict to `winner`.
    Rejected { winner: AgentId },
    /// Won (or had no contender) but could not be applied.
    Failed { reason: FailReason },
}

/// The outcome of one action, written by the resolver.
#[derive(Message, Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub agent: AgentId,
    pub entity: Entity,
    pub timestamp: SimTime,
    pub target: Target,
    pub kind: ActionKind,
    pub result: ActionResult,
}

/// The compact form of a result kept in an agent's `Feedback`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FeedbackResult {
    Applied(f32),
    Rejected,
    Failed(FailReason),
}

impl From<ActionResult> for FeedbackResult {
    fn from(r: ActionResult) -> Self {
        match r {
            ActionResult::Applied { value } => FeedbackResult::Applied(value),
            ActionResult::Rejected { .. } => FeedbackResult::Rejected,
            ActionResult::Failed { reason } => FeedbackResult::Failed(reason),
        }
    }
}

/// What came of the agent's actions: the outcome of its latest one, delivered
/// in the learn phase of the step it was resolved in, and running totals.
///
/// The outcome is kept packed (40 bytes in all, against 48 for a plain
/// `Option<(Target, ActionKind, FeedbackResult)>`); [`outcome`](Self::outcome)
/// and [`fresh`](Self::fresh) give it back. Checkpoints and other serialised
/// forms hold the plain fields.
#[derive(Component, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(from = "FeedbackImage", into = "FeedbackImage")]
pub struct Feedback {
    /// The step the outcome belongs to, modulo 2^32 (see [`fresh`](Self::fresh)).
    pub step: u32,
    action: packed::PackedAction,
    /// The applied value of the result (see [`packed::pack_result`]).
    result: u32,
    /// [`packed::NO_ACTION`] while there is no outcome.
    action_tag: u8,
    result_tag: u8,
    pub tally: Tally,
}

/// [`Feedback`] with its outcome unpacked: its serialised form.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Feedback")]
struct FeedbackImage {
    step: u32,
    outcome: Option<(Target, ActionKind, FeedbackResult)>,
    tally: Tally,
}

impl From<Feedback> for FeedbackImage {
    fn from(f: Feedback) -> Self {
        Self {
            step: f.step,
            outcome: f.outcome(),
            tally: f.tally,
        }
    }
}

impl From<FeedbackImage> for Feedback {
    fn from(image: FeedbackImage) -> Self {
        let mut feedback = Feedback {
            step: image.step,
            tally: image.tally,
            ..Feedback::default()
        };
        feedback.set_outcome(image.outcome);
        feedback
    }
}

impl PartialEq for Feedback {
    fn eq(&self, other: &Self) -> bool {
        (self.step, self.outcome(), self.tally) == (other.step, other.outcome(), other.tally)
    }
}

impl std::fmt::Debug for Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feedback")
            .field("step", &self.step)
            .field("outcome", &self.outcome())
            .field("tally", &self.tally)
            .finish()
    }
}

impl Feedback {
    /// The outcome of the latest action, whatever step it came in.
    pub fn outcome(&self) -> Option<(Target, ActionKind, FeedbackResult)> {
        let PlannedAction { target, kind } = self.action.unpack(self.action_tag)?;
        Some((
            target,
            kind,
            packed::unpack_result(self.result, self.result_tag),
        ))
    }

    /// Replaces the outcome (the step and the totals stay).
    pub fn set_outcome(&mut self, outcome: Option<(Target, ActionKind, FeedbackResult)>) {
        let (action, result) = match outcome {
            Some((target, kind, result)) => (Some(PlannedAction { target, kind }), Some(result)),
            None => (None, None),
        };
        (self.action, self.action_tag) = packed::PackedAction::pack(action);
        (self.result, self.result_tag) = result.map_or((0, 0), packed::pack_result);
    }

    /// The outcome, if it was produced in `step`. Steps are told apart modulo
    /// 2^32: an agent that acted once and then not for 2^32 steps (about 500
    /// days at 100 Hz) would see its old outcome as fresh.
    pub fn fresh(&self, step: u64) -> Option<(Target, ActionKind, FeedbackResult)> {
        if self.step == step as u32 {
            self.outcome()
        } else {
            None
        }
    }

    /// Whether it holds an outcome produced in `step` (as [`fresh`](Self::fresh),
    /// without unpacking it).
    pub(crate) fn is_fresh(&self, step: u64) -> bool {
        self.step == step as u32 && self.action_tag != packed::NO_ACTION
    }

    /// Keeps the outcome of this step's action in `step`, and counts it.
    pub(crate) fn deliver(
        &mut self,
        step: u64,
        target: Target,
        kind: ActionKind,
        result: ActionResult,
    ) {
        self.step = step as u32;
        self.set_outcome(Some((target, kind, result.into())));
        match result {
            ActionResult::Applied { value } => {
                self.tally.applied += 1;
                if matches!(kind, ActionKind::Harvest { .. }) {
                    self.tally.harvested += value;
                }
            }
            ActionResult::Rejected { .. } => self.tally.rejected += 1,
            ActionResult::Failed { .. } => {}
        }
    }
}

/// Running totals of what the agent achieved, kept in its [`Feedback`].
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Site value harvested in total.
    pub harvested: f32,
    /// Actions applied to the world.
    pub applied: u32,
    /// Actions that lost a conflict.
    pub rejected: u32,
}

/// What a conflict rule may look at besides the contenders.
#[derive(Clone, Copy, Debug)]
pub struct ConflictContext {
    pub seed: u64,
    pub step: u64,
}

/// A game's own way of picking a winner.
pub trait ConflictRule: Send + Sync + 'static {
    /// `contenders` are two or more actions on the same target in one step, in
    /// the total order (agent id, then timestamp, then kind). Returns the index
    /// of the winner. Must depend only on its inputs.
    fn winner(&self, contenders: &[Action], ctx: &ConflictContext) -> usize;
}

/// The names of the built-in strategies, as written in scenario files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictStrategyKind {
    /// Highest priority, then earliest timestamp, then lowest agent id.
    #[default]
    PriorityThenTimestamp,
    /// Earliest timestamp, then lowest agent id; priority is ignored.
    Timestamp,
    /// A uniformly random contender, drawn from the seed, the step and the target.
    Random,
}

/// How a winner is chosen among actions on the same target.
#[derive(Clone, Default)]
pub enum ConflictStrategy {
    #[default]
    PriorityThenTimestamp,
    Timestamp,
    Random,
    /// A game's own rule.
    Custom(Arc<dyn ConflictRule>),
}

impl std::fmt::Debug for ConflictStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ConflictStrategyKind> for ConflictStrategy {
    fn from(kind: ConflictStrategyKind) -> Self {
        match kind {
            ConflictStrategyKind::PriorityThenTimestamp => ConflictStrategy::PriorityThenTimestamp,
            ConflictStrategyKind::Timestamp => ConflictStrategy::Timestamp,
            ConflictStrategyKind::Random => ConflictStrategy::Random,
        }
    }
}

impl ConflictStrategy {
    /// The strategy's name.
    pub fn name(&self) -> &'static str {
        match self {
            ConflictStrategy::PriorityThenTimestamp => "PriorityThenTimestamp",
            ConflictStrategy::Timestamp => "Timestamp",
            ConflictStrategy::Random => "Random",
            ConflictStrategy::Custom(_) => "Custom",
        }
    }

    /// The index of the winner among `contenders` (in the total order).
    pub fn winner(&self, contenders: &[Action], ctx: &ConflictContext) -> usize {
        let index_of_min = |key: &dyn Fn(&Action) -> (u8, SimTime, AgentId)| {
            (0..contenders.len())
                .min_by_key(|&i| key(&contenders[i]))
                .unwrap_or(0)
        };
        match self {
            ConflictStrategy::PriorityThenTimestamp => {
                index_of_min(&|a| (u8::MAX - a.priority as u8, a.timestamp, a.agent))
            }
            ConflictStrategy::Timestamp => index_of_min(&|a| (0, a.timestamp, a.agent)),
            ConflictStrategy::Random => {
                let target = contenders[0].target.key();
                let h = crate::hash::mix(crate::hash::mix(ctx.seed, ctx.step), target);
                (h % contenders.len() as u64) as usize
            }
            ConflictStrategy::Custom(rule) => {
                rule.winner(contenders, ctx).min(contenders.len() - 1)
            }
        }
    }
}

/// The conflict resolver's configuration.
#[derive(Resource, Clone, Debug)]
pub struct ConflictResolver {
    pub strategy: ConflictStrategy,
    /// Below this many actions in a step, regions are resolved on one thread
    /// (spreading tiny work over threads costs more than it saves).
    pub parallel_threshold: usize,
}

impl Default for ConflictResolver {
    fn default() -> Self {
        Self {
            strategy: ConflictStrategy::default(),
            parallel_threshold: 512,
        }
    }
}

/// Counters of the resolver, cumulative since the start of the run.
#[derive(Resource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverDiagnostics {
    /// Actions emitted.
    pub submitted: u64,
    /// Actions applied to the world.
    pub applied: u64,
    /// Actions that lost a conflict.
    pub rejected: u64,
    /// Actions that won but could not be applied.
    pub failed: u64,
    /// Targets that had more than one contender in a step.
    pub conflicts: u64,
    /// Wall-clock time of the latest resolve phase, in nanoseconds.
    pub last_resolve_ns: u64,
}
