//! Training throughput of the FNO surrogate on burn-ndarray: one step is
//! forward + relative-L2 loss + backward + Adam update, batch 16 on 32x32,
//! width 32, 12 modes, 4 layers (the `host` preset, padded to 64x64).
//!
//! Prints the median steps/s over repeats, once inside a 1-thread rayon pool
//! and once on the global pool. burn-ndarray parallelises through rayon only
//! when its `multi-threads` feature is on (matrixmultiply's own `threading`
//! pool ignores rayon and reads `MATMUL_NUM_THREADS` once per process).
//!
//! `cargo bench -p ddis-trainer --bench fno_step`; `FNO_BENCH_REPEATS` and
//! `FNO_BENCH_STEPS` (steps per repeat) override 5 and 3.

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use ddis_trainer::model::fno::{Fno, FnoConfig, rel_l2_loss};

type B = Autodiff<NdArray<f32>>;

const BATCH: usize = 16;
const N: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn step<O: Optimizer<Fno<B>, B>>(
    model: Fno<B>,
    optim: &mut O,
    a: &Tensor<B, 3>,
    u: &Tensor<B, 3>,
) -> (Fno<B>, f32) {
    let loss = rel_l2_loss(model.forward(a.clone()), u.clone());
    let value = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(1e-3, model, grads), value)
}

/// Median steps/s over `repeats` timings of `steps` steps each (after one
/// warm-up step).
fn measure(repeats: usize, steps: usize) -> (f64, f32) {
    let device = Default::default();
    B::seed(&device, 0);
    let cfg = FnoConfig::new(32, 12, 4, 0.5, 128);
    let mut model = cfg.init::<B>(&device);
    let mut optim = AdamConfig::new().init();
    let a = Tensor::<B, 3>::random([BATCH, N, N], Distribution::Uniform(1.0, 2.0), &device);
    let u = Tensor::<B, 3>::random([BATCH, N, N], Distribution::Uniform(1.0, 2.0), &device);
    let mut loss;
    (model, loss) = step(model, &mut optim, &a, &u);
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        for _ in 0..steps {
            (model, loss) = step(model, &mut optim, &a, &u);
        }
        rates.push(steps as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], loss)
}

fn main() {
    let repeats = env_usize("FNO_BENCH_REPEATS", 5).max(1);
    let steps = env_usize("FNO_BENCH_STEPS", 3).max(1);
    let params = FnoConfig::new(32, 12, 4, 0.5, 128).param_count();
    println!(
        "fno_step: batch {BATCH}, {N}x{N} (padded 64x64), width 32, modes 12, 4 layers, \
         {params} params; median of {repeats} x {steps} steps"
    );

    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a 1-thread rayon pool");
    let (rate1, loss1) = single.install(|| measure(repeats, steps));
    println!(
        "  1 thread : {rate1:8.3} steps/s  ({:7.1} ms/step, last loss {loss1:.4})",
        1e3 / rate1
    );

    let threads = rayon::current_num_threads();
    let (rate_n, loss_n) = measure(repeats, steps);
    println!(
        "  {threads} threads: {rate_n:8.3} steps/s  ({:7.1} ms/step, last loss {loss_n:.4}), \
         speed-up {:.2}x",
        1e3 / rate_n,
        rate_n / rate1
    );
}
