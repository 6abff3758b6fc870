//! The agent pool: admission order across the three queues, FIFO within a
//! queue, slots reused in the step they free up, arrivals and departures, and
//! the accounting identity `requested == active + queued + retired`.

mod common;

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use continuum::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

const STEP_NS: u64 = 10_000_000;

fn pool_scenario(groups: &str, max_agents: usize, extra: &str) -> Scenario {
    common::scenario(&format!(
        r#"Scenario(
            name: "pool",
            world: (sites: 1),
            clock: (fixed_hz: 100.0),
            max_agents: {max_agents},
            archetypes: [{}],
            groups: [{groups}],
            {extra}
        )"#,
        common::idle_kind("idle", 10.0)
    ))
}

fn blueprint(sim: &SimHarness, priority: Priority) -> AgentBlueprint {
    let archetypes = sim.world().resource::<Archetypes>();
    let mut bp = archetypes.blueprint(archetypes.kind("idle").unwrap());
    bp.priority = priority;
    // First due the moment it is admitted, so its due time tells when that was.
    bp.phase = Some(0.0);
    bp
}

/// Active agents by id, with their entities.
fn active(sim: &mut SimHarness) -> Vec<(AgentId, Entity)> {
    let world = sim.world_mut();
    let mut q = world.query::<(Entity, &Agent)>();
    let mut v: Vec<_> = q.iter(world).map(|(e, a)| (a.id, e)).collect();
    v.sort();
    v
}

fn check_accounting(sim: &mut SimHarness) {
    let live = active(sim).len();
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!(pool.active(), live, "the pool's count of active agents");
    assert_eq!(
        pool.requested(),
        pool.active() as u64 + pool.queued() as u64 + pool.retired(),
        "requested == active + queued + retired"
    );
}

#[test]
fn waiting_agents_start_high_first_then_normal_then_background_fifo_within_each() {
    let mut sim = SimHarness::new(pool_scenario(r#"(kind: "idle", count: 2)"#, 2, ""));
    sim.step(1);
    let blockers = active(&mut sim);
    assert_eq!(blockers.len(), 2);

    use Priority::*;
    let order = [Background, Normal, High, Normal, High, Background];
    let ids: Vec<AgentId> = order
        .iter()
        .map(|&p| {
            let bp = blueprint(&sim, p);
            sim.world_mut().resource_mut::<AgentPool>().request(bp)
        })
        .collect();
    sim.step(1);
    {
        let pool = sim.world().resource::<AgentPool>();
        assert_eq!((pool.active(), pool.queued()), (2, 6));
        assert_eq!(
            [
                pool.queued_at(High),
                pool.queued_at(Normal),
                pool.queued_at(Background)
            ],
            [2, 2, 2]
        );
    }
    check_accounting(&mut sim);

    // Free one slot per step by retiring the oldest active agent; record who starts.
    let mut started = Vec::new();
    for _ in 0..6 {
        let before = active(&mut sim);
        sim.world_mut()
            .resource_mut::<AgentPool>()
            .retire(before[0].1);
        let step = sim.clock().step();
        sim.step(1);
        let now: Vec<_> = active(&mut sim);
        assert_eq!(now.len(), 2, "the freed slot is taken in the same step");
        let &(newcomer, entity) = now.iter().find(|a| !before.contains(a)).unwrap();
        let cadence = *sim.world().get::<Cadence>(entity).unwrap();
        assert_eq!(
            cadence.due,
            (step + 1) * STEP_NS,
            "admitted at the end of the step its slot freed"
        );
        started.push(newcomer);
        check_accounting(&mut sim);
    }
    let expected: Vec<AgentId> = [2, 4, 1, 3, 0, 5].iter().map(|&i| ids[i]).collect();
    assert_eq!(started, expected);
    let (admitted, mean, _) = sim.world().resource::<AgentPool>().wait_stats(Background);
    assert_eq!(admitted, 2);
    // Requested at 10 ms, the background agents started at 70 and 80 ms.
    assert!(
        (mean - 0.065).abs() < 1e-3,
        "background agents waited 0.06 s and 0.07 s, mean {mean}"
    );
}

#[test]
fn fifteen_hundred_requests_for_a_thousand_slots() {
    let mut sim = SimHarness::new(pool_scenario(
        r#"(kind: "idle", count: 600, lifetime: 1.0), (kind: "idle", count: 900)"#,
        1000,
        "",
    ));
    sim.step(1);
    {
        let pool = sim.world().resource::<AgentPool>();
        assert_eq!(
            (
                pool.requested(),
                pool.active(),
                pool.queued(),
                pool.retired()
            ),
            (1500, 1000, 500, 0)
        );
    }
    let ids = active(&mut sim);
    assert_eq!(
        (ids[0].0, ids[999].0),
        (AgentId(0), AgentId(999)),
        "first come, first served"
    );
    check_accounting(&mut sim);
    sim.step(98);
    assert_eq!(
        sim.world().resource::<AgentPool>().queued(),
        500,
        "nobody leaves before 1 s"
    );
    sim.step(1); // the step ending at 1 s: the 600 retire, 500 waiting start
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!(
        (pool.active(), pool.queued(), pool.retired()),
        (900, 0, 600)
    );
    check_accounting(&mut sim);
    let ids = active(&mut sim);
    assert_eq!((ids[0].0, ids[899].0), (AgentId(600), AgentId(1499)));
    // 1000 started at once; the other 500 waited exactly 1 s.
    let (admitted, mean, p99) = sim
        .world()
        .resource::<AgentPool>()
        .wait_stats(Priority::Normal);
    assert_eq!(admitted, 1500);
    assert!((mean - 1.0 / 3.0).abs() < 1e-3, "mean wait {mean} s");
    assert!((p99 - 1.0).abs() < 1e-3, "the last agents waited {p99} s");
}

#[test]
fn arrivals_and_departures_follow_the_timeline() {
    let mut sim = SimHarness::new(pool_scenario(
        r#"(kind: "idle", count: 10)"#,
        15,
        r#"arrivals: [(at: 0.5, group: (kind: "idle", count: 10, priority: High))],
           departures: [(at: 1.0, count: 4, priority: Normal), (at: 1.2, count: 100, priority: High)],"#,
    ));
    sim.step(50);
    assert_eq!(
        sim.world().resource::<AgentPool>().requested(),
        10,
        "nothing arrives before 0.5 s"
    );
    sim.step(1);
    {
        let pool = sim.world().resource::<AgentPool>();
        assert_eq!(
            (pool.requested(), pool.active(), pool.queued()),
            (20, 15, 5)
        );
    }
    sim.step(49); // through the step ending at 1.0 s: 4 normal agents leave, 4 queued start
    let ids: Vec<u64> = active(&mut sim).iter().map(|(id, _)| id.0).collect();
    assert_eq!(ids, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
    sim.step(20); // at 1.2 s every high-priority agent leaves, the last one waiting starts
    let ids: Vec<u64> = active(&mut sim).iter().map(|(id, _)| id.0).collect();
    assert_eq!(ids, [4, 5, 6, 7, 8, 9, 19]);
    check_accounting(&mut sim);
}

#[test]
fn lowering_the_limit_stops_admission_but_never_stops_agents() {
    let mut sim = SimHarness::new(pool_scenario(r#"(kind: "idle", count: 50)"#, 100, ""));
    sim.step(1);
    sim.world_mut().resource_mut::<AgentPool>().set_limit(20);
    for _ in 0..10 {
        let bp = blueprint(&sim, Priority::High);
        sim.world_mut().resource_mut::<AgentPool>().request(bp);
    }
    sim.step(5);
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!((pool.limit(), pool.active(), pool.queued()), (20, 50, 10));
    sim.world_mut().resource_mut::<AgentPool>().set_limit(1000);
    sim.step(1);
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!(
        (pool.limit(), pool.active(), pool.queued()),
        (100, 60, 0),
        "the limit is capped at max_agents"
    );
}

/// Random requests, retirements and limit changes: at every step, every request
/// is exactly one of active, queued or retired, and no more agents run than the
/// limit allowed when they were admitted.
#[test]
fn the_accounting_identity_holds_at_every_step_of_random_runs() {
    for seed in 0..8u64 {
        let mut rng = Pcg32::seed_from_u64(seed);
        let mut sim = SimHarness::new(pool_scenario(r#"(kind: "idle", count: 30)"#, 40, ""));
        for _ in 0..300 {
            for _ in 0..rng.next_u32() % 4 {
                let priority = [Priority::High, Priority::Normal, Priority::Background]
                    [(rng.next_u32() % 3) as usize];
                let mut bp = blueprint(&sim, priority);
                if rng.next_u32() % 2 == 0 {
                    bp.lifetime = Some(f64::from(rng.next_u32() % 100) / 100.0 + 0.01);
                }
                sim.world_mut().resource_mut::<AgentPool>().request(bp);
            }
            let live = active(&mut sim);
            if !live.is_empty() && rng.next_u32() % 3 == 0 {
                let victim = live[(rng.next_u32() as usize) % live.len()].1;
                sim.world_mut().resource_mut::<AgentPool>().retire(victim);
            }
            if rng.next_u32() % 25 == 0 {
                let limit = (rng.next_u32() % 45) as usize;
                sim.world_mut().resource_mut::<AgentPool>().set_limit(limit);
            }
            let limit_before = sim.world().resource::<AgentPool>().limit();
            let active_before = sim.world().resource::<AgentPool>().active();
            sim.step(1);
            check_accounting(&mut sim);
            let pool = sim.world().resource::<AgentPool>();
            assert!(
                pool.active() <= limit_before.max(active_before),
                "seed {seed}: admitted past the limit"
            );
        }
    }
}

/// The shipped scenario that starts with no agents fills by arrivals: the pool
/// stays at its room while waves wait in the queues, the high-priority ones
/// admitted first.
#[test]
fn an_empty_start_fills_by_arrivals_high_priority_first() {
    let scenario = common::shipped("empty-start.ron");
    assert!(scenario.groups.is_empty());
    let mut sim = SimHarness::new(scenario);
    assert_eq!(
        sim.world().resource::<AgentPool>().active(),
        60,
        "the wave due at 0 s only"
    );
    let mut peak_queued = [0; 3];
    for _ in 0..20 {
        sim.run_for(1.0);
        let pool = sim.world().resource::<AgentPool>();
        assert!(pool.active() <= 1000, "{} active", pool.active());
        for p in [Priority::Background, Priority::Normal, Priority::High] {
            peak_queued[p as usize] = peak_queued[p as usize].max(pool.queued_at(p));
        }
        assert_eq!(
            pool.requested(),
            pool.active() as u64 + pool.queued() as u64 + pool.retired()
        );
    }
    let pool = sim.world().resource::<AgentPool>();
    assert_eq!(pool.active(), 1000, "the room is full");
    assert!(
        peak_queued[Priority::Background as usize] > 0,
        "{peak_queued:?}"
    );
    let (high, _, high_p99) = pool.wait_stats(Priority::High);
    let (background, background_mean, _) = pool.wait_stats(Priority::Background);
    assert!(high > 0 && background > 0, "both admitted");
    assert!(
        high_p99 < background_mean,
        "high waits less: p99 {high_p99} s, background mean {background_mean} s"
    );
}

/// `--agents` scales an empty start's arrivals, departures and room by one
/// factor: the run at ten times the size keeps the proportions.
#[test]
fn scaling_an_empty_start_keeps_the_pool_in_proportion() {
    let base = common::shipped("empty-start.ron");
    let mut big = base.clone();
    big.scale_agents(base.arriving_agents() * 10);
    assert_eq!(big.arriving_agents(), base.arriving_agents() * 10);
    assert_eq!(big.max_agents, base.max_agents.map(|m| m * 10));
    for (a, b) in base.arrivals.iter().zip(&big.arrivals) {
        assert_eq!(b.group.count, a.group.count * 10);
    }
    for (a, b) in base.departures.iter().zip(&big.departures) {
        assert_eq!(b.count, a.count * 10);
    }
    let mut sim = SimHarness::new(big);
    sim.run_for(10.0);
    assert_eq!(sim.world().resource::<AgentPool>().active(), 10_000);
}

/// An admission batch is laid out for the steps that read it: the agents
/// the index keeps are spawned by the step they are first due in, within a
/// step by priority, and then in the order of their starting cells along a
/// Z-order curve. A step's due agents of one priority are then stored one
/// after another, and each is near the one before it; agents the index does
/// not keep stay in request order.
#[test]
fn an_admission_batch_is_laid_out_by_due_step_priority_then_place() {
    let kept = common::idle_kind("kept", 10.0);
    let apart = common::idle_kind("apart", 10.0)
        .replace("behaviour: Idle", "behaviour: Idle, indexed: false");
    let mut sim = SimHarness::new(common::scenario(&format!(
        r#"Scenario(
            name: "layout",
            world: (size: (2000.0, 2000.0), sites: 1),
            clock: (fixed_hz: 100.0),
            archetypes: [{kept}, {apart}],
            groups: [
                (kind: "kept", count: 2000),
                (kind: "apart", count: 300),
                (kind: "kept", count: 1000, priority: High),
            ],
        )"#
    )));
    let world = sim.world_mut();
    let kept_kind = world.resource::<Archetypes>().kind("kept").unwrap();
    let geometry = *world.resource::<AgentIndex>().0.geometry();
    let mut q = world.query::<(Entity, &Agent, &Position, &Cadence)>();
    let mut agents: Vec<_> = q
        .iter(world)
        .map(|(e, a, p, c)| {
            let class = a.priority as u8;
            (
                e.index(),
                a.kind == kept_kind,
                a.id,
                p.0,
                c.due / STEP_NS,
                class,
            )
        })
        .collect();
    agents.sort_by_key(|a| a.0);
    let morton = |p: Vec2| {
        let (x, y) = geometry.cell_coords(p);
        (0..16).fold(0u64, |code, bit| {
            code | (u64::from((x >> bit) & 1) << (2 * bit))
                | (u64::from((y >> bit) & 1) << (2 * bit + 1))
        })
    };
    let kept: Vec<_> = agents.iter().filter(|a| a.1).collect();
    let apart: Vec<_> = agents.iter().filter(|a| !a.1).collect();
    assert_eq!((kept.len(), apart.len()), (3000, 300));
    for pair in kept.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            (a.4, a.5, morton(a.3)) <= (b.4, b.5, morton(b.3)),
            "stored by due step, priority, then place: {a:?} before {b:?}"
        );
    }
    assert!(
        kept.windows(2)
            .any(|p| p[0].4 == p[1].4 && p[0].5 != p[1].5),
        "a step holds agents of both priorities"
    );
    assert!(apart.windows(2).all(|p| p[0].2 < p[1].2), "request order");
    // The due agents of a step are near one another in the order they are
    // read: on average far closer than two agents drawn at random (about
    // half the side of the world apart).
    let (step, class) = (kept[0].4, kept[0].5);
    let due: Vec<Vec2> = kept
        .iter()
        .filter(|a| (a.4, a.5) == (step, class))
        .map(|a| a.3)
        .collect();
    assert!(due.len() > 100, "{} due in step {step}", due.len());
    let mean = due.windows(2).map(|p| p[0].distance(p[1])).sum::<f32>() / (due.len() - 1) as f32;
    assert!(
        mean < 400.0,
        "consecutive due agents {mean:.0} apart on average"
    );
}

/// A wave larger than one admission batch (65 536 agents) is admitted whole
/// and in one order: every agent is spawned, indexed where it stands and
/// scheduled once, and the table holds them in the order of their first due
/// step and then priority, across the batches' seams.
#[test]
fn a_wave_larger_than_a_batch_is_admitted_whole_and_in_order() {
    const WAVE: usize = 70_000;
    let mut sim = SimHarness::new(pool_scenario(
        &format!(
            r#"(kind: "idle", count: {}, priority: High), (kind: "idle", count: {})"#,
            WAVE / 4,
            WAVE - WAVE / 4
        ),
        WAVE,
        "",
    ));
    check_accounting(&mut sim);
    assert_eq!(sim.world().resource::<AgentPool>().active(), WAVE);
    assert_eq!(
        sim.world()
            .resource::<continuum::agent::AgentSchedule>()
            .len(),
        WAVE
    );
    let world = sim.world_mut();
    let mut q = world.query::<(&Agent, &Position, &Cadence)>();
    let world = &*world;
    let grid = &world.resource::<AgentIndex>().0;
    assert_eq!(grid.len(), WAVE, "every agent in the index");
    let placed: Vec<_> = q
        .iter(world)
        .map(|(agent, position, cadence)| {
            let mut found = 0;
            grid.for_each_within(position.0, 1e-3, |_, a, _| {
                found += usize::from(a.id == agent.id)
            });
            assert_eq!(found, 1, "{} indexed where it stands", agent.id);
            (cadence.due / STEP_NS, agent.priority as u8)
        })
        .collect();
    assert_eq!(placed.len(), WAVE);
    let seams = placed.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(
        seams, 0,
        "agents in the table by first due step, then priority"
    );
    assert!(placed.first() < placed.last(), "more than one due step");
}
