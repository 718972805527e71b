//! The exact denoiser of a Gaussian prior, to run the samplers with no
//! trained network in the loop.
//!
//! Job: for data `x0 ~ N(m, C)` and the diffusion's correlated noise
//! `x_s = x0 + s e`, `e ~ N(0, K)` (`K` the covariance of [`Noise::draw`]),
//! the posterior mean is linear in `x_s`:
//!
//! ```text
//! D(x; s) = E[x0 | x_s = x] = m + C (C + s^2 K)^-1 (x - m)
//! ```
//!
//! With it in place of a trained prior, a sampler's distance to the exact
//! posterior of a linear-Gaussian problem (`crate::exact`) is the sampler's
//! own approximation error; with the trained prior it is that plus the
//! prior's error. `ddis eval --methods "ddis-daps+prior=exact"` runs the
//! host DAPS this way on Poisson and Helmholtz.
//!
//! Boundary: dense `N x N` matrices, `N = n * n` nodes (a 64 x 64 grid:
//! 134 MB per matrix, one Cholesky factor per noise level, about a second
//! each, cached); a diagnostic for grids up to about that size, not a
//! sampler for production. Building `C` is the caller's job.

use std::sync::Mutex;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use faer::linalg::solvers::{Llt, Solve};
use faer::{Mat, Side};

use super::{Denoise, Noise};
use crate::error::Error;

/// Relative jitter added to the diagonal of `C + s^2 K` before its Cholesky
/// factorisation: both are positive semi-definite and numerically singular
/// (a smooth prior and a smooth noise leave the finest modes with
/// eigenvalues at round-off), so the sum is only definite with a nugget.
/// `1e-9` of the mean prior variance moves `D` by about that much on
/// directions either matrix spreads, and sends the rest (where neither
/// puts mass, so `x - m` has none) to `m`.
pub const JITTER: f64 = 1e-9;

/// `D(x; s) = m + C (C + s^2 K)^-1 (x - m)` for a dense Gaussian prior.
pub struct ExactGaussianDenoiser {
    /// Nodes per side.
    n: usize,
    /// `m`, `n * n`.
    mean: Vec<f64>,
    /// `C`, `N x N`.
    cov: Mat<f64>,
    /// `K`, `N x N`.
    noise_cov: Mat<f64>,
    /// The EDM `s_d` the sampler's Gauss–Newton spread is scaled with.
    sigma_data: f64,
    /// Cholesky factors of `C + s^2 K + jitter I`, keyed by `s`'s bits.
    factors: Mutex<Vec<(u64, Llt<f64>)>>,
}

impl ExactGaussianDenoiser {
    /// The denoiser of prior `N(mean, cov)` (`cov` row-major `N x N`,
    /// symmetric) under the sampler's `noise`, on an `n x n` grid.
    pub fn new(n: usize, mean: Vec<f64>, cov: &[f64], noise: &Noise, sigma_data: f64) -> Result<Self, Error> {
        let big_n = n * n;
        crate::grid::check_len("prior mean", &mean, big_n)?;
        crate::grid::check_len("prior covariance", cov, big_n * big_n)?;
        let cov = Mat::from_fn(big_n, big_n, |i, j| cov[i * big_n + j]);
        let noise_cov = match noise {
            Noise::Smooth(s) => {
                if s.n() != n {
                    return Err(Error::ShapeMismatch { field: "noise grid", expected: big_n, got: s.n() * s.n() });
                }
                // vec(K1 X K1) = (K1 (x) K1) vec(X), row-major.
                let k1 = s.kernel();
                Mat::from_fn(big_n, big_n, |p, q| k1[(p / n) * n + q / n] * k1[(p % n) * n + q % n])
            }
            Noise::White { n: w } => {
                if *w != n {
                    return Err(Error::ShapeMismatch { field: "noise grid", expected: big_n, got: w * w });
                }
                Mat::identity(big_n, big_n)
            }
        };
        Ok(Self { n, mean, cov, noise_cov, sigma_data, factors: Mutex::new(Vec::new()) })
    }

    /// `D(x; s)` for a batch of fields, row-major `[batch, n * n]`, in f64.
    pub fn denoise_host(&self, x: &[f64], sigma: f64) -> Result<Vec<f64>, Error> {
        let big_n = self.n * self.n;
        if x.is_empty() || !x.len().is_multiple_of(big_n) {
            return Err(Error::ShapeMismatch { field: "denoiser input", expected: big_n, got: x.len() });
        }
        let batch = x.len() / big_n;
        if sigma <= 0.0 {
            return Ok(x.to_vec());
        }
        let mut rhs = Mat::from_fn(big_n, batch, |p, b| x[b * big_n + p] - self.mean[p]);
        {
            let mut factors = self.factors.lock().unwrap_or_else(|e| e.into_inner());
            let key = sigma.to_bits();
            let at = match factors.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    factors.push((key, self.factor(sigma)?));
                    factors.len() - 1
                }
            };
            factors[at].1.solve_in_place(rhs.as_mut());
        }
        let out = &self.cov * &rhs;
        Ok((0..batch * big_n).map(|i| self.mean[i % big_n] + out[(i % big_n, i / big_n)]).collect())
    }

    fn factor(&self, sigma: f64) -> Result<Llt<f64>, Error> {
        let big_n = self.n * self.n;
        let mean_var = (0..big_n).map(|p| self.cov[(p, p)]).sum::<f64>() / big_n as f64;
        let nugget = JITTER * mean_var.max(f64::MIN_POSITIVE);
        let s2 = sigma * sigma;
        let a = Mat::from_fn(big_n, big_n, |i, j| {
            self.cov[(i, j)] + s2 * self.noise_cov[(i, j)] + if i == j { nugget } else { 0.0 }
        });
        a.llt(Side::Lower)
            .map_err(|e| Error::Factorisation(format!("C + s^2 K of the exact Gaussian denoiser (s = {sigma}): {e:?}")))
    }
}

impl<B: Backend> Denoise<B> for ExactGaussianDenoiser {
    fn denoise(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4> {
        let dims = x.dims();
        let device = x.device();
        let data: Vec<f64> = x.into_data().iter::<f32>().map(f64::from).collect();
        // The input's shape is the sampler's own, checked at construction;
        // a failed factorisation leaves NaN for the sampler's clamp to count.
        let out = self.denoise_host(&data, sigma).unwrap_or_else(|_| vec![f64::NAN; data.len()]);
        let out: Vec<f32> = out.into_iter().map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(out, dims), &device)
    }

    fn sigma_data(&self) -> f64 {
        self.sigma_data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::noise::SmoothNoise;

    /// f64 dense solves against a closed form.
    const CLOSED_FORM_TOL: f64 = 1e-8;

    #[test]
    fn diagonal_prior_under_white_noise_shrinks_each_node_by_its_variance() {
        // C = diag(c), K = I: D(x)_p = m_p + c_p / (c_p + s^2) (x_p - m_p).
        let n = 3;
        let c: Vec<f64> = (0..9).map(|p| 0.2 + 0.3 * p as f64).collect();
        let cov: Vec<f64> = (0..81).map(|ij| if ij / 9 == ij % 9 { c[ij / 9] } else { 0.0 }).collect();
        let mean: Vec<f64> = (0..9).map(|p| 0.1 * p as f64 - 0.4).collect();
        let d = ExactGaussianDenoiser::new(n, mean.clone(), &cov, &Noise::White { n }, 1.0).unwrap();
        let x: Vec<f64> = (0..18).map(|i| (i as f64 * 0.7).sin() * 2.0).collect();
        for s in [0.05, 0.5, 3.0] {
            let out = d.denoise_host(&x, s).unwrap();
            for (i, &o) in out.iter().enumerate() {
                let p = i % 9;
                let want = mean[p] + c[p] / (c[p] + s * s) * (x[i] - mean[p]);
                assert!((o - want).abs() < CLOSED_FORM_TOL, "s {s}, node {i}: {o} vs {want}");
            }
        }
    }

    #[test]
    fn prior_shaped_like_the_noise_shrinks_uniformly() {
        // C = c K: D(x) = m + c / (c + s^2) (x - m) whatever K is, on
        // directions K spreads (fields drawn from the noise itself).
        let n = 5;
        let smooth = SmoothNoise::new(n, 0.3).unwrap();
        let noise = Noise::Smooth(smooth.clone());
        let k1 = smooth.kernel();
        let c = 2.5;
        let big_n = n * n;
        let cov: Vec<f64> = (0..big_n * big_n)
            .map(|pq| c * k1[(pq / big_n / n) * n + (pq % big_n) / n] * k1[(pq / big_n % n) * n + pq % big_n % n])
            .collect();
        let d = ExactGaussianDenoiser::new(n, vec![0.0; big_n], &cov, &noise, 1.0).unwrap();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let x: Vec<f64> = smooth.sample_batch(&mut rng, 2).into_iter().map(f64::from).collect();
        let scale = x.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for s in [0.1, 1.0] {
            let out = d.denoise_host(&x, s).unwrap();
            for (o, xi) in out.iter().zip(&x) {
                let want = c / (c + s * s) * xi;
                // The jitter acts on the noise's near-null directions, which
                // an f32 draw reaches at round-off.
                assert!((o - want).abs() < 1e-4 * scale, "s {s}: {o} vs {want}");
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let d = ExactGaussianDenoiser::new(2, vec![0.0; 4], &[0.0; 16], &Noise::White { n: 2 }, 1.0).unwrap();
        assert!(d.denoise_host(&[0.0; 5], 1.0).is_err());
        assert!(ExactGaussianDenoiser::new(2, vec![0.0; 3], &[0.0; 16], &Noise::White { n: 2 }, 1.0).is_err());
        assert!(ExactGaussianDenoiser::new(2, vec![0.0; 4], &[0.0; 16], &Noise::White { n: 3 }, 1.0).is_err());
    }
}
