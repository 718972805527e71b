//! Posterior samplers on the host (docs/science.md section 2): DAPS (the DDIS
//! sampler, full and reduced-step) and DPS, for the decoupled pair (prior +
//! surrogate or exact solver) and for the joint `(a, u)` baseline.
//!
//! The samplers only see three things, so the same code serves every row of
//! the comparison and the Gaussian test with a known posterior:
//!
//! - a [`Denoise`]r `D(x; s)` in the prior's normalised coordinates (`C`
//!   channels: 1 for the prior, 2 for the joint model);
//! - a [`Guide`]: the measurement loss `L(x0) = 0.5 ||r||^2` of a clean
//!   estimate and its gradient, where `r = (M(u) - y) / y_scale` are the
//!   sensor residuals in units of the readings' RMS (`guide.rs` has the
//!   surrogate, exact-solver and joint-channel guides);
//! - a [`Noise`] source (the prior's smooth GRF noise, or white noise).
//!
//! Every case and every posterior sample is one element of a single batch,
//! so one sampler call reconstructs a whole evaluation set. Randomness comes
//! from one ChaCha8 stream per call: the same seed gives the same bits.

pub mod daps;
pub mod dps;
pub mod gaussian;
pub mod guide;

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use rand::Rng;

use crate::model::denoiser::{DiffusionModel, EdmModel, Network};
use crate::model::noise::SmoothNoise;

pub use daps::{DapsConfig, StepKind, daps_sample, gauss_newton_update, gauss_newton_update_with};
pub use dps::{DpsConfig, dps_sample};
pub use gaussian::ExactGaussianDenoiser;
pub use guide::{JointGuide, ObservationBatch, SolverGuide, SurrogateGuide};

/// `D(x; sigma)` for a whole batch `[batch, C, n, n]` at one noise level.
pub trait Denoise<B: Backend> {
    /// The denoised estimate of the clean field.
    fn denoise(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4>;

    /// The data's standard deviation `s_d` the EDM scalings assume (the
    /// Gauss–Newton step's prior spread is `r_scale * c_out(s, s_d)`).
    fn sigma_data(&self) -> f64;
}

impl<B: Backend, N: Network<B>> Denoise<B> for EdmModel<B, N> {
    fn denoise(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4> {
        self.denoise_at(x, sigma)
    }

    fn sigma_data(&self) -> f64 {
        self.config().sigma_data
    }
}

impl<B: Backend> Denoise<B> for DiffusionModel<B> {
    fn denoise(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4> {
        self.denoise_at(x, sigma)
    }

    fn sigma_data(&self) -> f64 {
        self.config().sigma_data
    }
}

/// Value and gradient of the measurement loss of clean estimates.
pub trait Guide<B: Backend> {
    /// `L_b = 0.5 ||r_b||^2` per batch element and `dL_b / dx0_b` (same shape
    /// as `x0`: `[batch, C, n, n]`, normalised prior coordinates).
    fn loss_grad(&mut self, x0: Tensor<B, 4>) -> Result<(Vec<f64>, Tensor<B, 4>)>;

    /// The gradient alone (what DAPS needs). The default calls
    /// [`loss_grad`](Self::loss_grad); guides whose loss would have to be
    /// read back from the device skip that read.
    fn grad(&mut self, x0: Tensor<B, 4>) -> Result<Tensor<B, 4>> {
        self.loss_grad(x0).map(|(_, g)| g)
    }

    /// The readings' noise standard deviation in residual units (the floor
    /// of the likelihood width `tau`).
    fn noise_floor(&self) -> f64;

    /// The residuals `r(x0)` and their Jacobian `dr / dx0` (what the
    /// Gauss–Newton step needs). Guides without one say so.
    fn linearize(&mut self, x0: Tensor<B, 4>) -> Result<Linearization<B>> {
        let _ = x0;
        anyhow::bail!(
            "this guide has no Jacobian, which the Gauss-Newton step needs (the surrogate, solver and joint guides have one)"
        )
    }
}

/// A guide linearised at `x0: [batch, C, n, n]`, `K` sensors per element.
pub struct Linearization<B: Backend> {
    /// `r(x0)`, residual units: `[batch, K]`.
    pub residual: Tensor<B, 2>,
    /// `dr / dx0`: `[batch, K, C n n]`.
    pub jacobian: Tensor<B, 3>,
}

/// Where the sampler's noise comes from.
#[derive(Clone, Debug)]
pub enum Noise {
    /// The prior's smooth RBF noise (function-space diffusion).
    Smooth(SmoothNoise),
    /// Independent N(0, 1) per node (tests with a white Gaussian prior).
    White {
        /// Nodes per side.
        n: usize,
    },
}

impl Noise {
    /// A `[batch, channels, n, n]` unit-variance noise tensor drawn from `rng`.
    pub fn draw<B: Backend, R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: usize,
        channels: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        match self {
            Noise::Smooth(s) => s.sample_tensor(rng, batch, channels, device),
            Noise::White { n } => {
                let n = *n;
                let data: Vec<f32> =
                    (0..batch * channels * n * n).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
                Tensor::from_data(burn::tensor::TensorData::new(data, [batch, channels, n, n]), device)
            }
        }
    }

    /// `C x` on every `n x n` slice of `x`, `C` the covariance of
    /// [`draw`](Self::draw)'s fields: `K1 X K1` with `K1 = L L` for the
    /// smooth noise (it draws `L Z L`), `x` itself for white noise.
    pub fn apply_cov<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Noise::Smooth(s) => {
                let l = s.sqrt_kernel_tensor::<B>(&x.device());
                let k1 = l.clone().matmul(l);
                k1.clone().matmul(x).matmul(k1)
            }
            Noise::White { .. } => x,
        }
    }
}

/// What a sampler call did, for the reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SampleStats {
    /// Denoiser evaluations (each on the whole batch).
    pub denoiser_calls: usize,
    /// Denoiser vector-Jacobian products (DPS only).
    pub denoiser_vjps: usize,
    /// Guide evaluations (loss and gradient, whole batch).
    pub guide_calls: usize,
    /// Node values the safety clamp changed (should stay 0).
    pub clamped: usize,
    /// Batch elements whose state became non-finite (reset to the clamp).
    pub non_finite: usize,
    /// Gauss–Newton sensor-space systems that did not factor with the
    /// nugget `tau^2` (round-off in the f32 `J C J^T` with a tight width
    /// and many readings) and were solved with a wider one
    /// ([`gauss_newton_update_with`]).
    pub widened: usize,
}

/// The samplers' safety clamp, on the backend: every value of a state into
/// `[-limit, limit]`, non-finite values to 0, with the counts kept on the
/// device until [`finish`](Self::finish), so a sampler step never copies its
/// state to the host ([`clamp_counted`] is the host reference it is tested
/// against).
pub(crate) struct Clamp<B: Backend> {
    /// Values changed so far (`[1]`).
    changed: Tensor<B, 1, Int>,
    /// Batch elements that held a non-finite value, summed over calls (`[1]`).
    non_finite: Tensor<B, 1, Int>,
}

impl<B: Backend> Clamp<B> {
    pub(crate) fn new(device: &B::Device) -> Self {
        Self { changed: Tensor::zeros([1], device), non_finite: Tensor::zeros([1], device) }
    }

    /// `x` clamped into `[-limit, limit]` (non-finite -> 0), counting the
    /// changes as [`clamp_counted`] does.
    pub(crate) fn apply(&mut self, x: Tensor<B, 4>, limit: f64) -> Tensor<B, 4> {
        let [batch, ..] = x.dims();
        let bad = x.clone().is_nan().bool_or(x.clone().is_inf());
        let changed = bad.clone().bool_or(x.clone().abs().greater_elem(limit));
        self.changed = self.changed.clone() + changed.int().sum();
        let bad_elements = bad.clone().int().reshape([batch as i32, -1]).sum_dim(1).greater_elem(0);
        self.non_finite = self.non_finite.clone() + bad_elements.int().sum();
        x.mask_fill(bad, 0.0).clamp(-limit, limit)
    }

    /// Adds the counts to `stats` (the only read-back).
    pub(crate) fn finish(self, stats: &mut SampleStats) {
        let read = |t: Tensor<B, 1, Int>| t.into_data().iter::<i64>().next().unwrap_or(0).max(0) as usize;
        stats.clamped += read(self.changed);
        stats.non_finite += read(self.non_finite);
    }
}

/// Clamps every value of `x` into `[-limit, limit]` (NaN -> 0) and counts
/// the changes, on the host. Returns the clamped tensor. The plain
/// reference of [`Clamp`].
#[cfg(test)]
pub(crate) fn clamp_counted<B: Backend>(x: Tensor<B, 4>, limit: f64, stats: &mut SampleStats) -> Tensor<B, 4> {
    let dims = x.dims();
    let device = x.device();
    let mut data: Vec<f32> = x.into_data().to_vec().unwrap_or_default();
    let lim = limit as f32;
    let per = dims[1] * dims[2] * dims[3];
    for sample in data.chunks_mut(per.max(1)) {
        let mut bad = false;
        for v in sample.iter_mut() {
            if !v.is_finite() {
                bad = true;
                *v = 0.0;
                stats.clamped += 1;
            } else if v.abs() > lim {
                *v = v.clamp(-lim, lim);
                stats.clamped += 1;
            }
        }
        stats.non_finite += usize::from(bad);
    }
    Tensor::from_data(burn::tensor::TensorData::new(data, dims), &device)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gauss_newton;
