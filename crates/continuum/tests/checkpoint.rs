//! Checkpoints: a run resumed from one reaches the state of the same run never
//! interrupted; damaged checkpoints are refused.

mod common;

use std::path::Path;

use bevy_app::App;
use continuum::checkpoint::{self, Checkpoint, CheckpointError};
use continuum::digest::{StateDigest, state_digest};
use continuum::headless::{FAST, build_app, prime, set_pacing};
use continuum::scenario::Scenario;

fn app(scenario: Scenario) -> App {
    let mut app = build_app(scenario, 1);
    set_pacing(&mut app, FAST);
    app
}

fn steps(app: &mut App, n: u64) {
    for _ in 0..n {
        app.update();
    }
}

fn digest_after(scenario: &Scenario, n: u64) -> StateDigest {
    let mut app = app(scenario.clone());
    prime(&mut app);
    steps(&mut app, n);
    state_digest(app.world_mut())
}

/// Runs `k` steps, checkpoints, resumes in a fresh app and runs to `n`.
fn resumed_digest(scenario: &Scenario, k: u64, n: u64) -> StateDigest {
    let mut first = app(scenario.clone());
    prime(&mut first);
    steps(&mut first, k);
    let bytes = checkpoint::save(first.world_mut()).expect("saved");
    drop(first);
    let checkpoint = Checkpoint::from_bytes(bytes, Path::new("mem.ckpt")).expect("read back");
    assert_eq!(checkpoint.step(), k);
    let mut second = app(checkpoint.scenario().expect("its scenario"));
    checkpoint.restore(&mut second).expect("restored");
    steps(&mut second, n - k);
    state_digest(second.world_mut())
}

/// Arrivals beyond the pool's room, lifetimes, departures: queues, expiries
/// and a pool that changes while the run goes.
fn churn() -> Scenario {
    let mut s = common::shipped("arrivals.ron");
    // 120 agents at the start; arrivals, departures and room in proportion.
    s.scale_agents(120);
    for a in &mut s.arrivals {
        a.at /= 10.0;
        a.group.lifetime = a.group.lifetime.map(|l| l / 10.0);
    }
    for d in &mut s.departures {
        d.at /= 10.0;
    }
    for g in &mut s.groups {
        g.lifetime = g.lifetime.map(|l| l / 10.0);
    }
    s
}

#[test]
fn a_resumed_run_reaches_the_uninterrupted_state() {
    let mut quickstart = common::shipped("quickstart.ron");
    quickstart.scale_agents(200);
    for (scenario, n) in [(quickstart, 240), (churn(), 400)] {
        let whole = digest_after(&scenario, n);
        for k in [0, 1, 97, n / 2 + 3] {
            assert_eq!(
                resumed_digest(&scenario, k, n),
                whole,
                "{}: checkpoint at step {k} of {n}",
                scenario.name
            );
        }
    }
}

/// A checkpoint taken while a class that load shedding slowed is being spread
/// over its longer period resumes the same spreading: the rates, and when and
/// from what they changed, are part of the state.
#[test]
fn a_resumed_run_spreads_a_slowed_class_alike() {
    let mut scenario = common::shipped("quickstart.ron");
    scenario.scale_agents(200);
    // The quickstart's agents are of normal priority: halved at step 40, halved
    // again at step 70 (a 10 Hz agent's period goes from 20 steps to 40).
    let changes = [(40, 0.5), (70, 0.25)];
    let n = 300;
    let run = |checkpoint_at: Option<u64>| {
        let mut app = app(scenario.clone());
        prime(&mut app);
        let mut at = 0;
        for step in 0..n {
            if let Some(&(_, normal)) = changes.iter().find(|(s, _)| *s == step) {
                app.world_mut()
                    .insert_resource(continuum::agent::PriorityRates([1.0, normal, 1.0]));
            }
            if checkpoint_at == Some(step) {
                let bytes = checkpoint::save(app.world_mut()).expect("saved");
                let checkpoint =
                    Checkpoint::from_bytes(bytes, Path::new("mem.ckpt")).expect("read back");
                app = self::app(checkpoint.scenario().expect("its scenario"));
                checkpoint.restore(&mut app).expect("restored");
            }
            app.update();
            at += 1;
        }
        assert_eq!(at, n);
        state_digest(app.world_mut())
    };
    let whole = run(None);
    // Within the old period after each change, and after it.
    for k in [41, 71, 76, 85, 100] {
        assert_eq!(run(Some(k)), whole, "checkpoint at step {k}");
    }
}

/// A checkpoint taken while the rebalancer reads its agents, or applies its
/// updates, resumes the same round: memory moves between agents whose tiers
/// fill (a watcher among many sites) and agents that see nothing.
#[test]
fn a_resumed_run_finishes_the_rebalancing_under_way() {
    let scenario = common::watchers_and_blind(80);
    let n = 2_600;
    let whole = digest_after(&scenario, n);
    // Steps 2500 to 2599 are one round: 49 steps read, one decides, 50 apply.
    for k in [2_520, 2_549, 2_550, 2_577] {
        assert_eq!(
            resumed_digest(&scenario, k, n),
            whole,
            "checkpoint at step {k} of {n}"
        );
    }
}

#[test]
fn a_checkpoint_keeps_the_queues_and_the_counters() {
    let scenario = churn();
    let mut first = app(scenario.clone());
    prime(&mut first);
    steps(&mut first, 60);
    let world = first.world();
    let pool = world.resource::<continuum::agent::AgentPool>();
    let (queued, active, retired) = (pool.queued(), pool.active(), pool.retired());
    assert!(queued > 0, "the test wants waiting agents: {queued}");
    let ticks = world.resource::<continuum::metrics::RunStats>().agent_ticks;
    let bytes = checkpoint::save(first.world_mut()).unwrap();
    let checkpoint = Checkpoint::from_bytes(bytes, Path::new("mem.ckpt")).unwrap();
    assert_eq!(checkpoint.agents(), active);
    let mut second = app(checkpoint.scenario().unwrap());
    checkpoint.restore(&mut second).unwrap();
    let world = second.world();
    let pool = world.resource::<continuum::agent::AgentPool>();
    assert_eq!(
        (pool.queued(), pool.active(), pool.retired()),
        (queued, active, retired)
    );
    assert_eq!(
        world.resource::<continuum::metrics::RunStats>().agent_ticks,
        ticks
    );
}

fn saved() -> Vec<u8> {
    let mut s = common::shipped("quickstart.ron");
    s.scale_agents(50);
    let mut app = app(s);
    prime(&mut app);
    steps(&mut app, 20);
    checkpoint::save(app.world_mut()).unwrap()
}

fn refusal(bytes: Vec<u8>) -> String {
    match Checkpoint::from_bytes(bytes, Path::new("bad.ckpt")) {
        Ok(_) => panic!("a damaged checkpoint was accepted"),
        Err(e @ CheckpointError::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn truncated_corrupted_and_foreign_checkpoints_are_refused() {
    let good = saved();
    assert!(Checkpoint::from_bytes(good.clone(), Path::new("ok.ckpt")).is_ok());
    for len in [0, 5, 12, good.len() / 2, good.len() - 1] {
        let e = refusal(good[..len].to_vec());
        assert!(e.contains("bad.ckpt"), "{e}");
    }
    // Every byte of the payload is covered by the checksum.
    for at in [12, 40, good.len() / 3, good.len() - 20] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let e = refusal(bad);
        assert!(e.contains("corrupted") || e.contains("truncated"), "{e}");
    }
    let mut other_version = good.clone();
    other_version[8] = 99;
    assert!(refusal(other_version).contains("format version 99"));
    assert!(refusal(b"Scenario(name: \"x\")".to_vec()).contains("does not start like"));
}

#[test]
fn an_agent_with_a_component_of_its_own_is_refused() {
    use bevy_ecs::prelude::*;
    #[derive(Component)]
    struct Cargo;
    let mut s = common::shipped("quickstart.ron");
    s.scale_agents(20);
    let mut app = app(s);
    prime(&mut app);
    steps(&mut app, 3);
    let world = app.world_mut();
    let (agent, id) = world
        .query::<(Entity, &continuum::agent::Agent)>()
        .iter(world)
        .map(|(e, a)| (e, a.id))
        .next()
        .unwrap();
    world.entity_mut(agent).insert(Cargo);
    match checkpoint::save(world) {
        // Named with Bevy's `debug` feature (a game's default), else a hint to it.
        Err(e @ CheckpointError::Unsupported(_)) => {
            let e = e.to_string();
            assert!(
                e.contains(&format!("agent {id} (kind `"))
                    && e.contains("carries the component")
                    && e.contains("app.checkpoint_component"),
                "{e}"
            )
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a component it cannot restore was saved silently"),
    }
}

/// Requests waiting for a slot, in flight, and done but not yet handed over
/// at the checkpoint: `(waiting, in flight, done)`.
fn thinks_under_way(app: &App) -> (usize, usize, usize) {
    let queue = app.world().resource::<continuum::think::ThinkQueue>();
    let waiting = queue.waiting().count();
    let flying = queue.in_flight().count();
    (waiting, flying, queue.len() - waiting - flying)
}

/// Planners thinking when the checkpoint is taken: their requests are saved
/// as their inputs, the tasks in flight start again, the plans collected but
/// not handed over are computed again, and the resumed run reaches the
/// uninterrupted run's state.
#[test]
fn a_resumed_run_restarts_the_thinks_under_way() {
    let mut scenario = common::shipped("planners.ron");
    scenario.clock.duration = None;
    let n = 1200;
    let whole = digest_after(&scenario, n);
    // Steps at which requests wait, fly and are done, all three.
    let mut first = app(scenario.clone());
    prime(&mut first);
    let mut taken = Vec::new();
    for k in 1..n {
        steps(&mut first, 1);
        let (waiting, flying, done) = thinks_under_way(&first);
        if waiting > 0 && flying > 0 && done > 0 && taken.last().is_none_or(|&last| k > last + 200)
        {
            taken.push(k);
            let bytes = checkpoint::save(first.world_mut()).expect("saved");
            let at_k = state_digest(first.world_mut());
            let checkpoint = Checkpoint::from_bytes(bytes, Path::new("mem.ckpt")).unwrap();
            let mut second = app(checkpoint.scenario().unwrap());
            checkpoint.restore(&mut second).expect("restored");
            assert_eq!(thinks_under_way(&second), (waiting, flying, done));
            assert_eq!(
                state_digest(second.world_mut()),
                at_k,
                "restored at step {k}"
            );
            steps(&mut second, n - k);
            assert_eq!(
                state_digest(second.world_mut()),
                whole,
                "checkpoint at step {k} of {n}"
            );
        }
        if taken.len() == 3 {
            break;
        }
    }
    assert_eq!(
        taken.len(),
        3,
        "the run had thinks under way in every stage"
    );
}

/// A plugin's own components and resources, registered with checkpoints, are
/// saved and restored with the agents they belong to; `check` tells before.
#[test]
fn a_plugins_own_state_is_saved_and_restored() {
    use bevy_ecs::prelude::*;
    use continuum::agent::{Agent, AgentId};
    use continuum::checkpoint::CheckpointAppExt;
    #[derive(Component, Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cargo(u32);
    #[derive(Resource, Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ledger(Vec<u64>);
    let register = |app: &mut App| {
        app.checkpoint_component::<Cargo>()
            .checkpoint_resource::<Ledger>()
            .init_resource::<Ledger>();
    };
    let mut s = common::shipped("quickstart.ron");
    s.scale_agents(20);
    let mut first = app(s.clone());
    register(&mut first);
    prime(&mut first);
    steps(&mut first, 3);
    let world = first.world_mut();
    let loaded: Vec<(AgentId, Entity)> = world
        .query::<(Entity, &Agent)>()
        .iter(world)
        .filter(|(_, a)| a.id.0 % 3 == 0)
        .map(|(e, a)| (a.id, e))
        .collect();
    for &(id, e) in &loaded {
        world.entity_mut(e).insert(Cargo(id.0 as u32 * 10));
    }
    world.resource_mut::<Ledger>().0 = vec![4, 5, 6];
    checkpoint::check(world).expect("everything it carries is registered");
    let bytes = checkpoint::save(world).expect("saved");
    steps(&mut first, 5);
    let expected = state_digest(first.world_mut());

    let checkpoint = Checkpoint::from_bytes(bytes.clone(), Path::new("own.ckpt")).unwrap();
    let mut second = app(s.clone());
    register(&mut second);
    checkpoint.restore(&mut second).expect("restored");
    let world = second.world_mut();
    let mut restored: Vec<(AgentId, Cargo)> = world
        .query::<(&Agent, &Cargo)>()
        .iter(world)
        .map(|(a, c)| (a.id, *c))
        .collect();
    restored.sort_by_key(|r| r.0);
    let mut wanted: Vec<(AgentId, Cargo)> = loaded
        .iter()
        .map(|&(id, _)| (id, Cargo(id.0 as u32 * 10)))
        .collect();
    wanted.sort_by_key(|r| r.0);
    assert_eq!(restored, wanted);
    assert_eq!(world.resource::<Ledger>(), &Ledger(vec![4, 5, 6]));
    steps(&mut second, 5);
    assert_eq!(state_digest(second.world_mut()), expected);

    // An app without the plugin cannot take it.
    let checkpoint = Checkpoint::from_bytes(bytes, Path::new("own.ckpt")).unwrap();
    let mut third = app(s);
    match checkpoint.restore(&mut third) {
        Err(e @ CheckpointError::Mismatch(_)) => {
            assert!(e.to_string().contains("Cargo"), "{e}")
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(()) => panic!("a checkpoint with state no plugin takes was restored"),
    }
}
