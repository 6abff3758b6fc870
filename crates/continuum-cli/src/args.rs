//! The command line's arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use continuum::action::ConflictStrategyKind;

#[derive(Parser)]
#[command(name = "continuum", version, about = "Run many agents continuously.")]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a scenario headless and report on it.
    Run(RunArgs),
    /// Continue a run from a checkpoint (`run --checkpoint`), or branch a
    /// variant from it.
    Resume(ResumeArgs),
    /// Run a scenario many times (a grid or a list of parameter values,
    /// several seeds each) in parallel, one row per run in OUT/runs.csv;
    /// `sweep merge` joins the tables of its parts, `sweep plot` draws one.
    Sweep(SweepArgs),
    /// Check a scenario file: prints `ok`, or the error (exit code 2).
    Validate {
        /// The scenario file (RON).
        scenario: PathBuf,
    },
    /// Draw a metrics time series (from `run --metrics`) as a PNG or SVG picture.
    Plot {
        /// The time series (.csv, .jsonl).
        metrics: PathBuf,
        /// The picture to write (.png or .svg).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Measure agent-ticks per second and bytes per agent in fast mode.
    Bench(BenchArgs),
    /// Compare thread counts within one run: the same simulation switches
    /// between them every few steps, so that a shared machine's drifting speed
    /// affects them alike.
    BenchPair(BenchPairArgs),
    /// One benchmark measurement in this process, as a JSON line.
    #[command(hide = true)]
    BenchOne(BenchOneArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The scenario file (RON).
    pub scenario: PathBuf,
    /// Scale the population: the starting groups to this many agents in all,
    /// arrivals, departures and max_agents by the same factor (a scenario
    /// that starts empty: its arrivals to about this many over the run).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub agents: Option<u64>,
    /// Seed (overrides the scenario).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Virtual seconds to run (overrides the scenario).
    #[arg(long, value_parser = positive_f64)]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The checkpoint file (from `run --checkpoint`).
    #[arg(value_name = "CHECKPOINT")]
    pub input: PathBuf,
    /// Virtual seconds the whole run lasts, counted from its start (later than
    /// the checkpoint; default: the scenario's duration).
    #[arg(long, value_parser = positive_f64)]
    pub duration: Option<f64>,
    /// Branch: decide conflicts from here on with another strategy
    /// (PriorityThenTimestamp, Timestamp or Random).
    #[arg(long, value_parser = conflict_strategy)]
    pub conflicts: Option<ConflictStrategyKind>,
    /// Branch: request this many more agents at the checkpoint's time, shared
    /// among the scenario's groups in their proportions.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub add_agents: Option<u64>,
    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// The sweep file (RON).
    #[arg(required = true)]
    pub sweep: Option<PathBuf>,
    /// The folder for the results: runs.csv, sweep.json, each point's
    /// scenario, each run's report (default: sweep-NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Runs at once, each in a process of its own (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Threads per run (default: the cores shared among the jobs, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Continue the sweep in --out: the runs already in its table are kept
    /// and skipped.
    #[arg(long)]
    pub resume: bool,
    /// Run only part K of N (runs whose id modulo N is K − 1), e.g. one task
    /// of a cluster job array; `sweep merge` joins the parts.
    #[arg(long, value_name = "K/N", value_parser = shard)]
    pub shard: Option<Shard>,
    /// No progress bar or lines.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum SweepAction {
    /// Join the tables of parts of one sweep (`--shard`) into one; parts of
    /// another sweep are refused.
    Merge {
        /// The parts' folders.
        #[arg(required = true, num_args = 1..)]
        parts: Vec<PathBuf>,
        /// The folder for the joined table.
        #[arg(long)]
        out: PathBuf,
    },
    /// Draw figures of a sweep's runs (DIR/runs.csv) against a numeric
    /// column, one panel per figure and one line per value of --group: each
    /// point the mean over the runs with that value and x (the replicates), a
    /// bar from their least to their greatest value. PNG or SVG by extension.
    Plot {
        /// The sweep's results folder (`sweep --out`).
        dir: PathBuf,
        /// The numeric column along the x axis, e.g. `param.groups[2].count`
        /// or `agents_active`.
        #[arg(long, value_name = "COLUMN")]
        x: String,
        /// The column whose values the lines stand for, e.g.
        /// `param.conflicts` (default: one line through all runs).
        #[arg(long, value_name = "COLUMN")]
        group: Option<String>,
        /// The figures to draw, a panel each, comma-separated, e.g.
        /// `conflicts,world.harvested`.
        #[arg(long, value_name = "FIGURE", value_delimiter = ',', required = true)]
        y: Vec<String>,
        /// The picture to write (.png or .svg).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Compare every point of a sweep with a baseline point, seed by seed:
    /// the mean paired difference of each figure, its 95 % confidence
    /// interval (Student's t), and on how many seeds the point came out above
    /// and below the baseline.
    Compare {
        /// The sweep's results folder (`sweep --out`).
        dir: PathBuf,
        /// The figures to compare, comma-separated, e.g. `world.harvested`.
        #[arg(long, value_name = "FIGURE", value_delimiter = ',', required = true)]
        y: Vec<String>,
        /// The point the others are compared with.
        #[arg(long, default_value_t = 0)]
        baseline: u64,
    },
}

/// Part `index` (0-based) of `count` of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether run `id` belongs to this part.
    pub fn holds(&self, id: u64) -> bool {
        id % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// Parses `K/N` with 1 ≤ K ≤ N.
pub fn shard(s: &str) -> Result<Shard, String> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((k, n)) if (1..=n).contains(&k) && n <= 1_000_000 => Ok(Shard {
            index: k - 1,
            count: n,
        }),
        _ => Err(format!(
            "expected K/N with 1 ≤ K ≤ N ≤ 1000000 (e.g. 2/8), got `{s}`"
        )),
    }
}

/// What `run` and `resume` share: pacing, threads, outputs and checkpoints.
#[derive(Args)]
pub struct RunOptions {
    /// As fast as the machine allows.
    #[arg(long, conflicts_with = "realtime")]
    pub fast: bool,
    /// Paced to the wall clock (times --speed).
    #[arg(long)]
    pub realtime: bool,
    /// Threads working on the simulation, the main thread included (default: one per core)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Virtual seconds per real second in realtime mode (at most 1e6).
    #[arg(long, value_parser = speed)]
    pub speed: Option<f64>,
    /// Write the final report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stream the metrics time series here, one row per interval (.csv, or .jsonl
    /// for JSON lines). Rows go to a hidden temporary file beside it
    /// (`.NAME.PID.tmp`), flushed as they come, which is renamed to the file
    /// when the run ends (interrupted or not); a killed run leaves the
    /// temporary file with every finished row.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Virtual seconds between two rows of the time series; one row per step
    /// at most (a shorter interval gives a row every step).
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    pub metrics_interval: f64,
    /// Draw the time series at the end of the run (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Plain status lines even on a terminal.
    #[arg(long)]
    pub no_dashboard: bool,
    /// No dashboard and no status lines.
    #[arg(long)]
    pub quiet: bool,
    /// Run without the resource monitor (no budget rebalancing, no load
    /// shedding), e.g. to see what it saves under overload.
    #[arg(long)]
    pub no_monitor: bool,
    /// Save the whole simulation here (atomically) at the end of the run,
    /// when it is interrupted (Ctrl-C, SIGTERM, SIGHUP), and every
    /// --checkpoint-every virtual seconds; `continuum resume` continues it.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Virtual seconds between two checkpoints (each replaces the previous
    /// one; taken at the first step boundary after the time, checked ten
    /// times a second).
    #[arg(long, requires = "checkpoint", value_parser = positive_f64)]
    pub checkpoint_every: Option<f64>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The model to measure: `sites` (the built-in world: explorers,
    /// analyzers and controllers, every subsystem on), `flocking` (boids at
    /// the published comparisons' scale; `--steps` steps, every bird every
    /// step), `schelling` (segregation on a grid four fifths full;
    /// `--steps` steps, every resident every step) or `wolf-sheep`
    /// (predation at NetLogo's density; `--steps` steps, every animal every
    /// step).
    #[arg(long, value_enum, default_value = "sites")]
    pub model: BenchModel,
    /// Steps measured at each population (`--model flocking|schelling|wolf-sheep`).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub steps: u64,
    /// Populations to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub agents: Vec<u64>,
    /// Virtual seconds measured at each population.
    #[arg(long, default_value_t = 5.0, value_parser = positive_f64)]
    pub seconds: f64,
    /// Thread counts to measure each size with, comma-separated; each counts the
    /// main thread (default: one per core). With several, the table gives each
    /// one's speed-up over the first.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Vec<u16>,
    /// Measure every size and thread count this many times, in turns, and keep
    /// the fastest run of each (runs on a shared machine vary).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub repeat: u16,
    /// Steps per virtual second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    pub fixed_hz: f64,
    /// Ticks per virtual second of every agent.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    pub tick_hz: f64,
    /// Also write the results (every run) as JSON lines here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure each size with and without the live metrics (twice each,
    /// alternating, best of two) and print what they cost.
    #[arg(long)]
    pub metrics_cost: bool,
}

#[derive(Args)]
pub struct BenchPairArgs {
    /// The population.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub agents: u64,
    /// Virtual seconds measured, shared by the thread counts.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    pub seconds: f64,
    /// Thread counts to compare, comma-separated; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Vec<u16>,
    /// Steps each thread count runs before the next one takes over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub block: u32,
    /// Steps per virtual second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    pub fixed_hz: f64,
    /// Ticks per virtual second of every agent.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    pub tick_hz: f64,
    /// Print the result as a JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `continuum bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    Sites,
    Flocking,
    Schelling,
    WolfSheep,
}

impl BenchModel {
    /// The name `--model` takes.
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::Sites => "sites",
            BenchModel::Flocking => "flocking",
            BenchModel::Schelling => "schelling",
            BenchModel::WolfSheep => "wolf-sheep",
        }
    }
}

#[derive(Args)]
pub struct BenchOneArgs {
    #[arg(long, value_enum, default_value = "sites")]
    pub model: BenchModel,
    /// Steps measured (`--model flocking|schelling|wolf-sheep`).
    #[arg(long, default_value_t = 50)]
    pub steps: u64,
    #[arg(long)]
    pub agents: u64,
    #[arg(long)]
    pub seconds: f64,
    #[arg(long)]
    pub threads: usize,
    #[arg(long)]
    pub fixed_hz: f64,
    #[arg(long)]
    pub tick_hz: f32,
    #[arg(long)]
    pub no_live_metrics: bool,
}

/// A conflict strategy by its name in scenario files.
pub fn conflict_strategy(s: &str) -> Result<ConflictStrategyKind, String> {
    const ALL: [ConflictStrategyKind; 3] = [
        ConflictStrategyKind::PriorityThenTimestamp,
        ConflictStrategyKind::Timestamp,
        ConflictStrategyKind::Random,
    ];
    ALL.into_iter()
        .find(|k| format!("{k:?}").eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let names: Vec<String> = ALL.iter().map(|k| format!("{k:?}")).collect();
            format!("expected one of {}", names.join(", "))
        })
}

pub fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("expected a positive number, got {x}")),
        Err(e) => Err(format!("expected a number: {e}")),
    }
}

/// A realtime speed: positive, and [`MAX_SPEED`](continuum::headless::MAX_SPEED)
/// at most. Faster, no step loop keeps up (at 1e6 and 100 steps per virtual
/// second, 10^8 steps would be due every real second), and Bevy's
/// `Time<Virtual>` multiplies every update's `Duration` by the speed, which
/// panics once the product overflows a `Duration` (from about 1e25 on).
pub fn speed(s: &str) -> Result<f64, String> {
    let max = continuum::headless::MAX_SPEED;
    match positive_f64(s)? {
        x if x <= max => Ok(x),
        _ => Err(format!(
            "{s} is faster than the maximum of {max:e} virtual seconds per real second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own consistency checks (unique names, valid relations), which
    /// otherwise fire only when a subcommand is used.
    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
