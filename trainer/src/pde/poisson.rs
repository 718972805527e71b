//! Poisson `Laplacian(u) = f`, `u = 0` on the boundary.
//!
//! `-Laplacian` is SPD and input-independent: factorised once by Cholesky,
//! then every `f` costs two triangular solves.

use super::assemble::{StencilMatrix, Storage, node_of_unknown};
use super::sparse::Cholesky;
use super::{scatter_solution, validate_field};
use crate::error::Error;
use crate::grid::Grid;

/// Reusable Poisson solver for one grid (one per thread).
pub struct PoissonSolver {
    grid: Grid,
    factor: Cholesky,
    x: Vec<f64>,
}

impl PoissonSolver {
    /// Assembles and factorises `-Laplacian` once.
    pub fn new(grid: Grid) -> Result<Self, Error> {
        let grid = Grid::new(grid.n)?;
        let mut matrix = StencilMatrix::new(grid, Storage::Upper)?;
        matrix.fill(None, 1.0, 0.0);
        let mut factor = Cholesky::new(matrix.matrix().as_ref())?;
        factor.factor(matrix.matrix().as_ref())?;
        Ok(PoissonSolver { grid, factor, x: vec![0.0; grid.interior_len()] })
    }

    /// Solves `Laplacian(u) = f` into `u` (n*n, zero boundary); only the
    /// interior values of `f` are used.
    pub fn solve_into(&mut self, f: &[f64], u: &mut [f64]) -> Result<(), Error> {
        let n2 = self.grid.len();
        validate_field("f", f, n2)?;
        super::check_len("u", u, n2)?;
        // The factor is of -Laplacian, hence the sign flip.
        for (p, xp) in self.x.iter_mut().enumerate() {
            *xp = -f[node_of_unknown(self.grid, p)];
        }
        self.factor.solve_in_place(&mut self.x)?;
        scatter_solution(self.grid, &self.x, u)
    }
}
