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
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use ddis_trainer::model::fno::{Fno, FnoConfig, rel_l2_loss};

type BNd = Autodiff<NdArray<f32>>;
#[cfg(feature = "flex")]
type BFlex = Autodiff<burn::backend::Flex<f32>>;

const BATCH: usize = 16;
const N: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn step<B: AutodiffBackend, O: Optimizer<Fno<B>, B>>(
    model: Fno<B>,
    optim: &mut O,
    a: &Tensor<B, 3>,
    u: &Tensor<B, 3>,
) -> (Fno<B>, f32) {
    let loss = rel_l2_loss(model.forward(a.clone()), u.clone());
    let value: f32 = loss.clone().into_data().iter::<f32>().next().unwrap_or(f32::NAN);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(1e-3, model, grads), value)
}

/// Median steps/s over `repeats` timings of `steps` steps each (after one
/// warm-up step).
fn measure<B: AutodiffBackend>(cfg: &FnoConfig, repeats: usize, steps: usize) -> (f64, f32) {
    let device = Default::default();
    B::seed(&device, 0);
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

/// The benchmarked configurations: the reference point (width 32,
/// 12 modes, padded to 64x64) and the two presets.
fn configs() -> Vec<(&'static str, FnoConfig)> {
    vec![
        ("width32-modes12", FnoConfig::new(32, 12, 4, 0.5, 128)),
        ("device", FnoConfig::device()),
        ("host", FnoConfig::host()),
    ]
}

/// Thread counts are fixed per process (matrixmultiply reads
/// `MATMUL_NUM_THREADS` once), so each count runs in a child process of this
/// same binary with both pools pinned.
fn main() {
    ddis_trainer::train::backend::keep_freed_memory();
    let repeats = env_usize("FNO_BENCH_REPEATS", 5).max(1);
    let steps = env_usize("FNO_BENCH_STEPS", 3).max(1);
    if let Ok(which) = std::env::var("FNO_BENCH_CHILD") {
        let (_, cfg) = configs().into_iter().find(|(name, _)| *name == which).expect("known config");
        let (rate, loss) = match std::env::var("FNO_BENCH_BACKEND").as_deref() {
            #[cfg(feature = "flex")]
            Ok("flex") => measure::<BFlex>(&cfg, repeats, steps),
            _ => measure::<BNd>(&cfg, repeats, steps),
        };
        println!("{rate} {loss}");
        return;
    }
    let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "fno_step: forward + rel-L2 + backward + Adam, batch {BATCH}, {N}x{N}; median of {repeats} x {steps} steps"
    );
    println!(
        "{:<24} {:>9} {:>14} {:>14} {:>8}",
        "backend/config",
        "params",
        "1 thread /s",
        format!("{all} threads /s"),
        "speedup"
    );
    let exe = std::env::current_exe().expect("own path");
    let mut backends = vec!["ndarray"];
    if cfg!(feature = "flex") {
        backends.push("flex");
    }
    for backend in backends {
        for (name, cfg) in configs() {
            let mut rates = Vec::new();
            for threads in [1, all] {
                let out = std::process::Command::new(&exe)
                    .env("FNO_BENCH_CHILD", name)
                    .env("FNO_BENCH_BACKEND", backend)
                    .env("MATMUL_NUM_THREADS", threads.to_string())
                    .env("RAYON_NUM_THREADS", threads.to_string())
                    .output()
                    .expect("run the benchmark child");
                let text = String::from_utf8_lossy(&out.stdout);
                let rate: f64 = text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                rates.push(rate);
            }
            println!(
                "{:<24} {:>9} {:>14.2} {:>14.2} {:>7.2}x",
                format!("{backend}/{name}"),
                cfg.param_count(),
                rates[0],
                rates[1],
                rates[1] / rates[0]
            );
        }
    }
}
