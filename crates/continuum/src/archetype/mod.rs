//! Agent kinds and their parameters.
//!
//! Each kind is an [`Archetype`]: default tick rate and priority, speed,
//! perception radius, memory size and the [`Behaviour`] that drives it, with that
//! behaviour's parameters. The built-in kinds are read from
//! `assets/archetypes/*.ron` (embedded in the library at build time, so a game or
//! a test needs no files at run time); a scenario can add kinds or redefine them.
//!
//! [`ArchetypePlugin`] keeps the [`Archetypes`] resource and fills the tables
//! other plugins keep per kind from it: the memory rules
//! ([`MemoryKinds`]) and how far agents perceive ([`PerceptionReach`]).

use std::collections::HashMap;
use std::path::Path;

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use serde::{Deserialize, Serialize};

use crate::agent::{
    Admitted, AgentBlueprint, AgentKind, AgentsAdmitted, Body, IndexedKinds, PerceptionReach,
    Priority,
};
use crate::clock::configure_phases;
use crate::config::{ConfigError, MAX_NAME_CHARS, Validator, parse_ron};
use crate::memory::{MemoryKinds, MemoryRules};
use crate::phases::{ContinuumStartup, ContinuumSystems};

mod model;

pub use model::{BehaviourParams, BehaviourRegistry, KindParams, ModelParams, RegisterBehaviour};

/// What drives agents of a kind: a behaviour a plugin registered (see
/// [`RegisterBehaviour`]), by name with its parameters, or none.
///
/// ```ron
/// behaviour: Model(name: "explorer", params: (momentum: 0.85, jitter: 0.35, separation: 0.6)),
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Behaviour {
    /// No behaviour: a control group that does nothing, or a kind driven by a
    /// game's own systems.
    Idle,
    /// A behaviour a plugin registered: its name and its parameters, read by
    /// the plugin's own type ([`KindParams`]).
    Model { name: String, params: ModelParams },
}

impl Behaviour {
    /// The behaviour of `P`'s plugin with `params`.
    ///
    /// # Panics
    ///
    /// If `params` cannot be written as RON (a type whose `Serialize` fails).
    pub fn of<P: BehaviourParams + Serialize>(params: &P) -> Self {
        Behaviour::Model {
            name: P::NAME.to_owned(),
            params: ModelParams::of(params).expect("behaviour parameters are written as RON"),
        }
    }

    /// The registered behaviour's name, if it is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Behaviour::Model { name, .. } => Some(name),
            Behaviour::Idle => None,
        }
    }

    /// Whether this is `P`'s behaviour.
    pub fn is<P: BehaviourParams>(&self) -> bool {
        self.name() == Some(P::NAME)
    }

    /// The parameters, read as `P`, if this is `P`'s behaviour and they read.
    pub fn params<P: BehaviourParams>(&self) -> Option<P> {
        match self {
            Behaviour::Model { name, params } if name == P::NAME => params.read().ok(),
            _ => None,
        }
    }
}

/// One kind of agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archetype {
    /// The kind's name, as scenario groups refer to it.
    pub kind: String,
    /// Default ticks per virtual second.
    pub tick_hz: f32,
    /// Default priority.
    #[serde(default)]
    pub priority: Priority,
    /// World units per virtual second.
    pub speed: f32,
    /// World units.
    pub perception_radius: f32,
    /// Whether agents of this kind perceive other agents (sites are always
    /// perceived). Looking for neighbours costs time; kinds that ignore them
    /// should not pay for it.
    #[serde(default = "yes")]
    pub perceives_agents: bool,
    /// Whether the engine's spatial index of agents
    /// ([`AgentIndex`](crate::agent::AgentIndex)) keeps agents of this kind,
    /// where kinds that perceive agents, and game code, find them. A model
    /// that keeps its own index of its agents (flocking, Schelling,
    /// wolf-sheep) sets it to `false` and saves the index's upkeep: a third
    /// of a flocking step at a million birds.
    #[serde(default = "yes")]
    pub indexed: bool,
    /// Memory capacities and consolidation rules.
    #[serde(default)]
    pub memory: MemoryRules,
    /// Virtual seconds an asynchronous think of this kind takes: a result is
    /// due this long after its task starts (see [`crate::think`]). Only kinds
    /// with an asynchronous think (the planner's, or one a game registers)
    /// read it.
    #[serde(default)]
    pub think_latency: f32,
    pub behaviour: Behaviour,
}

/// Most kinds a simulation knows, the built-in ones included. An [`AgentKind`]
/// is a `u16` index (65 536 kinds at most); kinds are kept in tables per kind,
/// so a scenario is limited to far fewer.
pub const MAX_KINDS: usize = 4096;

/// Fastest default tick rate of a kind, in Hz: the fastest step rate a
/// scenario accepts (`clock.fixed_hz`), since an agent ticks at most once a
/// step.
pub const MAX_TICK_HZ: f32 = 10_000.0;

pub use crate::config::MAX_MAGNITUDE;

/// Checks that `x` is finite and in `[lo, hi]` (or `(lo, hi]` when
/// `positive`), recording `what` against field `name` otherwise.
pub(crate) fn check_range(
    v: &mut Validator,
    x: f32,
    name: &'static str,
    lo: f32,
    hi: f32,
    positive: bool,
    what: &str,
) {
    let ok = x.is_finite() && x <= hi && if positive { x > lo } else { x >= lo };
    v.check(ok, name, || {
        let open = if positive { "(" } else { "[" };
        format!("expected {what} in {open}{lo}, {hi}], got {x}")
    });
}

impl Archetype {
    /// Checks the values; errors carry the path of the field at fault.
    pub fn validate(&self, v: &mut Validator) {
        v.check(!self.kind.trim().is_empty(), "kind", || {
            "expected a non-empty name".into()
        });
        v.check(self.kind.chars().count() <= MAX_NAME_CHARS, "kind", || {
            format!("expected a name of at most {MAX_NAME_CHARS} characters")
        });
        check_range(
            v,
            self.tick_hz,
            "tick_hz",
            0.0,
            MAX_TICK_HZ,
            true,
            "a rate in Hz",
        );
        const M: f32 = MAX_MAGNITUDE;
        check_range(v, self.speed, "speed", 0.0, M, false, "a speed");
        check_range(
            v,
            self.perception_radius,
            "perception_radius",
            0.0,
            M,
            true,
            "a radius",
        );
        v.field("memory", |v| self.memory.validate(v));
        check_range(
            v,
            self.think_latency,
            "think_latency",
            0.0,
            M,
            false,
            "virtual seconds",
        );
        v.field("behaviour", |v| match &self.behaviour {
            Behaviour::Idle => {}
            Behaviour::Model { name, params } => {
                v.check(!name.trim().is_empty(), "name", || {
                    "expected the name of a registered behaviour".into()
                });
                if let Some(checks) = v.behaviours()
                    && !v.failed()
                {
                    checks.check_behaviour(name, params.as_ron(), v);
                }
            }
        });
    }

    /// Parses and validates one archetype from RON text.
    pub fn from_ron(source: &str, file: &Path) -> Result<Self, ConfigError> {
        let archetype: Archetype = parse_ron(source, file)?;
        let mut v = Validator::default();
        archetype.validate(&mut v);
        v.finish(source, file)?;
        Ok(archetype)
    }
}

fn yes() -> bool {
    true
}

/// The built-in archetype files, embedded at build time.
const BUILTIN: [(&str, &str); 4] = [
    (
        "assets/archetypes/explorer.ron",
        include_str!("../../assets/archetypes/explorer.ron"),
    ),
    (
        "assets/archetypes/analyzer.ron",
        include_str!("../../assets/archetypes/analyzer.ron"),
    ),
    (
        "assets/archetypes/controller.ron",
        include_str!("../../assets/archetypes/controller.ron"),
    ),
    (
        "assets/archetypes/planner.ron",
        include_str!("../../assets/archetypes/planner.ron"),
    ),
];

/// All known kinds; an [`AgentKind`] is an index into it.
#[derive(Resource, Clone, Debug, PartialEq)]
pub struct Archetypes {
    kinds: Vec<Archetype>,
    /// Index of each kind by name, so that defining or finding a kind does not
    /// scan the others.
    by_name: HashMap<String, AgentKind>,
}

impl Default for Archetypes {
    /// The built-in kinds: explorer, analyzer, controller and planner.
    fn default() -> Self {
        static BUILT_IN: std::sync::OnceLock<Archetypes> = std::sync::OnceLock::new();
        BUILT_IN
            .get_or_init(|| {
                let mut archetypes = Self {
                    kinds: Vec::new(),
                    by_name: HashMap::new(),
                };
                for (file, source) in BUILTIN {
                    let archetype = Archetype::from_ron(source, Path::new(file))
                        .unwrap_or_else(|e| panic!("built-in archetype is invalid: {e}"));
                    archetypes.define(archetype);
                }
                archetypes
            })
            .clone()
    }
}

impl Archetypes {
    /// Adds a kind, or redefines the kind of the same name. Returns its index.
    ///
    /// # Panics
    ///
    /// If that would make more than 65 536 kinds (the range of [`AgentKind`];
    /// a scenario is held to [`MAX_KINDS`]).
    pub fn define(&mut self, archetype: Archetype) -> AgentKind {
        if let Some(kind) = self.kind(&archetype.kind) {
            self.kinds[kind.index()] = archetype;
            kind
        } else {
            let kind =
                AgentKind(u16::try_from(self.kinds.len()).expect("at most 65 536 kinds of agents"));
            self.by_name.insert(archetype.kind.clone(), kind);
            self.kinds.push(archetype);
            kind
        }
    }

    /// The kind called `name`.
    pub fn kind(&self, name: &str) -> Option<AgentKind> {
        self.by_name.get(name).copied()
    }

    /// The archetype of `kind`.
    pub fn get(&self, kind: AgentKind) -> &Archetype {
        &self.kinds[kind.index()]
    }

    /// The archetype of `kind`, if it is defined.
    pub fn try_get(&self, kind: AgentKind) -> Option<&Archetype> {
        self.kinds.get(kind.index())
    }

    /// The name of `kind`.
    pub fn name(&self, kind: AgentKind) -> &str {
        &self.kinds[kind.index()].kind
    }

    /// All kinds in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Archetype> {
        self.kinds.iter()
    }

    /// All kinds with their indices, in index order.
    pub fn kinds(&self) -> impl Iterator<Item = (AgentKind, &Archetype)> {
        self.kinds
            .iter()
            .enumerate()
            .map(|(i, a)| (AgentKind(i as u16), a))
    }

    /// Number of kinds.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether no kind is defined.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// A blueprint for an agent of `kind` with the archetype's defaults (its
    /// memory's capacities come from the kind's rules when it is admitted).
    pub fn blueprint(&self, kind: AgentKind) -> AgentBlueprint {
        let a = self.get(kind);
        let mut blueprint = AgentBlueprint::new(kind);
        blueprint.priority = a.priority;
        blueprint.tick_hz = a.tick_hz;
        blueprint.body = Body {
            speed: a.speed,
            perception_radius: a.perception_radius,
            senses_agents: a.perceives_agents,
        };
        blueprint
    }

    /// The farthest any kind perceives, if there is a kind.
    pub fn largest_perception_radius(&self) -> Option<f32> {
        self.kinds
            .iter()
            .map(|a| a.perception_radius)
            .max_by(f32::total_cmp)
    }
}

/// The agent kinds: keeps [`Archetypes`] (the built-in kinds unless a
/// scenario or a game inserts others) and, at startup and whenever they
/// change, fills the memory plugin's rules per kind ([`MemoryKinds`]) and the
/// spatial indices' reach ([`PerceptionReach`]) from them.
pub struct ArchetypePlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ArchetypePlugin {
    /// Kinds of a simulation stepped in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for ArchetypePlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.init_resource::<Archetypes>()
            .init_resource::<MemoryKinds>()
            .init_resource::<PerceptionReach>()
            .init_resource::<IndexedKinds>()
            .add_systems(Startup, publish_kinds.in_set(ContinuumStartup::Kinds))
            .add_systems(
                self.schedule,
                publish_kinds
                    .run_if(resource_changed::<Archetypes>)
                    .in_set(ContinuumSystems::First),
            )
            .add_systems(AgentsAdmitted, warn_of_unknown_kinds);
    }
}

/// Fills the other plugins' per-kind tables from the archetypes. (The reach
/// sizes the spatial indices when the world is generated; a later change
/// leaves them as they are.)
fn publish_kinds(
    archetypes: Res<Archetypes>,
    mut memory: ResMut<MemoryKinds>,
    mut reach: ResMut<PerceptionReach>,
    mut indexed: ResMut<IndexedKinds>,
) {
    indexed.0 = archetypes.iter().map(|a| a.indexed).collect();
    memory.0 = archetypes.iter().map(|a| a.memory.clone()).collect();
    *reach = archetypes
        .largest_perception_radius()
        .map_or_else(PerceptionReach::default, PerceptionReach);
}

/// Agents requested with a kind that no archetype defines, or whose
/// behaviour no plugin of the app registers (its plugin was left out), run no
/// behaviour: said once per kind.
fn warn_of_unknown_kinds(
    admitted: Res<Admitted>,
    archetypes: Res<Archetypes>,
    registry: Option<Res<BehaviourRegistry>>,
    mut warned: Local<Vec<AgentKind>>,
) {
    for (kind, count) in admitted.counts_by_kind() {
        if count == 0 || warned.contains(&kind) {
            continue;
        }
        let Some(archetype) = archetypes.try_get(kind) else {
            warned.push(kind);
            tracing::warn!(
                kind = kind.0,
                count,
                "agents admitted with a kind no archetype defines: they run no behaviour"
            );
            continue;
        };
        if let Some(name) = archetype.behaviour.name()
            && registry.as_ref().is_none_or(|r| !r.contains(name))
        {
            warned.push(kind);
            tracing::warn!(
                kind = %archetype.kind,
                behaviour = name,
                "no plugin of the app registers the kind's behaviour: its agents decide nothing"
            );
        }
    }
}
