//! Bad scenario files and arguments give a clear error naming the file, line,
//! column and field, and exit code 2: never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::continuum;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"Scenario(
    name: "good",
    clock: (fixed_hz: 100.0, duration: 1.0), pacing: (mode: Fast),
    groups: [
        (kind: "explorer", count: 10),
        (kind: "controller", count: 5, tick_hz: 5.0),
    ],
)
"#;

/// Runs `validate` and `run` on `text` with `line` replaced by `with`; both must
/// fail with exit code 2 and an error that contains every one of `expected`.
fn rejects(name: &str, line: &str, with: &str, expected: &[&str]) {
    assert!(
        GOOD.contains(line),
        "test setup: {line:?} is not in the good scenario"
    );
    let path = write(name, &GOOD.replace(line, with));
    let path = path.to_str().unwrap();
    for args in [["validate", path].as_slice(), &["run", path, "--quiet"]] {
        let command = args[0];
        let out = continuum(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command} {name}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        for e in expected {
            assert!(
                stderr.contains(e),
                "{command} {name}: expected {e:?} in:\n{stderr}"
            );
        }
        assert!(out.stdout.is_empty(), "{command} {name} printed to stdout");
    }
}

#[test]
fn the_good_scenario_and_every_shipped_one_validate() {
    let path = write("good.ron", GOOD);
    let out = continuum(["validate", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    for entry in std::fs::read_dir(common::root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let out = continuum(["validate", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    rejects(
        "syntax.ron",
        r#"(kind: "explorer", count: 10),"#,
        r#"(kind: "explorer" count: 10),"#,
        &["syntax.ron:5:27:", "groups[0]", "Expected comma"],
    );
}

#[test]
fn an_unknown_field_is_an_error() {
    rejects(
        "unknown-field.ron",
        r#"(kind: "explorer", count: 10),"#,
        r#"(kind: "explorer", count: 10, tick_hzz: 5.0),"#,
        &["unknown-field.ron:5:39:", "groups[0]", "tick_hzz"],
    );
}

#[test]
fn a_negative_rate_is_an_error_at_the_value() {
    rejects(
        "negative-rate.ron",
        "tick_hz: 5.0",
        "tick_hz: -5.0",
        &[
            "negative-rate.ron:6:49:",
            "`groups[1].tick_hz`",
            "positive rate",
            "-5",
        ],
    );
}

#[test]
fn a_group_of_zero_agents_is_an_error() {
    rejects(
        "zero.ron",
        r#"(kind: "explorer", count: 10),"#,
        r#"(kind: "explorer", count: 0),"#,
        &["zero.ron:5:35:", "`groups[0].count`", "at least 1"],
    );
}

#[test]
fn a_scenario_without_agents_is_an_error() {
    let path = write("empty.ron", "Scenario(name: \"empty\", groups: [])\n");
    let out = continuum(["validate", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("empty.ron:1:33:") && stderr.contains("`groups`"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    rejects(
        "kind.ron",
        r#"kind: "controller""#,
        r#"kind: "controler""#,
        &[
            "kind.ron:6:16:",
            "`groups[1].kind`",
            "\"controler\"",
            "\"controller\"",
        ],
    );
}

#[test]
fn a_rate_faster_than_the_clock_is_an_error() {
    rejects(
        "fast.ron",
        "tick_hz: 5.0",
        "tick_hz: 500.0",
        &["fast.ron:6:49:", "`groups[1].tick_hz`", "fixed_hz"],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_an_error() {
    rejects(
        "type.ron",
        r#"(kind: "explorer", count: 10),"#,
        r#"(kind: "explorer", count: "ten"),"#,
        &["type.ron:5:34:", "groups[0].count"],
    );
}

#[test]
fn a_bad_clock_is_an_error() {
    rejects(
        "clock.ron",
        "fixed_hz: 100.0",
        "fixed_hz: 0.0",
        &["clock.ron:3:23:", "`clock.fixed_hz`"],
    );
}

#[test]
fn pacing_in_the_clock_section_says_where_it_went() {
    rejects(
        "old-clock.ron",
        "clock: (fixed_hz: 100.0, duration: 1.0), pacing: (mode: Fast),",
        "clock: (fixed_hz: 100.0, mode: Fast, duration: 1.0),",
        &["old-clock.ron:3:30:", "`clock.mode`", "pacing: (mode: Fast"],
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let out = continuum(["run", "no/such/scenario.ron"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/scenario.ron: cannot read"));
}

#[test]
fn bad_arguments_exit_with_2() {
    let path = write("args.ron", GOOD);
    let path = path.to_str().unwrap();
    for args in [
        vec!["run", path, "--threads", "0"],
        vec!["run", path, "--speed", "-1"],
        vec!["run", path, "--duration", "0"],
        vec!["run", path, "--agents", "0"],
        vec!["run", path, "--fast", "--realtime"],
        vec!["run", path, "--no-such-flag"],
        vec!["frobnicate"],
    ] {
        let out = continuum(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// SIGTERM (like Ctrl-C) ends a run cleanly: exit 0, and the report covers what
/// was simulated.
#[test]
fn an_interrupted_run_still_writes_its_report() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interrupted.json");
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args([
            "run",
            "scenarios/seed-1000.ron",
            "--no-dashboard",
            "--report",
        ])
        .arg(&report)
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first status line: the run is under way.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    assert!(lines.any(|l| l.unwrap().contains("real-time ratio")));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert!(json["virtual_seconds"].as_f64().unwrap() > 0.0);
    assert!(json["virtual_seconds"].as_f64().unwrap() < 30.0);
}
