//! One reconstruction with the device schedule, single thread: the no_std
//! runtime (`ddis-runtime`, the code the microcontroller runs, here on the
//! host CPU) against the burn host sampler with the same schedule and the
//! same trained models, plus the FLOP count of that schedule (counted by the
//! runtime) so the figure can be set against the hardware's limit.
//!
//! Needs the shipped artifact `models/darcy32.ddis` and the host models
//! (`runs/prior-device` and `runs/op-device-p100` when you trained them,
//! else the shipped `models/host/darcy32-prior` and `darcy32-op-p100`);
//! without them it says so and exits.
//!
//! `cargo bench -p ddis-trainer --bench reconstruct`; `RECON_BENCH_REPEATS`
//! overrides 7.

use std::path::Path;
use std::time::Instant;

use ddis_trainer::eval::{Method, MethodSpec, Models, Physics, reconstruct_cases, synthetic_case};
use ddis_trainer::export::runtime_posterior;
use ddis_trainer::pde::{PdeConfig, PdeKind};
use ddis_trainer::sample::{DapsConfig, DpsConfig};
use ddis_trainer::train::backend::CpuAutodiff;
use ddis_trainer::train::diffusion::load_diffusion;
use ddis_trainer::train::operator::load_operator;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    ddis_trainer::train::backend::keep_freed_memory();
    // One thread everywhere: matrixmultiply reads this once, at first use.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("rayon pool");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Your runs first, else the shipped host weights.
    let run_or_shipped = |run: &str, shipped: &str| {
        let r = root.join("runs").join(run);
        if r.join("model.bin").is_file() { r } else { root.join("models/host").join(shipped) }
    };
    let (art, prior, op) = (
        root.join("models/darcy32.ddis"),
        run_or_shipped("prior-device", "darcy32-prior"),
        run_or_shipped("op-device-p100", "darcy32-op-p100"),
    );
    if !(art.is_file() && prior.is_dir() && op.is_dir()) {
        println!("skipped: needs {}, {} and {} (docs/results.md)", art.display(), prior.display(), op.display());
        return;
    }
    let repeats: usize = std::env::var("RECON_BENCH_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let bytes = std::fs::read(&art).expect("artifact");
    let parsed = ddis_runtime::Artifact::parse(&bytes).expect("valid artifact");
    let pde = PdeConfig::for_kind(PdeKind::Darcy);
    let (_, obs) = synthetic_case(&pde, parsed.n(), 31, 0.0, 3).expect("case");
    let flops = ddis_runtime::sampler::flops(&parsed, obs.len()).unwrap_or(0);

    let mut runtime = vec![];
    for r in 0..repeats + 1 {
        let t = Instant::now();
        runtime_posterior(&bytes, &obs, 1, r as u64).expect("runtime");
        if r > 0 {
            runtime.push(t.elapsed().as_secs_f64());
        }
    }

    let device = Default::default();
    let models = Models::<CpuAutodiff> {
        prior: Some(load_diffusion(&prior, &device).expect("prior")),
        operator: Some(load_operator(&op, &device).expect("operator")),
        joint: None,
    };
    let spec = MethodSpec {
        method: Method::DdisDaps,
        daps: DapsConfig::reduced(),
        dps: DpsConfig::default_for_budget(1),
        device_noise_width: None,
        exact_prior: false,
    };
    let mut host = vec![];
    for r in 0..repeats + 1 {
        let post = reconstruct_cases(
            &spec,
            Physics::Surrogate,
            &models,
            &pde,
            std::slice::from_ref(&obs),
            1,
            1,
            r as u64,
            false,
            &device,
        )
        .expect("host sampler");
        if r > 0 {
            host.push(post.seconds);
        }
    }
    let (rt, hs) = (median(runtime), median(host));
    println!(
        "one reconstruction, 32x32 Darcy, 31 sensors, schedule {} (one posterior sample), 1 thread, median of {repeats}:",
        spec.daps.label()
    );
    println!("  FLOP per reconstruction (counted by ddis-runtime): {:.3e}", flops as f64);
    println!(
        "  ddis-runtime (int8 artifact, no_std code on the host): {:.3} s  ({:.2} GFLOP/s)",
        rt,
        flops as f64 / rt / 1e9
    );
    println!("  burn host sampler (f32, burn-ndarray):                 {:.3} s", hs);
    println!("  ratio burn / runtime: {:.2}x", hs / rt);
}
