//! Runs the shipped wolf-sheep scenario in a test harness and prints the
//! populations, the grown grass and the energy books every 20 virtual seconds.
//!
//!   cargo run --release -p continuum-models --example wolf_sheep [SEED [SIDE]]
//!
//! SIDE gives the pasture another side (in cells), with as many animals per
//! cell as the scenario's.

use std::path::Path;

use continuum::prelude::*;
use continuum_models::wolf_sheep::{Animal, EnergyLedger, Pasture};
use continuum_models::{ModelsPlugin, behaviours};

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/models/wolf-sheep.ron");
    let mut scenario = match Scenario::load_with(&path, &behaviours()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(seed) = std::env::args().nth(1).and_then(|s| s.parse().ok()) {
        scenario.seed = seed;
    }
    if let Some(side) = std::env::args().nth(2).and_then(|s| s.parse::<f32>().ok()) {
        let scale = (side / scenario.world.size.x).powi(2);
        scenario.world.size = bevy_math::Vec2::splat(side);
        for group in &mut scenario.groups {
            group.count = (group.count as f32 * scale).round() as u32;
        }
    }
    let seconds = scenario.clock.duration.unwrap_or(1000.0) as u64;
    let sheep = scenario.archetypes[0].kind.clone();
    let mut sim = SimHarness::with(scenario, |app| {
        app.add_plugins(ModelsPlugin::default());
    });
    let sheep = sim
        .world()
        .resource::<Archetypes>()
        .kind(&sheep)
        .expect("a sheep kind");
    println!("virtual s  sheep  wolves  grass  born  starved  eaten  hunts");
    for t in (0..=seconds).step_by(20) {
        if t > 0 {
            sim.run_for(20.0);
        }
        let animals = sim.agents::<Animal>();
        let kinds = sim.agents::<Agent>();
        let alive_sheep = kinds.iter().filter(|(_, a)| a.kind == sheep).count();
        let now = sim.clock().now();
        let grass = sim.world().resource::<Pasture>().grown_cells(now);
        let l = sim.world().resource::<EnergyLedger>();
        println!(
            "{t:>9}  {alive_sheep:>5}  {:>6}  {grass:>5}  {:>4}  {:>7}  {:>5}  {:>5}",
            animals.len() - alive_sheep,
            l.born,
            l.starved,
            l.eaten,
            l.hunts_asked
        );
        if animals.is_empty() {
            break;
        }
    }
}
