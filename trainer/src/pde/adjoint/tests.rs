//! What the tangent and the adjoint must satisfy: `<J v, w> = <v, J^T w>`,
//! finite differences, the PDE itself for the linear problems; and the
//! errors on bad input.

use super::*;
use crate::pde::PdeConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `|<J v, w> - <v, J^T w>|` relative to the Cauchy-Schwarz scale
/// `||J v|| ||w||`: both sides are solves with condition numbers of a
/// few thousand at n = 33, so round-off sits far below this.
const ADJOINT_REL_TOL: f64 = 1e-10;
/// Central-difference step, relative to `max|input| / max|v|`: balances
/// the O(step^2) truncation against the eps/step round-off of Darcy.
const FD_REL_STEP: f64 = 1e-6;
/// Darcy `J v` against central differences of `solve`, relative 2-norm.
const DARCY_FD_REL_TOL: f64 = 1e-6;
/// A linear map has no truncation error, so its difference quotient is
/// taken with a step as large as the input (round-off stays near eps).
const LINEAR_FD_STEP: f64 = 1.0;
/// Linear `J v` against the difference quotient, relative 2-norm.
const LINEAR_FD_REL_TOL: f64 = 1e-12;
/// Relative residual `||A (J v) - v||` of the linear tangent, through the
/// matrix-free stencil (an independent code path from the factorisation).
const LINEAR_RESIDUAL_TOL: f64 = 1e-10;
/// Directional derivative of the observation loss against central
/// differences of the loss (Darcy: truncation-limited).
const DARCY_LOSS_FD_REL_TOL: f64 = 1e-6;
/// The same for the linear PDEs, whose loss is quadratic in the input so
/// only round-off (about eps * loss / step) is left.
const LINEAR_LOSS_FD_REL_TOL: f64 = 1e-7;

const SIZES: [usize; 2] = [17, 33];

fn configs() -> Vec<(&'static str, PdeConfig)> {
    vec![
        ("darcy", PdeConfig::for_kind(PdeKind::Darcy)),
        ("poisson", PdeConfig::for_kind(PdeKind::Poisson)),
        ("helmholtz k=1", PdeConfig::for_kind(PdeKind::Helmholtz)),
        ("helmholtz k=6", PdeConfig { helmholtz_k: 6.0, ..PdeConfig::for_kind(PdeKind::Helmholtz) }),
    ]
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

fn norm(x: &[f64]) -> f64 {
    dot(x, x).sqrt()
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

fn rel_diff(got: &[f64], want: &[f64]) -> f64 {
    let diff: Vec<f64> = got.iter().zip(want).map(|(g, w)| g - w).collect();
    norm(&diff) / norm(want)
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// A smooth two-phase-like Darcy coefficient in (3, 12), on all n*n
/// nodes including the boundary; `phase` shifts the pattern.
fn darcy_field(grid: Grid, phase: f64) -> Vec<f64> {
    use std::f64::consts::PI;
    (0..grid.len())
        .map(|k| {
            let (i, j) = grid.ij(k);
            let (x, y) = (grid.x(j), grid.y(i));
            let s = (2.0 * PI * x + phase).sin() * (3.0 * PI * y).sin() + 0.4 * (5.0 * PI * (x + y) - phase).cos();
            3.0 + 9.0 * sigmoid(4.0 * s)
        })
        .collect()
}

/// The PDE's input at a representative point: the smooth Darcy field,
/// or a GRF source for Poisson and Helmholtz.
fn input_for(solver: &Solver, rng: &mut ChaCha8Rng, phase: f64) -> Vec<f64> {
    match solver.kind() {
        PdeKind::Darcy => darcy_field(solver.grid(), phase),
        PdeKind::Poisson | PdeKind::Helmholtz => {
            let grf = solver.config().grf_sampler(solver.grid().n).unwrap();
            solver.sample_input(&grf, rng).unwrap()
        }
    }
}

#[test]
fn adjoint_identity_holds() {
    let mut worst = 0.0f64;
    for (name, cfg) in configs() {
        for n in SIZES {
            let mut rng = ChaCha8Rng::seed_from_u64(11 + n as u64);
            let mut solver = cfg.solver(n).unwrap();
            let input = input_for(&solver, &mut rng, 0.3);
            let u = solver.solve(&input).unwrap();
            for trial in 0..3 {
                let v = random(&mut rng, n * n);
                let w = random(&mut rng, n * n);
                let jv = solver.jvp(&input, &u, &v).unwrap();
                let jtw = solver.vjp(&input, &u, &w).unwrap();
                let (lhs, rhs) = (dot(&jv, &w), dot(&v, &jtw));
                let rel = (lhs - rhs).abs() / (norm(&jv) * norm(&w));
                worst = worst.max(rel);
                assert!(
                    rel <= ADJOINT_REL_TOL,
                    "{name} n={n} trial {trial}: <Jv,w> = {lhs:e}, <v,J^T w> = {rhs:e}, rel {rel:.2e}"
                );
                // Output boundaries: J v always zero; J^T w zero except
                // for Darcy, whose boundary coefficients enter the faces.
                let grid = solver.grid();
                for k in 0..n * n {
                    let (i, j) = grid.ij(k);
                    if grid.is_boundary(i, j) {
                        assert_eq!(jv[k], 0.0, "{name} n={n}: J v at boundary node {k}");
                        if solver.kind() != PdeKind::Darcy {
                            assert_eq!(jtw[k], 0.0, "{name} n={n}: J^T w at boundary node {k}");
                        }
                    }
                }
                if solver.kind() == PdeKind::Darcy {
                    let corners = [0, n - 1, n * (n - 1), n * n - 1];
                    assert!(corners.iter().all(|&k| jtw[k] == 0.0), "{name} n={n}: corner gradient");
                    assert!(jtw[n / 2] != 0.0, "{name} n={n}: boundary coefficient has no gradient");
                }
            }
        }
    }
    eprintln!("adjoint identity: worst relative error {worst:.2e}");
}

#[test]
fn darcy_jvp_matches_finite_differences() {
    let mut worst = 0.0f64;
    for n in SIZES {
        let mut rng = ChaCha8Rng::seed_from_u64(100 + n as u64);
        let mut solver = PdeConfig::for_kind(PdeKind::Darcy).solver(n).unwrap();
        let grid = solver.grid();
        let a = darcy_field(grid, 1.1);
        let u = solver.solve(&a).unwrap();
        // A direction everywhere, and one on the boundary only (tests the
        // faces that carry a boundary node's own coefficient).
        let everywhere = random(&mut rng, n * n);
        let mut boundary_only = random(&mut rng, n * n);
        for (k, value) in boundary_only.iter_mut().enumerate() {
            let (i, j) = grid.ij(k);
            if !grid.is_boundary(i, j) {
                *value = 0.0;
            }
        }
        for (what, v) in [("everywhere", everywhere), ("boundary only", boundary_only)] {
            let jv = solver.jvp(&a, &u, &v).unwrap();
            let eps = FD_REL_STEP * max_abs(&a) / max_abs(&v);
            let shifted = |s: f64| a.iter().zip(&v).map(|(ak, vk)| ak + s * eps * vk).collect::<Vec<_>>();
            let up = solver.solve(&shifted(1.0)).unwrap();
            let um = solver.solve(&shifted(-1.0)).unwrap();
            let fd: Vec<f64> = up.iter().zip(&um).map(|(p, m)| (p - m) / (2.0 * eps)).collect();
            let rel = rel_diff(&jv, &fd);
            worst = worst.max(rel);
            assert!(rel <= DARCY_FD_REL_TOL, "darcy n={n} direction {what}: |Jv - fd| / |fd| = {rel:.2e}");
        }
    }
    eprintln!("darcy jvp vs central differences: worst relative error {worst:.2e}");
}

#[test]
fn linear_jvp_is_the_solve_and_satisfies_the_pde() {
    let (mut worst_fd, mut worst_res) = (0.0f64, 0.0f64);
    for (name, cfg) in configs().into_iter().filter(|(_, cfg)| cfg.kind != PdeKind::Darcy) {
        for n in SIZES {
            let mut rng = ChaCha8Rng::seed_from_u64(200 + n as u64);
            let mut solver = cfg.solver(n).unwrap();
            let f = input_for(&solver, &mut rng, 0.0);
            let u = solver.solve(&f).unwrap();
            let v = random(&mut rng, n * n);
            let jv = solver.jvp(&f, &u, &v).unwrap();

            let eps = LINEAR_FD_STEP * max_abs(&f) / max_abs(&v);
            let shifted = |s: f64| f.iter().zip(&v).map(|(fk, vk)| fk + s * eps * vk).collect::<Vec<_>>();
            let up = solver.solve(&shifted(1.0)).unwrap();
            let um = solver.solve(&shifted(-1.0)).unwrap();
            let fd: Vec<f64> = up.iter().zip(&um).map(|(p, m)| (p - m) / (2.0 * eps)).collect();
            let rel = rel_diff(&jv, &fd);
            worst_fd = worst_fd.max(rel);
            assert!(rel <= LINEAR_FD_REL_TOL, "{name} n={n}: |Jv - fd| / |fd| = {rel:.2e}");

            // J v solves the PDE with source v (same sign convention as
            // `solve`), checked by the matrix-free stencil.
            let res = solver.residual_rhs(None, &v, &jv).unwrap();
            worst_res = worst_res.max(res);
            assert!(res <= LINEAR_RESIDUAL_TOL, "{name} n={n}: residual of J v = {res:.2e}");
        }
    }
    eprintln!("linear jvp: worst fd relative error {worst_fd:.2e}, worst residual {worst_res:.2e}");
}

#[test]
fn observation_loss_gradient_matches_finite_differences() {
    let mut worst = 0.0f64;
    for (name, cfg) in configs() {
        for n in SIZES {
            let mut rng = ChaCha8Rng::seed_from_u64(300 + n as u64);
            let mut solver = cfg.solver(n).unwrap();
            let truth = input_for(&solver, &mut rng, 2.0);
            let u_truth = solver.solve(&truth).unwrap();
            // Random sensors plus one repeated node and one boundary node.
            let mut nodes: Vec<usize> = (0..25).map(|_| rng.random_range(0..n * n)).collect();
            nodes.push(nodes[0]);
            nodes.push(n / 2);
            let scale = max_abs(&u_truth);
            let values: Vec<f64> =
                nodes.iter().map(|&k| u_truth[k] + 0.05 * scale * rng.random_range(-1.0..1.0)).collect();
            let weight = 1.0 / (0.01 * scale).powi(2);

            let x = input_for(&solver, &mut rng, 0.7);
            let (loss, grad, u) = solver.observation_loss_grad(&x, &nodes, &values, weight).unwrap();
            assert_eq!(u, solver.solve(&x).unwrap(), "{name} n={n}: returned u");
            let direct: f64 = nodes.iter().zip(&values).map(|(&k, &y)| 0.5 * weight * (u[k] - y).powi(2)).sum();
            assert!((loss - direct).abs() <= 1e-12 * direct, "{name} n={n}: loss {loss} vs {direct}");

            let d = random(&mut rng, n * n);
            let eps = FD_REL_STEP * max_abs(&x) / max_abs(&d);
            let mut loss_at = |s: f64| {
                let xs: Vec<f64> = x.iter().zip(&d).map(|(xk, dk)| xk + s * eps * dk).collect();
                solver.observation_loss_grad(&xs, &nodes, &values, weight).unwrap().0
            };
            let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * eps);
            let analytic = dot(&grad, &d);
            let rel = (analytic - fd).abs() / fd.abs();
            worst = worst.max(rel);
            let tol = if cfg.kind == PdeKind::Darcy { DARCY_LOSS_FD_REL_TOL } else { LINEAR_LOSS_FD_REL_TOL };
            assert!(rel <= tol, "{name} n={n}: <grad, d> = {analytic:e}, fd = {fd:e}, rel {rel:.2e}");
        }
    }
    eprintln!("observation loss gradient vs central differences: worst relative error {worst:.2e}");
}

#[test]
fn bad_input_is_an_error() {
    let n = 9;
    let n2 = n * n;
    let mut darcy = PdeConfig::for_kind(PdeKind::Darcy).solver(n).unwrap();
    let a = darcy_field(darcy.grid(), 0.0);
    let u = darcy.solve(&a).unwrap();
    let ones = vec![1.0; n2];

    // Lengths.
    let short = vec![1.0; n2 - 1];
    let mismatch =
        |field| -> Result<Vec<f64>, Error> { Err(Error::ShapeMismatch { field, expected: n2, got: n2 - 1 }) };
    assert_eq!(darcy.jvp(&short, &u, &ones), mismatch("a"));
    assert_eq!(darcy.vjp(&a, &short, &ones), mismatch("u"));
    assert_eq!(darcy.jvp(&a, &u, &short), mismatch("v"));
    assert_eq!(darcy.vjp(&a, &u, &short), mismatch("w"));

    // Finiteness.
    let mut nan = ones.clone();
    nan[7] = f64::NAN;
    assert_eq!(darcy.jvp(&a, &u, &nan), Err(Error::NonFinite { field: "v", index: 7 }));
    assert_eq!(darcy.vjp(&a, &nan, &ones), Err(Error::NonFinite { field: "u", index: 7 }));
    let mut inf = ones.clone();
    inf[3] = f64::INFINITY;
    assert_eq!(darcy.vjp(&a, &u, &inf), Err(Error::NonFinite { field: "w", index: 3 }));

    // Darcy positivity, on the boundary too (its faces matter).
    let mut negative = a.clone();
    negative[2] = -1.0;
    assert_eq!(darcy.jvp(&negative, &u, &ones), Err(Error::NonPositiveCoefficient { index: 2, value: -1.0 }));
    negative[2] = 0.0;
    assert_eq!(darcy.vjp(&negative, &u, &ones), Err(Error::NonPositiveCoefficient { index: 2, value: 0.0 }));

    // Linear PDEs check their source like `solve` does.
    let mut poisson = PdeConfig::for_kind(PdeKind::Poisson).solver(n).unwrap();
    assert_eq!(poisson.jvp(&nan, &u, &ones), Err(Error::NonFinite { field: "f", index: 7 }));
    assert_eq!(poisson.vjp(&ones, &u, &short), mismatch("w"));

    // Observations.
    let nodes = [0, 40, n2 - 1];
    let values = [0.0, 0.1, 0.0];
    assert!(darcy.observation_loss_grad(&a, &nodes, &values, 1.0).is_ok());
    assert_eq!(
        darcy.observation_loss_grad(&a, &[0, n2], &[0.0, 0.0], 1.0),
        Err(Error::InvalidConfig { name: "nodes", value: n2 as f64, reason: "observation node index must be < n*n" })
    );
    assert_eq!(
        darcy.observation_loss_grad(&a, &nodes, &values[..2], 1.0),
        Err(Error::ShapeMismatch { field: "values", expected: 3, got: 2 })
    );
    assert_eq!(
        darcy.observation_loss_grad(&a, &nodes, &[0.0, f64::NAN, 0.0], 1.0),
        Err(Error::NonFinite { field: "values", index: 1 })
    );
    for weight in [f64::NAN, -1.0, f64::INFINITY] {
        assert!(
            matches!(
                darcy.observation_loss_grad(&a, &nodes, &values, weight),
                Err(Error::InvalidConfig { name: "weight", .. })
            ),
            "weight {weight}"
        );
    }
    assert!(matches!(
        darcy.observation_loss_grad(&negative, &nodes, &values, 1.0),
        Err(Error::NonPositiveCoefficient { index: 2, .. })
    ));
    // No observations: zero loss and gradient.
    let (loss, grad, _) = poisson.observation_loss_grad(&ones, &[], &[], 1.0).unwrap();
    assert_eq!(loss, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0));
}
