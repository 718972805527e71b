//! Training throughput of the U-Net denoiser (`--arch unet --size device`,
//! joint `(a, u)`: 2 channels, widths 16/32/32) on burn-ndarray, batch 16 on
//! 32 x 32: the forward pass alone, and one training step (forward + squared
//! error + backward + Adam update).
//!
//! Prints the median seconds over repeats on one thread.
//! `RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 cargo bench -p ddis-trainer
//! --bench unet_step`; `UNET_BENCH_REPEATS` and `UNET_BENCH_STEPS` (steps per
//! repeat) override 5 and 3. With `UNET_BENCH_PARTS=1` it times the forward
//! pieces instead, at each level's size: the 3x3 convolution composed of
//! `pad`/`narrow`/`cat`/`matmul` (the U-Net's first fast path) beside burn's
//! `conv2d` (the patched backend's im2col kernel), and `pad`, GroupNorm,
//! SiLU, an add and the bare matrix product.

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};
use ddis_trainer::model::unet::{Unet, UnetConfig};

type B = Autodiff<NdArray<f32>>;

const BATCH: usize = 16;
const N: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::var("UNET_BENCH_PARTS").is_ok() {
        parts();
        return;
    }
    let repeats = env_usize("UNET_BENCH_REPEATS", 5);
    let steps = env_usize("UNET_BENCH_STEPS", 3);
    let device = Default::default();
    let cfg = UnetConfig::device(2);
    let mut model: Unet<B> = cfg.init(&device);
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<B, 4>::random([BATCH, 2, N, N], Distribution::Normal(0.0, 1.0), &device);
    let c = Tensor::<B, 1>::random([BATCH], Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<B, 4>::random([BATCH, 2, N, N], Distribution::Normal(0.0, 1.0), &device);

    let mut fwd = Vec::new();
    let mut step = Vec::new();
    for r in 0..=repeats {
        let t = Instant::now();
        for _ in 0..steps {
            let y = model.forward(x.clone(), c.clone());
            let _ = y.into_data();
        }
        let tf = t.elapsed().as_secs_f64() / steps as f64;
        let t = Instant::now();
        for _ in 0..steps {
            let y = model.forward(x.clone(), c.clone());
            let loss = (y - target.clone()).powf_scalar(2.0).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let ts = t.elapsed().as_secs_f64() / steps as f64;
        if r > 0 {
            fwd.push(tf);
            step.push(ts);
        }
    }
    println!("unet device preset ({} parameters), batch {BATCH}, {N}x{N}, one thread", cfg.param_count());
    println!("forward           {:8.4} s (median of {repeats})", median(fwd));
    println!("training step     {:8.4} s (median of {repeats})", median(step));
}

/// A 3x3 convolution (zero padding 1) composed of burn ops: im2col by
/// `narrow` and `cat`, then one matrix product.
fn conv_cat<BB: burn::tensor::backend::Backend>(w: Tensor<BB, 4>, x: Tensor<BB, 4>) -> Tensor<BB, 4> {
    let [b, c, h, ww] = x.dims();
    let [o, _, kh, kw] = w.dims();
    let xp = x.pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0));
    let mut shifted = Vec::with_capacity(9);
    for di in 0..3 {
        for dj in 0..3 {
            shifted.push(xp.clone().narrow(2, di, h).narrow(3, dj, ww));
        }
    }
    let cols = Tensor::cat(shifted, 1).reshape([b, 9 * c, h * ww]);
    let wt = w.permute([0, 2, 3, 1]).reshape([1, o, kh * kw * c]);
    wt.matmul(cols).reshape([b, o, h, ww])
}

/// Prints the mean of five runs of `f` after one warm-up.
fn time<F: FnMut()>(name: &str, mut f: F) {
    f();
    let t = Instant::now();
    for _ in 0..5 {
        f();
    }
    println!("{name:30} {:8.5} s", t.elapsed().as_secs_f64() / 5.0);
}

/// `UNET_BENCH_PARTS=1`: the forward pieces at each level's size.
fn parts() {
    use burn::nn::GroupNormConfig;
    type P = NdArray<f32>;
    let device = Default::default();
    for (c, n) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let x = Tensor::<P, 4>::random([BATCH, c, n, n], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<P, 4>::random([c, c, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let gn = GroupNormConfig::new(4, c).init::<P>(&device);
        println!("-- c {c} n {n}");
        time("conv cat", || {
            let _ = conv_cat(w.clone(), x.clone()).into_data();
        });
        let opts = burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        time("conv module", || {
            let _ = burn::tensor::module::conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
        });
        time("pad", || {
            let _ = x.clone().pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0)).into_data();
        });
        time("groupnorm", || {
            let _ = gn.forward(x.clone()).into_data();
        });
        time("silu", || {
            let _ = burn::tensor::activation::silu(x.clone()).into_data();
        });
        time("add", || {
            let _ = (x.clone() + x.clone()).into_data();
        });
        let cols = Tensor::<P, 3>::random([BATCH, 9 * c, n * n], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<P, 3>::random([1, c, 9 * c], Distribution::Normal(0.0, 1.0), &device);
        time("matmul only", || {
            let _ = wt.clone().matmul(cols.clone()).into_data();
        });
    }
}
