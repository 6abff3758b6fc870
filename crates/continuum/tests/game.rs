//! Continuum composes with a game: Bevy's own `MinimalPlugins` (what a game gets
//! from the `bevy` crate) plus `ContinuumPlugins`, agents requested through the
//! public API with components of the game's own, and game systems ordered
//! against the public phases and startup sets.

use bevy_internal::MinimalPlugins;
use bevy_internal::prelude::*;
use bevy_internal::time::TimeUpdateStrategy;
use continuum::prelude::*;

/// What the game saw: every agent's position, once per step, between the act
/// phase (agents moved) and the resolve phase.
#[derive(Resource, Default)]
struct Trail(Vec<Vec<(AgentId, Vec2)>>);

/// A component of the game's own, given to agents through their requests.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
struct Team(u8);

fn spawn_agents(archetypes: Res<Archetypes>, mut pool: ResMut<AgentPool>) {
    for name in ["explorer", "analyzer", "controller"] {
        let kind = archetypes.kind(name).expect("built-in kind");
        for i in 0..10 {
            let mut bp = archetypes.blueprint(kind).with(Team(i % 2));
            bp.tick_hz = 25.0;
            bp.position = Some(Vec2::new(100.0 + 20.0 * f32::from(i), 300.0));
            pool.request(bp);
        }
    }
}

fn watch(agents: Query<(&Agent, &Position)>, mut trail: ResMut<Trail>) {
    let mut seen: Vec<_> = agents.iter().map(|(a, p)| (a.id, p.0)).collect();
    seen.sort_by_key(|(id, _)| *id);
    trail.0.push(seen);
}

/// A game app on Bevy's manual clock: one fixed step per update.
fn game(settings: Option<ClockSettings>) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(ContinuumPlugins::default())
        .insert_resource(WorldSettings {
            sites: 80,
            ..Default::default()
        })
        .insert_resource(TimeUpdateStrategy::FixedTimesteps(1))
        .add_systems(Startup, spawn_agents);
    if let Some(settings) = settings {
        app.insert_resource(settings);
    }
    app
}

fn prime(app: &mut App) {
    app.finish();
    app.cleanup();
    app.update(); // startup; the first update never advances time
}

#[test]
fn a_game_app_runs_continuum_and_reads_agents_every_step() {
    let mut app = game(Some(ClockSettings {
        fixed_hz: 50.0,
        ..Default::default()
    }));
    app.init_resource::<Trail>().add_systems(
        FixedUpdate,
        watch
            .after(ContinuumSystems::Act)
            .before(ContinuumSystems::Resolve),
    );
    prime(&mut app);
    for _ in 0..100 {
        app.update();
    }

    let clock = app.world().resource::<SimClock>();
    assert_eq!(clock.step(), 100, "one fixed step per update");
    assert_eq!(
        clock.step_ns(),
        20_000_000,
        "the step rate of ClockSettings"
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
    let ticks = app.world().resource::<RunStats>().agent_ticks;
    assert_eq!(ticks, 30 * 50, "30 agents at 25 Hz for 2 s");
}

#[test]
fn without_clock_settings_the_step_is_the_documented_100_hz() {
    let mut app = game(None);
    prime(&mut app);
    app.update();
    let fixed = app.world().resource::<Time<Fixed>>().timestep();
    assert_eq!(fixed.as_nanos(), 10_000_000, "Bevy's fixed step follows");
    assert_eq!(
        app.world().resource::<SimClock>().step_ns(),
        ClockSettings::default().step_ns()
    );
    assert_eq!(app.world().resource::<SimClock>().step(), 1);
}

#[test]
fn agents_requested_at_startup_exist_before_the_first_step_with_the_games_components() {
    let mut app = game(None);
    prime(&mut app);
    assert_eq!(app.world().resource::<SimClock>().step(), 0, "no step yet");
    let world = app.world_mut();
    let mut agents = world.query::<(&Agent, &Team, &Memory, &Perception)>();
    let seen: Vec<_> = agents.iter(world).collect();
    assert_eq!(seen.len(), 30, "every agent is there, with its team");
    assert_eq!(seen.iter().filter(|(_, team, ..)| team.0 == 1).count(), 15);
    // The memory plugin sized every new memory when it was admitted.
    assert!(
        seen.iter()
            .all(|(_, _, memory, _)| memory.caps().bytes() > 0)
    );
    assert!(seen.iter().all(|(_, _, _, p)| p.capacity() > 0));
}

/// What a game's systems counted of the actions.
#[derive(Resource, Default)]
struct Counted {
    after_resolve: u64,
    in_update: u64,
}

fn count_after_resolve(mut actions: MessageReader<Action>, mut counted: ResMut<Counted>) {
    counted.after_resolve += actions.read().count() as u64;
}

fn count_in_update(mut actions: MessageReader<Action>, mut counted: ResMut<Counted>) {
    counted.in_update += actions.read().count() as u64;
}

#[test]
fn actions_stay_readable_after_resolve_and_in_update() {
    let mut app = game(None);
    app.init_resource::<Counted>()
        .add_systems(
            FixedUpdate,
            count_after_resolve.after(ContinuumSystems::Resolve),
        )
        .add_systems(Update, count_in_update);
    prime(&mut app);
    for _ in 0..300 {
        app.update();
    }
    let submitted = app.world().resource::<ResolverDiagnostics>().submitted;
    assert!(submitted > 0, "the agents acted");
    let counted = app.world().resource::<Counted>();
    assert_eq!(counted.after_resolve, submitted);
    assert_eq!(counted.in_update, submitted);
}

/// What a startup system of the game found.
#[derive(Resource)]
struct WorldAtStartup(usize);

#[test]
fn a_game_orders_its_startup_against_continuums() {
    let mut app = game(None);
    app.add_systems(
        Startup,
        (|sites: Res<Sites>, mut commands: Commands| {
            commands.insert_resource(WorldAtStartup(sites.len()));
        })
        .after(ContinuumStartup::World),
    );
    prime(&mut app);
    assert_eq!(app.world().resource::<WorldAtStartup>().0, 80);
}

#[test]
fn a_game_app_steps_exactly_in_the_harness() {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, ContinuumPlugins::default()))
        .add_systems(Startup, spawn_agents);
    let mut sim = SimHarness::from_app(app);
    sim.step(25);
    assert_eq!(sim.clock().step(), 25);
    assert_eq!(sim.agents::<Team>().len(), 30);
}
