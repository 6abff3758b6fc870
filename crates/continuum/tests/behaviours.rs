//! Every built-in kind does its job: explorers find and publish sites, analyzers
//! assess them, controllers harvest.

mod common;

use bevy_ecs::prelude::*;
use continuum::prelude::*;

fn world_of(groups: &str) -> SimHarness {
    let scenario = common::scenario(&format!(
        r#"Scenario(
            name: "jobs",
            seed: 3,
            world: (size: (400.0, 400.0), regions: (2, 2), sites: 60, regrow_per_sec: 0.05),
            clock: (fixed_hz: 100.0),
            // Room in the shared cache for every site.
            memory: (budget: Bytes(2000000)),
            archetypes: [{}],
            groups: [{groups}],
        )"#,
        common::idle_kind("idle", 10.0)
    ));
    SimHarness::new(scenario)
}

fn kind_of(sim: &mut SimHarness) -> std::collections::BTreeMap<AgentId, String> {
    let archetypes = sim.world().resource::<Archetypes>().clone();
    sim.agents::<Agent>()
        .into_iter()
        .map(|(id, a)| (id, archetypes.name(a.kind).to_owned()))
        .collect()
}

fn total_harvest_of(sim: &mut SimHarness, kind: &str) -> f32 {
    let kinds = kind_of(sim);
    sim.agents::<Feedback>()
        .iter()
        .filter(|(id, _)| kinds[id] == kind)
        .map(|(_, f)| f.tally.harvested)
        .sum()
}

#[test]
fn explorers_find_remember_and_publish_sites() {
    let mut sim = world_of(r#"(kind: "explorer", count: 40)"#);
    sim.run_for(60.0);
    let kinds = kind_of(&mut sim);
    let sites = sim.world().resource::<Sites>();
    let found: Vec<_> = sites.iter().filter_map(|s| s.discovered_by).collect();
    assert!(
        found.len() >= 45,
        "explorers published only {} of 60 sites",
        found.len()
    );
    assert!(found.iter().all(|id| kinds[id] == "explorer"));
    // Published sites reach the boards analyzers read.
    let on_boards: usize = sites
        .regions()
        .iter()
        .map(|r| r.board.discovered().len())
        .sum();
    assert!(on_boards > 0);
    // What explorers published is in the shared cache.
    let cache = sim.world().resource::<SharedCache>();
    assert!(cache.len() >= 45, "cache holds {}", cache.len());
    // Explorers remember what they saw.
    let memories = sim.agents::<Memory>();
    assert!(
        memories
            .iter()
            .filter(|(_, m)| m.facts().count() > 0)
            .count()
            >= 30
    );
}

#[test]
fn analyzers_assess_published_sites_within_their_noise() {
    // No harvesting: a site's true value stays at its capacity.
    let mut sim = world_of(r#"(kind: "explorer", count: 20), (kind: "analyzer", count: 20)"#);
    sim.run_for(60.0);
    let kinds = kind_of(&mut sim);
    let sites = sim.world().resource::<Sites>();
    let cache = sim.world().resource::<SharedCache>();
    let assessed: Vec<_> = sites.iter().filter(|s| s.assessments > 0).collect();
    assert!(
        assessed.len() >= 30,
        "only {} sites assessed",
        assessed.len()
    );
    for site in assessed {
        let e = cache
            .peek(site.id)
            .expect("the shared cache holds every assessment here");
        assert_eq!(kinds[&e.by], "analyzer");
        let error = (e.value - site.capacity).abs() / site.capacity;
        assert!(
            error <= 0.1 + 1e-6,
            "estimate {} of a site worth {}",
            e.value,
            site.capacity
        );
    }
}

#[test]
fn controllers_harvest_and_a_control_group_does_not() {
    let with = |third: &str| {
        let mut sim = world_of(&format!(
            r#"(kind: "explorer", count: 20), (kind: "analyzer", count: 20), (kind: "{third}", count: 30)"#
        ));
        sim.run_for(60.0);
        let by_third = total_harvest_of(&mut sim, third);
        let in_world: f32 = sim
            .world()
            .resource::<Sites>()
            .iter()
            .map(|s| s.harvested)
            .sum();
        (by_third, in_world)
    };
    let (controllers, world_total) = with("controller");
    let (control, control_world) = with("idle");
    assert_eq!(control, 0.0);
    assert_eq!(control_world, 0.0);
    assert!(
        controllers >= 200.0,
        "controllers harvested only {controllers}"
    );
    assert!(
        (controllers - world_total).abs() < 1e-2,
        "agents' tallies add up to the world's"
    );
}

#[test]
fn agents_stay_inside_the_world() {
    let mut sim = world_of(r#"(kinds: ["explorer", "analyzer", "controller"], count: 60)"#);
    sim.run_for(30.0);
    let size = sim.world().resource::<WorldMap>().size();
    for (id, p) in sim.agents::<Position>() {
        assert!(
            p.0.x >= 0.0 && p.0.y >= 0.0 && p.0.x <= size.x && p.0.y <= size.y,
            "{id} left the world: {:?}",
            p.0
        );
    }
}

#[test]
fn random_kinds_are_drawn_per_agent() {
    let mut sim = world_of(r#"(kinds: ["explorer", "analyzer", "controller"], count: 300)"#);
    sim.step(1); // agents are admitted at the start of the first step
    let mut counts = [0usize; 3];
    for (_, a) in sim.agents::<Agent>() {
        counts[a.kind.index()] += 1;
    }
    assert!(
        counts.iter().all(|&c| (70..=130).contains(&c)),
        "{counts:?}"
    );
}

/// The sites model's behaviours are registered like any model's: a kind of a
/// scenario's own names one with its parameters and behaves so, and its
/// parameters are checked even when the scenario is read without a registry
/// (behaviours the library does not know are then left to the app).
#[test]
fn a_kind_of_its_own_names_a_sites_behaviour() {
    use std::path::Path;
    let scenario = |behaviour: &str| {
        format!(
            r#"Scenario(
                name: "own",
                seed: 3,
                world: (size: (400.0, 400.0), regions: (2, 2), sites: 60),
                archetypes: [(kind: "reaper", tick_hz: 10.0, speed: 30.0, perception_radius: 60.0,
                    behaviour: {behaviour})],
                groups: [(kind: "explorer", count: 20), (kind: "analyzer", count: 20), (kind: "reaper", count: 20)],
            )"#
        )
    };
    let reaper =
        r#"Model(name: "controller", params: (harvest: 2.0, min_estimate: 0.5, travel_cost: 0.0))"#;
    let mut sim =
        SimHarness::new(Scenario::from_ron(&scenario(reaper), Path::new("s.ron")).unwrap());
    sim.run_for(60.0);
    assert!(total_harvest_of(&mut sim, "reaper") >= 100.0);

    let bad = reaper.replace("harvest: 2.0", "harvest: -2.0");
    let e = Scenario::from_ron(&scenario(&bad), Path::new("s.ron")).unwrap_err();
    assert_eq!(e.field, "archetypes[0].behaviour.params.harvest", "{e}");
    assert_eq!(e.line, 6, "{e}");

    let other = r#"Model(name: "grazer", params: (appetite: 1.0))"#;
    assert!(Scenario::from_ron(&scenario(other), Path::new("s.ron")).is_ok());
    let registry = continuum::sites::behaviours();
    let e = Scenario::from_ron_with(&scenario(other), Path::new("s.ron"), &registry).unwrap_err();
    assert_eq!(e.field, "archetypes[0].behaviour.name", "{e}");
}

/// A kind left out of the engine's index of agents is not found through it:
/// the kinds that perceive agents do not see it, and the index holds only
/// the kinds it keeps, as agents of both come and go.
#[test]
fn a_kind_left_out_of_the_index_is_not_perceived() {
    let run = |indexed: bool| {
        let mut sim = SimHarness::new(common::scenario(&format!(
            r#"Scenario(
                name: "ghosts",
                seed: 5,
                world: (size: (100.0, 100.0), regions: (1, 1), sites: 4),
                archetypes: [
                    (kind: "ghost", tick_hz: 10.0, speed: 5.0, perception_radius: 10.0,
                     indexed: {indexed}, behaviour: Idle),
                    (kind: "watcher", tick_hz: 10.0, speed: 0.0, perception_radius: 200.0,
                     behaviour: Idle),
                ],
                groups: [(kind: "ghost", count: 50), (kind: "watcher", count: 5)],
            )"#
        )));
        sim.step(20);
        let ghosts: Vec<Entity> = {
            let world = sim.world_mut();
            let kind = world.resource::<Archetypes>().kind("ghost").unwrap();
            let mut q = world.query::<(Entity, &Agent)>();
            q.iter(world)
                .filter(|(_, a)| a.kind == kind)
                .map(|(e, _)| e)
                .collect()
        };
        for &ghost in &ghosts[..10] {
            sim.world_mut().despawn(ghost);
        }
        sim.step(20);
        let seen: Vec<u16> = sim
            .agents::<Perception>()
            .iter()
            .map(|(_, p)| p.neighbours())
            .collect();
        let indexed_count = sim.world().resource::<AgentIndex>().0.len();
        (seen.into_iter().max().unwrap(), indexed_count)
    };
    assert_eq!(
        run(true),
        (44, 45),
        "a watcher sees the 40 ghosts and 4 other watchers"
    );
    assert_eq!(run(false), (4, 5), "only the other watchers");
}

/// A model's component for its kinds' agents, given at spawn.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
struct Tag(u32);

#[derive(Clone, Debug, serde::Deserialize)]
struct TagParams {}

impl BehaviourParams for TagParams {
    const NAME: &'static str = "tagged";
}

/// What the admitted agents of the tagged kind carried when `AgentsAdmitted`
/// ran (before any of its systems could insert anything).
#[derive(Resource, Default)]
struct SeenAtAdmission(Vec<Option<Tag>>);

fn look_at_admission(
    admitted: Res<Admitted>,
    archetypes: Res<Archetypes>,
    tags: Query<Option<&Tag>>,
    mut seen: ResMut<SeenAtAdmission>,
) {
    let kind = archetypes.kind("tagged").unwrap();
    for &e in admitted.of_kind(kind).iter() {
        seen.0.push(tags.get(e).unwrap().copied());
    }
}

/// Agents of the kinds a model spawns with its components have them from
/// the start (a blueprint's own value replaces the starting one); other
/// kinds do not get them.
#[test]
fn a_models_kinds_are_spawned_with_its_components() {
    let scenario = common::scenario(&format!(
        r#"Scenario(
            name: "tagged",
            seed: 2,
            max_agents: 20,
            world: (size: (100.0, 100.0), regions: (1, 1), sites: 4),
            archetypes: [{}, (kind: "tagged", tick_hz: 10.0, speed: 0.0, perception_radius: 5.0,
                behaviour: Model(name: "tagged", params: ()))],
            groups: [(kind: "tagged", count: 6), (kind: "idle", count: 4), (kind: "tagged", count: 2)],
        )"#,
        common::idle_kind("idle", 10.0)
    ));
    let mut sim = SimHarness::with(scenario, |app| {
        app.register_behaviour::<TagParams>()
            .spawn_kinds_with::<TagParams, _>(Tag(7))
            .init_resource::<SeenAtAdmission>()
            .add_systems(continuum::agent::AgentsAdmitted, look_at_admission);
    });
    let kind = sim.world().resource::<Archetypes>().kind("tagged").unwrap();
    let mut bp = sim.world().resource::<Archetypes>().blueprint(kind);
    bp = bp.with(Tag(9));
    sim.world_mut().resource_mut::<AgentPool>().request(bp);
    sim.step(2);
    let seen = &sim.world().resource::<SeenAtAdmission>().0;
    assert_eq!(seen.len(), 9);
    assert!(seen[..8].iter().all(|t| *t == Some(Tag(7))), "{seen:?}");
    assert_eq!(
        seen[8],
        Some(Tag(9)),
        "the blueprint's value replaces the start"
    );
    let idle = sim.world().resource::<Archetypes>().kind("idle").unwrap();
    let world = sim.world_mut();
    let mut q = world.query::<(&Agent, Option<&Tag>)>();
    for (agent, tag) in q.iter(world) {
        assert_eq!(tag.is_some(), agent.kind != idle, "only the model's kinds");
    }
}
