//! Gaussian random fields with covariance `(-Laplacian + tau^2)^(-alpha)`,
//! sampled as in the published FNO Darcy generator (docs/science.md section 4).
//!
//! A cosine (Neumann) Karhunen-Loeve series is evaluated at the grid nodes by
//! a separable DCT-I done with rustfft; [`synthesize_reference`] is the plain
//! direct sum it is tested against. This module draws fields only; turning
//! them into PDE inputs is `pde`'s job.
//!
//! The series, for `0 <= k1, k2 < n`, `(k1, k2) != (0, 0)`:
//!
//! ```text
//! u(x, y) = sum c[k1][k2] phi_k1(y) phi_k2(x),
//! c[k1][k2] = tau^(alpha-1) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2) xi[k1][k2],
//! phi_0 = 1,  phi_k(t) = sqrt(2) cos(pi k t),  xi iid N(0, 1).
//! ```

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};
use std::sync::Arc;

use rand::Rng;
use rand_distr::StandardNormal;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::grid::Grid;
use crate::grid::check_len;

/// Parameters of the GRF covariance `(-Laplacian + tau^2)^(-alpha)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrfConfig {
    /// Smoothness exponent (published: 2); larger is smoother.
    pub alpha: f64,
    /// Inverse length scale (published: 3); larger is rougher.
    pub tau: f64,
}

impl Default for GrfConfig {
    fn default() -> Self {
        GrfConfig { alpha: 2.0, tau: 3.0 }
    }
}

impl GrfConfig {
    /// Checks that `alpha` and `tau` are finite and positive.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [("grf.alpha", self.alpha), ("grf.tau", self.tau)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidConfig { name, value, reason: "must be finite and > 0" });
            }
        }
        Ok(())
    }

    /// Target variance of coefficient `c[k1][k2]`:
    /// `tau^(2 alpha - 2) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha)`, and 0 for
    /// the dropped constant mode.
    pub fn mode_variance(&self, k1: usize, k2: usize) -> f64 {
        if k1 == 0 && k2 == 0 {
            return 0.0;
        }
        // In f64: any usize is a valid (if useless) wave number.
        let (k1, k2) = (k1 as f64, k2 as f64);
        self.tau.powf(2.0 * (self.alpha - 1.0))
            * (PI * PI * (k1 * k1 + k2 * k2) + self.tau * self.tau).powf(-self.alpha)
    }
}

/// Work buffers for [`GrfSampler::sample_into`]; get one from
/// [`GrfSampler::scratch`] and reuse it across samples on one thread.
pub struct GrfScratch {
    coeffs: Vec<f64>,
    dct: DctScratch,
}

/// Draws GRF samples on one grid. Built once per `(n, config)`; it is
/// `Send + Sync` and immutable, so one sampler can serve every thread.
pub struct GrfSampler {
    grid: Grid,
    config: GrfConfig,
    /// Standard deviation of each coefficient, k1-major; 0 at (0, 0).
    std: Vec<f64>,
    dct: Dct1,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GrfSampler>();
};

impl GrfSampler {
    /// Precomputes the coefficient table and the FFT plan.
    pub fn new(n: usize, config: GrfConfig) -> Result<Self, Error> {
        config.validate()?;
        let grid = Grid::new(n)?;
        let std = (0..n * n).map(|k| config.mode_variance(k / n, k % n).sqrt()).collect();
        Ok(GrfSampler { grid, config, std, dct: Dct1::new(n) })
    }

    /// The grid the samples live on.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The covariance parameters.
    pub fn config(&self) -> GrfConfig {
        self.config
    }

    /// Target variance of coefficient `c[k1][k2]` (see
    /// [`GrfConfig::mode_variance`]); 0 outside `0..n`.
    pub fn mode_variance(&self, k1: usize, k2: usize) -> f64 {
        let n = self.grid.n;
        if k1 >= n || k2 >= n {
            return 0.0;
        }
        self.config.mode_variance(k1, k2)
    }

    /// Fresh work buffers for this sampler's grid.
    pub fn scratch(&self) -> GrfScratch {
        GrfScratch { coeffs: vec![0.0; self.grid.len()], dct: self.dct.scratch() }
    }

    /// One sample on the n*n nodes, row-major.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let mut out = vec![0.0; self.grid.len()];
        let mut scratch = self.scratch();
        self.draw_coefficients(rng, &mut scratch.coeffs);
        self.dct.synthesize(&scratch.coeffs, &mut out, &mut scratch.dct);
        out
    }

    /// [`GrfSampler::sample`] into caller memory; draws exactly the same
    /// numbers from `rng`, so both give the same field.
    pub fn sample_into<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        out: &mut [f64],
        scratch: &mut GrfScratch,
    ) -> Result<(), Error> {
        let n2 = self.grid.len();
        check_len("grf output", out, n2)?;
        if scratch.coeffs.len() != n2 || scratch.dct.n != self.grid.n {
            return Err(Error::ShapeMismatch { field: "grf scratch", expected: n2, got: scratch.coeffs.len() });
        }
        self.draw_coefficients(rng, &mut scratch.coeffs);
        self.dct.synthesize(&scratch.coeffs, out, &mut scratch.dct);
        Ok(())
    }

    /// Fills `coeffs` (n*n, k1-major) with `std[k1][k2] * xi`. The normals
    /// are drawn k1-major, skipping the constant mode, so a sample depends
    /// only on the rng state.
    fn draw_coefficients<R: Rng + ?Sized>(&self, rng: &mut R, coeffs: &mut [f64]) {
        coeffs[0] = 0.0;
        for (c, &s) in coeffs.iter_mut().zip(&self.std).skip(1) {
            let xi: f64 = rng.sample(StandardNormal);
            *c = s * xi;
        }
    }

    /// Evaluates the series with coefficients `coeffs` (n*n, k1-major) at the
    /// nodes, by the fast DCT-I. The inverse of [`project_reference`].
    pub fn synthesize(&self, coeffs: &[f64]) -> Result<Vec<f64>, Error> {
        check_len("grf coefficients", coeffs, self.grid.len())?;
        let mut out = vec![0.0; self.grid.len()];
        self.dct.synthesize(coeffs, &mut out, &mut self.dct.scratch());
        Ok(out)
    }
}

/// `phi_k(t_m)` for an `n`-node axis as a table `[k * n + m]`. The angle
/// `pi k m / N` is reduced modulo `2 pi` in integers first, so large `k m`
/// keep full accuracy. Shared with `exact`, whose covariance must be the
/// one these samples have.
pub(crate) fn basis_table(n: usize) -> Vec<f64> {
    let big_n = n - 1;
    let mut table = vec![0.0; n * n];
    for k in 0..n {
        let scale = if k == 0 { 1.0 } else { SQRT_2 };
        for m in 0..n {
            let t = (k * m) % (2 * big_n);
            table[k * n + m] = scale * (PI * t as f64 / big_n as f64).cos();
        }
    }
    table
}

/// The series at the nodes by direct summation, O(n^3): the reference the
/// FFT path is tested against. `coeffs` is n*n, k1-major.
pub fn synthesize_reference(grid: Grid, coeffs: &[f64]) -> Result<Vec<f64>, Error> {
    let n = grid.n;
    check_len("grf coefficients", coeffs, grid.len())?;
    let phi = basis_table(n);
    // Sum over k2 (x direction) first, then k1 (y direction).
    let mut half = vec![0.0; n * n]; // half[k1][j]
    for k1 in 0..n {
        for j in 0..n {
            half[k1 * n + j] = (0..n).map(|k2| coeffs[k1 * n + k2] * phi[k2 * n + j]).sum();
        }
    }
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n).map(|k1| phi[k1 * n + i] * half[k1 * n + j]).sum();
        }
    }
    Ok(out)
}

/// The cosine coefficients (n*n, k1-major) of a nodal field: the exact
/// inverse of the series on the nodes, O(n^3).
///
/// The basis is orthogonal under the trapezoidal node inner product
/// `sum_m w_m f(t_m) g(t_m)` (`w = 1/2` at the ends, 1 inside), with squared
/// norm `N = n-1` for every mode but the last, whose norm is `2N` (it
/// alternates sign node by node).
pub fn project_reference(grid: Grid, field: &[f64]) -> Result<Vec<f64>, Error> {
    let n = grid.n;
    check_len("grf field", field, grid.len())?;
    let phi = basis_table(n);
    let big_n = (n - 1) as f64;
    let weight = |m: usize| if m == 0 || m == n - 1 { 0.5 } else { 1.0 };
    let norm = |k: usize| if k == n - 1 { 2.0 * big_n } else { big_n };
    // Project along x (j -> k2), then along y (i -> k1).
    let mut half = vec![0.0; n * n]; // half[i][k2]
    for i in 0..n {
        for k2 in 0..n {
            let s: f64 = (0..n).map(|j| weight(j) * field[i * n + j] * phi[k2 * n + j]).sum();
            half[i * n + k2] = s / norm(k2);
        }
    }
    let mut out = vec![0.0; n * n];
    for k1 in 0..n {
        for k2 in 0..n {
            let s: f64 = (0..n).map(|i| weight(i) * half[i * n + k2] * phi[k1 * n + i]).sum();
            out[k1 * n + k2] = s / norm(k1);
        }
    }
    Ok(out)
}

/// Separable 2-D synthesis `u[i][j] = sum c[k1][k2] phi_k1(y_i) phi_k2(x_j)`
/// through a complex FFT of length `2N`, `N = n-1`.
///
/// Along one axis `u_m = sum_k c_k phi_k(t_m) = sum_k d_k cos(pi k m / N)`
/// with `d_0 = c_0`, `d_k = sqrt(2) c_k`. The even extension `y` of length
/// `2N` (`y_0 = d_0`, `y_N = d_N`, `y_k = y_{2N-k} = d_k / 2` otherwise) has
/// the FFT `Y_m = u_m` for `m = 0..=N`. Because `Y` is real for real even
/// input, two lines share one complex FFT: one in the real part, one in the
/// imaginary part.
struct Dct1 {
    n: usize,
    fft: Arc<dyn Fft<f64>>,
}

struct DctScratch {
    n: usize,
    /// Lines of length 2N, two real lines packed per complex line.
    lines: Vec<Complex<f64>>,
    fft: Vec<Complex<f64>>,
    /// Result of the first (x) pass, k1-major: `half[k1][j]`.
    half: Vec<f64>,
}

impl Dct1 {
    fn new(n: usize) -> Self {
        let fft = FftPlanner::new().plan_fft_forward(2 * (n - 1));
        Dct1 { n, fft }
    }

    fn scratch(&self) -> DctScratch {
        let n = self.n;
        let pairs = n.div_ceil(2);
        DctScratch {
            n,
            lines: vec![Complex::new(0.0, 0.0); pairs * 2 * (n - 1)],
            fft: vec![Complex::new(0.0, 0.0); self.fft.get_inplace_scratch_len()],
            half: vec![0.0; n * n],
        }
    }

    /// `coeffs` k1-major n*n -> `out` row-major n*n. Lengths are the
    /// caller's invariant (checked at the public edge).
    fn synthesize(&self, coeffs: &[f64], out: &mut [f64], s: &mut DctScratch) {
        let n = self.n;
        // Pass 1, along x: line k1 is c[k1][.]; node j goes to half[k1][j].
        self.pass(|line, k| coeffs[line * n + k], (&mut s.half, n, 1), &mut s.lines, &mut s.fft);
        // Pass 2, along y: line j is half[.][j]; node i goes to out[i][j].
        let half = &s.half;
        self.pass(|line, k| half[k * n + line], (out, 1, n), &mut s.lines, &mut s.fft);
    }

    /// Transforms the n lines `get(line, k)`, k = 0..n, and writes node `m`
    /// of line `l` to `out[l * line_stride + m * node_stride]`.
    fn pass(
        &self,
        get: impl Fn(usize, usize) -> f64,
        (out, line_stride, node_stride): (&mut [f64], usize, usize),
        lines: &mut [Complex<f64>],
        fft_scratch: &mut [Complex<f64>],
    ) {
        let n = self.n;
        let big_n = n - 1;
        let len = 2 * big_n;
        // Weight turning c_k into the even-extension value y_k.
        let w = |k: usize| {
            if k == 0 {
                1.0
            } else if k == big_n {
                SQRT_2
            } else {
                FRAC_1_SQRT_2
            }
        };
        for (pair, chunk) in lines.chunks_exact_mut(len).enumerate() {
            let (la, lb) = (2 * pair, 2 * pair + 1);
            for k in 0..=big_n {
                let re = w(k) * get(la, k);
                // An odd n leaves the last imaginary line empty.
                let im = if lb < n { w(k) * get(lb, k) } else { 0.0 };
                chunk[k] = Complex::new(re, im);
                if k != 0 && k != big_n {
                    chunk[len - k] = chunk[k];
                }
            }
        }
        self.fft.process_with_scratch(lines, fft_scratch);
        for (pair, chunk) in lines.chunks_exact(len).enumerate() {
            let (la, lb) = (2 * pair, 2 * pair + 1);
            for (m, y) in chunk[..n].iter().enumerate() {
                out[la * line_stride + m * node_stride] = y.re;
                if lb < n {
                    out[lb * line_stride + m * node_stride] = y.im;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn fast_synthesis_matches_reference_on_odd_and_even_sizes() {
        // Odd n exercises the unpaired last line of each FFT pass.
        for n in [3, 4, 5, 8, 17, 33] {
            let grid = Grid::new(n).unwrap();
            let sampler = GrfSampler::new(n, GrfConfig::default()).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let coeffs: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
            let fast = sampler.synthesize(&coeffs).unwrap();
            let slow = synthesize_reference(grid, &coeffs).unwrap();
            let d = max_rel_diff(&fast, &slow);
            assert!(d < 1e-12, "n={n}: fast vs reference differ by {d:e}");
            let back = project_reference(grid, &slow).unwrap();
            let d = max_rel_diff(&back, &coeffs);
            assert!(d < 1e-12, "n={n}: projection is not the inverse ({d:e})");
        }
    }

    #[test]
    fn sample_and_sample_into_agree() {
        let sampler = GrfSampler::new(9, GrfConfig::default()).unwrap();
        let a = sampler.sample(&mut ChaCha8Rng::seed_from_u64(3));
        let mut b = vec![0.0; 81];
        let mut scratch = sampler.scratch();
        sampler.sample_into(&mut ChaCha8Rng::seed_from_u64(3), &mut b, &mut scratch).unwrap();
        assert_eq!(a, b);
        let mut short = vec![0.0; 80];
        assert!(matches!(
            sampler.sample_into(&mut ChaCha8Rng::seed_from_u64(3), &mut short, &mut scratch),
            Err(Error::ShapeMismatch { expected: 81, got: 80, .. })
        ));
    }

    #[test]
    fn config_is_validated() {
        for (alpha, tau) in [(0.0, 3.0), (2.0, -1.0), (f64::NAN, 3.0), (2.0, f64::INFINITY)] {
            assert!(matches!(GrfSampler::new(8, GrfConfig { alpha, tau }), Err(Error::InvalidConfig { .. })));
        }
        assert!(matches!(GrfSampler::new(2, GrfConfig::default()), Err(Error::GridTooSmall { .. })));
    }
}
