//! `continuum_cli::cluster` under a real `mpirun`: the `mpi_share` example
//! shares its tasks among the ranks, and rank 0 prints what came back.
//!
//! Needs MPI's `mpirun` on the `PATH` (`.ci/mpi-setup.sh` installs Open MPI).
//! Cargo tells an integration test where the package's binaries are, not its
//! examples, and `cargo test --example` builds an example as a test harness
//! rather than as the program. So this test is its own MPI program: it
//! includes the example's source, and started with `CONTINUUM_MPI_SHARE_RANK`
//! set (as it starts itself under `mpirun`) it runs the example's `main`
//! instead of its checks. The program under test is then always built from
//! the same sources by the same `cargo` invocation, and one command runs it:
//!
//! ```text
//! cargo test -p continuum-cli --features mpi --test mpi_share
//! ```
//!
//! That needs a harness of its own (`harness = false`): the functions below
//! run one after the other, each a test case; arguments that do not start
//! with `-` select the cases whose names contain them, as libtest's do.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::catch_unwind;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The example, run by each rank when `CONTINUUM_MPI_SHARE_RANK` is set.
#[path = "../examples/mpi_share.rs"]
mod program;

/// Set in the environment of the ranks: the process is a rank of the example,
/// not the test.
const RANK: &str = "CONTINUUM_MPI_SHARE_RANK";

/// How long a job may take before the test fails (each takes about a second).
const LIMIT: Duration = Duration::from_secs(120);

/// This test's own executable: the program the ranks run.
fn program() -> PathBuf {
    std::env::current_exe().expect("the test knows its own path")
}

/// `mpirun -n <ranks>` with the settings this machine and CI need, all here:
/// - running as root (CI and these machines run as root) needs Open MPI's
///   two confirmations;
/// - more ranks than cores (three ranks on a two-core machine) needs
///   oversubscription allowed.
///
/// They are set through the environment, not as options, so that MPICH's
/// `mpirun`, which knows none of them, ignores them. `mpirun` passes its
/// environment on to the ranks, `RANK` with it.
fn mpirun(ranks: usize) -> Command {
    let mut command = Command::new("mpirun");
    command
        .env(RANK, "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .args(["-n", &ranks.to_string()])
        .arg(program());
    command
}

/// Runs `command` to its end, at most `LIMIT`; sends SIGTERM (which `mpirun`
/// passes on to its ranks) and fails if it takes longer.
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs (is Open MPI installed? see .ci/mpi-setup.sh)");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(LIMIT) {
        Ok(output) => output.expect("the job's output can be read"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            panic!("the MPI job did not end within {LIMIT:?}");
        }
    }
}

/// What a run of the example printed.
#[derive(Debug)]
struct Shared {
    /// Rank 0's `task` lines, in the order printed: id, result's number, the
    /// rank that ran it, result's length.
    delivered: Vec<(u64, u64, usize, usize)>,
    /// The `ranks` line: how many ranks ran a task.
    ranks: usize,
    /// The `done` line: what `share` returned on rank 0.
    done: usize,
    /// The `ran` lines of every rank: the ids each rank ran.
    ran: BTreeMap<usize, Vec<u64>>,
}

/// Checks that `output` is a successful run and reads it.
fn parse(output: &Output) -> Shared {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the job failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let number = |field: Option<&str>, line: &str| -> u64 {
        field
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("malformed line {line:?} in:\n{stdout}\n{stderr}"))
    };
    let (mut delivered, mut ranks, mut done) = (Vec::new(), None, None);
    for line in stdout.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("task") => {
                let id = number(fields.next(), line);
                let square = number(fields.next(), line);
                assert_eq!(fields.next(), Some("rank"), "{line}");
                let rank = number(fields.next(), line) as usize;
                assert_eq!(fields.next(), Some("bytes"), "{line}");
                let bytes = number(fields.next(), line) as usize;
                delivered.push((id, square, rank, bytes));
            }
            Some("ranks") => ranks = Some(number(fields.next(), line) as usize),
            Some("done") => done = Some(number(fields.next(), line) as usize),
            _ => panic!("unexpected line {line:?} on stdout:\n{stdout}"),
        }
    }
    let mut ran: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for line in stderr.lines().filter(|l| l.starts_with("ran ")) {
        let mut fields = line.split_whitespace().skip(1);
        let id = number(fields.next(), line);
        assert_eq!(fields.next(), Some("rank"), "{line}");
        let rank = number(fields.next(), line) as usize;
        ran.entry(rank).or_default().push(id);
    }
    Shared {
        delivered,
        ranks: ranks.unwrap_or_else(|| panic!("no `ranks` line:\n{stdout}\n{stderr}")),
        done: done.unwrap_or_else(|| panic!("no `done` line:\n{stdout}\n{stderr}")),
        ran,
    }
}

/// Runs the example on `ranks` ranks with `args`.
fn share(ranks: usize, args: &[&str]) -> Shared {
    let mut command = mpirun(ranks);
    command.args(args);
    parse(&run(command))
}

/// Checks that every task that ran was delivered once, by the rank that ran
/// it, with the right result, and that `share` counted them; gives the ids
/// delivered, in order.
fn check_consistent(shared: &Shared) -> Vec<u64> {
    let ids: Vec<u64> = shared.delivered.iter().map(|&(id, ..)| id).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a task delivered twice: {ids:?}");
    assert!(
        ids.is_sorted(),
        "rank 0 prints the results sorted by id: {ids:?}"
    );
    assert_eq!(shared.done, ids.len(), "share's count");
    for &(id, square, rank, _) in &shared.delivered {
        assert_eq!(square, id * id, "task {id}'s result");
        assert!(
            shared.ran.get(&rank).is_some_and(|ran| ran.contains(&id)),
            "task {id} delivered as run by rank {rank}, which did not run it: {:?}",
            shared.ran
        );
    }
    let ran: Vec<u64> = shared.ran.values().flatten().copied().collect();
    let ran_unique: BTreeSet<u64> = ran.iter().copied().collect();
    assert_eq!(
        ran_unique.len(),
        ran.len(),
        "a task ran twice: {:?}",
        shared.ran
    );
    assert_eq!(
        ran_unique, unique,
        "every task that ran is delivered, and nothing else"
    );
    let working: BTreeSet<usize> = shared
        .delivered
        .iter()
        .map(|&(_, _, rank, _)| rank)
        .collect();
    assert_eq!(shared.ranks, working.len(), "the `ranks` line");
    ids
}

fn forty_tasks_are_shared_by_two_ranks() {
    let shared = share(2, &["--tasks", "40", "--millis", "20"]);
    assert_eq!(check_consistent(&shared), (0..40).collect::<Vec<_>>());
    // 40 tasks of 20 ms: rank 1 is free long before rank 0 could run them all.
    assert_eq!(shared.ranks, 2, "both ranks ran tasks: {:?}", shared.ran);
}

fn no_tasks() {
    let shared = share(2, &["--tasks", "0"]);
    assert!(check_consistent(&shared).is_empty());
    assert_eq!(shared.ranks, 0);
}

fn one_task_on_two_ranks() {
    let shared = share(2, &["--tasks", "1"]);
    assert_eq!(check_consistent(&shared), [0]);
}

fn fewer_tasks_than_workers() {
    let shared = share(3, &["--tasks", "2", "--millis", "20"]);
    assert_eq!(check_consistent(&shared), [0, 1]);
}

fn three_ranks_share_forty_tasks() {
    let shared = share(3, &["--tasks", "40", "--millis", "20"]);
    assert_eq!(check_consistent(&shared), (0..40).collect::<Vec<_>>());
    assert_eq!(shared.ranks, 3, "every rank ran tasks: {:?}", shared.ran);
}

fn large_results_arrive_whole() {
    // A megabyte goes by MPI's rendezvous protocol (and, between ranks on one
    // machine, by a direct copy from the other process), not eagerly.
    let shared = share(
        2,
        &[
            "--tasks",
            "8",
            "--millis",
            "20",
            "--result-bytes",
            "1000000",
        ],
    );
    assert_eq!(check_consistent(&shared), (0..8).collect::<Vec<_>>());
    assert!(
        shared
            .delivered
            .iter()
            .all(|&(.., bytes)| bytes == 1_000_000),
        "{:?}",
        shared.delivered
    );
}

fn tasks_can_run_child_processes() {
    // A sweep runs one simulation per task as a child process of the rank.
    let shared = share(
        2,
        &["--tasks", "20", "--millis", "5", "--spawn", "/bin/true"],
    );
    assert_eq!(check_consistent(&shared), (0..20).collect::<Vec<_>>());
    assert_eq!(shared.ranks, 2, "both ranks ran tasks: {:?}", shared.ran);
}

fn a_stop_on_a_worker_rank_stops_handing_out() {
    let shared = share(
        2,
        &[
            "--tasks",
            "40",
            "--millis",
            "20",
            "--stop-rank",
            "1",
            "--stop-after",
            "2",
        ],
    );
    check_consistent(&shared);
    // Rank 1 tells rank 0 of its stop before it sends the second result,
    // which is also its request for a third task.
    assert_eq!(
        shared.ran.get(&1).map(Vec::len),
        Some(2),
        "{:?}",
        shared.ran
    );
    assert!(
        shared.done < 40,
        "tasks went on being handed out: {}",
        shared.done
    );
}

fn a_stop_on_rank_0_stops_handing_out() {
    let shared = share(
        2,
        &[
            "--tasks",
            "40",
            "--millis",
            "20",
            "--stop-rank",
            "0",
            "--stop-after",
            "2",
        ],
    );
    check_consistent(&shared);
    // Rank 0 looks at its flag before it hands out anything.
    assert_eq!(
        shared.ran.get(&0).map(Vec::len),
        Some(2),
        "{:?}",
        shared.ran
    );
    assert!(
        shared.done < 40,
        "tasks went on being handed out: {}",
        shared.done
    );
}

fn a_single_rank_works_alone() {
    let mut alone = Command::new(program());
    alone.env(RANK, "1");
    let alone = parse(&run(alone));
    assert_eq!(check_consistent(&alone), (0..40).collect::<Vec<_>>());
    assert_eq!(alone.ran.keys().collect::<Vec<_>>(), [&0]);

    let one_rank = share(1, &["--tasks", "5", "--millis", "1"]);
    assert_eq!(check_consistent(&one_rank), (0..5).collect::<Vec<_>>());
    assert_eq!(one_rank.ran.keys().collect::<Vec<_>>(), [&0]);
}

/// The test cases, run one after the other: MPI jobs run side by side on a
/// small machine would share its cores and distort how many tasks each rank
/// gets.
const CASES: &[(&str, fn())] = &[
    (
        "forty_tasks_are_shared_by_two_ranks",
        forty_tasks_are_shared_by_two_ranks,
    ),
    ("no_tasks", no_tasks),
    ("one_task_on_two_ranks", one_task_on_two_ranks),
    ("fewer_tasks_than_workers", fewer_tasks_than_workers),
    (
        "three_ranks_share_forty_tasks",
        three_ranks_share_forty_tasks,
    ),
    ("large_results_arrive_whole", large_results_arrive_whole),
    (
        "tasks_can_run_child_processes",
        tasks_can_run_child_processes,
    ),
    (
        "a_stop_on_a_worker_rank_stops_handing_out",
        a_stop_on_a_worker_rank_stops_handing_out,
    ),
    (
        "a_stop_on_rank_0_stops_handing_out",
        a_stop_on_rank_0_stops_handing_out,
    ),
    ("a_single_rank_works_alone", a_single_rank_works_alone),
];

fn main() -> ExitCode {
    if std::env::var_os(RANK).is_some() {
        return program::main();
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = CASES
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, case) in &selected {
        // A failing case's panic message goes to stderr as it happens.
        let outcome = if catch_unwind(case).is_ok() {
            "ok"
        } else {
            "FAILED"
        };
        println!("test {name} ... {outcome}");
        if outcome != "ok" {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    let passed = selected.len() - failed.len();
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        failed.len(),
        CASES.len() - selected.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
