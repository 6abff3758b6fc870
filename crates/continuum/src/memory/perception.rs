//! The working tier: what an agent perceives in a tick.

use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use super::WORKING_MAX;
use crate::world::SiteId;

/// What the agent perceived in its latest tick: the **working** tier of its
/// memory, overwritten every tick. Fixed capacity, stored inline in 40 bytes.
#[derive(Component, Clone, Debug, Serialize, Deserialize)]
pub struct Perception {
    /// The first `len` are the sites in view.
    sites: [SiteId; WORKING_MAX],
    len: u8,
    capacity: u8,
    /// Other agents in range, saturating.
    neighbours: u16,
    /// Offset to the nearest of them; meaningless while `neighbours` is 0.
    nearest: Vec2,
    /// Candidates examined (sites and agents in the cells overlapping the radius):
    /// the deterministic cost of this perception.
    pub examined: u32,
}

impl PartialEq for Perception {
    fn eq(&self, other: &Self) -> bool {
        self.sites() == other.sites()
            && self.capacity == other.capacity
            && self.neighbours == other.neighbours
            && self.nearest() == other.nearest()
            && self.examined == other.examined
    }
}

/// The working tier of the default memory rules: what an agent perceives
/// before (or without) the memory plugin sizing its tiers.
impl Default for Perception {
    fn default() -> Self {
        Self::with_capacity(usize::from(super::DEFAULT_RULES.capacity.working))
    }
}

impl Perception {
    /// An empty perception holding at most `capacity` sites.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            sites: [SiteId::default(); WORKING_MAX],
            len: 0,
            capacity: capacity.min(WORKING_MAX) as u8,
            neighbours: 0,
            nearest: Vec2::ZERO,
            examined: 0,
        }
    }

    /// Most sites perceived per tick (the working tier's capacity).
    pub fn capacity(&self) -> usize {
        usize::from(self.capacity)
    }

    /// Sites within the perception radius, nearest first (ties by id), at most
    /// [`capacity`](Self::capacity).
    pub fn sites(&self) -> &[SiteId] {
        &self.sites[..usize::from(self.len)]
    }

    /// Replaces the sites in view with `sites` (nearest first), keeping the first
    /// [`capacity`](Self::capacity) of them.
    pub fn set_sites(&mut self, sites: impl IntoIterator<Item = SiteId>) {
        let (mut len, capacity) = (0, self.capacity());
        for (slot, site) in self.sites[..capacity].iter_mut().zip(sites) {
            *slot = site;
            len += 1;
        }
        self.len = len;
    }

    /// How many other agents are within the perception radius (kinds that
    /// sense agents only), up to `u16::MAX`.
    pub fn neighbours(&self) -> u16 {
        self.neighbours
    }

    /// Offset from this agent to the nearest other agent in range.
    pub fn nearest(&self) -> Option<Vec2> {
        (self.neighbours > 0).then_some(self.nearest)
    }

    /// Records the other agents in range: how many, and the offset to the
    /// nearest (present whenever `count > 0`).
    pub fn set_agents(&mut self, count: u32, nearest: Option<Vec2>) {
        debug_assert_eq!(count > 0, nearest.is_some());
        self.neighbours = count.min(u32::from(u16::MAX)) as u16;
        self.nearest = nearest.unwrap_or_default();
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.min(WORKING_MAX) as u8;
        self.len = self.len.min(self.capacity);
    }

    /// Starts a new tick's perception: same capacity, nothing seen.
    pub fn cleared(&self) -> Self {
        Self::with_capacity(self.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perception_keeps_its_capacity_and_reports_the_nearest_only_with_neighbours() {
        let mut p = Perception::with_capacity(3);
        p.set_sites((1..=5).map(SiteId));
        assert_eq!(p.sites(), &[SiteId(1), SiteId(2), SiteId(3)]);
        p.set_capacity(2);
        assert_eq!(p.sites(), &[SiteId(1), SiteId(2)]);
        p.set_sites([SiteId(9)]);
        assert_eq!(p.sites(), &[SiteId(9)]);
        assert_eq!(p.nearest(), None);
        p.set_agents(70_000, Some(Vec2::new(1.0, -2.0)));
        assert_eq!(p.neighbours(), u16::MAX, "the count saturates");
        assert_eq!(p.nearest(), Some(Vec2::new(1.0, -2.0)));
        p.set_agents(0, None);
        assert_eq!(p.nearest(), None);
        let mut fresh = p.cleared();
        fresh.set_sites([SiteId(9)]);
        assert_eq!(p, fresh, "stale slots do not count");
    }

    #[test]
    fn the_working_tier_stays_small() {
        assert_eq!(size_of::<Perception>(), 40);
    }
}
