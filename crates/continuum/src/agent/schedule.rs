use bevy_ecs::entity::{Entities, UniqueEntitySlice};
use bevy_ecs::prelude::*;

use super::AgentKind;
use crate::clock::SimTime;

/// Slots in the timing wheel. Periods longer than this many steps simply lap the
/// wheel; they stay correct and cost one extra look per lap.
const WHEEL_SLOTS: usize = 1024;

/// Emptied slot buffers the wheel keeps at most.
const SPARE_KEPT: usize = 16;

/// Laps ahead an entry in the wheel may be due in: its lap is kept modulo
/// 2^16, and an entry due further ahead (over 2^26 steps, 7.7 days at 100 Hz)
/// waits in the schedule's list of far entries until it is this close.
const LAP_SPAN: u32 = u16::MAX as u32;

/// Bytes of one agent's entry in the schedule.
pub(crate) const ENTRY_BYTES: usize = size_of::<Entry>();

/// 12 bytes: the entity, the lap of the wheel it is due in (modulo 2^16), and
/// its kind. The entity is kept as two words so that an entry needs 4-byte
/// alignment, not 8 (an `Entity` field would make it 16 bytes).
#[derive(Clone, Copy, Debug)]
struct Entry {
    entity: [u32; 2],
    lap: u16,
    kind: AgentKind,
}

impl Entry {
    fn new(entity: Entity, lap: u32, kind: AgentKind) -> Self {
        let bits = entity.to_bits();
        Self {
            entity: [bits as u32, (bits >> 32) as u32],
            lap: lap as u16,
            kind,
        }
    }

    fn entity(&self) -> Entity {
        Entity::from_bits(u64::from(self.entity[0]) | (u64::from(self.entity[1]) << 32))
    }
}

/// The lap of the wheel `step` falls in.
fn lap(step: u64) -> u32 {
    (step / WHEEL_SLOTS as u64).min(u64::from(u32::MAX)) as u32
}

/// The agents' schedule: a timing wheel keyed by step index.
///
/// Every live agent has exactly one entry, keyed by the step that contains its
/// next due time. Popping step `k` takes slot `k mod WHEEL_SLOTS`, so finding
/// the due agents costs in proportion to the agents in that slot, not to the
/// number of agents. Entries come out in the order they went in, which is the
/// same on every run.
#[derive(Resource)]
pub struct AgentSchedule {
    slots: Vec<Vec<Entry>>,
    /// Emptied slot buffers, kept for the next slot that fills: only the slots
    /// in use hold memory, however far the wheel turns.
    spare: Vec<Vec<Entry>>,
    /// Slots holding entries.
    in_use: usize,
    step_ns: u64,
    len: usize,
    /// The lap of the step popped last: entries are due in it or in the
    /// [`LAP_SPAN`] laps after it, or wait in `far`.
    lap: u32,
    /// Entries due more than [`LAP_SPAN`] laps ahead: `(entity, step, kind)`.
    far: Vec<(Entity, u64, AgentKind)>,
}

impl AgentSchedule {
    /// An empty schedule for steps of `step_ns` nanoseconds.
    pub fn new(step_ns: u64) -> Self {
        Self {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
            in_use: 0,
            step_ns,
            len: 0,
            lap: 0,
            far: Vec::new(),
        }
    }

    /// Number of scheduled entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn insert(&mut self, entity: Entity, due: SimTime, kind: AgentKind) {
        self.insert_at_step(entity, self.step_of(due), kind);
    }

    /// The step that contains virtual time `t`.
    pub(crate) fn step_of(&self, t: SimTime) -> u64 {
        t / self.step_ns
    }

    /// Schedules `entity` in `step` (as worked out by [`step_of`](Self::step_of)).
    pub(crate) fn insert_at_step(&mut self, entity: Entity, step: u64, kind: AgentKind) {
        self.len += 1;
        let lap = lap(step);
        if lap.saturating_sub(self.lap) >= LAP_SPAN {
            self.far.push((entity, step, kind));
            return;
        }
        let slot = &mut self.slots[step as usize % WHEEL_SLOTS];
        if slot.is_empty() {
            self.in_use += 1;
            if slot.capacity() == 0
                && let Some(buffer) = self.spare.pop()
            {
                *slot = buffer;
            }
        }
        if slot.len() == slot.capacity() {
            // Grown by an eighth, not doubled: a slot holds a tenth of a
            // million agents at 10 Hz, and doubling would leave up to half of
            // its room empty. A buffer the allocator maps on its own (glibc's
            // above its mmap threshold, which the `continuum` command sets to
            // 128 KiB) grows by moving its pages (`mremap`), not by a copy.
            slot.reserve_exact(slot.capacity() / 8 + 16);
        }
        slot.push(Entry::new(entity, lap, kind));
    }

    /// Moves the agents due in `step` into `due`, dropping entries of agents that
    /// no longer exist.
    pub(crate) fn pop_due(&mut self, step: u64, entities: &Entities, due: &mut DueAgents) {
        let this_lap = lap(step);
        if this_lap != self.lap {
            self.lap = this_lap;
            self.bring_near();
        }
        let due = &mut due.0;
        due.clear(step);
        let this_lap = this_lap as u16;
        let slot = &mut self.slots[step as usize % WHEEL_SLOTS];
        let mut removed = 0;
        slot.retain(|e| {
            if e.lap != this_lap {
                return true; // a later lap
            }
            removed += 1;
            let entity = e.entity();
            if entities.contains_spawned(entity) {
                due.push(entity, e.kind);
            }
            false
        });
        self.len -= removed;
        if removed > 0 && slot.is_empty() {
            self.in_use -= 1;
            // A buffer is kept for another slot only if it is not much larger
            // than a slot in use needs: a slot that held a whole class at one
            // time (before load shedding spread it) would otherwise lend its
            // room to every slot that fills after it, and the wheel would
            // grow with each lap to the largest slot's size times the slots.
            let typical = self.len / self.in_use.max(1);
            let buffer = std::mem::take(slot);
            if self.spare.len() < SPARE_KEPT && buffer.capacity() <= 2 * typical + 64 {
                self.spare.push(buffer);
            }
        }
        due.debug_check_unique();
    }

    /// Moves the far entries that are now within [`LAP_SPAN`] laps into the
    /// wheel, in the order they were scheduled.
    fn bring_near(&mut self) {
        if self.far.is_empty() {
            return;
        }
        let far = std::mem::take(&mut self.far);
        self.len -= far.len();
        for (entity, step, kind) in far {
            self.insert_at_step(entity, step, kind);
        }
    }

    /// The full lap of an entry of the wheel (see [`LAP_SPAN`]).
    fn full_lap(&self, e: &Entry) -> u32 {
        self.lap + u32::from(e.lap.wrapping_sub(self.lap as u16))
    }
}

/// An [`AgentSchedule`] as a checkpoint holds it: each slot's entries in
/// order, agents named by id.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ScheduleImage {
    step_ns: u64,
    /// `(slot, agent, lap, kind)`, slot by slot, each slot in its order.
    entries: Vec<(u16, super::AgentId, u32, AgentKind)>,
    /// The lap of the step popped last, and the entries due more than
    /// [`LAP_SPAN`] laps after it: `(agent, step, kind)`.
    lap: u32,
    far: Vec<(super::AgentId, u64, AgentKind)>,
}

impl ScheduleImage {
    /// The step length the schedule was made for.
    pub(crate) fn step_ns(&self) -> u64 {
        self.step_ns
    }
}

impl AgentSchedule {
    /// The schedule's entries for a checkpoint, agents named by `id_of`;
    /// entries of agents that are gone (and would be dropped when due) are
    /// left out.
    pub(crate) fn image(&self, id_of: impl Fn(Entity) -> Option<super::AgentId>) -> ScheduleImage {
        let mut entries = Vec::with_capacity(self.len - self.far.len());
        for (slot, list) in self.slots.iter().enumerate() {
            for e in list {
                if let Some(id) = id_of(e.entity()) {
                    entries.push((slot as u16, id, self.full_lap(e), e.kind));
                }
            }
        }
        let far = self
            .far
            .iter()
            .filter_map(|&(entity, step, kind)| Some((id_of(entity)?, step, kind)))
            .collect();
        ScheduleImage {
            step_ns: self.step_ns,
            entries,
            lap: self.lap,
            far,
        }
    }

    /// The schedule a checkpoint held, agents found by `entity_of`. Fails on
    /// an entry that names no agent or no slot, or a lap out of range.
    pub(crate) fn from_image(
        image: ScheduleImage,
        entity_of: impl Fn(super::AgentId) -> Option<Entity>,
    ) -> Result<Self, String> {
        let mut schedule = Self::new(image.step_ns.max(1));
        schedule.lap = image.lap;
        let entity = |id| {
            entity_of(id)
                .ok_or_else(|| format!("the schedule names agent {id}, which is not saved"))
        };
        for (slot, id, lap, kind) in image.entries {
            let entity = entity(id)?;
            if lap.wrapping_sub(image.lap) >= LAP_SPAN {
                return Err(format!(
                    "agent {id} is scheduled in lap {lap}, not within {LAP_SPAN} laps of lap {}",
                    image.lap
                ));
            }
            let list = schedule
                .slots
                .get_mut(usize::from(slot))
                .ok_or_else(|| format!("schedule slot {slot} out of range"))?;
            if list.is_empty() {
                schedule.in_use += 1;
            }
            list.push(Entry::new(entity, lap, kind));
            schedule.len += 1;
        }
        for (id, step, kind) in image.far {
            schedule.far.push((entity(id)?, step, kind));
            schedule.len += 1;
        }
        Ok(schedule)
    }
}

impl Default for AgentSchedule {
    fn default() -> Self {
        Self::new(crate::clock::ClockSettings::default().step_ns())
    }
}

/// A set of agents for one step: all of them, and split by kind. No entity
/// appears twice.
#[derive(Default)]
pub struct AgentLists {
    step: u64,
    all: Vec<Entity>,
    by_kind: Vec<Vec<Entity>>,
}

impl AgentLists {
    /// The step these agents belong to.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every agent.
    pub fn all(&self) -> &UniqueEntitySlice {
        // SAFETY: see `unique`.
        unsafe { unique(&self.all) }
    }

    /// The agents of one kind.
    pub fn of_kind(&self, kind: AgentKind) -> &UniqueEntitySlice {
        let list = self
            .by_kind
            .get(kind.index())
            .map_or(&[][..], Vec::as_slice);
        // SAFETY: see `unique`.
        unsafe { unique(list) }
    }

    /// Number of agents of each kind, indexed by kind.
    pub fn counts_by_kind(&self) -> impl Iterator<Item = (AgentKind, usize)> + '_ {
        self.by_kind
            .iter()
            .enumerate()
            .map(|(k, v)| (AgentKind(k as u16), v.len()))
    }

    pub(crate) fn clear(&mut self, step: u64) {
        self.step = step;
        self.all.clear();
        self.by_kind.iter_mut().for_each(Vec::clear);
    }

    /// Empties the lists and gives back what a large batch left them, keeping
    /// room for `keep` agents.
    pub(crate) fn release(&mut self, keep: usize) {
        self.all.clear();
        self.all.shrink_to(keep);
        for list in &mut self.by_kind {
            list.clear();
            list.shrink_to(keep);
        }
    }

    /// Adds an agent. Callers guarantee it is not in the lists yet.
    pub(crate) fn push(&mut self, entity: Entity, kind: AgentKind) {
        self.all.push(entity);
        if self.by_kind.len() <= kind.index() {
            self.by_kind.resize_with(kind.index() + 1, Vec::new);
        }
        self.by_kind[kind.index()].push(entity);
    }

    fn debug_check_unique(&self) {
        if cfg!(debug_assertions) {
            let mut sorted = self.all.clone();
            sorted.sort_unstable();
            let before = sorted.len();
            sorted.dedup();
            assert_eq!(before, sorted.len(), "an agent was listed twice");
        }
    }
}

/// The agents due in the current step.
///
/// Behaviour systems iterate these with
/// [`for_each_due`](crate::parallel::for_each_due), so per-step work is
/// proportional to the due agents. The order is the schedule's (deterministic);
/// results must not depend on it anyway.
#[derive(Resource, Default)]
pub struct DueAgents(pub(crate) AgentLists);

impl std::ops::Deref for DueAgents {
    type Target = AgentLists;
    fn deref(&self) -> &AgentLists {
        &self.0
    }
}

/// # Safety
/// Callers pass lists of [`AgentLists`], which never hold an entity twice:
/// - the due agents come from [`AgentSchedule::pop_due`]. Every agent has exactly
///   one schedule entry: one is inserted when the pool admits it, and the next
///   only after that one has been popped, when the agent is rescheduled. Entries
///   of despawned agents are dropped (entity generations make a reused index a
///   different entity). Debug builds check every pop.
/// - the informed agents are added once each, on their first outcome of the step.
unsafe fn unique(list: &[Entity]) -> &UniqueEntitySlice {
    // SAFETY: guaranteed unique by the caller, as documented above.
    unsafe { UniqueEntitySlice::from_slice_unchecked(list) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_come_out_in_their_step_and_long_periods_lap_the_wheel() {
        let mut world = World::new();
        let a = world.spawn_empty().id();
        let b = world.spawn_empty().id();
        let c = world.spawn_empty().id();
        let mut schedule = AgentSchedule::new(10);
        schedule.insert(a, 35, AgentKind(0)); // step 3
        schedule.insert(b, 30, AgentKind(1)); // step 3
        schedule.insert(c, 10 * (3 + WHEEL_SLOTS as u64) + 1, AgentKind(0)); // step 3, next lap
        let mut due = DueAgents::default();
        for step in 0..3 {
            schedule.pop_due(step, world.entities(), &mut due);
            assert!(due.is_empty());
        }
        schedule.pop_due(3, world.entities(), &mut due);
        assert_eq!(due.all().as_inner(), &[a, b]);
        assert_eq!(due.of_kind(AgentKind(0)).as_inner(), &[a]);
        assert_eq!(due.of_kind(AgentKind(1)).as_inner(), &[b]);
        assert_eq!(schedule.len(), 1);
        schedule.pop_due(3 + WHEEL_SLOTS as u64, world.entities(), &mut due);
        assert_eq!(due.all().as_inner(), &[c]);
        assert!(schedule.is_empty());
    }

    /// Laps are kept modulo 2^16: an agent due further ahead than that waits
    /// outside the wheel, and still comes out in its step, not in a step
    /// 2^16 laps earlier that falls in the same slot.
    #[test]
    fn an_agent_due_beyond_the_laps_the_wheel_tells_apart_comes_out_in_its_step() {
        let mut world = World::new();
        let (near, far) = (world.spawn_empty().id(), world.spawn_empty().id());
        let slots = WHEEL_SLOTS as u64;
        // Lap 5 + 2^16: lap 5 modulo 2^16.
        let far_step = (u64::from(LAP_SPAN) + 6) * slots + 3;
        let mut schedule = AgentSchedule::new(10);
        schedule.insert_at_step(far, far_step, AgentKind(1));
        schedule.insert_at_step(near, 5 * slots + 3, AgentKind(0));
        assert_eq!((schedule.len(), schedule.far.len()), (2, 1));
        let mut due = DueAgents::default();
        // Slot 3 of lap 5, whose lap is the far agent's modulo 2^16.
        schedule.pop_due(5 * slots + 3, world.entities(), &mut due);
        assert_eq!(due.all().as_inner(), &[near]);
        assert_eq!(schedule.len(), 1);
        // Once its lap is near, it is in the wheel, and due only in its step.
        schedule.pop_due(far_step - 2 * slots, world.entities(), &mut due);
        assert!(due.is_empty());
        assert!(schedule.far.is_empty());
        schedule.pop_due(far_step - slots, world.entities(), &mut due);
        assert!(due.is_empty());
        schedule.pop_due(far_step, world.entities(), &mut due);
        assert_eq!(due.all().as_inner(), &[far]);
        assert_eq!(due.of_kind(AgentKind(1)).as_inner(), &[far]);
        assert!(schedule.is_empty());
    }

    /// A checkpoint's image of a schedule gives back the same schedule: the
    /// same entries in the same slots and order, far entries included.
    #[test]
    fn a_schedule_comes_back_from_its_image() {
        let mut world = World::new();
        let agents: Vec<Entity> = (0..6).map(|_| world.spawn_empty().id()).collect();
        let slots = WHEEL_SLOTS as u64;
        let mut schedule = AgentSchedule::new(10);
        let mut due = DueAgents::default();
        schedule.pop_due(7 * slots, world.entities(), &mut due);
        let steps = [
            7 * slots + 1,
            7 * slots + 1,
            9 * slots + 1,
            8 * slots,
            7 * slots + 2,
        ];
        for (&a, &step) in agents.iter().zip(&steps) {
            schedule.insert_at_step(a, step, AgentKind(0));
        }
        let far_step = (7 + u64::from(LAP_SPAN) + 1) * slots;
        schedule.insert_at_step(agents[5], far_step, AgentKind(2));
        let id_of = |e: Entity| Some(super::super::AgentId(u64::from(e.index_u32())));
        let entity_of = |id: super::super::AgentId| {
            agents
                .iter()
                .copied()
                .find(|e| u64::from(e.index_u32()) == id.0)
        };
        let image = schedule.image(id_of);
        let mut back = AgentSchedule::from_image(image, entity_of).expect("a valid image");
        assert_eq!((back.len(), back.far.len(), back.lap), (6, 1, 7));
        for step in [
            7 * slots + 1,
            7 * slots + 2,
            8 * slots,
            9 * slots + 1,
            far_step,
        ] {
            let mut a = DueAgents::default();
            let mut b = DueAgents::default();
            schedule.pop_due(step, world.entities(), &mut a);
            back.pop_due(step, world.entities(), &mut b);
            assert!(!a.is_empty());
            assert_eq!(a.all().as_inner(), b.all().as_inner(), "step {step}");
        }
        assert!(back.is_empty());
    }

    #[test]
    fn despawned_agents_leave_the_schedule() {
        let mut world = World::new();
        let a = world.spawn_empty().id();
        let b = world.spawn_empty().id();
        let mut schedule = AgentSchedule::new(10);
        schedule.insert(a, 0, AgentKind(0));
        schedule.insert(b, 5, AgentKind(0));
        world.despawn(a);
        let mut due = DueAgents::default();
        schedule.pop_due(0, world.entities(), &mut due);
        assert_eq!(due.all().as_inner(), &[b]);
        assert!(schedule.is_empty());
    }

    /// Slots lend their buffers to the slots that fill after them, but not
    /// buffers much larger than a slot in use holds: with a few agents due
    /// often and many spread over a long period, every buffer would otherwise
    /// grow, lap after lap, to a whole step's agents, and the wheel would hold
    /// that times the slots in use.
    #[test]
    fn the_wheel_holds_about_what_its_entries_need() {
        let mut world = World::new();
        let agents: Vec<Entity> = (0..20_000).map(|_| world.spawn_empty().id()).collect();
        let mut schedule = AgentSchedule::new(10);
        let mut due = DueAgents::default();
        let held = |s: &AgentSchedule| {
            s.slots
                .iter()
                .chain(&s.spare)
                .map(Vec::capacity)
                .sum::<usize>()
        };
        // 2 000 agents due every 10 steps (200 a step), 18 000 every 1 000
        // steps (18 a step).
        for (i, &a) in agents.iter().enumerate() {
            let period = if i < 2_000 { 10 } else { 1_000 };
            schedule.insert_at_step(a, i as u64 % period, AgentKind(0));
        }
        for step in 0..3_000u64 {
            schedule.pop_due(step, world.entities(), &mut due);
            for &a in due.all().iter() {
                let period = if a.index_u32() < 2_000 { 10 } else { 1_000 };
                schedule.insert_at_step(a, step + period, AgentKind(0));
            }
        }
        assert_eq!(schedule.len(), agents.len());
        // About 1 000 slots of 18 (room for 32) and ten of 218: some 40 000
        // entries of room, where every buffer at a step's 218 (room for 256)
        // would hold 256 000.
        assert!(
            held(&schedule) < 4 * agents.len(),
            "{} entries of room for {}",
            held(&schedule),
            agents.len()
        );
    }
}
