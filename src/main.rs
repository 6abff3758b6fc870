//! The `continuum` command: runs scenario files headless, validates them, and
//! benchmarks the engine. Everything it does is in the library; this file parses
//! arguments and prints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use bevy_app::PluginGroup;
use continuum::ContinuumPlugins;
use continuum::archetype::Archetypes;
use continuum::bench::{BenchConfig, BenchResult, PairConfig, run_once, run_pair};
use continuum::clock::ClockMode;
use continuum::dashboard::{DashboardState, mib, si};
use continuum::headless::{build_app_with, default_threads, prime, run, set_mode};
use continuum::metrics::{Metrics, MetricsRecorder, SeriesFormat, SeriesWriter, read_series};
use continuum::monitor::ResourceMonitorPlugin;
use continuum::plot::{PlotError, plot};
use continuum::report::{RunContext, RunReport};
use continuum::scenario::Scenario;

mod cli;

use cli::{dashboard_ui, logging};

/// Exit code for invalid scenarios and arguments.
const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(name = "continuum", version, about = "Run many agents continuously.")]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Threads working on the simulation, the main thread included (default: one per core)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Virtual seconds per real second in realtime mode.
    #[arg(long, value_parser = positive_f64)]
    speed: Option<f64>,
    /// Write the final report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Stream the metrics time series here, one row per interval (.csv, or .jsonl
    /// for JSON lines).
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Virtual seconds between two rows of the time series.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    metrics_interval: f64,
    /// Draw the time series at the end of the run (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Plain status lines even on a terminal.
    #[arg(long)]
    no_dashboard: bool,
    /// No dashboard and no status lines.
    #[arg(long)]
    quiet: bool,
    /// Run without the resource monitor (no budget rebalancing, no load
    /// shedding), e.g. to see what it saves under overload.
    #[arg(long)]
    no_monitor: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Populations to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    agents: Vec<u64>,
    /// Virtual seconds measured at each population.
    #[arg(long, default_value_t = 5.0, value_parser = positive_f64)]
    seconds: f64,
    /// Thread counts to measure each size with, comma-separated; each counts the
    /// main thread (default: one per core). With several, the table gives each
    /// one's speed-up over the first.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Vec<u16>,
    /// Measure every size and thread count this many times, in turns, and keep
    /// the fastest run of each (runs on a shared machine vary).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeat: u16,
    /// Steps per virtual second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    fixed_hz: f64,
    /// Ticks per virtual second of every agent.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    tick_hz: f64,
    /// Also write the results (every run) as JSON lines here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure each size with and without the live metrics (twice each,
    /// alternating, best of two) and print what they cost.
    #[arg(long)]
    metrics_cost: bool,
}

#[derive(Args)]
struct BenchPairArgs {
    /// The population.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    agents: u64,
    /// Virtual seconds measured, shared by the thread counts.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    seconds: f64,
    /// Thread counts to compare, comma-separated; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Vec<u16>,
    /// Steps each thread count runs before the next one takes over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    block: u32,
    /// Steps per virtual second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    fixed_hz: f64,
    /// Ticks per virtual second of every agent.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    tick_hz: f64,
    /// Print the result as a JSON line instead of a table.
    #[arg(long)]
    json: bool,
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
    #[arg(long)]
    no_live_metrics: bool,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("expected a positive number, got {x}")),
        Err(e) => Err(format!("expected a number: {e}")),
    }
}

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

fn main() -> ExitCode {
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
        Command::Run(args) => run_command(args, &log),
        Command::Plot { metrics, output } => plot_command(&metrics, &output),
        Command::Validate { scenario } => match Scenario::load(&scenario) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => invalid(&e),
        },
        Command::Bench(args) => bench_command(args),
        Command::BenchPair(a) => bench_pair_command(&a),
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
            println!("{}", serde_json::to_string(&result).expect("serialisable"));
            ExitCode::SUCCESS
        }
    }
}

fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_INVALID)
}

fn run_command(args: RunArgs, log: &logging::LogSink) -> ExitCode {
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    for (flag, path, ok) in [
        (
            "--metrics",
            &args.metrics,
            args.metrics
                .as_deref()
                .is_none_or(|p| SeriesFormat::of(p).is_some()),
        ),
        (
            "--plot",
            &args.plot,
            args.plot.as_deref().is_none_or(is_picture),
        ),
    ] {
        if !ok {
            let path = path.as_deref().map(Path::display);
            return invalid(&format!(
                "{flag} {}: expected a .csv or .jsonl file for --metrics, a .png or .svg file for --plot",
                path.expect("checked")
            ));
        }
    }
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
    let duration = scenario.clock.duration;
    let run_label = format!("{name}/seed-{}", scenario.seed);

    let mut series = match args
        .metrics
        .as_deref()
        .map(SeriesWriter::create)
        .transpose()
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "error: cannot write {}: {e}",
                args.metrics
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
            return ExitCode::FAILURE;
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed)) {
        tracing::warn!("cannot catch Ctrl-C/SIGTERM ({e}); an interrupted run will not report");
    }

    let mut ui = if args.quiet {
        Ui::Quiet
    } else if !args.no_dashboard && std::io::stderr().is_terminal() {
        match dashboard_ui::Tui::start(log.clone()) {
            Ok(tui) => Ui::Dashboard(Box::new(tui)),
            Err(e) => {
                tracing::warn!("cannot start the dashboard ({e}); printing status lines");
                Ui::Lines
            }
        }
    } else {
        Ui::Lines
    };
    if matches!(ui, Ui::Lines) {
        eprintln!(
            "running {name}: {} agents, {} mode, {threads} thread(s){}",
            scenario.total_agents(),
            mode.as_str(),
            duration.map_or(String::from(", until interrupted"), |d| format!(
                ", {d} virtual s"
            )),
        );
    }

    let mut plugins = ContinuumPlugins::default().build();
    if args.no_monitor {
        plugins = plugins.disable::<ResourceMonitorPlugin>();
    }
    let mut app = build_app_with(scenario, threads, plugins);
    if args.metrics.is_some() || args.plot.is_some() {
        app.insert_resource(MetricsRecorder::new(run_label, args.metrics_interval));
    }
    set_mode(&mut app, mode);
    prime(&mut app);
    let kinds: Vec<String> = app
        .world()
        .resource::<Archetypes>()
        .iter()
        .map(|a| a.kind.clone())
        .collect();
    let mut state = DashboardState {
        scenario: name.clone(),
        mode,
        threads,
        duration,
        snapshot: Default::default(),
        kinds,
        history: Default::default(),
        log: Default::default(),
    };
    let mut plot_rows = Vec::new();
    let mut series_error = None;
    let mut last_shown: Option<Instant> = None;
    let end = run(&mut app, &stop, Duration::from_millis(100), |app| {
        if let Some(mut recorder) = app.world_mut().get_resource_mut::<MetricsRecorder>() {
            for row in recorder.take() {
                if let Some(writer) = series.as_mut()
                    && let Err(e) = writer.write(&row)
                    && series_error.is_none()
                {
                    series_error = Some(e);
                }
                if args.plot.is_some() {
                    plot_rows.push(row);
                }
            }
        }
        if let Ui::Dashboard(tui) = &mut ui
            && tui.stop_requested()
        {
            stop.store(true, Ordering::Relaxed);
        }
        if last_shown.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last_shown = Some(Instant::now());
        state.snapshot = app.world().resource::<Metrics>().snapshot().clone();
        state.history.push(&state.snapshot);
        match &mut ui {
            Ui::Dashboard(tui) => tui.draw(&mut state),
            Ui::Lines if state.snapshot.steps > 0 => eprintln!("{}", status_line(&state)),
            _ => {}
        }
    });
    drop(ui); // leave the dashboard's screen before printing the summary
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
    let mut status = ExitCode::SUCCESS;
    if let Some(e) = series_error {
        eprintln!("error: writing the metrics time series failed: {e}");
        status = ExitCode::FAILURE;
    }
    if let Some(path) = &args.report
        && let Err(e) = write_report(path, &report)
    {
        eprintln!("error: cannot write the report to {}: {e}", path.display());
        status = ExitCode::FAILURE;
    }
    if let Some(path) = &args.plot {
        match plot(&plot_rows, path) {
            Ok(()) => {}
            Err(PlotError::Empty) => {
                eprintln!("note: no plot: the run ended before the first metrics interval");
            }
            Err(e) => {
                eprintln!("error: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png") || e.eq_ignore_ascii_case("svg"))
}

fn plot_command(metrics: &Path, output: &Path) -> ExitCode {
    if !is_picture(output) {
        return invalid(&format!(
            "{}: expected a .png or .svg file name",
            output.display()
        ));
    }
    let rows = match read_series(metrics) {
        Ok(rows) => rows,
        Err(e) => return invalid(&e),
    };
    match plot(&rows, output) {
        Ok(()) => {
            println!("wrote {} ({} rows)", output.display(), rows.len());
            ExitCode::SUCCESS
        }
        Err(PlotError::Empty) => invalid(&format!("{}: {}", metrics.display(), PlotError::Empty)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How the run shows itself while it goes.
enum Ui {
    Quiet,
    Lines,
    Dashboard(Box<dashboard_ui::Tui>),
}

fn write_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, report.to_json() + "\n")
}

fn status_line(state: &DashboardState) -> String {
    let s = &state.snapshot;
    let progress = state.progress().map_or(String::new(), |(done, _, eta)| {
        format!(" | {:.0}% ETA {eta:.1}s", done * 100.0)
    });
    format!(
        "[{:>7.1}s] virtual {:>8.1}s | agents {} active, {} queued | {} ticks/s | {} actions/s | conflicts {} ({}/s) | CPU {:.0}% RSS {} | real-time ratio {:.3}{progress}",
        s.wall_seconds,
        s.virtual_seconds,
        s.agents_active,
        s.agents_queued,
        si(s.agent_ticks_per_sec),
        si(s.actions_per_sec),
        s.conflicts,
        si(s.conflicts_per_sec),
        s.cpu_percent,
        mib(s.rss_bytes),
        s.realtime_ratio,
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

/// Warns when the machine is already busy before a benchmark starts.
fn warn_if_busy() {
    if let Some(busy) = continuum::bench::machine_busy(std::time::Duration::from_millis(300))
        && busy > 0.25
    {
        eprintln!(
            "warning: the machine was {:.0} % busy before the benchmark started (another benchmark or a build?); the figures compete with that load",
            busy * 100.0
        );
    }
}

fn bench_pair_command(a: &BenchPairArgs) -> ExitCode {
    warn_if_busy();
    let result = run_pair(&PairConfig {
        agents: a.agents,
        seconds: a.seconds,
        warmup: 1.0,
        threads: a.threads.iter().map(|&t| usize::from(t)).collect(),
        block_steps: a.block,
        fixed_hz: a.fixed_hz,
        tick_hz: a.tick_hz as f32,
    });
    if a.json {
        println!("{}", serde_json::to_string(&result).expect("serialisable"));
        return ExitCode::SUCCESS;
    }
    println!(
        "{} agents, fast mode, {} Hz steps, agents at {} Hz: {} rounds of {}-step blocks, {} virtual s{}",
        result.agents,
        a.fixed_hz,
        a.tick_hz,
        result.rounds,
        result.block_steps,
        a.seconds,
        result
            .stolen
            .map_or_else(String::new, |s| format!(", {:.1}% stolen", s * 100.0))
    );
    println!(
        "{:>8} {:>16} {:>9} {:>26}",
        "threads", "agent-ticks/s", "speed-up", "per round: median (range)"
    );
    for (i, threads) in result.threads.iter().enumerate() {
        println!(
            "{:>8} {:>16.0} {:>8.2}x {:>11.2}x ({:.2}-{:.2})",
            threads,
            result.agent_ticks_per_sec[i],
            result.speedup[i],
            result.round_speedup_median[i],
            result.round_speedup_min[i],
            result.round_speedup_max[i]
        );
    }
    ExitCode::SUCCESS
}

fn bench_command(args: BenchArgs) -> ExitCode {
    let thread_counts: Vec<usize> = if args.threads.is_empty() {
        vec![default_threads()]
    } else {
        args.threads.iter().map(|&t| usize::from(t)).collect()
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this executable to start the measurements: {e}");
            return ExitCode::FAILURE;
        }
    };
    warn_if_busy();
    // One measurement in a process of its own.
    let measure = |agents: u64, threads: usize, live: bool| -> Option<BenchResult> {
        let mut command = std::process::Command::new(&exe);
        command
            .args(["bench-one", "--agents", &agents.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--fixed-hz", &args.fixed_hz.to_string()])
            .args(["--tick-hz", &args.tick_hz.to_string()]);
        if !live {
            command.arg("--no-live-metrics");
        }
        let output = command.output().ok().filter(|o| o.status.success())?;
        serde_json::from_slice(&output.stdout).ok()
    };
    let counts: Vec<String> = thread_counts.iter().map(usize::to_string).collect();
    println!(
        "fast mode, {} Hz steps, agents at {} Hz, {} thread(s), {} virtual s per size{}",
        args.fixed_hz,
        args.tick_hz,
        counts.join(" / "),
        args.seconds,
        if args.repeat > 1 {
            format!(", fastest of {} runs", args.repeat)
        } else {
            String::new()
        }
    );
    if args.metrics_cost {
        println!(
            "{:>10} {:>8} {:>18} {:>18} {:>10} {:>18}",
            "agents", "threads", "ticks/s metrics on", "ticks/s off", "cost", "dashboard draw ms"
        );
    } else {
        println!(
            "{:>10} {:>8} {:>16} {:>9} {:>14} {:>14} {:>12} {:>12} {:>9}",
            "agents",
            "threads",
            "agent-ticks/s",
            "speed-up",
            "x real time",
            "bytes/agent",
            "step p50 ms",
            "step p99 ms",
            "stolen"
        );
    }
    let mut results = Vec::new();
    for &agents in &args.agents {
        // Every run of this size, in turns: round by round, each thread count.
        let mut runs: Vec<BenchResult> = Vec::new();
        let modes: &[bool] = if args.metrics_cost {
            &[true, false]
        } else {
            &[true]
        };
        for _ in 0..args.repeat {
            for &threads in &thread_counts {
                for &live in modes {
                    let Some(r) = measure(agents, threads, live) else {
                        eprintln!(
                            "error: a measurement at {agents} agents, {threads} thread(s) failed"
                        );
                        return ExitCode::FAILURE;
                    };
                    runs.push(r);
                }
            }
        }
        let fastest = |threads: usize, live: bool| {
            runs.iter()
                .filter(|r| r.threads == threads && r.live_metrics == live)
                .max_by(|a, b| a.agent_ticks_per_sec.total_cmp(&b.agent_ticks_per_sec))
                .expect("measured")
        };
        let base = fastest(thread_counts[0], true).agent_ticks_per_sec;
        for &threads in &thread_counts {
            let r = fastest(threads, true);
            if args.metrics_cost {
                let (on, off) = (
                    r.agent_ticks_per_sec,
                    fastest(threads, false).agent_ticks_per_sec,
                );
                println!(
                    "{:>10} {:>8} {:>18.0} {:>18.0} {:>9.2}% {:>18.3}",
                    agents,
                    threads,
                    on,
                    off,
                    (off - on) / off * 100.0,
                    r.dashboard_draw_ms
                );
            } else {
                println!(
                    "{:>10} {:>8} {:>16.0} {:>8.2}x {:>14.2} {:>14.0} {:>12.3} {:>12.3} {:>9}",
                    r.agents,
                    threads,
                    r.agent_ticks_per_sec,
                    r.agent_ticks_per_sec / base,
                    r.realtime_factor,
                    r.bytes_per_agent,
                    r.step_ms_p50,
                    r.step_ms_p99,
                    r.stolen
                        .map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
                );
            }
        }
        if args.repeat > 2 && !args.metrics_cost {
            // The fastest runs are the least disturbed; the medians show what a
            // typical run gives.
            let medians: Vec<f64> = thread_counts
                .iter()
                .map(|&threads| {
                    let mut rates: Vec<f64> = runs
                        .iter()
                        .filter(|r| r.threads == threads)
                        .map(|r| r.agent_ticks_per_sec)
                        .collect();
                    rates.sort_by(f64::total_cmp);
                    rates[rates.len() / 2]
                })
                .collect();
            let line: Vec<String> = thread_counts
                .iter()
                .zip(&medians)
                .map(|(threads, m)| format!("{threads} thread(s) {m:.0} ({:.2}x)", m / medians[0]))
                .collect();
            println!("{:>10} medians: {}", "", line.join(", "));
        }
        results.extend(runs);
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
