//! The exact posterior of the linear-Gaussian problems (Poisson and Helmholtz
//! with a GRF source): the reference any sampler is measured against.
//!
//! Job: given sensor readings `y = H f + e`, `H = M G` (`G` the
//! finite-difference solve `f -> u`, `M` the read-out at the K sensor
//! nodes), `e ~ N(0, s^2 I)`, and the data generator's prior
//! `f ~ N(m, Sigma)`, compute in f64 and in sensor space
//!
//! ```text
//! mean = m + Sigma H^T (H Sigma H^T + s^2 I)^-1 (y - H m)
//! var  = diag(Sigma) - diag(Sigma H^T (H Sigma H^T + s^2 I)^-1 H Sigma)
//! ```
//!
//! and draw posterior samples by Matheron's rule,
//! `f = f0 + Sigma H^T (H Sigma H^T + s^2 I)^-1 (y - H f0 - e')` with `f0`
//! drawn by the data generator itself and `e' ~ N(0, s^2 I)`.
//!
//! The pieces, and why they are exact:
//! - `m = 0`: the GRF series has zero-mean coefficients (the constant mode
//!   is dropped), and the PDE input is a linear, homogeneous function of the
//!   GRF draw ([`PdeConfig::input_from_grf`]: identity for Poisson, boundary
//!   zeroed for Helmholtz).
//! - `Sigma = D B diag(lambda) B^T D`, with `B` the cosine basis at the nodes
//!   (the table `grf` samples with), `lambda` the mode variances of
//!   [`crate::grf::GrfConfig::mode_variance`], and `D` the diagonal mask
//!   `input_from_grf` applies (read off by mapping a field of ones). `B` is
//!   separable, so `Sigma v` costs two `n x n` congruences, O(n^3).
//! - `H^T e_k = G e_node_k`: the 5-point operators are symmetric on the
//!   interior unknowns and `G` ignores boundary sources, so `G = G^T` as an
//!   `N x N` map (see `pde/adjoint.rs`); one solve per sensor.
//!
//! Boundary: no sampling logic beyond Matheron's rule, no files, no
//! metrics; `eval` turns the result into report rows. Darcy is refused
//! ([`ExactError::NotLinearGaussian`]): its coefficient is a thresholded GRF
//! and its solve is nonlinear in it, so its posterior is not Gaussian.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::Error;
use crate::grf::{GrfSampler, basis_table};
use crate::grid::Grid;
use crate::observe::Observations;
use crate::pde::{PdeConfig, PdeKind, Solver};

/// Relative jitter added to the diagonal of `H Sigma H^T` when the reading
/// noise is (nearly) zero: the nugget is
/// `max(s^2, JITTER * mean(diag(H Sigma H^T)))`. With `s = 0` the K x K
/// system is positive definite only in exact arithmetic (two close sensors
/// give nearly equal rows), so the "noiseless" posterior is, precisely, the
/// one with reading noise of variance `JITTER` times the typical reading
/// variance. Matheron draws use the same nugget, so samples and closed form
/// describe one distribution.
pub const JITTER: f64 = 1e-10;

/// Why the exact posterior cannot be formed.
#[derive(Debug, thiserror::Error)]
pub enum ExactError {
    /// The PDE's input is not a Gaussian linear image of the GRF, or its
    /// forward map is nonlinear.
    #[error(
        "the exact posterior needs a linear forward map and a Gaussian prior (poisson, helmholtz); {pde} is neither: its coefficient is a thresholded GRF and its solve is nonlinear in it"
    )]
    NotLinearGaussian {
        /// The PDE that was asked.
        pde: PdeKind,
    },
    /// The sensor-space covariance lost definiteness in the Cholesky
    /// factorisation.
    #[error("the sensor-space covariance is not positive definite: pivot {index} is {value:e}")]
    NotDefinite {
        /// Row of the failing pivot.
        index: usize,
        /// The pivot found there.
        value: f64,
    },
    /// A grid, solver or field error.
    #[error(transparent)]
    Pde(#[from] Error),
}

/// Ok for the PDEs this module handles, [`ExactError::NotLinearGaussian`]
/// naming the PDE otherwise.
pub fn check_linear_gaussian(kind: PdeKind) -> Result<(), ExactError> {
    match kind {
        PdeKind::Poisson | PdeKind::Helmholtz => Ok(()),
        PdeKind::Darcy => Err(ExactError::NotLinearGaussian { pde: kind }),
    }
}

/// The prior, the forward map and the generator of one linear-Gaussian PDE
/// on one grid. Build one per grid and thread; [`LinearGaussian::condition`]
/// then costs K solves and K covariance products per set of sensors.
pub struct LinearGaussian {
    grid: Grid,
    solver: Solver,
    grf: GrfSampler,
    /// `phi_k(t_m)` as `[k * n + m]` (the matrix `Phi`).
    phi: Vec<f64>,
    /// `Phi^T`.
    phi_t: Vec<f64>,
    /// Mode variances `lambda[k1][k2]`, k1-major.
    lambda: Vec<f64>,
    /// The diagonal map from the GRF draw to the PDE input (1 or 0).
    mask: Vec<f64>,
    /// `diag(Sigma)` per node.
    prior_var: Vec<f64>,
}

impl LinearGaussian {
    /// The model of `pde` on an `n x n` grid; Darcy is refused.
    pub fn new(pde: &PdeConfig, n: usize) -> Result<Self, ExactError> {
        check_linear_gaussian(pde.kind)?;
        let solver = pde.solver(n)?;
        let grf = pde.grf_sampler(n)?;
        let grid = solver.grid();
        let phi = basis_table(n);
        let phi_t = transpose(n, &phi);
        let lambda: Vec<f64> = (0..n * n).map(|k| grf.mode_variance(k / n, k % n)).collect();
        let mut mask = vec![1.0; grid.len()];
        pde.input_from_grf(grid, &mut mask)?;
        // diag(B diag(lambda) B^T)[i][j] = sum lambda[k1][k2] phi_k1(y_i)^2 phi_k2(x_j)^2.
        let phi_t_sq: Vec<f64> = phi_t.iter().map(|v| v * v).collect();
        let prior_var = congruence(n, &phi_t_sq, &lambda).iter().zip(&mask).map(|(v, d)| v * d * d).collect();
        Ok(LinearGaussian { grid, solver, grf, phi, phi_t, lambda, mask, prior_var })
    }

    /// The grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The prior mean `m` of the input: zero (see the module doc).
    pub fn prior_mean(&self) -> Vec<f64> {
        vec![0.0; self.grid.len()]
    }

    /// The prior variance of the input at every node, `diag(Sigma)`.
    pub fn prior_variance(&self) -> &[f64] {
        &self.prior_var
    }

    /// `Sigma v`: the prior covariance of the input applied to a nodal field.
    pub fn cov_apply(&self, v: &[f64]) -> Result<Vec<f64>, ExactError> {
        let n = self.grid.n;
        crate::pde::check_len("v", v, self.grid.len())?;
        let masked: Vec<f64> = v.iter().zip(&self.mask).map(|(x, d)| x * d).collect();
        // B^T v = Phi V Phi^T, scaled by lambda, then B c = Phi^T C Phi.
        let mut c = congruence(n, &self.phi, &masked);
        for (ck, l) in c.iter_mut().zip(&self.lambda) {
            *ck *= l;
        }
        let mut out = congruence(n, &self.phi_t, &c);
        for (o, d) in out.iter_mut().zip(&self.mask) {
            *o *= d;
        }
        Ok(out)
    }

    /// `Sigma` as a dense row-major `N x N` matrix (`N` nodes), one
    /// [`cov_apply`](Self::cov_apply) per column, symmetrised against
    /// round-off. For diagnostics on small grids: 134 MB at 64 x 64.
    pub fn covariance(&self) -> Result<Vec<f64>, ExactError> {
        let big_n = self.grid.len();
        let mut cov = vec![0.0; big_n * big_n];
        let mut unit = vec![0.0; big_n];
        for q in 0..big_n {
            unit[q] = 1.0;
            let col = self.cov_apply(&unit)?;
            unit[q] = 0.0;
            for (p, v) in col.into_iter().enumerate() {
                cov[p * big_n + q] = v;
            }
        }
        for p in 0..big_n {
            for q in 0..p {
                let v = 0.5 * (cov[p * big_n + q] + cov[q * big_n + p]);
                cov[p * big_n + q] = v;
                cov[q * big_n + p] = v;
            }
        }
        Ok(cov)
    }

    /// `G f`: the solution for source `f` (zero on the boundary).
    pub fn forward(&mut self, f: &[f64]) -> Result<Vec<f64>, ExactError> {
        Ok(self.solver.solve(f)?)
    }

    /// One draw of the input from the data generator (GRF, then
    /// [`PdeConfig::input_from_grf`]).
    pub fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Vec<f64>, ExactError> {
        Ok(self.solver.sample_input(&self.grf, rng)?)
    }

    /// The exact posterior given `obs` (its nodes, values and noise level).
    pub fn condition(&mut self, obs: &Observations) -> Result<ExactPosterior, ExactError> {
        let big_n = self.grid.len();
        if obs.n != self.grid.n {
            return Err(Error::ShapeMismatch { field: "observation grid", expected: big_n, got: obs.n * obs.n }.into());
        }
        let k = obs.nodes.len();
        // h_k = H^T e_k = G e_node (G is symmetric); w_k = Sigma h_k.
        let mut h = Vec::with_capacity(k * big_n);
        let mut gain = Vec::with_capacity(k * big_n);
        let mut unit = vec![0.0; big_n];
        for &node in &obs.nodes {
            unit[node] = 1.0;
            let hk = self.solver.solve_rhs(None, &unit)?;
            unit[node] = 0.0;
            gain.extend(self.cov_apply(&hk)?);
            h.extend(hk);
        }
        // (H Sigma H^T)[a][b] = h_a . w_b, symmetrised against round-off.
        let mut a = vec![0.0; k * k];
        for r in 0..k {
            for c in 0..=r {
                let hr = &h[r * big_n..(r + 1) * big_n];
                let hc = &h[c * big_n..(c + 1) * big_n];
                let wr = &gain[r * big_n..(r + 1) * big_n];
                let wc = &gain[c * big_n..(c + 1) * big_n];
                let v = 0.5 * (dot(hr, wc) + dot(hc, wr));
                a[r * k + c] = v;
                a[c * k + r] = v;
            }
        }
        let mean_diag = (0..k).map(|r| a[r * k + r]).sum::<f64>() / k as f64;
        let nugget = (obs.noise_sigma * obs.noise_sigma).max(JITTER * mean_diag);
        for r in 0..k {
            a[r * k + r] += nugget;
        }
        cholesky(&mut a, k)?;
        // Posterior mean: m + W A^-1 (y - H m) with m = 0.
        let mut alpha = obs.values.clone();
        cholesky_solve(&a, k, &mut alpha);
        let mut mean = self.prior_mean();
        axpy_rows(&gain, big_n, &alpha, &mut mean);
        // Posterior variance: diag(Sigma) - |L^-1 W^T e_node|^2 per node.
        let mut z = gain.clone();
        for r in 0..k {
            for c in 0..r {
                let l = a[r * k + c];
                let (done, rest) = z.split_at_mut(r * big_n);
                let zc = &done[c * big_n..(c + 1) * big_n];
                for (zr, zc) in rest[..big_n].iter_mut().zip(zc) {
                    *zr -= l * zc;
                }
            }
            let d = a[r * k + r];
            z[r * big_n..(r + 1) * big_n].iter_mut().for_each(|v| *v /= d);
        }
        let mut var = self.prior_var.clone();
        for zr in z.chunks_exact(big_n) {
            for (v, x) in var.iter_mut().zip(zr) {
                *v -= x * x;
            }
        }
        let std = var.into_iter().map(|v| v.max(0.0).sqrt()).collect();
        Ok(ExactPosterior { nodes: obs.nodes.clone(), values: obs.values.clone(), nugget, gain, chol: a, mean, std })
    }

    /// One posterior draw by Matheron's rule: a generator draw `f0`,
    /// corrected by the gain applied to `y - H f0 - e'`, `e' ~ N(0, nugget)`.
    /// One forward solve per draw.
    pub fn sample<R: Rng + ?Sized>(&mut self, post: &ExactPosterior, rng: &mut R) -> Result<Vec<f64>, ExactError> {
        let mut f = self.sample_prior(rng)?;
        let u = self.forward(&f)?;
        let noise = post.nugget.sqrt();
        let mut r: Vec<f64> = post
            .nodes
            .iter()
            .zip(&post.values)
            .map(|(&node, &y)| {
                let e: f64 = rng.sample(StandardNormal);
                y - u[node] - noise * e
            })
            .collect();
        let k = post.nodes.len();
        cholesky_solve(&post.chol, k, &mut r);
        axpy_rows(&post.gain, self.grid.len(), &r, &mut f);
        Ok(f)
    }
}

/// The exact posterior of one set of readings.
pub struct ExactPosterior {
    nodes: Vec<usize>,
    values: Vec<f64>,
    nugget: f64,
    /// `W^T = (Sigma H^T)^T`: K rows of n*n.
    gain: Vec<f64>,
    /// Lower Cholesky factor of `H Sigma H^T + nugget I`, K x K.
    chol: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl ExactPosterior {
    /// The posterior mean at every node.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The posterior standard deviation at every node.
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// The variance added to the reading-space diagonal: `s^2`, or the
    /// [`JITTER`] floor.
    pub fn nugget(&self) -> f64 {
        self.nugget
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out += sum_k coef[k] rows[k]`, rows of length `len`.
fn axpy_rows(rows: &[f64], len: usize, coef: &[f64], out: &mut [f64]) {
    for (row, &c) in rows.chunks_exact(len).zip(coef) {
        for (o, r) in out.iter_mut().zip(row) {
            *o += c * r;
        }
    }
}

fn transpose(n: usize, a: &[f64]) -> Vec<f64> {
    (0..n * n).map(|p| a[(p % n) * n + p / n]).collect()
}

/// `A X A^T` for row-major `n x n` matrices.
fn congruence(n: usize, a: &[f64], x: &[f64]) -> Vec<f64> {
    // tmp = X A^T: tmp[r][c] = sum_m X[r][m] A[c][m].
    let mut tmp = vec![0.0; n * n];
    for r in 0..n {
        for c in 0..n {
            tmp[r * n + c] = dot(&x[r * n..(r + 1) * n], &a[c * n..(c + 1) * n]);
        }
    }
    // out = A tmp.
    let mut out = vec![0.0; n * n];
    for r in 0..n {
        for m in 0..n {
            let arm = a[r * n + m];
            for (o, t) in out[r * n..(r + 1) * n].iter_mut().zip(&tmp[m * n..(m + 1) * n]) {
                *o += arm * t;
            }
        }
    }
    out
}

/// In-place lower Cholesky factor of the symmetric `k x k` matrix `a`
/// (the strict upper triangle is left as it was and never read again).
/// Also the host Gauss–Newton step's `K x K` solve (`sample::daps`).
pub(crate) fn cholesky(a: &mut [f64], k: usize) -> Result<(), ExactError> {
    for j in 0..k {
        let d = a[j * k + j] - (0..j).map(|p| a[j * k + p] * a[j * k + p]).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return Err(ExactError::NotDefinite { index: j, value: d });
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let s = a[i * k + j] - (0..j).map(|p| a[i * k + p] * a[j * k + p]).sum::<f64>();
            a[i * k + j] = s / d;
        }
    }
    Ok(())
}

/// Solves `L L^T x = b` in place with the factor from [`cholesky`].
pub(crate) fn cholesky_solve(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let s = b[i] - (0..i).map(|p| l[i * k + p] * b[p]).sum::<f64>();
        b[i] = s / l[i * k + i];
    }
    for i in (0..k).rev() {
        let s = b[i] - (i + 1..k).map(|p| l[p * k + i] * b[p]).sum::<f64>();
        b[i] = s / l[i * k + i];
    }
}

#[cfg(test)]
mod tests;
