//! The node grid every field in ddis lives on (docs/science.md section 4).
//!
//! `n x n` nodes on `[0,1]^2`, boundary included, stored row-major with
//! row = y and column = x. This module only maps indices to coordinates; it
//! knows nothing about PDEs or random fields.

use crate::error::Error;

/// An `n x n` node grid on the unit square, boundary nodes included.
///
/// Node `[i, j]` sits at `x = j/(n-1)`, `y = i/(n-1)` and is stored at
/// flat index `i*n + j` (C order). Construct it with [`Grid::new`], which
/// rejects grids without an interior.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grid {
    /// Nodes per side (>= 3 when built through [`Grid::new`]).
    pub n: usize,
}

impl Grid {
    /// Smallest grid with at least one interior node.
    pub const MIN_N: usize = 3;

    /// A grid with `n` nodes per side; `n < 3` has no interior node to solve
    /// for, and `n*n` must fit in `usize`.
    pub fn new(n: usize) -> Result<Grid, Error> {
        if n < Self::MIN_N || n.checked_mul(n).is_none() {
            return Err(Error::GridTooSmall { n, min: Self::MIN_N });
        }
        Ok(Grid { n })
    }

    /// Node spacing `1/(n-1)`.
    pub fn h(&self) -> f64 {
        1.0 / (self.n - 1) as f64
    }

    /// Number of nodes, `n*n`.
    pub fn len(&self) -> usize {
        self.n * self.n
    }

    /// Always false for a grid from [`Grid::new`]; present for clippy's
    /// `len_without_is_empty` and for hand-built `Grid { n: 0 }`.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of interior (unknown) nodes, `(n-2)^2`.
    pub fn interior_len(&self) -> usize {
        let m = self.n.saturating_sub(2);
        m * m
    }

    /// x coordinate of column `j`.
    pub fn x(&self, j: usize) -> f64 {
        j as f64 / (self.n - 1) as f64
    }

    /// y coordinate of row `i`.
    pub fn y(&self, i: usize) -> f64 {
        i as f64 / (self.n - 1) as f64
    }

    /// Whether node `[i, j]` lies on the boundary of the square.
    pub fn is_boundary(&self, i: usize, j: usize) -> bool {
        i == 0 || j == 0 || i + 1 == self.n || j + 1 == self.n
    }

    /// Flat row-major index of node `[i, j]`.
    pub fn idx(&self, i: usize, j: usize) -> usize {
        i * self.n + j
    }

    /// `[i, j]` of flat index `k` (inverse of [`Grid::idx`]).
    pub fn ij(&self, k: usize) -> (usize, usize) {
        (k / self.n, k % self.n)
    }

    /// The node nearest to the physical point `(x, y)`, or `None` when the
    /// point is non-finite or outside `[0,1]^2`. A point exactly halfway
    /// between two nodes goes to the one farther from the origin
    /// (`f64::round`).
    pub fn nearest_node(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let inside = |t: f64| t.is_finite() && (0.0..=1.0).contains(&t);
        if !inside(x) || !inside(y) {
            return None;
        }
        let scale = (self.n - 1) as f64;
        // Both products lie in [0, n-1], so the casts cannot truncate.
        let j = (x * scale).round() as usize;
        let i = (y * scale).round() as usize;
        Some((i.min(self.n - 1), j.min(self.n - 1)))
    }
}

/// `values` holds exactly `expected` entries.
pub(crate) fn check_len(field: &'static str, values: &[f64], expected: usize) -> Result<(), Error> {
    if values.len() != expected {
        return Err(Error::ShapeMismatch { field, expected, got: values.len() });
    }
    Ok(())
}

/// Length and finiteness of a field on the grid.
pub(crate) fn validate_field(field: &'static str, values: &[f64], expected: usize) -> Result<(), Error> {
    check_len(field, values, expected)?;
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { field, index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_grids_without_interior() {
        for n in 0..3 {
            assert!(matches!(Grid::new(n), Err(Error::GridTooSmall { n: got, .. }) if got == n));
        }
        assert!(Grid::new(3).is_ok());
    }

    #[test]
    fn coordinates_follow_row_y_column_x() {
        let g = Grid::new(5).unwrap();
        assert_eq!(g.h(), 0.25);
        assert_eq!(g.len(), 25);
        assert_eq!(g.interior_len(), 9);
        assert_eq!(g.idx(1, 3), 8);
        assert_eq!(g.ij(8), (1, 3));
        assert_eq!((g.x(3), g.y(1)), (0.75, 0.25));
        assert!(g.is_boundary(0, 2) && g.is_boundary(4, 2) && g.is_boundary(2, 0) && g.is_boundary(2, 4));
        assert!(!g.is_boundary(2, 2));
    }

    #[test]
    fn nearest_node_maps_physical_points() {
        let g = Grid::new(5).unwrap();
        assert_eq!(g.nearest_node(0.75, 0.25), Some((1, 3)));
        assert_eq!(g.nearest_node(0.0, 1.0), Some((4, 0)));
        assert_eq!(g.nearest_node(0.7, 0.1), Some((0, 3)));
        assert_eq!(g.nearest_node(1.01, 0.5), None);
        assert_eq!(g.nearest_node(-0.01, 0.5), None);
        assert_eq!(g.nearest_node(f64::NAN, 0.5), None);
        assert_eq!(g.nearest_node(0.5, f64::INFINITY), None);
    }
}
