//! Continuum composes with a game: Bevy's own `MinimalPlugins` (what a game gets
//! from the `bevy` crate) plus `ContinuumPlugins`, agents requested through the
//! public API, and a game system ordered against the public phases.

use bevy_internal::MinimalPlugins;
use bevy_internal::prelude::*;
use bevy_internal::time::TimeUpdateStrategy;
use continuum::prelude::*;

/// What the game saw: every agent's position, once per step, between the act
/// phase (agents moved) and the resolve phase.
#[derive(Resource, Default)]
struct Trail(Vec<Vec<(AgentId, Vec2)>>);

fn spawn_agents(archetypes: Res<Archetypes>, mut pool: ResMut<AgentPool>) {
    for name in ["explorer", "analyzer", "controller"] {
        let kind = archetypes.kind(name).expect("built-in kind");
        for i in 0..10 {
            let mut bp = archetypes.blueprint(kind);
            bp.tick_hz = 25.0;
            bp.position = Some(Vec2::new(100.0 + 20.0 * i as f32, 300.0));
            pool.request(bp);
        }
    }
}

fn watch(agents: Query<(&Agent, &Position)>, mut trail: ResMut<Trail>) {
    let mut seen: Vec<_> = agents.iter().map(|(a, p)| (a.id, p.0)).collect();
    seen.sort_by_key(|(id, _)| *id);
    trail.0.push(seen);
}

#[test]
fn a_game_app_runs_continuum_and_reads_agents_every_step() {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(ContinuumPlugins::default())
        .insert_resource(WorldSettings {
            sites: 80,
            ..Default::default()
        })
        .insert_resource(Time::<Fixed>::from_hz(50.0))
        .insert_resource(TimeUpdateStrategy::FixedTimesteps(1))
        .init_resource::<Trail>()
        .add_systems(Startup, spawn_agents)
        .add_systems(
            FixedUpdate,
            watch
                .after(ContinuumSystems::Act)
                .before(ContinuumSystems::Resolve),
        );
    app.finish();
    app.cleanup();
    app.update(); // startup; the first update never advances time
    for _ in 0..100 {
        app.update();
    }

    let clock = app.world().resource::<SimClock>();
    assert_eq!(clock.step(), 100, "one fixed step per update");
    assert_eq!(
        clock.step_ns(),
        20_000_000,
        "the clock adopted the game's 50 Hz timestep"
    );

    let trail = &app.world().resource::<Trail>().0;
    assert_eq!(trail.len(), 100, "the game system ran once per step");
    assert!(trail.iter().all(|step| step.len() == 30));
    let first = &trail[0];
    let last = &trail[99];
    let moved = first
        .iter()
        .zip(last)
        .filter(|(a, b)| a.1.distance(b.1) > 1.0)
        .count();
    assert!(moved >= 20, "only {moved} of 30 agents moved in 2 s");
    let ticks = app
        .world()
        .resource::<continuum::metrics::RunStats>()
        .agent_ticks;
    assert_eq!(ticks, 30 * 50, "30 agents at 25 Hz for 2 s");
}
