//! Flocking (boids), as the published agent-based framework comparisons run it
//! (krABMaga's `flockers`, Agents.jl's flocking): on a torus, each bird steers
//! by five weighted urges computed from the birds within its neighbour radius
//! and moves a fixed step length.
//!
//! - **cohesion**: towards the neighbours' mean offset, `-Σd / n / 10`;
//! - **avoidance**: away from close neighbours, `400 Σ d / (|d|⁴ + 1) / n`;
//! - **consistency**: along the neighbours' mean heading, `Σh / n`, or
//!   `Σh / n / n` as krABMaga's `flockers` (and so the published comparisons)
//!   computes it (see [`ConsistencyScale`]);
//! - **randomness**: a random direction 0.05 long, from the bird's own
//!   generator;
//! - **momentum**: its own last step.
//!
//! Here `d` is the offset from a neighbour to the bird, the shortest way
//! round the torus. The urges' weighted sum, scaled to the step length, is the
//! bird's step. Every bird reads the flock as it was at the start of the step
//! (a synchronous update), so the result does not depend on the order birds
//! are updated in or on the number of threads.
//!
//! Birds are the engine's agents: a kind whose behaviour is
//! `Model(name: "flocking", params: (..))` (see [`FlockingParams`]); each bird
//! steers at its own tick rate (at the step rate, every bird every step, as the
//! comparisons run it). Its position is the engine's
//! [`Position`], its last step the engine's [`Velocity`] (in world units per
//! virtual second). The world is the scenario's map, wrapped at its edges.

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use continuum::agent::{Admitted, AgentsAdmitted};
use continuum::config::Validator;
use continuum::parallel::{BatchTuner, ThreadLoad, for_each_due};
use continuum::prelude::*;

/// Parameters of a flocking kind. The defaults are the published comparisons'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlockingParams {
    /// Birds closer than this (world units) are neighbours.
    pub radius: f32,
    /// Weight of the pull towards the neighbours.
    pub cohesion: f32,
    /// Weight of the push away from close neighbours.
    pub avoidance: f32,
    /// Weight of the random urge.
    pub randomness: f32,
    /// Weight of the pull along the neighbours' headings.
    pub consistency: f32,
    /// Weight of the bird's own last step.
    pub momentum: f32,
    /// Length of a step (world units per tick).
    pub step: f32,
    /// How the consistency urge is scaled.
    pub consistency_scale: ConsistencyScale,
}

/// How the consistency urge is scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsistencyScale {
    /// The neighbours' mean heading (MASON's Flockers, Agents.jl): flocks
    /// align.
    Mean,
    /// The mean heading divided by the number of neighbours again, as
    /// krABMaga's `flockers` computes it and the published speed comparisons
    /// run it: with some thirty neighbours the urge is too weak to align the
    /// birds, which clump without turning together. The default, so that a
    /// benchmark does the comparisons' work.
    #[default]
    MeanPerNeighbour,
}

impl Default for FlockingParams {
    fn default() -> Self {
        Self {
            radius: 10.0,
            cohesion: 0.8,
            avoidance: 1.0,
            randomness: 1.1,
            consistency: 0.7,
            momentum: 1.0,
            step: 0.7,
            consistency_scale: ConsistencyScale::MeanPerNeighbour,
        }
    }
}

/// Largest weight or length accepted: sums of a few hundred neighbours' terms
/// stay finite.
const MAX_PARAM: f32 = 1.0e6;

impl BehaviourParams for FlockingParams {
    const NAME: &'static str = "flocking";

    fn validate(&self, v: &mut Validator) {
        let positive = |x: f32| x.is_finite() && x > 0.0 && x <= MAX_PARAM;
        let weight = |x: f32| x.is_finite() && (0.0..=MAX_PARAM).contains(&x);
        v.check(positive(self.radius), "radius", || {
            format!("expected a radius in (0, {MAX_PARAM}], got {}", self.radius)
        });
        v.check(positive(self.step), "step", || {
            format!("expected a length in (0, {MAX_PARAM}], got {}", self.step)
        });
        for (name, x) in [
            ("cohesion", self.cohesion),
            ("avoidance", self.avoidance),
            ("randomness", self.randomness),
            ("consistency", self.consistency),
            ("momentum", self.momentum),
        ] {
            v.check(weight(x), name, || {
                format!("expected a weight in [0, {MAX_PARAM}], got {x}")
            });
        }
    }
}

/// The flocking behaviour: registers it, gives new birds a random heading and
/// steers the due birds in the act phase.
pub struct FlockingPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl FlockingPlugin {
    /// Steers birds in `schedule` (the one Continuum's plugins step in).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for FlockingPlugin {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl Plugin for FlockingPlugin {
    fn build(&self, app: &mut App) {
        app.register_behaviour::<FlockingParams>()
            .init_resource::<ThreadLoad>()
            .add_systems(AgentsAdmitted, start_headings)
            .add_systems(self.schedule, steer.in_set(ContinuumSystems::Act));
    }
}

/// New birds start in a random direction, one step long.
fn start_headings(
    admitted: Res<Admitted>,
    kinds: Res<KindParams<FlockingParams>>,
    clock: Res<SimClock>,
    mut birds: Query<(&Cadence, &mut Velocity, &mut AgentRng)>,
) {
    for (kind, params) in kinds.iter() {
        for &entity in admitted.of_kind(kind).iter() {
            if let Ok((cadence, mut velocity, mut rng)) = birds.get_mut(entity) {
                let angle = rng.unit() * std::f32::consts::TAU;
                let dt = period_secs(cadence, clock.step_ns());
                velocity.0 = Vec2::from_angle(angle) * (params.step / dt);
            }
        }
    }
}

fn period_secs(cadence: &Cadence, step_ns: u64) -> f32 {
    cadence.rate.period_ns(step_ns) as f32 * 1e-9
}

/// Steers every due bird from the flock as it was at the start of the step.
///
/// The flock is read into arrays sorted by grid cell (with the due birds'
/// random draws, from their own generators); the due birds are steered in that
/// order, in parallel, so that neighbours' data is read from memory near
/// the last bird's; each due bird then takes its new position and step.
fn steer(
    kinds: Res<KindParams<FlockingParams>>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    map: Res<WorldMap>,
    load: Res<ThreadLoad>,
    mut tuner: Local<BatchTuner>,
    mut flock: Local<Flock>,
    mut moves: Local<Vec<Move>>,
    mut birds: Query<(
        Entity,
        &Agent,
        &Cadence,
        &mut Position,
        &mut Velocity,
        &mut AgentRng,
    )>,
) {
    if kinds.is_empty() || kinds.iter().all(|(kind, _)| due.of_kind(kind).is_empty()) {
        return;
    }
    let step_ns = clock.step_ns();
    let reach = kinds.iter().map(|(_, p)| p.radius).fold(0.0, f32::max);
    let flock = &mut *flock;
    // Which entities are due, by entity index.
    flock.due.clear();
    for (kind, _) in kinds.iter() {
        for &entity in due.of_kind(kind).iter() {
            let i = entity.index_u32() as usize;
            if flock.due.len() <= i {
                flock.due.resize(i + 1, false);
            }
            flock.due[i] = true;
        }
    }
    let due_flags = std::mem::take(&mut flock.due);
    flock.rebuild(
        map.size(),
        reach,
        birds
            .iter_mut()
            .filter_map(|(entity, agent, cadence, pos, vel, mut rng)| {
                kinds.get(agent.kind)?;
                let due = due_flags
                    .get(entity.index_u32() as usize)
                    .copied()
                    .unwrap_or(false);
                let random = if due {
                    Some(Vec2::new(rng.signed(), rng.signed()))
                } else {
                    None
                };
                Some(Bird {
                    entity,
                    kind: agent.kind,
                    id: agent.id,
                    pos: pos.0,
                    heading: vel.0 * period_secs(cadence, step_ns),
                    random,
                })
            }),
    );
    flock.due = due_flags;
    // The due birds in cell order, steered in parallel.
    moves.clear();
    moves.extend(flock.due_slots.iter().map(|&slot| Move {
        slot,
        to: Vec2::ZERO,
        step: Vec2::ZERO,
    }));
    let flock = &*flock;
    let kinds = &*kinds;
    continuum::parallel::for_each_chunk(&mut moves, &load, |m| {
        let k = m.slot as usize;
        let bird = &flock.birds[k];
        let Some(params) = kinds.get(bird.kind) else {
            return;
        };
        let pos = Vec2::new(flock.x[k], flock.y[k]);
        let heading = Vec2::new(flock.hx[k], flock.hy[k]);
        let (to, step) = flock.steer(
            bird.id,
            pos,
            heading,
            bird.random.unwrap_or_default(),
            params,
        );
        m.to = to;
        m.step = step;
    });
    // Each due bird's slot, by entity index, then the moves taken.
    let place = flock_place(&moves, flock);
    for (kind, _) in kinds.iter() {
        for_each_due(&mut birds, due.of_kind(kind), &mut tuner, &load, |item| {
            let (entity, _, cadence, mut pos, mut vel, _) = item;
            let Some(&i) = place.get(entity.index_u32() as usize) else {
                return;
            };
            let Some(m) = moves.get(i as usize) else {
                return;
            };
            let dt = period_secs(cadence, step_ns);
            pos.0 = m.to;
            vel.0 = m.step / dt;
        });
    }
}

/// Where each due bird's move is in `moves`, by entity index.
fn flock_place(moves: &[Move], flock: &Flock) -> Vec<u32> {
    let mut place = Vec::new();
    for (i, m) in moves.iter().enumerate() {
        let e = flock.birds[m.slot as usize].entity.index_u32() as usize;
        if place.len() <= e {
            place.resize(e + 1, u32::MAX);
        }
        place[e] = i as u32;
    }
    place
}

/// A due bird's new position and step, for the bird in `slot` of the flock.
#[derive(Clone, Copy)]
struct Move {
    slot: u32,
    to: Vec2,
    step: Vec2,
}

/// A bird as the flock reads it.
#[derive(Clone, Copy)]
struct Bird {
    entity: Entity,
    kind: AgentKind,
    id: AgentId,
    pos: Vec2,
    heading: Vec2,
    /// Its random draw, if it is due.
    random: Option<Vec2>,
}

/// The flock at the start of a step, sorted by grid cell: the birds of cell
/// `c` are `start[c]..start[c + 1]` of the arrays.
#[derive(Default)]
struct Flock {
    size: Vec2,
    /// Cells along x and y; 0 when the world is too small for a grid of
    /// three cells a side (every bird then looks at every other).
    cells: (usize, usize),
    inv_cell: Vec2,
    start: Vec<u32>,
    x: Vec<f32>,
    y: Vec<f32>,
    hx: Vec<f32>,
    hy: Vec<f32>,
    id: Vec<AgentId>,
    /// The birds, in the arrays' order.
    birds: Vec<Bird>,
    /// The slots of the due birds, in order.
    due_slots: Vec<u32>,
    /// Whether each entity is due, by entity index (kept for its room).
    due: Vec<bool>,
    /// The birds in the order they were read, with their cells.
    read: Vec<(u32, Bird)>,
}

impl Flock {
    /// Sorts the birds into the grid, keeping the order they come in within
    /// a cell.
    fn rebuild(&mut self, size: Vec2, reach: f32, birds: impl Iterator<Item = Bird>) {
        self.size = size;
        let along = |side: f32| (side / reach).floor() as usize;
        let (gx, gy) = (along(size.x), along(size.y));
        self.cells = if gx >= 3 && gy >= 3 { (gx, gy) } else { (1, 1) };
        let (gx, gy) = self.cells;
        self.inv_cell = Vec2::new(gx as f32 / size.x, gy as f32 / size.y);
        self.start.clear();
        self.start.resize(gx * gy + 1, 0);
        self.read.clear();
        for bird in birds {
            let cell = self.cell_of(bird.pos);
            self.start[cell + 1] += 1;
            self.read.push((cell as u32, bird));
        }
        for c in 0..gx * gy {
            self.start[c + 1] += self.start[c];
        }
        let n = self.read.len();
        // LANES more at the end, far from everything: full-width loads past
        // the last bird read birds no one counts.
        for v in [&mut self.x, &mut self.y] {
            v.clear();
            v.resize(n + LANES, FAR);
        }
        for v in [&mut self.hx, &mut self.hy] {
            v.clear();
            v.resize(n + LANES, 0.0);
        }
        self.id.clear();
        self.id.resize(n, AgentId(0));
        self.birds.clear();
        if let Some(&(_, first)) = self.read.first() {
            self.birds.resize(n, first);
        }
        let mut next = self.start[..gx * gy].to_vec();
        for &(cell, bird) in &self.read {
            let k = next[cell as usize] as usize;
            next[cell as usize] += 1;
            self.x[k] = bird.pos.x;
            self.y[k] = bird.pos.y;
            self.hx[k] = bird.heading.x;
            self.hy[k] = bird.heading.y;
            self.id[k] = bird.id;
            self.birds[k] = bird;
        }
        self.due_slots.clear();
        self.due_slots.extend(
            self.birds
                .iter()
                .enumerate()
                .filter(|(_, b)| b.random.is_some())
                .map(|(k, _)| k as u32),
        );
    }

    fn cell_of(&self, pos: Vec2) -> usize {
        let (gx, gy) = self.cells;
        let cx = ((pos.x * self.inv_cell.x) as usize).min(gx - 1);
        let cy = ((pos.y * self.inv_cell.y) as usize).min(gy - 1);
        cy * gx + cx
    }

    /// Calls `f` with the offset to `pos` from each bird that may be within
    /// the grid's reach of it (the shortest way round the world) and the
    /// bird's place in the arrays, in a fixed order: the 3 x 3 cells around
    /// `pos`, each in its stored order.
    #[inline(always)]
    fn for_each_near(&self, pos: Vec2, mut f: impl FnMut(Vec2, usize)) {
        let (gx, gy) = self.cells;
        if (gx, gy) == (1, 1) {
            // A small world: everyone, the shortest way round.
            let half = self.size * 0.5;
            for k in 0..self.id.len() {
                let mut d = pos - Vec2::new(self.x[k], self.y[k]);
                d -= self.size * Vec2::new(wrap_sign(d.x, half.x), wrap_sign(d.y, half.y));
                f(d, k);
            }
            return;
        }
        let cell = self.cell_of(pos);
        let (cx, cy) = ((cell % gx) as isize, (cell / gx) as isize);
        for dy in -1isize..=1 {
            let (ry, oy) = wrapped(cy + dy, gy, self.size.y);
            for dx in -1isize..=1 {
                let (rx, ox) = wrapped(cx + dx, gx, self.size.x);
                let c = ry * gx + rx;
                let (k0, k1) = (self.start[c] as usize, self.start[c + 1] as usize);
                let (px, py) = (pos.x - ox, pos.y - oy);
                for k in k0..k1 {
                    f(Vec2::new(px - self.x[k], py - self.y[k]), k);
                }
            }
        }
    }

    /// What a bird at `pos` whose last step was `heading` sums over the birds
    /// within `sqrt(r2)` of it (itself left out), from the 3 x 3 cells around
    /// it: each row of cells is one run of the arrays (two at the world's
    /// seam), summed `LANES` birds at a time without branches, then the lanes
    /// in a fixed order. The bird is counted in its own cell and taken out
    /// after.
    fn sums_near(&self, pos: Vec2, heading: Vec2, r2: f32) -> Sums {
        let (gx, gy) = self.cells;
        let mut lanes = Lanes::default();
        let cell = self.cell_of(pos);
        let (cx, cy) = ((cell % gx) as isize, (cell / gx) as isize);
        let gxi = gx as isize;
        for dy in -1isize..=1 {
            let (ry, oy) = wrapped(cy + dy, gy, self.size.y);
            let row = ry * gx;
            let py = pos.y - oy;
            let mut run = |a: isize, b: isize, ox: f32| {
                let k0 = self.start[row + a as usize] as usize;
                let k1 = self.start[row + b as usize + 1] as usize;
                self.accumulate(&mut lanes, k0, k1, pos.x - ox, py, r2);
            };
            if cx == 0 {
                run(gxi - 1, gxi - 1, -self.size.x);
                run(0, 1, 0.0);
            } else if cx == gxi - 1 {
                run(cx - 1, gxi - 1, 0.0);
                run(0, 0, self.size.x);
            } else {
                run(cx - 1, cx + 1, 0.0);
            }
        }
        let sum = |v: &[f32; LANES]| v.iter().fold(0.0f32, |a, &b| a + b);
        Sums {
            n: sum(&lanes.n) - 1.0,
            offset: Vec2::new(sum(&lanes.ox), sum(&lanes.oy)),
            away: Vec2::new(sum(&lanes.ax), sum(&lanes.ay)),
            heading: Vec2::new(sum(&lanes.hx), sum(&lanes.hy)) - heading,
        }
    }

    /// Adds the birds `k0..k1` within `sqrt(r2)` of `(px, py)` to `lanes`.
    #[inline(always)]
    fn accumulate(&self, lanes: &mut Lanes, k0: usize, k1: usize, px: f32, py: f32, r2: f32) {
        let mut k = k0;
        while k < k1 {
            let rem = (k1 - k).min(LANES);
            let xs: &[f32; LANES] = self.x[k..k + LANES].try_into().expect("padded");
            let ys: &[f32; LANES] = self.y[k..k + LANES].try_into().expect("padded");
            let hxs: &[f32; LANES] = self.hx[k..k + LANES].try_into().expect("padded");
            let hys: &[f32; LANES] = self.hy[k..k + LANES].try_into().expect("padded");
            for l in 0..LANES {
                let dx = px - xs[l];
                let dy = py - ys[l];
                let d2 = dx * dx + dy * dy;
                // All ones or all zeros, applied with bit operations so that
                // the loop vectorises.
                let ok = u32::from(l < rem) & u32::from(d2 < r2);
                let mask = 0u32.wrapping_sub(ok);
                let keep = |v: f32| f32::from_bits(v.to_bits() & mask);
                let inv = 1.0 / (d2 * d2 + 1.0);
                lanes.n[l] += keep(1.0);
                lanes.ox[l] += keep(dx);
                lanes.oy[l] += keep(dy);
                lanes.ax[l] += keep(dx * inv);
                lanes.ay[l] += keep(dy * inv);
                lanes.hx[l] += keep(hxs[l]);
                lanes.hy[l] += keep(hys[l]);
            }
            k += LANES;
        }
    }

    /// The bird `me` at `pos` with last step `heading`: where it goes and its
    /// step. `random` is a draw in `[-1, 1)²` from its own generator.
    fn steer(
        &self,
        me: AgentId,
        pos: Vec2,
        heading: Vec2,
        random: Vec2,
        p: &FlockingParams,
    ) -> (Vec2, Vec2) {
        let r2 = p.radius * p.radius;
        let sums = if self.cells == (1, 1) {
            let mut sums = Sums::default();
            self.for_each_near(pos, |d, k| {
                sums.add(d, r2, self.id[k] != me, self.hx[k], self.hy[k]);
            });
            sums
        } else {
            self.sums_near(pos, heading, r2)
        };
        let mut urge = p.momentum * heading;
        if sums.n > 0.0 {
            let inv = 1.0 / sums.n;
            urge += p.avoidance * 400.0 * sums.away * inv;
            urge += p.cohesion * -(sums.offset * inv) / 10.0;
            let scale = match p.consistency_scale {
                ConsistencyScale::Mean => inv,
                ConsistencyScale::MeanPerNeighbour => inv * inv,
            };
            urge += p.consistency * sums.heading * scale;
        }
        let random_len = random.length();
        if random_len > 0.0 {
            urge += p.randomness * 0.05 * random / random_len;
        }
        let len = urge.length();
        let step = if len > 0.0 { urge / len * p.step } else { urge };
        let mut to = pos + step;
        for (v, side) in [(&mut to.x, self.size.x), (&mut to.y, self.size.y)] {
            if *v < 0.0 {
                *v += side;
            }
            if *v >= side {
                *v -= side;
            }
        }
        (to, step)
    }
}

/// A neighbour cell index `c` wrapped into `0..g`, and the offset of the
/// world's copy it stands for.
fn wrapped(c: isize, g: usize, side: f32) -> (usize, f32) {
    if c < 0 {
        ((c + g as isize) as usize, -side)
    } else if c >= g as isize {
        ((c - g as isize) as usize, side)
    } else {
        (c as usize, 0.0)
    }
}

/// -1, 0 or 1: which way an offset of `d` is shorter round a side of `2 half`.
fn wrap_sign(d: f32, half: f32) -> f32 {
    if d > half {
        1.0
    } else if d < -half {
        -1.0
    } else {
        0.0
    }
}

/// Birds summed at a time.
const LANES: usize = 8;

/// Where the padding past the last bird stands: its offset from any bird
/// squares to infinity, never within a radius.
const FAR: f32 = 1.0e30;

/// Per-lane sums of [`Flock::accumulate`].
#[derive(Default)]
struct Lanes {
    n: [f32; LANES],
    ox: [f32; LANES],
    oy: [f32; LANES],
    ax: [f32; LANES],
    ay: [f32; LANES],
    hx: [f32; LANES],
    hy: [f32; LANES],
}

/// What a bird sums over its neighbours.
#[derive(Default)]
struct Sums {
    n: f32,
    offset: Vec2,
    away: Vec2,
    heading: Vec2,
}

impl Sums {
    #[inline(always)]
    fn add(&mut self, d: Vec2, r2: f32, other: bool, hx: f32, hy: f32) {
        let d2 = d.length_squared();
        if d2 < r2 && other {
            self.n += 1.0;
            self.offset += d;
            self.away += d / (d2 * d2 + 1.0);
            self.heading += Vec2::new(hx, hy);
        }
    }
}

/// The birds' unit headings with their ids and positions, in id order.
fn unit_headings(world: &mut World) -> Vec<(AgentId, Vec2, Vec2)> {
    let Some(kinds) = world.get_resource::<KindParams<FlockingParams>>() else {
        return Vec::new();
    };
    let kinds: Vec<AgentKind> = kinds.iter().map(|(k, _)| k).collect();
    let mut birds = world.query::<(&Agent, &Position, &Velocity)>();
    let mut out: Vec<_> = birds
        .iter(world)
        .filter(|(agent, _, vel)| kinds.contains(&agent.kind) && vel.0 != Vec2::ZERO)
        .map(|(agent, pos, vel)| (agent.id, pos.0, vel.0.normalize()))
        .collect();
    out.sort_unstable_by_key(|b| b.0);
    out
}

/// How aligned the whole flock is: the length of the mean of the birds' unit
/// headings, from 0 (every way) to 1 (all one way). Birds that have not moved
/// are left out; 0 without birds. Separate flocks heading different ways keep
/// it low: see [`local_polarization`] for how aligned birds are with their
/// neighbours.
pub fn polarization(world: &mut World) -> f32 {
    let birds = unit_headings(world);
    let sum: Vec2 = birds.iter().map(|b| b.2).sum();
    if birds.is_empty() {
        0.0
    } else {
        sum.length() / birds.len() as f32
    }
}

/// How aligned birds are with the birds within `radius` of them: for each
/// bird, the length of the mean unit heading of it and its neighbours (the
/// shortest way round the world); the mean over birds. From about
/// `1/sqrt(neighbours)` for random headings to 1 inside aligned flocks.
pub fn local_polarization(world: &mut World, radius: f32) -> f32 {
    let size = world.resource::<WorldMap>().size();
    let birds = unit_headings(world);
    if birds.is_empty() {
        return 0.0;
    }
    let mut flock = Flock::default();
    flock.rebuild(
        size,
        radius,
        birds.iter().map(|&(id, pos, heading)| Bird {
            entity: Entity::PLACEHOLDER,
            kind: AgentKind(0),
            id,
            pos,
            heading,
            random: None,
        }),
    );
    let r2 = radius * radius;
    let mut total = 0.0f64;
    for &(_, pos, own) in &birds {
        let mut sum = own;
        flock.for_each_near(pos, |d, k| {
            if d.length_squared() < r2 && d != Vec2::ZERO {
                sum += Vec2::new(flock.hx[k], flock.hy[k]);
            }
        });
        let mut n = 1.0f32;
        flock.for_each_near(pos, |d, _| {
            if d.length_squared() < r2 && d != Vec2::ZERO {
                n += 1.0;
            }
        });
        total += f64::from(sum.length() / n);
    }
    (total / birds.len() as f64) as f32
}
