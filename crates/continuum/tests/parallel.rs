//! The parallel backend under stress: thousands of passes of random sizes on
//! random thread counts, with and without spinning workers, and every item
//! counted. A lost item, or one run twice, fails the test.
//!
//! The compute pool is set to four workers before anything else in this
//! process touches it, so that four-thread passes really run on four threads.
#![cfg(feature = "parallel")]

mod common;

use bevy_ecs::entity::UniqueEntityVec;
use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemState;
use bevy_tasks::{ComputeTaskPool, TaskPoolBuilder};
use continuum::action::ResolverDiagnostics;
use continuum::agent::{Cadence, PriorityRates};
use continuum::memory::SharedCache;
use continuum::parallel::{
    BatchTuner, ThreadLoad, for_each_chunk, for_each_due_into, for_each_run,
};
use continuum::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

fn pool() {
    let pool = ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
    assert!(
        pool.thread_num() >= 3,
        "the compute pool was set up before this test could size it"
    );
}

/// A size that is sometimes empty, sometimes one chunk, sometimes large.
fn size(rng: &mut Pcg32) -> usize {
    match rng.next_u32() % 4 {
        0 => (rng.next_u32() % 4) as usize,
        1 => (rng.next_u32() % 200) as usize,
        2 => (rng.next_u32() % 5_000) as usize,
        _ => (rng.next_u32() % 40_000) as usize,
    }
}

/// A load as the step loop drives it: random thread counts, sharing every
/// pass or only the large ones, spinning workers woken and released at random
/// (so that workers left spinning by a step with more threads join passes of
/// one with fewer).
fn drive(load: &mut ThreadLoad, rng: &mut Pcg32) {
    load.set_threads(1 + (rng.next_u32() % 4) as usize);
    match rng.next_u32() % 3 {
        0 => load.start_step(100_000),
        1 => load.end_step(),
        _ => {}
    }
}

#[test]
fn thousands_of_random_passes_reach_every_item_exactly_once() {
    pool();
    let mut rng = Pcg32::seed_from_u64(7);
    let mut spinning = ThreadLoad::with_threads(4).spinning_workers();
    let mut sharing = ThreadLoad::with_threads(4).sharing_every_pass();
    let mut tasks = ThreadLoad::with_threads(4);
    let mut items = Vec::new();
    for pass in 0..3_000u32 {
        let load = match pass % 3 {
            0 => &mut spinning,
            1 => &mut sharing,
            _ => &mut tasks,
        };
        drive(load, &mut rng);
        let len = size(&mut rng);
        items.clear();
        if pass % 2 == 0 {
            items.resize(len, 0u32);
            for_each_chunk(&mut items, load, |x| *x += 1);
        } else {
            // Each item holds its place: a run is a stretch of the items
            // when its places count up one by one.
            items.extend(0..len as u32);
            for_each_run(&mut items, load, |run| {
                let first = run.first().copied().unwrap_or(0);
                for (k, x) in run.iter_mut().enumerate() {
                    assert_eq!(*x, first + k as u32, "a run is not a stretch of the items");
                }
                run.fill(0);
            });
            items.iter_mut().for_each(|x| *x += 1);
        }
        if let Some(i) = items.iter().position(|&x| x != 1) {
            panic!(
                "pass {pass}: item {i} of {len} ran {} times on {} threads",
                items[i],
                load.threads()
            );
        }
    }
    for load in [&spinning, &sharing, &tasks] {
        load.end_step();
    }
}

#[derive(Component)]
struct Counter {
    runs: u32,
}

#[test]
fn random_due_lists_on_random_thread_counts_reach_each_agent_once_in_order() {
    pool();
    let mut rng = Pcg32::seed_from_u64(11);
    let mut world = World::new();
    let entities: Vec<Entity> = world
        .spawn_batch((0..30_000).map(|_| Counter { runs: 0 }))
        .collect();
    let mut state = SystemState::<Query<(Entity, &mut Counter)>>::new(&mut world);
    let mut load = ThreadLoad::with_threads(4).spinning_workers();
    let mut tuner = BatchTuner::default();
    let mut expected = vec![0u32; entities.len()];
    let mut out = Vec::new();
    for pass in 0..1_000 {
        drive(&mut load, &mut rng);
        // A random subset in random order: a due list.
        let mut picked: Vec<usize> = (0..entities.len()).collect();
        let len = size(&mut rng).min(entities.len());
        for i in 0..len {
            let j = i + (rng.next_u32() as usize) % (picked.len() - i);
            picked.swap(i, j);
        }
        picked.truncate(len);
        // SAFETY: distinct indices into a list of distinct entities.
        let due = unsafe {
            UniqueEntityVec::from_vec_unchecked(picked.iter().map(|&i| entities[i]).collect())
        };
        out.clear();
        out.resize(len, Entity::PLACEHOLDER);
        let mut query = state.get_mut(&mut world).expect("the query is valid");
        for_each_due_into(
            &mut query,
            &due,
            &mut out,
            &mut tuner,
            &load,
            |(entity, mut counter), slot| {
                counter.runs += 1;
                *slot = entity;
            },
        );
        assert_eq!(
            out.as_slice(),
            due.as_slice(),
            "pass {pass}: results in due order"
        );
        for &i in &picked {
            expected[i] += 1;
        }
    }
    load.end_step();
    for (i, &entity) in entities.iter().enumerate() {
        let runs = world.get::<Counter>(entity).unwrap().runs;
        assert_eq!(runs, expected[i], "agent {i}");
    }
}

/// Conflicts resolved region by region on 2 and 4 threads end in the state
/// of resolving them on one thread. The threads are set here: the harness's
/// default pool has a single compute thread on a 2-core machine, which would
/// compare serial with serial.
#[test]
fn per_region_resolution_on_several_threads_matches_one_thread() {
    pool();
    let run = |threads: usize, parallel_threshold: usize| {
        let mut sim = SimHarness::with(common::shipped("conflict-storm.ron"), |app| {
            app.insert_resource(ConflictResolver {
                parallel_threshold,
                ..Default::default()
            })
            .insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
        });
        sim.run_for(5.0);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        let conflicts = sim.world().resource::<ResolverDiagnostics>().conflicts;
        assert!(
            conflicts > 100,
            "the storm should collide, saw {conflicts} conflicts"
        );
        (conflicts, sim.state_digest())
    };
    let serial = run(1, usize::MAX);
    for threads in [2, 4] {
        assert_eq!(
            run(threads, 0),
            serial,
            "per-region resolution on {threads} threads"
        );
    }
}

/// Explorers mark the ground from the parallel think pass, into a shared
/// cache too small for the world: on 2 and 4 threads the marks, the
/// evictions and the whole state are those of one thread.
#[test]
fn ground_marks_from_several_threads_match_one_thread() {
    pool();
    let run = |threads: usize| {
        let scenario = common::scenario(
            r#"Scenario(
                name: "wide",
                world: (size: (2000.0, 2000.0), regions: (4, 4), sites: 1000),
                clock: (fixed_hz: 100.0),
                memory: (budget: Auto, shared_fraction: 0.05),
                groups: [
                    (kind: "explorer", count: 400),
                    (kind: "analyzer", count: 100),
                    (kind: "controller", count: 100),
                ],
            )"#,
        );
        let mut sim = SimHarness::with(scenario, |app| {
            app.insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
        });
        sim.run_for(10.0);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        let stats = sim.world().resource::<SharedCache>().stats();
        assert!(
            stats.evictions > 100 && stats.len > stats.site_facts,
            "the cache should hold marks and evict: {stats:?}"
        );
        (stats, sim.state_digest())
    };
    let serial = run(1);
    for threads in [2, 4] {
        assert_eq!(run(threads), serial, "ground marks on {threads} threads");
    }
}

/// Background and normal agents slowed by load shedding are spread over their
/// longer periods from the parallel reschedule pass: on 2 and 4 threads each
/// agent lands where it does on one.
#[test]
fn slowed_classes_spread_alike_on_several_threads() {
    pool();
    let run = |threads: usize| {
        let scenario = common::scenario(
            r#"Scenario(
                name: "slowed",
                world: (size: (1000.0, 1000.0), sites: 200),
                clock: (fixed_hz: 100.0),
                groups: [
                    (kind: "explorer", count: 600, priority: Background),
                    (kind: "analyzer", count: 300, priority: Normal),
                    (kind: "controller", count: 100, priority: High),
                ],
            )"#,
        );
        let mut sim = SimHarness::with(scenario, |app| {
            app.insert_resource(ThreadLoad::with_threads(threads).sharing_every_pass());
        });
        sim.step(30);
        sim.world_mut()
            .insert_resource(PriorityRates([0.1, 0.25, 1.0]));
        sim.step(150);
        assert_eq!(sim.world().resource::<ThreadLoad>().threads(), threads);
        let dues: Vec<_> = sim
            .agents::<Cadence>()
            .into_iter()
            .map(|(id, c)| (id, c.due))
            .collect();
        (dues, sim.state_digest())
    };
    let serial = run(1);
    let spread: std::collections::BTreeSet<_> =
        serial.0.iter().map(|&(_, due)| due / 10_000_000).collect();
    assert!(spread.len() >= 90, "dues over {} steps", spread.len());
    for threads in [2, 4] {
        assert_eq!(run(threads), serial, "spread on {threads} threads");
    }
}
