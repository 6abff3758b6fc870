//! Actions and results as every agent's [`Intent`](crate::behaviour::Intent) and
//! [`Feedback`](super::Feedback) keep them: the payloads in 32-bit words and the
//! variants in one tag byte, so that a [`PlannedAction`] takes 16 bytes and a
//! byte instead of 24 (a [`Target`] and an [`ActionKind`] each spend 4 bytes on
//! a one-byte tag). A million agents save 16 MB.

use super::{ActionKind, FailReason, FeedbackResult, PackedId, PlannedAction, Target};
use crate::world::SiteId;

/// A [`PlannedAction`]'s payload: the target's two words, then the kind's.
/// Its variants are in the tag [`pack`](Self::pack) gives with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackedAction([u32; 4]);

/// The tag of no action.
pub(crate) const NO_ACTION: u8 = 0;

impl PackedAction {
    /// The payload of `action` and its tag: [`NO_ACTION`], or 1 + 4 × the
    /// target's variant + the kind's.
    pub(crate) fn pack(action: Option<PlannedAction>) -> (Self, u8) {
        let Some(PlannedAction { target, kind }) = action else {
            return (Self::default(), NO_ACTION);
        };
        let (t, [t0, t1]) = match target {
            Target::Site(site) => (0, [site.0, 0]),
            Target::Cell { x, y } => (1, [x as u32, y as u32]),
            Target::Agent(PackedId(words)) => (2, words),
            Target::Pair(a, b) => (3, [a, b]),
        };
        let (k, [k0, k1]) = match kind {
            ActionKind::Report => (0, [0, 0]),
            ActionKind::Assess { noise } => (1, [noise.to_bits(), 0]),
            ActionKind::Harvest { amount } => (2, [amount.to_bits(), 0]),
            ActionKind::Custom { code, value } => (3, [code, value.to_bits()]),
        };
        (Self([t0, t1, k0, k1]), 1 + 4 * t + k)
    }

    /// The action `pack` gave this payload and `tag` for.
    pub(crate) fn unpack(self, tag: u8) -> Option<PlannedAction> {
        if tag == NO_ACTION {
            return None;
        }
        let [t0, t1, k0, k1] = self.0;
        let (t, k) = ((tag - 1) / 4, (tag - 1) % 4);
        let target = match t {
            0 => Target::Site(SiteId(t0)),
            1 => Target::Cell {
                x: t0 as i32,
                y: t1 as i32,
            },
            2 => Target::Agent(PackedId([t0, t1])),
            _ => Target::Pair(t0, t1),
        };
        let kind = match k {
            0 => ActionKind::Report,
            1 => ActionKind::Assess {
                noise: f32::from_bits(k0),
            },
            2 => ActionKind::Harvest {
                amount: f32::from_bits(k0),
            },
            _ => ActionKind::Custom {
                code: k0,
                value: f32::from_bits(k1),
            },
        };
        Some(PlannedAction { target, kind })
    }
}

/// A [`FeedbackResult`] as a word (an applied action's value) and a tag.
pub(crate) fn pack_result(result: FeedbackResult) -> (u32, u8) {
    match result {
        FeedbackResult::Applied(value) => (value.to_bits(), 0),
        FeedbackResult::Rejected => (0, 1),
        FeedbackResult::Failed(FailReason::OutOfReach) => (0, 2),
        FeedbackResult::Failed(FailReason::Depleted) => (0, 3),
        FeedbackResult::Failed(FailReason::UnknownTarget) => (0, 4),
    }
}

/// The result [`pack_result`] gave `word` and `tag` for.
pub(crate) fn unpack_result(word: u32, tag: u8) -> FeedbackResult {
    match tag {
        0 => FeedbackResult::Applied(f32::from_bits(word)),
        1 => FeedbackResult::Rejected,
        2 => FeedbackResult::Failed(FailReason::OutOfReach),
        3 => FeedbackResult::Failed(FailReason::Depleted),
        _ => FeedbackResult::Failed(FailReason::UnknownTarget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        vec![
            Target::Site(SiteId(0)),
            Target::Site(SiteId(u32::MAX - 1)),
            Target::Cell { x: -3, y: i32::MAX },
            Target::Cell { x: i32::MIN, y: -1 },
            Target::agent(crate::agent::AgentId(u64::MAX - 7)),
            Target::agent(crate::agent::AgentId(1 << 40 | 5)),
            Target::Pair(9, u32::MAX),
        ]
    }

    fn kinds() -> Vec<ActionKind> {
        vec![
            ActionKind::Report,
            ActionKind::Assess { noise: -0.25 },
            ActionKind::Harvest { amount: 1e30 },
            ActionKind::Harvest { amount: -0.0 },
            ActionKind::Custom {
                code: u32::MAX,
                value: f32::MIN_POSITIVE,
            },
            ActionKind::Custom {
                code: 0,
                value: 3.5,
            },
        ]
    }

    #[test]
    fn every_action_comes_back_as_it_went_in_bit_for_bit() {
        let (_, tag) = PackedAction::pack(None);
        assert_eq!(PackedAction::default().unpack(tag), None);
        for target in targets() {
            for kind in kinds() {
                let action = PlannedAction { target, kind };
                let (packed, tag) = PackedAction::pack(Some(action));
                assert_ne!(tag, NO_ACTION);
                let back = packed.unpack(tag).expect("an action");
                assert_eq!(back.target, target);
                // Bit for bit: -0.0 stays negative.
                assert_eq!(format!("{:?}", back.kind), format!("{kind:?}"));
                assert_eq!(back.kind.code(), kind.code());
            }
        }
    }

    #[test]
    fn a_nan_payload_keeps_its_bits() {
        let noise = f32::from_bits(0x7fc0_1234);
        let (packed, tag) = PackedAction::pack(Some(PlannedAction {
            target: Target::Site(SiteId(1)),
            kind: ActionKind::Assess { noise },
        }));
        let Some(PlannedAction {
            kind: ActionKind::Assess { noise: back },
            ..
        }) = packed.unpack(tag)
        else {
            panic!("an assessment");
        };
        assert_eq!(back.to_bits(), noise.to_bits());
    }

    #[test]
    fn every_result_comes_back_as_it_went_in() {
        for result in [
            FeedbackResult::Applied(-2.5),
            FeedbackResult::Applied(0.0),
            FeedbackResult::Rejected,
            FeedbackResult::Failed(FailReason::OutOfReach),
            FeedbackResult::Failed(FailReason::Depleted),
            FeedbackResult::Failed(FailReason::UnknownTarget),
        ] {
            let (word, tag) = pack_result(result);
            assert_eq!(unpack_result(word, tag), result);
        }
    }
}
