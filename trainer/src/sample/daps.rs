//! DAPS (Zhang et al., decoupled annealing posterior sampling), docs/science.md
//! section 2: at each annealing level, an ODE estimate `a0` of the clean
//! field from the prior, then Langevin steps on
//! `log p(y | a) - |a - a0|^2 / (2 s_i^2)` with no gradient through the
//! prior, then re-noising to the next level.
//!
//! The full schedule and the reduced-step device schedule are the same code
//! with other step counts ([`DapsConfig::full`], [`DapsConfig::reduced`]).

use anyhow::{Result, ensure};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{Clamp, Denoise, Guide, Linearization, Noise, SampleStats};
use crate::exact::{cholesky, cholesky_solve};
use crate::grid::Grid;
use crate::model::edm::{self, heun_sample};
use crate::model::noise::SmoothNoise;

/// Settings of DAPS; every knob of the algorithm, with the defaults chosen
/// on validation cases (docs/results.md).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DapsConfig {
    /// Annealing levels `N`.
    pub annealing: usize,
    /// Denoiser ODE steps from each level to 0 (1 = Tweedie, one call;
    /// `k > 1` = `k` Heun steps, `2k - 1` calls).
    pub ode_steps: usize,
    /// Langevin steps per level.
    pub langevin: usize,
    /// Highest annealing level `s_0`.
    pub sigma_max: f64,
    /// Lowest annealing level `s_{N-1}` (then 0).
    pub sigma_min: f64,
    /// EDM spacing curvature of the levels.
    pub rho: f64,
    /// Likelihood width `tau` in residual units (readings' RMS); raised to
    /// the readings' noise when that is larger.
    pub tau: f64,
    /// Langevin step at the first level, as a fraction of `s_0^2`... see
    /// [`DapsConfig::step_size`].
    pub lr: f64,
    /// The step decays linearly to `lr * lr_min_ratio` at the last level.
    pub lr_min_ratio: f64,
    /// Cap of the step relative to `s_i^2` (stability of the prior term
    /// needs `< 2`).
    pub lr_cap: f64,
    /// Safety clamp on the normalised field (counted when it fires).
    pub clamp: f64,
    /// Precondition the Langevin steps by the smooth noise's covariance
    /// (function-space Langevin): drift `P grad log p`, noise `~ N(0, P)`,
    /// `P = (K x K) / lambda_max^2` with `K` the 1-D RBF kernel matrix. The
    /// chain then targets the posterior even though its noise is smooth, and
    /// the spiky parts of the likelihood gradient are damped. No effect with
    /// white noise. Off by default: on Darcy validation cases it gave the
    /// same error at `tau = 0.005` and was less stable at smaller `tau`
    /// (docs/results.md).
    #[serde(default)]
    pub precondition: bool,
    /// When the readings' noise widens the likelihood beyond `tau`
    /// (`tau' = max(tau, noise / RMS) > tau`), scale the Langevin step by
    /// `(tau' / tau)^2` (still capped at `lr_cap * s_i^2`), so the
    /// likelihood's pull per step stays what it was tuned to be. Without it
    /// the pull falls as `(tau / tau')^2` and a few steps per level no
    /// longer reach the readings (docs/results.md, "Reading noise"). No
    /// effect on noiseless readings.
    #[serde(default = "yes")]
    pub noise_scaled_step: bool,
    /// The likelihood width under noisy readings is
    /// `max(tau, noise_width * noise / RMS)`: 1 is the readings' true noise
    /// law; below 1 the sampler trusts the readings more than their noise
    /// warrants. A few Langevin steps per level under-use a wide
    /// likelihood: on Darcy validation cases with noise at 1 % and 5 % of
    /// the readings' RMS, 0 and 0.1 match the noiseless accuracy, 0.5 loses
    /// 6 points of error rate at 5 %, 1 loses 16 (docs/results.md, "Reading
    /// noise"). Default 0.1: the noise starts to count above 5 % of the RMS.
    #[serde(default = "default_noise_width")]
    pub noise_width: f64,
    /// The conditional step inside each level: Langevin (`langevin` steps
    /// of size [`step_size`](Self::step_size)) or Gauss–Newton (`langevin`
    /// iterations of the sensor-space solve, [`gauss_newton_update`]).
    #[serde(default)]
    pub step: StepKind,
    /// Gauss–Newton prior spread at level `s`: `r = r_scale * c_out(s, s_d)`
    /// (1: the spread of the prior's `p(x0 | x_s)` under a Gaussian law).
    #[serde(default = "one")]
    pub r_scale: f64,
    /// The prior's fields vanish on the grid boundary (the Helmholtz
    /// source): the Gauss–Newton step's spread is then `r^2 D K D` with `D`
    /// the interior mask, so no level adds spread where the prior has none
    /// and the readings (blind to boundary sources) cannot take it back.
    #[serde(default)]
    pub zero_boundary: bool,
}

/// The conditional step of each annealing level (host and device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Langevin steps on the likelihood gradient (`lr`, `clamp`).
    #[default]
    Langevin,
    /// The Gauss–Newton conditional step in sensor space (no step size, no
    /// clamp; the schedule's inner count is the number of iterations).
    GaussNewton,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

fn default_noise_width() -> f64 {
    DapsConfig::DEFAULT_NOISE_WIDTH
}

impl DapsConfig {
    /// The default [`DapsConfig::noise_width`], the device artifact's too
    /// (`ddis export --noise-width`): tuned on Darcy validation cases.
    pub const DEFAULT_NOISE_WIDTH: f64 = 0.1;

    /// The full schedule the host runs by default.
    pub fn full() -> Self {
        Self {
            annealing: 50,
            ode_steps: 3,
            langevin: 10,
            sigma_max: 10.0,
            sigma_min: 0.01,
            rho: edm::RHO,
            tau: 0.005,
            lr: 3e-3,
            lr_min_ratio: 0.01,
            lr_cap: 0.5,
            clamp: 10.0,
            precondition: false,
            noise_scaled_step: true,
            noise_width: default_noise_width(),
            step: StepKind::Langevin,
            r_scale: 1.0,
            zero_boundary: false,
        }
    }

    /// The reduced-step schedule the device runs (picked from the grid in
    /// docs/results.md).
    pub fn reduced() -> Self {
        Self { annealing: 20, ode_steps: 1, langevin: 5, ..Self::full() }
    }

    /// Checks every knob; errors name the field.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.annealing >= 1, "daps.annealing must be >= 1");
        ensure!(self.ode_steps >= 1, "daps.ode_steps must be >= 1");
        ensure!(
            self.sigma_min.is_finite()
                && self.sigma_min > 0.0
                && self.sigma_max.is_finite()
                && self.sigma_max > self.sigma_min,
            "daps: need 0 < sigma_min < sigma_max, got {} and {}",
            self.sigma_min,
            self.sigma_max
        );
        for (name, v) in [
            ("rho", self.rho),
            ("tau", self.tau),
            ("lr", self.lr),
            ("lr_cap", self.lr_cap),
            ("clamp", self.clamp),
            ("r_scale", self.r_scale),
        ] {
            ensure!(v.is_finite() && v > 0.0, "daps.{name} must be finite and > 0, got {v}");
        }
        ensure!(
            self.noise_width.is_finite() && self.noise_width >= 0.0,
            "daps.noise_width must be finite and >= 0, got {}",
            self.noise_width
        );
        ensure!(
            self.lr_min_ratio.is_finite() && self.lr_min_ratio > 0.0 && self.lr_min_ratio <= 1.0,
            "daps.lr_min_ratio must be in (0, 1], got {}",
            self.lr_min_ratio
        );
        Ok(())
    }

    /// The annealing levels `s_0 > ... > s_{N-1}` (the final 0 implied).
    pub fn sigmas(&self) -> Vec<f64> {
        edm::karras_sigmas(self.annealing, self.sigma_min, self.sigma_max, self.rho)
    }

    /// The Langevin step at level `i` of `sigma`: linear decay from `lr` to
    /// `lr * lr_min_ratio`, capped at `lr_cap * s_i^2`.
    pub fn step_size(&self, i: usize, sigma: f64) -> f64 {
        self.step_size_at_width(i, sigma, self.tau)
    }

    /// [`DapsConfig::step_size`] when the likelihood width in use is `tau`
    /// (raised above `self.tau` by the readings' noise): the step grows by
    /// `(tau / self.tau)^2` if [`DapsConfig::noise_scaled_step`], under the
    /// same cap.
    pub fn step_size_at_width(&self, i: usize, sigma: f64, tau: f64) -> f64 {
        let t = if self.annealing > 1 { i as f64 / (self.annealing - 1) as f64 } else { 0.0 };
        let decayed = self.lr * (1.0 - t * (1.0 - self.lr_min_ratio));
        let widen = if self.noise_scaled_step && tau > self.tau { (tau / self.tau).powi(2) } else { 1.0 };
        (decayed * widen).min(self.lr_cap * sigma * sigma)
    }

    /// Denoiser calls and guide calls per reconstruction.
    pub fn cost(&self) -> (usize, usize) {
        let ode = if self.ode_steps == 1 { 1 } else { 2 * self.ode_steps - 1 };
        (self.annealing * ode, self.annealing * self.langevin)
    }

    /// `AxOxL`, e.g. `20x1x5`.
    pub fn label(&self) -> String {
        format!("{}x{}x{}", self.annealing, self.ode_steps, self.langevin)
    }

    /// Parses `AxOxL` (annealing x ODE x Langevin) onto `self`'s other knobs.
    pub fn with_steps(&self, spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.trim().split('x').collect();
        ensure!(parts.len() == 3, "schedule `{spec}`: expected ANNEALINGxODExLANGEVIN, e.g. 20x1x5");
        let parse = |s: &str, what: &str| -> Result<usize> {
            s.parse().map_err(|_| anyhow::anyhow!("schedule `{spec}`: {what} `{s}` is not a whole number"))
        };
        let out = Self {
            annealing: parse(parts[0], "annealing steps")?,
            ode_steps: parse(parts[1], "ODE steps")?,
            langevin: parse(parts[2], "Langevin steps")?,
            ..self.clone()
        };
        out.validate()?;
        Ok(out)
    }
}

/// Runs DAPS on `batch` independent chains of `channels`-channel fields and
/// returns the final states (normalised prior coordinates).
pub fn daps_sample<B, D, G>(
    denoiser: &D,
    guide: &mut G,
    noise: &Noise,
    cfg: &DapsConfig,
    [batch, channels]: [usize; 2],
    seed: u64,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, SampleStats)>
where
    B: Backend,
    D: Denoise<B>,
    G: Guide<B>,
{
    cfg.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = SampleStats::default();
    let sigmas = cfg.sigmas();
    let tau = cfg.tau.max(cfg.noise_width * guide.noise_floor());
    let inv_tau2 = 1.0 / (tau * tau);
    let pre = match (noise, cfg.precondition) {
        (Noise::Smooth(sm), true) => Some(Preconditioner::<B>::new(sm, device)),
        _ => None,
    };
    let mut clamp = Clamp::<B>::new(device);
    let mut x = noise.draw::<B, _>(&mut rng, batch, channels, device).mul_scalar(sigmas[0]);
    // Gauss–Newton on a prior that vanishes on the boundary: its spread's mask.
    let mask =
        (cfg.zero_boundary && cfg.step == StepKind::GaussNewton).then(|| interior_mask::<B>(x.dims()[2], device));
    for (i, &s) in sigmas.iter().enumerate() {
        // ODE from s to 0: Tweedie with one step, Heun on a sub-schedule otherwise.
        let sub = if cfg.ode_steps == 1 {
            vec![s]
        } else {
            edm::karras_sigmas(cfg.ode_steps, cfg.sigma_min.min(s * 0.5), s, cfg.rho)
        };
        let a0 = heun_sample(
            |x, sigma| {
                stats.denoiser_calls += 1;
                denoiser.denoise(x, sigma)
            },
            x.div_scalar(s),
            &sub,
        );
        let mut a = a0.clone();
        match cfg.step {
            StepKind::Langevin => {
                let lr = cfg.step_size_at_width(i, s, tau);
                for _ in 0..cfg.langevin {
                    let grad = guide.grad(a.clone())?;
                    stats.guide_calls += 1;
                    let drift = grad.mul_scalar(-inv_tau2) - (a.clone() - a0.clone()).div_scalar(s * s);
                    let eps = noise.draw::<B, _>(&mut rng, batch, channels, device);
                    let (drift, eps) = match &pre {
                        Some(p) => (p.apply(drift), eps.mul_scalar(p.noise_scale)),
                        None => (drift, eps),
                    };
                    a = a + drift.mul_scalar(lr) + eps.mul_scalar((2.0 * lr).sqrt());
                    a = clamp.apply(a, cfg.clamp);
                }
            }
            StepKind::GaussNewton => {
                let r = cfg.r_scale * edm::c_out(s, denoiser.sigma_data());
                // One prior draw and one reading-noise draw per level, shared
                // by the iterations (randomise, then optimise).
                let draw = noise.draw::<B, _>(&mut rng, batch, channels, device).mul_scalar(r);
                let prop = a0.clone()
                    + match &mask {
                        Some(m) => m.clone().expand(draw.dims()) * draw,
                        None => draw,
                    };
                let mut e = None;
                for _ in 0..cfg.langevin {
                    let lin = guide.linearize(a.clone())?;
                    stats.guide_calls += 1;
                    let e = e
                        .get_or_insert_with(|| white::<B>(&mut rng, lin.residual.dims(), device).mul_scalar(tau))
                        .clone();
                    // r^2 C, or r^2 D C D on a prior that vanishes on the boundary.
                    let spread = |x: Tensor<B, 4>| match &mask {
                        Some(m) => {
                            let m = m.clone().expand(x.dims());
                            noise.apply_cov(x * m.clone()).mul_scalar(r * r) * m
                        }
                        None => noise.apply_cov(x).mul_scalar(r * r),
                    };
                    a = gauss_newton_update_with(a, prop.clone(), e, lin, spread, tau, &mut stats.widened);
                    a = clamp.apply(a, cfg.clamp);
                }
            }
        }
        let s_next = sigmas.get(i + 1).copied().unwrap_or(0.0);
        x = if s_next > 0.0 { a + noise.draw::<B, _>(&mut rng, batch, channels, device).mul_scalar(s_next) } else { a };
    }
    clamp.finish(&mut stats);
    Ok((x, stats))
}

/// `N(0, 1)` values of shape `dims`, drawn from `rng`.
fn white<B: Backend>(rng: &mut ChaCha8Rng, dims: [usize; 2], device: &B::Device) -> Tensor<B, 2> {
    let v: Vec<f32> = (0..dims[0] * dims[1]).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
    Tensor::from_data(TensorData::new(v, dims), device)
}

/// One Gauss–Newton iteration of the conditional step (docs/science.md
/// section 2, "the conditional step"), every batch element at once:
///
/// ```text
/// d = -r(a) - J (a' - a) - e'           linearised misfit of the prior draw a'
/// S = r^2 J C J^T + tau^2 I             K x K per element
/// a_new = a' + r^2 C J^T S^-1 d
/// ```
///
/// `lin` is the guide linearised at `a`; `prop` is the prior draw
/// `a' = a0 + r C^(1/2) z` and `e` the reading-noise draw `tau * N(0, I)`.
/// For a linear forward map one iteration from any `a` is an exact draw
/// from `N(a0, r^2 C) x N(y | ., tau^2 I)` (Matheron's rule; tested). The
/// `K x K` solves run on the host in f64 (Cholesky). `S` is assembled in
/// f32, so with a tight width and hundreds of readings its round-off can
/// exceed the nugget `tau^2` and leave it indefinite: the nugget is then
/// raised by [`WIDEN_FACTOR`] until it factors, at most [`MAX_WIDEN`]
/// times (each counted in `widened`). An element whose `S` still does not
/// factor (a non-finite Jacobian) comes back non-finite, for the caller's
/// clamp to count.
pub fn gauss_newton_update<B: Backend>(
    a: Tensor<B, 4>,
    prop: Tensor<B, 4>,
    e: Tensor<B, 2>,
    lin: Linearization<B>,
    noise: &Noise,
    r: f64,
    tau: f64,
) -> Tensor<B, 4> {
    gauss_newton_update_with(a, prop, e, lin, |x| noise.apply_cov(x).mul_scalar(r * r), tau, &mut 0)
}

/// Factor by which a sensor-space nugget that does not factor is raised.
pub const WIDEN_FACTOR: f64 = 4.0;

/// Most raises of the nugget before an element is given up (`4^6 tau^2`:
/// a width 64 times `tau`).
pub const MAX_WIDEN: usize = 6;

/// [`gauss_newton_update`] with the prior spread as an operator: `spread(x)`
/// applies the proposal's covariance (`r^2 C` there; `r^2 D C D` for a
/// prior that vanishes on the boundary) to every `n x n` slice of
/// `x: [m, C, n, n]`; `prop` must be a draw from it around `a0`. Adds the
/// number of raised nuggets to `widened`.
pub fn gauss_newton_update_with<B: Backend>(
    a: Tensor<B, 4>,
    prop: Tensor<B, 4>,
    e: Tensor<B, 2>,
    lin: Linearization<B>,
    spread: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    tau: f64,
    widened: &mut usize,
) -> Tensor<B, 4> {
    let dims = a.dims();
    let [b, c, n, _] = dims;
    let nodes = c * n * n;
    let [_, k] = lin.residual.dims();
    let device = a.device();
    let j = lin.jacobian;
    // r^2 C J^T, one row per sensor.
    let cjt = spread(j.clone().reshape([b * k, c, n, n])).reshape([b, k, nodes]);
    let s = j.clone().matmul(cjt.clone().swap_dims(1, 2));
    let jd = j.matmul((prop.clone() - a).reshape([b, nodes, 1])).reshape([b, k]);
    let d = lin.residual.neg() - jd - e;
    let s: Vec<f32> = s.into_data().to_vec().unwrap_or_default();
    let d: Vec<f32> = d.into_data().to_vec().unwrap_or_default();
    let mut w = vec![f32::NAN; b * k];
    if s.len() == b * k * k && d.len() == b * k {
        for ((sb, db), wb) in s.chunks_exact(k * k).zip(d.chunks_exact(k)).zip(w.chunks_exact_mut(k)) {
            if let Some(raised) = solve_sensor_space(sb, db, k, tau * tau, wb) {
                *widened += raised;
            }
        }
    }
    let w = Tensor::<B, 3>::from_data(TensorData::new(w, [b, 1, k]), &device);
    prop + w.matmul(cjt).reshape(dims)
}

/// Solves `(S + nugget I) w = d` in f64 for the `k x k` f32 matrix `s`
/// (lower triangle read), raising the nugget by [`WIDEN_FACTOR`] while the
/// Cholesky factorisation fails, at most [`MAX_WIDEN`] times. Returns the
/// number of raises, or `None` (and `w` untouched) when none factored.
pub(crate) fn solve_sensor_space(s: &[f32], d: &[f32], k: usize, nugget: f64, w: &mut [f32]) -> Option<usize> {
    let mut nugget = nugget;
    for raised in 0..=MAX_WIDEN {
        let mut m: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
        for i in 0..k {
            m[i * k + i] += nugget;
        }
        if cholesky(&mut m, k).is_ok() {
            let mut rhs: Vec<f64> = d.iter().map(|&v| f64::from(v)).collect();
            cholesky_solve(&m, k, &mut rhs);
            for (wv, &x) in w.iter_mut().zip(&rhs) {
                *wv = x as f32;
            }
            return Some(raised);
        }
        nugget *= WIDEN_FACTOR;
    }
    None
}

/// 1 on interior nodes, 0 on the boundary of an `n x n` grid, `[1, 1, n, n]`.
pub(crate) fn interior_mask<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 4> {
    let grid = Grid { n };
    let v: Vec<f32> =
        (0..grid.len()).map(|k| grid.ij(k)).map(|(i, j)| if grid.is_boundary(i, j) { 0.0 } else { 1.0 }).collect();
    Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, n, n]), device)
}

/// `P X = K X K / lambda_max(K)^2` on every `n x n` slice, with `K = L L`
/// the 1-D kernel matrix of the smooth noise (`L` its symmetric square
/// root). Scaled so that `P <= I`: the step-size cap that keeps the prior
/// term stable still holds.
struct Preconditioner<B: Backend> {
    k: Tensor<B, 4>,
    /// `1 / lambda_max(K)`: the smooth noise `L Z L` times this has
    /// covariance `P`.
    noise_scale: f64,
}

impl<B: Backend> Preconditioner<B> {
    fn new(noise: &SmoothNoise, device: &B::Device) -> Self {
        let n = noise.n();
        let k = noise.kernel();
        // Power iteration for the largest eigenvalue of the SPD matrix K.
        let mut v = vec![1.0f64; n];
        let mut lambda = 1.0;
        for _ in 0..200 {
            let w: Vec<f64> = (0..n).map(|i| (0..n).map(|j| k[i * n + j] * v[j]).sum()).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm / v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v = w.iter().map(|x| x / norm).collect();
        }
        let scaled: Vec<f32> = k.iter().map(|&x| (x / lambda) as f32).collect();
        let k = Tensor::from_data(burn::tensor::TensorData::new(scaled, [1, 1, n, n]), device);
        Self { k, noise_scale: 1.0 / lambda }
    }

    fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, n, _] = x.dims();
        let k = self.k.clone().expand([b, c, n, n]);
        // K symmetric: K X K = (X K)^T K)^T.
        let xk = x.matmul(k.clone());
        xk.swap_dims(2, 3).matmul(k).swap_dims(2, 3)
    }
}
