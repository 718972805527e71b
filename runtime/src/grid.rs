//! The grid convention shared with the trainer (docs/science.md section 4): `n x n`
//! nodes on `[0,1]^2`, boundary included; node `[i, j]` sits at
//! `x = j/(n-1)`, `y = i/(n-1)`, stored row-major at `i*n + j`.

use crate::Error;

/// An `n x n` node grid on the unit square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Grid {
    n: usize,
}

impl Grid {
    /// Largest side accepted: every flat node index `i * n + j` fits in a
    /// `u32` (how sensor sets store them).
    pub const MAX_N: usize = 65_535;

    /// A grid of `n` nodes per side; `3 <= n <= MAX_N` so that it has an
    /// interior and its node indices fit in `u32`.
    pub const fn new(n: usize) -> Result<Self, Error> {
        if n < 3 {
            Err(Error::GridTooSmall { n })
        } else if n > Self::MAX_N {
            Err(Error::GridTooLarge { n, max: Self::MAX_N })
        } else {
            Ok(Self { n })
        }
    }

    /// Nodes on the grid, `n * n`.
    pub const fn len(&self) -> usize {
        self.n * self.n
    }

    /// Always false (a grid has at least 3 x 3 nodes); for clippy.
    pub const fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Nodes per side.
    pub const fn n(&self) -> usize {
        self.n
    }

    /// The flat index of the node nearest to the physical point `(x, y)`.
    /// `index` names the sensor in the error.
    pub fn nearest_node(&self, x: f32, y: f32, index: usize) -> Result<usize, Error> {
        let inside = |t: f32| t.is_finite() && (0.0..=1.0).contains(&t);
        if !inside(x) || !inside(y) {
            return Err(Error::SensorOffGrid { index });
        }
        let last = (self.n - 1) as f32;
        // Round half up; `t * last` lies in [0, n-1], so the cast is in range.
        let snap = |t: f32| ((t * last + 0.5) as usize).min(self.n - 1);
        Ok(snap(y) * self.n + snap(x))
    }
}

/// Sets the boundary nodes of the row-major `n x n` field `field` to
/// `value` (the mask `D` of a prior that vanishes on the boundary, when
/// `value` is 0). A field of another length is left as it is past its
/// last whole row.
pub(crate) fn fill_boundary(field: &mut [f32], n: usize, value: f32) {
    if n == 0 {
        return;
    }
    let rows = field.len() / n;
    for (i, row) in field.chunks_exact_mut(n).enumerate() {
        if i == 0 || i + 1 == rows {
            row.fill(value);
        } else {
            row[0] = value;
            row[n - 1] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_is_y_and_column_is_x() {
        let g = Grid::new(5).unwrap();
        // x = 0.25 -> column 1, y = 0.75 -> row 3.
        assert_eq!(g.nearest_node(0.25, 0.75, 0), Ok(3 * 5 + 1));
        assert_eq!(g.nearest_node(1.0, 1.0, 0), Ok(24));
        assert_eq!(g.nearest_node(0.0, 0.0, 0), Ok(0));
        // 0.1 * 4 = 0.4 -> node 0; 0.2 * 4 = 0.8 -> node 1.
        assert_eq!(g.nearest_node(0.1, 0.2, 0), Ok(5));
    }

    #[test]
    fn fill_boundary_touches_exactly_the_boundary() {
        let n = 5;
        let mut f = [1.0f32; 25];
        fill_boundary(&mut f, n, 0.0);
        for (k, &v) in f.iter().enumerate() {
            let (i, j) = (k / n, k % n);
            let boundary = i == 0 || j == 0 || i == n - 1 || j == n - 1;
            assert_eq!(v, if boundary { 0.0 } else { 1.0 }, "node ({i}, {j})");
        }
    }

    #[test]
    fn off_domain_and_non_finite_are_errors() {
        let g = Grid::new(8).unwrap();
        for (k, (x, y)) in [(-0.01, 0.5), (0.5, 1.01), (f32::NAN, 0.5), (0.5, f32::INFINITY)].into_iter().enumerate() {
            assert_eq!(g.nearest_node(x, y, k), Err(Error::SensorOffGrid { index: k }), "({x}, {y})");
        }
        assert_eq!(Grid::new(2), Err(Error::GridTooSmall { n: 2 }));
        assert_eq!(Grid::new(usize::MAX), Err(Error::GridTooLarge { n: usize::MAX, max: Grid::MAX_N }));
        let big = Grid::new(Grid::MAX_N).unwrap();
        assert_eq!(big.nearest_node(1.0, 1.0, 0), Ok(big.len() - 1));
        assert!(big.len() - 1 <= u32::MAX as usize);
    }
}
