//! Darcy flow `-div(a grad u) = f`, `u = 0` on the boundary.
//!
//! The matrix is SPD and its pattern does not depend on `a`, so the solver
//! keeps one symbolic Cholesky and refactorises numerically per field.

use super::assemble::{StencilMatrix, Storage, node_of_unknown};
use super::sparse::Cholesky;
use super::{scatter_solution, validate_coefficient, validate_field};
use crate::error::Error;
use crate::grid::Grid;

/// Reusable Darcy solver for one grid (one per thread).
pub struct DarcySolver {
    grid: Grid,
    matrix: StencilMatrix,
    factor: Cholesky,
    /// Interior right-hand side / solution buffer.
    x: Vec<f64>,
    /// `f = 1` on every node: the data problem's right-hand side.
    unit_rhs: Vec<f64>,
}

impl DarcySolver {
    /// Builds the pattern and its symbolic factorisation.
    pub fn new(grid: Grid) -> Result<Self, Error> {
        let grid = Grid::new(grid.n)?;
        let matrix = StencilMatrix::new(grid, Storage::Upper)?;
        let factor = Cholesky::new(matrix.matrix().as_ref())?;
        Ok(DarcySolver { grid, matrix, factor, x: vec![0.0; grid.interior_len()], unit_rhs: vec![1.0; grid.len()] })
    }

    /// The right-hand side `f = 1` of the data problem, on all n*n nodes.
    pub fn unit_rhs(&self) -> &[f64] {
        &self.unit_rhs
    }

    /// Solves `-div(a grad u) = rhs` (`rhs = 1` when `None`) into `u`
    /// (n*n, zero boundary). `a` must be finite and > 0 on all n*n nodes.
    pub fn solve_into(&mut self, a: &[f64], rhs: Option<&[f64]>, u: &mut [f64]) -> Result<(), Error> {
        let n2 = self.grid.len();
        validate_coefficient(a, n2)?;
        let rhs = match rhs {
            Some(rhs) => {
                validate_field("rhs", rhs, n2)?;
                rhs
            }
            None => &self.unit_rhs,
        };
        super::check_len("u", u, n2)?;

        self.matrix.fill(Some(a), 1.0, 0.0);
        self.factor.factor(self.matrix.matrix().as_ref())?;
        for (p, xp) in self.x.iter_mut().enumerate() {
            *xp = rhs[node_of_unknown(self.grid, p)];
        }
        self.factor.solve_in_place(&mut self.x)?;
        scatter_solution(self.grid, &self.x, u)
    }
}
