//! `continuum run`: a scenario headless, with a dashboard or status lines, a
//! time series, a plot and a report.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_app::PluginGroup;
use continuum::ContinuumPlugins;
use continuum::archetype::Archetypes;
use continuum::headless::{build_app_with, default_threads, prime, run, set_pacing};
use continuum::metrics::Metrics;
use continuum::monitor::ResourceMonitorPlugin;
use continuum::scenario::{ClockMode, Scenario};

use crate::args::RunArgs;
use crate::dashboard::{DashboardState, mib, si, terminal::Tui};
use crate::invalid;
use crate::logging::LogSink;
use crate::plot::{PlotError, is_picture, plot};
use crate::report::{RunContext, RunReport, write_report};
use crate::series::{MetricsRecorder, SeriesFormat, SeriesWriter};

pub fn run_command(args: RunArgs, log: &LogSink) -> ExitCode {
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
        scenario.pacing.speed = speed;
    }
    if args.fast {
        scenario.pacing.mode = ClockMode::Fast;
    } else if args.realtime {
        scenario.pacing.mode = ClockMode::Realtime;
    }
    if let Err(e) = scenario.check_resources(&args.scenario) {
        return invalid(&e);
    }
    let pacing = scenario.pacing;
    let mode = pacing.mode;
    let speed = if mode == ClockMode::Fast {
        1.0
    } else {
        pacing.speed
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
        match Tui::start(log.clone()) {
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
        crate::series::record(&mut app, run_label, args.metrics_interval);
    }
    set_pacing(&mut app, pacing);
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

/// How the run shows itself while it goes.
enum Ui {
    Quiet,
    Lines,
    Dashboard(Box<Tui>),
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
