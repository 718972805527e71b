//! DPS (Chung et al. 2023), docs/science.md section 2: reverse Euler steps of the
//! probability-flow ODE (or, with `heun`, EDM's second-order Heun steps),
//! each followed by `-zeta grad_x ||r(D(x; s))||` with the gradient taken
//! through the denoiser. On the joint `(a, u)` prior with the loss on the
//! `u` channel this is DiffusionPDE's sampler.

use anyhow::{Result, ensure};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Clamp, Denoise, Guide, Noise, SampleStats};
use crate::model::edm;

/// Settings of DPS.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpsConfig {
    /// Reverse steps (one denoiser call and one vector-Jacobian product each).
    pub steps: usize,
    /// Highest noise level.
    pub sigma_max: f64,
    /// Lowest noise level before the final step to 0.
    pub sigma_min: f64,
    /// EDM spacing curvature.
    pub rho: f64,
    /// Guidance weight `zeta` on `grad ||r||` (residual in readings' RMS).
    pub zeta: f64,
    /// Safety clamp on the normalised field, `clamp * (1 + s)` at level `s`
    /// (counted when it fires).
    pub clamp: f64,
    /// Heun (EDM's second-order) steps of the ODE instead of Euler: one more
    /// denoiser call per step, no more vector-Jacobian products. Off by
    /// default (and then absent from `run.json`), as the published figures
    /// were made with Euler steps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heun: bool,
}

impl DpsConfig {
    /// Steps when none are given (chosen for a wall time comparable to the
    /// full DAPS schedule; docs/results.md).
    pub const DEFAULT_STEPS: usize = 100;

    /// Defaults chosen on validation cases (docs/results.md).
    pub fn default_for_budget(steps: usize) -> Self {
        Self { steps, sigma_max: 10.0, sigma_min: 0.01, rho: edm::RHO, zeta: 10.0, clamp: 10.0, heun: false }
    }

    /// Checks every knob; errors name the field.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.steps >= 1, "dps.steps must be >= 1");
        ensure!(
            self.sigma_min.is_finite()
                && self.sigma_min > 0.0
                && self.sigma_max.is_finite()
                && self.sigma_max > self.sigma_min,
            "dps: need 0 < sigma_min < sigma_max, got {} and {}",
            self.sigma_min,
            self.sigma_max
        );
        for (name, v) in [("rho", self.rho), ("zeta", self.zeta), ("clamp", self.clamp)] {
            ensure!(v.is_finite() && v > 0.0, "dps.{name} must be finite and > 0, got {v}");
        }
        Ok(())
    }
}

/// Runs DPS on `batch` chains and returns the final states (normalised
/// prior coordinates, on the inner backend).
///
/// A step from level `s` to `s'`: `d = (x - D(x; s)) / s`, the Euler state
/// `x_e = x + (s' - s) d`; with `heun` and `s' > 0` (the last step to 0 stays
/// Euler, as in EDM) `x_e = x + (s' - s) (d + d') / 2` with
/// `d' = (x_e - D(x_e; s')) / s'`. Then the guidance step
/// `x' = x_e - zeta grad_x ||r(D(x; s))||` at the step's start, as in the
/// Euler form, so `zeta` means the same for both.
pub fn dps_sample<B, D, G>(
    denoiser: &D,
    guide: &mut G,
    noise: &Noise,
    cfg: &DpsConfig,
    [batch, channels]: [usize; 2],
    seed: u64,
    device: &B::Device,
) -> Result<(Tensor<B::InnerBackend, 4>, SampleStats)>
where
    B: AutodiffBackend,
    D: Denoise<B>,
    G: Guide<B::InnerBackend>,
{
    cfg.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = SampleStats::default();
    let sigmas = edm::karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho);
    let mut clamp = Clamp::<B::InnerBackend>::new(device);
    let mut x = noise.draw::<B::InnerBackend, _>(&mut rng, batch, channels, device).mul_scalar(sigmas[0]);
    for (i, &s) in sigmas.iter().enumerate() {
        let x_ad = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
        let d = denoiser.denoise(x_ad.clone(), s);
        stats.denoiser_calls += 1;
        let x0 = d.clone().inner();
        let (loss, g0) = guide.loss_grad(x0.clone())?;
        stats.guide_calls += 1;
        // grad ||r|| = grad L / ||r|| with L = ||r||^2 / 2; per batch element.
        let scale: Vec<f32> = loss.iter().map(|&l| (1.0 / (2.0 * l).sqrt().max(1e-12)) as f32).collect();
        let scale =
            Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(scale, [batch]), device).reshape([batch, 1, 1, 1]);
        let g0 = g0 * scale;
        let grads = (d * Tensor::<B, 4>::from_inner(g0)).sum().backward();
        stats.denoiser_vjps += 1;
        let gx = x_ad.grad(&grads).ok_or_else(|| anyhow::anyhow!("DPS: no gradient reached x"))?;
        let s_next = sigmas.get(i + 1).copied().unwrap_or(0.0);
        let dx = (x.clone() - x0.clone()).div_scalar(s);
        let euler = x.clone() + dx.clone().mul_scalar(s_next - s);
        let stepped = if cfg.heun && s_next > 0.0 {
            // The corrector needs no gradient: a plain forward pass.
            let d_next = denoiser.denoise(Tensor::<B, 4>::from_inner(euler.clone()), s_next).inner();
            stats.denoiser_calls += 1;
            let dx_next = (euler - d_next).div_scalar(s_next);
            x + (dx + dx_next).mul_scalar(0.5 * (s_next - s))
        } else {
            euler
        };
        // The state is noisy at level s_next: clamp relative to it.
        x = clamp.apply(stepped - gx.mul_scalar(cfg.zeta), cfg.clamp * (1.0 + s_next));
    }
    clamp.finish(&mut stats);
    Ok((x, stats))
}
