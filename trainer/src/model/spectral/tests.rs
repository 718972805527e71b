//! The spectral convolution against a plain f64 DFT, both paths.

use super::*;
use burn::backend::NdArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = NdArray<f32>;

/// f32 round-off over sums of a few hundred terms, relative to the
/// largest reference value.
const F32_REL_TOL: f64 = 1e-4;

fn assert_close(got: &[f32], want: &[f64], rel_tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-30);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(*g) - w).abs();
        assert!(
            err <= rel_tol * scale,
            "{what}[{i}]: got {g}, expected {w} (|err| {err:.3e} > {rel_tol:.0e} * {scale:.3e})"
        );
    }
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Plain f64 spectral convolution with hand-written complex arithmetic,
/// straight from the formulas in the module docs. Layouts: x
/// `[b, h, w, c]`, weights `[c, o, 2m, m]`, result `[b, h, w, o]`.
#[allow(clippy::too_many_arguments)]
fn naive_spectral_conv(
    x: &[f64],
    wr: &[f64],
    wi: &[f64],
    (b, h, w, c): (usize, usize, usize, usize),
    o: usize,
    m: usize,
) -> Vec<f64> {
    let tau = std::f64::consts::TAU;
    let mut out = vec![0.0; b * h * w * o];
    for bi in 0..b {
        for r in 0..2 * m {
            let k1 = row_frequency(r, m) as f64;
            for k2 in 0..m {
                // X[i] for every input channel.
                let mut xs = vec![(0.0, 0.0); c];
                for (ci, xc) in xs.iter_mut().enumerate() {
                    for y in 0..h {
                        for xx in 0..w {
                            let th = tau * (k1 * y as f64 / h as f64 + k2 as f64 * xx as f64 / w as f64);
                            let v = x[((bi * h + y) * w + xx) * c + ci];
                            xc.0 += v * th.cos();
                            xc.1 -= v * th.sin();
                        }
                    }
                }
                for oi in 0..o {
                    let (mut yr, mut yi) = (0.0, 0.0);
                    for (ci, &(ar, ai)) in xs.iter().enumerate() {
                        let idx = ((ci * o + oi) * 2 * m + r) * m + k2;
                        yr += ar * wr[idx] - ai * wi[idx];
                        yi += ar * wi[idx] + ai * wr[idx];
                    }
                    let cw = column_weight(k2, w) / (h * w) as f64;
                    for y in 0..h {
                        for xx in 0..w {
                            let th = tau * (k1 * y as f64 / h as f64 + k2 as f64 * xx as f64 / w as f64);
                            out[((bi * h + y) * w + xx) * o + oi] += cw * (yr * th.cos() - yi * th.sin());
                        }
                    }
                }
            }
        }
    }
    out
}

fn check_against_naive(b: usize, h: usize, w: usize, c: usize, o: usize, m: usize, seed: u64) {
    let device = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random(&mut rng, b * h * w * c);
    let wr = random(&mut rng, c * o * 2 * m * m);
    let wi = random(&mut rng, c * o * 2 * m * m);
    let f32s = |v: &[f64]| v.iter().map(|&e| e as f32).collect::<Vec<_>>();
    let layer = SpectralConv2d::<B>::from_weights(
        Tensor::from_data(TensorData::new(f32s(&wr), [c, o, 2 * m, m]), &device),
        Tensor::from_data(TensorData::new(f32s(&wi), [c, o, 2 * m, m]), &device),
    );
    let xt = Tensor::<B, 4>::from_data(TensorData::new(f32s(&x), [b, h, w, c]), &device);
    let got = layer.forward(xt.clone());
    assert_eq!(got.dims(), [b, h, w, o]);
    let got = got.into_data().to_vec::<f32>().unwrap();
    let want = naive_spectral_conv(&x, &wr, &wi, (b, h, w, c), o, m);
    assert_close(&got, &want, F32_REL_TOL, &format!("spectral conv b{b} {h}x{w} c{c}->{o} m{m}"));
    // The fast channels-first path on the same input.
    let blocks = SpectralBlocks::new(h, w, m, &device);
    let fast = layer.forward_cf(&blocks, xt.permute([0, 3, 1, 2]));
    assert_eq!(fast.dims(), [b, o, h, w]);
    let fast = fast.permute([0, 2, 3, 1]).into_data().to_vec::<f32>().unwrap();
    assert_close(&fast, &want, F32_REL_TOL, &format!("fast spectral conv b{b} {h}x{w} c{c}->{o} m{m}"));
}

#[test]
fn cached_blocks_are_built_once_per_grid() {
    let device = Default::default();
    let a = SpectralBlocks::<B>::cached(12, 12, 3, &device);
    let b = SpectralBlocks::<B>::cached(12, 12, 3, &device);
    let fresh = SpectralBlocks::<B>::new(12, 12, 3, &device);
    // A hit returns the same tables as a fresh build.
    for (x, y) in [(a.fwd_w.clone(), fresh.fwd_w.clone()), (b.inv_h.clone(), fresh.inv_h.clone())] {
        assert_eq!(x.into_data().to_vec::<f32>().unwrap(), y.into_data().to_vec::<f32>().unwrap());
    }
    let other = SpectralBlocks::<B>::cached(16, 12, 3, &device);
    assert_eq!((other.h, other.w, other.modes), (16, 12, 3));
}

#[test]
fn spectral_conv_matches_naive_dft() {
    // Non-square, odd width, channel counts that differ.
    check_against_naive(2, 10, 9, 3, 2, 3, 1);
}

#[test]
fn spectral_conv_matches_naive_dft_at_the_limits() {
    // 2m == H (row blocks touch) and m == W/2 + 1 (Nyquist column kept).
    check_against_naive(1, 8, 6, 2, 3, 4, 2);
}

/// A band-limited periodic input sampled on two grids gives the same
/// output at the shared nodes: the weights mean the same at any
/// resolution.
#[test]
fn spectral_conv_is_resolution_independent_on_bandlimited_input() {
    let device = Default::default();
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let layer = SpectralConvConfig::new(2, 3, 3).init::<B>(&device);
    let field = |n: usize| {
        let mut v = Vec::with_capacity(n * n * 2);
        for i in 0..n {
            for j in 0..n {
                let (y, x) = (i as f64 / n as f64, j as f64 / n as f64);
                let t = std::f64::consts::TAU;
                v.push((0.3 + (t * x).cos() - 0.5 * (t * (2.0 * y - x)).sin()) as f32);
                v.push(((t * y).sin() * (t * 2.0 * x).cos()) as f32);
            }
        }
        Tensor::<B, 4>::from_data(TensorData::new(v, [1, n, n, 2]), &device)
    };
    let coarse = layer.forward(field(12)).into_data().to_vec::<f32>().unwrap();
    let fine = layer.forward(field(24)).into_data().to_vec::<f32>().unwrap();
    let mut shared = Vec::new();
    for i in 0..12 {
        for j in 0..12 {
            for o in 0..3 {
                shared.push(f64::from(fine[((2 * i) * 24 + 2 * j) * 3 + o]));
            }
        }
    }
    assert_close(&coarse, &shared, F32_REL_TOL, "coarse vs fine at shared nodes");
}

#[test]
fn grid_checks_name_the_limit() {
    assert!(check_grid(8, 6, 4).is_ok());
    assert!(check_grid(7, 6, 4).unwrap_err().contains("rows"));
    assert!(check_grid(8, 5, 4).unwrap_err().contains("Nyquist"));
    assert!(check_grid(8, 8, 0).is_err());
}
