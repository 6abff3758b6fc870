//! Scenario files: everything a run needs, in one RON file.
//!
//! ```ron
//! Scenario(
//!     name: "quickstart",
//!     seed: 7,
//!     world: (size: (800.0, 800.0), regions: (4, 4), sites: 300),
//!     clock: (fixed_hz: 100.0, duration: 30.0),
//!     pacing: (mode: Fast),
//!     groups: [
//!         (kind: "explorer", count: 150),
//!         (kinds: ["analyzer", "controller"], count: 150, tick_hz: 5.0, priority: High),
//!     ],
//!     conflicts: PriorityThenTimestamp,
//! )
//! ```
//!
//! Unknown fields are errors; everything but `name` and `groups` has a default.
//! The `world`, `clock`, `memory`, `monitor` and `think` sections are the
//! plugins' own settings types ([`WorldSettings`], [`ClockSettings`],
//! [`MemorySettings`], [`MonitorSettings`], [`ThinkSettings`]), so a field has one default whether it comes from a
//! file or from a game. [`Scenario::load`] parses and validates, and every error
//! names the file, line, column and field. [`ScenarioPlugin`] seeds an `App`'s
//! resources from it.

mod plugin;

pub(crate) use plugin::TimelineImage;
pub use plugin::{ActiveScenario, ScenarioPlugin};

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::action::ConflictStrategyKind;
use crate::agent::Priority;
use crate::agent::{AgentBlueprint, AgentId, IndexedAgent};
use crate::archetype::{Archetype, Archetypes, BehaviourRegistry};
use crate::archetype::{MAX_KINDS, MAX_MAGNITUDE};
use crate::clock::ClockSettings;
use crate::config::{
    BehaviourChecks, ConfigError, MAX_NAME_CHARS, MAX_QUOTED_CHARS, PathSeg, Validator, clip,
    locate, parse_ron, path_string, read_ron, read_source,
};
use crate::memory::{
    INTERMEDIATE_MAX, LONG_TERM_MAX, MemoryBudget, MemorySettings, SHORT_TERM_MAX, TierCaps,
    WORKING_MAX,
};
use crate::monitor::{LoadMeasure, MonitorSettings};
use crate::spatial::{CellGrid, GridGeometry};
use crate::think::{MAX_IN_FLIGHT, ThinkSettings};
use crate::world::WorldSettings;

/// How a run paces its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ClockMode {
    /// Paced to the wall clock: virtual time advances as real time times `speed`.
    #[default]
    Realtime,
    /// As fast as the machine allows: every update advances exactly one step.
    Fast,
}

impl ClockMode {
    /// The lower-case name used by the CLI and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockMode::Realtime => "realtime",
            ClockMode::Fast => "fast",
        }
    }
}

/// How the headless runner paces a scenario (its `pacing` section). The
/// simulation does not read it: the runner turns it into Bevy's
/// `TimeUpdateStrategy` and the relative speed of `Time<Virtual>`
/// ([`set_pacing`](crate::headless::set_pacing)); the test harness always
/// steps exactly, one step per update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    /// `Realtime` (paced to the wall clock) or `Fast` (as fast as possible).
    pub mode: ClockMode,
    /// Virtual seconds per real second in realtime mode (1.0 = real time).
    pub speed: f64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            mode: ClockMode::Realtime,
            speed: 1.0,
        }
    }
}

/// A group of agents started at the beginning of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The kind of every agent in the group...
    #[serde(default)]
    pub kind: Option<String>,
    /// ...or a list of kinds, one drawn at random (seeded) for each agent.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Number of agents.
    pub count: u32,
    /// Ticks per virtual second (default: the archetype's).
    #[serde(default)]
    pub tick_hz: Option<f32>,
    /// Priority (default: the archetype's).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Speed override, world units per virtual second.
    #[serde(default)]
    pub speed: Option<f32>,
    /// Perception radius override, world units.
    #[serde(default)]
    pub perception_radius: Option<f32>,
    /// Memory capacities override (records per tier, before the budget scales
    /// them): `(working: 6, short_term: 6, intermediate: 4, long_term: 3)`.
    #[serde(default)]
    pub memory: Option<TierCaps>,
    /// Virtual seconds each agent runs before it retires (default: forever).
    #[serde(default)]
    pub lifetime: Option<f64>,
}

impl GroupSpec {
    /// `count` agents, each of one of `kinds` (one kind: all of it; several: one
    /// drawn per agent), with the archetypes' defaults for everything else.
    pub fn of(kinds: &[&str], count: u32) -> Self {
        let (kind, kinds) = match kinds {
            [one] => (Some(one.to_string()), Vec::new()),
            many => (None, many.iter().map(|k| k.to_string()).collect()),
        };
        Self {
            kind,
            kinds,
            count,
            tick_hz: None,
            priority: None,
            speed: None,
            perception_radius: None,
            memory: None,
            lifetime: None,
        }
    }
}

/// A group of agents requested later in the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalSpec {
    /// Virtual seconds from the start of the run.
    pub at: f64,
    pub group: GroupSpec,
    /// Repeat the arrival every this many virtual seconds (a steady stream
    /// of newcomers; with `lifetime` in the group, a population that turns
    /// over all the time).
    #[serde(default)]
    pub every: Option<f64>,
    /// The last time a repeated arrival may come (default: the run's
    /// duration).
    #[serde(default)]
    pub until: Option<f64>,
}

/// Most waves one repeated arrival makes.
pub const MAX_REPEATS: u64 = 100_000;

impl ArrivalSpec {
    /// Agents requested at `at`.
    pub fn once(at: f64, group: GroupSpec) -> Self {
        Self {
            at,
            group,
            every: None,
            until: None,
        }
    }

    /// How many waves the arrival makes in a run of `duration` virtual
    /// seconds (`None`: until interrupted): one, or one per `every` from `at`
    /// to `until`.
    pub fn waves(&self, duration: Option<f64>) -> u64 {
        match (self.every, self.until.or(duration)) {
            (Some(every), Some(until)) if every > 0.0 && until >= self.at => {
                (((until - self.at) / every).floor() as u64).saturating_add(1)
            }
            (Some(_), _) => 0,
            (None, _) => 1,
        }
    }

    /// Agents it requests over the whole run.
    fn agents(&self, duration: Option<f64>) -> u64 {
        u64::from(self.group.count).saturating_mul(self.waves(duration))
    }
}

/// Agents that leave at a given time: the active agents that match, lowest ids
/// first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartureSpec {
    /// Virtual seconds from the start of the run.
    pub at: f64,
    /// How many agents leave (fewer if fewer match).
    pub count: u32,
    /// Only agents of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only agents of this priority.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// A complete run description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Every generator in the run derives from this.
    #[serde(default)]
    pub seed: u64,
    /// The world: its size, regions and sites.
    #[serde(default)]
    pub world: WorldSettings,
    /// The step rate and the run's duration.
    #[serde(default)]
    pub clock: ClockSettings,
    /// How the headless runner paces the steps.
    #[serde(default)]
    pub pacing: Pacing,
    /// Most agents active at once (default: all of the groups and arrivals).
    #[serde(default)]
    pub max_agents: Option<usize>,
    /// Agents requested at the start.
    pub groups: Vec<GroupSpec>,
    /// Agents requested later, in waves.
    #[serde(default)]
    pub arrivals: Vec<ArrivalSpec>,
    /// Agents leaving at given times.
    #[serde(default)]
    pub departures: Vec<DepartureSpec>,
    /// How conflicts are decided.
    #[serde(default)]
    pub conflicts: ConflictStrategyKind,
    /// The memory budget and the shared cache's share of it.
    #[serde(default)]
    pub memory: MemorySettings,
    /// Budget rebalancing and load shedding.
    #[serde(default)]
    pub monitor: MonitorSettings,
    /// Thinks that take longer than a tick: how many run at once.
    #[serde(default)]
    pub think: ThinkSettings,
    /// Extra kinds, or new definitions of built-in ones.
    #[serde(default)]
    pub archetypes: Vec<Archetype>,
}

/// Says where a field of an older scenario format went.
fn moved_fields(mut e: ConfigError) -> ConfigError {
    if matches!(e.field.as_str(), "clock.mode" | "clock.speed") {
        e.message.push_str(
            "; how a run is paced has a section of its own: `pacing: (mode: Fast, speed: 1.0)`",
        );
    }
    e
}

/// Most regions along one axis.
const MAX_REGIONS_PER_AXIS: u32 = 1024;
/// Fastest step rate accepted.
const MAX_FIXED_HZ: f64 = 10_000.0;

/// Fastest realtime pacing accepted (`pacing.speed`, `--speed`): a million
/// virtual seconds per real second. Beyond it no step loop keeps up (10^8
/// steps per second at 100 Hz), and Bevy's `Time<Virtual>` multiplies each
/// update's `Duration` by the speed, which panics once the product no longer
/// fits a `Duration` (from about 1e25 on).
pub const MAX_SPEED: f64 = 1.0e6;

/// Latest virtual time a scenario may name, in seconds (about 31 years): the
/// clock counts nanoseconds in a `u64` (584 years), so times up to this bound
/// and sums of two of them never overflow. Bounds `clock.duration`, the times
/// of arrivals and departures, lifetimes and `monitor.rebalance.every`.
pub const MAX_VIRTUAL_SECS: f64 = 1.0e9;

/// Bytes an active agent is counted for in [`Scenario::estimated_bytes`]: 1
/// KiB, a conservative figure. Measured, an agent adds 506 bytes at a million
/// agents and 563 at 100 000, and 829 with its memory tiers at their maxima;
/// the process's peak is somewhat above its resident size at rest (see
/// `docs/performance.md`).
pub const AGENT_BYTES: u64 = 1024;

/// Bytes a site is counted for: the site, its region entry, its place in the
/// spatial index, its slot in the shared cache and the cache readers' stamps
/// (about 120 bytes, rounded up).
pub const SITE_BYTES: u64 = 256;

/// Bytes a region is counted for: its notice board, its list of sites and its
/// share of the conflict resolver's per-region state (rounded up).
pub const REGION_BYTES: u64 = 256;

/// Memory a scenario is estimated to need before it runs, by part; see
/// [`Scenario::estimated_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceEstimate {
    /// Agents requested in all (starting groups and arrivals).
    pub agents: u64,
    /// Agents active at once at most (`max_agents`, or all of them).
    pub active_agents: u64,
    /// Bytes for the agents: [`AGENT_BYTES`] per active agent plus a queue
    /// entry per requested agent.
    pub agent_bytes: u64,
    /// Bytes for the sites ([`SITE_BYTES`] each).
    pub site_bytes: u64,
    /// Cells of the spatial grids (one for sites, one for agents).
    pub grid_cells: u64,
    /// Bytes for the grids' cells.
    pub grid_bytes: u64,
    /// Bytes for the regions ([`REGION_BYTES`] each).
    pub region_bytes: u64,
}

impl ResourceEstimate {
    /// The whole estimate in bytes.
    pub fn total(&self) -> u64 {
        self.agent_bytes
            .saturating_add(self.site_bytes)
            .saturating_add(self.grid_bytes)
            .saturating_add(self.region_bytes)
    }
}

/// The machine's available memory in bytes as `sysinfo` reads it (0 when it
/// cannot be read).
pub fn available_memory_bytes() -> u64 {
    let Ok(mut system) = sysinfo::System::new() else {
        return 0;
    };
    system.refresh_memory();
    system.available_memory()
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A validator for a scenario's kinds: their behaviours are checked against
/// the library's own (the sites model's) and `registered`. With none
/// registered, a behaviour the library does not know is left unchecked (the
/// app that runs the scenario has the plugins that bring it).
fn behaviour_checks(registered: Option<&BehaviourRegistry>) -> Validator {
    let mut all = crate::sites::behaviours();
    match registered {
        Some(registered) => {
            all.merge(registered);
            Validator::with_behaviours(std::sync::Arc::new(all))
        }
        None => Validator::with_behaviours(std::sync::Arc::new(KnownOnly(all))),
    }
}

/// Checks the behaviours it knows, and lets others pass.
struct KnownOnly(BehaviourRegistry);

impl BehaviourChecks for KnownOnly {
    fn check_behaviour(&self, name: &str, params: &str, v: &mut Validator) {
        if self.0.contains(name) {
            self.0.check_behaviour(name, params, v);
        }
    }
}

impl Scenario {
    /// A scenario of `groups` with every other setting at its default.
    pub fn new(name: impl Into<String>, groups: Vec<GroupSpec>) -> Self {
        Self {
            name: name.into(),
            seed: 0,
            world: WorldSettings::default(),
            clock: ClockSettings::default(),
            pacing: Pacing::default(),
            max_agents: None,
            groups,
            arrivals: Vec::new(),
            departures: Vec::new(),
            conflicts: Default::default(),
            memory: Default::default(),
            monitor: Default::default(),
            think: Default::default(),
            archetypes: Vec::new(),
        }
    }

    /// Reads, parses and validates a scenario file. The kinds' behaviours
    /// are checked if they are the library's own (the sites model's, see
    /// [`crate::sites`]); others are left to the app that runs the scenario
    /// (see [`load_with`](Self::load_with)).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_in(path, behaviour_checks(None))
    }

    /// Reads, parses and validates a scenario file, and its kinds' behaviours
    /// against the behaviours plugins registered (and the library's own): a
    /// name none registered, or parameters its type does not read or
    /// refuses, is an error.
    pub fn load_with(path: &Path, behaviours: &BehaviourRegistry) -> Result<Self, ConfigError> {
        Self::load_in(path, behaviour_checks(Some(behaviours)))
    }

    fn load_in(path: &Path, v: Validator) -> Result<Self, ConfigError> {
        let (scenario, source): (Scenario, String) = read_ron(path).map_err(moved_fields)?;
        scenario.validate_in(&source, path, v)?;
        Ok(scenario)
    }

    /// Parses and validates scenario text; `file` names it in errors. (See
    /// [`from_ron_with`](Self::from_ron_with) for the behaviours plugins bring.)
    pub fn from_ron(source: &str, file: &Path) -> Result<Self, ConfigError> {
        let scenario: Scenario = parse_ron(source, file).map_err(moved_fields)?;
        scenario.validate(source, file)?;
        Ok(scenario)
    }

    /// [`from_ron`](Self::from_ron), checking the kinds' behaviours against the
    /// registered ones as [`load_with`](Self::load_with) does.
    pub fn from_ron_with(
        source: &str,
        file: &Path,
        behaviours: &BehaviourRegistry,
    ) -> Result<Self, ConfigError> {
        let scenario: Scenario = parse_ron(source, file).map_err(moved_fields)?;
        scenario.validate_in(source, file, behaviour_checks(Some(behaviours)))?;
        Ok(scenario)
    }

    /// What the scenario is estimated to need in memory when it runs: the
    /// agents ([`AGENT_BYTES`] for each agent active at once, and a queue
    /// entry for each agent requested), the sites ([`SITE_BYTES`] each), the
    /// regions ([`REGION_BYTES`] each) and the two spatial grids, whose cells
    /// are as wide as the farthest any kind perceives and number at most
    /// 4096 × 4096 (a large world with short sight costs up to 700 MiB of
    /// cells whatever its population: the estimate counts them).
    pub fn estimated_bytes(&self) -> ResourceEstimate {
        let agents = self.total_agents().saturating_add(self.arriving_agents());
        let active_agents = self.max_agents.map_or(agents, |max| agents.min(max as u64));
        let queued = 2 * std::mem::size_of::<(AgentId, AgentBlueprint)>() as u64;
        let agent_bytes = active_agents
            .saturating_mul(AGENT_BYTES)
            .saturating_add(agents.saturating_mul(queued));
        let reach = self
            .archetypes()
            .largest_perception_radius()
            .unwrap_or(50.0);
        let cells = GridGeometry::new(self.world.size, reach.max(1.0)).cells() as u64;
        let per_cell = CellGrid::<IndexedAgent>::bytes_per_cell() as u64 + 4;
        let regions = u64::from(self.world.regions.0) * u64::from(self.world.regions.1);
        ResourceEstimate {
            agents,
            active_agents,
            agent_bytes,
            site_bytes: u64::from(self.world.sites).saturating_mul(SITE_BYTES),
            grid_cells: 2 * cells,
            grid_bytes: cells.saturating_mul(per_cell),
            region_bytes: regions.saturating_mul(REGION_BYTES),
        }
    }

    /// Refuses a scenario whose [estimated memory](Self::estimated_bytes) is
    /// more than the machine has available, before anything is allocated: the
    /// error names the field that asks for the most (a group's `count`,
    /// `world.sites`, `world.size` or `world.regions`), the estimate and the
    /// memory available. Call it after changing the scenario (scaling its
    /// agents, say); `file` is read again to locate the field.
    pub fn check_resources(&self, file: &Path) -> Result<(), ConfigError> {
        let source = read_source(file).unwrap_or_default();
        self.check_resources_in(&source, file, available_memory_bytes())
    }

    /// [`check_resources`](Self::check_resources) against `available` bytes
    /// (0: unknown, nothing is refused), locating the field in `source`.
    pub fn check_resources_in(
        &self,
        source: &str,
        file: &Path,
        available: u64,
    ) -> Result<(), ConfigError> {
        let e = self.estimated_bytes();
        if available == 0 || e.total() <= available {
            return Ok(());
        }
        use PathSeg::{Field, Index};
        let per_agent = AGENT_BYTES;
        let mut culprits: Vec<(u64, Vec<PathSeg>)> = vec![
            (e.site_bytes, vec![Field("world"), Field("sites")]),
            (e.grid_bytes, vec![Field("world"), Field("size")]),
            (e.region_bytes, vec![Field("world"), Field("regions")]),
        ];
        for (i, g) in self.groups.iter().enumerate() {
            let bytes = u64::from(g.count).saturating_mul(per_agent);
            culprits.push((bytes, vec![Field("groups"), Index(i), Field("count")]));
        }
        for (i, a) in self.arrivals.iter().enumerate() {
            let bytes = a.agents(self.clock.duration).saturating_mul(per_agent);
            let path = vec![Field("arrivals"), Index(i), Field("group"), Field("count")];
            culprits.push((bytes, path));
        }
        let (_, path) = culprits
            .into_iter()
            .rev()
            .max_by_key(|(bytes, _)| *bytes)
            .expect("three parts at least");
        let (line, column) = locate(source, &path).unwrap_or((0, 0));
        Err(ConfigError {
            file: file.to_path_buf(),
            line: if source.is_empty() { 0 } else { line },
            column: if source.is_empty() { 0 } else { column },
            field: path_string(&path),
            message: format!(
                "the scenario would need about {} of memory ({} agents, {} active at once, at \
                 {AGENT_BYTES} bytes each: {}; {} sites: {}; {} grid cells: {}; regions: {}), \
                 more than the {} available on this machine",
                mib(e.total()),
                e.agents,
                e.active_agents,
                mib(e.agent_bytes),
                self.world.sites,
                mib(e.site_bytes),
                e.grid_cells,
                mib(e.grid_bytes),
                mib(e.region_bytes),
                mib(available),
            ),
        })
    }

    /// The kinds this scenario can use: the built-in ones plus its own.
    pub fn archetypes(&self) -> Archetypes {
        let mut archetypes = Archetypes::default();
        for a in &self.archetypes {
            archetypes.define(a.clone());
        }
        archetypes
    }

    /// Agents in the starting groups.
    pub fn total_agents(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.count)).sum()
    }

    /// The pool's maximum: `max_agents`, or every agent of the groups and arrivals.
    pub fn max_agents(&self) -> usize {
        self.max_agents.unwrap_or(
            self.total_agents()
                .saturating_add(self.arriving_agents())
                .min(usize::MAX as u64) as usize,
        )
    }

    /// Agents requested by arrivals over the whole run (repeats counted).
    pub fn arriving_agents(&self) -> u64 {
        let duration = self.clock.duration;
        self.arrivals
            .iter()
            .map(|a| a.agents(duration))
            .fold(0, u64::saturating_add)
    }

    /// The arrivals wave by wave, repeats spelled out, in time order (the
    /// timeline a run follows).
    pub fn arrival_waves(&self) -> Vec<ArrivalSpec> {
        let duration = self.clock.duration;
        let mut waves = Vec::new();
        for a in &self.arrivals {
            for i in 0..a.waves(duration) {
                let at = a.at + a.every.map_or(0.0, |every| every * i as f64);
                waves.push(ArrivalSpec::once(at, a.group.clone()));
            }
        }
        waves.sort_by(|a, b| a.at.total_cmp(&b.at));
        waves
    }

    /// Scales the population to `total` agents, keeping its proportions: the
    /// starting groups then hold exactly `total` agents (largest remainders
    /// get the leftover agents), and every arrival's and departure's count
    /// and `max_agents` (if set) are scaled by the same factor (to the nearest
    /// agent; `max_agents` up), so the pool's room and its queues keep their
    /// proportions. A scenario that starts empty scales its arrivals so that
    /// they request about `total` agents over the run (repeats counted).
    /// Groups, arrivals and departures left with no agents are dropped.
    pub fn scale_agents(&mut self, total: u64) {
        let starting = self.total_agents();
        let old = if starting > 0 {
            starting
        } else {
            self.arriving_agents()
        }
        .max(1);
        let scaled = |n: u32| {
            ((u128::from(n) * u128::from(total) + u128::from(old) / 2) / u128::from(old))
                .min(u128::from(u32::MAX)) as u32
        };
        for a in &mut self.arrivals {
            a.group.count = scaled(a.group.count);
        }
        self.arrivals.retain(|a| a.group.count > 0);
        for d in &mut self.departures {
            d.count = scaled(d.count);
        }
        self.departures.retain(|d| d.count > 0);
        let mut shares: Vec<(usize, u64, u64)> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let exact = u128::from(g.count) * u128::from(total);
                (
                    i,
                    (exact / u128::from(old)) as u64,
                    (exact % u128::from(old)) as u64,
                )
            })
            .collect();
        let assigned: u64 = shares.iter().map(|s| s.1).sum();
        let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
        by_remainder.sort_by_key(|&i| (std::cmp::Reverse(shares[i].2), i));
        for &i in by_remainder.iter().take((total - assigned) as usize) {
            shares[i].1 += 1;
        }
        if let Some(max) = self.max_agents {
            let scaled = (u128::from(max as u64) * u128::from(total)).div_ceil(u128::from(old));
            self.max_agents = Some(scaled.max(1) as usize);
        }
        for (i, _, _) in &shares {
            self.groups[*i].count = shares[*i].1 as u32;
        }
        self.groups.retain(|g| g.count > 0);
    }

    /// Checks every value; the first problem is reported with its position in
    /// `source`.
    pub fn validate(&self, source: &str, file: &Path) -> Result<(), ConfigError> {
        self.validate_in(source, file, behaviour_checks(None))
    }

    fn validate_in(&self, source: &str, file: &Path, mut v: Validator) -> Result<(), ConfigError> {
        self.check(&mut v);
        v.finish(source, file)
    }

    fn check(&self, v: &mut Validator) {
        v.check(!self.name.trim().is_empty(), "name", || {
            "expected a non-empty name".into()
        });
        v.check(self.name.chars().count() <= MAX_NAME_CHARS, "name", || {
            format!(
                "expected a name of at most {MAX_NAME_CHARS} characters, got {}",
                self.name.chars().count()
            )
        });
        v.field("world", |v| {
            let w = &self.world;
            let positive = |x: f32| x.is_finite() && x > 0.0;
            v.check(positive(w.size.x) && positive(w.size.y), "size", || {
                format!("expected a positive width and height, got {:?}", w.size)
            });
            let regions_ok = |n: u32| (1..=MAX_REGIONS_PER_AXIS).contains(&n);
            v.check(
                regions_ok(w.regions.0) && regions_ok(w.regions.1),
                "regions",
                || {
                    format!(
                        "expected 1 to {MAX_REGIONS_PER_AXIS} regions per axis, got {:?}",
                        w.regions
                    )
                },
            );
            let (lo, hi) = w.site_capacity;
            v.check(
                lo.is_finite() && hi.is_finite() && lo >= 0.0 && hi >= lo && hi <= MAX_MAGNITUDE,
                "site_capacity",
                || {
                    format!(
                        "expected (min, max) with 0 <= min <= max <= 1e9, got {:?}",
                        w.site_capacity
                    )
                },
            );
            v.check(
                w.regrow_per_sec.is_finite()
                    && w.regrow_per_sec >= 0.0
                    && w.regrow_per_sec <= MAX_MAGNITUDE,
                "regrow_per_sec",
                || {
                    format!(
                        "expected zero or more (at most 1e9), got {}",
                        w.regrow_per_sec
                    )
                },
            );
            v.check(
                w.reach.is_finite() && w.reach >= 0.0 && w.reach <= MAX_MAGNITUDE,
                "reach",
                || {
                    format!(
                        "expected zero or more world units (at most 1e9), got {}",
                        w.reach
                    )
                },
            );
        });
        let fixed_hz = self.clock.fixed_hz;
        v.field("clock", |v| {
            let c = &self.clock;
            v.check(
                c.fixed_hz.is_finite() && c.fixed_hz > 0.0 && c.fixed_hz <= MAX_FIXED_HZ,
                "fixed_hz",
                || {
                    format!(
                        "expected a step rate in (0, {MAX_FIXED_HZ}] Hz, got {}",
                        c.fixed_hz
                    )
                },
            );
            if let Some(d) = c.duration {
                check_secs(v, d, "duration", false);
            }
        });
        v.field("pacing", |v| {
            let p = &self.pacing;
            v.check(
                p.speed.is_finite() && p.speed > 0.0 && p.speed <= MAX_SPEED,
                "speed",
                || {
                    format!(
                        "expected a positive speed factor of at most {MAX_SPEED:e}, got {}",
                        p.speed
                    )
                },
            );
        });
        if let Some(max) = self.max_agents {
            v.check(max >= 1, "max_agents", || {
                "expected at least 1 agent".into()
            });
        }
        v.field("monitor", |v| {
            let r = &self.monitor.rebalance;
            v.field("rebalance", |v| {
                check_secs(v, r.every, "every", false);
                v.check(
                    (0.0..=1.0).contains(&r.memory_low)
                        && r.memory_low < r.memory_high
                        && r.memory_high.is_finite(),
                    "memory_low",
                    || {
                        format!(
                            "expected 0 <= memory_low < memory_high, got {} and {}",
                            r.memory_low, r.memory_high
                        )
                    },
                );
                v.check(
                    r.memory_step > 0.0 && r.memory_step < 1.0,
                    "memory_step",
                    || format!("expected a share in (0, 1), got {}", r.memory_step),
                );
                v.check(
                    r.cpu_low >= 0.0 && r.cpu_low < r.cpu_high && r.cpu_high <= MAX_MAGNITUDE,
                    "cpu_low",
                    || {
                        format!(
                            "expected 0 <= cpu_low < cpu_high, got {} and {}",
                            r.cpu_low, r.cpu_high
                        )
                    },
                );
                v.check(r.cpu_step > 0.0 && r.cpu_step < 1.0, "cpu_step", || {
                    format!("expected a share in (0, 1), got {}", r.cpu_step)
                });
                v.check(
                    r.cpu_min > 0.0
                        && r.cpu_min <= 1.0
                        && r.cpu_max >= 1.0
                        && r.cpu_max <= MAX_MAGNITUDE,
                    "cpu_min",
                    || {
                        format!(
                            "expected 0 < cpu_min <= 1 <= cpu_max, got {} and {}",
                            r.cpu_min, r.cpu_max
                        )
                    },
                );
                v.check(
                    r.boost_at >= 1.0 && r.boost_at <= MAX_MAGNITUDE,
                    "boost_at",
                    || format!("expected at least 1 fair share, got {}", r.boost_at),
                );
            });
            let o = &self.monitor.overload;
            v.field("overload", |v| {
                v.check(
                    o.evaluate_every.is_finite()
                        && o.evaluate_every > 0.0
                        && o.evaluate_every <= MAX_VIRTUAL_SECS,
                    "evaluate_every",
                    || {
                        format!(
                            "expected a positive number of real seconds, got {}",
                            o.evaluate_every
                        )
                    },
                );
                v.check(
                    o.restore_below >= 0.0
                        && o.restore_below < o.shed_above
                        && o.shed_above <= f64::from(MAX_MAGNITUDE),
                    "restore_below",
                    || {
                        format!(
                            "expected 0 <= restore_below < shed_above, got {} and {}",
                            o.restore_below, o.shed_above
                        )
                    },
                );
                v.check(o.restore_after >= 1, "restore_after", || {
                    "expected at least 1 evaluation".into()
                });
                if let LoadMeasure::Quantile(q) = o.measure {
                    v.check(q > 0.0 && q <= 1.0, "measure", || {
                        format!("expected Mean or Quantile(q) with q in (0, 1], got Quantile({q})")
                    });
                }
            });
        });
        v.field("memory", |v| {
            let m = &self.memory;
            v.check(
                (0.0..1.0).contains(&m.shared_fraction),
                "shared_fraction",
                || format!("expected a share in [0, 1), got {}", m.shared_fraction),
            );
            match m.budget {
                MemoryBudget::MachineFraction(f) => v.check(f > 0.0 && f <= 1.0, "budget", || {
                    format!("expected a fraction of the machine's memory in (0, 1], got {f}")
                }),
                MemoryBudget::Bytes(b) => v.check(b > 0, "budget", || "expected some bytes".into()),
                MemoryBudget::Auto => {}
            }
        });
        v.field("think", |v| {
            let n = self.think.max_in_flight;
            v.check((1..=MAX_IN_FLIGHT).contains(&n), "max_in_flight", || {
                format!("expected 1 to {MAX_IN_FLIGHT} tasks, got {n}")
            });
        });
        let builtins = Archetypes::default();
        v.field("archetypes", |v| {
            let mut names: std::collections::HashSet<&str> =
                builtins.iter().map(|a| a.kind.as_str()).collect();
            let builtin = names.len();
            for (i, a) in self.archetypes.iter().enumerate() {
                v.at(PathSeg::Index(i), |v| a.validate(v));
                names.insert(a.kind.as_str());
                if names.len() > MAX_KINDS {
                    v.at(PathSeg::Index(i), |v| {
                        v.check(false, "kind", || {
                            format!(
                                "too many kinds: at most {MAX_KINDS} are allowed, the {builtin} \
                                 built-in ones included"
                            )
                        })
                    });
                    break;
                }
                if v.failed() {
                    break;
                }
            }
        });
        if v.failed() {
            return;
        }
        let archetypes = self.archetypes();
        v.check(
            !self.groups.is_empty() || !self.arrivals.is_empty(),
            "groups",
            || "expected at least one group of agents, or arrivals (a scenario may start empty and fill by arrivals)".into(),
        );
        v.field("groups", |v| {
            for (i, g) in self.groups.iter().enumerate() {
                v.at(PathSeg::Index(i), |v| {
                    check_group(g, &archetypes, fixed_hz, v)
                });
            }
        });
        v.field("arrivals", |v| {
            for (i, a) in self.arrivals.iter().enumerate() {
                v.at(PathSeg::Index(i), |v| {
                    check_secs(v, a.at, "at", true);
                    v.field("group", |v| check_group(&a.group, &archetypes, fixed_hz, v));
                    if let Some(every) = a.every {
                        v.check(
                            every.is_finite() && every >= 1.0 / fixed_hz,
                            "every",
                            || {
                                format!(
                                    "expected at least one step ({} s) between waves, got {every}",
                                    1.0 / fixed_hz
                                )
                            },
                        );
                        if let Some(until) = a.until {
                            check_secs(v, until, "until", true);
                            v.check(until >= a.at, "until", || {
                                format!("expected a time at or after `at` ({}), got {until}", a.at)
                            });
                        }
                        v.check(
                            a.until.is_some() || self.clock.duration.is_some(),
                            "until",
                            || {
                                "a repeated arrival needs an end: set `until` or clock.duration"
                                    .into()
                            },
                        );
                        let waves = a.waves(self.clock.duration);
                        v.check(waves <= MAX_REPEATS, "every", || {
                            format!("{waves} waves; at most {MAX_REPEATS} are allowed")
                        });
                    } else {
                        v.check(a.until.is_none(), "until", || {
                            "`until` ends a repeated arrival: set `every` too".into()
                        });
                    }
                });
            }
        });
        v.field("departures", |v| {
            for (i, d) in self.departures.iter().enumerate() {
                v.at(PathSeg::Index(i), |v| {
                    check_secs(v, d.at, "at", true);
                    v.check(d.count >= 1, "count", || {
                        "expected at least 1 agent to leave".into()
                    });
                    if let Some(kind) = &d.kind {
                        v.check(archetypes.kind(kind).is_some(), "kind", || {
                            unknown_kind(kind, &archetypes)
                        });
                    }
                });
            }
        });
    }
}

/// Checks a number of virtual seconds: finite, at most [`MAX_VIRTUAL_SECS`],
/// and positive (or zero or more with `zero_ok`).
fn check_secs(v: &mut Validator, secs: f64, name: &'static str, zero_ok: bool) {
    let low_ok = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
    v.check(
        secs.is_finite() && low_ok && secs <= MAX_VIRTUAL_SECS,
        name,
        || {
            let least = if zero_ok {
                "zero or more"
            } else {
                "a positive number of"
            };
            format!("expected {least} virtual seconds, at most {MAX_VIRTUAL_SECS:e}, got {secs}")
        },
    );
}

/// Kinds listed in an error about an unknown kind, at most.
const KINDS_LISTED: usize = 16;

/// The known kinds, quoted, for an error (the first [`KINDS_LISTED`]).
fn kind_names(archetypes: &Archetypes) -> String {
    let mut names: Vec<String> = archetypes
        .iter()
        .take(KINDS_LISTED)
        .map(|a| format!("\"{}\"", clip(&a.kind, 32)))
        .collect();
    if archetypes.len() > KINDS_LISTED {
        names.push(format!("and {} more", archetypes.len() - KINDS_LISTED));
    }
    names.join(", ")
}

fn unknown_kind(kind: &str, archetypes: &Archetypes) -> String {
    format!(
        "unknown kind \"{}\", expected one of {}",
        clip(kind, MAX_QUOTED_CHARS),
        kind_names(archetypes)
    )
}

fn check_group(g: &GroupSpec, archetypes: &Archetypes, fixed_hz: f64, v: &mut Validator) {
    let known = |name: &str| archetypes.kind(name).is_some();
    let names = || kind_names(archetypes);
    match (&g.kind, g.kinds.is_empty()) {
        (Some(_), false) => v.check(false, "kinds", || {
            "set either `kind` or `kinds`, not both".into()
        }),
        (None, true) => v.check(false, "kind", || {
            format!("expected a kind (one of {}) or a list `kinds`", names())
        }),
        (Some(kind), true) => v.check(known(kind), "kind", || unknown_kind(kind, archetypes)),
        (None, false) => v.field("kinds", |v| {
            for (i, kind) in g.kinds.iter().enumerate() {
                v.at(PathSeg::Index(i), |v| {
                    v.check(known(kind), "", || unknown_kind(kind, archetypes))
                });
            }
        }),
    }
    v.check(g.count >= 1, "count", || {
        "expected at least 1 agent in a group".into()
    });
    if g.tick_hz.is_none() {
        let kinds = g.kind.iter().chain(&g.kinds);
        for kind in kinds.filter_map(|k| archetypes.kind(k)) {
            let hz = archetypes.get(kind).tick_hz;
            v.check(f64::from(hz) <= fixed_hz, "tick_hz", || {
                format!(
                    "the default rate of \"{}\" ({hz} Hz) is faster than the step rate \
                     ({fixed_hz} Hz); set tick_hz or raise clock.fixed_hz",
                    archetypes.name(kind)
                )
            });
        }
    }
    if let Some(hz) = g.tick_hz {
        v.check(hz.is_finite() && hz > 0.0, "tick_hz", || {
            format!("expected a positive rate in Hz, got {hz}")
        });
        v.check(f64::from(hz) <= fixed_hz, "tick_hz", || {
            format!(
                "{hz} Hz is faster than the step rate ({fixed_hz} Hz): an agent ticks at most once \
                 per step; lower tick_hz or raise clock.fixed_hz"
            )
        });
    }
    if let Some(speed) = g.speed {
        v.check(
            speed.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&speed),
            "speed",
            || format!("expected zero or more world units per second, got {speed}"),
        );
    }
    if let Some(r) = g.perception_radius {
        v.check(
            r.is_finite() && r > 0.0 && r <= MAX_MAGNITUDE,
            "perception_radius",
            || format!("expected a positive radius, got {r}"),
        );
    }
    if let Some(m) = g.memory {
        v.check(m.clamped() == m, "memory", || {
            format!(
                "expected at most ({WORKING_MAX}, {SHORT_TERM_MAX}, {INTERMEDIATE_MAX}, {LONG_TERM_MAX}) \
                 records for (working, short_term, intermediate, long_term), got {m:?}"
            )
        });
    }
    if let Some(l) = g.lifetime {
        check_secs(v, l, "lifetime", false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_groups(counts: &[u32]) -> Scenario {
        let groups = counts
            .iter()
            .map(|&n| GroupSpec::of(&["explorer"], n))
            .collect();
        Scenario {
            max_agents: Some(50),
            ..Scenario::new("t", groups)
        }
    }

    #[test]
    fn sections_and_fields_left_out_take_the_settings_defaults() {
        let parse = |text: &str| Scenario::from_ron(text, Path::new("d.ron")).unwrap();
        let s = parse(r#"Scenario(name: "d", groups: [(kind: "explorer", count: 1)])"#);
        assert_eq!(s.world, WorldSettings::default());
        assert_eq!(s.world.sites, 200, "one default, in a file or in a game");
        assert_eq!(s.clock, ClockSettings::default());
        assert_eq!(s.memory, MemorySettings::default());
        assert_eq!(s.monitor, MonitorSettings::default());
        assert_eq!(s.pacing, Pacing::default());
        let s = parse(
            r#"Scenario(name: "d", world: (sites: 7), clock: (duration: 2.0),
                groups: [(kind: "explorer", count: 1)])"#,
        );
        assert_eq!(s.world.sites, 7);
        assert_eq!(s.world.size, WorldSettings::default().size);
        assert_eq!(s.clock.fixed_hz, ClockSettings::default().fixed_hz);
        assert_eq!(s.clock.duration, Some(2.0));
    }

    #[test]
    fn scaling_keeps_proportions_and_the_exact_total() {
        let mut s = with_groups(&[50, 30, 20]);
        s.scale_agents(1000);
        let counts: Vec<u32> = s.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, [500, 300, 200]);
        assert_eq!(s.max_agents, Some(500));
        let mut s = with_groups(&[1, 1, 1]);
        s.scale_agents(10);
        assert_eq!(s.total_agents(), 10);
        let mut s = with_groups(&[90, 5, 5]);
        s.scale_agents(3);
        assert_eq!(s.total_agents(), 3);
        assert!(
            s.groups.iter().all(|g| g.count > 0),
            "empty groups are dropped"
        );
    }

    #[test]
    fn scaling_takes_arrivals_departures_and_the_pool_along() {
        let parse = |text: &str| Scenario::from_ron(text, Path::new("s.ron")).unwrap();
        let mut s = parse(
            r#"Scenario(name: "s", clock: (duration: 60.0), max_agents: 150,
                groups: [(kind: "explorer", count: 100)],
                arrivals: [(at: 5.0, group: (kind: "analyzer", count: 40, priority: High)),
                           (at: 6.0, every: 10.0, group: (kind: "explorer", count: 3))],
                departures: [(at: 30.0, count: 20), (at: 40.0, count: 1)])"#,
        );
        s.scale_agents(1000);
        assert_eq!(s.total_agents(), 1000);
        let arrivals: Vec<u32> = s.arrivals.iter().map(|a| a.group.count).collect();
        assert_eq!(arrivals, [400, 30]);
        let departures: Vec<u32> = s.departures.iter().map(|d| d.count).collect();
        assert_eq!(departures, [200, 10]);
        assert_eq!(s.max_agents, Some(1500));
        // Scaled down, what rounds to nobody goes.
        s.scale_agents(10);
        assert_eq!((s.total_agents(), s.max_agents), (10, Some(15)));
        assert_eq!(s.arrivals.len(), 1, "{:?}", s.arrivals);
        assert_eq!((s.arrivals[0].group.count, s.departures.len()), (4, 1));
    }

    #[test]
    fn a_scenario_may_start_empty_and_scales_by_its_arrivals() {
        let parse = |text: &str| Scenario::from_ron(text, Path::new("e.ron"));
        let mut s = parse(
            r#"Scenario(name: "e", clock: (duration: 30.0), max_agents: 50, groups: [],
                arrivals: [(at: 0.0, every: 10.0, group: (kind: "explorer", count: 20)),
                           (at: 1.0, group: (kind: "analyzer", count: 40, priority: High))],
                departures: [(at: 25.0, count: 10)])"#,
        )
        .unwrap();
        assert_eq!((s.total_agents(), s.arriving_agents()), (0, 120));
        s.scale_agents(1200);
        assert_eq!(s.arriving_agents(), 1200);
        assert_eq!(s.max_agents, Some(500));
        assert_eq!(s.departures[0].count, 100);
        let err = parse(r#"Scenario(name: "none", groups: [])"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("groups") && text.contains("or arrivals"),
            "{text}"
        );
    }

    #[test]
    fn the_memory_estimate_refuses_what_the_machine_cannot_hold() {
        let text = r#"Scenario(
    name: "m",
    world: (sites: 100),
    groups: [(kind: "explorer", count: 10), (kind: "analyzer", count: 3000000)],
)"#;
        let s = Scenario::from_ron(text, Path::new("m.ron")).unwrap();
        let e = s.estimated_bytes();
        assert_eq!(e.agents, 3_000_010);
        assert!(e.agent_bytes >= 3_000_010 * AGENT_BYTES);
        assert!(
            s.check_resources_in(text, Path::new("m.ron"), 64 << 30)
                .is_ok()
        );
        assert!(
            s.check_resources_in(text, Path::new("m.ron"), 0).is_ok(),
            "unknown"
        );
        let err = s
            .check_resources_in(text, Path::new("m.ron"), 1 << 30)
            .unwrap_err();
        assert_eq!(err.field, "groups[1].count");
        assert_eq!((err.line, err.column), (4, 71));
        assert!(err.message.contains("1024 MiB available"), "{err}");
        let capped = Scenario {
            max_agents: Some(10),
            ..s
        };
        assert!(capped.estimated_bytes().agent_bytes < e.agent_bytes);
    }

    #[test]
    fn a_repeated_arrival_spells_out_its_waves_and_is_bounded() {
        let parse = |extra: &str| {
            let text = format!(
                "Scenario(name: \"r\", clock: (duration: 10.0), groups: [(kind: \"explorer\", count: 5)],\n{extra})"
            );
            Scenario::from_ron(&text, Path::new("r.ron"))
        };
        let s = parse(
            r#"arrivals: [(at: 2.0, every: 3.0, group: (kind: "explorer", count: 4)),
                          (at: 4.0, group: (kind: "analyzer", count: 1))]"#,
        )
        .unwrap();
        let times: Vec<f64> = s.arrival_waves().iter().map(|a| a.at).collect();
        assert_eq!(
            times,
            [2.0, 4.0, 5.0, 8.0],
            "until the duration, in time order"
        );
        assert_eq!(s.arriving_agents(), 3 * 4 + 1);
        assert_eq!(s.max_agents(), 5 + 13);
        let field = |extra: &str| parse(extra).unwrap_err().field;
        assert_eq!(
            field(r#"arrivals: [(at: 1.0, every: 0.0, group: (kind: "explorer", count: 1))]"#),
            "arrivals[0].every"
        );
        assert_eq!(
            field(r#"arrivals: [(at: 1.0, every: 1e-9, group: (kind: "explorer", count: 1))]"#),
            "arrivals[0].every"
        );
        assert_eq!(
            field(
                r#"arrivals: [(at: 5.0, every: 1.0, until: 2.0, group: (kind: "explorer", count: 1))]"#
            ),
            "arrivals[0].until"
        );
        assert_eq!(
            field(r#"arrivals: [(at: 1.0, until: 2.0, group: (kind: "explorer", count: 1))]"#),
            "arrivals[0].until"
        );
    }

    #[test]
    fn arrivals_and_departures_are_validated_with_their_positions() {
        let err = |extra: &str| {
            let text = format!(
                "Scenario(name: \"d\", groups: [(kind: \"explorer\", count: 1)],\n{extra})"
            );
            Scenario::from_ron(&text, Path::new("d.ron")).unwrap_err()
        };
        let e = err(r#"departures: [(at: 0.5, count: 1000, kind: "explorr")]"#);
        assert_eq!(
            (e.field.as_str(), e.line, e.column),
            ("departures[0].kind", 2, 43)
        );
        let e = err(r#"arrivals: [(at: 1.0, group: (kind: "explorer", count: 0))]"#);
        assert_eq!(e.field, "arrivals[0].group.count");
        let e = err(r#"arrivals: [(at: -1.0, group: (kind: "explorer", count: 1))]"#);
        assert_eq!(e.field, "arrivals[0].at");
        let e = err("pacing: (speed: 1e7)");
        assert_eq!(e.field, "pacing.speed");
    }
}
