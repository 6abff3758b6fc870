//! A class slowed by load shedding, spread over its longer period.
//!
//! Agents of a class tick in phase groups: at 10 Hz on a 100 Hz step, a tenth
//! of them in each step. Slowed to a tenth of its rate, each agent would be due
//! again one longer period after its tick, so each phase group would still
//! tick in one step, now one step in a hundred, and the ninety between hold
//! none of the class: a long step every so often rather than even ones.
//!
//! So an agent's first tick after its class is slowed (from period `old` to
//! `new`) adds a delay of a whole number of old periods, its piece: the agents
//! of the class due in a step are ranked along a Z-order curve of their cells
//! (then by id), cut into as many pieces as old periods fit in what is left of
//! the new one, and piece `p` waits `p` old periods more. The phase groups of
//! the old period then fill the new one, each step a share, and each share is
//! a run of agents near one another in space, as the tables lay them out (see
//! `order_by_space`). Ranks depend on positions and ids alone, never on where
//! the tables keep the agents, so a restored checkpoint spreads them alike.
//! Later ticks keep the new period exactly. A class slowed again before its
//! first ticks at the slower rate came (a deep overload sheds one level, then
//! the next a second later) is spread from those ticks, not from the second
//! change: only then does each of its agents tick once in the old period the
//! pieces start from. Speeding up is not spread: a class
//! even over a longer period stays even over a shorter one that divides it,
//! and nearly so over one that does not (from a tenth to a quarter, some steps
//! of the quarter's period hold three of the tenth's shares and some two).

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AgentId, PriorityRates, TickRate};
use crate::clock::SimTime;

/// When each class's tick-rate multiplier ([`PriorityRates`]) last changed,
/// and what it was before: the scheduler's memory of slow-downs. Part of the
/// state (checkpoints save it).
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RateChanges {
    /// The multipliers the scheduler last saw, by class.
    seen: [f32; 3],
    /// When each last changed: the start of the first step that used it.
    at: [SimTime; 3],
    /// Each class's multiplier before that change.
    before: [f32; 3],
    /// The change before that one: when, and the multiplier before it.
    earlier_at: [SimTime; 3],
    earlier_before: [f32; 3],
}

impl Default for RateChanges {
    fn default() -> Self {
        Self {
            seen: [1.0; 3],
            at: [0; 3],
            before: [1.0; 3],
            earlier_at: [0; 3],
            earlier_before: [1.0; 3],
        }
    }
}

/// An agent's first tick since its class was slowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slowdown {
    /// Its period before the change, in nanoseconds.
    pub old: u64,
    /// Old periods that fit in what is left of the new one after its tick:
    /// the pieces its step's agents of the class are cut into.
    pub pieces: u64,
}

impl RateChanges {
    /// Takes note of the multipliers a step runs with, from `now` (the step's
    /// start).
    pub(crate) fn observe(&mut self, rates: &PriorityRates, now: SimTime) {
        for class in 0..3 {
            if rates.0[class] != self.seen[class] {
                self.earlier_at[class] = self.at[class];
                self.earlier_before[class] = self.before[class];
                self.before[class] = self.seen[class];
                self.seen[class] = rates.0[class];
                self.at[class] = now;
            }
        }
    }

    /// Whether the tick at `t` of an agent of shed class `class` at `hz` is its
    /// first since the class was slowed: the new period is longer, and `t` is
    /// in the old period in which each agent of the class ticks once from the
    /// change on. That period starts at the change, unless the change before
    /// it slowed the class too and the first ticks at the slower rate are
    /// still to come (a class slowed twice within one of its periods): it then
    /// starts with them, when the first change's spread puts them, so that the
    /// class, spread evenly over that period, fills the new one too. A change
    /// that comes within the first's own window (the period before it, when
    /// not every agent has ticked since) counts from the change.
    pub(crate) fn slowed(
        &self,
        class: usize,
        hz: f32,
        t: SimTime,
        step_ns: u64,
    ) -> Option<Slowdown> {
        if self.seen[class] >= self.before[class] {
            return None;
        }
        let old = TickRate(hz * self.before[class]).period_ns(step_ns);
        let new = TickRate(hz * self.seen[class]).period_ns(step_ns);
        if new <= old {
            return None;
        }
        let (at, earlier) = (self.at[class], self.earlier_at[class]);
        let mut from = at;
        if self.earlier_before[class] > self.before[class] {
            let earlier_old = TickRate(hz * self.earlier_before[class]).period_ns(step_ns);
            if at >= earlier + earlier_old {
                from = at.max(earlier + old);
            }
        }
        let since = t.checked_sub(from)?;
        (since < old).then(|| Slowdown {
            old,
            pieces: (new - since).div_ceil(old),
        })
    }
}

impl RateChanges {
    /// Whether some class's latest change slowed it: only then can a tick be
    /// the first of a slowed class.
    pub(crate) fn any_slowed(&self) -> bool {
        (0..3).any(|class| self.seen[class] < self.before[class])
    }
}

/// One agent of a step to spread: its place in the step's due list, its
/// class, where it is along the Z-order curve, who it is, and its slowdown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToSpread {
    pub index: usize,
    pub class: usize,
    pub place: u64,
    pub id: AgentId,
    pub slowdown: Slowdown,
}

/// The delay of each agent of `agents` (a step's agents slowed at this tick),
/// with its index in the step's due list: each class ranked by place then id
/// and cut into its pieces, piece `p` waiting `p` old periods.
pub(crate) fn delays(agents: &mut [ToSpread]) -> impl Iterator<Item = (usize, u64)> + '_ {
    agents.sort_unstable_by_key(|a| (a.class, a.place, a.id));
    agents
        .chunk_by(|a, b| a.class == b.class)
        .flat_map(|class| {
            let n = class.len() as u64;
            class.iter().enumerate().map(move |(rank, a)| {
                let piece = rank as u64 * a.slowdown.pieces / n;
                (a.index, piece * a.slowdown.old)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = 10_000_000;

    #[test]
    fn only_the_first_tick_after_a_slow_down_is_spread() {
        let mut changes = RateChanges::default();
        changes.observe(&PriorityRates([0.1, 1.0, 1.0]), 5 * STEP);
        // 10 Hz: 100 ms before, 1 s after. Ticks from the change on, for one
        // old period, are the first; the pieces fill what is left of 1 s.
        assert_eq!(changes.slowed(0, 10.0, 4 * STEP, STEP), None, "before it");
        assert_eq!(
            changes.slowed(0, 10.0, 5 * STEP, STEP),
            Some(Slowdown {
                old: 10 * STEP,
                pieces: 10
            })
        );
        assert_eq!(
            changes.slowed(0, 10.0, 14 * STEP, STEP),
            Some(Slowdown {
                old: 10 * STEP,
                pieces: 10
            }),
            "91 steps left of the new period: ten old ones start in them"
        );
        assert_eq!(
            changes.slowed(0, 10.0, 15 * STEP, STEP),
            None,
            "a later tick"
        );
        assert_eq!(changes.slowed(1, 10.0, 5 * STEP, STEP), None, "not slowed");
        // Faster again: nothing to spread.
        changes.observe(&PriorityRates([0.5, 1.0, 1.0]), 50 * STEP);
        assert_eq!(changes.slowed(0, 10.0, 50 * STEP, STEP), None);
        // From a quarter to a tenth (2.5 old periods in a new one).
        changes.observe(&PriorityRates([0.25, 1.0, 1.0]), 60 * STEP);
        changes.observe(&PriorityRates([0.1, 1.0, 1.0]), 70 * STEP);
        assert_eq!(
            changes.slowed(0, 10.0, 70 * STEP, STEP).map(|s| s.pieces),
            Some(3)
        );
        assert_eq!(
            changes.slowed(0, 10.0, 90 * STEP, STEP).map(|s| s.pieces),
            Some(2),
            "20 steps in, 80 left: two old periods of 40 start in them"
        );
    }

    /// A class slowed again before its first ticks at the slower rate came is
    /// spread from those ticks: each agent ticks once in the old period that
    /// starts with them, not in the one that starts at the second change.
    #[test]
    fn a_second_slow_down_spreads_from_the_first_ticks_of_the_first() {
        let mut changes = RateChanges::default();
        // 10 Hz: 10 steps. At step 5 to a twentieth (200 steps): the first
        // ticks at it fall in steps 205..405. At step 105 to a fiftieth (500
        // steps), before any of them.
        changes.observe(&PriorityRates([0.05, 1.0, 1.0]), 5 * STEP);
        changes.observe(&PriorityRates([0.02, 1.0, 1.0]), 105 * STEP);
        let slowed = |step: u64| changes.slowed(0, 10.0, step * STEP, STEP);
        assert_eq!(slowed(150), None, "no agent of the class ticks here");
        assert_eq!(slowed(204), None);
        assert_eq!(
            slowed(205),
            Some(Slowdown {
                old: 200 * STEP,
                pieces: 3
            }),
            "500 steps left: three periods of 200 start in them"
        );
        assert_eq!(slowed(404).map(|s| s.pieces), Some(2));
        assert_eq!(slowed(405), None, "a tick at the slower rate");
        // Slowed again once the class ticks at the slower rate: from the change.
        let mut settled = RateChanges::default();
        settled.observe(&PriorityRates([0.05, 1.0, 1.0]), 5 * STEP);
        settled.observe(&PriorityRates([0.02, 1.0, 1.0]), 305 * STEP);
        assert_eq!(
            settled.slowed(0, 10.0, 305 * STEP, STEP).map(|s| s.pieces),
            Some(3)
        );
        assert_eq!(settled.slowed(0, 10.0, 505 * STEP, STEP), None);
        // Sped up in between: the latest change counts from when it came.
        let mut restored = RateChanges::default();
        restored.observe(&PriorityRates([0.05, 1.0, 1.0]), 5 * STEP);
        restored.observe(&PriorityRates([0.1, 1.0, 1.0]), 50 * STEP);
        restored.observe(&PriorityRates([0.02, 1.0, 1.0]), 60 * STEP);
        assert_eq!(
            restored.slowed(0, 10.0, 60 * STEP, STEP).map(|s| s.old),
            Some(100 * STEP)
        );
    }

    #[test]
    fn a_step_is_cut_into_pieces_by_place_then_id_per_class() {
        let slowdown = Slowdown {
            old: 100,
            pieces: 4,
        };
        let mut agents: Vec<ToSpread> = (0..8)
            .map(|i| ToSpread {
                index: i,
                class: 0,
                place: 7 - i as u64 / 2,
                id: AgentId(i as u64),
                slowdown,
            })
            .chain([ToSpread {
                index: 8,
                class: 1,
                place: 0,
                id: AgentId(8),
                slowdown: Slowdown { old: 50, pieces: 2 },
            }])
            .collect();
        let mut got: Vec<_> = delays(&mut agents).collect();
        got.sort_unstable();
        // Places 7, 7, 6, 6, ... 4, 4: the last two in the list come first.
        assert_eq!(
            got,
            [
                (0, 300),
                (1, 300),
                (2, 200),
                (3, 200),
                (4, 100),
                (5, 100),
                (6, 0),
                (7, 0),
                (8, 0)
            ]
        );
    }
}
