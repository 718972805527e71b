//! The Gauss–Newton conditional step: Matheron's rule against the closed-form
//! Gaussian posterior, DAPS with it on a Gaussian prior, and the guides'
//! Jacobians against their own gradients (`J^T r = grad 0.5 |r|^2`).

use super::daps::{WIDEN_FACTOR, solve_sensor_space};
use super::tests::{
    LinearGuide, check_against_exact_gaussian_posterior, one_case_twice, solve, tiny_cases, tiny_surrogate,
};
use super::*;
use crate::model::noise::SmoothNoise;
use burn::backend::NdArray;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

type B = NdArray<f32>;

/// f32 sums of a few dozen terms against the f64 closed form.
const UPDATE_TOL: f64 = 1e-4;
/// Posterior standard deviations from draws: relative, plus an absolute
/// allowance for directions the smooth covariance barely spreads.
const DRAW_STD_REL: f64 = 0.06;
const DRAW_STD_ABS: f64 = 2e-3;
/// Means from draws, in Monte Carlo standard errors.
const DRAW_MEAN_Z: f64 = 5.0;
/// `J^T r` against the guide's gradient (f32 products and backward).
const JTR_REL: f64 = 1e-4;

fn tensor<const D: usize>(v: Vec<f32>, dims: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, dims), &Default::default())
}

fn to_f64<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

/// A linear-Gaussian problem on a 4 x 4 grid with the smooth noise's
/// covariance: prior `N(a0, r^2 C)`, readings `y = H a + N(0, tau^2 I)`.
struct Problem {
    n: usize,
    noise: Noise,
    /// `C`, dense, `16 x 16` (f64, from the square root of the 1-D kernel).
    c: Vec<Vec<f64>>,
    h: Vec<Vec<f64>>,
    y: Vec<f64>,
    a0: Vec<f64>,
    r: f64,
    tau: f64,
}

impl Problem {
    fn new() -> Self {
        let n = 4;
        let d = n * n;
        let smooth = SmoothNoise::new(n, 0.4).unwrap();
        let k1 = smooth.kernel();
        // vec(K1 X K1) = (K1 (x) K1) vec(X) for symmetric K1, row-major.
        let c = (0..d).map(|p| (0..d).map(|q| k1[(p / n) * n + q / n] * k1[(p % n) * n + q % n]).collect()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let h = (0..5).map(|_| (0..d).map(|_| normal()).collect()).collect();
        let y = (0..5).map(|_| 2.0 * normal()).collect();
        let a0 = (0..d).map(|_| 0.5 * normal()).collect();
        Self { n, noise: Noise::Smooth(smooth), c, h, y, a0, r: 0.7, tau: 0.3 }
    }

    /// The exact posterior's mean and the standard deviation of each node.
    fn posterior(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.a0.len();
        let k = self.h.len();
        let (r2, t2) = (self.r * self.r, self.tau * self.tau);
        // G = r^2 C H^T (d x K), S = H G + tau^2 I.
        let g: Vec<Vec<f64>> = (0..d)
            .map(|p| (0..k).map(|s| r2 * (0..d).map(|q| self.c[p][q] * self.h[s][q]).sum::<f64>()).collect())
            .collect();
        let s: Vec<Vec<f64>> = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| (0..d).map(|p| self.h[i][p] * g[p][j]).sum::<f64>() + if i == j { t2 } else { 0.0 })
                    .collect()
            })
            .collect();
        let misfit: Vec<f64> =
            (0..k).map(|i| self.y[i] - (0..d).map(|p| self.h[i][p] * self.a0[p]).sum::<f64>()).collect();
        let w = solve(s.clone(), misfit);
        let mean = (0..d).map(|p| self.a0[p] + (0..k).map(|j| g[p][j] * w[j]).sum::<f64>()).collect();
        // Var_p = r^2 C_pp - G_p S^-1 G_p^T.
        let std = (0..d)
            .map(|p| {
                let sg = solve(s.clone(), g[p].clone());
                (r2 * self.c[p][p] - (0..k).map(|j| g[p][j] * sg[j]).sum::<f64>()).max(0.0).sqrt()
            })
            .collect();
        (mean, std)
    }

    fn guide(&self) -> LinearGuide {
        LinearGuide { h: self.h.clone(), y: self.y.clone() }
    }

    /// `a0` repeated `b` times.
    fn a0(&self, b: usize) -> Tensor<B, 4> {
        let v: Vec<f32> = (0..b).flat_map(|_| self.a0.iter().map(|&x| x as f32)).collect();
        tensor(v, [b, 1, self.n, self.n])
    }
}

#[test]
fn gauss_newton_update_without_draws_is_the_posterior_mean_from_any_linearisation_point() {
    let p = Problem::new();
    let (mean, _) = p.posterior();
    let k = p.h.len();
    // Linearised at a0 and at an unrelated point: the map is linear, so the
    // same answer.
    let elsewhere: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.9).sin()).collect();
    for (what, at) in [("a0", p.a0(1)), ("elsewhere", tensor(elsewhere, [1, 1, 4, 4]))] {
        let lin = p.guide().linearize(at.clone()).unwrap();
        let zeros = tensor(vec![0.0; k], [1, k]);
        let got = to_f64(gauss_newton_update(at, p.a0(1), zeros, lin, &p.noise, p.r, p.tau));
        let scale = mean.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (g, m)) in got.iter().zip(&mean).enumerate() {
            assert!((g - m).abs() <= UPDATE_TOL * scale, "{what}, node {i}: update {g}, posterior mean {m}");
        }
    }
}

#[test]
fn a_masked_spread_keeps_the_boundary_at_the_draw_and_fits_through_the_interior() {
    // Spread r^2 D C D (D: the interior of the 4 x 4 grid, the zero-boundary
    // prior of Helmholtz): the update moves interior nodes only, and it is
    // the posterior mean of the prior N(a0, r^2 D C D).
    let p = Problem::new();
    let k = p.h.len();
    let mask = super::daps::interior_mask::<B>(4, &Default::default());
    let spread = |x: Tensor<B, 4>| {
        let m = mask.clone().expand(x.dims());
        p.noise.apply_cov(x * m.clone()).mul_scalar(p.r * p.r) * m
    };
    let lin = p.guide().linearize(p.a0(1)).unwrap();
    let got =
        to_f64(gauss_newton_update_with(p.a0(1), p.a0(1), tensor(vec![0.0; k], [1, k]), lin, spread, p.tau, &mut 0));
    let d: Vec<f64> =
        (0..16).map(|q| if (1..3).contains(&(q / 4)) && (1..3).contains(&(q % 4)) { 1.0 } else { 0.0 }).collect();
    let masked =
        Problem { c: (0..16).map(|a| (0..16).map(|b| d[a] * p.c[a][b] * d[b]).collect()).collect(), ..Problem::new() };
    let (mean, _) = masked.posterior();
    let scale = mean.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, m)) in got.iter().zip(&mean).enumerate() {
        assert!((g - m).abs() <= UPDATE_TOL * scale, "node {i}: update {g}, posterior mean {m}");
        if d[i] == 0.0 {
            assert_eq!(*g as f32, p.a0[i] as f32, "boundary node {i} moved");
        }
    }
}

#[test]
fn gauss_newton_update_draws_the_exact_gaussian_posterior() {
    let p = Problem::new();
    let (mean, std) = p.posterior();
    let (b, k) = (4000, p.h.len());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let prop = p.a0(b) + p.noise.draw::<B, _>(&mut rng, b, 1, &Default::default()).mul_scalar(p.r);
    let e: Vec<f32> = (0..b * k)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            (p.tau * z) as f32
        })
        .collect();
    let lin = p.guide().linearize(p.a0(b)).unwrap();
    let got = to_f64(gauss_newton_update(p.a0(b), prop, tensor(e, [b, k]), lin, &p.noise, p.r, p.tau));
    for node in 0..16 {
        let v: Vec<f64> = got.iter().skip(node).step_by(16).copied().collect();
        let m = v.iter().sum::<f64>() / b as f64;
        let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (b - 1) as f64).sqrt();
        let se = std[node] / (b as f64).sqrt();
        assert!(
            (m - mean[node]).abs() <= DRAW_MEAN_Z * se + DRAW_STD_ABS,
            "node {node}: mean of draws {m:.4}, posterior mean {:.4}",
            mean[node]
        );
        assert!(
            (s - std[node]).abs() <= DRAW_STD_REL * std[node] + DRAW_STD_ABS,
            "node {node}: std of draws {s:.4}, posterior std {:.4}",
            std[node]
        );
    }
}

/// A sensor-space matrix made indefinite by round-off (`v v^T - delta I`,
/// `delta` above the nugget `tau^2`) is solved with the first raised
/// nugget that factors, and that solve is exact for it; one that no
/// allowed nugget fixes is given up, leaving `w` as it was.
#[test]
fn an_indefinite_sensor_space_system_is_solved_with_a_wider_nugget() {
    let (k, delta, tau2) = (3usize, 1e-6f64, 1e-7f64);
    let v = [1.0f64, 0.5, -0.25];
    let s: Vec<f32> =
        (0..k * k).map(|ij| (v[ij / k] * v[ij % k] - if ij / k == ij % k { delta } else { 0.0 }) as f32).collect();
    let d = [0.3f32, -0.1, 0.2];
    let mut w = [f32::NAN; 3];
    // tau^2, 4 tau^2 < delta < 16 tau^2: two raises.
    assert_eq!(solve_sensor_space(&s, &d, k, tau2, &mut w), Some(2));
    let nugget = tau2 * WIDEN_FACTOR * WIDEN_FACTOR;
    for i in 0..k {
        let terms: Vec<f64> =
            (0..k).map(|j| (f64::from(s[i * k + j]) + if i == j { nugget } else { 0.0 }) * f64::from(w[j])).collect();
        let got: f64 = terms.iter().sum();
        // Backward error: w is rounded to f32, so the residual is relative
        // to the size of the terms it cancels.
        let scale: f64 = terms.iter().map(|t| t.abs()).sum();
        assert!((got - f64::from(d[i])).abs() <= SENSOR_SOLVE_TOL * scale, "row {i}: {got} vs {}", d[i]);
    }
    let mut untouched = [7.0f32; 3];
    let far: Vec<f32> = s.iter().enumerate().map(|(ij, &x)| if ij / k == ij % k { x - 1.0 } else { x }).collect();
    assert_eq!(solve_sensor_space(&far, &d, k, tau2, &mut untouched), None);
    assert_eq!(untouched, [7.0; 3]);
}

/// Backward error allowed for the widened solve above: a few f32 roundings.
const SENSOR_SOLVE_TOL: f64 = 1e-6;

#[test]
fn a_non_finite_jacobian_comes_back_non_finite_for_the_clamp_to_count() {
    let p = Problem::new();
    let k = p.h.len();
    let mut lin = p.guide().linearize(p.a0(2)).unwrap();
    let mut j = to_f64(lin.jacobian.clone());
    j[3] = f64::NAN; // element 0 only
    lin.jacobian = tensor(j.into_iter().map(|v| v as f32).collect(), [2, k, 16]);
    let got =
        to_f64(gauss_newton_update(p.a0(2), p.a0(2), tensor(vec![0.0; 2 * k], [2, k]), lin, &p.noise, p.r, p.tau));
    assert!(got[..16].iter().any(|v| !v.is_finite()), "element 0 is flagged");
    assert!(got[16..].iter().all(|v| v.is_finite()), "element 1 is untouched");
}

#[test]
fn daps_with_the_gauss_newton_step_recovers_the_exact_gaussian_posterior() {
    // One iteration per level, the prior spread of p(x0 | x_s) for N(0, I)
    // data: every level draws exactly from p(x0 | x_s, y).
    let cfg = DapsConfig {
        step: StepKind::GaussNewton,
        r_scale: 1.0,
        tau: 0.5,
        noise_width: 1.0,
        clamp: 100.0,
        ..DapsConfig::reduced().with_steps("20x1x1").unwrap()
    };
    check_against_exact_gaussian_posterior(&cfg);
}

/// `J^T r` from `linearize` against `grad` and `0.5 |r|^2` against the loss.
fn check_linearization<G: Guide<B>>(guide: &mut G, x: Tensor<B, 4>, what: &str) {
    let [b, ..] = x.dims();
    let (loss, grad) = guide.loss_grad(x.clone()).unwrap();
    let lin = guide.linearize(x).unwrap();
    let [_, k] = lin.residual.dims();
    let res = to_f64(lin.residual.clone());
    for (e, l) in loss.iter().enumerate() {
        let half: f64 = res[e * k..(e + 1) * k].iter().map(|r| 0.5 * r * r).sum();
        assert!((half - l).abs() <= JTR_REL * l.abs().max(1e-12), "{what}, element {e}: 0.5|r|^2 {half}, loss {l}");
    }
    let jtr = to_f64(lin.residual.reshape([b, 1, k]).matmul(lin.jacobian));
    let grad = to_f64(grad);
    let scale = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, g)) in jtr.iter().zip(&grad).enumerate() {
        assert!((a - g).abs() <= JTR_REL * scale, "{what}, value {i}: J^T r {a}, gradient {g}");
    }
}

#[test]
fn surrogate_and_joint_jacobians_agree_with_their_gradients() {
    let device = Default::default();
    let (n, k) = (16, 10);
    let (_guard, fno) = tiny_surrogate(6);
    let cases = tiny_cases(n, k, 3, -0.03, 3);
    // More elements than one backward pass takes: two chunks.
    let chunk = guide::JACOBIAN_NODES / (k * n * n);
    let repeat = chunk / cases.len() + 1;
    let obs = ObservationBatch::new(&cases, repeat).unwrap();
    let b = obs.len();
    assert!(b > chunk);
    let x: Vec<f32> = (0..b * n * n).map(|i| ((i as f32) * 0.37).sin()).collect();
    let mut guide = SurrogateGuide::new(fno, obs.clone(), (7.5, 4.5), &device).unwrap();
    check_linearization(&mut guide, tensor(x, [b, 1, n, n]), "surrogate guide");

    let mut joint = JointGuide::new(obs, (0.03, 0.02));
    let x: Vec<f32> = (0..b * 2 * n * n).map(|i| 0.5 * ((i as f32) * 0.21).cos()).collect();
    check_linearization(&mut joint, tensor(x, [b, 2, n, n]), "joint guide");
}

#[test]
fn solver_jacobians_agree_with_their_gradients() {
    let n = 12;
    let obs = one_case_twice(n);
    // Darcy: a few nodes below the coefficient floor (zero Jacobian there).
    let x: Vec<f32> =
        (0..2 * n * n).map(|k| 0.5 * ((k as f32) * 0.21).cos() - if k % 37 == 0 { 2.0 } else { 0.0 }).collect();
    for kind in [crate::pde::PdeKind::Darcy, crate::pde::PdeKind::Poisson, crate::pde::PdeKind::Helmholtz] {
        let mut guide = SolverGuide::new(crate::pde::PdeConfig::for_kind(kind), obs.clone(), (7.5, 4.5)).unwrap();
        check_linearization(&mut guide, tensor(x.clone(), [2, 1, n, n]), kind.name());
    }
}

/// A guide with a loss and no Jacobian.
struct GradientOnly;

impl Guide<B> for GradientOnly {
    fn loss_grad(&mut self, x0: Tensor<B, 4>) -> Result<(Vec<f64>, Tensor<B, 4>)> {
        Ok((vec![0.0; x0.dims()[0]], x0.zeros_like()))
    }

    fn noise_floor(&self) -> f64 {
        0.0
    }
}

#[test]
fn a_guide_without_a_jacobian_says_so() {
    let err = GradientOnly.linearize(tensor(vec![0.0; 4], [1, 1, 2, 2])).err().unwrap();
    assert!(err.to_string().contains("Gauss-Newton"), "{err}");
}
