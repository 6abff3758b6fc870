//! `continuum sweep`: tables, parallel runs, interruption and resumption,
//! shards and their merge, and sweep files refused before anything runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{continuum, signal, wait_at_most};

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("continuum-sweeps-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const BASE: &str = r#"Scenario(
    name: "sweep-test",
    seed: 3,
    world: (size: (300.0, 300.0), regions: (2, 2), sites: 30),
    clock: (fixed_hz: 50.0, duration: 2.0),
    groups: [
        (kind: "explorer", count: 20),
        (kind: "analyzer", count: 10),
        (kind: "controller", count: 10),
    ],
)
"#;

/// Figures that do not depend on the machine or its load: two tables of
/// them are equal when their runs simulated the same thing.
const SIMULATED: &str =
    r#"["state_digest", "agent_ticks", "conflicts", "actions_applied", "world.harvested"]"#;

/// Writes the base scenario and a sweep file over it into `dir`; gives the
/// sweep file's path.
fn write_sweep(dir: &Path, body: &str) -> PathBuf {
    std::fs::write(dir.join("base.ron"), BASE).unwrap();
    let path = dir.join("sweep.ron");
    std::fs::write(
        &path,
        format!("Sweep(\n    name: \"test\",\n    scenario: \"base.ron\",\n{body}\n)\n"),
    )
    .unwrap();
    path
}

fn run_sweep(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["sweep".as_ref()];
    all.extend(args.iter().map(|a| a.as_ref()));
    continuum(all)
}

fn table(dir: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(dir.join("runs.csv")).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = vec![header];
    for record in reader.records() {
        rows.push(record.unwrap().iter().map(str::to_owned).collect());
    }
    rows
}

fn column(rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rows[1..].iter().map(|r| r[i].clone()).collect()
}

fn assert_ok(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_grid_gives_one_row_per_run_with_its_parameters_and_figures() {
    let dir = scratch("grid");
    let sweep = write_sweep(
        &dir,
        r#"    grid: { "conflicts": [Timestamp, Random], "groups[0].count": [20, 40] },
    replicates: 2,
    seed: 10,"#,
    );
    let out = dir.join("out");
    assert_ok(&run_sweep(&[
        &sweep, &"--out", &out, &"--jobs", &"2", &"--quiet",
    ]));
    let rows = table(&out);
    assert_eq!(rows.len(), 1 + 8);
    assert_eq!(
        &rows[0][..6],
        [
            "run",
            "point",
            "replicate",
            "seed",
            "param.conflicts",
            "param.groups[0].count"
        ]
    );
    // Every report figure is a column (all of them, by default).
    for figure in [
        "state_digest",
        "conflicts",
        "agent_ticks",
        "world.harvested",
        "pool.active",
        "wall_seconds",
    ] {
        assert!(rows[0].iter().any(|c| c == figure), "no column {figure}");
    }
    assert_eq!(
        column(&rows, "run"),
        ["0", "1", "2", "3", "4", "5", "6", "7"]
    );
    assert_eq!(
        column(&rows, "seed"),
        ["10", "11", "10", "11", "10", "11", "10", "11"]
    );
    assert_eq!(
        column(&rows, "param.conflicts"),
        [
            "Timestamp",
            "Timestamp",
            "Timestamp",
            "Timestamp",
            "Random",
            "Random",
            "Random",
            "Random"
        ]
    );
    assert_eq!(
        column(&rows, "param.groups[0].count"),
        ["20", "20", "40", "40", "20", "20", "40", "40"]
    );
    // The parameters reached the runs: 20 more explorers, 10 Hz for 2 s.
    let ticks: Vec<u64> = column(&rows, "agent_ticks")
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(ticks, [800, 800, 1200, 1200, 800, 800, 1200, 1200]);
    let digests = column(&rows, "state_digest");
    assert_ne!(digests[0], digests[1], "two seeds, one state");
    // Each point's scenario is kept, and repeats its runs.
    let point = out.join("scenarios").join("point-0003.ron");
    let again = continuum([
        "run".as_ref(),
        point.as_os_str(),
        "--seed".as_ref(),
        "11".as_ref(),
        "--quiet".as_ref(),
        "--report".as_ref(),
        dir.join("again.json").as_os_str(),
    ]);
    assert_ok(&again);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("again.json")).unwrap()).unwrap();
    assert_eq!(report["state_digest"].as_str().unwrap(), digests[7]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_runs_give_the_same_table_whatever_the_jobs_and_threads() {
    let dir = scratch("jobs");
    let sweep = write_sweep(
        &dir,
        &format!(
            r#"    grid: {{ "conflicts": [PriorityThenTimestamp, Random] }},
    replicates: 3,
    collect: {SIMULATED},"#
        ),
    );
    let one = dir.join("one");
    let two = dir.join("two");
    assert_ok(&run_sweep(&[
        &sweep,
        &"--out",
        &one,
        &"--jobs",
        &"1",
        &"--threads",
        &"1",
        &"--quiet",
    ]));
    assert_ok(&run_sweep(&[
        &sweep,
        &"--out",
        &two,
        &"--jobs",
        &"2",
        &"--threads",
        &"2",
        &"--quiet",
    ]));
    let a = std::fs::read_to_string(one.join("runs.csv")).unwrap();
    let b = std::fs::read_to_string(two.join("runs.csv")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 1 + 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shards_merge_into_the_table_of_the_whole_sweep() {
    let dir = scratch("shards");
    let sweep = write_sweep(
        &dir,
        &format!(
            r#"    grid: {{ "groups[1].count": [5, 10, 15] }},
    replicates: 2,
    collect: {SIMULATED},
    series: 0.5,"#
        ),
    );
    let whole = dir.join("whole");
    assert_ok(&run_sweep(&[&sweep, &"--out", &whole, &"--quiet"]));
    let mut parts = Vec::new();
    for k in 1..=3 {
        let part = dir.join(format!("part{k}"));
        assert_ok(&run_sweep(&[
            &sweep,
            &"--out",
            &part,
            &"--shard",
            &format!("{k}/3"),
            &"--quiet",
        ]));
        assert_eq!(
            table(&part).len(),
            1 + 2,
            "part {k} holds a third of the runs"
        );
        parts.push(part);
    }
    let merged = dir.join("merged");
    let output = continuum(
        ["sweep", "merge"]
            .iter()
            .map(|s| s.as_ref())
            .chain(parts.iter().rev().map(|p| p.as_os_str()))
            .chain(["--out".as_ref(), merged.as_os_str()]),
    );
    assert_ok(&output);
    assert_eq!(
        std::fs::read_to_string(merged.join("runs.csv")).unwrap(),
        std::fs::read_to_string(whole.join("runs.csv")).unwrap()
    );
    // The time series too, in `run` and `step` order (wall-clock columns aside).
    let simulated = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    let series = simulated(&whole.join("series.csv"));
    assert_eq!(series[0], "run,step,virtual_time");
    assert_eq!(
        series.len(),
        1 + 6 * 4,
        "four rows (0.5 s apart) for each of 6 runs"
    );
    assert_eq!(simulated(&merged.join("series.csv")), series);

    // A part of another sweep is refused.
    std::fs::create_dir_all(dir.join("other-sweep")).unwrap();
    let other_sweep = write_sweep(
        &dir.join("other-sweep"),
        r#"    grid: { "groups[1].count": [5, 10, 16] },"#,
    );
    let other_out = dir.join("other");
    assert_ok(&run_sweep(&[
        &other_sweep,
        &"--out",
        &other_out,
        &"--shard",
        &"2/3",
        &"--quiet",
    ]));
    let refused = continuum([
        "sweep".as_ref(),
        "merge".as_ref(),
        parts[0].as_os_str(),
        other_out.as_os_str(),
        "--out".as_ref(),
        dir.join("bad-merge").as_os_str(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another sweep"));
    assert!(!dir.join("bad-merge").join("runs.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_sweep_keeps_its_runs_and_resumes_without_running_them_again() {
    let dir = scratch("resume");
    // Runs of about a second each, one at a time.
    let sweep = write_sweep(
        &dir,
        r#"    fixed: { "clock.duration": 150.0, "groups[0].count": 200 },
    grid: { "conflicts": [Timestamp, Random] },
    replicates: 2,
    collect: ["state_digest", "wall_seconds"],"#,
    );
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args([
            "sweep".as_ref(),
            sweep.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
        .args(["--jobs", "1", "--threads", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) for the first finished run's row, then stop the sweep.
    let deadline = Instant::now() + Duration::from_secs(120);
    while table_rows(&out) < 1 {
        assert!(Instant::now() < deadline, "no run finished in time");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "TERM");
    assert_eq!(wait_at_most(&mut child, Duration::from_secs(60)), Some(130));
    let kept = table(&out);
    let finished = kept.len() - 1;
    assert!((1..4).contains(&finished), "{finished} runs kept");

    // Without --resume the folder is not touched.
    let refused = run_sweep(&[&sweep, &"--out", &out, &"--quiet"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(table(&out), kept);

    let resumed = run_sweep(&[&sweep, &"--out", &out, &"--resume", &"--jobs", &"1"]);
    assert_ok(&resumed);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        stdout.contains(&format!("{} to run", 4 - finished)),
        "{stdout}"
    );
    let all = table(&out);
    assert_eq!(column(&all, "run"), ["0", "1", "2", "3"]);
    // The runs kept were not run again: their wall-clock times are unchanged.
    assert_eq!(&all[..=finished], &kept[..]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn table_rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs.csv")).map_or(0, |t| t.lines().count().saturating_sub(1))
}

#[test]
fn bad_sweep_files_are_refused_before_any_run_with_their_position() {
    let dir = scratch("bad");
    let cases = [
        (
            r#"    grid: { "clock.fixed_hzz": [20.0] },"#,
            "sweep.ron:4:33",
            "fixed_hzz",
        ),
        (
            r#"    grid: { "groups[0].count": [10, "many"] },"#,
            "sweep.ron:4:37",
            "groups[0].count",
        ),
        (
            r#"    collect: ["state_digest", "harvest"],"#,
            "sweep.ron:4:31",
            "no figure `harvest`",
        ),
        (r#"    replicates: -1,"#, "sweep.ron:4:18", "replicates"),
    ];
    for (body, position, message) in cases {
        let sweep = write_sweep(&dir, body);
        let out = dir.join("out");
        let output = run_sweep(&[&sweep, &"--out", &out]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{body}: {stderr}");
        assert!(
            stderr.contains(position),
            "{body}: expected {position} in {stderr}"
        );
        assert!(
            stderr.contains(message),
            "{body}: expected {message} in {stderr}"
        );
        assert!(
            !out.exists(),
            "{body}: nothing is written before the sweep is valid"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_sweep_does_not_resume_into_old_results() {
    let dir = scratch("changed");
    let sweep = write_sweep(&dir, r#"    grid: { "groups[0].count": [10, 20] },"#);
    let out = dir.join("out");
    assert_ok(&run_sweep(&[&sweep, &"--out", &out, &"--quiet"]));
    let before = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let sweep = write_sweep(&dir, r#"    grid: { "groups[0].count": [10, 30] },"#);
    let output = run_sweep(&[&sweep, &"--out", &out, &"--resume", &"--quiet"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("another sweep"));
    assert_eq!(
        std::fs::read_to_string(out.join("runs.csv")).unwrap(),
        before
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_slurm_array_script_runs_parts_that_merge_into_the_whole() {
    let dir = scratch("slurm");
    let sweep = write_sweep(
        &dir,
        &format!(
            r#"    grid: {{ "conflicts": [Timestamp, Random] }},
    replicates: 2,
    collect: {SIMULATED},"#
        ),
    );
    let whole = dir.join("whole");
    assert_ok(&run_sweep(&[&sweep, &"--out", &whole, &"--quiet"]));
    let script = common::root().join("docs/cluster/slurm-array.sh");
    let parts = dir.join("parts");
    // An array of ids 0-2, as `sbatch --array=0-2` numbers it.
    for task in 0..3 {
        let status = Command::new("bash")
            .arg(&script)
            .arg(&sweep)
            .arg(&parts)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("CONTINUUM", env!("CARGO_BIN_EXE_continuum"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let merged = dir.join("merged");
    let mut args: Vec<PathBuf> = vec!["sweep".into(), "merge".into()];
    args.extend((1..=3).map(|k| parts.join(format!("part-{k}"))));
    args.extend(["--out".into(), merged.clone()]);
    assert_ok(&continuum(&args));
    assert_eq!(
        std::fs::read_to_string(merged.join("runs.csv")).unwrap(),
        std::fs::read_to_string(whole.join("runs.csv")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mpirun -n 2 continuum sweep` (the `mpi` feature) gives the table of
/// `--jobs 2`. Needs Open MPI's `mpirun` (`.ci/mpi-setup.sh`); the settings
/// are those of tests/mpi_share.rs: root allowed, oversubscription allowed.
#[cfg(feature = "mpi")]
#[test]
fn mpi_ranks_give_the_table_of_local_jobs() {
    let dir = scratch("mpi");
    let sweep = write_sweep(
        &dir,
        &format!(
            r#"    grid: {{ "conflicts": [PriorityThenTimestamp, Timestamp, Random], "groups[0].count": [20, 40] }},
    replicates: 2,
    collect: {SIMULATED},"#
        ),
    );
    let local = dir.join("local");
    assert_ok(&run_sweep(&[
        &sweep, &"--out", &local, &"--jobs", &"2", &"--quiet",
    ]));
    let ranks = dir.join("ranks");
    let mut mpirun = Command::new("mpirun");
    mpirun
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .args(["-n", "2", env!("CARGO_BIN_EXE_continuum"), "sweep"])
        .arg(&sweep)
        .arg("--out")
        .arg(&ranks)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let mut child = mpirun.spawn().expect("mpirun runs (see .ci/mpi-setup.sh)");
    let code = wait_at_most(&mut child, Duration::from_secs(120));
    let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("on 2 MPI ranks"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(ranks.join("runs.csv")).unwrap(),
        std::fs::read_to_string(local.join("runs.csv")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
