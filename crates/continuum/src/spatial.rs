//! Uniform grids over the plane: the spatial indices of sites and agents.

use std::sync::atomic::{AtomicU64, Ordering};

use bevy_math::Vec2;

/// The cell layout shared by the spatial indices: square cells over
/// `[0, size.x] × [0, size.y]`, row-major.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridGeometry {
    size: Vec2,
    cell: f32,
    inv_cell: f32,
    cols: u32,
    rows: u32,
}

impl GridGeometry {
    /// Cells of side `cell` (world units) over a world of `size`, widened if
    /// needed so that there are at most 4096 × 4096 cells.
    pub fn new(size: Vec2, cell: f32) -> Self {
        let longest = size.x.max(size.y).max(1.0);
        let cell = cell.max(longest / 4096.0).max(1e-3);
        Self {
            size,
            cell,
            inv_cell: 1.0 / cell,
            cols: ((size.x / cell).ceil() as u32).max(1),
            rows: ((size.y / cell).ceil() as u32).max(1),
        }
    }

    /// Side of a cell in world units.
    pub fn cell_size(&self) -> f32 {
        self.cell
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        (self.cols * self.rows) as usize
    }

    /// The world size covered.
    pub fn size(&self) -> Vec2 {
        self.size
    }

    /// The column and row of the cell containing `p` (positions outside are
    /// clamped in).
    #[inline]
    pub fn cell_coords(&self, p: Vec2) -> (u32, u32) {
        self.coords(p)
    }

    #[inline]
    fn coords(&self, p: Vec2) -> (u32, u32) {
        let cx = ((p.x * self.inv_cell) as i64).clamp(0, i64::from(self.cols) - 1) as u32;
        let cy = ((p.y * self.inv_cell) as i64).clamp(0, i64::from(self.rows) - 1) as u32;
        (cx, cy)
    }

    /// The cell containing `p` (positions outside are clamped in).
    #[inline]
    pub fn cell_of(&self, p: Vec2) -> u32 {
        let (cx, cy) = self.coords(p);
        cy * self.cols + cx
    }

    /// The centre of cell `cell`.
    pub fn cell_center(&self, cell: u32) -> Vec2 {
        let (cx, cy) = (cell % self.cols, cell / self.cols);
        (Vec2::new(cx as f32, cy as f32) + 0.5) * self.cell
    }

    /// The up to eight cells around the one containing `p` (those inside the
    /// grid), row by row.
    pub fn neighbours(&self, p: Vec2) -> impl Iterator<Item = u32> {
        let (cx, cy) = self.coords(p);
        let (cols, rows) = (i64::from(self.cols), i64::from(self.rows));
        (-1i64..=1)
            .flat_map(|dy| (-1i64..=1).map(move |dx| (dx, dy)))
            .filter(|&d| d != (0, 0))
            .map(move |(dx, dy)| (i64::from(cx) + dx, i64::from(cy) + dy))
            .filter(move |&(x, y)| (0..cols).contains(&x) && (0..rows).contains(&y))
            .map(move |(x, y)| (y * cols + x) as u32)
    }

    /// For each row of cells overlapping the square around `center`, the first
    /// and last cell of that row.
    #[inline]
    fn rows_around(&self, center: Vec2, radius: f32) -> impl Iterator<Item = (u32, u32)> {
        let (x0, y0) = self.coords(center - Vec2::splat(radius));
        let (x1, y1) = self.coords(center + Vec2::splat(radius));
        let cols = self.cols;
        (y0..=y1).map(move |cy| (cy * cols + x0, cy * cols + x1))
    }
}

/// A static uniform grid filled once by counting sort: the items of a cell are
/// contiguous, and so are the cells of a row, so a radius query reads one
/// contiguous range per row.
#[derive(Clone, Debug)]
pub struct UniformGrid<T> {
    geometry: GridGeometry,
    /// `starts[c]..starts[c + 1]` are the items of cell `c`.
    starts: Vec<u32>,
    items: Vec<(Vec2, T)>,
}

impl<T: Copy> UniformGrid<T> {
    /// A grid of `items` with cells of side `cell`.
    pub fn build(size: Vec2, cell: f32, items: impl IntoIterator<Item = (Vec2, T)>) -> Self {
        let geometry = GridGeometry::new(size, cell);
        let staged: Vec<(u32, Vec2, T)> = items
            .into_iter()
            .map(|(p, t)| (geometry.cell_of(p), p, t))
            .collect();
        let mut starts = vec![0u32; geometry.cells() + 1];
        for &(c, _, _) in &staged {
            starts[c as usize + 1] += 1;
        }
        for c in 1..starts.len() {
            starts[c] += starts[c - 1];
        }
        let mut cursor = starts.clone();
        let mut slots: Vec<Option<(Vec2, T)>> = vec![None; staged.len()];
        for (c, p, t) in staged {
            slots[cursor[c as usize] as usize] = Some((p, t));
            cursor[c as usize] += 1;
        }
        Self {
            geometry,
            starts,
            items: slots.into_iter().flatten().collect(),
        }
    }

    /// The cell layout.
    pub fn geometry(&self) -> &GridGeometry {
        &self.geometry
    }

    /// Number of items indexed.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the grid holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Calls `f(position, item, squared distance)` for every item within `radius`
    /// of `center`. Returns how many items were examined (the query's cost).
    pub fn for_each_within(&self, center: Vec2, radius: f32, f: impl FnMut(Vec2, &T, f32)) -> u32 {
        self.for_each_within_budget(center, radius, u32::MAX, f)
    }

    /// Like [`for_each_within`](Self::for_each_within), but starts no new row of
    /// cells once `budget` items have been examined: the same rows, in the same
    /// order, on every run.
    pub fn for_each_within_budget(
        &self,
        center: Vec2,
        radius: f32,
        budget: u32,
        mut f: impl FnMut(Vec2, &T, f32),
    ) -> u32 {
        let r2 = radius * radius;
        let mut examined = 0;
        for (first, last) in self.geometry.rows_around(center, radius) {
            if examined >= budget {
                break;
            }
            let from = self.starts[first as usize] as usize;
            let to = self.starts[last as usize + 1] as usize;
            examined += (to - from) as u32;
            for (p, t) in &self.items[from..to] {
                let d2 = p.distance_squared(center);
                if d2 <= r2 {
                    f(*p, t, d2);
                }
            }
        }
        examined
    }
}

/// A position that its owner can move through a shared reference: both
/// coordinates in one atomic word, read and written with relaxed ordering
/// (plain loads and stores on common hardware).
#[derive(Debug)]
struct SharedPos(AtomicU64);

impl SharedPos {
    fn new(p: Vec2) -> Self {
        Self(AtomicU64::new(
            u64::from(p.x.to_bits()) | (u64::from(p.y.to_bits()) << 32),
        ))
    }

    #[inline]
    fn get(&self) -> Vec2 {
        let bits = self.0.load(Ordering::Relaxed);
        Vec2::new(
            f32::from_bits(bits as u32),
            f32::from_bits((bits >> 32) as u32),
        )
    }

    fn set(&self, p: Vec2) {
        self.0.store(
            u64::from(p.x.to_bits()) | (u64::from(p.y.to_bits()) << 32),
            Ordering::Relaxed,
        );
    }
}

impl Clone for SharedPos {
    fn clone(&self) -> Self {
        Self::new(self.get())
    }
}

/// Entries a [`CellGrid`] cell holds inline, before it spills.
const INLINE: usize = 2;
/// A cell that has not spilled.
const NO_SPILL: u32 = u32::MAX;

/// One cell of a [`CellGrid`]: its first [`INLINE`] entries in place, the rest
/// in a spill list of the grid. Entries past `len` are stale and never read.
#[derive(Clone, Debug)]
struct Cell<T> {
    len: u32,
    spill: u32,
    inline: [(SharedPos, T); INLINE],
}

impl<T: Copy + Default> Default for Cell<T> {
    fn default() -> Self {
        Self {
            len: 0,
            spill: NO_SPILL,
            inline: std::array::from_fn(|_| (SharedPos::new(Vec2::ZERO), T::default())),
        }
    }
}

/// A dynamic grid for items that move: moving an item costs O(1) (plus a scan of
/// its cell), so keeping the grid current costs in proportion to the items that
/// moved, not to all items.
///
/// The cells sit in one array, and each holds its first two items inline, so a
/// cell with few items is read where it sits, without following a pointer to a
/// heap block, and costs no allocation: 40 bytes a cell with 16-byte items. Crowded cells spill the rest into lists kept
/// by the grid, whose slots are reused once a crowd has moved on.
#[derive(Clone, Debug)]
pub struct CellGrid<T> {
    geometry: GridGeometry,
    cells: Vec<Cell<T>>,
    spills: Vec<Vec<(SharedPos, T)>>,
    free_spills: Vec<u32>,
    len: usize,
}

impl<T> CellGrid<T> {
    /// Bytes a grid's cells take, per cell, before any item spills.
    pub fn bytes_per_cell() -> usize {
        std::mem::size_of::<Cell<T>>()
    }

    /// Bytes one item takes in a cell (its position and its value).
    pub fn bytes_per_item() -> usize {
        std::mem::size_of::<(SharedPos, T)>()
    }
}

impl<T: Copy + Default> CellGrid<T> {
    /// An empty grid with cells of side `cell` over a world of `size`.
    pub fn new(size: Vec2, cell: f32) -> Self {
        let geometry = GridGeometry::new(size, cell);
        Self {
            cells: vec![Cell::default(); geometry.cells()],
            spills: Vec::new(),
            free_spills: Vec::new(),
            geometry,
            len: 0,
        }
    }

    /// The cell layout.
    pub fn geometry(&self) -> &GridGeometry {
        &self.geometry
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the grid holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items of `cell`: the inline ones, then the spilled ones.
    #[inline]
    fn entries<'a>(&'a self, cell: &'a Cell<T>) -> (&'a [(SharedPos, T)], &'a [(SharedPos, T)]) {
        let len = cell.len as usize;
        let inline = &cell.inline[..len.min(INLINE)];
        if cell.spill == NO_SPILL {
            (inline, &[])
        } else {
            (inline, &self.spills[cell.spill as usize])
        }
    }

    /// Every item with its position, cell by cell, each cell in its order:
    /// inserting them into an empty grid of the same geometry in this order
    /// gives a grid that answers every query the same way.
    pub fn iter_in_order(&self) -> impl Iterator<Item = (Vec2, &T)> + '_ {
        self.cells.iter().flat_map(move |c| {
            let (inline, spilled) = self.entries(c);
            inline.iter().chain(spilled).map(|(p, t)| (p.get(), t))
        })
    }

    /// Adds `item` at `pos`; returns its cell.
    pub fn insert(&mut self, pos: Vec2, item: T) -> u32 {
        let index = self.geometry.cell_of(pos);
        let entry = (SharedPos::new(pos), item);
        let cell = &mut self.cells[index as usize];
        let len = cell.len as usize;
        if len < INLINE {
            cell.inline[len] = entry;
        } else {
            if cell.spill == NO_SPILL {
                cell.spill = self.free_spills.pop().unwrap_or_else(|| {
                    self.spills.push(Vec::new());
                    (self.spills.len() - 1) as u32
                });
            }
            let spill = &mut self.spills[cell.spill as usize];
            if spill.len() == spill.capacity() {
                // Room for two more at first, then doubled: most crowded
                // cells spill one or two items, and `Vec`'s first room of
                // four would leave half of each block empty.
                spill.reserve_exact(spill.len().max(INLINE));
            }
            spill.push(entry);
        }
        cell.len += 1;
        self.len += 1;
        index
    }

    /// Removes the item of `cell` that `is_it` picks. Returns whether one was
    /// found. The cell's last item takes its place.
    pub fn remove(&mut self, cell: u32, is_it: impl Fn(&T) -> bool) -> bool {
        let Some(c) = self.cells.get_mut(cell as usize) else {
            return false;
        };
        let len = c.len as usize;
        let in_inline = c.inline[..len.min(INLINE)]
            .iter()
            .position(|(_, t)| is_it(t));
        if c.spill == NO_SPILL {
            let Some(i) = in_inline else {
                return false;
            };
            c.inline.swap(i, len - 1);
        } else {
            let spill = &mut self.spills[c.spill as usize];
            let found = match in_inline {
                Some(i) => {
                    c.inline[i] = spill.pop().expect("a spill list is never empty");
                    true
                }
                None => match spill.iter().position(|(_, t)| is_it(t)) {
                    Some(i) => {
                        spill.swap_remove(i);
                        true
                    }
                    None => false,
                },
            };
            if !found {
                return false;
            }
            if spill.is_empty() {
                // A crowd that has moved on should not leave its room behind.
                spill.shrink_to(INLINE);
                self.free_spills.push(c.spill);
                c.spill = NO_SPILL;
            } else if spill.capacity() > 8 && spill.len() * 4 <= spill.capacity() {
                spill.shrink_to(spill.len() * 2);
            }
        }
        c.len -= 1;
        self.len -= 1;
        true
    }

    /// Moves the item of `cell` that `is_it` picks to `pos` (inserting it if it
    /// was not found); returns its new cell.
    pub fn relocate(&mut self, cell: u32, pos: Vec2, item: T, is_it: impl Fn(&T) -> bool) -> u32 {
        if self.move_within(cell, pos, &is_it) {
            return cell;
        }
        self.remove(cell, is_it);
        self.insert(pos, item)
    }

    /// Moves the item of `cell` that `is_it` picks to `pos`, if `pos` lies in
    /// the same cell, and returns whether it did: `false` (and nothing changed)
    /// if `pos` is in another cell or the item is not in `cell`. It takes
    /// `&self`, so many threads may move their own items at once (each item by
    /// one thread only): positions are written atomically, and nothing else.
    pub fn move_within(&self, cell: u32, pos: Vec2, is_it: impl Fn(&T) -> bool) -> bool {
        if self.geometry.cell_of(pos) != cell {
            return false;
        }
        let Some(c) = self.cells.get(cell as usize) else {
            return false;
        };
        let (inline, spilled) = self.entries(c);
        let found = inline.iter().find(|(_, t)| is_it(t));
        match found.or_else(|| spilled.iter().find(|(_, t)| is_it(t))) {
            Some((at, _)) => {
                at.set(pos);
                true
            }
            None => false,
        }
    }

    /// Asks the processor to fetch the lines of `cell` (its length and inline
    /// items) ahead of a read or write of it, so that a loop over many cells
    /// waits for several misses at once rather than one after another. A
    /// hint: it changes nothing, and a cell outside the grid is ignored.
    #[inline(always)]
    pub fn prefetch(&self, cell: u32) {
        if let Some(c) = self.cells.get(cell as usize) {
            crate::prefetch::prefetch(c);
        }
    }

    /// Asks for the cells that [`for_each_within`](Self::for_each_within)
    /// of `center` and `radius` reads (up to four lines a row), so that a
    /// caller with other work to do first finds them cached.
    #[inline]
    pub fn prefetch_around(&self, center: Vec2, radius: f32) {
        for (first, last) in self.geometry.rows_around(center, radius) {
            if let Some(row) = self.cells.get(first as usize..=last as usize) {
                crate::prefetch::prefetch_slice(row, 4);
            }
        }
    }

    /// Calls `f(position, item, squared distance)` for every item within `radius`
    /// of `center`. Returns how many items were examined (the query's cost).
    pub fn for_each_within(&self, center: Vec2, radius: f32, f: impl FnMut(Vec2, &T, f32)) -> u32 {
        self.for_each_within_budget(center, radius, u32::MAX, f)
    }

    /// Like [`for_each_within`](Self::for_each_within), but starts no new row of
    /// cells once `budget` items have been examined: the same rows, in the same
    /// order, on every run.
    pub fn for_each_within_budget(
        &self,
        center: Vec2,
        radius: f32,
        budget: u32,
        mut f: impl FnMut(Vec2, &T, f32),
    ) -> u32 {
        let r2 = radius * radius;
        let mut visit = |entries: &[(SharedPos, T)]| {
            for (p, t) in entries {
                let p = p.get();
                let d2 = p.distance_squared(center);
                if d2 <= r2 {
                    f(p, t, d2);
                }
            }
        };
        let mut examined = 0;
        for (first, last) in self.geometry.rows_around(center, radius) {
            if examined >= budget {
                break;
            }
            for cell in &self.cells[first as usize..=last as usize] {
                examined += cell.len;
                // Two plain loops: a chained iterator costs a branch an item.
                let (inline, spilled) = self.entries(cell);
                visit(inline);
                visit(spilled);
            }
        }
        examined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{mix, unit_f64};

    fn points(n: u64, size: Vec2, seed: u64) -> Vec<(Vec2, u32)> {
        (0..n)
            .map(|i| {
                let h = mix(seed, i);
                let p = Vec2::new(
                    unit_f64(h) as f32 * size.x,
                    unit_f64(mix(h, 1)) as f32 * size.y,
                );
                (p, i as u32)
            })
            .collect()
    }

    fn brute(points: &[(Vec2, u32)], c: Vec2, r: f32) -> Vec<u32> {
        let mut v: Vec<u32> = points
            .iter()
            .filter(|(p, _)| p.distance_squared(c) <= r * r)
            .map(|(_, i)| *i)
            .collect();
        v.sort_unstable();
        v
    }

    /// A cell's neighbours are the cells whose centres lie one cell away in
    /// each axis, at most, and never the cell itself; corners have three,
    /// edges five, the rest eight.
    #[test]
    fn neighbours_are_the_adjacent_cells() {
        let g = GridGeometry::new(Vec2::new(50.0, 30.0), 10.0);
        assert_eq!((g.cells(), g.cell_center(0)), (15, Vec2::new(5.0, 5.0)));
        assert_eq!(g.cell_center(7), Vec2::new(25.0, 15.0));
        for cell in 0..g.cells() as u32 {
            let c = g.cell_center(cell);
            assert_eq!(g.cell_of(c), cell);
            let got: Vec<u32> = g.neighbours(c).collect();
            let want: Vec<u32> = (0..g.cells() as u32)
                .filter(|&o| o != cell)
                .filter(|&o| {
                    let d = (g.cell_center(o) - c).abs();
                    d.x <= 10.5 && d.y <= 10.5
                })
                .collect();
            assert_eq!(got, want, "cell {cell}");
        }
        assert_eq!(g.neighbours(Vec2::ZERO).count(), 3);
        assert_eq!(g.neighbours(Vec2::new(25.0, 5.0)).count(), 5);
        assert_eq!(g.neighbours(Vec2::new(25.0, 15.0)).count(), 8);
    }

    /// Both grids find exactly what a brute-force scan finds, for random
    /// queries of random radii, including ones reaching outside the world.
    #[test]
    fn radius_queries_match_a_brute_force_scan() {
        let size = Vec2::new(300.0, 170.0);
        let pts = points(2000, size, 9);
        let static_grid = UniformGrid::build(size, 25.0, pts.iter().copied());
        let mut cells = CellGrid::new(size, 25.0);
        for &(p, i) in &pts {
            cells.insert(p, i);
        }
        for q in 0..300u64 {
            let h = mix(77, q);
            let c = Vec2::new(
                unit_f64(h) as f32 * 340.0 - 20.0,
                unit_f64(mix(h, 1)) as f32 * 210.0 - 20.0,
            );
            let r = unit_f64(mix(h, 2)) as f32 * 60.0;
            let want = brute(&pts, c, r);
            for found in [
                {
                    let mut v = Vec::new();
                    static_grid.for_each_within(c, r, |_, &i, _| v.push(i));
                    v
                },
                {
                    let mut v = Vec::new();
                    cells.for_each_within(c, r, |_, &i, _| v.push(i));
                    v
                },
            ] {
                let mut found = found;
                found.sort_unstable();
                assert_eq!(found, want, "query at {c:?} radius {r}");
            }
        }
    }

    #[test]
    fn moves_within_a_cell_happen_in_place_and_others_are_refused() {
        let mut grid = CellGrid::new(Vec2::splat(100.0), 10.0);
        let cell = grid.insert(Vec2::new(12.0, 12.0), 1u32);
        grid.insert(Vec2::new(13.0, 13.0), 2u32);
        assert!(grid.move_within(cell, Vec2::new(19.0, 11.0), |&i| i == 1));
        assert!(
            !grid.move_within(cell, Vec2::new(21.0, 11.0), |&i| i == 1),
            "another cell"
        );
        assert!(
            !grid.move_within(cell, Vec2::new(15.0, 15.0), |&i| i == 3),
            "not there"
        );
        let mut seen = Vec::new();
        grid.for_each_within(Vec2::splat(50.0), 100.0, |p, &i, _| seen.push((i, p)));
        seen.sort_by_key(|(i, _)| *i);
        assert_eq!(
            seen,
            [(1, Vec2::new(19.0, 11.0)), (2, Vec2::new(13.0, 13.0))]
        );
    }

    /// A crowd fills a cell past its inline entries and leaves again, in an
    /// order that removes inline and spilled items alike: the cell holds exactly
    /// the items still there at every step, and a second crowd reuses the spill
    /// list of the first.
    #[test]
    fn crowded_cells_spill_and_give_their_room_back() {
        let mut grid = CellGrid::new(Vec2::splat(100.0), 10.0);
        let at = |i: u32| Vec2::new(51.0 + i as f32 * 0.5, 52.0);
        let contents = |grid: &CellGrid<u32>| {
            let mut v = Vec::new();
            let examined = grid.for_each_within(Vec2::new(55.0, 55.0), 6.0, |_, &i, _| v.push(i));
            v.sort_unstable();
            (examined, v)
        };
        for crowd in 0..2u32 {
            let ids: Vec<u32> = (0..10).map(|i| crowd * 100 + i).collect();
            let mut present: Vec<u32> = Vec::new();
            for &id in &ids {
                assert_eq!(grid.insert(at(id % 100), id), 55);
                present.push(id);
            }
            assert_eq!(contents(&grid), (10, present.clone()));
            for &id in [0, 9, 4, 1, 8, 2, 7, 3, 6, 5].iter().map(|k| &ids[*k]) {
                assert!(grid.remove(55, |&i| i == id), "remove {id}");
                present.retain(|&i| i != id);
                assert_eq!(contents(&grid).1, present, "after removing {id}");
                assert_eq!(grid.len(), present.len());
            }
            assert!(!grid.remove(55, |&i| i == ids[0]), "already gone");
            assert_eq!(contents(&grid), (0, vec![]));
            assert_eq!(
                grid.spills.len(),
                1,
                "crowd {crowd} reuses the one spill list"
            );
        }
    }

    #[test]
    fn relocating_keeps_the_cell_grid_consistent() {
        let size = Vec2::splat(100.0);
        let mut grid = CellGrid::new(size, 10.0);
        let mut pts = points(200, size, 5);
        let mut cells: Vec<u32> = pts.iter().map(|&(p, i)| grid.insert(p, i)).collect();
        let moved = points(200, size, 6);
        for (k, &(p, _)) in moved.iter().enumerate().filter(|(k, _)| k % 3 == 0) {
            let id = pts[k].1;
            cells[k] = grid.relocate(cells[k], p, id, |&i| i == id);
            pts[k].0 = p;
        }
        assert_eq!(grid.len(), 200);
        let mut all = Vec::new();
        grid.for_each_within(Vec2::splat(50.0), 200.0, |p, &i, _| all.push((i, p)));
        all.sort_by_key(|(i, _)| *i);
        assert_eq!(all, pts.iter().map(|&(p, i)| (i, p)).collect::<Vec<_>>());
        assert!(grid.remove(cells[7], |&i| i == 7));
        assert!(!grid.remove(cells[7], |&i| i == 7));
        assert_eq!(grid.len(), 199);
    }
}
