//! `run --checkpoint` and `continuum resume`: a resumed run ends in the same
//! state as the run never interrupted, at any checkpoint time and on any
//! thread count; SIGTERM leaves a final checkpoint; damaged checkpoints are
//! refused with exit code 2; a checkpoint can start a variant.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::continuum;

fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the command and returns its report.
fn report_of<S: AsRef<OsStr>>(args: &[S], name: &str) -> serde_json::Value {
    let report = dir().join(format!("{name}.json"));
    let _ = std::fs::remove_file(&report);
    let out = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args(args)
        .args(["--quiet".as_ref(), "--report".as_ref(), report.as_os_str()])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

const SCENARIO: &str = "scenarios/arrivals.ron";

fn digest(report: &serde_json::Value) -> String {
    report["state_digest"].as_str().unwrap().to_string()
}

#[test]
fn a_resumed_run_ends_where_the_uninterrupted_one_does() {
    let whole = report_of(
        &[
            "run",
            SCENARIO,
            "--fast",
            "--agents",
            "400",
            "--duration",
            "3",
        ],
        "whole",
    );
    // (checkpoint at, threads before, threads after)
    for (at, before, after) in [("0.5", "1", "2"), ("1.37", "2", "4"), ("2.2", "4", "1")] {
        let ckpt = dir().join(format!("at-{at}.ckpt"));
        let _ = std::fs::remove_file(&ckpt);
        let first = report_of(
            &[
                "run",
                SCENARIO,
                "--fast",
                "--agents",
                "400",
                "--duration",
                at,
                "--threads",
                before,
                "--checkpoint",
                ckpt.to_str().unwrap(),
            ],
            &format!("first-{at}"),
        );
        assert_ne!(digest(&first), digest(&whole));
        let resumed = report_of(
            &[
                "resume",
                ckpt.to_str().unwrap(),
                "--duration",
                "3",
                "--fast",
                "--threads",
                after,
            ],
            &format!("resumed-{at}"),
        );
        assert_eq!(digest(&resumed), digest(&whole), "checkpoint at {at} s");
        let from = resumed["resumed_from"]["virtual_seconds"].as_f64().unwrap();
        assert!((from - at.parse::<f64>().unwrap()).abs() < 1e-6, "{from}");
        assert!(whole["resumed_from"].is_null());
        // The report of the resumed run covers the whole run.
        for counter in ["agent_ticks", "actions_submitted", "conflicts"] {
            assert_eq!(resumed[counter], whole[counter], "{counter}");
        }
        assert_eq!(resumed["pool"], whole["pool"]);
    }
}

#[test]
fn periodic_checkpoints_replace_each_other_and_each_resumes() {
    let ckpt = dir().join("periodic.ckpt");
    let _ = std::fs::remove_file(&ckpt);
    let out = continuum([
        "run",
        SCENARIO,
        "--realtime",
        "--speed",
        "4",
        "--quiet",
        "--agents",
        "200",
        "--duration",
        "2",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--checkpoint-every",
        "0.5",
        "-v",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    // Half a real second, looked at ten times a second: the checkpoints due at
    // 0.5, 1 and 1.5 virtual s (two at least, should a slow update cross two
    // times at once) and 2 s, then the final one.
    let written = log.matches("checkpoint written").count();
    assert!((3..=6).contains(&written), "{written} checkpoints:\n{log}");
    let leftovers: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("periodic.ckpt."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let out = continuum(["resume", ckpt.to_str().unwrap(), "--quiet", "--fast"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_leaves_a_final_checkpoint_that_resumes_to_the_same_state() {
    let whole = report_of(
        &["run", SCENARIO, "--fast", "--duration", "4"],
        "term-whole",
    );
    let ckpt = dir().join("term.ckpt");
    let _ = std::fs::remove_file(&ckpt);
    let mut child = common::start_running(&[
        "run".as_ref(),
        SCENARIO.as_ref(),
        "--realtime".as_ref(),
        "--duration".as_ref(),
        "4".as_ref(),
        "--no-dashboard".as_ref(),
        "--checkpoint".as_ref(),
        ckpt.as_os_str(),
    ]);
    common::signal(&child, "TERM");
    let code = common::wait_at_most(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert!(ckpt.exists(), "no final checkpoint");
    let resumed = report_of(
        &["resume", ckpt.to_str().unwrap(), "--fast"],
        "term-resumed",
    );
    assert_eq!(digest(&resumed), digest(&whole));
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused_with_exit_2() {
    let ckpt = dir().join("good.ckpt");
    let out = continuum([
        "run",
        SCENARIO,
        "--fast",
        "--quiet",
        "--agents",
        "100",
        "--duration",
        "0.5",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let good = std::fs::read(&ckpt).unwrap();
    let mut corrupted = good.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 1;
    let mut other_version = good.clone();
    other_version[8] = 0xee;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated", good[..good.len() - 100].to_vec(), "truncated"),
        ("corrupted", corrupted, "corrupted"),
        ("version", other_version, "format version"),
        ("empty", Vec::new(), "does not start like a checkpoint"),
        (
            "scenario",
            std::fs::read(common::root().join(SCENARIO)).unwrap(),
            "does not start like a checkpoint",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir().join(format!("{name}.ckpt"));
        std::fs::write(&path, bytes).unwrap();
        let out = continuum(["resume", path.to_str().unwrap(), "--quiet"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = continuum(["resume", "/dev/null", "--quiet"]);
    assert_eq!(out.status.code(), Some(2));
    // A run must last past its checkpoint.
    let out = continuum(["resume", ckpt.to_str().unwrap(), "--duration", "0.2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the checkpoint is at 0.5"));
}

#[test]
fn a_checkpoint_starts_variants() {
    let ckpt = dir().join("branch.ckpt");
    let base = [
        "run",
        "scenarios/conflict-storm.ron",
        "--fast",
        "--agents",
        "300",
    ];
    let mut first = base.to_vec();
    first.extend(["--duration", "1", "--checkpoint", ckpt.to_str().unwrap()]);
    report_of(&first, "branch-first");
    let ckpt = ckpt.to_str().unwrap();
    let same = report_of(&["resume", ckpt, "--duration", "2"], "branch-same");
    let random = report_of(
        &["resume", ckpt, "--duration", "2", "--conflicts", "random"],
        "branch-random",
    );
    let more = report_of(
        &["resume", ckpt, "--duration", "2", "--add-agents", "150"],
        "branch-more",
    );
    assert_ne!(digest(&random), digest(&same));
    assert_ne!(digest(&more), digest(&same));
    let requested = |r: &serde_json::Value| r["pool"]["requested"].as_u64().unwrap();
    assert_eq!(requested(&more), requested(&same) + 150);
    let out = continuum(["resume", ckpt, "--conflicts", "loudest"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The standard models resume exactly: flocking's state is the engine's;
/// Schelling's residents and grid and wolf-sheep's animals, grass and books
/// are registered with checkpoints by their plugins.
#[test]
fn the_models_resume_exactly() {
    for (model, whole_s, at) in [
        ("flocking", "2", "1"),
        ("schelling", "6", "3"),
        ("wolf-sheep", "60", "25"),
    ] {
        let scenario = format!("scenarios/models/{model}.ron");
        let whole = report_of(
            &["run", &scenario, "--duration", whole_s],
            &format!("{model}-whole"),
        );
        let ckpt = dir().join(format!("{model}.ckpt"));
        let _ = std::fs::remove_file(&ckpt);
        let ckpt_arg = ckpt.to_str().unwrap();
        report_of(
            &["run", &scenario, "--duration", at, "--checkpoint", ckpt_arg],
            &format!("{model}-first"),
        );
        let resumed = report_of(
            &["resume", ckpt_arg, "--duration", whole_s],
            &format!("{model}-resumed"),
        );
        assert_eq!(digest(&resumed), digest(&whole), "{model}");
    }
}
