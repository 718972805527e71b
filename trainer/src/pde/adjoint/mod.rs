//! Derivatives of the exact solvers, so a posterior sampler can guide through
//! the true physics ("plug-in exact physics", docs/science.md section 2).
//!
//! Job: `J v` (linearised solve), `J^T w` (adjoint method) of the map
//! `input -> u` of a [`Solver`], and the observation-loss gradient a Langevin
//! step needs. Boundary: the discretisation and factorisations stay in
//! `assemble.rs` and the per-PDE files; this file only forms right-hand sides,
//! calls [`Solver::solve_rhs`] and contracts the result. No sampler logic.
//!
//! Every operator here is symmetric, so the adjoint solve is a plain solve.
//!
//! - Poisson and Helmholtz are linear: `u = E^T M E f` with `E` taking the
//!   interior values and `M = (sign K + shift I)^{-1}` symmetric, so
//!   `J = J^T` is the solve itself; boundary inputs have derivative 0.
//! - Darcy, `K(a) u = 1` with `(K u)_p = sum_q c_pq (u_p - u_q) / h^2` over
//!   the four faces of each interior `p` (`u = 0` on the boundary) and
//!   `c_pq = 2 a_p a_q / (a_p + a_q)`. Differentiating,
//!   `J v = -K^{-1} (dK[v] u)`. For `J^T w`, with `K lambda = w`,
//!   `<w, J v> = -lambda^T dK[v] u = -sum_faces dc_pq[v] (lambda_p - lambda_q)
//!   (u_p - u_q) / h^2`, and `dc_pq / da_p = 2 a_q^2 / (a_p + a_q)^2`. A face
//!   between an interior and a boundary node carries the boundary node's own
//!   `a`, so boundary coefficients get a gradient too (corners do not: they
//!   touch no interior node).
//!
//! Cost: Poisson and Helmholtz reuse their one factorisation. Darcy's
//! `solve_rhs` refactorises `K(a)` on every call, so `jvp`/`vjp` cost one
//! numeric Cholesky plus one solve each.

use super::{PdeKind, Solver, validate_coefficient, validate_field};
use crate::error::Error;
use crate::grid::Grid;

impl Solver {
    /// `J v`, `J = d u / d input` at `input` (the linearised solve).
    ///
    /// `u` must be the solution at `input` (from [`Solver::solve`]); it is
    /// not recomputed, and its boundary values are taken as the zero
    /// Dirichlet data whatever they hold. All vectors are n*n, row-major. For
    /// Poisson and Helmholtz `J v` does not depend on `input` or `u` (they
    /// are only validated) and ignores the boundary values of `v`. The
    /// result is zero on the boundary.
    pub fn jvp(&mut self, input: &[f64], u: &[f64], v: &[f64]) -> Result<Vec<f64>, Error> {
        self.validate_linearisation(input, u)?;
        validate_field("v", v, self.grid.len())?;
        match self.kind() {
            PdeKind::Darcy => {
                let u = with_zero_boundary(self.grid, u);
                let rhs = darcy_tangent_rhs(self.grid, input, &u, v);
                self.solve_rhs(Some(input), &rhs)
            }
            PdeKind::Poisson | PdeKind::Helmholtz => self.solve_rhs(None, v),
        }
    }

    /// `J^T w` by the adjoint method: the gradient with respect to the input
    /// of `<w, u(input)>` (sum over all n*n nodes).
    ///
    /// Same contract for `input` and `u` as [`Solver::jvp`]. Boundary values
    /// of `w` do not matter (`u` is zero there). For Poisson and Helmholtz
    /// the result is zero on the boundary (the solver ignores boundary
    /// sources); for Darcy boundary coefficients have a gradient through the
    /// faces that touch interior nodes.
    pub fn vjp(&mut self, input: &[f64], u: &[f64], w: &[f64]) -> Result<Vec<f64>, Error> {
        self.validate_linearisation(input, u)?;
        validate_field("w", w, self.grid.len())?;
        match self.kind() {
            PdeKind::Darcy => {
                let u = with_zero_boundary(self.grid, u);
                // K is symmetric: the adjoint state solves the same system.
                let lambda = self.solve_rhs(Some(input), w)?;
                let grad = darcy_adjoint_gradient(self.grid, input, &u, &lambda);
                match grad.iter().position(|g| !g.is_finite()) {
                    Some(index) => Err(Error::NonFiniteSolution { index }),
                    None => Ok(grad),
                }
            }
            PdeKind::Poisson | PdeKind::Helmholtz => self.solve_rhs(None, w),
        }
    }

    /// The observation loss `0.5 * sum_k weight * (u[nodes[k]] - values[k])^2`
    /// and its gradient with respect to the input, from one forward and one
    /// adjoint solve. Returns `(loss, gradient, u)`, `u` the solution at
    /// `input`.
    ///
    /// `nodes` are flat row-major indices (< n*n; repeats count once each),
    /// `values` the observed `u` there, `weight` finite and >= 0 (e.g.
    /// `1 / tau^2`).
    pub fn observation_loss_grad(
        &mut self,
        input: &[f64],
        nodes: &[usize],
        values: &[f64],
        weight: f64,
    ) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let n2 = self.grid.len();
        validate_field("values", values, nodes.len())?;
        if let Some(&node) = nodes.iter().find(|&&node| node >= n2) {
            return Err(Error::InvalidConfig {
                name: "nodes",
                value: node as f64,
                reason: "observation node index must be < n*n",
            });
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::InvalidConfig { name: "weight", value: weight, reason: "must be finite and >= 0" });
        }

        let u = self.solve(input)?;
        let mut sum_sq = 0.0;
        // d loss / d u, accumulated so that a repeated node counts twice.
        let mut w = vec![0.0; n2];
        for (&node, &value) in nodes.iter().zip(values) {
            let r = u[node] - value;
            sum_sq += r * r;
            w[node] += weight * r;
        }
        let grad = self.vjp(input, &u, &w)?;
        Ok((0.5 * weight * sum_sq, grad, u))
    }

    /// The checks shared by [`Solver::jvp`] and [`Solver::vjp`]: the input
    /// as the solver would check it, and `u` on the grid and finite.
    fn validate_linearisation(&self, input: &[f64], u: &[f64]) -> Result<(), Error> {
        let n2 = self.grid.len();
        match self.kind() {
            PdeKind::Darcy => validate_coefficient(input, n2)?,
            PdeKind::Poisson | PdeKind::Helmholtz => validate_field("f", input, n2)?,
        }
        validate_field("u", u, n2)
    }
}

/// A copy of `u` with its boundary set to the zero Dirichlet value.
fn with_zero_boundary(grid: Grid, u: &[f64]) -> Vec<f64> {
    let mut out = u.to_vec();
    for (k, value) in out.iter_mut().enumerate() {
        let (i, j) = grid.ij(k);
        if grid.is_boundary(i, j) {
            *value = 0.0;
        }
    }
    out
}

/// `(dc/da_p, dc/da_q)` of the face coefficient `c = 2 a_p a_q / (a_p + a_q)`,
/// i.e. `2 a_q^2 / (a_p + a_q)^2` and its mirror, written through the ratios
/// `a_q / (a_p + a_q)` in (0, 1) so that no square can overflow.
#[inline]
fn face_partials(ap: f64, aq: f64) -> (f64, f64) {
    let s = ap + aq;
    let (tp, tq) = (aq / s, ap / s);
    (2.0 * tp * tp, 2.0 * tq * tq)
}

/// Right-hand side `-(dK/da [v]) u` of the tangent system `K(a) du = ...`,
/// on the interior nodes (zero on the boundary). Loops over interior centres
/// and their four faces like `assemble::apply_diffusion`; `u` must be zero on
/// the boundary.
fn darcy_tangent_rhs(grid: Grid, a: &[f64], u: &[f64], v: &[f64]) -> Vec<f64> {
    let n = grid.n;
    let inv_h2 = 1.0 / (grid.h() * grid.h());
    let mut rhs = vec![0.0; grid.len()];
    for i in 1..n - 1 {
        for j in 1..n - 1 {
            let c = i * n + j;
            let mut acc = 0.0;
            for nb in [c - n, c - 1, c + 1, c + n] {
                let (dc_c, dc_nb) = face_partials(a[c], a[nb]);
                acc += (dc_c * v[c] + dc_nb * v[nb]) * (u[c] - u[nb]);
            }
            rhs[c] = -acc * inv_h2;
        }
    }
    rhs
}

/// `J^T w = -sum_faces (dc_pq/da) (lambda_p - lambda_q) (u_p - u_q) / h^2`
/// over every face of the operator (neighbours with at least one interior
/// node), `lambda = K^{-1} w`. Both `u` and `lambda` must be zero on the
/// boundary. Loops over faces, not centres: an independent path from
/// [`darcy_tangent_rhs`], which the adjoint-identity test compares it with.
fn darcy_adjoint_gradient(grid: Grid, a: &[f64], u: &[f64], lambda: &[f64]) -> Vec<f64> {
    let n = grid.n;
    let inv_h2 = 1.0 / (grid.h() * grid.h());
    let mut grad = vec![0.0; grid.len()];
    let mut add_face = |p: usize, q: usize| {
        let (dc_p, dc_q) = face_partials(a[p], a[q]);
        let s = (lambda[p] - lambda[q]) * (u[p] - u[q]) * inv_h2;
        grad[p] -= dc_p * s;
        grad[q] -= dc_q * s;
    };
    for i in 0..n {
        for j in 0..n {
            let p = i * n + j;
            let p_boundary = grid.is_boundary(i, j);
            // Faces between two boundary nodes are not in the operator.
            if j + 1 < n && !(p_boundary && grid.is_boundary(i, j + 1)) {
                add_face(p, p + 1);
            }
            if i + 1 < n && !(p_boundary && grid.is_boundary(i + 1, j)) {
                add_face(p, p + n);
            }
        }
    }
    grad
}

#[cfg(test)]
mod tests;
