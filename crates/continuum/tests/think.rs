//! Thinks that take longer than a tick: an agent acts only once its plan is
//! in, at its deadline; the in-flight cap holds and waiting thinks start by
//! priority; fast runs are the same on every thread count however long the
//! tasks really take; in real time, late results are counted.
//!
//! The compute pool is set to four workers and the async compute pool to two
//! before anything else in this process touches them (every test calls
//! [`pools`] first).

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use bevy_tasks::{AsyncComputeTaskPool, ComputeTaskPool, TaskPoolBuilder};
use bevy_time::TimeUpdateStrategy;
use continuum::clock::{SimTime, secs_to_sim};
use continuum::parallel::ThreadLoad;
use continuum::prelude::*;
use continuum::think::{ThinkQueue, ThinkStage};

fn pools() {
    let compute = ComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(4).build());
    let thinking =
        AsyncComputeTaskPool::get_or_init(|| TaskPoolBuilder::new().num_threads(2).build());
    assert!(
        compute.thread_num() >= 3 && thinking.thread_num() == 2,
        "the task pools were set up before this test could size them"
    );
}

/// A gate a think waits at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(AtomicBool, Mutex<Vec<Waker>>)>);

impl Gate {
    fn open(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        for waker in self.0.1.lock().unwrap().drain(..) {
            waker.wake();
        }
    }

    fn is_open(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_open() {
            return Poll::Ready(());
        }
        self.0.1.lock().unwrap().push(cx.waker().clone());
        // Opened between the first look and the registration.
        if self.is_open() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Answers `n` with `2n`, once its gate (if any) is open.
struct Oracle {
    gate: Option<Gate>,
}

impl AsyncThink for Oracle {
    type Input = u32;
    type Plan = u32;
    fn think(&self, n: u32) -> impl Future<Output = u32> + Send + 'static {
        let gate = self.gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.await;
            }
            2 * n
        }
    }
}

/// What the seers did.
#[derive(Resource, Default)]
struct Log {
    /// Each agent asks only once.
    once: bool,
    asked: BTreeSet<AgentId>,
    /// (step, agent, its tick's time, the answer) of every action.
    actions: Vec<(u64, AgentId, SimTime, f32)>,
}

/// Seers ask (with their id) when they are not thinking, and act once on
/// each answer.
fn decide(
    mut thinks: Thinks<Oracle>,
    due: Res<DueAgents>,
    archetypes: Res<Archetypes>,
    mut log: ResMut<Log>,
    mut agents: Query<(&Agent, &Cadence, &mut Intent)>,
) {
    let kind = archetypes.kind("seer").expect("the test defines seers");
    let answers = thinks.take_plans();
    for &entity in due.of_kind(kind) {
        let (agent, cadence, mut intent) = agents.get_mut(entity).unwrap();
        let answer = answers.iter().find(|(e, _, _)| *e == entity);
        intent.set_action(answer.map(|&(_, _, value)| PlannedAction {
            target: Target::Site(SiteId(0)),
            kind: ActionKind::Custom {
                code: 1,
                value: value as f32,
            },
        }));
        let asked = !log.asked.insert(agent.id);
        if answer.is_none() && !thinks.is_thinking(agent.id) && !(log.once && asked) {
            thinks.request(entity, agent, cadence, agent.id.0 as u32);
        }
    }
}

fn record(clock: Res<SimClock>, mut actions: MessageReader<Action>, mut log: ResMut<Log>) {
    for a in actions.read() {
        if let ActionKind::Custom { value, .. } = a.kind {
            log.actions
                .push((clock.step(), a.agent, a.timestamp, value));
        }
    }
}

/// Seers at `tick_hz` whose thinks take `latency` virtual seconds; `groups`
/// as in a scenario.
fn seers(tick_hz: f32, latency: f32, max_in_flight: usize, groups: &str) -> Scenario {
    common::scenario(&format!(
        r#"Scenario(
            name: "seers", seed: 3,
            world: (size: (100.0, 100.0), regions: (1, 1), sites: 4),
            clock: (fixed_hz: 100.0),
            think: (max_in_flight: {max_in_flight}),
            groups: [{groups}],
            archetypes: [Archetype(kind: "seer", tick_hz: {tick_hz:?}, speed: 0.0,
                perception_radius: 10.0, think_latency: {latency:?}, behaviour: Idle)],
        )"#
    ))
}

fn harness(scenario: Scenario, oracle: Oracle, once: bool) -> SimHarness {
    SimHarness::with(scenario, |app| {
        app.add_async_think("seer", oracle)
            .insert_resource(Log {
                once,
                ..Default::default()
            })
            .add_systems(
                FixedUpdate,
                (
                    decide.in_set(ThinkSystems::Decide),
                    record
                        .after(ContinuumSystems::Act)
                        .before(ContinuumSystems::Resolve),
                ),
            );
    })
}

fn queue(sim: &SimHarness) -> &ThinkQueue {
    sim.world().resource::<ThinkQueue>()
}

fn diagnostics(sim: &SimHarness) -> ThinkDiagnostics {
    sim.world().resource::<ThinkDiagnostics>().clone()
}

/// The first action of `agent`: (step, tick time, answer).
fn first_action(sim: &SimHarness, agent: AgentId) -> Option<(u64, SimTime, f32)> {
    let log = sim.world().resource::<Log>();
    log.actions
        .iter()
        .find(|a| a.1 == agent)
        .map(|&(step, _, at, value)| (step, at, value))
}

#[test]
fn an_agent_acts_at_its_first_tick_at_or_after_the_deadline_and_not_before() {
    pools();
    // Due every step, and at 10 Hz: the deadline falls on a tick of the
    // first, between two ticks of the second.
    for tick_hz in [100.0, 10.0] {
        let scenario = seers(tick_hz, 0.25, 8, r#"(kind: "seer", count: 1)"#);
        let mut sim = harness(scenario, Oracle { gate: None }, true);
        sim.step(1);
        let me = AgentId(0);
        let Some(ThinkStage::InFlight {
            started_at,
            deadline,
        }) = queue(&sim).stage(me)
        else {
            panic!(
                "the seer asked in its first tick: {:?}",
                queue(&sim).stage(me)
            );
        };
        assert!(started_at < secs_to_sim(0.01), "it started at once");
        assert_eq!(deadline, started_at + secs_to_sim(0.25));
        let period = secs_to_sim(1.0 / f64::from(tick_hz));
        // Its first tick at or after the deadline.
        let tick = started_at + deadline.saturating_sub(started_at).div_ceil(period) * period;
        let step = tick / secs_to_sim(0.01);
        sim.step(step - 1); // up to the step before the tick's
        assert_eq!(first_action(&sim, me), None, "{tick_hz} Hz: acted before");
        if tick_hz < 100.0 {
            // Collected in the deadline's step, handed over at the next tick.
            assert!(matches!(
                queue(&sim).stage(me),
                Some(ThinkStage::Done { .. })
            ));
        }
        sim.step(1);
        assert_eq!(
            first_action(&sim, me),
            Some((step, tick, 0.0)),
            "{tick_hz} Hz: acts at the tick at or after its deadline"
        );
        let d = diagnostics(&sim);
        assert_eq!((d.started, d.finished, d.delivered, d.late), (1, 1, 1, 0));
        assert!(!queue(&sim).is_thinking(me));
    }
}

#[test]
fn the_cap_holds_and_waiting_thinks_start_by_priority_then_request_time() {
    pools();
    let groups = r#"(kind: "seer", count: 2, priority: Background),
                    (kind: "seer", count: 3, priority: Normal),
                    (kind: "seer", count: 2, priority: High)"#;
    let mut sim = harness(seers(100.0, 0.1, 2, groups), Oracle { gate: None }, true);
    // Who started in each step, and when (virtual time).
    let mut started: Vec<(u64, AgentId, SimTime)> = Vec::new();
    for _ in 0..60 {
        let step = sim.clock().step();
        sim.step(1);
        let q = queue(&sim);
        let flying: Vec<AgentId> = q.in_flight().collect();
        assert!(flying.len() <= 2, "three in flight in step {step}");
        for id in flying {
            if !started.iter().any(|s| s.1 == id) {
                let Some(ThinkStage::InFlight { started_at, .. }) = q.stage(id) else {
                    unreachable!()
                };
                started.push((step, id, started_at));
            }
        }
        let waiting: Vec<u64> = q.waiting().map(|id| id.0).collect();
        // Ids follow the groups: 0-1 background, 2-4 normal, 5-6 high;
        // within a group, requests made later come later.
        match step {
            0 => assert_eq!(waiting, [2, 3, 4, 0, 1]),
            20 => assert_eq!(waiting, [1], "4 (normal) went before 0 (background)"),
            _ => {}
        }
    }
    // Two at a time: the high ones at their requests, then each pair in the
    // step the slots freed (one latency, 10 steps, later).
    let mut by_step: Vec<(u64, Vec<u64>)> = Vec::new();
    for &(step, id, at) in &started {
        match by_step.last_mut() {
            Some((s, ids)) if *s == step => ids.push(id.0),
            _ => by_step.push((step, vec![id.0])),
        }
        if step > 0 {
            assert_eq!(at, secs_to_sim(0.01) * step, "started at the step's start");
        }
    }
    for (_, ids) in &mut by_step {
        ids.sort_unstable();
    }
    assert_eq!(
        by_step,
        [
            (0, vec![5, 6]),
            (10, vec![2, 3]),
            (20, vec![0, 4]),
            (30, vec![1])
        ]
    );
    let d = diagnostics(&sim);
    assert_eq!((d.started, d.finished, d.peak_in_flight), (7, 7, 2));
    assert!(d.queue_seconds > 0.0);
}

/// A think that completes only in the step of its deadline (the app opens its
/// gate in that step's clock phase, before the results are collected): the
/// step waits for it, and the run is the same as with instant thinks.
#[test]
fn fast_mode_waits_for_a_result_at_its_deadline() {
    pools();
    let scenario = || seers(100.0, 0.2, 2, r#"(kind: "seer", count: 5)"#);
    let mut instant = harness(scenario(), Oracle { gate: None }, false);
    instant.step(120);
    let gate = Gate::default();
    let opener = gate.clone();
    let mut slow = harness(scenario(), Oracle { gate: Some(gate) }, false);
    // The first deadline falls in step 20: the gate stays shut until then.
    slow.app_mut().add_systems(
        FixedUpdate,
        (move |clock: Res<SimClock>| {
            if clock.step() == 20 {
                opener.open();
            }
        })
        .in_set(ContinuumSystems::Clock),
    );
    slow.step(20);
    assert_eq!(diagnostics(&slow).finished, 0);
    slow.step(100);
    let (a, b) = (
        &instant.world().resource::<Log>().actions,
        &slow.world().resource::<Log>().actions,
    );
    // Two thinks of 20 steps at a time: 10 answers in 120 steps.
    assert!(a.len() >= 10, "the seers act again and again: {}", a.len());
    assert_eq!(a, b, "a slow think changed the run");
    assert_eq!(instant.state_digest(), slow.state_digest());
}

/// In real time (here on a manual clock: each update is 10 ms of real and
/// virtual time) nothing waits: a result not in by its deadline is counted
/// late, and applied when it comes.
#[test]
fn realtime_counts_a_late_result_and_applies_it_when_it_comes() {
    pools();
    let gate = Gate::default();
    let scenario = seers(100.0, 0.05, 8, r#"(kind: "seer", count: 1)"#);
    let mut sim = harness(
        scenario,
        Oracle {
            gate: Some(gate.clone()),
        },
        true,
    );
    sim.app_mut()
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            10,
        )));
    let me = AgentId(0);
    sim.step(30);
    let d = diagnostics(&sim);
    assert_eq!((d.started, d.finished, d.late), (1, 0, 1), "late, once");
    assert_eq!(first_action(&sim, me), None, "no result, no action");
    assert!(matches!(
        queue(&sim).stage(me),
        Some(ThinkStage::InFlight { .. })
    ));
    gate.open();
    // The task finishes on the async pool soon after; the run goes on
    // meanwhile, and the result is applied in the first step after it came.
    let mut steps = 0;
    while first_action(&sim, me).is_none() {
        assert!(steps < 1_000_000, "the result never came");
        sim.step(1);
        steps += 1;
    }
    let (step, _, answer) = first_action(&sim, me).unwrap();
    assert!(step >= 30, "applied at step {step}, after the gate opened");
    assert_eq!(answer, 0.0);
    let d = diagnostics(&sim);
    assert_eq!((d.started, d.finished, d.delivered, d.late), (1, 1, 1, 1));
}

/// The planners' scenario, shortened.
fn planners() -> Scenario {
    let mut s = common::shipped("planners.ron");
    s.clock.duration = Some(12.0);
    s
}

fn planners_digest(load: ThreadLoad) -> (StateDigest, ThinkDiagnostics, f32) {
    let mut sim = SimHarness::with(planners(), |app: &mut App| {
        app.insert_resource(load);
    });
    sim.run_for(12.0);
    let diag = diagnostics(&sim);
    let harvested = sim
        .world()
        .resource::<continuum::world::Sites>()
        .iter()
        .map(|s| s.harvested)
        .sum();
    (sim.state_digest(), diag, harvested)
}

#[test]
fn planners_give_the_same_world_on_one_two_and_four_threads() {
    pools();
    let (one, diag, harvested) = planners_digest(ThreadLoad::with_threads(1));
    assert!(diag.started > 50, "the planners plan: {diag:?}");
    assert!(
        diag.queue_seconds > 0.0 && diag.peak_in_flight == 8,
        "the cap makes plans wait: {diag:?}"
    );
    assert!(diag.finished <= diag.started && diag.late == 0);
    assert!(harvested > 0.0);
    for threads in [2, 4] {
        let (digest, d, _) =
            planners_digest(ThreadLoad::with_threads(threads).sharing_every_pass());
        assert_eq!(digest, one, "{threads} threads gave another world");
        assert_eq!(
            (d.started, d.finished, d.delivered),
            (diag.started, diag.finished, diag.delivered)
        );
    }
}

/// Planners plan over what they know: their routes name sites with value,
/// and they harvest along them.
#[test]
fn planners_follow_their_routes() {
    pools();
    let mut sim = SimHarness::new(planners());
    sim.run_for(12.0);
    let routes = sim.agents::<continuum::sites::Route>();
    assert_eq!(routes.len(), 60, "every planner has a route");
    let planned = routes.iter().filter(|(_, r)| !r.stops().is_empty()).count();
    assert!(planned > 10, "{planned} planners hold a route");
    let tally: f32 = sim
        .agents::<Feedback>()
        .iter()
        .filter(|(id, _)| routes.iter().any(|r| r.0 == *id))
        .map(|(_, f)| f.tally.harvested)
        .sum();
    assert!(tally > 10.0, "planners harvested {tally}");
}
