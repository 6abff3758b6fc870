//! A small game with Continuum inside: Bevy's `MinimalPlugins`, 300 agents of
//! the built-in kinds requested at startup with a component of the game's own,
//! and game systems that follow the agents and read their actions. It runs 5
//! virtual seconds in real time and prints what it saw.
//!
//! `cargo run -p continuum --example game`

use bevy_internal::MinimalPlugins;
use bevy_internal::prelude::*;
use continuum::prelude::*;

/// The game's own component, carried by each agent's request.
#[derive(Component, Clone)]
struct Team(u8);

/// What the game saw.
#[derive(Resource, Default)]
struct Seen {
    /// Mean x position of each team, at the latest step.
    mean_x: [f32; 2],
    actions: usize,
}

fn main() -> AppExit {
    App::new()
        .add_plugins((MinimalPlugins, ContinuumPlugins::default()))
        .insert_resource(WorldSettings {
            sites: 200,
            ..default()
        })
        .insert_resource(ClockSettings {
            fixed_hz: 50.0,
            duration: Some(5.0),
        })
        .init_resource::<Seen>()
        .add_systems(Startup, spawn_agents)
        .add_systems(FixedUpdate, follow_agents.after(ContinuumSystems::Act))
        .add_systems(Update, (count_actions, stop_at_the_end))
        .run()
}

fn spawn_agents(archetypes: Res<Archetypes>, mut pool: ResMut<AgentPool>) {
    for (i, name) in ["explorer", "analyzer", "controller"].iter().enumerate() {
        let kind = archetypes.kind(name).unwrap();
        for n in 0..100 {
            pool.request(archetypes.blueprint(kind).with(Team(((i + n) % 2) as u8)));
        }
    }
}

fn follow_agents(agents: Query<(&Position, &Team)>, mut seen: ResMut<Seen>) {
    let mut sum = [(0.0, 0); 2];
    for (position, team) in &agents {
        let team = &mut sum[usize::from(team.0)];
        team.0 += position.0.x;
        team.1 += 1;
    }
    seen.mean_x = sum.map(|(x, n)| x / n.max(1) as f32);
}

fn count_actions(mut actions: MessageReader<Action>, mut seen: ResMut<Seen>) {
    seen.actions += actions.read().count();
}

fn stop_at_the_end(clock: Res<SimClock>, seen: Res<Seen>, mut exit: MessageWriter<AppExit>) {
    if clock.is_finished() {
        println!(
            "{} steps; {} actions; mean x of the teams: {:.0} and {:.0}",
            clock.step(),
            seen.actions,
            seen.mean_x[0],
            seen.mean_x[1]
        );
        exit.write(AppExit::Success);
    }
}
