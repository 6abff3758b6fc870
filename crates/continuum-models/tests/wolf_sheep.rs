//! Wolf-sheep predation: the populations oscillate and both live on; no
//! energy appears from nowhere (the living hold exactly what the books say,
//! step after step); births and deaths go through the pool; two wolves after
//! one sheep conflict and only one eats it; the same run on 1, 2 and 4
//! threads; parameters checked with the scenario file.

use std::path::Path;

use bevy_ecs::prelude::*;
use bevy_tasks::{ComputeTaskPool, TaskPoolBuilder};
use continuum::action::{ActionKind, ActionResult, Outcome};
use continuum::parallel::ThreadLoad;
use continuum::prelude::*;
use continuum_models::wolf_sheep::{Animal, EnergyLedger, HUNT, SheepParams, WolfParams};
use continuum_models::{ModelsPlugin, behaviours};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scenarios/models/wolf-sheep.ron"
);

fn scenario(seed: u64) -> Scenario {
    let mut s = Scenario::load_with(Path::new(SHIPPED), &behaviours()).expect("shipped scenario");
    s.seed = seed;
    s
}

/// Hunts that lost their sheep to another wolf, and sheep eaten, by step.
#[derive(Resource, Default)]
struct Hunts {
    lost: u64,
    won: u64,
}

fn count_hunts(mut outcomes: MessageReader<Outcome>, mut hunts: ResMut<Hunts>) {
    for o in outcomes.read() {
        if let ActionKind::Custom { code: HUNT, .. } = o.kind {
            match o.result {
                ActionResult::Rejected { .. } => hunts.lost += 1,
                ActionResult::Applied { .. } => hunts.won += 1,
                ActionResult::Failed { .. } => {}
            }
        }
    }
}

fn harness(scenario: Scenario, threads: usize) -> SimHarness {
    SimHarness::with(scenario, |app| {
        app.add_plugins(ModelsPlugin::default())
            .insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass())
            .init_resource::<Hunts>()
            .add_systems(
                bevy_app::FixedUpdate,
                count_hunts.in_set(ContinuumSystems::Learn),
            );
    })
}

/// (sheep, wolves) alive now.
fn populations(sim: &mut SimHarness) -> (usize, usize) {
    let sheep = sim.world().resource::<Archetypes>().kind("sheep").unwrap();
    let agents = sim.agents::<Agent>();
    let s = agents.iter().filter(|(_, a)| a.kind == sheep).count();
    (s, agents.len() - s)
}

fn living_energy(sim: &mut SimHarness) -> i64 {
    sim.agents::<Animal>()
        .iter()
        .map(|(_, a)| {
            assert!(a.alive, "the dead retire at the end of their step");
            i64::from(a.energy)
        })
        .sum()
}

#[test]
fn no_energy_appears_from_nowhere() {
    let mut sim = harness(scenario(3), 1);
    let mut births = 0;
    for _ in 0..1500 {
        sim.step(1);
        let ledger = sim.world().resource::<EnergyLedger>().clone();
        assert_eq!(
            living_energy(&mut sim),
            ledger.expected_living(),
            "{ledger:?}"
        );
        births = ledger.born;
    }
    let ledger = sim.world().resource::<EnergyLedger>().clone();
    assert!(
        births > 50 && ledger.starved > 10 && ledger.eaten > 10,
        "{ledger:?}"
    );
    assert!(ledger.from_grass > 0 && ledger.from_prey > 0);
    // Births and deaths went through the pool.
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!(pool.retired(), ledger.starved + ledger.eaten);
    assert!(pool.requested() >= 150 + ledger.born);
}

/// Over 600 virtual seconds (600 ticks of each animal) both species live on
/// and their numbers swing, sheep rising while wolves are few and falling as
/// wolves multiply: several rises and falls of a quarter or more.
#[test]
fn the_populations_oscillate() {
    let mut sim = harness(scenario(1), 1);
    let mut sheep = Vec::new();
    let mut wolves = Vec::new();
    for _ in 0..60 {
        sim.run_for(10.0);
        let (s, w) = populations(&mut sim);
        assert!(s > 0 && w > 0, "both species live on: {sheep:?} {wolves:?}");
        sheep.push(s as f64);
        wolves.push(w as f64);
    }
    // Swings: a local peak followed by a fall of at least a quarter before
    // the next rise.
    let swings = |series: &[f64]| {
        let (mut count, mut peak, mut falling) = (0, series[0], false);
        for &x in &series[1..] {
            if x > peak && !falling {
                peak = x;
            } else if x <= 0.75 * peak && !falling {
                count += 1;
                falling = true;
                peak = x;
            } else if falling && x < peak {
                peak = x;
            } else if falling && x >= 1.25 * peak {
                falling = false;
                peak = x;
            }
        }
        count
    };
    assert!(swings(&sheep) >= 2, "sheep {sheep:?}");
    assert!(swings(&wolves) >= 2, "wolves {wolves:?}");
    let hunts = sim.world().resource::<Hunts>();
    assert!(hunts.won > 100, "wolves ate");
    assert!(
        hunts.lost > 0,
        "some wolves were after a sheep another wolf ate in the same step"
    );
    let ledger = sim.world().resource::<EnergyLedger>();
    assert!(ledger.eaten <= hunts.won, "one sheep feeds one wolf");
}

#[test]
fn the_same_run_on_one_two_and_four_threads() {
    ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
    let run = |threads: usize| {
        let mut s = scenario(5);
        s.world.size = bevy_math::Vec2::splat(102.0);
        s.groups[0].count = 400;
        s.groups[1].count = 200;
        let mut sim = harness(s, threads);
        sim.step(600);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        let ledger = sim.world().resource::<EnergyLedger>().clone();
        (sim.state_digest(), ledger, sim.agents::<Animal>())
    };
    let one = run(1);
    assert_eq!(run(2), one, "2 threads");
    assert_eq!(run(4), one, "4 threads");
}

#[test]
fn the_shipped_scenario_has_netlogos_defaults() {
    let s = scenario(7);
    let params = |i: usize| match &s.archetypes[i].behaviour {
        Behaviour::Model { params, .. } => params.clone(),
        _ => panic!("animals have model behaviours"),
    };
    assert_eq!(
        params(0).read::<SheepParams>().unwrap(),
        SheepParams::default()
    );
    assert_eq!(
        params(1).read::<WolfParams>().unwrap(),
        WolfParams::default()
    );
    assert_eq!(s.world.size, bevy_math::Vec2::splat(51.0));
    assert_eq!((s.groups[0].count, s.groups[1].count), (100, 50));
}

#[test]
fn bad_parameters_are_refused_with_their_place() {
    let source = std::fs::read_to_string(SHIPPED).unwrap();
    for (from, to, field, words) in [
        (
            "reproduce: 0.05",
            "reproduce: 1.5",
            "archetypes[1].behaviour.params.reproduce",
            "chance",
        ),
        (
            "gain_from_food: 4,",
            "gain_from_food: 0,",
            "archetypes[0].behaviour.params.gain_from_food",
            "whole energy",
        ),
        (
            "grass_regrowth: 30.0",
            "grass_regrowth: -1.0",
            "archetypes[0].behaviour.params.grass_regrowth",
            "virtual seconds",
        ),
    ] {
        let bad = source.replacen(from, to, 1);
        let e = Scenario::from_ron_with(&bad, Path::new("w.ron"), &behaviours()).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        let line = bad.lines().position(|l| l.contains(to)).unwrap() + 1;
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(words), "{e}");
    }
}

/// The models need none of the sites model's plugins: without its
/// behaviours, memory and asynchronous thinks (so no shared cache) the
/// resolver still settles the meals, and the run is the same as with them.
#[test]
fn runs_without_the_memory_plugin() {
    use bevy_app::PluginGroup;
    use continuum::ContinuumPlugins;
    use continuum::headless::build_app_with;
    use continuum::memory::MemoryPlugin;
    use continuum::think::ThinkPlugin;
    let plugins = ContinuumPlugins::default()
        .build()
        .disable::<BehaviourPlugin>()
        .disable::<SitesModelPlugin>()
        .disable::<MemoryPlugin>()
        .disable::<ThinkPlugin>()
        .add(ModelsPlugin::default());
    let mut lean = SimHarness::from_app(build_app_with(scenario(4), 1, plugins));
    assert!(
        lean.world()
            .get_resource::<continuum::memory::SharedCache>()
            .is_none()
    );
    let mut full = SimHarness::with(scenario(4), |app| {
        app.add_plugins(ModelsPlugin::default());
    });
    lean.step(2000);
    full.step(2000);
    let ledger = lean.world().resource::<EnergyLedger>().clone();
    assert!(ledger.eaten > 0 && ledger.from_grass > 0, "{ledger:?}");
    assert_eq!(&ledger, full.world().resource::<EnergyLedger>());
    assert_eq!(lean.agents::<Animal>(), full.agents::<Animal>());
}

/// Without the action plugin nothing resolves the meals: nobody eats, and
/// the models still run (their messages are their own to register).
#[test]
fn without_the_action_plugin_nobody_eats() {
    use bevy_app::PluginGroup;
    use continuum::ContinuumPlugins;
    use continuum::action::ActionPlugin;
    use continuum::headless::build_app_with;
    let plugins = ContinuumPlugins::default()
        .build()
        .disable::<ActionPlugin>()
        .add(ModelsPlugin::default());
    let mut sim = SimHarness::from_app(build_app_with(scenario(4), 1, plugins));
    sim.step(200);
    let ledger = sim.world().resource::<EnergyLedger>().clone();
    assert_eq!((ledger.from_grass, ledger.from_prey), (0, 0), "{ledger:?}");
    assert!(ledger.grazes_asked > 0 && ledger.spent > 0);
    assert_eq!(living_energy(&mut sim), ledger.expected_living());
}

/// An animal retired alive by someone else (a game, a lifetime) takes its
/// energy out of the books.
#[test]
fn an_animal_retired_alive_leaves_the_books_balanced() {
    let mut sim = harness(scenario(6), 1);
    sim.step(50);
    let mut query = sim.world_mut().query::<(Entity, &Animal)>();
    let entity = query
        .iter(sim.world())
        .find(|(_, a)| a.alive && a.energy > 0)
        .map(|(e, _)| e)
        .expect("a live animal with energy");
    sim.world_mut().resource_mut::<AgentPool>().retire(entity);
    sim.step(1);
    let ledger = sim.world().resource::<EnergyLedger>().clone();
    assert_eq!(ledger.left, 1);
    assert_eq!(living_energy(&mut sim), ledger.expected_living());
    sim.step(100);
    let ledger = sim.world().resource::<EnergyLedger>().clone();
    assert_eq!(living_energy(&mut sim), ledger.expected_living());
}

/// A checkpoint keeps the animals' energies, the grass and the books: a run
/// restored from one goes on exactly as the run never interrupted.
#[test]
fn a_checkpoint_keeps_the_animals_the_grass_and_the_books() {
    use bevy_app::PluginGroup;
    use continuum::agent::AgentId;
    use continuum::checkpoint::{self, Checkpoint};
    use continuum::headless::{FAST, build_app_with, set_pacing};
    use continuum_models::wolf_sheep::Pasture;
    fn energies(world: &mut World) -> Vec<(AgentId, Animal)> {
        let mut animals: Vec<_> = world
            .query::<(&Agent, &Animal)>()
            .iter(world)
            .map(|(a, animal)| (a.id, *animal))
            .collect();
        animals.sort_by_key(|(id, _)| *id);
        animals
    }
    let mut first = harness(scenario(3), 1);
    first.step(400);
    let bytes = checkpoint::save(first.world_mut()).expect("saved");
    first.step(400);

    let checkpoint = Checkpoint::from_bytes(bytes, Path::new("ws.ckpt")).unwrap();
    let plugins = continuum::ContinuumPlugins::default()
        .build()
        .add(ModelsPlugin::default());
    let mut second = build_app_with(checkpoint.scenario_with(&behaviours()).unwrap(), 1, plugins);
    set_pacing(&mut second, FAST);
    checkpoint.restore(&mut second).expect("restored");
    for _ in 0..400 {
        second.update();
    }

    let now = first.world().resource::<SimClock>().now();
    assert_eq!(second.world().resource::<SimClock>().now(), now);
    assert_eq!(
        second.world().resource::<EnergyLedger>(),
        first.world().resource::<EnergyLedger>()
    );
    assert_eq!(energies(second.world_mut()), energies(first.world_mut()));
    assert_eq!(
        second.world().resource::<Pasture>().grown_cells(now),
        first.world().resource::<Pasture>().grown_cells(now)
    );
    assert_eq!(
        continuum::digest::state_digest(second.world_mut()),
        first.state_digest()
    );
}
