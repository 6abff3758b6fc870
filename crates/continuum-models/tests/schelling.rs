//! Schelling's segregation model: the segregation index rises from its random
//! start, moves go through the conflict resolver (two residents after one cell
//! conflict, and nobody ever shares a cell), a retired resident's cell
//! empties, the same run on 1, 2 and 4 threads, and its parameters checked
//! with the scenario file.

use std::path::Path;

use bevy_ecs::entity::Entity;
use bevy_tasks::{ComputeTaskPool, TaskPoolBuilder};
use continuum::action::ResolverDiagnostics;
use continuum::parallel::ThreadLoad;
use continuum::prelude::*;
use continuum_models::schelling::{Resident, SchellingGrid, SchellingParams};
use continuum_models::{ModelsPlugin, behaviours};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scenarios/models/schelling.ron"
);

/// The shipped scenario on a `side × side` grid at the same density.
fn scenario(side: u32) -> Scenario {
    let mut s = Scenario::load_with(Path::new(SHIPPED), &behaviours()).expect("shipped scenario");
    s.world.size = bevy_math::Vec2::splat(side as f32);
    let each = side * side * 2 / 5; // 80 % of the cells, half of each kind
    for group in &mut s.groups {
        group.count = each;
    }
    s
}

fn harness(scenario: Scenario, threads: usize) -> SimHarness {
    SimHarness::with(scenario, |app| {
        app.add_plugins(ModelsPlugin::default())
            .insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
    })
}

fn grid(sim: &SimHarness) -> &SchellingGrid {
    sim.world().resource::<SchellingGrid>()
}

/// Every resident lives in exactly the cell the grid says, of its kind, at
/// that cell's centre; no two share a cell.
fn assert_consistent(sim: &mut SimHarness, residents: usize) {
    let mut query = sim.world_mut().query::<(&Agent, &Resident, &Position)>();
    let world = sim.world();
    let grid = world.resource::<SchellingGrid>();
    let mut cells = std::collections::BTreeSet::new();
    for (agent, resident, pos) in query.iter(world) {
        assert!(cells.insert(resident.cell), "{} shares a cell", agent.id);
        assert_eq!(grid.resident(resident.cell), Some(agent.kind));
        assert_eq!(pos.0, grid.centre(resident.cell));
    }
    assert_eq!(cells.len(), residents);
    assert_eq!(grid.cells() - grid.empty_cells(), residents);
}

#[test]
fn the_shipped_scenario_is_a_four_fifths_full_grid_of_two_kinds() {
    let s = Scenario::load_with(Path::new(SHIPPED), &behaviours()).unwrap();
    let residents: u32 = s.groups.iter().map(|g| g.count).sum();
    assert_eq!(residents, 8000);
    assert_eq!(s.world.size, bevy_math::Vec2::splat(100.0));
    for kind in &s.archetypes {
        let Behaviour::Model { name, params } = &kind.behaviour else {
            panic!("residents have the Schelling behaviour");
        };
        assert_eq!(name, "schelling");
        assert_eq!(
            params.read::<SchellingParams>().unwrap(),
            SchellingParams::default()
        );
    }
}

#[test]
fn segregation_rises_above_its_random_start() {
    let mut sim = harness(scenario(60), 1);
    let residents = 60 * 60 * 4 / 5;
    assert_consistent(&mut sim, residents);
    let start = grid(&sim).segregation();
    // Placed at random: about half of a resident's neighbours are its kind.
    assert!((0.4..0.6).contains(&start), "start {start}");
    sim.step(300); // 30 virtual seconds: 30 looks around each
    let end = grid(&sim).segregation();
    assert!(end > start + 0.2, "segregation {start} -> {end}");
    assert_consistent(&mut sim, residents);
    let diag = sim.world().resource::<ResolverDiagnostics>().clone();
    assert!(diag.applied > 0, "residents moved");
    assert!(diag.conflicts > 0, "some asked for the same cell in a step");
    assert_eq!(diag.submitted, diag.applied + diag.rejected + diag.failed);
}

/// Residents who are content stay: with nobody asking for more than none of
/// their neighbours alike, nobody moves.
#[test]
fn content_residents_stay() {
    let mut s = scenario(30);
    for kind in &mut s.archetypes {
        kind.behaviour = Behaviour::Model {
            name: "schelling".into(),
            params: ModelParams::of(&SchellingParams {
                similar_wanted: 0.0,
            })
            .unwrap(),
        };
    }
    let mut sim = harness(s, 1);
    let before = sim.agents::<Resident>();
    sim.step(50);
    assert_eq!(sim.agents::<Resident>(), before);
    assert_eq!(sim.world().resource::<ResolverDiagnostics>().submitted, 0);
}

#[test]
fn a_retired_resident_leaves_its_cell_empty() {
    let mut sim = harness(scenario(20), 1);
    let empty = grid(&sim).empty_cells();
    let mut query = sim.world_mut().query::<(Entity, &Resident)>();
    let (entity, cell) = query
        .iter(sim.world())
        .map(|(e, r)| (e, r.cell))
        .next()
        .unwrap();
    sim.world_mut().resource_mut::<AgentPool>().retire(entity);
    sim.step(1);
    assert_eq!(grid(&sim).resident(cell), None);
    assert_eq!(grid(&sim).empty_cells(), empty + 1);
    assert_consistent(&mut sim, 20 * 20 * 4 / 5 - 1);
}

#[test]
fn the_same_run_on_one_two_and_four_threads() {
    ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
    let run = |threads: usize| {
        let mut sim = harness(scenario(50), threads);
        sim.step(60);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        let cells: Vec<_> = (0..grid(&sim).cells() as u32)
            .map(|c| grid(&sim).resident(c))
            .collect();
        (sim.state_digest(), cells)
    };
    let one = run(1);
    assert_eq!(run(2), one, "2 threads");
    assert_eq!(run(4), one, "4 threads");
}

#[test]
fn a_share_outside_zero_to_one_is_refused_with_its_place() {
    let source = std::fs::read_to_string(SHIPPED).unwrap();
    let bad = source.replacen("similar_wanted: 0.375", "similar_wanted: 1.5", 1);
    let e = Scenario::from_ron_with(&bad, Path::new("s.ron"), &behaviours()).unwrap_err();
    assert_eq!(e.field, "archetypes[0].behaviour.params.similar_wanted");
    let line = bad
        .lines()
        .position(|l| l.contains("similar_wanted: 1.5"))
        .unwrap()
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains("[0, 1]"), "{e}");
}

/// A sweep over the share wanted: its points are checked against the models'
/// behaviours, and a share out of range is refused at its place in the sweep
/// file.
#[test]
fn sweeps_check_the_models_parameters() {
    use continuum::sweep::Sweep;
    let sweep = |values: &str| {
        format!(
            r#"Sweep(
    name: "wanted",
    scenario: "{SHIPPED}",
    grid: {{
        "archetypes[0].behaviour.params.similar_wanted": [{values}],
    }},
)"#
        )
    };
    let good =
        Sweep::from_ron_with(&sweep("0.25, 0.5"), Path::new("w.ron"), &behaviours()).unwrap();
    assert_eq!(good.run_count(), 2);
    let wanted: Vec<f32> = good
        .runs()
        .map(|run| {
            let s = good.scenario(&run);
            let Behaviour::Model { params, .. } = &s.archetypes[0].behaviour else {
                panic!("a model kind");
            };
            params.read::<SchellingParams>().unwrap().similar_wanted
        })
        .collect();
    assert_eq!(wanted, vec![0.25, 0.5]);
    let e =
        Sweep::from_ron_with(&sweep("0.25, 1.5"), Path::new("w.ron"), &behaviours()).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("[0, 1]"), "{e}");
}

/// More residents than cells: those without room are retired (they were
/// spawned without a cell, and never look around or empty a cell), and the
/// others live on as usual.
#[test]
fn residents_without_room_are_retired() {
    let mut s = scenario(10);
    for group in &mut s.groups {
        group.count = 60; // 120 residents for 100 cells
    }
    s.max_agents = Some(120);
    let mut sim = harness(s, 2);
    sim.step(30);
    assert_eq!(sim.world().resource::<AgentPool>().retired(), 20);
    assert_eq!(grid(&sim).empty_cells(), 0);
    assert_consistent(&mut sim, 100);
}
