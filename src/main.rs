//! The `continuum` command: runs scenario files headless, validates them, and
//! benchmarks the engine. Everything it does is in the library; this file parses
//! arguments and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};

use continuum::bench::{BenchConfig, BenchResult, run_once};
use continuum::clock::ClockMode;
use continuum::headless::{Progress, build_app, default_threads, prime, run, set_mode};
use continuum::report::{RunContext, RunReport};
use continuum::scenario::Scenario;

/// Exit code for invalid scenarios and arguments.
const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(name = "continuum", version, about = "Run many agents continuously.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario headless and report on it.
    Run(RunArgs),
    /// Check a scenario file: prints `ok`, or the error (exit code 2).
    Validate {
        /// The scenario file (RON).
        scenario: PathBuf,
    },
    /// Measure agent-ticks per second and bytes per agent in fast mode.
    Bench(BenchArgs),
    /// One benchmark measurement in this process, as a JSON line.
    #[command(hide = true)]
    BenchOne(BenchOneArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The scenario file (RON).
    scenario: PathBuf,
    /// As fast as the machine allows.
    #[arg(long, conflicts_with = "realtime")]
    fast: bool,
    /// Paced to the wall clock (times --speed).
    #[arg(long)]
    realtime: bool,
    /// Virtual seconds to run (overrides the scenario).
    #[arg(long, value_parser = positive_f64)]
    duration: Option<f64>,
    /// Scale the scenario's groups to this many agents in total.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    agents: Option<u64>,
    /// Seed (overrides the scenario).
    #[arg(long)]
    seed: Option<u64>,
    /// Compute threads (default: cores - 1, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Virtual seconds per real second in realtime mode.
    #[arg(long, value_parser = positive_f64)]
    speed: Option<f64>,
    /// Write the final report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No status lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Populations to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    agents: Vec<u64>,
    /// Virtual seconds measured at each population.
    #[arg(long, default_value_t = 5.0, value_parser = positive_f64)]
    seconds: f64,
    /// Compute threads (default: cores - 1, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Steps per virtual second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    fixed_hz: f64,
    /// Ticks per virtual second of every agent.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    tick_hz: f64,
    /// Also write the results as JSON lines here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchOneArgs {
    #[arg(long)]
    agents: u64,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    fixed_hz: f64,
    #[arg(long)]
    tick_hz: f32,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("expected a positive number, got {x}")),
        Err(e) => Err(format!("expected a number: {e}")),
    }
}

fn main() -> ExitCode {
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
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Validate { scenario } => match Scenario::load(&scenario) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => invalid(&e),
        },
        Command::Bench(args) => bench_command(args),
        Command::BenchOne(a) => {
            let result = run_once(&BenchConfig {
                agents: a.agents,
                seconds: a.seconds,
                warmup: 1.0,
                threads: a.threads,
                fixed_hz: a.fixed_hz,
                tick_hz: a.tick_hz,
            });
            println!("{}", serde_json::to_string(&result).expect("serialisable"));
            ExitCode::SUCCESS
        }
    }
}

fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_INVALID)
}

fn run_command(args: RunArgs) -> ExitCode {
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    if let Some(n) = args.agents {
        scenario.scale_agents(n);
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(d) = args.duration {
        scenario.clock.duration = Some(d);
    }
    if let Some(speed) = args.speed {
        scenario.clock.speed = speed;
    }
    if args.fast {
        scenario.clock.mode = ClockMode::Fast;
    } else if args.realtime {
        scenario.clock.mode = ClockMode::Realtime;
    }
    let mode = scenario.clock.mode;
    let speed = if mode == ClockMode::Fast {
        1.0
    } else {
        scenario.clock.speed
    };
    let threads = args.threads.map_or_else(default_threads, usize::from);
    let name = scenario.name.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed)) {
        eprintln!("warning: cannot catch Ctrl-C/SIGTERM ({e}); an interrupted run will not report");
    }

    if !args.quiet {
        eprintln!(
            "running {name}: {} agents, {} mode, {threads} compute thread(s){}",
            scenario.total_agents(),
            mode.as_str(),
            scenario
                .clock
                .duration
                .map_or(String::from(", until interrupted"), |d| format!(
                    ", {d} virtual s"
                )),
        );
    }
    let mut app = build_app(scenario, threads);
    set_mode(&mut app, mode);
    prime(&mut app);
    let quiet = args.quiet;
    let end = run(&mut app, &stop, |p| {
        if !quiet {
            eprintln!("{}", status_line(p));
        }
    });
    let report = RunReport::gather(
        app.world_mut(),
        &RunContext {
            scenario: name,
            threads,
            mode,
            speed,
            wall_seconds: end.wall_seconds,
            interrupted: end.interrupted,
        },
    );
    println!("{}", summary(&report));
    if let Some(path) = &args.report
        && let Err(e) = write_report(path, &report)
    {
        eprintln!("error: cannot write the report to {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, report.to_json() + "\n")
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn status_line(p: &Progress) -> String {
    format!(
        "[{:>7.1}s] virtual {:>8.1}s | agents {} active, {} queued | {} ticks/s | {} actions/s | conflicts {} ({}/s) | real-time ratio {:.3}",
        p.wall_seconds,
        p.virtual_seconds,
        p.agents_active,
        p.agents_queued,
        si(p.agent_ticks_per_sec),
        si(p.actions_per_sec),
        p.conflicts,
        si(p.conflicts_per_sec),
        p.realtime_ratio,
    )
}

fn summary(r: &RunReport) -> String {
    let kinds: Vec<String> = r
        .ticks_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {}", si(*n as f64)))
        .collect();
    format!(
        "{}{}: {:.1} virtual s in {:.2} wall s (real-time ratio {:.3}), {} agents, {} agent ticks ({}/s; {})\n\
         actions {} submitted, {} applied, {} rejected, {} failed; {} conflicts; harvested {:.1}\n\
         step ms p50 {:.3} p99 {:.3} max {:.3}; peak RSS {:.1} MiB; state digest {}",
        r.scenario,
        if r.interrupted { " (interrupted)" } else { "" },
        r.virtual_seconds,
        r.wall_seconds,
        r.realtime_ratio,
        r.agents_active,
        r.agent_ticks,
        si(r.agent_ticks_per_sec),
        kinds.join(", "),
        r.actions_submitted,
        r.actions_applied,
        r.actions_rejected,
        r.actions_failed,
        r.conflicts,
        r.world.harvested,
        r.step_ms.p50,
        r.step_ms.p99,
        r.step_ms.max,
        r.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        r.state_digest,
    )
}

fn bench_command(args: BenchArgs) -> ExitCode {
    let threads = args.threads.map_or_else(default_threads, usize::from);
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this executable to start the measurements: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "fast mode, {} Hz steps, agents at {} Hz, {threads} compute thread(s), {} virtual s per size",
        args.fixed_hz, args.tick_hz, args.seconds
    );
    println!(
        "{:>10} {:>16} {:>14} {:>14} {:>12} {:>12}",
        "agents", "agent-ticks/s", "x real time", "bytes/agent", "step p50 ms", "step p99 ms"
    );
    let mut results = Vec::new();
    for &agents in &args.agents {
        let output = std::process::Command::new(&exe)
            .args(["bench-one", "--agents", &agents.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--fixed-hz", &args.fixed_hz.to_string()])
            .args(["--tick-hz", &args.tick_hz.to_string()])
            .output();
        let result: Option<BenchResult> = output
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok());
        let Some(r) = result else {
            eprintln!("error: the measurement at {agents} agents failed");
            return ExitCode::FAILURE;
        };
        println!(
            "{:>10} {:>16.0} {:>14.2} {:>14.0} {:>12.3} {:>12.3}",
            r.agents,
            r.agent_ticks_per_sec,
            r.realtime_factor,
            r.bytes_per_agent,
            r.step_ms_p50,
            r.step_ms_p99
        );
        results.push(r);
    }
    if let Some(path) = args.json {
        let lines: String = results
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialisable") + "\n")
            .collect();
        if let Err(e) = std::fs::write(&path, lines) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
