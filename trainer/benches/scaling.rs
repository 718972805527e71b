//! What a training step costs at 32, 64 and 128 grid points per side, for
//! the surrogate (FNO) and the prior (EDM denoiser), `device` and `host`
//! presets: seconds per step (forward + loss + backward + Adam, batch 16,
//! median of the timed steps) and the process's peak resident memory
//! (`VmHWM`), one child process per row so that each peak is its own.
//!
//! `cargo bench -p ddis-trainer --bench scaling`. `SCALING_THREADS` (default
//! 1), `SCALING_STEPS` (timed steps after one warm-up, default 3),
//! `SCALING_RES` (default `32 64 128`) and `SCALING_BATCH` (16) override the
//! defaults. Linux only (the peak is read from `/proc/self/status`).

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use ddis_trainer::model::denoiser::{DenoiserConfig, EdmConfig};
use ddis_trainer::model::fno::{FnoConfig, rel_l2_loss};
use ddis_trainer::train::step_rng;

type B = Autodiff<NdArray<f32>>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Peak resident set of this process, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of each of `steps` timed steps (after one warm-up) of `step`.
fn time_steps(steps: usize, mut step: impl FnMut(usize)) -> Vec<f64> {
    step(0);
    (1..=steps)
        .map(|k| {
            let t = Instant::now();
            step(k);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn operator_step(cfg: &FnoConfig, n: usize, batch: usize, steps: usize) -> Vec<f64> {
    let device = Default::default();
    B::seed(&device, 0);
    let mut model = Some(cfg.init::<B>(&device));
    let mut optim = AdamConfig::new().init();
    let a = Tensor::<B, 3>::random([batch, n, n], Distribution::Uniform(1.0, 2.0), &device);
    let u = Tensor::<B, 3>::random([batch, n, n], Distribution::Uniform(1.0, 2.0), &device);
    time_steps(steps, |_| {
        let m = model.take().expect("model");
        let loss = rel_l2_loss(m.forward(a.clone()), u.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
    })
}

fn prior_step(cfg: &DenoiserConfig, n: usize, batch: usize, steps: usize) -> Vec<f64> {
    let device = Default::default();
    B::seed(&device, 0);
    let edm = EdmConfig::new(cfg.clone().into());
    let noise = edm.smooth_noise(n).expect("noise");
    let mut model = Some(edm.init::<B>(&device).expect("model"));
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<B, 4>::random([batch, 1, n, n], Distribution::Normal(0.0, 1.0), &device);
    time_steps(steps, |k| {
        let m = model.take().expect("model");
        let (sigma, eps) = m.draw_training_noise(&noise, batch, &mut step_rng(0, k), &device);
        let loss = m.loss(x.clone(), sigma, eps);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
    })
}

fn main() {
    ddis_trainer::train::backend::keep_freed_memory();
    let steps: usize = env_or("SCALING_STEPS", "3").parse().unwrap_or(3).max(1);
    let batch: usize = env_or("SCALING_BATCH", "16").parse().unwrap_or(16).max(1);
    if let Ok(row) = std::env::var("SCALING_CHILD") {
        let (what, rest) = row.split_once(':').expect("kind:preset:n");
        let (preset, n) = rest.split_once(':').expect("kind:preset:n");
        let n: usize = n.parse().expect("n");
        let times = match (what, preset) {
            ("operator", "device") => operator_step(&FnoConfig::device(), n, batch, steps),
            ("operator", _) => operator_step(&FnoConfig::host(), n, batch, steps),
            ("prior", "device") => prior_step(&DenoiserConfig::device(1), n, batch, steps),
            (_, _) => prior_step(&DenoiserConfig::host(1), n, batch, steps),
        };
        println!("{} {}", median(times), peak_rss_mib());
        return;
    }
    let threads = env_or("SCALING_THREADS", "1");
    let res: Vec<usize> =
        env_or("SCALING_RES", "32 64 128").split_whitespace().filter_map(|v| v.parse().ok()).collect();
    println!(
        "scaling: one training step (forward + loss + backward + Adam), batch {batch}, {threads} thread(s); median of {steps} steps after one warm-up; peak RSS of the process"
    );
    println!("{:<18} {:>5} {:>12} {:>14}", "model/preset", "n", "s/step", "peak RSS MiB");
    let exe = std::env::current_exe().expect("own path");
    for what in ["operator", "prior"] {
        for preset in ["device", "host"] {
            for &n in &res {
                let out = std::process::Command::new(&exe)
                    .env("SCALING_CHILD", format!("{what}:{preset}:{n}"))
                    .env("MATMUL_NUM_THREADS", &threads)
                    .env("RAYON_NUM_THREADS", &threads)
                    .output()
                    .expect("run the benchmark child");
                let text = String::from_utf8_lossy(&out.stdout);
                let mut it = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
                let (secs, rss) = (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN));
                println!("{:<18} {:>5} {:>12.3} {:>14.0}", format!("{what}/{preset}"), n, secs, rss);
            }
        }
    }
}
