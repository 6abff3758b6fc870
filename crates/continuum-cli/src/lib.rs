//! The `continuum` command: runs scenario files headless, validates them,
//! draws their time series and benchmarks the engine. The simulation is the
//! `continuum` library's; this crate holds what only a terminal program needs:
//! argument parsing, the dashboard, the report writer, time series, plots,
//! signal handling and the log subscriber.

/// `println!` that never panics: a closed or broken stdout (e.g. `| head`)
/// loses the line, not the run.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_line(&mut ::std::io::stdout().lock(), format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (see `outln!`).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::write_line(&mut ::std::io::stderr().lock(), format_args!($($arg)*))
    };
}

pub mod args;
pub mod bench;
#[cfg(feature = "mpi")]
pub mod cluster;
pub mod dashboard;
pub mod logging;
pub mod plot;
pub mod report;
pub mod run;
pub mod series;
pub mod sweep;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use continuum::scenario::Scenario;

use args::{Cli, Command};
use bench::{BenchConfig, run_once};

/// Exit code for invalid scenarios and arguments.
const EXIT_INVALID: u8 = 2;

/// Fixes glibc's mmap threshold at its default of 128 KiB. Left alone, glibc
/// raises it to the size of each large block freed (up to 32 MiB), and blocks
/// below it then come from the heap, where a freed one stays resident: after
/// startup and the rebalancer's first pass, a run at a million agents kept 8
/// bytes per agent of such blocks, and one at 100 000 agents 70. Fixed, every
/// block of 128 KiB or more is mapped on its own and returned when freed.
/// (Setting `MALLOC_MMAP_THRESHOLD_` in the environment does the same.)
fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The whole command: parses the arguments, runs the subcommand and gives its
/// exit code.
/// The plugins a run is built with: all of Continuum's and the standard
/// models' (whose behaviours scenario files may name).
pub fn plugins() -> bevy_app::PluginGroupBuilder {
    use bevy_app::PluginGroup;
    continuum::ContinuumPlugins::default()
        .build()
        .add(continuum_models::ModelsPlugin::default())
}

pub fn main() -> ExitCode {
    keep_large_blocks_mapped();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_INVALID)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let log = logging::install(cli.verbose);
    match cli.command {
        Command::Run(args) => run::run_command(args, &log),
        Command::Resume(args) => run::resume_command(args, &log),
        Command::Sweep(args) => sweep::sweep_command(args),
        Command::Plot { metrics, output } => plot::plot_command(&metrics, &output),
        Command::Validate { scenario } => {
            match Scenario::load_with(&scenario, &continuum_models::behaviours())
                .and_then(|s| s.check_resources(&scenario).map(|()| s))
            {
                // The app is built (no agent is admitted before it starts) to
                // see whether the memory budget holds the agents.
                Ok(s) => match continuum::memory::check_budget(
                    continuum::headless::build_app_with(s, 1, plugins()).world(),
                ) {
                    Ok(()) => {
                        outln!("ok");
                        ExitCode::SUCCESS
                    }
                    Err(e) => invalid(&format_args!("{}: {e}", scenario.display())),
                },
                Err(e) => invalid(&e),
            }
        }
        Command::Bench(args) => bench::bench_command(args),
        Command::BenchPair(a) => bench::bench_pair_command(&a),
        Command::BenchOne(a) if a.model != args::BenchModel::Sites => {
            let result = bench::models::run_model(a.model, a.agents, a.threads, a.steps);
            outln!("{}", serde_json::to_string(&result).expect("serialisable"));
            ExitCode::SUCCESS
        }
        Command::BenchOne(a) => {
            let result = run_once(&BenchConfig {
                agents: a.agents,
                seconds: a.seconds,
                warmup: 1.0,
                threads: a.threads,
                fixed_hz: a.fixed_hz,
                tick_hz: a.tick_hz,
                live_metrics: !a.no_live_metrics,
            });
            outln!("{}", serde_json::to_string(&result).expect("serialisable"));
            ExitCode::SUCCESS
        }
    }
}

/// Prints an error about the input and returns exit code 2.
pub fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    errln!("error: {e}");
    ExitCode::from(EXIT_INVALID)
}

/// Writes a line and flushes it, ignoring errors: the command's output is for a
/// reader who may have gone (a closed pipe, a hung-up terminal); what matters
/// (reports, time series) goes to files.
#[doc(hidden)]
pub fn write_line(out: &mut impl Write, args: std::fmt::Arguments) {
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}
