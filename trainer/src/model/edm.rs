//! EDM (Karras et al. 2022) preconditioning, training noise levels, the
//! `rho` noise schedule and the deterministic Heun sampler (docs/science.md
//! section 2).
//!
//! The scalar formulas are plain f64 functions so that the DAPS sampler and
//! the export (which folds the schedule into the device artifact) share one
//! definition. The network itself lives in `denoiser`; the sampler here only
//! needs "some `D(x; sigma)`", which is how it is tested with the exact
//! denoiser of Gaussian data.

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::Error;

/// Mean of `ln sigma` of the training noise levels (EDM's `P_mean`).
pub const P_MEAN: f64 = -1.2;
/// Standard deviation of `ln sigma` of the training noise levels (`P_std`).
pub const P_STD: f64 = 1.2;
/// EDM's schedule curvature `rho`: larger concentrates steps at low noise.
pub const RHO: f64 = 7.0;

/// `c_skip(s) = s_d^2 / (s^2 + s_d^2)`: how much of the noisy input the
/// denoiser passes through unchanged (-> 1 as `s -> 0`).
pub fn c_skip(sigma: f64, sigma_data: f64) -> f64 {
    let sd2 = sigma_data * sigma_data;
    sd2 / (sigma * sigma + sd2)
}

/// `c_out(s) = s s_d / sqrt(s^2 + s_d^2)`: scale of the network's output
/// (-> 0 as `s -> 0`, so the network's error is damped at low noise).
pub fn c_out(sigma: f64, sigma_data: f64) -> f64 {
    sigma * sigma_data / (sigma * sigma + sigma_data * sigma_data).sqrt()
}

/// `c_in(s) = 1 / sqrt(s^2 + s_d^2)`: scales the noisy input to unit
/// variance.
pub fn c_in(sigma: f64, sigma_data: f64) -> f64 {
    1.0 / (sigma * sigma + sigma_data * sigma_data).sqrt()
}

/// `c_noise(s) = ln(s) / 4`: the noise level as the network sees it.
pub fn c_noise(sigma: f64) -> f64 {
    sigma.ln() / 4.0
}

/// The Fourier features of the noise level that both EDM networks (the
/// FNO-type denoiser and the U-Net) embed:
/// `[sin(2^k c), cos(2^k c)]` for `k < frequencies`, `[batch, 2 frequencies]`.
pub(crate) fn noise_features<B: Backend>(c_noise: Tensor<B, 1>, frequencies: usize) -> Tensor<B, 2> {
    let [batch] = c_noise.dims();
    let freqs: Vec<f32> = (0..frequencies).map(|k| (1u64 << k.min(63)) as f32).collect();
    let freqs = Tensor::<B, 2>::from_data(TensorData::new(freqs, [1, frequencies]), &c_noise.device());
    let phase = c_noise.reshape([batch, 1]) * freqs;
    Tensor::cat(vec![phase.clone().sin(), phase.cos()], 1)
}

/// EDM loss weight `lambda(s) = (s^2 + s_d^2) / (s s_d)^2 = 1 / c_out^2`:
/// makes the effective training target of the raw network unit-weighted at
/// every noise level.
pub fn loss_weight(sigma: f64, sigma_data: f64) -> f64 {
    let sd2 = sigma_data * sigma_data;
    (sigma * sigma + sd2) / (sigma * sigma * sd2)
}

/// A training noise level from a standard normal draw `z`:
/// `sigma = exp(p_mean + p_std z)`, i.e. `ln sigma ~ N(p_mean, p_std^2)`.
pub fn training_sigma(z: f64, p_mean: f64, p_std: f64) -> f64 {
    (p_mean + p_std * z).exp()
}

/// The EDM noise schedule: `steps` levels from `sigma_max` down to
/// `sigma_min`, evenly spaced in `sigma^(1/rho)`:
///
/// ```text
/// s_i = (s_max^(1/rho) + i/(steps-1) (s_min^(1/rho) - s_max^(1/rho)))^rho
/// ```
///
/// The final `0` of Karras's Algorithm 1 is not included; samplers append
/// it. `steps == 1` gives `[sigma_max]`, `steps == 0` nothing. Meaningful
/// for `0 < sigma_min < sigma_max`, `rho > 0` ([`HeunConfig::validate`]).
pub fn karras_sigmas(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    if steps <= 1 {
        return vec![sigma_max; steps];
    }
    let (hi, lo) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    (0..steps)
        .map(|i| {
            if i + 1 == steps {
                // Exact endpoint, not a round-trip through powf.
                return sigma_min;
            }
            let t = i as f64 / (steps - 1) as f64;
            if i == 0 { sigma_max } else { (hi + t * (lo - hi)).powf(rho) }
        })
        .collect()
}

/// Settings of the deterministic Heun sampler (EDM's defaults).
#[derive(Config, Debug, PartialEq)]
pub struct HeunConfig {
    /// Noise levels `N` (the ODE takes `N` steps, `2N - 1` denoiser calls).
    #[config(default = 18)]
    pub steps: usize,
    /// Lowest noise level before the final step to 0.
    #[config(default = 0.002)]
    pub sigma_min: f64,
    /// Starting noise level; the initial field is `sigma_max` times noise.
    #[config(default = 80.0)]
    pub sigma_max: f64,
    /// Schedule curvature.
    #[config(default = 7.0)]
    pub rho: f64,
}

impl HeunConfig {
    /// Checks `steps >= 1`, `0 < sigma_min < sigma_max` (finite), `rho > 0`.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |name, value, reason| Err(Error::InvalidConfig { name, value, reason });
        if self.steps == 0 {
            return bad("heun.steps", 0.0, "must be >= 1");
        }
        if !(self.sigma_min.is_finite() && self.sigma_min > 0.0) {
            return bad("heun.sigma_min", self.sigma_min, "must be finite and > 0");
        }
        if !(self.sigma_max.is_finite() && self.sigma_max > self.sigma_min) {
            return bad("heun.sigma_max", self.sigma_max, "must be finite and > sigma_min");
        }
        if !(self.rho.is_finite() && self.rho > 0.0) {
            return bad("heun.rho", self.rho, "must be finite and > 0");
        }
        Ok(())
    }

    /// The schedule [`karras_sigmas`] of these settings (without the final 0).
    pub fn sigmas(&self) -> Vec<f64> {
        karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)
    }
}

/// Karras et al. Algorithm 1 (deterministic Heun, no churn): integrates the
/// probability-flow ODE `dx/ds = (x - D(x; s)) / s` from `sigmas[0]` through
/// every level of `sigmas` down to 0.
///
/// `noise` is a unit-variance noise field (white or smooth, drawn by the
/// caller on the host); the start is `sigmas[0] * noise`. `denoise(x, s)`
/// returns `D(x; s)` for the whole batch at level `s`. The last step (to 0)
/// is an Euler step, as in the paper. With an empty schedule the result is
/// `noise` unchanged.
pub fn heun_sample<B, F>(mut denoise: F, noise: Tensor<B, 4>, sigmas: &[f64]) -> Tensor<B, 4>
where
    B: Backend,
    F: FnMut(Tensor<B, 4>, f64) -> Tensor<B, 4>,
{
    let Some(&first) = sigmas.first() else {
        return noise;
    };
    let mut x = noise.mul_scalar(first);
    for (i, &s) in sigmas.iter().enumerate() {
        let s_next = sigmas.get(i + 1).copied().unwrap_or(0.0);
        let dt = s_next - s;
        let d = (x.clone() - denoise(x.clone(), s)).div_scalar(s);
        let euler = x.clone() + d.clone().mul_scalar(dt);
        x = if s_next > 0.0 {
            let d_next = (euler.clone() - denoise(euler, s_next)).div_scalar(s_next);
            x + (d + d_next).mul_scalar(0.5 * dt)
        } else {
            euler
        };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    type B = NdArray<f32>;

    /// f64 identities hold to a few ulps over the range tested.
    const IDENTITY_TOL: f64 = 1e-12;

    fn close(got: f64, want: f64, rel: f64, what: &str) {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1e-300),
            "{what}: got {got}, expected {want} (rel tol {rel:e})"
        );
    }

    #[test]
    fn preconditioning_identities() {
        for sd in [0.5, 1.0, 2.0] {
            for s in [1e-3, 0.05, 0.3, 1.0, 4.0, 80.0] {
                let what = format!("s {s}, s_d {sd}");
                // Network input has unit variance: Var(c_in (x + s n)) = 1.
                close(c_in(s, sd).powi(2) * (sd * sd + s * s), 1.0, IDENTITY_TOL, &format!("c_in, {what}"));
                // Training target (x - c_skip (x + s n)) / c_out has unit
                // variance: ((1 - c_skip)^2 s_d^2 + c_skip^2 s^2) = c_out^2.
                let (ck, co) = (c_skip(s, sd), c_out(s, sd));
                close(
                    (1.0 - ck).powi(2) * sd * sd + ck * ck * s * s,
                    co * co,
                    IDENTITY_TOL,
                    &format!("target, {what}"),
                );
                // The loss weight cancels c_out^2.
                close(loss_weight(s, sd) * co * co, 1.0, IDENTITY_TOL, &format!("weight, {what}"));
                // c_skip + c_out^2 / s_d^2 = 1 (skip and output split the unit).
                close(ck + co * co / (sd * sd), 1.0, IDENTITY_TOL, &format!("split, {what}"));
            }
            assert!((1.0 - c_skip(1e-8, sd)).abs() < 1e-12, "c_skip -> 1 as s -> 0");
            assert!(c_out(1e-8, sd) < 1e-7, "c_out -> 0 as s -> 0");
            assert!(c_skip(1e4, sd) < 1e-7, "c_skip -> 0 as s -> inf");
        }
        close(c_noise(std::f64::consts::E.powi(4)), 1.0, IDENTITY_TOL, "c_noise");
        close(training_sigma(0.0, P_MEAN, P_STD), (-1.2f64).exp(), IDENTITY_TOL, "median sigma");
    }

    #[test]
    fn schedule_endpoints_and_monotonicity() {
        for steps in [2, 5, 18, 100] {
            let s = karras_sigmas(steps, 0.002, 80.0, RHO);
            assert_eq!(s.len(), steps);
            assert_eq!((s[0], s[steps - 1]), (80.0, 0.002), "endpoints, {steps} steps");
            assert!(s.windows(2).all(|w| w[0] > w[1]), "strictly decreasing, {steps} steps: {s:?}");
        }
        // Even spacing in sigma^(1/rho): middle of 3 levels.
        let s = karras_sigmas(3, 0.01, 10.0, RHO);
        let mid = ((10.0f64.powf(1.0 / 7.0) + 0.01f64.powf(1.0 / 7.0)) / 2.0).powf(7.0);
        close(s[1], mid, IDENTITY_TOL, "middle level");
        assert_eq!(karras_sigmas(1, 0.01, 10.0, RHO), vec![10.0]);
        assert!(karras_sigmas(0, 0.01, 10.0, RHO).is_empty());
        assert!(HeunConfig::new().validate().is_ok());
        assert!(HeunConfig::new().with_sigma_max(0.001).validate().is_err());
        assert!(HeunConfig::new().with_steps(0).validate().is_err());
    }

    /// Exact denoiser of Gaussian data `N(0, s_d^2 I)`.
    fn gaussian_denoiser(sd: f64) -> impl FnMut(Tensor<B, 4>, f64) -> Tensor<B, 4> {
        move |x, s| x.mul_scalar(sd * sd / (s * s + sd * sd))
    }

    fn variance(t: Tensor<B, 4>) -> f64 {
        let v = t.into_data().to_vec::<f32>().unwrap();
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    }

    fn white(seed: u64, shape: [usize; 4]) -> Tensor<B, 4> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let len = shape.iter().product();
        let v: Vec<f32> = (0..len).map(|_| StandardNormal.sample(&mut rng)).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    /// Plain f64 Algorithm 1 on one scalar with the Gaussian denoiser: the
    /// reference for the tensor sampler (the ODE is linear, so every sample
    /// is scaled by the same factor).
    fn heun_gain_reference(sd: f64, sigmas: &[f64]) -> f64 {
        let d = |x: f64, s: f64| x * sd * sd / (s * s + sd * sd);
        let mut x = sigmas[0];
        for (i, &s) in sigmas.iter().enumerate() {
            let s_next = sigmas.get(i + 1).copied().unwrap_or(0.0);
            let slope = (x - d(x, s)) / s;
            let euler = x + (s_next - s) * slope;
            x = if s_next > 0.0 {
                x + (s_next - s) * 0.5 * (slope + (euler - d(euler, s_next)) / s_next)
            } else {
                euler
            };
        }
        x
    }

    #[test]
    fn heun_with_exact_gaussian_denoiser_recovers_data_variance() {
        let sd = 0.5;
        // EDM's default 18 steps from sigma_max = 80 overshoot the variance
        // of Gaussian data by ~11 % (s_d = 0.5) even with the exact
        // denoiser; 64 steps bring the bias down to 0.7 %.
        let cfg = HeunConfig::new().with_steps(64);
        let noise = white(1, [64, 1, 16, 16]);
        let var0 = variance(noise.clone());
        let out = heun_sample(gaussian_denoiser(sd), noise, &cfg.sigmas());
        let var = variance(out);
        // 16384 values: the sample variance has a relative standard error of
        // sqrt(2 / 16384) = 1.1 %; allow 4, plus the 0.7 % bias.
        close(var, sd * sd, 0.052, "sample variance");
        // Deterministic part: the tensor sampler scales every value exactly
        // as the f64 reference does (f32 round-off over 127 calls).
        let gain = heun_gain_reference(sd, &cfg.sigmas());
        close(var / var0, gain * gain, 1e-4, "variance ratio vs f64 reference");
        for (steps, bias) in [(18, 0.12), (64, 0.008)] {
            let gain = heun_gain_reference(sd, &HeunConfig::new().with_steps(steps).sigmas());
            assert!((gain * gain / (sd * sd) - 1.0).abs() < bias, "{steps} steps: variance bias above {bias}");
        }
    }

    #[test]
    fn heun_is_second_order() {
        let sd = 1.0;
        let err = |steps: usize| {
            let cfg = HeunConfig::new().with_steps(steps).with_sigma_max(10.0).with_sigma_min(0.05);
            let one = Tensor::<B, 4>::ones([1, 1, 1, 1], &Default::default());
            let got = f64::from(heun_sample(gaussian_denoiser(sd), one, &cfg.sigmas()).into_scalar());
            // Exact flow from s_max down to s_min, then the Euler step to 0,
            // which is exactly D(x; s_min).
            let at_min = cfg.sigma_max * ((cfg.sigma_min.powi(2) + sd * sd) / (cfg.sigma_max.powi(2) + sd * sd)).sqrt();
            let want = at_min * sd * sd / (cfg.sigma_min.powi(2) + sd * sd);
            (got - want).abs() / want
        };
        let (coarse, fine) = (err(8), err(16));
        assert!(coarse / fine > 3.0, "halving the step should cut the error ~4x: {coarse:e} -> {fine:e}");
    }
}
