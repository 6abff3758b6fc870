//! Schelling's segregation model: residents of two (or more) kinds on a grid,
//! each content while at least a share `similar_wanted` of its occupied
//! neighbours (the eight cells around it, round the torus) are of its kind.
//! A discontented resident moves to a random empty cell.
//!
//! Moving is an action on the engine's conflict resolver: a due, discontented
//! resident emits an [`Action`] on [`Target::Cell`] of the cell it picked,
//! so two residents that want the same cell in one step conflict and the
//! scenario's strategy picks the one who moves; the other stays and tries
//! again at its next tick. Residents decide from the grid as it was at the
//! start of the step, and only winners move, into cells that were empty then,
//! so the result does not depend on thread count or update order.
//!
//! A kind is a group of residents: a scenario gives each kind
//! `behaviour: Model(name: "schelling", params: (similar_wanted: 0.375))`,
//! and the world's size (in whole cells) is the grid. Residents keep their own
//! tick rates: at 1 Hz on a 10 Hz clock a tenth of them look around each step.
//!
//! The [`SchellingGrid`] resource holds the grid; its
//! [`segregation`](SchellingGrid::segregation) is the mean share of a
//! resident's neighbours that are of its kind, the index the model is known
//! for raising.

use bevy_app::prelude::*;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use serde::{Deserialize, Serialize};

use continuum::LearnSystems;
use continuum::action::{Action, ActionKind, ActionResult, Outcome, Target};
use continuum::agent::Admitted;
use continuum::checkpoint::CheckpointAppExt;
use continuum::config::Validator;
use continuum::parallel::{BatchTuner, ThreadLoad, for_each_due_into};
use continuum::prelude::*;

use crate::grid::Torus;

/// Parameters of a Schelling kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchellingParams {
    /// The least share of occupied neighbours of its own kind a resident is
    /// content with, in `[0, 1]`. Mesa's default (3 of 8 neighbours).
    pub similar_wanted: f32,
}

impl Default for SchellingParams {
    fn default() -> Self {
        Self {
            similar_wanted: 0.375,
        }
    }
}

impl BehaviourParams for SchellingParams {
    const NAME: &'static str = "schelling";

    fn validate(&self, v: &mut Validator) {
        let share = self.similar_wanted;
        v.check((0.0..=1.0).contains(&share), "similar_wanted", || {
            format!("expected a share in [0, 1], got {share}")
        });
    }
}

/// The [`ActionKind::Custom`] code of a move.
pub const MOVE: u32 = 0x5348; // "SH"

/// Where a resident lives: its cell in the [`SchellingGrid`], or
/// [`NOWHERE`](Self::NOWHERE) before it settles (residents are spawned with
/// it and given a cell when they are admitted).
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resident {
    pub cell: u32,
}

impl Resident {
    /// No cell: not settled yet, or no room was found.
    pub const NOWHERE: Resident = Resident { cell: u32::MAX };

    /// Whether it has a cell.
    pub fn settled(&self) -> bool {
        *self != Self::NOWHERE
    }
}

/// The grid: who lives where, and which cells are empty. Its geometry (cells,
/// coordinates, centres, round the torus) is the [`Torus`] it derefs to.
#[derive(Resource, Clone, Debug, Default, Serialize, Deserialize)]
pub struct SchellingGrid {
    torus: Torus,
    /// Each cell's resident's kind, or [`EMPTY`].
    kinds: Vec<u16>,
    /// The empty cells, in an order every run repeats (a mover's draw picks
    /// from it).
    empty: Vec<u32>,
    /// Each cell's place in `empty`, or `u32::MAX` while it is occupied.
    slot: Vec<u32>,
}

const EMPTY: u16 = u16::MAX;

impl std::ops::Deref for SchellingGrid {
    type Target = Torus;
    fn deref(&self) -> &Torus {
        &self.torus
    }
}

impl SchellingGrid {
    /// An empty grid on `torus`.
    pub fn new(torus: Torus) -> Self {
        let cells = torus.cells() as u32;
        Self {
            torus,
            kinds: vec![EMPTY; cells as usize],
            empty: (0..cells).collect(),
            slot: (0..cells).collect(),
        }
    }

    /// Cells nobody lives in.
    pub fn empty_cells(&self) -> usize {
        self.empty.len()
    }

    /// The kind of the resident of `cell`, if anyone lives there.
    pub fn resident(&self, cell: u32) -> Option<AgentKind> {
        match self.kinds[cell as usize] {
            EMPTY => None,
            kind => Some(AgentKind(kind)),
        }
    }

    /// A random empty cell, drawn from `rng`; `None` when the grid is full.
    pub fn random_empty(&self, rng: &mut AgentRng) -> Option<u32> {
        let n = self.empty.len() as u32;
        (n > 0).then(|| self.empty[rng.below(n) as usize])
    }

    fn occupy(&mut self, cell: u32, kind: AgentKind) {
        let at = self.slot[cell as usize];
        debug_assert_ne!(at, u32::MAX, "cell {cell} is taken");
        self.empty.swap_remove(at as usize);
        if let Some(&moved) = self.empty.get(at as usize) {
            self.slot[moved as usize] = at;
        }
        self.slot[cell as usize] = u32::MAX;
        self.kinds[cell as usize] = kind.0;
    }

    fn vacate(&mut self, cell: u32) {
        debug_assert_eq!(self.slot[cell as usize], u32::MAX, "cell {cell} is empty");
        self.slot[cell as usize] = self.empty.len() as u32;
        self.empty.push(cell);
        self.kinds[cell as usize] = EMPTY;
    }

    /// Of the eight cells around `cell`: how many are occupied by `kind`, and
    /// how many are occupied at all.
    pub fn neighbours(&self, cell: u32, kind: AgentKind) -> (u32, u32) {
        let (x, y) = self.coords(cell);
        let (mut same, mut occupied) = (0, 0);
        for (dx, dy) in AROUND {
            let k = self.kinds[self.cell(x + dx, y + dy) as usize];
            occupied += u32::from(k != EMPTY);
            same += u32::from(k == kind.0);
        }
        (same, occupied)
    }

    /// Whether a resident of `kind` in `cell` is content with a share
    /// `similar_wanted` of its kind (one with no neighbours is).
    pub fn content(&self, cell: u32, kind: AgentKind, similar_wanted: f32) -> bool {
        let (same, occupied) = self.neighbours(cell, kind);
        same as f32 >= similar_wanted * occupied as f32
    }

    /// The segregation index: over the residents with any neighbour, the mean
    /// share of their occupied neighbours that are of their kind (about the
    /// population's share of a kind for residents placed at random, towards 1
    /// as they sort themselves out).
    pub fn segregation(&self) -> f64 {
        let (mut sum, mut counted) = (0.0, 0u64);
        for cell in 0..self.kinds.len() as u32 {
            let Some(kind) = self.resident(cell) else {
                continue;
            };
            let (same, occupied) = self.neighbours(cell, kind);
            if occupied > 0 {
                sum += f64::from(same) / f64::from(occupied);
                counted += 1;
            }
        }
        if counted == 0 {
            0.0
        } else {
            sum / counted as f64
        }
    }
}

const AROUND: [(i32, i32); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// The Schelling behaviour: registers it, settles new residents on random
/// empty cells, lets due discontented residents ask to move and moves those
/// who won their cell.
pub struct SchellingPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl SchellingPlugin {
    /// Steps residents in `schedule` (the one Continuum's plugins step in).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Default for SchellingPlugin {
    fn default() -> Self {
        Self::new(FixedUpdate)
    }
}

impl Plugin for SchellingPlugin {
    fn build(&self, app: &mut App) {
        app.register_behaviour::<SchellingParams>()
            .spawn_kinds_with::<SchellingParams, _>(Resident::NOWHERE)
            // Checkpoints save where everyone lives.
            .checkpoint_component::<Resident>()
            .checkpoint_resource::<SchellingGrid>()
            // The messages it writes and reads, in case the app has no
            // action plugin (then nothing resolves them and nobody moves).
            .add_message::<Action>()
            .add_message::<Outcome>()
            .init_resource::<SchellingGrid>()
            .init_resource::<ThreadLoad>()
            .add_observer(leave)
            .add_systems(AgentsAdmitted, settle)
            .add_systems(
                self.schedule,
                (
                    look_around.in_set(ContinuumSystems::Act),
                    relocate.in_set(LearnSystems::Behaviours),
                ),
            );
    }
}

/// New residents, in admission order, each take a random empty cell (drawn
/// from their own generator). The grid is laid out on the first admission,
/// a cell per unit of the world's size. Residents that find no room are
/// retired, with an error.
fn settle(
    admitted: Res<Admitted>,
    kinds: Res<KindParams<SchellingParams>>,
    map: Res<WorldMap>,
    mut grid: ResMut<SchellingGrid>,
    mut pool: ResMut<AgentPool>,
    mut agents: Query<(&Agent, &mut Resident, &mut Position, &mut AgentRng)>,
) {
    if kinds.is_empty() {
        return;
    }
    if grid.cells() == 0
        && let Some(torus) = Torus::of_world(map.size(), "Schelling")
    {
        *grid = SchellingGrid::new(torus);
    }
    let mut homeless = 0u64;
    for &entity in admitted.all().iter() {
        let Ok((agent, mut resident, mut pos, mut rng)) = agents.get_mut(entity) else {
            continue;
        };
        if kinds.get(agent.kind).is_none() {
            continue;
        }
        let Some(cell) = grid.random_empty(&mut rng) else {
            homeless += 1;
            pool.retire(entity);
            continue;
        };
        grid.occupy(cell, agent.kind);
        pos.0 = grid.centre(cell);
        resident.cell = cell;
    }
    if homeless > 0 {
        tracing::error!(
            homeless,
            cells = grid.cells(),
            "more Schelling residents than grid cells: the rest were retired"
        );
    }
}

/// A retired resident's cell empties.
fn leave(ev: On<Remove<Resident>>, residents: Query<&Resident>, mut grid: ResMut<SchellingGrid>) {
    if let Ok(resident) = residents.get(ev.entity)
        && resident.settled()
    {
        grid.vacate(resident.cell);
    }
}

/// Each due resident looks at its neighbours; a discontented one picks a
/// random empty cell and asks to move there (in parallel, from the grid as it
/// was at the start of the step; the moves are written in due order).
fn look_around(
    kinds: Res<KindParams<SchellingParams>>,
    due: Res<DueAgents>,
    grid: Res<SchellingGrid>,
    load: Res<ThreadLoad>,
    mut tuner: Local<BatchTuner>,
    mut moves: Local<Vec<Option<Action>>>,
    mut residents: Query<(
        Entity,
        &Agent,
        &Cadence,
        &Position,
        &Resident,
        &mut AgentRng,
    )>,
    mut actions: MessageWriter<Action>,
) {
    let grid = &*grid;
    if grid.empty_cells() == 0 {
        return;
    }
    for (kind, params) in kinds.iter() {
        let due = due.of_kind(kind);
        if due.is_empty() {
            continue;
        }
        moves.clear();
        moves.resize(due.len(), None);
        let wanted = params.similar_wanted;
        for_each_due_into(
            &mut residents,
            due,
            &mut moves,
            &mut tuner,
            &load,
            |(entity, agent, cadence, pos, resident, mut rng), out| {
                if !resident.settled() || grid.content(resident.cell, agent.kind, wanted) {
                    return;
                }
                let Some(to) = grid.random_empty(&mut rng) else {
                    return;
                };
                let (x, y) = grid.coords(to);
                let kind = ActionKind::Custom {
                    code: MOVE,
                    value: 0.0,
                };
                *out = Some(
                    Action::new(entity, agent, cadence.due, Target::Cell { x, y }, kind)
                        .from(pos.0),
                );
            },
        );
        actions.write_batch(moves.drain(..).flatten());
    }
}

/// Residents who won the cell they asked for move into it, in the order of the
/// outcomes (the same on every run).
fn relocate(
    mut outcomes: MessageReader<Outcome>,
    kinds: Res<KindParams<SchellingParams>>,
    mut grid: ResMut<SchellingGrid>,
    mut residents: Query<(&Agent, &mut Resident, &mut Position)>,
) {
    if kinds.is_empty() {
        // No residents in this run: another model's outcomes, skipped unread.
        outcomes.clear();
        return;
    }
    for o in outcomes.read() {
        let (
            Target::Cell { x, y },
            ActionKind::Custom { code: MOVE, .. },
            ActionResult::Applied { .. },
        ) = (o.target, o.kind, o.result)
        else {
            continue;
        };
        let Ok((agent, mut resident, mut pos)) = residents.get_mut(o.entity) else {
            continue;
        };
        let to = grid.cell(x, y);
        // Empty at the start of the step, and one winner per cell: still empty.
        if grid.resident(to).is_some() {
            continue;
        }
        grid.vacate(resident.cell);
        grid.occupy(to, agent.kind);
        resident.cell = to;
        pos.0 = grid.centre(to);
    }
}
