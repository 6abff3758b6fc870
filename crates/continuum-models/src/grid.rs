//! A grid of unit cells laid over the world and wrapped at its edges: the
//! ground Schelling's residents live on and wolf-sheep's animals graze.

use bevy_math::Vec2;

/// Most cells a grid may have (a world of 16 384 × 16 384).
pub const MAX_CELLS: u64 = 1 << 28;

/// A `width × height` grid of unit cells on a torus; cell `y * width + x`
/// covers `[x, x + 1) × [y, y + 1)` of the world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Torus {
    width: u32,
    height: u32,
}

impl Torus {
    /// A grid of `width × height` cells (at least one each way).
    ///
    /// # Panics
    /// With more than [`MAX_CELLS`] cells.
    pub fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width.max(1), height.max(1));
        let cells = u64::from(width) * u64::from(height);
        assert!(cells <= MAX_CELLS, "a grid of {cells} cells");
        Self { width, height }
    }

    /// The grid of a world of `size`, a cell per whole unit; `None`, with an
    /// error naming `what` lays it, beyond [`MAX_CELLS`] cells.
    pub fn of_world(size: Vec2, what: &str) -> Option<Self> {
        let side = |v: f32| v.floor().clamp(1.0, u32::MAX as f32) as u64;
        let (w, h) = (side(size.x), side(size.y));
        if w * h > MAX_CELLS {
            tracing::error!(
                width = w,
                height = h,
                "{what}: a grid of the world's size would have more than {MAX_CELLS} cells; its agents are retired"
            );
            return None;
        }
        Some(Self::new(w as u32, h as u32))
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Cells in all (0 for the default, empty grid).
    pub fn cells(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The cell at `(x, y)`, round the torus.
    pub fn cell(&self, x: i32, y: i32) -> u32 {
        let x = x.rem_euclid(self.width as i32) as u32;
        let y = y.rem_euclid(self.height as i32) as u32;
        y * self.width + x
    }

    /// The coordinates of `cell`.
    pub fn coords(&self, cell: u32) -> (i32, i32) {
        ((cell % self.width) as i32, (cell / self.width) as i32)
    }

    /// The cell a position lies in.
    pub fn cell_of(&self, p: Vec2) -> u32 {
        self.cell(p.x.floor() as i32, p.y.floor() as i32)
    }

    /// The centre of `cell` in world units.
    pub fn centre(&self, cell: u32) -> Vec2 {
        let (x, y) = self.coords(cell);
        Vec2::new(x as f32 + 0.5, y as f32 + 0.5)
    }

    /// `p` brought back onto the torus.
    pub fn wrap(&self, p: Vec2) -> Vec2 {
        let wrap = |v: f32, side: u32| {
            let side = side as f32;
            let v = v.rem_euclid(side);
            // rem_euclid of a value just below 0 can round up to `side`.
            if v >= side { 0.0 } else { v }
        };
        Vec2::new(wrap(p.x, self.width), wrap(p.y, self.height))
    }
}
