//! A table of hand-written bad scenario files (`tests/bad-scenarios/*.ron`):
//! `continuum validate FILE` on each exits with code 2 and an error naming
//! `FILE:LINE:COLUMN` and the field at fault, never a panic. A few also go
//! through `run --quiet`, and a few inputs that are not scenario files at all
//! (a device, a directory, a FIFO, a file too large) are refused before they
//! are read.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::continuum;

/// File (under `tests/bad-scenarios`), line, column, field, and a fragment of
/// the message.
const TABLE: &[(&str, usize, usize, &str, &str)] = &[
    ("syntax-error", 5, 29, "clock", "Expected comma"),
    (
        "model-bad-param",
        12,
        27,
        "archetypes[0].behaviour.params.cohesion",
        "expected a weight",
    ),
    (
        "model-unknown-behaviour",
        11,
        36,
        "archetypes[0].behaviour.name",
        "expected one of: analyzer, controller, explorer, flocking",
    ),
    (
        "model-param-typo",
        11,
        72,
        "archetypes[0].behaviour.params.momentun",
        "momentun",
    ),
    (
        "unknown-field",
        5,
        5,
        "colour",
        "Unexpected field named `colour`",
    ),
    ("wrong-type", 5, 22, "clock.fixed_hz", "Expected float"),
    ("nan-duration", 5, 40, "clock.duration", "got NaN"),
    ("inf-world-size", 5, 19, "world.size", "Vec2(inf, 600.0)"),
    ("negative-fixed-hz", 5, 23, "clock.fixed_hz", "got -100"),
    ("zero-count", 7, 35, "groups[1].count", "at least 1 agent"),
    ("empty-groups", 5, 13, "groups", "at least one group"),
    (
        "unknown-kind",
        6,
        16,
        "groups[0].kind",
        "unknown kind \"explorr\"",
    ),
    (
        "departure-misspelt-kind",
        10,
        38,
        "departures[0].kind",
        "unknown kind \"explorr\"",
    ),
    ("departure-nan-at", 11, 14, "departures[1].at", "got NaN"),
    (
        "departure-zero-count",
        9,
        35,
        "departures[0].count",
        "at least 1 agent",
    ),
    (
        "arrival-unknown-kind",
        10,
        33,
        "arrivals[0].group.kind",
        "unknown kind \"analyser\"",
    ),
    ("arrival-negative-at", 10, 14, "arrivals[0].at", "got -3"),
    ("arrival-infinite-at", 9, 21, "arrivals[0].at", "got inf"),
    (
        "arrival-nan-lifetime",
        10,
        66,
        "arrivals[0].group.lifetime",
        "got NaN",
    ),
    (
        "arrival-tick-hz",
        11,
        65,
        "arrivals[0].group.tick_hz",
        "faster than the step rate",
    ),
    (
        "arrival-archetype-tick-hz",
        11,
        26,
        "arrivals[0].group.tick_hz",
        "default rate of \"fast\" (5000 Hz)",
    ),
    (
        "archetype-tick-hz-1e30",
        10,
        33,
        "archetypes[0].tick_hz",
        "(0, 10000]",
    ),
    (
        "archetype-inf-param",
        15,
        80,
        "archetypes[0].behaviour.params.jitter",
        "got inf",
    ),
    ("pacing-speed-huge", 5, 37, "pacing.speed", "at most 1e6"),
    (
        "sites-huge",
        5,
        42,
        "world.sites",
        "available on this machine",
    ),
    ("count-huge", 6, 35, "groups[0].count", "4000000000 agents"),
    ("count-overflow", 6, 35, "groups[0].count", "out of bounds"),
    ("max-agents-zero", 5, 17, "max_agents", "at least 1 agent"),
    ("budget-nan", 5, 22, "memory.budget", "got NaN"),
    (
        "old-clock-mode",
        5,
        30,
        "clock.mode",
        "a section of its own",
    ),
    // Nesting never reaches RON's recursion limit: the first parenthesis too
    // many is already a type error.
    ("deep-nesting", 4, 10, "seed", "Expected integer"),
    ("truncated", 6, 39, "groups[1]", "Expected opening `(`"),
    ("name-too-long", 3, 11, "name", "at most 256 characters"),
    (
        "boost-below-fair",
        5,
        37,
        "monitor.rebalance.boost_at",
        "expected at least 1 fair share, got 0.5",
    ),
    (
        "overload-quantile-above-one",
        5,
        35,
        "monitor.overload.measure",
        "with q in (0, 1], got Quantile(1.5)",
    ),
    (
        "think-max-in-flight-zero",
        5,
        28,
        "think.max_in_flight",
        "expected 1 to 1048576 tasks, got 0",
    ),
    (
        "think-unknown-field",
        5,
        13,
        "think.max_in_flite",
        "Unexpected field named `max_in_flite`",
    ),
    (
        "planner-negative-latency",
        12,
        28,
        "archetypes[0].think_latency",
        "got -0.5",
    ),
    (
        "planner-too-many-stops",
        13,
        63,
        "archetypes[0].behaviour.params.stops",
        "expected 1 to 6 sites, got 9",
    ),
];

fn dir() -> PathBuf {
    common::root().join("crates/continuum-cli/tests/bad-scenarios")
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Exit code 2, no panic, nothing on stdout, and every one of `expected` in
/// the error.
fn refused(what: &str, out: &Output, expected: &[&str]) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Err(format!("{what}: exit {:?}, stderr:\n{stderr}", out.status));
    }
    if stderr.contains("panicked") || stderr.contains("backtrace") {
        return Err(format!("{what}: panicked:\n{stderr}"));
    }
    if !out.stdout.is_empty() {
        return Err(format!("{what}: printed to stdout"));
    }
    if stderr.lines().count() != 1 || stderr.len() > 1200 {
        return Err(format!("{what}: expected one short line, got:\n{stderr}"));
    }
    for e in expected {
        if !stderr.contains(e) {
            return Err(format!("{what}: expected {e:?} in:\n{stderr}"));
        }
    }
    Ok(())
}

#[test]
fn every_bad_scenario_is_refused_at_its_line_column_and_field() {
    let on_disk = std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ron")
        })
        .count();
    assert_eq!(on_disk, TABLE.len(), "every file has a row in the table");
    assert!(TABLE.len() >= 20);
    let mut failures = Vec::new();
    for &(name, line, column, field, fragment) in TABLE {
        let file = format!("crates/continuum-cli/tests/bad-scenarios/{name}.ron");
        let out = continuum(["validate", file.as_str()]);
        let position = format!("{file}:{line}:{column}: `{field}`: ");
        if let Err(e) = refused(name, &out, &[&position, fragment]) {
            failures.push(e);
        }
    }

    // Made here rather than kept in the repository: 4 100 kinds of agents.
    let path = tmp("too-many-kinds.ron");
    let kinds: Vec<String> = (0..4100)
        .map(|i| {
            format!(
                "        (kind: \"k{i}\", tick_hz: 1.0, speed: 0.0, perception_radius: 1.0, behaviour: Idle),\n"
            )
        })
        .collect();
    let text = format!(
        "Scenario(\n    name: \"kinds\",\n    groups: [(kind: \"k0\", count: 1)],\n    archetypes: [\n{}    ],\n)\n",
        kinds.concat()
    );
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap();
    // With the 4 built-in kinds, the 4093rd of the scenario's kinds (index
    // 4092) is the 4097th in all.
    let position = format!("{path}:4097:16: `archetypes[4092].kind`: too many kinds");
    if let Err(e) = refused(
        "too-many-kinds",
        &continuum(["validate", path]),
        &[&position],
    ) {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_refuses_them_too_before_it_allocates() {
    for (name, expected) in [
        ("departure-misspelt-kind", "`departures[0].kind`"),
        ("pacing-speed-huge", "`pacing.speed`"),
        ("sites-huge", "`world.sites`"),
        ("count-huge", "`groups[0].count`"),
    ] {
        let file = format!("crates/continuum-cli/tests/bad-scenarios/{name}.ron");
        let out = continuum(["run", file.as_str(), "--quiet"]);
        refused(name, &out, &[&file, expected]).unwrap();
    }
    // Too many agents asked for on the command line: refused after the
    // scaling, at the group that takes the most.
    let out = continuum([
        "run",
        "scenarios/quickstart.ron",
        "--quiet",
        "--fast",
        "--agents",
        "100000000",
    ]);
    refused(
        "--agents 100000000",
        &out,
        &[
            "scenarios/quickstart.ron:22:",
            "`groups[0].count`",
            "100000000 agents",
        ],
    )
    .unwrap();
}

#[test]
fn what_is_not_a_regular_file_of_reasonable_size_is_not_read() {
    let mut cases: Vec<(String, &str)> = vec![
        ("/dev/zero".into(), "not a regular file"),
        (
            env!("CARGO_TARGET_TMPDIR").into(),
            "not a regular file (a directory)",
        ),
    ];
    let big = tmp("big.ron");
    let mut text = String::from("Scenario(name: \"");
    text.push_str(&"n".repeat(17 << 20));
    text.push_str("\", groups: [(kind: \"explorer\", count: 1)])\n");
    std::fs::write(&big, text).unwrap();
    cases.push((big.to_str().unwrap().into(), "larger than the limit"));
    #[cfg(unix)]
    {
        // A FIFO with no writer: opening it would block.
        let fifo = tmp("fifo.ron");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            cases.push((fifo.to_str().unwrap().into(), "not a regular file"));
        }
    }
    for (path, expected) in &cases {
        let out = continuum(["validate", path.as_str()]);
        refused(path, &out, &[path.as_str(), expected]).unwrap();
    }
    let _ = std::fs::remove_file(&big);
}
