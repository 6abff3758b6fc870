//! Sweep files: expansion into points and runs, and errors at their position.

mod common;

use std::path::PathBuf;

use continuum::action::ConflictStrategyKind;
use continuum::config::ConfigError;
use continuum::prelude::*;
use continuum::sweep::Sweep;

/// A sweep file's path beside the shipped scenarios, so that
/// `scenario: "quickstart.ron"` finds the real file.
fn beside_scenarios() -> PathBuf {
    common::root().join("scenarios").join("test-sweep.ron")
}

fn sweep(text: &str) -> Sweep {
    Sweep::from_ron(text, &beside_scenarios()).unwrap_or_else(|e| panic!("{e}"))
}

fn sweep_error(text: &str) -> ConfigError {
    match Sweep::from_ron(text, &beside_scenarios()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn a_grid_expands_to_every_combination_first_field_slowest() {
    let s = sweep(
        r#"Sweep(
            name: "grid",
            scenario: "quickstart.ron",
            fixed: { "clock.duration": 0.5 },
            grid: {
                "conflicts": [PriorityThenTimestamp, Timestamp, Random],
                "groups[0].count": [10, 20],
            },
            replicates: 2,
            seed: 100,
        )"#,
    );
    assert_eq!(s.points.len(), 6);
    assert_eq!(s.run_count(), 12);
    assert_eq!(s.parameter_names(), ["conflicts", "groups[0].count"]);
    let expected = [
        (ConflictStrategyKind::PriorityThenTimestamp, 10),
        (ConflictStrategyKind::PriorityThenTimestamp, 20),
        (ConflictStrategyKind::Timestamp, 10),
        (ConflictStrategyKind::Timestamp, 20),
        (ConflictStrategyKind::Random, 10),
        (ConflictStrategyKind::Random, 20),
    ];
    for (point, (conflicts, count)) in s.points.iter().zip(expected) {
        assert_eq!(point.scenario.conflicts, conflicts);
        assert_eq!(point.scenario.groups[0].count, count);
        // The fixed setting is in every point, and nothing else changed.
        assert_eq!(point.scenario.clock.duration, Some(0.5));
        assert_eq!(point.scenario.groups[1].count, 75);
        assert_eq!(point.base_seed, 100);
    }
    // Replicates innermost; every point sees the same seeds.
    let runs: Vec<_> = s.runs().collect();
    assert_eq!(runs.len(), 12);
    assert_eq!(
        (runs[5].point, runs[5].replicate, runs[5].seed),
        (2, 1, 101)
    );
    assert_eq!(
        (runs[6].point, runs[6].replicate, runs[6].seed),
        (3, 0, 100)
    );
    assert_eq!(s.scenario(&runs[5]).seed, 101);
}

#[test]
fn sets_list_points_and_combine_with_the_grid() {
    let s = sweep(
        r#"Sweep(
            name: "sets",
            scenario: "quickstart.ron",
            sets: [
                { "clock.fixed_hz": 50.0, "world.sites": 30 },
                { "clock.fixed_hz": 20.0 },
            ],
            grid: { "conflicts": [Timestamp, Random] },
        )"#,
    );
    assert_eq!(s.points.len(), 4);
    assert_eq!(s.replicates, 1);
    let got: Vec<_> = s
        .points
        .iter()
        .map(|p| {
            (
                p.scenario.clock.fixed_hz,
                p.scenario.world.sites,
                p.scenario.conflicts,
            )
        })
        .collect();
    use ConflictStrategyKind::*;
    assert_eq!(
        got,
        [
            (50.0, 30, Timestamp),
            (50.0, 30, Random),
            (20.0, 120, Timestamp),
            (20.0, 120, Random),
        ]
    );
    // A point that does not set a parameter has its scenario's value.
    assert_eq!(s.parameter_value(2, "world.sites"), "120");
    assert_eq!(s.parameter_value(0, "world.sites"), "30");
    assert_eq!(s.parameter_value(0, "conflicts"), "Timestamp");
    // Without `seed`, a point's seeds start at its scenario's.
    assert_eq!(s.points[0].base_seed, 7);
    assert_eq!(
        s.parameter_names(),
        ["clock.fixed_hz", "world.sites", "conflicts"]
    );
}

#[test]
fn the_fingerprint_changes_with_what_the_runs_are() {
    let text = |n: u32| {
        format!(
            r#"Sweep(name: "f", scenario: "quickstart.ron", grid: {{ "groups[0].count": [10, {n}] }})"#
        )
    };
    assert_eq!(sweep(&text(20)).fingerprint, sweep(&text(20)).fingerprint);
    assert_ne!(sweep(&text(20)).fingerprint, sweep(&text(30)).fingerprint);
}

#[test]
fn the_same_run_gives_the_same_state_and_another_seed_another() {
    let s = sweep(
        r#"Sweep(
            name: "digest",
            scenario: "quickstart.ron",
            fixed: { "clock.duration": 0.3, "world.sites": 30 },
            grid: { "groups[0].count": [20] },
            replicates: 2,
        )"#,
    );
    let digest = |id: u64| {
        let mut h = SimHarness::new(s.scenario(&s.run(id)));
        h.step(30);
        h.state_digest()
    };
    assert_eq!(digest(0), digest(0));
    assert_ne!(digest(0), digest(1));
}

/// The line and column of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    (
        before.matches('\n').count() + 1,
        before.rsplit('\n').next().unwrap().chars().count() + 1,
    )
}

#[test]
fn a_field_that_does_not_exist_is_an_error_at_its_value() {
    let text = r#"Sweep(
    name: "typo",
    scenario: "quickstart.ron",
    grid: {
        "clock.fixed_hz": [50.0],
        "clock.fixed_hzz": [20.0, 30.0],
    },
)"#;
    let e = sweep_error(text);
    assert_eq!((e.line, e.column), position_of(text, "20.0"), "{e}");
    assert!(e.message.contains("fixed_hzz"), "{e}");
    assert_eq!(e.file, beside_scenarios());
}

#[test]
fn a_value_of_the_wrong_type_is_an_error_at_its_value() {
    let text = r#"Sweep(
    name: "types",
    scenario: "quickstart.ron",
    grid: { "groups[0].count": [10, "many"] },
)"#;
    let e = sweep_error(text);
    assert_eq!((e.line, e.column), position_of(text, "\"many\""), "{e}");
    assert!(e.message.contains("groups[0].count"), "{e}");
}

#[test]
fn a_value_the_scenario_refuses_is_an_error_at_its_value() {
    let text = r#"Sweep(
    name: "range",
    scenario: "quickstart.ron",
    sets: [{ "clock.fixed_hz": 50.0 }, { "clock.fixed_hz": -5.0 }],
)"#;
    let e = sweep_error(text);
    assert_eq!((e.line, e.column), position_of(text, "-5.0"), "{e}");
    assert!(e.message.contains("clock.fixed_hz"), "{e}");
}

#[test]
fn malformed_sweeps_are_refused_with_positions() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", grid: { "groups[9].count": [1] })"#,
            "1]",
            "has no element 9",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", grid: { "groups[0]count": [1] })"#,
            "1]",
            "field path",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", grid: { "seed": [1, 2] })"#,
            "1, 2]",
            "the seed is the sweep's own",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", fixed: { "conflicts": Random }, grid: { "conflicts": [Timestamp] })"#,
            "Timestamp]",
            "also in `fixed`",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", grid: { "conflicts": [] })"#,
            "[]",
            "no values",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", replicates: 0)"#,
            "0)",
            "at least 1",
        ),
        (
            r#"Sweep(name: "x", scenario: "missing.ron")"#,
            "\"missing.ron\"",
            "the base scenario",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", fixed: { "clock.duration": None })"#,
            "\"quickstart.ron\"",
            "need an end",
        ),
        (
            r#"Sweep(name: "x", scenario: "quickstart.ron", grid: { "conflicts": [Random], "conflicts": [Timestamp] })"#,
            "",
            "given twice",
        ),
    ];
    for (text, at, message) in cases {
        let e = sweep_error(text);
        assert!(e.message.contains(message), "{text}\n=> {e}");
        if !at.is_empty() {
            assert_eq!((e.line, e.column), position_of(text, at), "{text}\n=> {e}");
        }
        assert!(e.line > 0, "{e}");
    }
}

#[test]
fn grids_too_large_are_refused_before_expanding() {
    let values: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    let text = format!(
        r#"Sweep(name: "big", scenario: "quickstart.ron", grid: {{ "groups[0].count": [{list}], "groups[1].count": [{list}] }}, replicates: 10)"#
    );
    let e = sweep_error(&text);
    assert!(e.message.contains("limit"), "{e}");
}

#[test]
fn the_shipped_sweeps_and_the_documented_ones_are_valid() {
    let folder = common::root().join("scenarios").join("sweeps");
    let mut shipped = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ron") {
            Sweep::load(&path).unwrap_or_else(|e| panic!("{e}"));
            shipped += 1;
        }
    }
    assert!(shipped >= 2);
    // The sweep files shown in the README and in docs/sweeps.md, as if they
    // were in scenarios/sweeps/.
    for doc in ["README.md", "docs/sweeps.md"] {
        let text = std::fs::read_to_string(common::root().join(doc)).unwrap();
        let blocks: Vec<&str> = text
            .split("```ron\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.trim_start().starts_with("Sweep("))
            .collect();
        assert!(!blocks.is_empty(), "{doc} shows a sweep file");
        for block in blocks {
            Sweep::from_ron(block, &folder.join("documented.ron"))
                .unwrap_or_else(|e| panic!("{doc}: {e}\n{block}"));
        }
    }
}
