//! The throughput benchmark: agent-ticks per second and bytes per agent at a
//! given population, in fast mode.
//!
//! One measurement per process (`continuum bench` starts itself once per size),
//! so resident memory and Bevy's process-wide task pools start clean each time.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bevy_app::App;

use serde::{Deserialize, Serialize};

use continuum::clock::ClockSettings;
use continuum::headless::{FAST, build_app, prime, set_pacing};
use continuum::metrics::RunStats;
use continuum::metrics::current_rss_bytes;
use continuum::scenario::{ClockMode, GroupSpec, Scenario};
use continuum::world::WorldSettings;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub agents: u64,
    /// Virtual seconds measured after the warm-up.
    pub seconds: f64,
    /// Virtual seconds run before measuring (admission, first ticks).
    pub warmup: f64,
    pub threads: usize,
    pub fixed_hz: f64,
    pub tick_hz: f32,
    /// Update the live [`Metrics`](continuum::metrics::Metrics) every step (as a run
    /// does); off measures what they cost.
    pub live_metrics: bool,
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub agents: u64,
    pub threads: usize,
    pub fixed_hz: f64,
    pub tick_hz: f32,
    /// Agent ticks in the measured window.
    pub agent_ticks: u64,
    /// Wall seconds of the measured window.
    pub wall_seconds: f64,
    pub agent_ticks_per_sec: f64,
    /// Virtual seconds simulated per wall second in the measured window.
    pub realtime_factor: f64,
    /// Resident memory added by the simulation, divided by the agents.
    pub bytes_per_agent: f64,
    /// Of which the memory slab's blocks (memory records, including blocks
    /// freed for reuse), per agent.
    #[serde(default)]
    pub slab_bytes_per_agent: f64,
    pub step_ms_p50: f64,
    pub step_ms_p99: f64,
    pub live_metrics: bool,
    /// Wall time of one dashboard redraw (into an off-screen buffer), in ms.
    pub dashboard_draw_ms: f64,
    /// Mean wall time per step in each phase (ms), over the measured window.
    pub phase_ms: Vec<(String, f64)>,
    /// Share of the machine's CPU time that the hypervisor gave to other
    /// virtual machines during the measured window ("steal" time; Linux only).
    /// Runs with much of it were slowed by neighbours, not by the engine.
    #[serde(default)]
    pub stolen: Option<f64>,
}

/// The machine's CPU time so far in clock ticks, from the first line of
/// `/proc/stat`: (idle, stolen, total).
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64, u64)> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already counted in user and nice.
    let idle = fields.get(3)? + fields.get(4)?;
    Some((idle, *fields.get(7)?, fields.iter().take(8).sum()))
}

/// [`parse_cpu_ticks`] of this machine (`None` elsewhere than on Linux).
fn cpu_ticks() -> Option<(u64, u64, u64)> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The machine's CPU time so far, as (stolen, total) in clock ticks (`None`
/// elsewhere than on Linux).
fn cpu_steal_ticks() -> Option<(u64, u64)> {
    cpu_ticks().map(|(_, steal, total)| (steal, total))
}

/// The share of CPU time that was not idle between two [`parse_cpu_ticks`]
/// readings.
fn busy_between(before: Option<(u64, u64, u64)>, after: Option<(u64, u64, u64)>) -> Option<f64> {
    let ((i0, _, t0), (i1, _, t1)) = (before?, after?);
    (t1 > t0).then(|| 1.0 - i1.saturating_sub(i0) as f64 / (t1 - t0) as f64)
}

/// How busy the machine is before a benchmark starts: the share of its CPU
/// time that was not idle over `window` (`None` elsewhere than on Linux).
/// Another benchmark or build running at the same time competes for the cores
/// and skews every figure, above all the speed-ups.
pub fn machine_busy(window: std::time::Duration) -> Option<f64> {
    let before = cpu_ticks();
    std::thread::sleep(window);
    busy_between(before, cpu_ticks())
}

/// The share of CPU time stolen between two [`cpu_steal_ticks`] readings.
fn stolen_between(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    (t1 > t0).then(|| s1.saturating_sub(s0) as f64 / (t1 - t0) as f64)
}

/// The benchmark's world: the three built-in kinds in equal shares (drawn per
/// agent), at constant density (1000 agents per 1000 × 1000 units, one site per
/// five agents) so that per-agent work does not change with the population.
pub fn bench_scenario(agents: u64, fixed_hz: f64, tick_hz: f32) -> Scenario {
    let side = (agents as f64 * 1000.0).sqrt().max(100.0) as f32;
    let regions = ((side / 500.0).ceil() as u32).clamp(1, 64);
    let group = GroupSpec {
        tick_hz: Some(tick_hz),
        ..GroupSpec::of(&["explorer", "analyzer", "controller"], agents as u32)
    };
    Scenario {
        seed: 1,
        world: WorldSettings {
            size: bevy_math::Vec2::splat(side),
            regions: (regions, regions),
            sites: (agents / 5).max(1) as u32,
            ..WorldSettings::default()
        },
        clock: ClockSettings {
            fixed_hz,
            duration: None,
        },
        pacing: FAST,
        ..Scenario::new(format!("bench-{agents}"), vec![group])
    }
}

/// The benchmark's app on `threads` threads in fast mode, after `warmup`
/// virtual seconds (admission, first ticks).
fn warmed_up(scenario: Scenario, threads: usize, live_metrics: bool, warmup: f64) -> App {
    let fixed_hz = scenario.clock.fixed_hz;
    let mut app = build_app(scenario, threads);
    app.insert_resource(continuum::metrics::MetricsSettings {
        live: live_metrics,
        ..Default::default()
    });
    set_pacing(&mut app, FAST);
    prime(&mut app);
    for _ in 0..(warmup * fixed_hz).round() as u64 {
        app.update();
    }
    app
}

/// Runs one measurement in this process.
pub fn run_once(config: &BenchConfig) -> BenchResult {
    let rss_before = current_rss_bytes().unwrap_or(0);
    let mut scenario = bench_scenario(config.agents, config.fixed_hz, config.tick_hz);
    scenario.clock.duration = Some(config.warmup + config.seconds);
    let mut app = warmed_up(scenario, config.threads, config.live_metrics, config.warmup);
    let rss_after = current_rss_bytes().unwrap_or(0);
    let slab_after = continuum::memory::slab_usage();
    let ticks_before = app.world().resource::<RunStats>().agent_ticks;
    let phases_before = app
        .world()
        .resource::<continuum::clock::PhaseTimes>()
        .total_ns;
    let steps_before = app.world().resource::<RunStats>().steps;
    app.world_mut()
        .resource_mut::<RunStats>()
        .step_times
        .reset();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let steal_before = cpu_steal_ticks();
    let started = Instant::now();
    continuum::headless::run(
        &mut app,
        &stop,
        std::time::Duration::from_secs(3600),
        |_| {},
    );
    let wall = started.elapsed().as_secs_f64();
    let stolen = stolen_between(steal_before, cpu_steal_ticks());
    let stats = app.world().resource::<RunStats>();
    let ticks = stats.agent_ticks - ticks_before;
    BenchResult {
        agents: config.agents,
        threads: config.threads,
        fixed_hz: config.fixed_hz,
        tick_hz: config.tick_hz,
        agent_ticks: ticks,
        wall_seconds: wall,
        agent_ticks_per_sec: ticks as f64 / wall,
        realtime_factor: config.seconds / wall,
        bytes_per_agent: rss_after.saturating_sub(rss_before) as f64 / config.agents as f64,
        slab_bytes_per_agent: slab_after.reserved_bytes as f64 / config.agents as f64,
        step_ms_p50: stats.step_ms_quantile(0.5),
        step_ms_p99: stats.step_ms_quantile(0.99),
        live_metrics: config.live_metrics,
        dashboard_draw_ms: dashboard_draw_ms(&app),
        phase_ms: {
            let times = app.world().resource::<continuum::clock::PhaseTimes>();
            let steps = (stats.steps - steps_before).max(1) as f64;
            continuum::clock::PhaseTimes::NAMES
                .iter()
                .zip(times.total_ns.iter().zip(phases_before))
                .map(|(name, (now, then))| (name.to_string(), (now - then) as f64 / 1e6 / steps))
                .collect()
        },
        stolen,
    }
}

/// What [`run_pair`] compares.
#[derive(Clone, Debug)]
pub struct PairConfig {
    pub agents: u64,
    /// Virtual seconds measured after the warm-up, shared by the thread counts.
    pub seconds: f64,
    /// Virtual seconds run before measuring.
    pub warmup: f64,
    /// The thread counts compared; the first is the baseline.
    pub threads: Vec<usize>,
    /// Steps each thread count runs before the next takes over.
    pub block_steps: u32,
    pub fixed_hz: f64,
    pub tick_hz: f32,
}

/// Thread counts compared within one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    pub agents: u64,
    pub threads: Vec<usize>,
    pub block_steps: u32,
    /// Rounds measured: each runs a block at every thread count, in order, and
    /// then another in reverse order.
    pub rounds: u32,
    /// Agent-ticks per wall second at each thread count, over the whole run.
    pub agent_ticks_per_sec: Vec<f64>,
    /// Each thread count's throughput over the first's, over the whole run.
    pub speedup: Vec<f64>,
    /// The same per round: median, lowest and highest over the rounds.
    pub round_speedup_median: Vec<f64>,
    pub round_speedup_min: Vec<f64>,
    pub round_speedup_max: Vec<f64>,
    /// Share of the machine's CPU time stolen by the hypervisor during the run.
    pub stolen: Option<f64>,
    /// Steps run in all, warm-up included.
    pub steps: u64,
    /// The state digest after the last step: the same as a run of as many steps
    /// on any one thread count.
    pub state_digest: String,
}

/// Compares thread counts in one run: the benchmark's world runs on each count
/// in turn, `block_steps` steps at a time, in rounds that go through the counts
/// forwards and then backwards (1, 2, 2, 1, ...). On a shared machine whose
/// speed drifts from one second to the next, the counts then see the same
/// drift, which separate runs do not. The simulation is the same whatever the
/// thread count, so every count runs the same kind of steps.
pub fn run_pair(config: &PairConfig) -> PairResult {
    let counts = config.threads.len();
    assert!(counts > 0, "at least one thread count");
    let most = config.threads.iter().copied().max().unwrap_or(1);
    let mut scenario = bench_scenario(config.agents, config.fixed_hz, config.tick_hz);
    scenario.clock.duration = None;
    let mut app = warmed_up(scenario, most, true, config.warmup);
    let order: Vec<usize> = (0..counts).chain((0..counts).rev()).collect();
    let block = config.block_steps.max(1);
    let steps = (config.seconds * config.fixed_hz).round().max(1.0);
    let rounds = (steps / f64::from(block) / order.len() as f64).ceil() as u32;
    // (agent ticks, wall seconds) per round and thread count.
    let mut measured = vec![vec![(0u64, 0.0f64); counts]; rounds as usize];
    let steal_before = cpu_steal_ticks();
    for round in measured.iter_mut() {
        for &i in &order {
            app.world_mut()
                .resource_mut::<continuum::parallel::ThreadLoad>()
                .set_threads(config.threads[i]);
            let ticks_before = app.world().resource::<RunStats>().agent_ticks;
            let started = Instant::now();
            for _ in 0..block {
                app.update();
            }
            let wall = started.elapsed().as_secs_f64();
            let ticks = app.world().resource::<RunStats>().agent_ticks - ticks_before;
            round[i].0 += ticks;
            round[i].1 += wall;
        }
    }
    let stolen = stolen_between(steal_before, cpu_steal_ticks());
    let rate = |(ticks, wall): (u64, f64)| ticks as f64 / wall.max(1e-9);
    let totals: Vec<f64> = (0..counts)
        .map(|i| {
            rate(
                measured
                    .iter()
                    .fold((0, 0.0), |(t, w), r| (t + r[i].0, w + r[i].1)),
            )
        })
        .collect();
    let mut round_speedups: Vec<Vec<f64>> = (0..counts)
        .map(|i| measured.iter().map(|r| rate(r[i]) / rate(r[0])).collect())
        .collect();
    round_speedups
        .iter_mut()
        .for_each(|v| v.sort_by(f64::total_cmp));
    PairResult {
        agents: config.agents,
        threads: config.threads.clone(),
        block_steps: block,
        rounds,
        speedup: totals.iter().map(|t| t / totals[0]).collect(),
        agent_ticks_per_sec: totals,
        round_speedup_median: round_speedups.iter().map(|v| median(v)).collect(),
        round_speedup_min: round_speedups.iter().map(|v| v[0]).collect(),
        round_speedup_max: round_speedups.iter().map(|v| v[v.len() - 1]).collect(),
        stolen,
        steps: app.world().resource::<continuum::clock::SimClock>().step(),
        state_digest: continuum::digest::state_digest(app.world_mut()).to_string(),
    }
}

/// The median of sorted, non-empty `values`.
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Times one dashboard redraw of this run's figures into an off-screen buffer
/// (the best of ten).
fn dashboard_draw_ms(app: &App) -> f64 {
    use crate::dashboard::{DashboardState, draw};
    let Some(metrics) = app.world().get_resource::<continuum::metrics::Metrics>() else {
        return 0.0;
    };
    let mut state = DashboardState {
        scenario: "bench".into(),
        mode: ClockMode::Fast,
        threads: 1,
        duration: Some(60.0),
        snapshot: metrics.snapshot().clone(),
        kinds: vec!["explorer".into(), "analyzer".into(), "controller".into()],
        history: Default::default(),
        log: Default::default(),
    };
    for _ in 0..60 {
        state.history.push(&state.snapshot);
    }
    let Ok(mut terminal) = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 50));
    (0..10)
        .map(|_| {
            let started = Instant::now();
            let _ = terminal.draw(|frame| draw(frame, &state));
            started.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(threads: &[usize]) -> PairResult {
        run_pair(&PairConfig {
            // 200 agents due a step: enough for the passes to be shared.
            agents: 2000,
            seconds: 0.4,
            warmup: 0.2,
            threads: threads.to_vec(),
            block_steps: 5,
            fixed_hz: 100.0,
            tick_hz: 10.0,
        })
    }

    #[test]
    fn switching_thread_counts_within_a_run_changes_no_result() {
        let one = pair(&[1]);
        let switching = pair(&[1, 2]);
        // 40 measured steps either way: 4 rounds of 1, 1 or 2 rounds of 1, 2, 2, 1.
        assert_eq!((one.rounds, switching.rounds), (4, 2));
        assert_eq!(one.steps, switching.steps);
        assert_eq!(one.state_digest, switching.state_digest);
        assert_eq!(switching.speedup[0], 1.0);
        assert!(switching.agent_ticks_per_sec.iter().all(|&r| r > 0.0));
        let (lo, mid, hi) = (
            switching.round_speedup_min[1],
            switching.round_speedup_median[1],
            switching.round_speedup_max[1],
        );
        assert!(lo <= mid && mid <= hi, "{lo} {mid} {hi}");
    }

    #[test]
    fn stolen_share_between_readings() {
        assert_eq!(
            stolen_between(Some((10, 1000)), Some((60, 1500))),
            Some(0.1)
        );
        assert_eq!(stolen_between(Some((10, 1000)), Some((10, 1000))), None);
        assert_eq!(stolen_between(None, Some((10, 1000))), None);
    }

    #[test]
    fn busy_share_counts_everything_but_idle_and_iowait() {
        let stat = |idle: u64, iowait: u64, user: u64, steal: u64| {
            format!("cpu  {user} 0 50 {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
        };
        let before = parse_cpu_ticks(&stat(1000, 100, 400, 10));
        assert_eq!(before, Some((1100, 10, 1560)));
        // 200 ticks later: 50 idle, 10 iowait, 130 user, 10 stolen.
        let after = parse_cpu_ticks(&stat(1050, 110, 530, 20));
        let busy = busy_between(before, after).unwrap();
        assert!((busy - 0.7).abs() < 1e-12, "busy {busy}");
        assert_eq!(busy_between(after, after), None);
        assert_eq!(parse_cpu_ticks("intr 1 2 3\n"), None);
        if cfg!(target_os = "linux") {
            let (steal, total) = cpu_steal_ticks().expect("/proc/stat on Linux");
            assert!(steal <= total && total > 0);
        }
    }
}
