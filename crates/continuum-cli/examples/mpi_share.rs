//! Shares tasks among the ranks of an MPI job with `continuum_cli::cluster`.
//! Build and run it with
//!
//! ```text
//! cargo build -p continuum-cli --features mpi --example mpi_share
//! mpirun -n 2 target/debug/examples/mpi_share --tasks 40
//! ```
//!
//! Task `id` computes for `--millis` milliseconds and gives `id²` and the rank
//! that ran it. Rank 0 prints one line per result, sorted by id,
//! `task <id> <id²> rank <rank> bytes <result length>`, then
//! `ranks <how many ranks ran a task>` and `done <results delivered>`. Every
//! rank prints `ran <id> rank <rank>` on stderr as it finishes a task, so that
//! what ran can be compared with what was delivered. Started without `mpirun`
//! (or with `-n 1`), it runs every task itself. SIGINT and SIGTERM set the
//! stop flag.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use continuum_cli::cluster::Cluster;

/// Set by SIGINT and SIGTERM, or by `--stop-rank`.
static STOP: AtomicBool = AtomicBool::new(false);

/// Options.
#[derive(Parser)]
struct Options {
    /// How many tasks: ids 0 to N - 1.
    #[arg(long, default_value_t = 40)]
    tasks: u64,
    /// How long each task computes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    millis: u64,
    /// A program that each task runs and waits for (e.g. /bin/true), as a
    /// sweep runs one simulation per task.
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// Pads each result to this many bytes (large messages travel by MPI's
    /// rendezvous protocol rather than eagerly).
    #[arg(long, default_value_t = 0)]
    result_bytes: usize,
    /// The rank whose tasks set the stop flag, as a signal handler would.
    #[arg(long)]
    stop_rank: Option<usize>,
    /// How many tasks `--stop-rank` runs before it sets the stop flag.
    #[arg(long, default_value_t = 1)]
    stop_after: usize,
}

/// Runs the example (the `mpi_share` test runs it as each rank's program).
pub fn main() -> ExitCode {
    let options = Options::parse();
    if let Err(e) = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed)) {
        eprintln!("mpi_share: no signal handler: {e}");
    }
    let tasks: Vec<u64> = (0..options.tasks).collect();
    let cluster = Cluster::join();
    let rank = cluster.as_ref().map_or(0, Cluster::rank);
    let ran_here = AtomicUsize::new(0);
    let work = |id: u64| {
        let result = run_task(id, rank, &options);
        let ran = ran_here.fetch_add(1, Ordering::Relaxed) + 1;
        if options.stop_rank == Some(rank) && ran >= options.stop_after {
            STOP.store(true, Ordering::Relaxed);
        }
        // One write per line, so that lines from different ranks never mix.
        let line = format!("ran {id} rank {rank}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        result
    };
    let mut results: Vec<(u64, Vec<u8>)> = Vec::new();
    let done = |id, result| results.push((id, result));
    let delivered = match &cluster {
        Some(cluster) => cluster.share(&tasks, work, done, &STOP),
        None => alone(&tasks, work, done),
    };
    if rank != 0 {
        return ExitCode::SUCCESS;
    }
    results.sort_by_key(|&(id, _)| id);
    let mut ranks_that_worked = std::collections::BTreeSet::new();
    let mut out = std::io::stdout().lock();
    for (id, result) in &results {
        let text = String::from_utf8_lossy(result);
        let mut fields = text.split_whitespace();
        let (Some(square), Some(by)) = (fields.next(), fields.next()) else {
            eprintln!("mpi_share: malformed result for task {id}: {text:?}");
            return ExitCode::FAILURE;
        };
        ranks_that_worked.insert(by.to_owned());
        let _ = writeln!(out, "task {id} {square} rank {by} bytes {}", result.len());
    }
    let _ = writeln!(out, "ranks {}", ranks_that_worked.len());
    let _ = writeln!(out, "done {delivered}");
    ExitCode::SUCCESS
}

/// Runs every task on this process, until the stop flag is set; gives how
/// many ran.
fn alone(
    tasks: &[u64],
    work: impl Fn(u64) -> Vec<u8>,
    mut done: impl FnMut(u64, Vec<u8>),
) -> usize {
    let mut count = 0;
    for &id in tasks {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        done(id, work(id));
        count += 1;
    }
    count
}

/// Task `id` on `rank`: computes for `--millis`, runs `--spawn` if given, and
/// gives `"<id²> <rank>"`, padded with spaces to `--result-bytes`.
fn run_task(id: u64, rank: usize, options: &Options) -> Vec<u8> {
    let start = Instant::now();
    let mut state = id | 1;
    while start.elapsed() < Duration::from_millis(options.millis) {
        for _ in 0..1000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        std::hint::black_box(state);
    }
    if let Some(program) = &options.spawn {
        match Command::new(program).status() {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("{} failed: {status}", program.display()),
            Err(e) => panic!("cannot run {}: {e}", program.display()),
        }
    }
    let mut result = format!("{} {rank}", id.wrapping_mul(id)).into_bytes();
    if result.len() < options.result_bytes {
        result.resize(options.result_bytes, b' ');
    }
    result
}
