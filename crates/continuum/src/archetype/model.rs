//! Behaviours that plugins bring: a kind's behaviour named by a plugin, with
//! parameters of the plugin's own type.
//!
//! A model (flocking, predation, a game's guards) registers its behaviour with
//! [`RegisterBehaviour::register_behaviour`]. A kind then names it in its
//! archetype, in a scenario file or in code:
//!
//! ```ron
//! behaviour: Model(name: "flocking", params: (cohesion: 0.8, avoidance: 1.0)),
//! ```
//!
//! The parameters are read by the plugin's type (any `serde` type), checked by
//! its [`BehaviourParams::validate`], and reported like any other field on error
//! (file, line, column, `archetypes[0].behaviour.params.cohesion`). At startup,
//! and whenever the kinds change, the typed parameters of every kind with the
//! behaviour are published in [`KindParams`]: the model's systems read them
//! there and run on those kinds' agents (see
//! [`DueAgents::of_kind`](crate::agent::DueAgents)).

use std::collections::BTreeMap;

use bevy_app::prelude::*;
use bevy_ecs::bundle::NoBundleEffect;
use bevy_ecs::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Archetypes, Behaviour};
use crate::agent::{AgentKind, KindSpawners, Spawner, spawner_with};
use crate::config::{
    BehaviourChecks, LocatedError, MAX_QUOTED_CHARS, Validator, clip, parse_located,
};
use crate::phases::ContinuumStartup;

/// The parameters of a behaviour a plugin brings.
pub trait BehaviourParams: DeserializeOwned + Clone + Send + Sync + 'static {
    /// The name kinds give in `Model(name: ...)`.
    const NAME: &'static str;

    /// Checks the values once they are read; record each problem with
    /// [`Validator::check`] against the field's name. Ranges belong here (the
    /// type already refuses what it cannot hold).
    fn validate(&self, _v: &mut Validator) {}
}

/// A registered behaviour's parameters as written (RON text), read by the
/// plugin's type when the kind is checked and when the kinds are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelParams(String);

impl ModelParams {
    /// Parameters from RON text.
    pub fn new(ron: impl Into<String>) -> Self {
        Self(ron.into())
    }

    /// The parameters of `params`, written as RON.
    ///
    /// # Errors
    ///
    /// If `params` cannot be written as RON.
    pub fn of<P: Serialize>(params: &P) -> Result<Self, ron::Error> {
        ron::to_string(params).map(Self)
    }

    /// The RON text.
    pub fn as_ron(&self) -> &str {
        &self.0
    }

    /// The parameters read as `P`, with the place of a fault in the text.
    ///
    /// # Errors
    ///
    /// If the text does not hold a `P`.
    pub fn read<P: DeserializeOwned>(&self) -> Result<P, LocatedError> {
        parse_located(&self.0)
    }
}

impl Serialize for ModelParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match ron::value::RawValue::from_ron(&self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for ModelParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<ron::value::RawValue>::deserialize(d)?;
        Ok(Self(raw.get_ron().trim().to_owned()))
    }
}

/// Reads and checks one behaviour's parameters (RON text).
type CheckFn = fn(&str, &mut Validator);

/// The behaviours plugins registered, by name: what a scenario's kinds may
/// name in `Model(name: ...)`. A resource of the `App`; a tool that checks
/// scenario files before it builds one (the `continuum` command) keeps a
/// copy to give [`Validator::with_behaviours`].
#[derive(Resource, Clone, Debug, Default)]
pub struct BehaviourRegistry {
    checks: BTreeMap<&'static str, CheckFn>,
}

impl BehaviourRegistry {
    /// Registers `P`'s behaviour (again: no change).
    pub fn register<P: BehaviourParams>(&mut self) -> &mut Self {
        self.checks.insert(P::NAME, check::<P>);
        self
    }

    /// Adds the behaviours `other` registered.
    pub fn merge(&mut self, other: &BehaviourRegistry) -> &mut Self {
        self.checks
            .extend(other.checks.iter().map(|(&k, &v)| (k, v)));
        self
    }

    /// Whether a behaviour called `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.checks.contains_key(name)
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.checks.keys().copied()
    }

    /// Checks the behaviour `name` with `params`, recording problems in `v`
    /// (whose current path is the behaviour's).
    pub fn check(&self, name: &str, params: &ModelParams, v: &mut Validator) {
        self.check_behaviour(name, params.as_ron(), v);
    }
}

impl BehaviourChecks for BehaviourRegistry {
    fn check_behaviour(&self, name: &str, params: &str, v: &mut Validator) {
        let Some(check) = self.checks.get(name) else {
            let known: Vec<&str> = self.names().collect();
            v.check(false, "name", || {
                format!(
                    "no plugin registers the behaviour `{}`; expected one of: {}",
                    clip(name, MAX_QUOTED_CHARS),
                    if known.is_empty() {
                        "(none registered)".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            });
            return;
        };
        v.field("params", |v| check(params, v));
    }
}

fn check<P: BehaviourParams>(params: &str, v: &mut Validator) {
    match parse_located::<P>(params) {
        Ok(p) => p.validate(v),
        Err(e) => v.fail_inside(e),
    }
}

/// The parameters of every kind whose behaviour is `P`'s, by kind, read from
/// [`Archetypes`] at startup and whenever they change.
#[derive(Resource)]
pub struct KindParams<P: BehaviourParams> {
    by_kind: Vec<Option<P>>,
}

impl<P: BehaviourParams> Default for KindParams<P> {
    fn default() -> Self {
        Self {
            by_kind: Vec::new(),
        }
    }
}

impl<P: BehaviourParams> KindParams<P> {
    /// The parameters of `kind`, if its behaviour is `P`'s.
    pub fn get(&self, kind: AgentKind) -> Option<&P> {
        self.by_kind.get(kind.index()).and_then(Option::as_ref)
    }

    /// The kinds whose behaviour is `P`'s, with their parameters, in kind
    /// order.
    pub fn iter(&self) -> impl Iterator<Item = (AgentKind, &P)> {
        self.by_kind
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (AgentKind(i as u16), p)))
    }

    /// Whether no kind has `P`'s behaviour.
    pub fn is_empty(&self) -> bool {
        self.by_kind.iter().all(Option::is_none)
    }

    /// Reads the parameters of the kinds in `archetypes` that name `P`'s
    /// behaviour. A kind whose parameters do not read (it was not checked)
    /// is logged and left out.
    pub fn from_archetypes(archetypes: &Archetypes) -> Self {
        let by_kind = archetypes
            .iter()
            .map(|a| match &a.behaviour {
                Behaviour::Model { name, params } if name == P::NAME => match params.read::<P>() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(
                            kind = %a.kind,
                            behaviour = P::NAME,
                            "the kind's parameters do not read (line {}, column {} of them, `{}`): {}; its agents run no behaviour",
                            e.line,
                            e.column,
                            e.field,
                            e.message
                        );
                        None
                    }
                },
                _ => None,
            })
            .collect();
        Self { by_kind }
    }
}

fn publish_params<P: BehaviourParams>(archetypes: Res<Archetypes>, mut out: ResMut<KindParams<P>>) {
    *out = KindParams::from_archetypes(&archetypes);
}

/// The components models spawn their kinds' agents with, by the behaviour
/// they go with (the latest registered for a kind wins).
#[derive(Resource, Default)]
struct SpawnedWith(Vec<(fn(&Behaviour) -> bool, Spawner)>);

fn publish_spawners(
    archetypes: Res<Archetypes>,
    with: Res<SpawnedWith>,
    mut spawners: ResMut<KindSpawners>,
) {
    spawners.0 = archetypes
        .iter()
        .map(|a| {
            with.0
                .iter()
                .rev()
                .find(|(is, _)| is(&a.behaviour))
                .map(|(_, spawner)| spawner.clone())
        })
        .collect();
}

/// Registers a behaviour a plugin brings.
pub trait RegisterBehaviour {
    /// Registers `P`'s behaviour: kinds may name it, its parameters are
    /// checked with the scenario, and [`KindParams<P>`] holds them by kind
    /// (from startup on, and again whenever [`Archetypes`] changes, before
    /// the next update's steps).
    fn register_behaviour<P: BehaviourParams>(&mut self) -> &mut Self;

    /// Agents of the kinds whose behaviour is `P`'s are spawned with
    /// `bundle` (the model's components at their starting values; the model
    /// sets them when they are admitted), beside the engine's. Inserting them
    /// at admission instead would move every agent to another table and
    /// leave the one it was spawned in empty: at a million agents, a quarter
    /// of the peak memory. A component the agent's blueprint gives
    /// ([`AgentBlueprint::with`](crate::agent::AgentBlueprint::with))
    /// replaces the starting value.
    fn spawn_kinds_with<P, B>(&mut self, bundle: B) -> &mut Self
    where
        P: BehaviourParams,
        B: Bundle + Clone + Send + Sync + 'static,
        B::Effect: NoBundleEffect;
}

impl RegisterBehaviour for App {
    fn register_behaviour<P: BehaviourParams>(&mut self) -> &mut Self {
        self.init_resource::<Archetypes>()
            .init_resource::<BehaviourRegistry>()
            .init_resource::<KindParams<P>>();
        self.world_mut()
            .resource_mut::<BehaviourRegistry>()
            .register::<P>();
        self.add_systems(Startup, publish_params::<P>.in_set(ContinuumStartup::Kinds))
            .add_systems(
                PreUpdate,
                publish_params::<P>.run_if(resource_changed::<Archetypes>),
            );
        self
    }

    fn spawn_kinds_with<P, B>(&mut self, bundle: B) -> &mut Self
    where
        P: BehaviourParams,
        B: Bundle + Clone + Send + Sync + 'static,
        B::Effect: NoBundleEffect,
    {
        if !self.world().contains_resource::<SpawnedWith>() {
            self.init_resource::<SpawnedWith>()
                .init_resource::<KindSpawners>()
                .init_resource::<Archetypes>()
                .add_systems(Startup, publish_spawners.in_set(ContinuumStartup::Kinds))
                .add_systems(
                    PreUpdate,
                    publish_spawners.run_if(resource_changed::<Archetypes>),
                );
        }
        let is: fn(&Behaviour) -> bool = |b| b.is::<P>();
        self.world_mut()
            .resource_mut::<SpawnedWith>()
            .0
            .push((is, spawner_with(bundle)));
        self
    }
}
