//! Every plugin of `ContinuumPlugins` can be left out on its own: the app still
//! builds and steps, and what the other plugins do goes on.

mod common;

use bevy_app::{PluginGroup, PluginGroupBuilder};
use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use continuum::headless::base_app_with;
use continuum::prelude::*;

/// Steps `quickstart.ron` for 50 steps with `plugins`; `customise` adds to the
/// app before it starts.
fn run(plugins: PluginGroupBuilder, customise: impl FnOnce(&mut bevy_app::App)) -> SimHarness {
    let mut app = base_app_with(None, plugins);
    app.add_plugins(ScenarioPlugin::new(common::shipped("quickstart.ron")));
    customise(&mut app);
    let mut sim = SimHarness::from_app(app);
    sim.step(50);
    sim
}

fn without<P: bevy_app::Plugin>() -> PluginGroupBuilder {
    ContinuumPlugins::default().build().disable::<P>()
}

fn agent_ticks(sim: &SimHarness) -> u64 {
    sim.world().resource::<RunStats>().agent_ticks
}

fn submitted(sim: &SimHarness) -> u64 {
    sim.world().resource::<ResolverDiagnostics>().submitted
}

fn advance(mut clock: ResMut<SimClock>) {
    clock.advance();
}

#[test]
fn without_the_clock_plugin_a_game_advances_the_clock_itself() {
    let sim = run(without::<ClockPlugin>(), |app| {
        app.add_systems(bevy_app::FixedUpdate, advance.after(ContinuumSystems::Last));
    });
    assert_eq!(sim.clock().step(), 50);
    assert!(agent_ticks(&sim) > 1000, "agents tick on the game's clock");
}

#[test]
fn without_the_agent_plugin_nothing_is_admitted_and_steps_go_on() {
    let mut sim = run(without::<AgentPlugin>(), |_| {});
    assert_eq!(sim.clock().step(), 50);
    assert_eq!(agent_ticks(&sim), 0);
    assert!(sim.agents::<Cadence>().is_empty());
    assert_eq!(sim.world().resource::<AgentPool>().queued(), 300);
}

#[test]
fn without_the_world_plugin_agents_act_on_a_default_world() {
    let sim = run(without::<WorldPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5, "300 agents at 10 Hz for 0.5 s");
    assert_eq!(
        sim.world().resource::<WorldMap>().size(),
        Vec2::splat(1000.0)
    );
}

#[test]
fn without_the_memory_plugin_agents_remember_nothing_and_still_act() {
    let mut sim = run(without::<MemoryPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert!(
        sim.agents::<Memory>()
            .iter()
            .all(|(_, m)| m.caps().bytes() == 0 && m.facts().count() == 0)
    );
    assert!(
        sim.agents::<Perception>()
            .iter()
            .any(|(_, p)| !p.sites().is_empty()),
        "they still perceive"
    );
    assert!(submitted(&sim) > 0);
}

#[test]
fn without_the_action_plugin_actions_are_emitted_and_never_resolved() {
    let mut sim = run(without::<ActionPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert!(
        sim.agents::<Feedback>().is_empty(),
        "nobody delivers outcomes"
    );
    assert!(!sim.world().contains_resource::<ResolverDiagnostics>());
    let actions = sim
        .world()
        .resource::<bevy_ecs::message::Messages<Action>>()
        .len();
    assert!(actions > 0, "the behaviours still act");
}

#[test]
fn without_the_archetype_plugin_the_built_in_kinds_use_default_memory_rules() {
    let mut sim = run(without::<ArchetypePlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert!(
        sim.world()
            .resource::<continuum::memory::MemoryKinds>()
            .0
            .is_empty()
    );
    assert!(submitted(&sim) > 0);
    let default_bytes = continuum::memory::DEFAULT_RULES.capacity.block_bytes() as u32;
    assert!(
        sim.agents::<Memory>()
            .iter()
            .all(|(_, m)| m.limit() == default_bytes)
    );
}

#[test]
fn without_the_behaviour_plugin_agents_tick_and_do_nothing() {
    let mut sim = run(without::<BehaviourPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert_eq!(submitted(&sim), 0);
    assert!(sim.agents::<Intent>().is_empty());
    let _ = sim.state_digest();
}

#[test]
fn without_the_sites_model_its_kinds_perceive_and_decide_nothing() {
    let mut sim = run(without::<SitesModelPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert_eq!(submitted(&sim), 0, "no kind has a behaviour: nobody acts");
    assert!(
        sim.agents::<Perception>()
            .iter()
            .any(|(_, p)| !p.sites().is_empty()),
        "perception goes on"
    );
    assert!(sim.agents::<continuum::sites::Route>().is_empty());
    let _ = sim.state_digest();
}

#[test]
fn without_the_metrics_plugin_the_simulation_is_the_same() {
    let mut with = run(ContinuumPlugins::default().build(), |_| {});
    let mut without = run(without::<MetricsPlugin>(), |_| {});
    assert!(!without.world().contains_resource::<Metrics>());
    assert_eq!(with.state_digest(), without.state_digest());
}

#[test]
fn without_the_monitor_every_agent_keeps_the_fair_share() {
    let mut sim = run(without::<ResourceMonitorPlugin>(), |_| {});
    assert_eq!(agent_ticks(&sim), 300 * 5);
    assert!(
        sim.agents::<Budget>()
            .iter()
            .all(|(_, b)| b.cpu_share == 0.0),
        "nobody gives shares: perception uses the fair one"
    );
    assert!(submitted(&sim) > 0);
}

#[test]
fn without_the_think_plugin_planners_plan_within_their_tick() {
    let mut app = base_app_with(None, without::<ThinkPlugin>());
    app.add_plugins(ScenarioPlugin::new(common::shipped("planners.ron")));
    let mut sim = SimHarness::from_app(app);
    sim.step(500);
    let queue = sim.world().resource::<continuum::think::ThinkQueue>();
    assert!(
        queue.is_empty(),
        "nothing serves the queue: nothing joins it"
    );
    let routes = sim.agents::<continuum::sites::Route>();
    assert_eq!(routes.len(), 60);
    assert!(
        routes.iter().any(|(_, r)| !r.stops().is_empty()),
        "planners plan on the spot"
    );
}
