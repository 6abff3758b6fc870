//! The flocking model: its known behaviour (flocks form, so polarization
//! rises from a random start; every bird moves exactly its step length),
//! determinism on 1, 2 and 4 threads, and its parameters checked with the
//! scenario file.

use std::path::Path;

use bevy_tasks::{ComputeTaskPool, TaskPoolBuilder};
use continuum::parallel::ThreadLoad;
use continuum::prelude::*;
use continuum_models::flocking::{
    ConsistencyScale, FlockingParams, local_polarization, polarization,
};
use continuum_models::{ModelsPlugin, behaviours};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scenarios/models/flocking.ron"
);

/// The shipped scenario with `birds` birds at the same density.
fn scenario(birds: u32) -> Scenario {
    let mut s = Scenario::load_with(Path::new(SHIPPED), &behaviours()).expect("shipped scenario");
    let side = (birds as f32 / 0.1).sqrt();
    s.world.size = bevy_math::Vec2::splat(side);
    s.groups[0].count = birds;
    s
}

fn harness(scenario: Scenario, threads: usize) -> SimHarness {
    SimHarness::with(scenario, |app| {
        app.add_plugins(ModelsPlugin::default())
            .insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
    })
}

/// Four compute threads, whatever the machine, so that 2- and 4-thread
/// passes really run on that many.
fn pool() {
    ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
}

#[test]
fn the_shipped_scenario_uses_the_published_parameters() {
    let s = Scenario::load_with(Path::new(SHIPPED), &behaviours()).unwrap();
    let bird = s.archetypes.iter().find(|a| a.kind == "bird").unwrap();
    let Behaviour::Model { name, params } = &bird.behaviour else {
        panic!("birds have the flocking behaviour");
    };
    assert_eq!(name, "flocking");
    let expected = FlockingParams {
        consistency_scale: ConsistencyScale::Mean,
        ..FlockingParams::default()
    };
    assert_eq!(params.read::<FlockingParams>().unwrap(), expected);
    let side = s.world.size.x;
    assert!((s.groups[0].count as f32 / (side * side) - 0.1).abs() < 1e-4);
}

#[test]
fn polarization_rises_from_a_random_start() {
    let mut sim = harness(scenario(2000), 1);
    let start = polarization(sim.world_mut());
    let local_start = local_polarization(sim.world_mut(), 10.0);
    assert!(start < 0.1, "random headings start unaligned, got {start}");
    assert!(
        local_start < 0.3,
        "neighbours start unaligned, got {local_start}"
    );
    sim.step(300);
    let end = polarization(sim.world_mut());
    let local_end = local_polarization(sim.world_mut(), 10.0);
    assert!(
        end > 0.5 && local_end > 0.9,
        "flocks should form and align: polarization {start} -> {end}, among neighbours {local_start} -> {local_end}"
    );
}

/// With the published comparisons' scaling of consistency (krABMaga's), the
/// urge to align is some thirty times weaker: birds stay unaligned.
#[test]
fn the_comparisons_scaling_leaves_birds_unaligned() {
    let mut s = scenario(2000);
    s.archetypes[0].behaviour = Behaviour::Model {
        name: "flocking".into(),
        params: ModelParams::of(&FlockingParams::default()).unwrap(),
    };
    let mut sim = harness(s, 1);
    sim.step(300);
    let local = local_polarization(sim.world_mut(), 10.0);
    assert!(local < 0.3, "got {local}");
}

#[test]
fn every_bird_moves_its_step_length_and_stays_in_the_world() {
    let mut sim = harness(scenario(1000), 1);
    sim.step(20);
    let side = sim.world().resource::<WorldMap>().size();
    let step = FlockingParams::default().step;
    let dt = sim.clock().step_secs() as f32;
    for (id, vel) in sim.agents::<Velocity>() {
        let len = vel.0.length() * dt;
        assert!((len - step).abs() < 1e-3, "{id:?} stepped {len}");
    }
    for (id, pos) in sim.agents::<Position>() {
        let p = pos.0;
        assert!(
            p.x >= 0.0 && p.x < side.x && p.y >= 0.0 && p.y < side.y,
            "{id:?} left the torus: {p}"
        );
    }
}

#[test]
fn the_same_flock_on_one_two_and_four_threads() {
    pool();
    let run = |threads: usize| {
        let mut sim = harness(scenario(3000), threads);
        sim.step(40);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        sim.state_digest()
    };
    let one = run(1);
    assert_eq!(run(2), one, "2 threads");
    assert_eq!(run(4), one, "4 threads");
}

#[test]
fn bad_parameters_are_refused_with_their_place() {
    let source = std::fs::read_to_string(SHIPPED).unwrap();
    let bad = source.replace("cohesion: 0.8", "cohesion: -2.0");
    let e = Scenario::from_ron_with(&bad, Path::new("f.ron"), &behaviours()).unwrap_err();
    assert_eq!(e.field, "archetypes[0].behaviour.params.cohesion");
    let line = bad
        .lines()
        .position(|l| l.contains("cohesion: -2.0"))
        .unwrap()
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains("weight"), "{e}");

    let typo = source.replace("momentum: 1.0", "momentun: 1.0");
    let e = Scenario::from_ron_with(&typo, Path::new("f.ron"), &behaviours()).unwrap_err();
    let line = typo.lines().position(|l| l.contains("momentun")).unwrap() + 1;
    let column = typo
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("momentun")
        .unwrap()
        + 1;
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.message.contains("momentun"), "{e}");

    let unknown = source.replace("name: \"flocking\"", "name: \"flock\"");
    let e = Scenario::from_ron_with(&unknown, Path::new("f.ron"), &behaviours()).unwrap_err();
    assert_eq!(e.field, "archetypes[0].behaviour.name");
    assert!(
        e.message.contains("flocking"),
        "names what is registered: {e}"
    );
}
