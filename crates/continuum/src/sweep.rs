//! Parameter sweeps: one scenario run many times, over a grid or a list of
//! parameter values, several seeds (replicates) each.
//!
//! A sweep file names a base scenario and the fields to vary by their path in
//! it (`groups[0].count`, `conflicts`, `clock.fixed_hz`,
//! `archetypes[1].behaviour.params.momentum`); values are written in RON, as in a
//! scenario:
//!
//! ```ron
//! Sweep(
//!     name: "conflict-strategies",
//!     scenario: "../quickstart.ron",           // relative to this file
//!     fixed: { "clock.duration": 20.0 },       // set in every run
//!     grid: {                                  // every combination
//!         "conflicts": [PriorityThenTimestamp, Timestamp, Random],
//!         "groups[0].count": [100, 200],
//!     },
//!     replicates: 5,                           // seeds 1, 2, .. 5
//!     seed: 1,
//! )
//! ```
//!
//! [`Sweep::load`] expands the file into [`Point`]s (one parameter set each,
//! with its scenario text and parsed [`Scenario`]) and checks every one of
//! them before anything runs: a path that names no field, or a value of the
//! wrong type, is an error at its line and column in the sweep file. Runs are
//! numbered point by point, replicates innermost: run `id` is replicate
//! `id % replicates` of point `id / replicates`, and its seed is the point's
//! base seed plus the replicate, so that every point sees the same seeds.
//! Running them is the caller's: the `continuum sweep` command runs each in a
//! process of its own.

use std::fmt;
use std::path::{Path, PathBuf};

use ron::value::RawValue;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::archetype::BehaviourRegistry;
use crate::config::{
    self, ConfigError, MAX_QUOTED_CHARS, Place, Step, clip, line_col, locate_steps, parse_path,
    read_ron,
};
use crate::hash::DigestHasher;
use crate::scenario::Scenario;

/// Most parameter sets (points) a sweep may expand to.
pub const MAX_POINTS: u64 = 100_000;
/// Most runs (points × replicates) a sweep may hold.
pub const MAX_RUNS: u64 = 1_000_000;

/// Entries of a RON map with string keys, in the order written.
#[derive(Debug)]
struct Entries<V>(Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from field paths to values, e.g. { \"groups[0].count\": 100 }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!(
                            "`{}` is given twice",
                            clip(&key, MAX_QUOTED_CHARS)
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

fn one() -> u32 {
    1
}

/// A sweep file as written.
#[derive(Deserialize)]
#[serde(rename = "Sweep", deny_unknown_fields)]
struct SweepFile {
    name: String,
    scenario: PathBuf,
    #[serde(default)]
    fixed: Entries<Box<RawValue>>,
    #[serde(default)]
    grid: Entries<Vec<Box<RawValue>>>,
    #[serde(default)]
    sets: Vec<Entries<Box<RawValue>>>,
    #[serde(default = "one")]
    replicates: u32,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    collect: Option<Vec<String>>,
    #[serde(default)]
    series: Option<f64>,
}

/// One field a point sets: its path, its value (RON text) and where the value
/// is written in the sweep file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The field's path in the scenario, as written (`groups[0].count`).
    pub path: String,
    /// The value, RON text as written in the sweep file.
    pub value: String,
    /// Where the value is in the sweep file.
    pub at: Vec<Step>,
}

/// One parameter set of a sweep, with the scenario it gives.
#[derive(Clone, Debug)]
pub struct Point {
    /// Its place in the sweep: sets first, then the grid, its first field
    /// varying slowest.
    pub index: usize,
    /// What this point varies (from `sets` and `grid`; `fixed` settings are
    /// the same for every point and are not listed).
    pub settings: Vec<Setting>,
    /// The scenario file's text with every setting written in.
    pub scenario_text: String,
    /// The scenario, parsed and validated.
    pub scenario: Scenario,
    /// Seed of the point's first replicate.
    pub base_seed: u64,
}

/// One run of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunPlan {
    /// `point × replicates + replicate`.
    pub id: u64,
    pub point: usize,
    pub replicate: u32,
    pub seed: u64,
}

/// A sweep file, expanded and checked.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub name: String,
    /// The sweep file.
    pub file: PathBuf,
    /// The base scenario file.
    pub scenario_file: PathBuf,
    pub points: Vec<Point>,
    pub replicates: u32,
    /// Report figures to collect, by name (`None`: all of them), each with
    /// where it is written in the sweep file.
    pub collect: Option<Vec<(String, Vec<Step>)>>,
    /// Virtual seconds between two rows of each run's metrics time series,
    /// when asked for.
    pub series: Option<f64>,
    /// Names every run: a digest of the points' scenarios, the seeds, the
    /// replicates, what is collected and the engine's version. Parts of one
    /// sweep (shards, resumed runs) must agree on it.
    pub fingerprint: u64,
    source: String,
}

impl Sweep {
    /// Reads, expands and checks a sweep file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (file, source): (SweepFile, String) = read_ron(path)?;
        Self::expand(file, source, path, None)
    }

    /// [`load`](Self::load), checking the kinds' behaviours (and the
    /// parameters of models' behaviours) of every point's scenario against
    /// `behaviours`, as [`Scenario::load_with`] does.
    pub fn load_with(path: &Path, behaviours: &BehaviourRegistry) -> Result<Self, ConfigError> {
        let (file, source): (SweepFile, String) = read_ron(path)?;
        Self::expand(file, source, path, Some(behaviours))
    }

    /// Parses, expands and checks sweep text; `path` names it in errors and
    /// the base scenario's path is relative to its folder.
    pub fn from_ron(source: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: SweepFile = config::parse_ron(source, path)?;
        Self::expand(file, source.to_owned(), path, None)
    }

    /// [`from_ron`](Self::from_ron), checking behaviours against `behaviours`.
    pub fn from_ron_with(
        source: &str,
        path: &Path,
        behaviours: &BehaviourRegistry,
    ) -> Result<Self, ConfigError> {
        let file: SweepFile = config::parse_ron(source, path)?;
        Self::expand(file, source.to_owned(), path, Some(behaviours))
    }

    fn expand(
        file: SweepFile,
        source: String,
        path: &Path,
        behaviours: Option<&BehaviourRegistry>,
    ) -> Result<Self, ConfigError> {
        let at = |steps: &[Step], message: String| error_at(&source, path, steps, message);
        let field = |name: &str| vec![Step::Field(name.to_owned())];
        if file.name.trim().is_empty() || file.name.chars().count() > config::MAX_NAME_CHARS {
            return Err(at(
                &field("name"),
                format!(
                    "expected a non-empty name of at most {} characters",
                    config::MAX_NAME_CHARS
                ),
            ));
        }
        if file.replicates == 0 {
            return Err(at(
                &field("replicates"),
                "expected at least 1 replicate".into(),
            ));
        }
        if let Some(interval) = file.series
            && !(interval.is_finite() && interval > 0.0)
        {
            return Err(at(
                &field("series"),
                format!("expected a positive interval in virtual seconds, got {interval}"),
            ));
        }
        for (key, values) in &file.grid.0 {
            if values.is_empty() {
                let steps = [Step::Field("grid".into()), Step::Key(key.clone())];
                return Err(at(&steps, format!("`{}` has no values", clip(key, 64))));
            }
        }
        let grid_points = file
            .grid
            .0
            .iter()
            .try_fold(1u64, |n, (_, values)| n.checked_mul(values.len() as u64))
            .unwrap_or(u64::MAX);
        let points = grid_points.saturating_mul(file.sets.len().max(1) as u64);
        if points > MAX_POINTS {
            return Err(at(
                &field("grid"),
                format!(
                    "the sweep has {points} parameter sets, more than the limit of {MAX_POINTS}"
                ),
            ));
        }
        let runs = points * u64::from(file.replicates);
        if runs > MAX_RUNS {
            return Err(at(
                &field("replicates"),
                format!(
                    "{points} parameter sets × {} replicates = {runs} runs, more than the limit of {MAX_RUNS}",
                    file.replicates
                ),
            ));
        }

        // The base scenario, checked on its own first: its own errors are its own.
        let folder = path.parent().unwrap_or(Path::new(""));
        let scenario_file = folder.join(&file.scenario);
        let base_text = config::read_source(&scenario_file)
            .map_err(|e| at(&field("scenario"), format!("the base scenario: {e}")))?;
        parse_scenario(&base_text, &scenario_file, behaviours)?;

        // Every setting's path, parsed once.
        let mut fixed = Vec::new();
        for (key, value) in &file.fixed.0 {
            let steps = vec![Step::Field("fixed".into()), Step::Key(key.clone())];
            fixed.push(setting(&source, path, key, value, steps)?);
        }
        let mut grid: Vec<Vec<Setting>> = Vec::new();
        for (key, values) in &file.grid.0 {
            let mut column = Vec::new();
            for (i, value) in values.iter().enumerate() {
                let steps = vec![
                    Step::Field("grid".into()),
                    Step::Key(key.clone()),
                    Step::Index(i),
                ];
                column.push(setting(&source, path, key, value, steps)?);
            }
            grid.push(column);
        }
        let mut sets = Vec::new();
        for (s, entries) in file.sets.iter().enumerate() {
            let mut set = Vec::new();
            for (key, value) in &entries.0 {
                let steps = vec![
                    Step::Field("sets".into()),
                    Step::Index(s),
                    Step::Key(key.clone()),
                ];
                set.push(setting(&source, path, key, value, steps)?);
            }
            sets.push(set);
        }
        // A field set twice for one point (fixed and varied, or in a set and
        // the grid) is a mistake: which value would win is not obvious.
        for s in sets
            .iter()
            .flatten()
            .chain(grid.iter().filter_map(|c| c.first()))
        {
            if let Some(f) = fixed.iter().find(|f| f.path == s.path) {
                return Err(at(
                    &s.at,
                    format!(
                        "`{}` is also in `fixed`; a field is set in one place",
                        f.path
                    ),
                ));
            }
        }
        for set in &sets {
            for s in set {
                if grid.iter().any(|c| c[0].path == s.path) {
                    return Err(at(
                        &s.at,
                        format!(
                            "`{}` is also in `grid`; a field is set in one place",
                            s.path
                        ),
                    ));
                }
            }
        }

        let base_with_fixed = apply_all(&base_text, &fixed, &source, path)?;
        let set_list: Vec<&[Setting]> = if sets.is_empty() {
            vec![&[]]
        } else {
            sets.iter().map(Vec::as_slice).collect()
        };
        let mut expanded = Vec::with_capacity(points as usize);
        for set in set_list {
            for g in 0..grid_points {
                // The grid's first field varies slowest.
                let mut rest = g;
                let mut chosen = Vec::with_capacity(grid.len());
                for column in grid.iter().rev() {
                    let n = column.len() as u64;
                    chosen.push(column[(rest % n) as usize].clone());
                    rest /= n;
                }
                chosen.reverse();
                let settings: Vec<Setting> = set.iter().cloned().chain(chosen).collect();
                let text = apply_all(&base_with_fixed, &settings, &source, path)?;
                let scenario = check_point(
                    &text,
                    &scenario_file,
                    &settings,
                    &fixed,
                    &source,
                    path,
                    behaviours,
                )?;
                if scenario.clock.duration.is_none() {
                    return Err(at(
                        &field("scenario"),
                        "the runs of a sweep need an end: give `clock.duration` in the \
                         scenario, or in `fixed` (e.g. `fixed: { \"clock.duration\": 60.0 }`)"
                            .into(),
                    ));
                }
                let base_seed = file.seed.unwrap_or(scenario.seed);
                expanded.push(Point {
                    index: expanded.len(),
                    settings,
                    scenario_text: text,
                    scenario,
                    base_seed,
                });
            }
        }

        let collect = file.collect.map(|names| {
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, vec![Step::Field("collect".into()), Step::Index(i)]))
                .collect::<Vec<_>>()
        });
        let mut h = DigestHasher::default();
        h.bytes(env!("CARGO_PKG_VERSION").as_bytes())
            .word(u64::from(file.replicates))
            .word(file.series.map_or(0, f64::to_bits));
        for p in &expanded {
            h.bytes(p.scenario_text.as_bytes()).word(p.base_seed);
        }
        for (name, _) in collect.iter().flatten() {
            h.bytes(name.as_bytes());
        }
        Ok(Self {
            name: file.name,
            file: path.to_path_buf(),
            scenario_file,
            points: expanded,
            replicates: file.replicates,
            collect,
            series: file.series,
            fingerprint: h.finish(),
            source,
        })
    }

    /// How many runs the sweep holds.
    pub fn run_count(&self) -> u64 {
        self.points.len() as u64 * u64::from(self.replicates)
    }

    /// Run `id` (below [`Sweep::run_count`]).
    pub fn run(&self, id: u64) -> RunPlan {
        let point = (id / u64::from(self.replicates)) as usize;
        let replicate = (id % u64::from(self.replicates)) as u32;
        RunPlan {
            id,
            point,
            replicate,
            seed: self.points[point]
                .base_seed
                .wrapping_add(u64::from(replicate)),
        }
    }

    /// Every run, in id order.
    pub fn runs(&self) -> impl Iterator<Item = RunPlan> + '_ {
        (0..self.run_count()).map(|id| self.run(id))
    }

    /// The scenario of a run: its point's, with the run's seed.
    pub fn scenario(&self, run: &RunPlan) -> Scenario {
        let mut scenario = self.points[run.point].scenario.clone();
        scenario.seed = run.seed;
        scenario
    }

    /// The fields the points vary, in order of first appearance: the table's
    /// parameter columns.
    pub fn parameter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in &self.points {
            for s in &p.settings {
                if !names.contains(&s.path) {
                    names.push(s.path.clone());
                }
            }
        }
        names
    }

    /// The value (RON text) of field `path` in `point`'s scenario: the
    /// point's setting, or what its scenario file says when the point does
    /// not set it; empty when the file leaves the field out (its default).
    pub fn parameter_value(&self, point: usize, path: &str) -> String {
        let point = &self.points[point];
        if let Some(s) = point.settings.iter().find(|s| s.path == path) {
            return s.value.clone();
        }
        match parse_path(path).map(|steps| config::place(&point.scenario_text, &steps)) {
            Ok(Place::Value(range)) => point.scenario_text[range].trim().to_owned(),
            _ => String::new(),
        }
    }

    /// An error at `steps` in the sweep file (e.g. a `collect` entry the
    /// caller does not know).
    pub fn error_at(&self, steps: &[Step], message: String) -> ConfigError {
        error_at(&self.source, &self.file, steps, message)
    }
}

fn error_at(source: &str, file: &Path, steps: &[Step], message: String) -> ConfigError {
    let (line, column) = locate_steps(source, steps).unwrap_or((0, 0));
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        field: config::steps_string(steps),
        message,
    }
}

fn setting(
    source: &str,
    file: &Path,
    key: &str,
    value: &RawValue,
    at: Vec<Step>,
) -> Result<Setting, ConfigError> {
    if key == "seed" {
        return Err(error_at(
            source,
            file,
            &at,
            "the seed is the sweep's own (`seed` and `replicates`), not a parameter".into(),
        ));
    }
    parse_path(key).map_err(|message| error_at(source, file, &at, message))?;
    Ok(Setting {
        path: key.to_owned(),
        value: value.get_ron().trim().to_owned(),
        at,
    })
}

/// Writes `settings` into scenario text one by one. After each the text must
/// still parse as a scenario, so a setting that breaks it is the one at fault:
/// the error is reported at its value in the sweep file.
fn apply_all(
    text: &str,
    settings: &[Setting],
    source: &str,
    file: &Path,
) -> Result<String, ConfigError> {
    let mut text = text.to_owned();
    for s in settings {
        let steps = parse_path(&s.path).expect("checked when read");
        text = set_field(&text, &steps, &s.value)
            .map_err(|message| error_at(source, file, &s.at, message))?;
        if let Err(e) = config::parse_ron::<Scenario>(&text, file) {
            return Err(error_at(
                source,
                file,
                &s.at,
                format!("`{}` = {}: {}", s.path, clip(&s.value, 64), e.message),
            ));
        }
    }
    Ok(text)
}

/// A scenario's text, checked against `behaviours` when there are any.
fn parse_scenario(
    text: &str,
    file: &Path,
    behaviours: Option<&BehaviourRegistry>,
) -> Result<Scenario, ConfigError> {
    match behaviours {
        Some(registry) => Scenario::from_ron_with(text, file, registry),
        None => Scenario::from_ron(text, file),
    }
}

/// Validates a point's scenario. A problem in a field the point sets (or a
/// field inside it) is reported at that setting in the sweep file; any other
/// (one the settings cause elsewhere, such as more agents than `max_agents`)
/// at the point's first setting, naming the scenario's field.
fn check_point(
    text: &str,
    scenario_file: &Path,
    settings: &[Setting],
    fixed: &[Setting],
    source: &str,
    file: &Path,
    behaviours: Option<&BehaviourRegistry>,
) -> Result<Scenario, ConfigError> {
    let result = parse_scenario(text, scenario_file, behaviours)
        .and_then(|s| s.check_resources(scenario_file).map(|()| s));
    result.map_err(|e| {
        let within = |s: &&Setting| {
            e.field == s.path
                || e.field.starts_with(&format!("{}.", s.path))
                || e.field.starts_with(&format!("{}[", s.path))
        };
        let culprit = settings
            .iter()
            .chain(fixed)
            .rev()
            .find(within)
            .or_else(|| settings.first())
            .or_else(|| fixed.first());
        match culprit {
            Some(s) => {
                let values: Vec<String> = settings
                    .iter()
                    .map(|s| format!("{} = {}", s.path, clip(&s.value, 64)))
                    .collect();
                error_at(
                    source,
                    file,
                    &s.at,
                    format!(
                        "with {}: `{}`: {}",
                        if values.is_empty() {
                            "the fixed settings".into()
                        } else {
                            values.join(", ")
                        },
                        e.field,
                        e.message
                    ),
                )
            }
            None => e,
        }
    })
}

/// Sets the value at `path` in RON text to `value` (RON text), writing the
/// field (and the structs that lead to it) when the text leaves it out.
pub fn set_field(text: &str, path: &[Step], value: &str) -> Result<String, String> {
    match config::place(text, path) {
        Place::Value(range) => Ok(format!(
            "{}{value}{}",
            &text[..range.start],
            &text[range.end..]
        )),
        Place::Missing {
            found,
            reached,
            insert,
        } => {
            let (line, column) = line_col(text, reached);
            let rest = &path[found..];
            let names: Option<Vec<&str>> = rest
                .iter()
                .map(|s| match s {
                    Step::Field(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            match (insert, names) {
                (Some(at), Some(names)) => {
                    let mut written = value.to_owned();
                    for name in names[1..].iter().rev() {
                        written = format!("({name}: {written})");
                    }
                    Ok(format!(
                        "{}{}: {written}, {}",
                        &text[..at],
                        names[0],
                        &text[at..]
                    ))
                }
                _ => Err(match &path[found] {
                    Step::Index(i) => format!(
                        "the base scenario's `{}` (line {line}, column {column}) has no element {i}",
                        config::steps_string(&path[..found])
                    ),
                    _ => format!(
                        "the base scenario's `{}` (line {line}, column {column}) is not a structure with fields",
                        config::steps_string(&path[..found])
                    ),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"Scenario(
    name: "base",
    seed: 7,
    world: (size: (300.0, 300.0), sites: 20),
    clock: (fixed_hz: 50.0, duration: 2.0),
    groups: [
        (kind: "explorer", count: 10),
        (kind: "analyzer", count: 5),
    ],
)"#;

    fn steps(path: &str) -> Vec<Step> {
        parse_path(path).unwrap()
    }

    #[test]
    fn set_field_replaces_present_values_and_writes_absent_ones() {
        let t = set_field(BASE, &steps("groups[1].count"), "9").unwrap();
        assert!(t.contains("(kind: \"analyzer\", count: 9)"), "{t}");
        let t = set_field(BASE, &steps("clock.fixed_hz"), "25.0").unwrap();
        assert!(t.contains("clock: (fixed_hz: 25.0, duration: 2.0)"), "{t}");
        // Absent: written first in its struct.
        let t = set_field(BASE, &steps("conflicts"), "Random").unwrap();
        let s: Scenario = config::parse_ron(&t, Path::new("t.ron")).unwrap();
        assert_eq!(s.conflicts, crate::action::ConflictStrategyKind::Random);
        // Absent with an absent parent.
        let t = set_field(BASE, &steps("pacing.speed"), "3.0").unwrap();
        let s: Scenario = config::parse_ron(&t, Path::new("t.ron")).unwrap();
        assert_eq!(s.pacing.speed, 3.0);
    }

    #[test]
    fn set_field_refuses_elements_and_fields_that_cannot_exist() {
        let e = set_field(BASE, &steps("groups[5].count"), "1").unwrap_err();
        assert!(e.contains("has no element 5"), "{e}");
        let e = set_field(BASE, &steps("seed.x"), "1").unwrap_err();
        assert!(e.contains("not a structure"), "{e}");
    }

    #[test]
    fn paths_parse_and_bad_ones_are_refused() {
        assert_eq!(
            steps("groups[0].count"),
            vec![
                Step::Field("groups".into()),
                Step::Index(0),
                Step::Field("count".into())
            ]
        );
        for bad in ["", "a..b", "groups[x]", "groups[0", "0abc", "a b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
