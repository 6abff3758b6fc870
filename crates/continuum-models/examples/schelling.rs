//! Runs the shipped Schelling scenario in a test harness and prints the
//! segregation index every ten virtual seconds.
//!
//!   cargo run --release -p continuum-models --example schelling

use std::path::Path;

use continuum::action::ResolverDiagnostics;
use continuum::prelude::*;
use continuum_models::schelling::SchellingGrid;
use continuum_models::{ModelsPlugin, behaviours};

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/models/schelling.ron");
    let scenario = match Scenario::load_with(&path, &behaviours()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let seconds = scenario.clock.duration.unwrap_or(60.0) as u64;
    let mut sim = SimHarness::with(scenario, |app| {
        app.add_plugins(ModelsPlugin::default());
    });
    println!("virtual s  segregation  moved  conflicts");
    for t in (0..=seconds).step_by(10) {
        if t > 0 {
            sim.run_for(10.0);
        }
        let segregation = sim.world().resource::<SchellingGrid>().segregation();
        let d = sim.world().resource::<ResolverDiagnostics>();
        println!(
            "{t:>9}  {segregation:>11.3}  {:>5}  {:>9}",
            d.applied, d.conflicts
        );
    }
}
