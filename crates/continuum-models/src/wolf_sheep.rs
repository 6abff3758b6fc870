//! Wolf-sheep predation with grass (the NetLogo, Mesa and Agents.jl classic):
//! sheep and wolves walk a grid at random, spend one unit of energy each tick,
//! sheep eat grass that regrows, wolves eat sheep, both reproduce by chance
//! (halving their energy with the lamb or cub) and die when their energy runs
//! out.
//!
//! Energies are whole numbers, so the model's books balance exactly: the
//! [`EnergyLedger`] counts what came in (grass, prey), what went out
//! (metabolism, the dead), and what is on its way into the world (the
//! energy of births the pool has not admitted yet); the living animals always
//! hold the difference.
//!
//! Everything goes through the engine as a user's model would:
//! - each animal ticks at its kind's own rate and phase (`DueAgents`);
//! - **eating is an action**: a sheep asks for the grass of its cell
//!   ([`Target::Cell`]), a wolf for one sheep of its cell
//!   ([`Target::agent`]), so two sheep on one tuft, or two wolves after one
//!   sheep, conflict and the scenario's strategy picks who eats;
//! - **births and deaths go through the [`AgentPool`]**: a newborn is a
//!   request with its energy as a component of the blueprint (admitted, and
//!   queued by priority, like any agent), a death a retirement.
//!
//! Animals decide from the world as it was at the start of the step (where
//! the sheep stood, which grass had grown); every draw comes from the
//! animal's own generator, so runs repeat on any thread count.

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use continuum::LearnSystems;
use continuum::action::{Action, ActionKind, ActionResult, Outcome, Target};
use continuum::agent::Admitted;
use continuum::checkpoint::CheckpointAppExt;
use continuum::clock::SimTime;
use continuum::config::Validator;
use continuum::parallel::{BatchTuner, ThreadLoad, for_each_due_into};
use continuum::prelude::*;

use crate::grid::Torus;

/// Parameters of a sheep kind (NetLogo's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SheepParams {
    /// Energy a tuft of grass gives.
    pub gain_from_food: i32,
    /// Chance per tick of a lamb.
    pub reproduce: f32,
    /// Virtual seconds eaten grass takes to grow back.
    pub grass_regrowth: f64,
}

impl Default for SheepParams {
    fn default() -> Self {
        Self {
            gain_from_food: 4,
            reproduce: 0.04,
            grass_regrowth: 30.0,
        }
    }
}

/// Parameters of a wolf kind (NetLogo's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WolfParams {
    /// Energy a sheep gives.
    pub gain_from_food: i32,
    /// Chance per tick of a cub.
    pub reproduce: f32,
}

impl Default for WolfParams {
    fn default() -> Self {
        Self {
            gain_from_food: 20,
            reproduce: 0.05,
        }
    }
}

/// Most energy a meal may give: sums over a long run stay far from overflow.
const MAX_GAIN: i32 = 1_000_000;

fn check_common(v: &mut Validator, gain: i32, reproduce: f32) {
    v.check((1..=MAX_GAIN).contains(&gain), "gain_from_food", || {
        format!("expected a whole energy in [1, {MAX_GAIN}], got {gain}")
    });
    v.check((0.0..=1.0).contains(&reproduce), "reproduce", || {
        format!("expected a chance in [0, 1], got {reproduce}")
    });
}

impl BehaviourParams for SheepParams {
    const NAME: &'static str = "sheep";

    fn validate(&self, v: &mut Validator) {
        check_common(v, self.gain_from_food, self.reproduce);
        let regrowth = self.grass_regrowth;
        v.check(
            regrowth.is_finite() && (0.0..=1.0e6).contains(&regrowth),
            "grass_regrowth",
            || format!("expected virtual seconds in [0, 1000000], got {regrowth}"),
        );
    }
}

impl BehaviourParams for WolfParams {
    const NAME: &'static str = "wolf";

    fn validate(&self, v: &mut Validator) {
        check_common(v, self.gain_from_food, self.reproduce);
    }
}

/// The [`ActionKind::Custom`] code of a sheep eating grass.
pub const GRAZE: u32 = 0x5753_0001;
/// The [`ActionKind::Custom`] code of a wolf eating a sheep.
pub const HUNT: u32 = 0x5753_0002;

/// An animal's energy. `alive` turns false the moment it dies (it retires at
/// the end of the step). Animals are spawned [`UNBORN`](Self::UNBORN) and
/// come alive when they are admitted (a newborn's blueprint gives its
/// energy).
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Animal {
    pub energy: i32,
    pub alive: bool,
}

impl Animal {
    /// Not arrived yet: no energy, not alive.
    pub const UNBORN: Animal = Animal {
        energy: 0,
        alive: false,
    };
}

/// The energy books: the living animals hold exactly
/// [`expected_living`](Self::expected_living).
#[derive(Resource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnergyLedger {
    /// Energy the first animals were given.
    pub initial: i64,
    /// Energy sheep took from grass.
    pub from_grass: i64,
    /// Energy wolves took from sheep.
    pub from_prey: i64,
    /// Energy spent living (one unit per tick).
    pub spent: i64,
    /// Energy the dead held when they died (starved or eaten) or left.
    pub died_with: i64,
    /// Energy of newborns requested from the pool and not yet admitted.
    pub unborn: i64,
    /// Animals born (admitted), starved, eaten, and retired alive by others.
    pub born: u64,
    pub starved: u64,
    pub eaten: u64,
    pub left: u64,
    /// Meals asked for: tufts of grass by sheep, sheep by wolves.
    pub grazes_asked: u64,
    pub hunts_asked: u64,
}

impl EnergyLedger {
    /// What the living animals must hold between them.
    pub fn expected_living(&self) -> i64 {
        self.initial + self.from_grass + self.from_prey - self.spent - self.died_with - self.unborn
    }
}

/// The grid: when each cell's grass is (or was) grown, and where the sheep
/// stood at the start of the step.
/// Its geometry is the [`Torus`] it derefs to.
#[derive(Resource, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pasture {
    torus: Torus,
    /// The virtual time each cell's grass is grown from.
    grown_at: Vec<SimTime>,
    /// The living sheep at the start of the step: (cell, id, entity), sorted
    /// (made again every step, so not checkpointed).
    #[serde(skip)]
    flock: Vec<(u32, AgentId, Entity)>,
}

impl std::ops::Deref for Pasture {
    type Target = Torus;
    fn deref(&self) -> &Torus {
        &self.torus
    }
}

impl Pasture {
    /// Cells in all (0 before the pasture is laid out).
    pub fn cells(&self) -> usize {
        self.grown_at.len()
    }

    /// Whether `cell`'s grass is grown at `now`.
    pub fn grown(&self, cell: u32, now: SimTime) -> bool {
        self.grown_at[cell as usize] <= now
    }

    /// Cells whose grass is grown at `now`.
    pub fn grown_cells(&self, now: SimTime) -> usize {
        self.grown_at.iter().filter(|&&t| t <= now).count()
    }

    /// The sheep that stood in `cell` at the start of the step.
    fn sheep_in(&self, cell: u32) -> &[(u32, AgentId, Entity)] {
        let from = self.flock.partition_point(|s| s.0 < cell);
        let to = self.flock.partition_point(|s| s.0 <= cell);
        &self.flock[from..to]
    }
}

/// The wolf-sheep behaviours: registers them, places the first animals and
/// gives them energy, lets due animals walk, live, breed, die and ask to eat,
/// and feeds those who won their meal.
pub struct WolfSheepPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl WolfSheepPlugin {
    /// Steps animals in `schedule` (the one Continuum's plugins step in).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for WolfSheepPlugin {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl Plugin for WolfSheepPlugin {
    fn build(&self, app: &mut App) {
        app.register_behaviour::<SheepParams>()
            .spawn_kinds_with::<SheepParams, _>(Animal::UNBORN)
            .spawn_kinds_with::<WolfParams, _>(Animal::UNBORN)
            // Checkpoints save the animals, the grass and the books.
            .checkpoint_component::<Animal>()
            .checkpoint_resource::<Pasture>()
            .checkpoint_resource::<EnergyLedger>()
            // The messages it writes and reads, in case the app has no
            // action plugin (then nothing resolves them and nobody moves).
            .add_message::<Action>()
            .add_message::<Outcome>()
            .register_behaviour::<WolfParams>()
            .init_resource::<Pasture>()
            .init_resource::<EnergyLedger>()
            .init_resource::<ThreadLoad>()
            .add_observer(leave)
            .add_systems(AgentsAdmitted, arrive)
            .add_systems(
                self.schedule,
                (
                    live.in_set(ContinuumSystems::Act),
                    feed.in_set(LearnSystems::Behaviours),
                ),
            );
    }
}

/// Lays the pasture out on the first admission (a cell per unit of the
/// world; half the cells grown, the others growing back at a time drawn from
/// the seed and the cell). The first animals take a random cell and a random
/// energy below twice their gain from food (NetLogo's start); newborns arrive
/// with their energy and their parent's cell.
fn arrive(
    admitted: Res<Admitted>,
    sheep: Res<KindParams<SheepParams>>,
    wolves: Res<KindParams<WolfParams>>,
    map: Res<WorldMap>,
    seed: Res<SimSeed>,
    clock: Res<SimClock>,
    mut pasture: ResMut<Pasture>,
    mut ledger: ResMut<EnergyLedger>,
    mut pool: ResMut<AgentPool>,
    mut animals: Query<(&Agent, &mut Animal, &mut Position, &mut AgentRng)>,
) {
    if sheep.is_empty() && wolves.is_empty() {
        return;
    }
    if pasture.cells() == 0
        && let Some(torus) = Torus::of_world(map.size(), "wolf-sheep")
    {
        let regrowth = sheep
            .iter()
            .map(|(_, p)| p.grass_regrowth)
            .fold(0.0, f64::max);
        let now = clock.now();
        let grown_at = (0..torus.cells() as u64)
            .map(|cell| {
                let h = continuum::hash::mix(seed.0 ^ 0x0067_7261_7373, cell);
                if h & 1 == 0 {
                    now
                } else {
                    let wait = continuum::hash::unit_f64(h) * regrowth;
                    now + (wait * 1e9) as SimTime
                }
            })
            .collect();
        *pasture = Pasture {
            torus,
            grown_at,
            flock: Vec::new(),
        };
    }
    for &entity in admitted.all().iter() {
        let Ok((agent, mut animal, mut pos, mut rng)) = animals.get_mut(entity) else {
            continue;
        };
        let gain = match (sheep.get(agent.kind), wolves.get(agent.kind)) {
            (Some(p), _) => p.gain_from_food,
            (_, Some(p)) => p.gain_from_food,
            _ => continue,
        };
        if pasture.cells() == 0 {
            pool.retire(entity);
            continue;
        }
        if animal.alive {
            // A newborn (its blueprint gave its energy): the energy was
            // counted as unborn when its parent asked for it.
            ledger.unborn -= i64::from(animal.energy);
            ledger.born += 1;
        } else {
            let energy = rng.below(2 * gain as u32) as i32;
            ledger.initial += i64::from(energy);
            let (w, h) = (pasture.width() as f32, pasture.height() as f32);
            pos.0 = pasture.wrap(Vec2::new(rng.unit() * w, rng.unit() * h));
            *animal = Animal {
                energy,
                alive: true,
            };
        }
    }
}

/// An animal that leaves alive (retired by a game, or at the end of a
/// lifetime) takes its energy out of the books; the model's own deaths were
/// counted when they happened.
fn leave(ev: On<Remove<Animal>>, animals: Query<&Animal>, mut ledger: ResMut<EnergyLedger>) {
    if let Ok(animal) = animals.get(ev.entity)
        && animal.alive
    {
        ledger.died_with += i64::from(animal.energy);
        ledger.left += 1;
    }
}

/// What a due animal did in its tick, for the serial pass that follows.
#[derive(Clone, Copy, Default)]
struct Tick {
    /// It lived through its tick (and spent a unit of energy).
    lived: bool,
    /// The energy it died with, if it started its tick starved.
    starved: Option<i32>,
    /// The energy of the young it had.
    young: Option<i32>,
    /// Where it stands (the young start there).
    at: Vec2,
    /// The meal it asks for.
    meal: Option<Action>,
}

/// What a kind eats.
#[derive(Clone, Copy)]
enum Diet {
    Grass,
    Sheep,
}

/// Each due animal, in its tick: dies if its energy ran out (below zero
/// after its last tick and meal: NetLogo's check at the end of a tick), else
/// walks to a random neighbouring cell, spends a unit of energy, has young
/// by chance (giving them half its energy), and asks for a meal in its new
/// cell: the grass if it is grown (sheep), or one of the sheep that stood
/// there at the start of the step (wolves). Runs in parallel; births, deaths
/// and meals are handed on in due order.
fn live(
    sheep_kinds: Res<KindParams<SheepParams>>,
    wolf_kinds: Res<KindParams<WolfParams>>,
    due: Res<DueAgents>,
    clock: Res<SimClock>,
    archetypes: Res<Archetypes>,
    load: Res<ThreadLoad>,
    mut pasture: ResMut<Pasture>,
    mut ledger: ResMut<EnergyLedger>,
    mut pool: ResMut<AgentPool>,
    mut tuner: Local<BatchTuner>,
    mut ticks: Local<Vec<Tick>>,
    mut animals: Query<(
        Entity,
        &Agent,
        &Cadence,
        &mut Position,
        &mut Velocity,
        &mut Animal,
        &mut AgentRng,
    )>,
    mut actions: MessageWriter<Action>,
) {
    if pasture.cells() == 0 {
        return;
    }
    let now = clock.now();
    // Where the sheep stand before anyone moves, if a wolf will look.
    if wolf_kinds
        .iter()
        .any(|(kind, _)| !due.of_kind(kind).is_empty())
    {
        let mut list = std::mem::take(&mut pasture.flock);
        list.clear();
        list.extend(
            animals
                .iter()
                .filter(|(_, a, _, _, _, animal, _)| {
                    animal.alive && sheep_kinds.get(a.kind).is_some()
                })
                .map(|(e, a, _, p, _, _, _)| (pasture.cell_of(p.0), a.id, e)),
        );
        list.sort_unstable_by_key(|&(cell, id, _)| (cell, id));
        pasture.flock = list;
    }
    let pasture = &*pasture;
    let sheep = sheep_kinds
        .iter()
        .map(|(kind, p)| (kind, Diet::Grass, p.reproduce));
    let wolves = wolf_kinds
        .iter()
        .map(|(kind, p)| (kind, Diet::Sheep, p.reproduce));
    for (kind, diet, reproduce) in sheep.chain(wolves) {
        let due = due.of_kind(kind);
        if due.is_empty() {
            continue;
        }
        ticks.clear();
        ticks.resize(due.len(), Tick::default());
        for_each_due_into(
            &mut animals,
            due,
            &mut ticks,
            &mut tuner,
            &load,
            |(entity, agent, cadence, mut pos, mut vel, mut animal, mut rng), tick| {
                if !animal.alive {
                    return;
                }
                if animal.energy < 0 {
                    animal.alive = false;
                    tick.starved = Some(animal.energy);
                    return;
                }
                tick.lived = true;
                // NetLogo's walk: turn right up to 49 degrees and left up to
                // 49, step forward one unit (newborns first face anywhere).
                let mut angle = vel.0.to_angle();
                if vel.0 == Vec2::ZERO {
                    angle = rng.unit() * std::f32::consts::TAU;
                }
                let turn = rng.below(50) as f32 - rng.below(50) as f32;
                angle += turn.to_radians();
                let heading = Vec2::from_angle(angle);
                vel.0 = heading;
                pos.0 = pasture.wrap(pos.0 + heading);
                let to = pasture.cell_of(pos.0);
                tick.at = pos.0;
                animal.energy -= 1;
                if animal.energy > 0 && rng.unit() < reproduce {
                    let young = animal.energy / 2;
                    animal.energy -= young;
                    tick.young = Some(young);
                }
                let (target, code) = match diet {
                    Diet::Grass if pasture.grown(to, now) => {
                        let (x, y) = pasture.coords(to);
                        (Target::Cell { x, y }, GRAZE)
                    }
                    Diet::Sheep => {
                        let here = pasture.sheep_in(to);
                        if here.is_empty() {
                            return;
                        }
                        let (_, prey, _) = here[rng.below(here.len() as u32) as usize];
                        (Target::agent(prey), HUNT)
                    }
                    Diet::Grass => return,
                };
                let kind = ActionKind::Custom { code, value: 0.0 };
                tick.meal = Some(Action::new(entity, agent, cadence.due, target, kind).from(pos.0));
            },
        );
        for (&entity, tick) in due.iter().zip(ticks.drain(..)) {
            if tick.lived {
                ledger.spent += 1;
            }
            if let Some(energy) = tick.starved {
                ledger.died_with += i64::from(energy);
                ledger.starved += 1;
                pool.retire(entity);
            }
            if let Some(young) = tick.young {
                ledger.unborn += i64::from(young);
                let mut blueprint = archetypes.blueprint(kind);
                blueprint.position = Some(tick.at);
                pool.request(blueprint.with(Animal {
                    energy: young,
                    alive: true,
                }));
            }
            if let Some(meal) = tick.meal {
                match diet {
                    Diet::Grass => ledger.grazes_asked += 1,
                    Diet::Sheep => ledger.hunts_asked += 1,
                }
                actions.write(meal);
            }
        }
    }
}

/// Animals that won their meal eat it, in the order of the outcomes (the same
/// on every run): a sheep takes its gain and the grass starts to grow back; a
/// wolf takes its gain and the sheep dies, unless it died earlier in the
/// step (starved, or eaten: then the meal is gone).
fn feed(
    mut outcomes: MessageReader<Outcome>,
    clock: Res<SimClock>,
    sheep_kinds: Res<KindParams<SheepParams>>,
    wolf_kinds: Res<KindParams<WolfParams>>,
    mut pasture: ResMut<Pasture>,
    mut ledger: ResMut<EnergyLedger>,
    mut pool: ResMut<AgentPool>,
    mut animals: Query<(&Agent, &Position, &mut Animal)>,
) {
    if sheep_kinds.is_empty() && wolf_kinds.is_empty() {
        // No animals in this run: another model's outcomes, skipped unread.
        outcomes.clear();
        return;
    }
    let now = clock.now();
    for o in outcomes.read() {
        let (ActionKind::Custom { code, .. }, ActionResult::Applied { .. }) = (o.kind, o.result)
        else {
            continue;
        };
        match (code, o.target) {
            (GRAZE, Target::Cell { x, y }) => {
                let Ok((agent, _, mut animal)) = animals.get_mut(o.entity) else {
                    continue;
                };
                let Some(params) = sheep_kinds.get(agent.kind) else {
                    continue;
                };
                let cell = pasture.cell(x, y);
                if !animal.alive || !pasture.grown(cell, now) {
                    continue;
                }
                animal.energy += params.gain_from_food;
                ledger.from_grass += i64::from(params.gain_from_food);
                pasture.grown_at[cell as usize] = now + (params.grass_regrowth * 1e9) as SimTime;
            }
            (HUNT, target) => {
                let Some(prey_id) = target.as_agent() else {
                    continue;
                };
                let Ok((agent, pos, animal)) = animals.get(o.entity) else {
                    continue;
                };
                let Some(params) = wolf_kinds.get(agent.kind) else {
                    continue;
                };
                if !animal.alive {
                    continue;
                }
                // The wolf asked in the cell it walked to, where it stands.
                let here = pasture.sheep_in(pasture.cell_of(pos.0));
                let Ok(at) = here.binary_search_by_key(&prey_id, |&(_, id, _)| id) else {
                    continue;
                };
                let prey = here[at].2;
                let gain = params.gain_from_food;
                let Ok((_, _, mut sheep)) = animals.get_mut(prey) else {
                    continue;
                };
                if !sheep.alive {
                    continue;
                }
                sheep.alive = false;
                ledger.died_with += i64::from(sheep.energy);
                ledger.eaten += 1;
                pool.retire(prey);
                if let Ok((_, _, mut wolf)) = animals.get_mut(o.entity) {
                    wolf.energy += gain;
                    ledger.from_prey += i64::from(gain);
                }
            }
            _ => {}
        }
    }
}
