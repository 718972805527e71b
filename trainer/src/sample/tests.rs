//! Sampler tests: DAPS on a Gaussian prior with a linear forward map, where
//! the exact posterior is known in closed form, and finite-difference checks
//! of the guides' gradients.

use super::*;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

type B = NdArray<f32>;
type AB = Autodiff<B>;

/// Posterior-mean error allowed, in units of the Monte Carlo standard error
/// of the sample mean plus an absolute allowance for DAPS's bias
/// (it approximates `p(x0 | x_s)` by `N(D(x_s), s^2)`).
const MEAN_Z: f64 = 5.0;
const MEAN_BIAS: f64 = 0.05;
/// Relative tolerance on the posterior standard deviations.
const STD_REL: f64 = 0.25;
/// Finite-difference check of guide gradients (f32 forward models).
const FD_REL: f64 = 2e-2;

/// The exact denoiser of N(0, I) data under white noise: `x / (1 + s^2)`.
pub(super) struct GaussianDenoiser;

impl<BB: Backend> Denoise<BB> for GaussianDenoiser {
    fn denoise(&self, x: Tensor<BB, 4>, sigma: f64) -> Tensor<BB, 4> {
        x.div_scalar(1.0 + sigma * sigma)
    }

    fn sigma_data(&self) -> f64 {
        1.0
    }
}

/// `L = 0.5 ||H x - y||^2` with a dense `H` (K x d).
pub(super) struct LinearGuide {
    pub(super) h: Vec<Vec<f64>>,
    pub(super) y: Vec<f64>,
}

impl<BB: Backend> Guide<BB> for LinearGuide {
    fn loss_grad(&mut self, x0: Tensor<BB, 4>) -> Result<(Vec<f64>, Tensor<BB, 4>)> {
        let dims = x0.dims();
        let d = dims[1] * dims[2] * dims[3];
        let x: Vec<f32> = x0.clone().into_data().to_vec().unwrap();
        let mut losses = vec![];
        let mut grad = vec![0.0f32; x.len()];
        for (b, xb) in x.chunks(d).enumerate() {
            let mut loss = 0.0;
            for (row, &yk) in self.h.iter().zip(&self.y) {
                let r: f64 = row.iter().zip(xb).map(|(h, &v)| h * f64::from(v)).sum::<f64>() - yk;
                loss += 0.5 * r * r;
                for (g, h) in grad[b * d..(b + 1) * d].iter_mut().zip(row) {
                    *g += (r * h) as f32;
                }
            }
            losses.push(loss);
        }
        Ok((losses, Tensor::from_data(TensorData::new(grad, dims), &x0.device())))
    }

    fn noise_floor(&self) -> f64 {
        0.0
    }

    fn linearize(&mut self, x0: Tensor<BB, 4>) -> Result<Linearization<BB>> {
        let [b, c, n, _] = x0.dims();
        let d = c * n * n;
        let k = self.h.len();
        let x: Vec<f32> = x0.clone().into_data().to_vec().unwrap();
        let res: Vec<f32> = x
            .chunks(d)
            .flat_map(|xb| {
                self.h.iter().zip(&self.y).map(move |(row, &yk)| {
                    (row.iter().zip(xb).map(|(h, &v)| h * f64::from(v)).sum::<f64>() - yk) as f32
                })
            })
            .collect();
        let jac: Vec<f32> = (0..b).flat_map(|_| self.h.iter().flatten().map(|&v| v as f32)).collect();
        Ok(Linearization {
            residual: Tensor::from_data(TensorData::new(res, [b, k]), &x0.device()),
            jacobian: Tensor::from_data(TensorData::new(jac, [b, k, d]), &x0.device()),
        })
    }
}

/// Solves the small dense SPD system `m z = r` by Gaussian elimination.
#[allow(clippy::needless_range_loop)] // index form mirrors the textbook algorithm
pub(super) fn solve(mut m: Vec<Vec<f64>>, mut r: Vec<f64>) -> Vec<f64> {
    let d = r.len();
    for c in 0..d {
        for i in c + 1..d {
            let f = m[i][c] / m[c][c];
            for j in c..d {
                m[i][j] -= f * m[c][j];
            }
            r[i] -= f * r[c];
        }
    }
    let mut z = vec![0.0; d];
    for i in (0..d).rev() {
        z[i] = (r[i] - (i + 1..d).map(|j| m[i][j] * z[j]).sum::<f64>()) / m[i][i];
    }
    z
}

#[test]
fn daps_recovers_the_exact_gaussian_posterior() {
    let cfg = DapsConfig {
        annealing: 60,
        ode_steps: 1,
        langevin: 40,
        sigma_max: 10.0,
        sigma_min: 0.01,
        rho: 7.0,
        tau: 0.5,
        lr: 0.02,
        lr_min_ratio: 0.01,
        lr_cap: 0.5,
        clamp: 100.0,
        precondition: true,
        noise_scaled_step: true,
        noise_width: 1.0,
        step: StepKind::Langevin,
        r_scale: 1.0,
        zero_boundary: false,
    };
    check_against_exact_gaussian_posterior(&cfg);
}

/// Runs DAPS with `cfg` (its `tau` the likelihood width) on `x ~ N(0, I)`
/// on a 3 x 3 grid, `y = H x* + e`, and compares every node's mean and
/// standard deviation over 4000 chains with the exact posterior's.
pub(super) fn check_against_exact_gaussian_posterior(cfg: &DapsConfig) {
    let (n, k, tau, chains) = (3, 4, cfg.tau, 4000);
    let d = n * n;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let h: Vec<Vec<f64>> = (0..k).map(|_| (0..d).map(|_| StandardNormal.sample(&mut rng)).collect()).collect();
    let y: Vec<f64> = (0..k)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            2.0 * z
        })
        .collect();
    // Posterior precision P = I + H^T H / tau^2, mean = P^-1 H^T y / tau^2.
    let prec: Vec<Vec<f64>> = (0..d)
        .map(|i| {
            (0..d)
                .map(|j| f64::from(u8::from(i == j)) + (0..k).map(|r| h[r][i] * h[r][j]).sum::<f64>() / (tau * tau))
                .collect()
        })
        .collect();
    let hty: Vec<f64> = (0..d).map(|i| (0..k).map(|r| h[r][i] * y[r]).sum::<f64>() / (tau * tau)).collect();
    let mean = solve(prec.clone(), hty);
    let var: Vec<f64> = (0..d)
        .map(|i| {
            let e: Vec<f64> = (0..d).map(|j| f64::from(u8::from(i == j))).collect();
            solve(prec.clone(), e)[i]
        })
        .collect();

    let mut guide = LinearGuide { h, y };
    let device = Default::default();
    let (x, stats) =
        daps_sample::<B, _, _>(&GaussianDenoiser, &mut guide, &Noise::White { n }, cfg, [chains, 1], 3, &device)
            .unwrap();
    assert_eq!(stats.clamped, 0);
    assert_eq!(stats.guide_calls, cfg.annealing * cfg.langevin);
    let x: Vec<f32> = x.into_data().to_vec().unwrap();
    for i in 0..d {
        let vals: Vec<f64> = x.iter().skip(i).step_by(d).map(|&v| f64::from(v)).collect();
        let m = vals.iter().sum::<f64>() / chains as f64;
        let v = vals.iter().map(|t| (t - m).powi(2)).sum::<f64>() / (chains - 1) as f64;
        let se = (var[i] / chains as f64).sqrt();
        assert!(
            (m - mean[i]).abs() <= MEAN_Z * se + MEAN_BIAS,
            "node {i}: DAPS mean {m:.4}, exact posterior mean {:.4} (tolerance {:.4})",
            mean[i],
            MEAN_Z * se + MEAN_BIAS
        );
        assert!(
            (v.sqrt() - var[i].sqrt()).abs() <= STD_REL * var[i].sqrt(),
            "node {i}: DAPS std {:.4}, exact posterior std {:.4}",
            v.sqrt(),
            var[i].sqrt()
        );
    }
}

#[test]
fn daps_is_reproducible_and_schedules_parse() {
    let cfg = DapsConfig::reduced();
    assert_eq!(cfg.with_steps("10x2x3").unwrap().cost(), (30, 30));
    assert!(cfg.with_steps("10x0x3").is_err());
    assert!(cfg.with_steps("10x3").is_err());
    assert!(cfg.with_steps("ax1x1").is_err());
    let mut small = cfg.with_steps("4x1x2").unwrap();
    small.tau = 0.5; // a likelihood this toy guide can follow without clamping
    let run = |seed| {
        let mut guide = LinearGuide { h: vec![vec![1.0; 9]], y: vec![1.0] };
        let (x, _) = daps_sample::<B, _, _>(
            &GaussianDenoiser,
            &mut guide,
            &Noise::White { n: 3 },
            &small,
            [5, 1],
            seed,
            &Default::default(),
        )
        .unwrap();
        x.into_data().to_vec::<f32>().unwrap()
    };
    let first = run(1);
    assert!(first.iter().all(|v| v.is_finite() && v.abs() < 10.0), "no clamping: {first:?}");
    assert_eq!(first, run(1), "same seed, same bits");
    assert_ne!(run(1), run(2));
    // The step is capped by s^2 at low levels and decays linearly.
    let full = DapsConfig::full();
    assert!(full.step_size(full.annealing - 1, 0.01) <= full.lr_cap * 1e-4 + 1e-18);
    assert!(full.step_size(0, 10.0) == full.lr);
}

/// Heun's error on the probability-flow ODE over Euler's at equal step count
/// may be at most this (measured: far below; it is second order).
const HEUN_OVER_EULER: f64 = 1.0;
/// Error ratios on halving the step: first order gives about 2, second
/// order about 4; these bounds leave room for the non-uniform EDM spacing.
const EULER_ORDER_RATIO: (f64, f64) = (1.5, 2.7);
const HEUN_ORDER_RATIO_MIN: f64 = 3.0;

#[test]
fn dps_heun_integrates_the_probability_flow_more_accurately_than_euler() {
    // Without readings DPS integrates the probability-flow ODE. For N(0, I)
    // data under white noise D(x; s) = x / (1 + s^2), so dx/ds = s x / (1 + s^2)
    // and x(s) = x(S) sqrt((1 + s^2) / (1 + S^2)) exactly. Both samplers end
    // with the same Euler step from sigma_min to 0 (factor 1 / (1 + m^2)),
    // which the reference applies too.
    let (n, chains, seed) = (3, 8, 5);
    let device = Default::default();
    let noise = Noise::White { n };
    let error = |steps: usize, heun: bool| -> (f64, SampleStats) {
        let cfg = DpsConfig { steps, zeta: 1.0, clamp: 1e6, heun, ..DpsConfig::default_for_budget(steps) };
        let mut no_readings = LinearGuide { h: vec![], y: vec![] };
        let (x, stats) =
            dps_sample::<AB, _, _>(&GaussianDenoiser, &mut no_readings, &noise, &cfg, [chains, 1], seed, &device)
                .unwrap();
        let x: Vec<f32> = x.into_data().to_vec().unwrap();
        // dps_sample's first draw: the start at sigma_max.
        let z: Vec<f32> =
            noise.draw::<B, _>(&mut ChaCha8Rng::seed_from_u64(seed), chains, 1, &device).into_data().to_vec().unwrap();
        let (big, small) = (cfg.sigma_max, cfg.sigma_min);
        let factor = big * ((1.0 + small * small) / (1.0 + big * big)).sqrt() / (1.0 + small * small);
        let exact: Vec<f64> = z.iter().map(|&v| f64::from(v) * factor).collect();
        let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = x.iter().zip(&exact).map(|(&a, b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
        (worst / scale, stats)
    };
    let mut last: Option<(f64, f64)> = None;
    for steps in [8, 16, 32] {
        let (euler, euler_stats) = error(steps, false);
        let (heun, heun_stats) = error(steps, true);
        assert!(heun <= HEUN_OVER_EULER * euler, "{steps} steps: Heun error {heun:.3e} above Euler's {euler:.3e}");
        assert_eq!((euler_stats.denoiser_calls, heun_stats.denoiser_calls), (steps, 2 * steps - 1));
        assert_eq!((euler_stats.denoiser_vjps, heun_stats.denoiser_vjps), (steps, steps), "Heun adds no VJP");
        if let Some((e, h)) = last {
            let (re, rh) = (e / euler, h / heun);
            assert!(
                (EULER_ORDER_RATIO.0..=EULER_ORDER_RATIO.1).contains(&re),
                "Euler error {e:.3e} -> {euler:.3e} at {steps} steps: ratio {re:.2}, want about 2"
            );
            assert!(
                rh >= HEUN_ORDER_RATIO_MIN,
                "Heun error {h:.3e} -> {heun:.3e} at {steps} steps: ratio {rh:.2}, want about 4"
            );
        }
        last = Some((euler, heun));
    }
}

/// Directional finite difference of a guide's loss against its gradient.
fn check_guide_gradient<G: Guide<B>>(guide: &mut G, x: Vec<f32>, dims: [usize; 4], what: &str) {
    let device = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let v: Vec<f32> = (0..x.len()).map(|_| StandardNormal.sample(&mut rng)).collect();
    let t = |data: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(data, dims), &device);
    let (_, g) = guide.loss_grad(t(x.clone())).unwrap();
    let g: Vec<f32> = g.into_data().to_vec().unwrap();
    let eps = 1e-3f32;
    let mut shifted = |sign: f32| -> f64 {
        let xs: Vec<f32> = x.iter().zip(&v).map(|(a, b)| a + sign * eps * b).collect();
        guide.loss_grad(t(xs)).unwrap().0.iter().sum()
    };
    let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * f64::from(eps));
    let an: f64 = g.iter().zip(&v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    assert!((fd - an).abs() <= FD_REL * an.abs().max(1e-6), "{what}: finite difference {fd}, gradient {an}");
}

/// A small seeded surrogate (width 8, 4 modes, 2 layers) and the init lock,
/// held while the caller runs it (burn draws weights at first touch).
pub(super) fn tiny_surrogate(seed: u64) -> (std::sync::MutexGuard<'static, ()>, crate::model::fno::Fno<AB>) {
    let guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    <AB as Backend>::seed(&Default::default(), seed);
    let mut cfg = crate::model::fno::FnoConfig::device();
    cfg.width = 8;
    cfg.modes = 4;
    cfg.layers = 2;
    (guard, cfg.init::<AB>(&Default::default()))
}

/// `count` cases of `k` random interior sensors on an `n x n` grid, readings
/// `0.01 (s + c) + shift` for sensor `s` of case `c`.
pub(super) fn tiny_cases(n: usize, k: usize, count: usize, shift: f64, seed: u64) -> Vec<crate::observe::Observations> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|c| {
            let nodes = crate::observe::random_interior_nodes(n, k, &mut rng).unwrap();
            let values = (0..k).map(|s| 0.01 * (s + c) as f64 + shift).collect();
            crate::observe::Observations::new(n, nodes, values, 0.0).unwrap()
        })
        .collect()
}

#[test]
fn surrogate_guide_gradient_matches_finite_differences() {
    let device = Default::default();
    let n = 16;
    let (_guard, fno) = tiny_surrogate(5);
    let obs = ObservationBatch::new(&tiny_cases(n, 10, 2, 0.0, 1), 2).unwrap();
    let mut guide = SurrogateGuide::new(fno, obs, (7.5, 4.5), &device).unwrap();
    let x: Vec<f32> = (0..4 * n * n).map(|k| ((k as f32) * 0.37).sin()).collect();
    check_guide_gradient(&mut guide, x, [4, 1, n, n], "surrogate guide");
}

/// One case of 8 random interior sensors on an `n x n` grid, two posterior
/// samples of it.
pub(super) fn one_case_twice(n: usize) -> ObservationBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let nodes = crate::observe::random_interior_nodes(n, 8, &mut rng).unwrap();
    let values = (0..8).map(|k| 0.02 + 0.001 * k as f64).collect();
    let case = crate::observe::Observations::new(n, nodes, values, 0.0).unwrap();
    ObservationBatch::new(&[case], 2).unwrap()
}

#[test]
fn solver_and_joint_guides_match_finite_differences() {
    let n = 12;
    let obs = one_case_twice(n);
    let x: Vec<f32> = (0..2 * n * n).map(|k| 0.5 * ((k as f32) * 0.21).cos()).collect();
    for kind in [crate::pde::PdeKind::Darcy, crate::pde::PdeKind::Poisson] {
        let mut guide = SolverGuide::new(crate::pde::PdeConfig::for_kind(kind), obs.clone(), (7.5, 4.5)).unwrap();
        check_guide_gradient(&mut guide, x.clone(), [2, 1, n, n], kind.name());
        assert_eq!(guide.floored, 0);
    }
    let mut joint = JointGuide::new(obs, (0.03, 0.02));
    check_guide_gradient(&mut joint, x, [1, 2, n, n], "joint guide");
}

#[test]
fn residual_unit_is_the_readings_rms_floored_at_the_training_spread() {
    let n = 8;
    let nodes = vec![9, 10, 11, 12];
    let small = crate::observe::Observations::new(n, nodes.clone(), vec![1e-4, -1e-4, 1e-4, -1e-4], 0.0).unwrap();
    let large = crate::observe::Observations::new(n, nodes, vec![0.3, -0.4, 0.3, -0.4], 0.0).unwrap();
    let mut obs = ObservationBatch::new(&[small, large], 1).unwrap();
    let assert_close = |got: f64, want: f64, tol: f64, what: &str| {
        assert!((got - want).abs() <= tol * want.abs().max(1e-300), "{what}: {got} vs {want}");
    };
    assert_close(obs.scale[0], 1e-4, 1e-12, "small case: its RMS");
    assert_close(obs.scale[1], 0.125f64.sqrt(), 1e-12, "large case: its RMS");
    obs.floor_scale(0.01);
    assert_close(obs.scale[0], 0.01, 1e-15, "small case raised to the floor");
    assert_close(obs.scale[1], 0.125f64.sqrt(), 1e-12, "large case untouched");
    for bad in [0.0, -1.0, f64::NAN] {
        let before = obs.scale.clone();
        obs.floor_scale(bad);
        assert_eq!(obs.scale, before, "floor {bad} is ignored");
    }
}

#[test]
fn device_clamp_matches_the_host_reference() {
    let device = Default::default();
    let v = vec![0.5f32, -12.0, f32::NAN, 3.0, 10.0, f32::INFINITY, -0.1, 11.0, 1.0, 2.0, f32::NEG_INFINITY, 0.0];
    let x = || Tensor::<B, 4>::from_data(TensorData::new(v.clone(), [3, 1, 2, 2]), &device);
    let mut want_stats = SampleStats::default();
    let want = clamp_counted(x(), 10.0, &mut want_stats).into_data().to_vec::<f32>().unwrap();
    let mut clamp = Clamp::<B>::new(&device);
    let once = clamp.apply(x(), 10.0);
    let twice = clamp.apply(once.clone(), 10.0);
    let mut stats = SampleStats::default();
    clamp.finish(&mut stats);
    assert_eq!(once.into_data().to_vec::<f32>().unwrap(), want);
    assert_eq!(twice.into_data().to_vec::<f32>().unwrap(), want, "a clamped state is left alone");
    // -12, NaN, inf, 11, -inf changed; elements 0 and 1 and 2 all hold a non-finite value.
    assert_eq!((want_stats.clamped, want_stats.non_finite), (5, 3));
    assert_eq!((stats.clamped, stats.non_finite), (want_stats.clamped, want_stats.non_finite));
}

/// The Langevin step under noisy readings: unchanged when the noise does not
/// widen the likelihood, `(tau' / tau)^2` larger when it does (so the
/// likelihood's pull `lr / tau'^2` per step is the tuned one), never above
/// the prior term's cap, and the old behaviour with `noise_scaled_step` off.
#[test]
fn langevin_step_keeps_the_likelihood_pull_when_noise_widens_tau() {
    let cfg = DapsConfig::reduced();
    let (i, s) = (3, 1.0);
    assert_eq!(cfg.step_size_at_width(i, s, cfg.tau), cfg.step_size(i, s));
    assert_eq!(cfg.step_size_at_width(i, s, cfg.tau / 2.0), cfg.step_size(i, s));
    let wide = 4.0 * cfg.tau;
    let pull = |lr: f64, tau: f64| lr / (tau * tau);
    let rel = (pull(cfg.step_size_at_width(i, s, wide), wide) / pull(cfg.step_size(i, s), cfg.tau) - 1.0).abs();
    assert!(rel < 1e-12, "pull changed by {rel}");
    // At a small level the cap `lr_cap * s^2` binds.
    let small = 0.05;
    assert_eq!(cfg.step_size_at_width(i, small, 100.0 * cfg.tau), cfg.lr_cap * small * small);
    let fixed = DapsConfig { noise_scaled_step: false, ..cfg.clone() };
    assert_eq!(fixed.step_size_at_width(i, s, wide), cfg.step_size(i, s));
}
