//! `continuum bench` and `bench-pair`: agent-ticks per second and bytes per
//! agent in fast mode, and thread counts compared within one run.

mod measure;
pub mod models;

pub use measure::{BenchConfig, BenchResult, PairConfig, run_once, run_pair};

use std::process::ExitCode;

use continuum::headless::default_threads;

use crate::args::{BenchArgs, BenchModel, BenchPairArgs};
use models::ModelResult;

/// Warns when the machine is already busy before a benchmark starts.
fn warn_if_busy() {
    if let Some(busy) = measure::machine_busy(std::time::Duration::from_millis(300))
        && busy > 0.25
    {
        errln!(
            "warning: the machine was {:.0} % busy before the benchmark started (another benchmark or a build?); the figures compete with that load",
            busy * 100.0
        );
    }
}

pub fn bench_pair_command(a: &BenchPairArgs) -> ExitCode {
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
        outln!("{}", serde_json::to_string(&result).expect("serialisable"));
        return ExitCode::SUCCESS;
    }
    outln!(
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
    outln!(
        "{:>8} {:>16} {:>9} {:>26}",
        "threads",
        "agent-ticks/s",
        "speed-up",
        "per round: median (range)"
    );
    for (i, threads) in result.threads.iter().enumerate() {
        outln!(
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

pub fn bench_command(args: BenchArgs) -> ExitCode {
    let thread_counts: Vec<usize> = if args.threads.is_empty() {
        vec![default_threads()]
    } else {
        args.threads.iter().map(|&t| usize::from(t)).collect()
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            errln!("error: cannot find this executable to start the measurements: {e}");
            return ExitCode::FAILURE;
        }
    };
    warn_if_busy();
    if args.model != BenchModel::Sites {
        return bench_model(&args, &thread_counts, &exe);
    }
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
    outln!(
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
        outln!(
            "{:>10} {:>8} {:>18} {:>18} {:>10} {:>18}",
            "agents",
            "threads",
            "ticks/s metrics on",
            "ticks/s off",
            "cost",
            "dashboard draw ms"
        );
    } else {
        outln!(
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
                        errln!(
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
                outln!(
                    "{:>10} {:>8} {:>18.0} {:>18.0} {:>9.2}% {:>18.3}",
                    agents,
                    threads,
                    on,
                    off,
                    (off - on) / off * 100.0,
                    r.dashboard_draw_ms
                );
            } else {
                outln!(
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
            outln!("{:>10} medians: {}", "", line.join(", "));
        }
        results.extend(runs);
    }
    if let Some(path) = args.json {
        let lines: String = results
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialisable") + "\n")
            .collect();
        if let Err(e) = std::fs::write(&path, lines) {
            errln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `continuum bench --model flocking|schelling`: each population on each
/// thread count, `--repeat` times in turns, one process per measurement; every
/// run is a JSON line in `--json`, and the table keeps the fastest of each.
fn bench_model(args: &BenchArgs, thread_counts: &[usize], exe: &std::path::Path) -> ExitCode {
    let model = args.model.name();
    let measure = |agents: u64, threads: usize| -> Option<ModelResult> {
        let output = std::process::Command::new(exe)
            .args(["bench-one", "--model", model])
            .args(["--agents", &agents.to_string()])
            .args(["--steps", &args.steps.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--seconds", "0", "--fixed-hz", "10", "--tick-hz", "10"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        serde_json::from_slice(&output.stdout).ok()
    };
    match args.model {
        BenchModel::Schelling => outln!(
            "schelling: a grid four fifths full, every resident every step from the random start, {} steps per run",
            args.steps
        ),
        BenchModel::WolfSheep => outln!(
            "wolf-sheep: NetLogo's density and parameters, every animal every step, {} steps per run (agent-steps count the animals alive)",
            args.steps
        ),
        _ => outln!(
            "flocking: 0.1 birds per unit area, radius 10, every bird every step, {} steps per run",
            args.steps
        ),
    }
    outln!(
        "{:>10} {:>8} {:>18} {:>9} {:>14}",
        "agents",
        "threads",
        "agent-steps/s",
        "speed-up",
        "peak RSS MB"
    );
    let mut all = Vec::new();
    for &agents in &args.agents {
        let mut runs = Vec::new();
        for _ in 0..args.repeat {
            for &threads in thread_counts {
                let Some(r) = measure(agents, threads) else {
                    errln!("error: a measurement at {agents} agents, {threads} thread(s) failed");
                    return ExitCode::FAILURE;
                };
                runs.push(r);
            }
        }
        let fastest = |threads: usize| {
            runs.iter()
                .filter(|r| r.threads == threads)
                .max_by(|a, b| a.agent_steps_per_sec.total_cmp(&b.agent_steps_per_sec))
                .expect("measured")
        };
        let base = fastest(thread_counts[0]).agent_steps_per_sec;
        for &threads in thread_counts {
            let r = fastest(threads);
            outln!(
                "{:>10} {:>8} {:>18.0} {:>8.2}x {:>14.1}",
                r.agents,
                threads,
                r.agent_steps_per_sec,
                r.agent_steps_per_sec / base,
                r.peak_rss_bytes as f64 / 1e6
            );
        }
        all.extend(runs);
    }
    if let Some(path) = &args.json {
        let lines: String = all
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialisable") + "\n")
            .collect();
        if let Err(e) = continuum::atomic_file::write_bytes_atomically(path, lines.as_bytes()) {
            errln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
