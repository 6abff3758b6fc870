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
        // Sweep files (scenarios/sweeps/) are checked by the sweep tests.
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
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
/// Starts `continuum run scenarios/seed-1000.ron` (realtime, 30 virtual s) with
/// status lines and `extra` arguments, and waits for its first status line.
fn start_long_run(extra: &[&std::ffi::OsStr]) -> std::process::Child {
    let mut args: Vec<&std::ffi::OsStr> = ["run", "scenarios/seed-1000.ron", "--no-dashboard"]
        .map(std::ffi::OsStr::new)
        .to_vec();
    args.extend(extra);
    common::start_running(&args)
}

/// SIGINT and SIGHUP end a run like SIGTERM, promptly, with the report and the
/// time series (renamed from its temporary name) written.
#[test]
fn every_stop_signal_ends_a_run_with_its_report() {
    use common::{signal, wait_at_most};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("signals");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["INT", "HUP", "TERM"] {
        let report = dir.join(format!("{name}.json"));
        let metrics = dir.join(format!("{name}.csv"));
        let _ = std::fs::remove_file(&report);
        let _ = std::fs::remove_file(&metrics);
        let mut child = start_long_run(&[
            "--report".as_ref(),
            report.as_os_str(),
            "--metrics".as_ref(),
            metrics.as_os_str(),
        ]);
        signal(&child, name);
        let code = wait_at_most(&mut child, std::time::Duration::from_secs(20));
        assert_eq!(code, Some(0), "SIG{name}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(json["interrupted"], true, "SIG{name}");
        // Renamed from its temporary name (empty if the run ended within the
        // first interval).
        assert!(metrics.exists(), "SIG{name}");
        let temporary = continuum::atomic_file::temporary_name(&metrics);
        let temporary = temporary.file_name().unwrap().to_str().unwrap();
        let temporary = temporary.replace(&std::process::id().to_string(), &child.id().to_string());
        assert!(!dir.join(temporary).exists(), "SIG{name}");
    }
}

/// An output that is the scenario itself (by any name) or another output is
/// refused before the run, and the scenario is left alone.
#[test]
fn an_output_that_is_the_scenario_or_another_output_is_refused() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("same-file");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("q.ron");
    std::fs::write(&scenario, GOOD).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("q.ron", dir.join("link.ron")).unwrap();
    std::fs::hard_link(&scenario, dir.join("hard.ron")).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_continuum"))
            .args(["run", "q.ron", "--quiet"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let absolute = scenario.to_str().unwrap();
    let mut cases = vec![
        vec!["--report", "q.ron"],
        vec!["--report", "./q.ron"],
        vec!["--report", absolute],
        vec!["--report", "hard.ron"],
        vec!["--metrics", "q.ron.csv", "--report", "./q.ron.csv"],
        vec!["--report", "out/r.json", "--metrics", "out/../out/r.json"],
    ];
    if cfg!(unix) {
        cases.push(vec!["--report", "link.ron"]);
    }
    for args in cases {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("same file") || stderr.contains("the scenario file"),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&scenario).unwrap(), GOOD);
    }
    assert!(!dir.join("q.ron.csv").exists());
}

/// Outputs that cannot be written are refused before the run (exit 2), not
/// found out after it.
#[test]
fn an_unwritable_output_is_refused_before_the_run() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unwritable");
    std::fs::create_dir_all(dir.join("a-directory")).unwrap();
    std::fs::write(dir.join("a-file"), "").unwrap();
    let scenario = write("unwritable.ron", GOOD);
    for (flag, path) in [
        ("--report", dir.join("a-directory")),
        ("--report", dir.join("a-file/report.json")),
        ("--metrics", dir.join("a-file/m.csv")),
        ("--plot", dir.join("a-file/p.svg")),
    ] {
        let started = std::time::Instant::now();
        let out = continuum([
            "run".as_ref(),
            scenario.as_os_str(),
            "--quiet".as_ref(),
            "--duration".as_ref(),
            "600".as_ref(),
            flag.as_ref(),
            path.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {path:?}: {stderr}");
        assert!(stderr.contains("cannot write"), "{stderr}");
        assert!(started.elapsed().as_secs() < 30, "the run went ahead");
    }
}

#[test]
fn a_speed_beyond_the_maximum_is_refused() {
    let out = continuum([
        "run",
        "scenarios/quickstart.ron",
        "--realtime",
        "--speed",
        "1e300",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("maximum") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// An interval shorter than a step gives a row every step (it used to hang).
#[test]
fn a_tiny_metrics_interval_gives_a_row_per_step() {
    let metrics = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tiny-interval.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args([
            "run",
            "scenarios/quickstart.ron",
            "--quiet",
            "--duration",
            "2",
        ])
        .args(["--metrics-interval", "1e-300", "--metrics"])
        .arg(&metrics)
        .current_dir(common::root())
        .spawn()
        .unwrap();
    assert_eq!(
        common::wait_at_most(&mut child, std::time::Duration::from_secs(60)),
        Some(0)
    );
    let rows = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(rows.lines().count(), 1 + 200, "a header and 200 steps");
}

/// A closed stdout (`| head`) neither panics nor loses the report.
#[test]
fn a_closed_stdout_loses_nothing_but_the_summary() {
    use std::process::Stdio;
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("closed-stdout.json");
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args([
            "run",
            "scenarios/quickstart.ron",
            "--duration",
            "5",
            "--report",
        ])
        .arg(&report)
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["interrupted"], false);
}

/// A report that cannot be written at the end of the run leaves no partial
/// file, and the previous report as it was.
#[test]
fn a_failed_report_write_keeps_the_previous_report() {
    use common::{signal, wait_at_most};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("failed-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.json");
    std::fs::write(&report, "previous").unwrap();
    let mut child = start_long_run(&["--report".as_ref(), report.as_os_str()]);
    // The run is under way (its outputs were checked): make the temporary
    // name it writes the report under a directory, so that creating it fails.
    let blocker = dir.join(format!(".report.json.{}.tmp", child.id()));
    std::fs::create_dir(&blocker).unwrap();
    signal(&child, "TERM");
    let code = wait_at_most(&mut child, std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "previous");
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, [blocker.file_name().unwrap(), "report.json".as_ref()]);
}

#[test]
fn a_budget_too_small_for_max_agents_is_refused_with_its_figures() {
    rejects(
        "budget-too-small.ron",
        "    name: \"good\",",
        "    name: \"good\", max_agents: 1000, memory: (budget: Bytes(100000)),",
        &[
            "memory.budget: 100000 bytes is too small for max_agents = 1000",
            "80 bytes per agent",
            "engine's own state takes",
            "bytes are needed",
        ],
    );
}
