//! Live control through the harness: pausing, resuming and changing speed while
//! a run goes, and realtime pacing on a manual real clock.

mod common;

use std::time::Duration;

use bevy_time::{Time, Virtual};
use continuum::metrics::{Metrics, PaceLog};
use continuum::monitor::ResourceStats;
use continuum::prelude::*;

fn virtual_elapsed(sim: &SimHarness) -> Duration {
    sim.world().resource::<Time<Virtual>>().elapsed()
}

fn ratio(sim: &SimHarness) -> f64 {
    sim.world().resource::<Metrics>().snapshot().realtime_ratio
}

#[test]
fn a_pause_runs_no_steps_and_resuming_matches_a_run_never_paused() {
    let mut paused = SimHarness::new(common::shipped("quickstart.ron"));
    paused.step(60);
    paused.pause();
    assert!(paused.is_paused());
    let frozen = virtual_elapsed(&paused);
    let digest_at_pause = paused.state_digest();
    paused.step(40);
    assert_eq!(paused.clock().step(), 60, "no step runs while paused");
    assert_eq!(
        virtual_elapsed(&paused),
        frozen,
        "virtual time stands still"
    );
    assert_eq!(paused.state_digest(), digest_at_pause);
    paused.resume();
    paused.step(60);
    assert_eq!(paused.clock().step(), 120);

    let mut straight = SimHarness::new(common::shipped("quickstart.ron"));
    straight.step(120);
    assert_eq!(
        paused.state_digest(),
        straight.state_digest(),
        "a pause changes nothing the run computes"
    );
}

#[test]
fn realtime_pacing_keeps_the_ratio_near_one_at_speed_1_and_10() {
    for speed in [1.0, 10.0] {
        let mut sim = SimHarness::realtime(common::three_priorities(), speed).unwrap();
        assert_eq!(sim.clock().step(), 0, "no step before real time passes");
        sim.advance_real(Duration::from_secs(5));
        let expected = 500.0 * speed;
        let steps = sim.clock().step() as f64;
        assert!(
            (steps - expected).abs() <= 1.0,
            "speed {speed}: {steps} steps in 5 real seconds, expected {expected}"
        );
        let r = ratio(&sim);
        assert!((r - 1.0).abs() < 0.02, "speed {speed}: ratio {r}");
        assert_eq!(sim.world().resource::<Metrics>().snapshot().speed, speed);
    }
}

#[test]
fn steps_per_real_second_follow_a_speed_change() {
    let mut sim = SimHarness::realtime(common::three_priorities(), 1.0).unwrap();
    sim.advance_real(Duration::from_secs(1));
    let at_1 = sim.clock().step();
    assert!((99..=101).contains(&at_1), "{at_1} steps at speed 1");
    sim.set_speed(4.0).unwrap();
    assert_eq!(sim.speed(), 4.0);
    sim.advance_real(Duration::from_secs(1));
    let at_4 = sim.clock().step() - at_1;
    assert!((399..=401).contains(&at_4), "{at_4} steps at speed 4");
    sim.set_speed(0.5).unwrap();
    sim.advance_real(Duration::from_secs(2));
    let at_half = sim.clock().step() - at_1 - at_4;
    assert!(
        (99..=101).contains(&at_half),
        "{at_half} steps at speed 0.5"
    );
    let r = ratio(&sim);
    assert!(
        (r - 1.0).abs() < 0.02,
        "every speed kept to: ratio {r}, not the 1/4 the latest speed alone would give"
    );
}

#[test]
fn bad_speeds_are_refused_and_change_nothing() {
    let mut sim = SimHarness::realtime(common::three_priorities(), 2.0).unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2.0e6] {
        let err = sim.set_speed(bad).unwrap_err();
        assert!(err.to_string().contains("positive speed"), "{err}");
        assert_eq!(sim.speed(), 2.0);
    }
    assert!(SimHarness::realtime(common::three_priorities(), 0.0).is_err());
}

#[test]
fn time_paused_in_realtime_is_not_lag() {
    let mut sim = SimHarness::realtime(common::three_priorities(), 1.0).unwrap();
    sim.advance_real(Duration::from_secs(1));
    let before = sim.clock().step();
    sim.pause();
    sim.advance_real(Duration::from_secs(3));
    assert_eq!(sim.clock().step(), before, "no step while paused");
    sim.resume();
    sim.advance_real(Duration::from_secs(1));
    let after = sim.clock().step() - before;
    assert!(
        (99..=101).contains(&after),
        "{after} steps: resuming owes nothing for the pause"
    );
    let pace = sim.world().resource::<PaceLog>();
    assert!((pace.paused_seconds - 3.0).abs() < 1e-6, "{pace:?}");
    let snapshot = sim.world().resource::<Metrics>().snapshot().clone();
    assert!((snapshot.paused_wall_seconds - 3.0).abs() < 1e-6);
    assert!(!snapshot.paused);
    let r = snapshot.realtime_ratio;
    assert!((r - 1.0).abs() < 0.02, "ratio {r} after 3 s paused");
}

fn loaded(speed: f64, busy_per_step_ns: u64) -> SimHarness {
    let mut sim = SimHarness::realtime(common::three_priorities(), speed).unwrap();
    common::add_fake_busy(sim.app_mut());
    sim.world_mut().resource_mut::<common::FakeBusy>().per_step = busy_per_step_ns;
    sim
}

fn level(sim: &SimHarness) -> usize {
    sim.world().resource::<ResourceStats>().overload.level
}

#[test]
fn the_monitor_does_not_shed_during_or_after_a_pause() {
    // Half of the 10 ms a step may take at speed 1: comfortably on time.
    let mut sim = loaded(1.0, 5_000_000);
    sim.advance_real(Duration::from_secs(3));
    assert_eq!(level(&sim), 0);
    sim.pause();
    sim.advance_real(Duration::from_secs(10));
    assert_eq!(level(&sim), 0, "a pause is not overload");
    sim.resume();
    sim.advance_real(Duration::from_secs(5));
    assert_eq!(level(&sim), 0, "nor is the time after it");
    let load = sim.world().resource::<ResourceStats>().load;
    assert!((load - 0.5).abs() < 0.01, "load {load}");
}

#[test]
fn the_monitor_measures_load_against_the_current_speed() {
    // 0.5 ms a step: 5 % of the step's real time at speed 1, half of it at
    // speed 10, and twice what speed 40 allows.
    let mut calm = loaded(10.0, 500_000);
    calm.advance_real(Duration::from_secs(4));
    assert_eq!(
        level(&calm),
        0,
        "speed 10 is not overload when steps keep up"
    );
    let load = calm.world().resource::<ResourceStats>().load;
    assert!((load - 0.5).abs() < 0.01, "load {load}");

    calm.set_speed(40.0).unwrap();
    calm.advance_real(Duration::from_secs(3));
    assert!(level(&calm) > 0, "at speed 40 the same steps are overload");
}

/// In fast mode Bevy moves `Time<Real>` on by the steps taken: the pace is
/// read from the wall clock instead, so the ratio says how much faster than
/// real time the run went.
#[test]
fn a_fast_run_paces_on_the_wall_clock() {
    let started = std::time::Instant::now();
    let mut sim = SimHarness::new(common::shipped("quickstart.ron"));
    sim.run_for(12.0);
    let measured = started.elapsed().as_secs_f64();
    let pace = sim.world().resource::<PaceLog>().clone();
    assert!(
        pace.wall_seconds <= measured,
        "{} wall seconds counted in {measured} (12 virtual s)",
        pace.wall_seconds
    );
    assert_eq!(
        pace.paced_seconds, pace.wall_seconds,
        "speed 1, never paused"
    );
    let r = ratio(&sim);
    assert!(
        (r - 12.0 / pace.paced_seconds).abs() < 0.1 * r,
        "ratio {r} over {} paced seconds",
        pace.paced_seconds
    );
}
