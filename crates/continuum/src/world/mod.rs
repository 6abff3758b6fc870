//! The world agents live in: a 2D continuous plane cut into regions, with sites
//! that agents find, assess and harvest.
//!
//! Sites belong to the region they stand in, and each region owns its sites and
//! its [`Board`]: the resolver gives each region one writer, so regions resolve in
//! parallel without locks, and a region's state is self-contained.
//!
//! Sites regrow continuously. Rather than touching every site every step, a site
//! stores its value at the last change and regrows analytically
//! ([`Site::value_at`]): exact at any virtual time, at no cost per step.

mod plugin;

pub use plugin::WorldPlugin;

use arrayvec::ArrayVec;
use bevy_ecs::prelude::*;
use bevy_math::Vec2;
use serde::{Deserialize, Serialize};

use crate::agent::AgentId;
use crate::clock::{SimTime, sim_to_secs};
use crate::hash::{mix, unit_f64};
use crate::spatial::UniformGrid;

/// A site's stable index. Sites of one region have consecutive ids.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SiteId(pub u32);

/// Index of a region, row-major over the region grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegionId(pub u32);

/// How the world is generated (a scenario's `world` section); seeded by a
/// scenario or a game before startup.
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldSettings {
    /// Width and height in world units, written `(width, height)`.
    #[serde(with = "vec2_pair")]
    pub size: Vec2,
    /// Regions along x and y.
    pub regions: (u32, u32),
    /// Number of sites, placed uniformly at random.
    pub sites: u32,
    /// Range of site capacities (value units); a site starts full.
    pub site_capacity: (f32, f32),
    /// Regrowth, as a fraction of the site's capacity per virtual second.
    pub regrow_per_sec: f32,
    /// How close (world units) an agent must stand to a site to act on it.
    pub reach: f32,
}

impl Default for WorldSettings {
    fn default() -> Self {
        Self {
            size: Vec2::new(1000.0, 1000.0),
            regions: (4, 4),
            sites: 200,
            site_capacity: (10.0, 30.0),
            regrow_per_sec: 0.02,
            reach: 5.0,
        }
    }
}

/// A `Vec2` written as a pair `(x, y)`.
mod vec2_pair {
    use bevy_math::Vec2;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Vec2, s: S) -> Result<S::Ok, S::Error> {
        (v.x, v.y).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec2, D::Error> {
        let (x, y) = <(f32, f32)>::deserialize(d)?;
        Ok(Vec2::new(x, y))
    }
}

/// The plane and its regions.
#[derive(Resource, Clone, Debug, PartialEq)]
pub struct WorldMap {
    size: Vec2,
    regions_x: u32,
    regions_y: u32,
    reach: f32,
}

impl Default for WorldMap {
    /// The map of the default [`WorldSettings`].
    fn default() -> Self {
        let settings = WorldSettings::default();
        Self::new(settings.size, settings.regions, settings.reach)
    }
}

impl WorldMap {
    /// A world of `size` cut into `regions.0 × regions.1` equal regions, where
    /// agents act on sites within `reach` world units.
    pub fn new(size: Vec2, regions: (u32, u32), reach: f32) -> Self {
        Self {
            size,
            regions_x: regions.0.max(1),
            regions_y: regions.1.max(1),
            reach,
        }
    }

    /// How close (world units) an agent must stand to a site to act on it.
    pub fn reach(&self) -> f32 {
        self.reach
    }

    /// Width and height in world units.
    pub fn size(&self) -> Vec2 {
        self.size
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        (self.regions_x * self.regions_y) as usize
    }

    /// The region containing `pos` (positions outside are clamped in).
    pub fn region_of(&self, pos: Vec2) -> RegionId {
        let fx = (pos.x / self.size.x * self.regions_x as f32) as i64;
        let fy = (pos.y / self.size.y * self.regions_y as f32) as i64;
        let x = fx.clamp(0, i64::from(self.regions_x) - 1) as u32;
        let y = fy.clamp(0, i64::from(self.regions_y) - 1) as u32;
        RegionId(y * self.regions_x + x)
    }

    /// Clamps a position into the world.
    pub fn clamp(&self, pos: Vec2) -> Vec2 {
        pos.clamp(Vec2::ZERO, self.size)
    }
}

/// Something of value in the world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub pos: Vec2,
    /// Value at `updated_at`; see [`value_at`](Self::value_at).
    value: f32,
    updated_at: SimTime,
    /// Most value the site holds.
    pub capacity: f32,
    /// Regrowth in value units per virtual second.
    pub regrow: f32,
    /// The first agent to publish the site, if any.
    pub discovered_by: Option<AgentId>,
    /// Assessments applied to it so far.
    pub assessments: u32,
    /// Value harvested from it in total.
    pub harvested: f32,
}

impl Site {
    /// The true value at virtual time `t` (not before the last change).
    pub fn value_at(&self, t: SimTime) -> f32 {
        let dt = sim_to_secs(t.saturating_sub(self.updated_at)) as f32;
        (self.value + self.regrow * dt).min(self.capacity)
    }

    /// Sets the true value at virtual time `t`.
    pub(crate) fn set_value(&mut self, value: f32, t: SimTime) {
        self.value = value.clamp(0.0, self.capacity);
        self.updated_at = t;
    }

    /// The stored value (at [`updated_at`](Self::updated_at)).
    pub fn stored_value(&self) -> f32 {
        self.value
    }

    /// Virtual time of the last change of value.
    pub fn updated_at(&self) -> SimTime {
        self.updated_at
    }
}

/// Most recent discoveries a board keeps.
pub const BOARD_DISCOVERED: usize = 4;
/// Best-assessed sites a board keeps.
pub const BOARD_BEST: usize = 8;

/// A region's notice board: what agents in the region have published. Agents read
/// the board of the region they stand in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Board {
    /// Recently discovered sites, newest last.
    discovered: ArrayVec<SiteId, BOARD_DISCOVERED>,
    /// The best-assessed sites, highest estimate first.
    best: ArrayVec<(SiteId, f32), BOARD_BEST>,
}

impl Board {
    /// Recently discovered sites, newest last.
    pub fn discovered(&self) -> &[SiteId] {
        &self.discovered
    }

    /// The best-assessed sites with the estimates that ranked them, highest
    /// first. Agents look the current values up in the shared cache.
    pub fn best(&self) -> &[(SiteId, f32)] {
        &self.best
    }

    /// The best-assessed sites, highest estimate first.
    pub fn best_sites(&self) -> impl Iterator<Item = SiteId> + '_ {
        self.best.iter().map(|(s, _)| *s)
    }

    pub(crate) fn publish_discovery(&mut self, site: SiteId) {
        if self.discovered.is_full() {
            self.discovered.remove(0);
        }
        self.discovered.push(site);
    }

    pub(crate) fn publish_estimate(&mut self, site: SiteId, value: f32) {
        if let Some(i) = self.best.iter().position(|(s, _)| *s == site) {
            self.best.remove(i);
        }
        let at = self
            .best
            .iter()
            .position(|(s, v)| value > *v || (value == *v && site < *s))
            .unwrap_or(self.best.len());
        if at < BOARD_BEST {
            if self.best.is_full() {
                self.best.pop();
            }
            self.best.insert(at, (site, value));
        }
    }
}

/// One region: its sites (consecutive ids from `first`) and its board.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub id: RegionId,
    first: u32,
    sites: Vec<Site>,
    pub board: Board,
}

impl Region {
    /// The region's sites.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The region's site `id`, if it belongs here.
    pub fn site_mut(&mut self, id: SiteId) -> Option<&mut Site> {
        let i = id.0.checked_sub(self.first)? as usize;
        self.sites.get_mut(i)
    }
}

/// All sites, grouped by region, with a static spatial index.
#[derive(Resource, Clone, Debug)]
pub struct Sites {
    regions: Vec<Region>,
    region_of_site: Vec<u32>,
    index: UniformGrid<SiteId>,
}

impl Default for Sites {
    fn default() -> Self {
        let settings = WorldSettings::default();
        let map = WorldMap::new(settings.size, settings.regions, settings.reach);
        Self::generate(&map, &settings, 0, 50.0)
    }
}

impl Sites {
    /// Generates the sites described by `settings`, seeded by `seed`. `cell` is the
    /// side of the spatial index's cells (about the largest perception radius).
    pub fn generate(map: &WorldMap, settings: &WorldSettings, seed: u64, cell: f32) -> Self {
        const SITE_SALT: u64 = 0x7369_7465_7300_0000;
        let size = map.size();
        let (lo, hi) = settings.site_capacity;
        let mut drafts: Vec<(RegionId, u32, Vec2, f32)> = (0..settings.sites)
            .map(|i| {
                let h = mix(seed ^ SITE_SALT, u64::from(i));
                let pos = Vec2::new(
                    unit_f64(h) as f32 * size.x,
                    unit_f64(mix(h, 1)) as f32 * size.y,
                );
                let capacity = lo + (hi - lo) * unit_f64(mix(h, 2)) as f32;
                (map.region_of(pos), i, pos, capacity)
            })
            .collect();
        drafts.sort_by_key(|d| (d.0, d.1));
        let mut regions: Vec<Region> = (0..map.region_count() as u32)
            .map(|r| Region {
                id: RegionId(r),
                first: 0,
                sites: Vec::new(),
                board: Board::default(),
            })
            .collect();
        // Exact room: a million agents' worth of sites would otherwise leave
        // a quarter of each region's list unused.
        let mut counts = vec![0usize; regions.len()];
        for d in &drafts {
            counts[d.0.0 as usize] += 1;
        }
        for (r, n) in regions.iter_mut().zip(counts) {
            r.sites.reserve_exact(n);
        }
        let mut region_of_site = Vec::with_capacity(drafts.len());
        for (n, (region, _, pos, capacity)) in drafts.into_iter().enumerate() {
            let id = SiteId(n as u32);
            let r = &mut regions[region.0 as usize];
            if r.sites.is_empty() {
                r.first = id.0;
            }
            r.sites.push(Site {
                id,
                pos,
                value: capacity,
                updated_at: 0,
                capacity,
                regrow: capacity * settings.regrow_per_sec,
                discovered_by: None,
                assessments: 0,
                harvested: 0.0,
            });
            region_of_site.push(region.0);
        }
        let index = UniformGrid::build(
            size,
            cell,
            regions
                .iter()
                .flat_map(|r| r.sites.iter().map(|s| (s.pos, s.id))),
        );
        Self {
            regions,
            region_of_site,
            index,
        }
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.region_of_site.len()
    }

    /// Whether there are no sites.
    pub fn is_empty(&self) -> bool {
        self.region_of_site.is_empty()
    }

    /// The site with id `id`.
    pub fn get(&self, id: SiteId) -> Option<&Site> {
        let region = *self.region_of_site.get(id.0 as usize)?;
        let r = &self.regions[region as usize];
        r.sites.get((id.0 - r.first) as usize)
    }

    /// Asks the processor for site `id`'s record ahead of a read of it: code
    /// about to look at several sites asks for them all first, so that their
    /// misses overlap. Changes nothing.
    #[inline]
    pub fn prefetch(&self, id: SiteId) {
        if let Some(site) = self.get(id) {
            crate::prefetch::prefetch(site);
        }
    }

    /// The region a site belongs to.
    pub fn region_of(&self, id: SiteId) -> Option<RegionId> {
        self.region_of_site.get(id.0 as usize).map(|&r| RegionId(r))
    }

    /// All sites in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Site> {
        self.regions.iter().flat_map(|r| r.sites.iter())
    }

    /// All regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// What changes in the sites as a run goes (every site and each region's
    /// board), for a checkpoint.
    pub(crate) fn image(&self) -> Vec<(Vec<Site>, Board)> {
        self.regions
            .iter()
            .map(|r| (r.sites.clone(), r.board.clone()))
            .collect()
    }

    /// Puts back what [`image`](Self::image) saved into sites generated from
    /// the same settings and seed; fails if they are not the same sites.
    pub(crate) fn restore(&mut self, image: Vec<(Vec<Site>, Board)>) -> Result<(), String> {
        if image.len() != self.regions.len() {
            return Err(format!(
                "{} regions saved, {} in the world",
                image.len(),
                self.regions.len()
            ));
        }
        for (region, (sites, board)) in self.regions.iter_mut().zip(image) {
            let same = sites.len() == region.sites.len()
                && sites
                    .iter()
                    .zip(&region.sites)
                    .all(|(a, b)| a.id == b.id && a.pos == b.pos);
            if !same {
                return Err(format!(
                    "the sites of region {} are not the ones saved",
                    region.id.0
                ));
            }
            region.sites = sites;
            region.board = board;
        }
        Ok(())
    }

    /// All regions, for the resolver (one writer per region).
    pub(crate) fn regions_mut(&mut self) -> &mut [Region] {
        &mut self.regions
    }

    /// The board of a region.
    pub fn board(&self, region: RegionId) -> &Board {
        &self.regions[region.0 as usize].board
    }

    /// The static spatial index of sites.
    pub fn index(&self) -> &UniformGrid<SiteId> {
        &self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NANOS_PER_SEC;

    #[test]
    fn sites_regrow_continuously_up_to_their_capacity() {
        let settings = WorldSettings {
            sites: 1,
            site_capacity: (10.0, 10.0),
            regrow_per_sec: 0.1,
            ..Default::default()
        };
        let map = WorldMap::new(settings.size, settings.regions, settings.reach);
        let mut sites = Sites::generate(&map, &settings, 1, 50.0);
        let region = sites.region_of(SiteId(0)).unwrap();
        let site = sites.regions_mut()[region.0 as usize]
            .site_mut(SiteId(0))
            .unwrap();
        site.set_value(2.0, 3 * NANOS_PER_SEC);
        assert_eq!(site.value_at(3 * NANOS_PER_SEC), 2.0);
        assert_eq!(site.value_at(3 * NANOS_PER_SEC + NANOS_PER_SEC / 2), 2.5);
        assert_eq!(site.value_at(100 * NANOS_PER_SEC), 10.0);
    }

    #[test]
    fn sites_of_a_region_have_consecutive_ids_and_stand_in_it() {
        let settings = WorldSettings {
            sites: 500,
            ..Default::default()
        };
        let map = WorldMap::new(settings.size, (4, 3), settings.reach);
        let sites = Sites::generate(&map, &settings, 2, 50.0);
        assert_eq!(sites.len(), 500);
        let mut next = 0;
        for region in sites.regions() {
            for site in region.sites() {
                assert_eq!(site.id.0, next);
                assert_eq!(map.region_of(site.pos), region.id);
                assert_eq!(sites.get(site.id).unwrap().id, site.id);
                next += 1;
            }
        }
    }

    #[test]
    fn the_board_keeps_the_best_estimates_in_order() {
        let mut board = Board::default();
        for (site, value) in [(1, 5.0), (2, 9.0), (3, 1.0), (4, 9.0), (5, 7.0)] {
            board.publish_estimate(SiteId(site), value);
        }
        board.publish_estimate(SiteId(2), 0.5); // harvested: falls back
        let ids: Vec<u32> = board.best().iter().map(|(s, _)| s.0).collect();
        assert_eq!(ids, [4, 5, 1, 3, 2]);
        for site in 10..30 {
            board.publish_estimate(SiteId(site), 100.0 + site as f32);
        }
        assert_eq!(board.best().len(), BOARD_BEST);
        assert_eq!(board.best()[0], (SiteId(29), 129.0));
        for site in 0..40 {
            board.publish_discovery(SiteId(site));
        }
        assert_eq!(board.discovered().len(), BOARD_DISCOVERED);
        assert_eq!(*board.discovered().last().unwrap(), SiteId(39));
    }
}
