//! Stepping a simulation exactly, with no sleeping: a scenario file in the test
//! harness, and a game's own `App` in it.
//!
//! `cargo run -p continuum --example harness` (from the repository's root)

use bevy_internal::MinimalPlugins;
use bevy_internal::prelude::*;
use continuum::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A scenario file.
    let mut sim = SimHarness::new(Scenario::load("scenarios/quickstart.ron".as_ref())?);
    sim.step(100); // exactly 100 steps
    sim.run_for(2.5); // 2.5 virtual seconds more
    let cadences = sim.agents::<Cadence>(); // (AgentId, component), in id order
    let digest = sim.state_digest();
    println!(
        "quickstart: {} agents after {:.2} virtual s, digest {digest}",
        cadences.len(),
        sim.clock().elapsed_secs()
    );

    // A game's own app.
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, ContinuumPlugins::default()))
        .add_systems(Startup, spawn_explorers);
    let mut sim = SimHarness::from_app(app);
    sim.step(50);
    println!(
        "game: {} agents, {} agent ticks in {} steps",
        sim.agents::<Agent>().len(),
        sim.world().resource::<RunStats>().agent_ticks,
        sim.clock().step()
    );
    Ok(())
}

fn spawn_explorers(archetypes: Res<Archetypes>, mut pool: ResMut<AgentPool>) {
    let explorer = archetypes.kind("explorer").unwrap();
    for _ in 0..100 {
        pool.request(archetypes.blueprint(explorer));
    }
}
