//! Tests of exact physics and the Gauss–Newton step: the forward map
//! against an independent dense f64 solve, the adjoint identity, the
//! Jacobian against finite differences, the step's exactness for a linear
//! map and a Gaussian prior (Matheron's rule), and the sampler end to end.

use crate::artifact::{Artifact, PhysicsParams, STEP_GAUSS_NEWTON, STEP_LANGEVIN};
use crate::banded::tests::dense_reference as dense_solve;
use crate::gauss_newton::{self, Fields, Linear, Setting, step_mem_len};
use crate::noise::SmoothNoise;
use crate::physics::{PDE_DARCY, PDE_HELMHOLTZ, PDE_POISSON, Physics};
use crate::rng::Rng;
use crate::sampler;
use crate::testutil::{Fixture, Lcg, encode_body};
use crate::{Error, Grid, Sensors};

const N: usize = 8;
const NORM: (f32, f32) = (7.5, 4.5);

fn physics(pde: u8) -> Physics {
    Physics::from_params(&PhysicsParams { pde, shift: 0.0, coef_floor: 1.0, u_floor: 0.01 }, N).unwrap()
}

/// A two-valued-ish normalised field (Darcy coefficients between 3 and 12).
fn field(seed: u64) -> Vec<f32> {
    let mut rng = Lcg::new(seed);
    (0..N * N).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Whether flat node `p` of the `N x N` grid is on its boundary.
fn on_boundary(p: usize) -> bool {
    let (i, j) = (p / N, p % N);
    i == 0 || j == 0 || i == N - 1 || j == N - 1
}

fn sensors(nodes: &[usize]) -> Sensors {
    let mut s = Sensors::new(Grid::new(N).unwrap());
    for (k, &node) in nodes.iter().enumerate() {
        s.push_node(node, 0.01 * k as f32).unwrap();
    }
    s
}

/// Dense f64 `K(a)` on the interior (the trainer's stencil written out
/// independently: harmonic faces, zero Dirichlet boundary).
fn dense_operator(coef: &[f64]) -> Vec<f64> {
    let m = N - 2;
    let h2 = ((N - 1) as f64).powi(2);
    let mut k = vec![0.0; m * m * m * m];
    for i in 1..N - 1 {
        for j in 1..N - 1 {
            let p = (i - 1) * m + (j - 1);
            let c = i * N + j;
            for (ni, nj) in [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)] {
                let q = ni * N + nj;
                let f = 2.0 * coef[c] * coef[q] / (coef[c] + coef[q]);
                k[p * m * m + p] += f * h2;
                if ni > 0 && ni < N - 1 && nj > 0 && nj < N - 1 {
                    k[p * m * m + (ni - 1) * m + (nj - 1)] -= f * h2;
                }
            }
        }
    }
    k
}

/// f32 banded solve against the f64 dense reference.
const FORWARD_TOL: f64 = 1e-4;

#[test]
fn forward_map_matches_a_dense_reference() {
    let m = N - 2;
    for pde in [PDE_DARCY, PDE_POISSON] {
        let ph = physics(pde);
        let x = field(3);
        let mut mem = vec![0.0; ph.mem_len()];
        let mut u = vec![0.0; N * N];
        ph.solve(&x, NORM, &mut mem, &mut u).unwrap();
        let a: Vec<f64> = x.iter().map(|&v| (v * NORM.1 + NORM.0) as f64).collect();
        let (op, rhs): (Vec<f64>, Vec<f64>) = if pde == PDE_DARCY {
            (dense_operator(&a), vec![1.0; m * m])
        } else {
            let ones = vec![1.0; N * N];
            let rhs = (0..m * m).map(|p| -a[(p / m + 1) * N + p % m + 1]).collect();
            (dense_operator(&ones), rhs)
        };
        let want = dense_solve(&op, &rhs);
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let err = (0..m * m).map(|p| (u[(p / m + 1) * N + p % m + 1] as f64 - want[p]).powi(2)).sum::<f64>().sqrt();
        assert!(err <= FORWARD_TOL * norm, "pde {pde}: error {err:e} of {norm:e}");
        for i in 0..N {
            for j in 0..N {
                if i == 0 || j == 0 || i == N - 1 || j == N - 1 {
                    assert_eq!(u[i * N + j], 0.0);
                }
            }
        }
    }
}

/// `<J v, w> = <v, J^T w>` in f32 with sums of a few dozen terms.
const ADJOINT_TOL: f64 = 1e-4;

#[test]
fn jacobian_products_are_adjoint() {
    let s = sensors(&[9, 20, 27, 35, 44, 0]);
    for pde in [PDE_DARCY, PDE_POISSON] {
        let ph = physics(pde);
        let mut mem = vec![0.0; ph.mem_len()];
        ph.linearize(&field(5), NORM, 0.02, &mut mem).unwrap();
        let v = field(6);
        let w: Vec<f32> = (0..s.len()).map(|k| 1.0 - 0.3 * k as f32).collect();
        let mut jv = vec![0.0; s.len()];
        let mut jtw = vec![0.0; N * N];
        ph.j(&s, &v, &mut mem, &mut jv);
        ph.jt(&s, &w, &mut mem, &mut jtw);
        let lhs: f64 = jv.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum();
        let rhs: f64 = v.iter().zip(&jtw).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!((lhs - rhs).abs() <= ADJOINT_TOL * lhs.abs().max(rhs.abs()), "pde {pde}: {lhs} vs {rhs}");
        // The boundary sensor (node 0) reads u = 0 whatever the input.
        assert_eq!(jv[5], 0.0);
        assert!(lhs.abs() > 0.0);
    }
}

/// Central differences in f32 at step 1e-2 of a unit-scale input.
const FD_TOL: f64 = 2e-2;

#[test]
fn darcy_jacobian_matches_finite_differences() {
    let ph = physics(PDE_DARCY);
    let s = sensors(&[10, 19, 28, 37, 45]);
    let x = field(8);
    let v = field(9);
    let scale = 0.01;
    let mut mem = vec![0.0; ph.mem_len()];
    let predict = |x: &[f32], mem: &mut [f32]| {
        let mut out = vec![0.0; s.len()];
        ph.linearize(x, NORM, scale, mem).unwrap();
        ph.predict(&s, scale, mem, &mut out);
        out
    };
    let eps = 1e-2f32;
    let plus: Vec<f32> = x.iter().zip(&v).map(|(&x, &v)| x + eps * v).collect();
    let minus: Vec<f32> = x.iter().zip(&v).map(|(&x, &v)| x - eps * v).collect();
    let (fp, fm) = (predict(&plus, &mut mem), predict(&minus, &mut mem));
    let _ = predict(&x, &mut mem);
    let mut jv = vec![0.0; s.len()];
    ph.j(&s, &v, &mut mem, &mut jv);
    for k in 0..s.len() {
        let fd = (fp[k] as f64 - fm[k] as f64) / (2.0 * eps as f64);
        assert!((fd - jv[k] as f64).abs() <= FD_TOL * fd.abs().max(1e-3), "sensor {k}: fd {fd}, J v {}", jv[k]);
    }
}

#[test]
fn floored_nodes_have_no_derivative_and_indefinite_systems_are_errors() {
    let ph = physics(PDE_DARCY);
    // Every coefficient below the floor: the operator is a floor-valued
    // Laplacian, the Jacobian zero.
    let x = vec![-10.0f32; N * N];
    let s = sensors(&[10, 20]);
    let mut mem = vec![0.0; ph.mem_len()];
    ph.linearize(&x, NORM, 1.0, &mut mem).unwrap();
    let mut g = vec![1.0; N * N];
    ph.jt(&s, &[1.0, 1.0], &mut mem, &mut g);
    assert!(g.iter().all(|&v| v == 0.0));
    // NaN input is floored, never a NaN solve.
    let mut nan = field(1);
    nan[17] = f32::NAN;
    ph.linearize(&nan, NORM, 1.0, &mut mem).unwrap();
    // Helmholtz past the first eigenvalue: the factorisation refuses it.
    let helm = Physics::from_params(&PhysicsParams { pde: 2, shift: 1e4, coef_floor: 1.0, u_floor: 0.01 }, N).unwrap();
    let mut mem = vec![0.0; helm.mem_len()];
    assert!(matches!(helm.linearize(&field(2), NORM, 1.0, &mut mem), Err(Error::NotPositiveDefinite { .. })));
}

/// The conditional step's draws against the closed-form Gaussian
/// posterior: means within `MEAN_SE` Monte Carlo standard errors, stds
/// within `STD_REL`.
const DRAWS: usize = 3000;
const MEAN_SE: f64 = 5.0;
const STD_REL: f64 = 0.12;

#[test]
fn one_iteration_is_an_exact_posterior_draw_for_a_linear_map() {
    exact_posterior_draws(false);
}

/// The same with a prior that vanishes on the boundary (`D C D`): the
/// draws match that posterior and keep `a0`'s boundary exactly.
#[test]
fn masked_step_is_an_exact_posterior_draw_and_keeps_the_boundary() {
    exact_posterior_draws(true);
}

fn exact_posterior_draws(zero_boundary: bool) {
    let fx = Fixture::tiny(4, false);
    let noise = SmoothNoise::new(&fx.noise, &fx.kernel, N).unwrap();
    let ph = physics(PDE_POISSON);
    let nodes = [10, 19, 29, 36, 42];
    let s = {
        let mut s = Sensors::new(Grid::new(N).unwrap());
        for (k, &node) in nodes.iter().enumerate() {
            s.push_node(node, [0.004, -0.002, 0.006, 0.001, -0.003][k]).unwrap();
        }
        s
    };
    let (r, tau, scale) = (0.7f32, 0.05f32, 0.004f32);
    let a0 = field(11);
    let lin = Linear::Physics(&ph);
    let mut mem = vec![0.0; ph.mem_len() + step_mem_len(N, nodes.len())];
    let n2 = N * N;
    let (mut a, mut prop, mut z, mut t) = (vec![0.0; n2], vec![0.0; n2], vec![0.0; n2], vec![0.0; n2]);
    let mut rng = Rng::new(1);
    let (mut sum, mut sum2) = (vec![0.0f64; n2], vec![0.0f64; n2]);
    let set = Setting { r, tau, iterations: 1, scale, prior_norm: NORM, zero_boundary };
    for _ in 0..DRAWS {
        let f = Fields { a0: &a0, a: &mut a, prop: &mut prop, z: &mut z, t: &mut t };
        gauss_newton::step(&lin, &noise, &s, set, &mut rng, f, &mut mem, 0).unwrap();
        if zero_boundary {
            for p in (0..n2).filter(|&p| on_boundary(p)) {
                assert_eq!(a[p], a0[p], "node {p}: the mask keeps a0's boundary");
            }
        }
        for (i, &v) in a.iter().enumerate() {
            sum[i] += v as f64;
            sum2[i] += (v as f64) * (v as f64);
        }
    }
    // Closed form in f64: J = dF~/dx densely from an independent solve.
    let m = N - 2;
    let lap = dense_operator(&vec![1.0; n2]);
    let mut jmat = vec![0.0f64; nodes.len() * n2];
    for node in 0..n2 {
        let (i, j) = (node / N, node % N);
        if i == 0 || j == 0 || i == N - 1 || j == N - 1 {
            continue;
        }
        let mut e = vec![0.0; m * m];
        e[(i - 1) * m + j - 1] = -(NORM.1 as f64) / scale as f64;
        let col = dense_solve(&lap, &e);
        for (k, &sn) in nodes.iter().enumerate() {
            jmat[k * n2 + node] = col[(sn / N - 1) * m + sn % N - 1];
        }
    }
    let kern: Vec<f64> =
        fx.kernel.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect();
    // C = K1 (x) K1 as a dense n2 x n2 matrix, D C D with the mask.
    let d = |p: usize| if zero_boundary && on_boundary(p) { 0.0 } else { 1.0 };
    let cov = |p: usize, q: usize| d(p) * d(q) * kern[(p / N) * N + q / N] * kern[(p % N) * N + q % N];
    let kk = nodes.len();
    let cjt: Vec<f64> =
        (0..n2 * kk).map(|pk| (0..n2).map(|q| cov(pk / kk, q) * jmat[(pk % kk) * n2 + q]).sum()).collect();
    let r2 = (r as f64).powi(2);
    let mut smat = vec![0.0; kk * kk];
    for k in 0..kk {
        for l in 0..kk {
            smat[k * kk + l] = r2 * (0..n2).map(|p| jmat[k * n2 + p] * cjt[p * kk + l]).sum::<f64>()
                + if k == l { (tau as f64).powi(2) } else { 0.0 };
        }
    }
    // Residual of the readings at a0 (F~ is affine: F~(a0) = J a0 + F~(0)).
    let mut u0 = vec![0.0; n2];
    let mut pmem = vec![0.0; ph.mem_len()];
    ph.solve(&a0, NORM, &mut pmem, &mut u0).unwrap();
    let resid: Vec<f64> = s.iter().map(|sn| (sn.value as f64 - u0[sn.node as usize] as f64) / scale as f64).collect();
    let wsol = dense_solve(&smat, &resid);
    for p in 0..n2 {
        let mean = a0[p] as f64 + r2 * (0..kk).map(|k| cjt[p * kk + k] * wsol[k]).sum::<f64>();
        // var = r^2 C_pp - r^4 (C J^T S^-1 J C)_pp
        let col: Vec<f64> = (0..kk).map(|k| cjt[p * kk + k]).collect();
        let sc = dense_solve(&smat, &col);
        let var = r2 * cov(p, p) - r2 * r2 * col.iter().zip(&sc).map(|(a, b)| a * b).sum::<f64>();
        let got_mean = sum[p] / DRAWS as f64;
        let got_var = (sum2[p] / DRAWS as f64 - got_mean * got_mean).max(0.0);
        let sd = var.max(0.0).sqrt();
        assert!(
            (got_mean - mean).abs() <= MEAN_SE * sd / (DRAWS as f64).sqrt() + 1e-4,
            "node {p}: mean {got_mean} vs {mean} (sd {sd})"
        );
        assert!((got_var.sqrt() - sd).abs() <= STD_REL * sd + 1e-4, "node {p}: std {} vs {sd}", got_var.sqrt());
    }
    // The draws fit the readings better than the prior mean does.
    assert!(resid.iter().any(|r| r.abs() > 0.1));
}

#[test]
fn physics_artifacts_sample_deterministically_within_their_limits() {
    let fx = Fixture::tiny(7, true);
    for (pde, step, iters) in
        [(PDE_DARCY, STEP_GAUSS_NEWTON, 1), (PDE_POISSON, STEP_GAUSS_NEWTON, 2), (PDE_DARCY, STEP_LANGEVIN, 2)]
    {
        let bytes = encode_body(&fx.physics_body(pde, step, iters));
        let art = Artifact::parse(&bytes).unwrap();
        assert!(art.physics().is_some() && art.surrogate().is_none());
        let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
        let s = sensors(&[10, 19, 28, 37, 45]);
        let (mut m1, mut s1, mut m2, mut s2) = (vec![0.0; N * N], vec![0.0; N * N], vec![0.0; N * N], vec![0.0; N * N]);
        let st = sampler::posterior(&art, &s, 0.0, 3, 2, &mut m1, &mut s1, &mut ws).unwrap();
        sampler::posterior(&art, &s, 0.0, 3, 2, &mut m2, &mut s2, &mut ws).unwrap();
        assert_eq!(m1, m2, "same seed, same bits");
        assert!(m1.iter().chain(&s1).all(|v| v.is_finite()));
        assert_eq!(st.denoiser_calls, 6);
        if step == STEP_GAUSS_NEWTON {
            assert_eq!(st.clamped, 0);
            assert_eq!(st.guide_calls, 6 * iters);
        }
        assert!(sampler::flops(&art, 5).unwrap() > 0);
        // More sensors than the artifact's cap: a typed error.
        let many: Vec<usize> = (0..41).map(|k| k + 9).collect();
        let err = sampler::posterior(&art, &sensors(&many), 0.0, 3, 1, &mut m1, &mut s1, &mut ws);
        assert_eq!(err, Err(Error::TooManySensors { capacity: 40 }));
        // The request's 5 sensors need less than the cap's 40, exactly
        // that much runs to the same bits, and one value less is refused
        // before any work.
        let need = art.workspace_len_for(s.len()).unwrap();
        assert!(need < ws.len(), "{need} for 5 sensors, {} for 40", ws.len());
        let (mut m3, mut s3) = (vec![0.0; N * N], vec![0.0; N * N]);
        sampler::posterior(&art, &s, 0.0, 3, 2, &mut m3, &mut s3, &mut ws[..need]).unwrap();
        assert_eq!((&m3, &s3), (&m1, &s1), "a workspace sized for the count: same bits");
        let short = need - 1;
        let err = sampler::posterior(&art, &s, 0.0, 3, 1, &mut m1, &mut s1, &mut ws[..short]);
        assert!(matches!(err, Err(Error::WorkspaceTooSmall { .. })));
    }
}

#[test]
fn surrogate_gauss_newton_runs_and_its_rows_are_vjps() {
    let fx = Fixture::tiny(9, false);
    let mut body = fx.body();
    let sched = body.schedule.as_mut().unwrap();
    sched.step = STEP_GAUSS_NEWTON;
    sched.langevin = 1;
    sched.max_sensors = 8;
    let bytes = encode_body(&body);
    let art = Artifact::parse(&bytes).unwrap();
    let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
    let s = sensors(&[10, 19, 28]);
    let (mut m, mut sd) = (vec![0.0; N * N], vec![0.0; N * N]);
    let st = sampler::posterior(&art, &s, 0.0, 5, 1, &mut m, &mut sd, &mut ws).unwrap();
    assert!(m.iter().all(|v| v.is_finite()));
    assert_eq!((st.denoiser_calls, st.guide_calls, st.clamped), (3, 3, 0));
}

/// A Helmholtz artifact (its source vanishes on the boundary): every
/// sample is 0 there, so the posterior's mean and spread are 0 on the
/// boundary and only there; a Poisson artifact leaves the boundary free.
#[test]
fn helmholtz_samples_vanish_on_the_boundary() {
    let fx = Fixture::tiny(7, true);
    let s = sensors(&[10, 19, 28, 37, 45]);
    for (pde, k) in [(PDE_HELMHOLTZ, 2.0f32), (PDE_POISSON, 0.0)] {
        let mut body = fx.physics_body(pde, STEP_GAUSS_NEWTON, 1);
        body.data.helmholtz_k = k;
        let bytes = encode_body(&body);
        let art = Artifact::parse(&bytes).unwrap();
        assert_eq!(art.data().input_vanishes_on_boundary(), pde == PDE_HELMHOLTZ);
        let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
        let (mut m, mut sd) = (vec![0.0; N * N], vec![0.0; N * N]);
        sampler::posterior(&art, &s, 0.0, 3, 3, &mut m, &mut sd, &mut ws).unwrap();
        let mut one = vec![0.0; N * N];
        sampler::reconstruct(&art, &s, 0.0, 3, &mut one, &mut ws).unwrap();
        for p in 0..N * N {
            if pde == PDE_HELMHOLTZ && on_boundary(p) {
                assert_eq!((m[p], sd[p], one[p]), (0.0, 0.0, 0.0), "node {p}");
            } else {
                assert!(m[p].is_finite() && sd[p] > 0.0, "node {p}: spread {}", sd[p]);
            }
        }
    }
}
