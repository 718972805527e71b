//! Helmholtz `Laplacian(u) + k^2 u = f`, `u = 0` on the boundary.
//!
//! For `k^2` above the smallest eigenvalue of `-Laplacian` (about
//! `2 pi^2`) the operator is indefinite, so it is factorised by sparse LU,
//! once per `(n, k)`. The discrete eigenvalues are known in closed form, so
//! a `k` at which the operator is numerically singular is rejected up front
//! instead of producing a huge, meaningless `u`.

use super::assemble::{StencilMatrix, Storage, node_of_unknown};
use super::sparse::Lu;
use super::{scatter_solution, validate_field};
use crate::error::Error;
use crate::grid::Grid;

/// Largest accepted 2-norm condition number of `Laplacian + k^2 I`: beyond
/// it a backward-stable solve still has a small residual, but `u` itself
/// carries relative errors of `condition * eps` > 1e-4.
const MAX_CONDITION: f64 = 1e12;

/// Exact 2-norm condition number of the symmetric `Laplacian_h + k^2 I`,
/// from the eigenvalues `-(mu_p + mu_q) + k^2` of the 5-point Laplacian,
/// `mu_p = (4/h^2) sin^2(p pi h / 2)`, `p = 1..n-2`.
fn condition_number(grid: Grid, k: f64) -> f64 {
    let h = grid.h();
    let mu: Vec<f64> =
        (1..grid.n - 1).map(|p| 4.0 / (h * h) * (p as f64 * std::f64::consts::PI * h / 2.0).sin().powi(2)).collect();
    let k2 = k * k;
    let (mut smallest, mut largest) = (f64::INFINITY, 0.0f64);
    for &mp in &mu {
        for &mq in &mu {
            let lambda = (k2 - mp - mq).abs();
            smallest = smallest.min(lambda);
            largest = largest.max(lambda);
        }
    }
    largest / smallest
}

/// Reusable Helmholtz solver for one grid and wave number (one per thread).
pub struct HelmholtzSolver {
    grid: Grid,
    k: f64,
    factor: Lu,
    x: Vec<f64>,
}

impl HelmholtzSolver {
    /// Assembles and LU-factorises `Laplacian + k^2 I`; `k` must be finite.
    pub fn new(grid: Grid, k: f64) -> Result<Self, Error> {
        let grid = Grid::new(grid.n)?;
        if !k.is_finite() {
            return Err(Error::InvalidConfig { name: "helmholtz_k", value: k, reason: "must be finite" });
        }
        let condition = condition_number(grid, k);
        if condition > MAX_CONDITION {
            return Err(Error::ResonantHelmholtz { k, condition });
        }
        let mut matrix = StencilMatrix::new(grid, Storage::Full)?;
        matrix.fill(None, -1.0, k * k);
        let factor = Lu::new(matrix.matrix().as_ref())?;
        Ok(HelmholtzSolver { grid, k, factor, x: vec![0.0; grid.interior_len()] })
    }

    /// The wave number.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// Solves `Laplacian(u) + k^2 u = f` into `u` (n*n, zero boundary); only
    /// the interior values of `f` are used.
    pub fn solve_into(&mut self, f: &[f64], u: &mut [f64]) -> Result<(), Error> {
        let n2 = self.grid.len();
        validate_field("f", f, n2)?;
        super::check_len("u", u, n2)?;
        for (p, xp) in self.x.iter_mut().enumerate() {
            *xp = f[node_of_unknown(self.grid, p)];
        }
        self.factor.solve_in_place(&mut self.x);
        scatter_solution(self.grid, &self.x, u)
    }
}
