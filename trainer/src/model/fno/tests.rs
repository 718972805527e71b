//! The surrogate's loss, presets, resolution checks, normalisation, fast
//! path against the reference (values and gradients) and a tiny training run.

use super::*;
use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = NdArray<f32>;
type AB = Autodiff<B>;

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn close(got: &[f32], want: &[f32], rel: f32, abs: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= abs + rel * w.abs(), "{what}[{i}]: got {g}, expected {w}");
    }
}

#[test]
fn rel_l2_loss_matches_hand_computation() {
    let device = Default::default();
    let t = Tensor::<B, 3>::from_data([[[3.0, 4.0]], [[1.0, 0.0]]], &device);
    let p = Tensor::<B, 3>::from_data([[[3.0, 4.5]], [[0.0, 0.0]]], &device);
    // sample 0: 0.5 / 5, sample 1: 1 / 1 -> mean 0.55
    let got = rel_l2_loss(p, t).into_scalar();
    assert!((got - 0.55).abs() < 1e-6, "got {got}, expected 0.55");
}

#[test]
fn preset_param_counts_match_closed_form_and_budget() {
    let device = Default::default();
    for (name, cfg) in [("device", FnoConfig::device()), ("host", FnoConfig::host())] {
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        let model = cfg.init::<B>(&device);
        assert_eq!(model.param_count(), cfg.param_count(), "{name} preset");
    }
    assert_eq!(FnoConfig::device().param_count(), 264_449);
    assert_eq!(FnoConfig::host().param_count(), 2_368_001);
    // int8 weights of prior + surrogate share 1 MiB: keep the FNO under 300k.
    assert!(FnoConfig::device().param_count() <= 300_000);
}

#[test]
fn resolution_checks() {
    let cfg = FnoConfig::device();
    assert!(cfg.check_resolution(32).is_ok());
    assert!(cfg.check_resolution(64).is_ok());
    let min = cfg.min_resolution();
    assert!(cfg.check_resolution(min).is_ok() && cfg.check_resolution(min - 1).is_err());
    assert_eq!(FnoConfig::new(4, 0, 1, 0.5, 4).min_resolution(), usize::MAX);
}

#[test]
fn forward_applies_the_stored_normalization() {
    let device = Default::default();
    let nz = Normalization::new(2.0, 0.5, -1.0, 0.01);
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let model = FnoConfig::new(4, 2, 1, 0.25, 8).with_normalization(nz.clone()).init::<B>(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let v: Vec<f32> = (0..2 * 8 * 8).map(|_| rng.random_range(0.0..4.0)).collect();
    let a = Tensor::<B, 3>::from_data(TensorData::new(v, [2, 8, 8]), &device);
    let got = to_vec(model.forward(a.clone()));
    let want = to_vec(model.forward_normalized((a - 2.0) / 0.5) * 0.01 - 1.0);
    close(&got, &want, 1e-6, 1e-6, "physical forward");
}

/// f32 round-off of the fast path against the reference, relative to
/// the largest output (sums of a few thousand products per layer).
const FAST_VS_REFERENCE_REL: f32 = 2e-5;

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |a, x| a.max(x.abs()))
}

#[test]
fn fast_forward_and_gradients_match_the_reference() {
    let device = Default::default();
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    AB::seed(&device, 3);
    for (cfg, n) in [(FnoConfig::device(), 32), (FnoConfig::new(6, 3, 2, 0.5, 8), 11)] {
        let model = cfg.init::<AB>(&device);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let v: Vec<f32> = (0..2 * n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let a = Tensor::<AB, 3>::from_data(TensorData::new(v, [2, n, n]), &device);
        let fast = model.forward_normalized(a.clone());
        let reference = model.forward_normalized_reference(a.clone());
        let (f, r) = (to_vec(fast.clone().inner()), to_vec(reference.clone().inner()));
        close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * max_abs(&r), "fast forward");
        // Gradients of the same scalar with respect to every weight.
        let gf = fast.powi_scalar(2).sum().backward();
        let gr = reference.powi_scalar(2).sum().backward();
        let pairs = [
            (model.blocks.spectral[0].weight_re.grad(&gf), model.blocks.spectral[0].weight_re.grad(&gr)),
            (model.blocks.spectral[1].weight_im.grad(&gf), model.blocks.spectral[1].weight_im.grad(&gr)),
        ];
        for (k, (f, r)) in pairs.into_iter().enumerate() {
            let (f, r) = (to_vec(f.unwrap()), to_vec(r.unwrap()));
            close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&r), &format!("spectral gradient {k}"));
        }
        for (name, f, r) in [
            ("lift", model.lift.weight.grad(&gf), model.lift.weight.grad(&gr)),
            ("skip", model.blocks.skip[1].weight.grad(&gf), model.blocks.skip[1].weight.grad(&gr)),
            ("proj", model.proj_hidden.weight.grad(&gf), model.proj_hidden.weight.grad(&gr)),
        ] {
            let (f, r) = (to_vec(f.unwrap()), to_vec(r.unwrap()));
            close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&r), &format!("{name} gradient"));
        }
        let bf = to_vec(model.blocks.skip[0].bias.as_ref().unwrap().grad(&gf).unwrap());
        let br = to_vec(model.blocks.skip[0].bias.as_ref().unwrap().grad(&gr).unwrap());
        close(&bf, &br, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&br), "skip bias gradient");
    }
}

#[test]
fn same_model_runs_at_32_and_64() {
    let device = Default::default();
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let model = FnoConfig::device().init::<B>(&device);
    for n in [32, 64] {
        let a = Tensor::<B, 3>::ones([2, n, n], &device);
        let u = model.forward(a);
        assert_eq!(u.dims(), [2, n, n], "output shape at n = {n}");
        assert!(to_vec(u).iter().all(|v| v.is_finite()), "finite output at n = {n}");
    }
}

/// Target operator for the training test: three sweeps of a 5-point
/// average with zero boundary (a Poisson-like smoothing).
fn smooth(a: &[f32], n: usize) -> Vec<f32> {
    let mut u = a.to_vec();
    for _ in 0..3 {
        let prev = u.clone();
        for i in 0..n {
            for j in 0..n {
                let at = |ii: isize, jj: isize| {
                    if ii < 0 || jj < 0 || ii >= n as isize || jj >= n as isize {
                        0.0
                    } else {
                        prev[ii as usize * n + jj as usize]
                    }
                };
                let (ii, jj) = (i as isize, j as isize);
                u[i * n + j] = (at(ii, jj) + at(ii - 1, jj) + at(ii + 1, jj) + at(ii, jj - 1) + at(ii, jj + 1)) / 5.0;
            }
        }
    }
    u
}

#[test]
fn tiny_fno_learns_a_smoothing_map() {
    let device = Default::default();
    let (batch, n) = (8, 12);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut a = Vec::with_capacity(batch * n * n);
    let mut u = Vec::with_capacity(batch * n * n);
    for _ in 0..batch {
        // A few random low-frequency waves plus an offset.
        let waves: Vec<(f32, f32, f32, f32)> = (0..3)
            .map(|_| {
                (
                    rng.random_range(-1.0..1.0),
                    rng.random_range(0.0..3.0),
                    rng.random_range(0.0..3.0),
                    rng.random_range(0.0..6.3),
                )
            })
            .collect();
        let field: Vec<f32> = (0..n * n)
            .map(|k| {
                let (y, x) = ((k / n) as f32 / (n - 1) as f32, (k % n) as f32 / (n - 1) as f32);
                1.0 + waves.iter().map(|&(amp, fx, fy, ph)| amp * (3.0 * (fx * x + fy * y) + ph).sin()).sum::<f32>()
            })
            .collect();
        u.extend(smooth(&field, n));
        a.extend(field);
    }
    let a = Tensor::<AB, 3>::from_data(TensorData::new(a, [batch, n, n]), &device);
    let u = Tensor::<AB, 3>::from_data(TensorData::new(u, [batch, n, n]), &device);

    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    AB::seed(&device, 11);
    let mut model = FnoConfig::new(8, 3, 2, 0.25, 16).init::<AB>(&device);
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..50 {
        let loss = rel_l2_loss(model.forward(a.clone()), u.clone());
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    let best = losses.iter().copied().fold(f32::INFINITY, f32::min);
    eprintln!("tiny FNO rel-L2: first {first:.4}, last {last:.4}, best {best:.4}");
    assert!(
        best < first / 4.0 && last < first / 3.0,
        "loss should fall clearly: first {first}, last {last}, best {best}, all {losses:?}"
    );
}
