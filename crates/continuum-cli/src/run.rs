//! `continuum run`: a scenario headless, with a dashboard or status lines, a
//! time series, a plot and a report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use continuum::agent::AgentPool;
use continuum::archetype::Archetypes;
use continuum::checkpoint::{self, Checkpoint, CheckpointError};
use continuum::clock::SimClock;
use continuum::headless::{build_app_with, default_threads, prime, run, set_pacing};
use continuum::metrics::{Metrics, RunStats};
use continuum::monitor::ResourceMonitorPlugin;
use continuum::scenario::{ActiveScenario, ClockMode, Scenario};

use bevy_ecs::prelude::*;

use crate::args::{ResumeArgs, RunArgs, RunOptions};
use crate::dashboard::terminal::{Input, Tui};
use crate::dashboard::{DashboardState, mib, si};
use crate::invalid;
use crate::logging::LogSink;
use crate::plot::{PlotError, is_picture, plot};
use crate::report::{Resumed, RunContext, RunReport, write_report};
use crate::series::{MetricsRecorder, SeriesFormat, SeriesWriter};

pub fn run_command(args: RunArgs, log: &LogSink) -> ExitCode {
    let mut scenario = match Scenario::load_with(&args.scenario, &continuum_models::behaviours()) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    if let Err(e) = check_outputs(&args.options, &args.scenario, None) {
        return invalid(&e);
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
    apply_pacing(&mut scenario, &args.options);
    if let Err(e) = scenario.check_resources(&args.scenario) {
        return invalid(&e);
    }
    execute(scenario, None, &args.options, log)
}

/// `continuum resume`: a run continued from its checkpoint, or a branch of it.
pub fn resume_command(args: ResumeArgs, log: &LogSink) -> ExitCode {
    let checkpoint = match Checkpoint::read(&args.input) {
        Ok(c) => c,
        Err(e) => return invalid(&e),
    };
    let mut scenario = match checkpoint.scenario_with(&continuum_models::behaviours()) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    // Writing the next checkpoint over the one resumed from is what a long
    // run does; any other output must not overwrite it.
    if let Err(e) = check_outputs(&args.options, &args.input, Some(&args.input)) {
        return invalid(&e);
    }
    let at = checkpoint.step() as f64 * (1.0 / scenario.clock.fixed_hz);
    if let Some(d) = args.duration {
        if d <= at {
            return invalid(&format!(
                "--duration {d}: the checkpoint is at {at} virtual s; the run must last longer"
            ));
        }
        scenario.clock.duration = Some(d);
    }
    if let Some(strategy) = args.conflicts {
        scenario.conflicts = strategy;
    }
    if let Some(n) = args.add_agents {
        scenario.max_agents = Some(scenario.max_agents().saturating_add(n as usize));
    }
    apply_pacing(&mut scenario, &args.options);
    if let Err(e) = scenario.check_resources(&args.input) {
        return invalid(&e);
    }
    execute(
        scenario,
        Some((checkpoint, args.add_agents.unwrap_or(0))),
        &args.options,
        log,
    )
}

/// `--fast`, `--realtime` and `--speed` over the scenario's pacing.
fn apply_pacing(scenario: &mut Scenario, options: &RunOptions) {
    if let Some(speed) = options.speed {
        scenario.pacing.speed = speed;
    }
    if options.fast {
        scenario.pacing.mode = ClockMode::Fast;
    } else if options.realtime {
        scenario.pacing.mode = ClockMode::Realtime;
    }
}

/// Runs `scenario` (from its start, or from `resume`: a checkpoint and the
/// agents to add to it) with the dashboard or status lines, and writes its
/// outputs.
fn execute(
    scenario: Scenario,
    resume: Option<(Checkpoint, u64)>,
    args: &RunOptions,
    log: &LogSink,
) -> ExitCode {
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
            errln!(
                "error: cannot write {}: {e}",
                args.metrics
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
            return ExitCode::FAILURE;
        }
    };

    // SIGINT, SIGTERM and SIGHUP (ctrlc's `termination` feature) end the run
    // after the step under way; the report and the time series are still
    // written.
    let writer_temporary = series
        .as_ref()
        .map_or_else(Default::default, |w| w.temporary().to_owned());
    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed)) {
        tracing::warn!(
            "cannot catch Ctrl-C/SIGTERM/SIGHUP ({e}); an interrupted run will not report"
        );
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
        let arriving = match scenario.arriving_agents() {
            0 => String::new(),
            n => format!(" (and {n} arriving)"),
        };
        errln!(
            "running {name}: {} agents{arriving}, {} mode, {threads} thread(s){}",
            scenario.total_agents(),
            mode.as_str(),
            duration.map_or(String::from(", until interrupted"), |d| format!(
                ", {d} virtual s"
            )),
        );
    }

    let mut plugins = crate::plugins();
    if args.no_monitor {
        plugins = plugins.disable::<ResourceMonitorPlugin>();
    }
    let mut app = build_app_with(scenario, threads, plugins);
    // Before any agent is admitted: a budget that cannot hold them is bad input.
    if let Err(e) = continuum::memory::check_budget(app.world()) {
        return invalid(&format_args!("scenario `{name}`: {e}"));
    }
    if args.metrics.is_some() || args.plot.is_some() {
        crate::series::record(&mut app, run_label, args.metrics_interval);
    }
    set_pacing(&mut app, pacing);
    let mut resumed = None;
    match resume {
        None => prime(&mut app),
        Some((checkpoint, more)) => {
            if let Err(e) = checkpoint.restore(&mut app) {
                return invalid(&e);
            }
            resumed = Some(Resumed {
                virtual_seconds: app.world().resource::<SimClock>().elapsed_secs(),
                agent_ticks: app.world().resource::<RunStats>().agent_ticks,
            });
            if more > 0 {
                request_more(app.world_mut(), more);
            }
        }
    }
    // Refused before the first step, not when the first checkpoint is due.
    if args.checkpoint.is_some()
        && let Err(e) = checkpoint::check(app.world())
    {
        return invalid(&format_args!("--checkpoint: {e}"));
    }
    let mut checkpoints = args.checkpoint.as_deref().map(|path| Checkpoints {
        path,
        every: args.checkpoint_every,
        next: None,
        error: None,
    });
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
    let mut terminal_gone = false;
    let end = run(&mut app, &stop, Duration::from_millis(100), |app| {
        if let Some(c) = checkpoints.as_mut() {
            c.periodic(app.world_mut());
        }
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
        if let Ui::Dashboard(tui) = &mut ui {
            match tui.input() {
                Input::Nothing => {}
                Input::Stop => stop.store(true, Ordering::Relaxed),
                Input::Controls(keys) => {
                    for key in keys {
                        let said = crate::dashboard::apply_control(app.world_mut(), key, mode);
                        tracing::info!("{said}");
                    }
                }
                Input::Gone => {
                    terminal_gone = true;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        if last_shown.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last_shown = Some(Instant::now());
        state.snapshot = app.world().resource::<Metrics>().snapshot().clone();
        state.history.push(&state.snapshot);
        let drawn = match &mut ui {
            Ui::Dashboard(tui) => tui.draw(&mut state).is_ok(),
            Ui::Lines if state.snapshot.steps > 0 => {
                errln!("{}", status_line(&state));
                true
            }
            _ => true,
        };
        if !drawn {
            terminal_gone = true;
            stop.store(true, Ordering::Relaxed);
        }
    });
    drop(ui); // leave the dashboard's screen before printing the summary
    if terminal_gone {
        tracing::warn!("the terminal went away: the run ends here");
    }
    let report = RunReport::gather(
        app.world_mut(),
        &RunContext {
            scenario: name,
            threads,
            mode,
            speed,
            wall_seconds: end.wall_seconds,
            interrupted: end.interrupted,
            resumed,
        },
    );
    outln!("{}", summary(&report));
    let mut status = ExitCode::SUCCESS;
    if let Some(c) = checkpoints.as_mut() {
        // The final one: at the end, or where an interruption stopped the run.
        c.save(app.world_mut());
        match c.error.take() {
            Some(e) => {
                errln!("error: {e}");
                status = ExitCode::FAILURE;
            }
            None => errln!(
                "checkpoint at {:.2} virtual s: {} (continue with `continuum resume {}`)",
                app.world().resource::<SimClock>().elapsed_secs(),
                c.path.display(),
                c.path.display()
            ),
        }
    }
    if let Some(writer) = series {
        let result = match series_error {
            Some(e) => Err(e),
            None => writer.finish(),
        };
        if let Err(e) = result {
            errln!(
                "error: writing the metrics time series failed: {e}; the rows written so far are in {}",
                writer_temporary.display()
            );
            status = ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.report
        && let Err(e) = write_report(path, &report)
    {
        errln!("error: cannot write the report to {}: {e}", path.display());
        status = ExitCode::FAILURE;
    }
    if let Some(path) = &args.plot {
        match plot(&plot_rows, path) {
            Ok(()) => {}
            Err(PlotError::Empty) => {
                errln!("note: no plot: the run ended before the first metrics interval");
            }
            Err(e) => {
                errln!("error: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

/// The run's checkpoints: where, how often, and the first failure.
struct Checkpoints<'a> {
    path: &'a Path,
    every: Option<f64>,
    /// Virtual seconds at which the next periodic checkpoint is due.
    next: Option<f64>,
    error: Option<CheckpointError>,
}

impl Checkpoints<'_> {
    /// Saves a checkpoint if one is due (between steps: the run loop calls
    /// this after an update).
    fn periodic(&mut self, world: &mut World) {
        let Some(every) = self.every else {
            return;
        };
        let now = world.resource::<SimClock>().elapsed_secs();
        let next = *self
            .next
            .get_or_insert(((now / every).floor() + 1.0) * every);
        if now >= next {
            self.next = Some(((now / every).floor() + 1.0) * every);
            self.save(world);
        }
    }

    fn save(&mut self, world: &mut World) {
        match checkpoint::write(world, self.path) {
            Ok(bytes) => tracing::info!(path = %self.path.display(), bytes, "checkpoint written"),
            Err(e) => {
                tracing::warn!("{e}");
                self.error.get_or_insert(e);
            }
        }
    }
}

/// Requests `count` more agents into a resumed run (a branch), shared among
/// the scenario's groups.
fn request_more(world: &mut World, count: u64) {
    let archetypes = world.resource::<Archetypes>().clone();
    world.resource_scope(|world, mut active: Mut<ActiveScenario>| {
        let mut pool = world.resource_mut::<AgentPool>();
        active.request_more(count, &archetypes, &mut pool);
    });
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
    // The speed counts in realtime only (a fast run takes a step per update).
    let pace = match (state.mode, s.paused) {
        (_, true) => " | PAUSED".to_owned(),
        (ClockMode::Realtime, false) => format!(" at ×{}", s.speed),
        (ClockMode::Fast, false) => String::new(),
    };
    let thinks = if s.thinks_started > 0 {
        format!(
            " | thinks {} in flight, {} waiting, {} late",
            s.thinks_in_flight, s.thinks_waiting, s.thinks_late
        )
    } else {
        String::new()
    };
    format!(
        "[{:>7.1}s] virtual {:>8.1}s | agents {} active, {} queued | {} ticks/s | {} actions/s | conflicts {} ({}/s) | CPU {:.0}% RSS {} | real-time ratio {:.3}{pace}{thinks}{progress}",
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

/// What live control did to a run, for its summary: the speed it ended at when
/// that changed, and the time it stood paused.
fn pace_note(r: &RunReport) -> String {
    let mut note = String::new();
    if r.speed_at_end != r.speed {
        note += &format!(", ended at ×{}", r.speed_at_end);
    }
    if r.paused_seconds > 0.0 {
        note += &format!(", {:.1} s paused", r.paused_seconds);
    }
    note
}

fn summary(r: &RunReport) -> String {
    let kinds: Vec<String> = r
        .ticks_by_kind
        .iter()
        // The built-in kinds are defined in every run; name those that ticked.
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {}", si(*n as f64)))
        .collect();
    let t = &r.think;
    let thinks = if t.started > 0 {
        format!(
            "\nthinks {} started, {} finished, {} late, {} waiting at the end ({} at most in flight; mean wait for a slot {:.2} virtual s)",
            t.started, t.finished, t.late, t.waiting, t.max_in_flight, t.mean_queue_seconds
        )
    } else {
        String::new()
    };
    let res = &r.resources;
    let shed = if res.full_rate_share < 1.0 {
        let share = |all: u64, full: u64| {
            if all == 0 {
                "-".to_owned()
            } else {
                format!("{:.0} %", 100.0 * full as f64 / all as f64)
            }
        };
        let (all, full) = (&res.ticks_by_priority, &res.full_rate_ticks_by_priority);
        format!(
            "\nload shed: {:.1} % of ticks at full rate (high {}, normal {}, background {}); level {} at the end",
            100.0 * res.full_rate_share,
            share(all.high, full.high),
            share(all.normal, full.normal),
            share(all.background, full.background),
            res.overload_level,
        )
    } else {
        String::new()
    };
    format!(
        "{}{}: {:.1} virtual s in {:.2} wall s (real-time ratio {:.3}{}), {} agents, {} agent ticks ({}/s; {})\n\
         actions {} submitted, {} applied, {} rejected, {} failed; {} conflicts; harvested {:.1}\n\
         step ms p50 {:.3} p99 {:.3} max {:.3}; peak RSS {:.1} MiB; state digest {}{shed}{thinks}",
        r.scenario,
        if r.interrupted { " (interrupted)" } else { "" },
        r.virtual_seconds,
        r.wall_seconds,
        r.realtime_ratio,
        pace_note(r),
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

/// Refuses, before the run, outputs that would overwrite the scenario or one
/// another, and outputs that cannot be written: their directory cannot be
/// created, or a file cannot be created in it (tried with the temporary name
/// the output is written under, which is removed again).
fn check_outputs(
    args: &RunOptions,
    input: &Path,
    resumed_from: Option<&Path>,
) -> Result<(), String> {
    if let Some(p) = &args.metrics
        && SeriesFormat::of(p).is_none()
    {
        return Err(format!(
            "--metrics {}: expected a .csv or .jsonl file",
            p.display()
        ));
    }
    if let Some(p) = &args.plot
        && !is_picture(p)
    {
        return Err(format!(
            "--plot {}: expected a .png or .svg file",
            p.display()
        ));
    }
    let outputs: Vec<(&str, &Path)> = [
        ("--report", &args.report),
        ("--metrics", &args.metrics),
        ("--plot", &args.plot),
        ("--checkpoint", &args.checkpoint),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some((flag, path.as_deref()?)))
    .collect();
    // First (it creates missing directories, which lets the paths below be
    // resolved).
    for &(flag, path) in &outputs {
        can_write(path).map_err(|e| format!("{flag} {}: cannot write it: {e}", path.display()))?;
    }
    let source = FileIdentity::of(input);
    let what = if resumed_from.is_some() {
        "the checkpoint resumed from"
    } else {
        "the scenario file"
    };
    for (i, &(flag, path)) in outputs.iter().enumerate() {
        let id = FileIdentity::of(path);
        if id == source && !(flag == "--checkpoint" && resumed_from.is_some()) {
            return Err(format!(
                "{flag} {}: that is {what} {}; choose another output file",
                path.display(),
                input.display()
            ));
        }
        if let Some((other, other_path)) =
            outputs[..i].iter().find(|(_, p)| FileIdentity::of(p) == id)
        {
            return Err(format!(
                "{flag} {} and {other} {} are the same file; give each output its own",
                path.display(),
                other_path.display()
            ));
        }
    }
    Ok(())
}

/// Which file a path names: the device and inode of an existing file (so that
/// `./a`, `a`, a symbolic link to `a` and a hard link to it are the same),
/// else its absolute path with the directory resolved.
#[derive(Debug, PartialEq, Eq)]
enum FileIdentity {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileIdentity {
    fn of(path: &Path) -> Self {
        if let Ok(meta) = std::fs::metadata(path) {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                return FileIdentity::Inode(meta.dev(), meta.ino());
            }
            #[cfg(not(unix))]
            {
                let _ = meta;
                if let Ok(canonical) = path.canonicalize() {
                    return FileIdentity::Path(canonical);
                }
            }
        }
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let resolved = match (absolute.parent(), absolute.file_name()) {
            (Some(dir), Some(name)) => dir
                .canonicalize()
                .map_or_else(|_| absolute.clone(), |dir| dir.join(name)),
            _ => absolute,
        };
        FileIdentity::Path(resolved)
    }
}

/// Whether `path` can be written: not a directory, its directory exists or can
/// be created, and a file can be created there.
fn can_write(path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    if path.file_name().is_none() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a file name"));
    }
    if path.is_dir() {
        return Err(Error::new(ErrorKind::IsADirectory, "it is a directory"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let probe = continuum::atomic_file::temporary_name(path);
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}
