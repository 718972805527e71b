//! The sensor-space posterior against the dense N-dimensional formulas,
//! Matheron draws against the closed form (Monte Carlo), the jitter of
//! noiseless readings, and Darcy refused by name.

use super::*;
use crate::grf::synthesize_reference;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Agreement of the sensor-space and the dense N-dimensional formulas,
/// relative to the largest value of the field compared.
const DENSE_TOL: f64 = 1e-8;
/// Monte Carlo checks pass within this many standard errors.
const MC_Z: f64 = 4.5;
/// Matheron draws per Monte Carlo check.
const MC_DRAWS: usize = 4000;

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// A tiny case: readings of a generator draw at `sensors` interior nodes,
/// with noise `rel_noise` times the RMS reading (0: noiseless).
fn tiny_case(kind: PdeKind, n: usize, sensors: usize, rel_noise: f64, seed: u64) -> (LinearGaussian, Observations) {
    let mut model = LinearGaussian::new(&PdeConfig::for_kind(kind), n).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let f = model.sample_prior(&mut rng).unwrap();
    let u: Vec<f32> = model.forward(&f).unwrap().iter().map(|&v| v as f32).collect();
    let nodes = crate::observe::random_interior_nodes(n, sensors, &mut rng).unwrap();
    let rms = (nodes.iter().map(|&p| f64::from(u[p]).powi(2)).sum::<f64>() / sensors as f64).sqrt();
    let obs = Observations::measure(n, nodes, &u, rel_noise * rms, &mut rng).unwrap();
    (model, obs)
}

/// The posterior in the N-dimensional precision form, built without any
/// of the shortcuts above: `f = D B diag(sqrt(lambda)) z`, `z ~ N(0, I)`
/// over the modes with `lambda > 0`; `B` from the reference synthesis,
/// `H` from one forward solve per node (not the transpose trick);
/// `z | y ~ N(P^-1 X^T y / s^2, P^-1)`, `P = I + X^T X / s^2`, `X = H T`.
fn dense_posterior(model: &mut LinearGaussian, obs: &Observations) -> (Vec<f64>, Vec<f64>) {
    let grid = model.grid();
    let (n2, k) = (grid.len(), obs.nodes.len());
    let s2 = obs.noise_sigma * obs.noise_sigma;
    // T: n2 x m, columns D B e_mode sqrt(lambda_mode).
    let modes: Vec<usize> = (0..n2).filter(|&q| model.lambda[q] > 0.0).collect();
    let m = modes.len();
    let mut t = vec![0.0; n2 * m];
    for (c, &q) in modes.iter().enumerate() {
        let mut e = vec![0.0; n2];
        e[q] = 1.0;
        let col = synthesize_reference(grid, &e).unwrap();
        for p in 0..n2 {
            t[p * m + c] = model.mask[p] * col[p] * model.lambda[q].sqrt();
        }
    }
    // H: k x n2 by forward solves of unit sources.
    let mut h = vec![0.0; k * n2];
    for j in 0..n2 {
        let mut e = vec![0.0; n2];
        e[j] = 1.0;
        let u = model.forward(&e).unwrap();
        for (r, &node) in obs.nodes.iter().enumerate() {
            h[r * n2 + j] = u[node];
        }
    }
    // X = H T (k x m); P = I + X^T X / s^2; rhs = X^T y / s^2.
    let mut x = vec![0.0; k * m];
    for r in 0..k {
        for c in 0..m {
            x[r * m + c] = (0..n2).map(|p| h[r * n2 + p] * t[p * m + c]).sum();
        }
    }
    let mut p = vec![0.0; m * m];
    for a in 0..m {
        for b in 0..m {
            p[a * m + b] = (0..k).map(|r| x[r * m + a] * x[r * m + b]).sum::<f64>() / s2;
        }
        p[a * m + a] += 1.0;
    }
    let mut z: Vec<f64> = (0..m).map(|c| (0..k).map(|r| x[r * m + c] * obs.values[r]).sum::<f64>() / s2).collect();
    cholesky(&mut p, m).unwrap();
    cholesky_solve(&p, m, &mut z);
    let mean: Vec<f64> = (0..n2).map(|q| dot(&t[q * m..(q + 1) * m], &z)).collect();
    // var_q = t_q^T P^-1 t_q.
    let std = (0..n2)
        .map(|q| {
            let mut v = t[q * m..(q + 1) * m].to_vec();
            cholesky_solve(&p, m, &mut v);
            dot(&t[q * m..(q + 1) * m], &v).max(0.0).sqrt()
        })
        .collect();
    (mean, std)
}

#[test]
fn sensor_space_posterior_matches_the_dense_precision_form() {
    for kind in [PdeKind::Poisson, PdeKind::Helmholtz] {
        let (mut model, obs) = tiny_case(kind, 6, 5, 0.05, 11);
        let post = model.condition(&obs).unwrap();
        assert_eq!(post.nugget(), obs.noise_sigma.powi(2), "{kind}: s^2 dominates the jitter");
        let (mean, std) = dense_posterior(&mut model, &obs);
        let dm = max_abs(&mean.iter().zip(post.mean()).map(|(a, b)| a - b).collect::<Vec<_>>()) / max_abs(&mean);
        let ds = max_abs(&std.iter().zip(post.std()).map(|(a, b)| a - b).collect::<Vec<_>>()) / max_abs(&std);
        assert!(dm < DENSE_TOL, "{kind}: posterior means differ by {dm:e} (relative)");
        assert!(ds < DENSE_TOL, "{kind}: posterior stds differ by {ds:e} (relative)");
        // The readings inform the field: the posterior is tighter than the prior somewhere.
        let shrink = post.std().iter().zip(model.prior_variance()).map(|(s, v)| s / v.sqrt()).fold(1.0, f64::min);
        assert!(shrink < 0.9, "{kind}: posterior std / prior std is at least {shrink} everywhere");
    }
}

#[test]
fn matheron_draws_match_the_closed_form_mean_and_std() {
    for kind in [PdeKind::Poisson, PdeKind::Helmholtz] {
        let (mut model, obs) = tiny_case(kind, 6, 4, 0.1, 5);
        let post = model.condition(&obs).unwrap();
        let n2 = model.grid().len();
        let (mut sum, mut sq) = (vec![0.0; n2], vec![0.0; n2]);
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        for _ in 0..MC_DRAWS {
            let f = model.sample(&post, &mut rng).unwrap();
            for ((s, q), v) in sum.iter_mut().zip(&mut sq).zip(&f) {
                *s += v;
                *q += v * v;
            }
        }
        let draws = MC_DRAWS as f64;
        for p in 0..n2 {
            let (mu, sd) = (post.mean()[p], post.std()[p]);
            let mc_mu = sum[p] / draws;
            let mc_sd = (sq[p] / draws - mc_mu * mc_mu).max(0.0).sqrt();
            if sd == 0.0 {
                // Helmholtz boundary: the source is 0 there in every draw.
                assert!(mc_mu == 0.0 && mc_sd == 0.0 && mu == 0.0, "{kind} node {p}: not pinned to 0");
                continue;
            }
            let (z_mu, z_sd) = ((mc_mu - mu) / (sd / draws.sqrt()), (mc_sd - sd) / (sd / (2.0 * draws).sqrt()));
            assert!(z_mu.abs() < MC_Z, "{kind} node {p}: MC mean {mc_mu} vs {mu} ({z_mu:.1} SE)");
            assert!(z_sd.abs() < MC_Z, "{kind} node {p}: MC std {mc_sd} vs {sd} ({z_sd:.1} SE)");
        }
    }
}

#[test]
fn noiseless_readings_are_reproduced_through_the_jitter() {
    // Relative misfit of H mean against y allowed with s = 0.
    const NOISELESS_TOL: f64 = 1e-6;
    let (mut model, obs) = tiny_case(PdeKind::Poisson, 8, 6, 0.0, 3);
    let post = model.condition(&obs).unwrap();
    assert!(post.nugget() > 0.0, "s = 0 falls back to the jitter");
    let u = model.forward(post.mean()).unwrap();
    let miss = obs.nodes.iter().zip(&obs.values).map(|(&p, y)| (u[p] - y).abs()).fold(0.0, f64::max);
    let rel = miss / max_abs(&obs.values);
    assert!(rel < NOISELESS_TOL, "posterior mean misses the noiseless readings by {rel:e}");
}

#[test]
fn darcy_is_refused_by_name() {
    let err = LinearGaussian::new(&PdeConfig::for_kind(PdeKind::Darcy), 8).err().expect("darcy must be refused");
    assert!(matches!(err, ExactError::NotLinearGaussian { pde: PdeKind::Darcy }));
    assert!(err.to_string().contains("darcy"), "{err}");
}

#[test]
fn dense_covariance_is_the_reference_synthesis_outer_product() {
    // Sigma = T T^T with T's columns D B e_q sqrt(lambda_q) from the plain
    // reference synthesis; its diagonal is `prior_variance`.
    for kind in [PdeKind::Poisson, PdeKind::Helmholtz] {
        let model = LinearGaussian::new(&PdeConfig::for_kind(kind), 6).unwrap();
        let grid = model.grid();
        let n2 = grid.len();
        let cov = model.covariance().unwrap();
        let mut want = vec![0.0; n2 * n2];
        for q in 0..n2 {
            let mut e = vec![0.0; n2];
            e[q] = 1.0;
            let col: Vec<f64> = synthesize_reference(grid, &e)
                .unwrap()
                .iter()
                .zip(&model.mask)
                .map(|(c, d)| c * d * model.lambda[q].sqrt())
                .collect();
            for p in 0..n2 {
                for r in 0..n2 {
                    want[p * n2 + r] += col[p] * col[r];
                }
            }
        }
        let scale = max_abs(&want);
        for (i, (c, w)) in cov.iter().zip(&want).enumerate() {
            assert!((c - w).abs() <= DENSE_TOL * scale, "{kind:?} entry {i}: {c} vs {w}");
        }
        for (p, v) in model.prior_variance().iter().enumerate() {
            assert!((cov[p * n2 + p] - v).abs() <= DENSE_TOL * scale, "{kind:?} diagonal {p}");
        }
    }
}
