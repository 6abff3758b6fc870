//! Monitoring: the live metrics agree with the report, the time series has one
//! row per interval, plots are real pictures, the dashboard shows the numbers,
//! and a live run samples the machine.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use continuum::action::ResolverDiagnostics;
use continuum::metrics::{Metrics, RunStats};
use continuum::prelude::*;
use continuum::scenario::ClockMode;
use continuum_cli::dashboard::{DashboardState, History, draw};
use continuum_cli::plot::plot;
use continuum_cli::report::{RunContext, RunReport};
use continuum_cli::series::{MetricsRecorder, MetricsRow, SeriesWriter, read_series};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// How a one-thread run at speed 1 of `scenario` went, for its report.
fn context(scenario: &str, mode: ClockMode, wall_seconds: f64) -> RunContext {
    RunContext {
        scenario: scenario.into(),
        threads: 1,
        mode,
        speed: 1.0,
        wall_seconds,
        interrupted: false,
        resumed: None,
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitoring");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn quickstart_with_recorder(seconds: f64, interval: f64) -> SimHarness {
    let mut sim = SimHarness::with(common::shipped("quickstart.ron"), |app| {
        continuum_cli::series::record(app, "quickstart/test", interval);
    });
    sim.run_for(seconds);
    sim
}

#[test]
fn live_metrics_match_the_report() {
    let mut sim = quickstart_with_recorder(12.0, 1.0);
    let snapshot = sim.world().resource::<Metrics>().snapshot().clone();
    let stats = sim.world().resource::<RunStats>().clone();
    let diag = sim.world().resource::<ResolverDiagnostics>().clone();
    let report = RunReport::gather(
        sim.world_mut(),
        &context("quickstart", ClockMode::Fast, 1.0),
    );
    assert_eq!(snapshot.steps, 1200);
    assert_eq!(snapshot.steps, report.steps);
    assert!((snapshot.virtual_seconds - report.virtual_seconds).abs() < 1e-9);
    assert_eq!(snapshot.agent_ticks, report.agent_ticks);
    assert_eq!(snapshot.agent_ticks, stats.agent_ticks);
    assert_eq!(snapshot.actions_submitted, report.actions_submitted);
    assert_eq!(snapshot.actions_applied, report.actions_applied);
    assert_eq!(snapshot.actions_rejected, report.actions_rejected);
    assert_eq!(snapshot.conflicts, report.conflicts);
    assert_eq!(snapshot.conflicts, diag.conflicts);
    assert_eq!(snapshot.agents_active, report.agents_active);
    assert!(snapshot.agent_ticks_per_sec > 0.0 && snapshot.cache_hit_rate > 0.5);
    let by_kind: f64 = snapshot.ticks_per_sec_by_kind.iter().sum();
    assert!((by_kind - snapshot.agent_ticks_per_sec).abs() < 1e-6 * by_kind.max(1.0));
}

#[test]
fn the_time_series_has_one_row_per_interval_with_the_right_columns() {
    let mut sim = quickstart_with_recorder(10.0, 0.5);
    let rows = sim.world_mut().resource_mut::<MetricsRecorder>().take();
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        assert!(
            (row.virtual_time - 0.5 * (i + 1) as f64).abs() < 1e-9,
            "{row:?}"
        );
        assert_eq!(row.run, "quickstart/test");
        assert_eq!(row.agents_active, 300);
    }
    assert!(rows.windows(2).all(|w| w[1].agent_ticks > w[0].agent_ticks));

    let csv = tmp("series.csv");
    let mut writer = SeriesWriter::create(&csv).unwrap();
    for row in &rows {
        writer.write(row).unwrap();
    }
    writer.finish().unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    for column in [
        "run",
        "virtual_time",
        "wall_time",
        "agents_active",
        "actions_per_sec",
        "conflicts",
        "cpu_percent",
        "rss_bytes",
        "cache_hit_rate",
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "no column {column} in {header}"
        );
    }
    assert_eq!(text.lines().count(), 21);
    same_rows(&read_series(&csv).unwrap(), &rows);

    let jsonl = tmp("series.jsonl");
    let mut writer = SeriesWriter::create(&jsonl).unwrap();
    for row in &rows {
        writer.write(row).unwrap();
    }
    writer.finish().unwrap();
    same_rows(&read_series(&jsonl).unwrap(), &rows);
}

/// Counts come back exactly, rates to within a rounding of their last digit.
fn same_rows(back: &[MetricsRow], rows: &[MetricsRow]) {
    assert_eq!(back.len(), rows.len());
    for (a, b) in back.iter().zip(rows) {
        assert_eq!(
            (&a.run, a.steps, a.agent_ticks, a.conflicts, a.rss_bytes),
            (&b.run, b.steps, b.agent_ticks, b.conflicts, b.rss_bytes)
        );
        for (x, y) in [
            (a.virtual_time, b.virtual_time),
            (a.cache_hit_rate, b.cache_hit_rate),
            (a.actions_per_sec, b.actions_per_sec),
        ] {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} != {y}");
        }
    }
}

#[test]
fn plots_are_real_pictures() {
    let mut sim = quickstart_with_recorder(30.0, 1.0);
    let rows: Vec<MetricsRow> = sim.world_mut().resource_mut::<MetricsRecorder>().take();
    let png = tmp("plot.png");
    plot(&rows, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 50_000, "a {}-byte PNG", bytes.len());
    let svg = tmp("plot.svg");
    plot(&rows, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("Conflicts per virtual second"));
    assert!(text.len() > 20_000);
    assert!(plot(&[], &png).is_err());
}

#[test]
fn the_dashboard_shows_the_numbers() {
    let sim = quickstart_with_recorder(6.0, 1.0);
    let snapshot = sim.world().resource::<Metrics>().snapshot().clone();
    let mut history = History::default();
    history.push(&snapshot);
    let state = DashboardState {
        scenario: "quickstart".into(),
        mode: ClockMode::Fast,
        threads: 2,
        duration: Some(60.0),
        snapshot: snapshot.clone(),
        kinds: vec!["explorer".into(), "analyzer".into(), "controller".into()],
        history,
        log: ["a warning".to_string()].into(),
    };
    let mut terminal = Terminal::new(TestBackend::new(110, 40)).unwrap();
    terminal.draw(|frame| draw(frame, &state)).unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .chunks(110)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    for expected in [
        "Continuum · quickstart",
        "virtual 6.0 s",
        "fast mode, 2 thread(s)",
        "active        300",
        &format!("conflicts     {}", snapshot.conflicts),
        &format!("steps         {}", snapshot.steps),
        "10 %",
        &format!("{} evicted", snapshot.cache_evictions),
        "explorer",
        "a warning",
    ] {
        assert!(
            screen.contains(expected),
            "{expected:?} not on the dashboard:\n{screen}"
        );
    }
}

fn screen_of(state: &DashboardState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(110, 40)).unwrap();
    terminal.draw(|frame| draw(frame, state)).unwrap();
    terminal
        .backend()
        .buffer()
        .content()
        .chunks(110)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect()
}

#[test]
fn live_control_shows_on_the_dashboard_and_in_the_report() {
    let mut sim = SimHarness::realtime(common::shipped("quickstart.ron"), 1.0).unwrap();
    sim.advance_real(Duration::from_secs(1));
    sim.pause();
    sim.advance_real(Duration::from_secs(2));
    let dashboard = |sim: &SimHarness| DashboardState {
        scenario: "quickstart".into(),
        mode: ClockMode::Realtime,
        threads: 1,
        duration: None,
        snapshot: sim.world().resource::<Metrics>().snapshot().clone(),
        kinds: vec![],
        history: History::default(),
        log: Default::default(),
    };
    let paused = screen_of(&dashboard(&sim));
    assert!(paused.contains("PAUSED"), "{paused}");
    assert!(
        paused.contains("space: pause/resume"),
        "the keys in the footer:\n{paused}"
    );
    sim.resume();
    sim.set_speed(2.0).unwrap();
    sim.advance_real(Duration::from_secs(1));
    let running = screen_of(&dashboard(&sim));
    assert!(running.contains("speed ×2"), "{running}");
    assert!(!running.contains("PAUSED"), "{running}");

    let report = RunReport::gather(
        sim.world_mut(),
        &context("quickstart", ClockMode::Realtime, 4.0),
    );
    assert_eq!(report.steps, 300, "1 s at ×1 and 1 s at ×2, at 100 Hz");
    assert_eq!(report.speed, 1.0);
    assert_eq!(report.speed_at_end, 2.0);
    assert!(
        (report.paused_seconds - 2.0).abs() < 1e-6,
        "{}",
        report.paused_seconds
    );
    // Wall time at the starting speed alone would read 3 / 4 = 0.75.
    assert!(
        (report.realtime_ratio - 1.0).abs() < 0.02,
        "ratio {} over paced time",
        report.realtime_ratio
    );
}

#[test]
fn the_cli_streams_metrics_and_plots() {
    let csv = tmp("cli.csv");
    let png = tmp("cli.png");
    let out = common::continuum([
        "run",
        "scenarios/quickstart.ron",
        "--duration",
        "5",
        "--metrics",
        csv.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("real-time ratio"),
        "a plain status line when stderr is not a terminal"
    );
    assert_eq!(read_series(&csv).unwrap().len(), 5);
    assert!(std::fs::metadata(&png).unwrap().len() > 50_000);

    let svg = tmp("cli.svg");
    let out = common::continuum(["plot", csv.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let bad = tmp("bad.csv");
    std::fs::write(&bad, "run,virtual_time\nx,not-a-number\n").unwrap();
    let out = common::continuum(["plot", bad.to_str().unwrap(), "-o", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.csv:2"));
}

#[test]
fn a_live_run_samples_cpu_and_memory() {
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-report.json");
    let out = common::continuum([
        "run",
        "scenarios/quickstart.ron",
        "--realtime",
        "--speed",
        "12",
        "--duration",
        "30",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let r = &json["resources"];
    assert!(r["samples"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["rss_bytes_max"].as_u64().unwrap() > 1_000_000, "{r}");
    assert!(r["cpu_percent_max"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["machine_memory_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(!r["threads"].as_array().unwrap().is_empty(), "{r}");
}

/// The planners' thinks: the live metrics, the report, the dashboard, the
/// status line and the summary all show them.
#[test]
fn thinks_reach_the_metrics_the_report_and_the_dashboard() {
    let mut planners = common::shipped("planners.ron");
    planners.clock.duration = Some(10.0);
    let mut sim = SimHarness::new(planners);
    sim.run_for(10.0);
    let snapshot = sim.world().resource::<Metrics>().snapshot().clone();
    let diag = sim.world().resource::<ThinkDiagnostics>().clone();
    let report = RunReport::gather(sim.world_mut(), &context("planners", ClockMode::Fast, 1.0));
    let t = &report.think;
    assert!(t.started > 50, "{t:?}");
    assert_eq!(
        (t.started, t.finished, t.late, t.waiting, t.in_flight),
        (diag.started, diag.finished, 0, diag.waiting, diag.in_flight)
    );
    assert_eq!((t.max_in_flight, t.peak_in_flight), (8, 8));
    assert!(t.mean_queue_seconds > 0.0, "plans waited for a slot");
    assert!(t.delivered <= t.finished && t.finished <= t.started);
    assert_eq!(
        (snapshot.thinks_started, snapshot.thinks_finished),
        (t.started, t.finished)
    );
    let state = DashboardState {
        scenario: "planners".into(),
        mode: ClockMode::Fast,
        threads: 1,
        duration: Some(10.0),
        snapshot: snapshot.clone(),
        kinds: Vec::new(),
        history: History::default(),
        log: Default::default(),
    };
    let mut terminal = Terminal::new(TestBackend::new(110, 40)).unwrap();
    terminal.draw(|frame| draw(frame, &state)).unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    let row = format!(
        "thinks        {} run {} wait 0 late",
        snapshot.thinks_in_flight, snapshot.thinks_waiting
    );
    assert!(screen.contains(&row), "{row:?} not on the dashboard");

    let json = tmp("planners.json");
    let out = common::continuum([
        "run",
        "scenarios/planners.ron",
        "--duration",
        "3",
        "--report",
        json.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" in flight, "), "the status line: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 late, ") && stdout.contains("(8 at most in flight"),
        "the summary: {stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["think"]["started"].as_u64().unwrap() > 0);
    assert_eq!(report["think"]["late"], 0, "fast mode is never late");
}
