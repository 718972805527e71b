//! The commands that reconstruct a field: `ddis demo`, `ddis reconstruct`
//! (device runtime or burn host samplers), `ddis eval` over many cases and
//! `ddis device` on the firmware; and the files and counters they share.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;

use super::{read_artifact, shipped_run};
use crate::cli::{DemoArgs, DeviceArgs, EvalArgs, ReconstructArgs, SamplerKind};
use crate::eval::{EvalOptions, Method, MethodSpec, Physics, ReconstructOptions, run_eval, run_reconstruct};
use crate::pde::PdeKind;
use crate::train::backend::on_backend;

/// Writes mean.npy, std.npy, readings.csv and panel.png (with the truth
/// and the error when the truth is known) into the staged folder `out`.
pub(crate) fn write_reconstruction(
    out: &crate::output::Staged,
    n: usize,
    obs: &crate::observe::Observations,
    truth: Option<&[f32]>,
    mean: &[f32],
    std: &[f32],
) -> Result<()> {
    crate::npy::write(&out.join("mean.npy"), &[n, n], mean)?;
    crate::npy::write(&out.join("std.npy"), &[n, n], std)?;
    if let Some(t) = truth {
        crate::npy::write(&out.join("truth.npy"), &[n, n], t)?;
    }
    obs.write_csv(&out.join("readings.csv"))?;
    crate::eval::write_panel(&out.join("panel.png"), n, truth, obs, mean, std)
}

/// `ddis demo`: a fresh truth from the law the artifact's models were
/// trained on (or the user's readings), reconstructed by the device runtime
/// from the shipped artifact.
pub(crate) fn demo(args: &DemoArgs, progress: bool) -> Result<()> {
    let path = args
        .artifact
        .clone()
        .unwrap_or_else(|| crate::output::shipped_artifact(args.pde.unwrap_or(PdeKind::Darcy).name(), 32));
    let bytes = read_artifact(&path)?;
    let art = ddis_runtime::Artifact::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let n = art.n();
    let problem = art.problem();
    if let Some(k) = args.pde {
        anyhow::ensure!(
            k.name() == problem,
            "{} is a {problem} artifact, not {k}: pass --pde {problem}, or --artifact with a {k} artifact",
            path.display()
        );
    }
    // The artifact's own law: its Darcy phases, GRF and wave number.
    let law = crate::export::artifact_pde(&art);
    let (truth, obs) = match (&args.obs, &law) {
        (Some(file), _) => (None, crate::observe::Observations::load(file, n, args.noise)?),
        (None, Some(pde)) => {
            let (t, o) = crate::eval::synthetic_case(pde, n, args.sensors, args.noise, args.seed)?;
            (Some(t), o)
        }
        (None, None) => anyhow::bail!(
            "{} is for the problem `{problem}`, for which ddis cannot draw a ground truth: pass your readings with --obs",
            path.display()
        ),
    };
    let data = art.data();
    for w in obs.warnings(Some((data.u_min as f64, data.u_max as f64))) {
        crate::output::warn(w);
    }
    let out = crate::output::Staged::new(&args.out, args.force)?;
    if progress {
        eprintln!(
            "{}: {} readings on a {n}x{n} grid; {} posterior samples with {} ...",
            path.display(),
            obs.len(),
            args.samples,
            art.schedule().map(|s| format!("the device schedule ({} levels)", s.levels())).unwrap_or_default()
        );
    }
    let t0 = std::time::Instant::now();
    let post = crate::export::runtime_posterior(&bytes, &obs, args.samples, args.seed)?;
    let secs = t0.elapsed().as_secs_f64();
    warn_clamped(post.stats.clamped as usize);
    write_reconstruction(&out, n, &obs, truth.as_deref(), &post.mean, &post.std)?;
    let metrics = match (&truth, &law) {
        (Some(t), Some(pde)) => Some(crate::eval::case_metrics(pde, t, &post.mean, &post.std, n)?),
        _ => None,
    };
    let record = serde_json::json!({
        "command": "demo",
        "ddis_version": env!("CARGO_PKG_VERSION"),
        "models": { "artifact": crate::output::model_entry(&path)? },
        "problem": problem,
        "grid": n,
        "readings": match &args.obs {
            Some(f) => serde_json::json!({ "file": f.display().to_string(), "count": obs.len(), "noise_std": args.noise }),
            None => serde_json::json!({ "synthetic_sensors": obs.len(), "noise_std": args.noise }),
        },
        "samples": args.samples,
        "seed": args.seed,
        "seconds": { "sampler": secs },
        "sampler": runtime_counters(&post.stats),
        "metrics": metrics,
    });
    let dir = out.commit(&record)?;
    println!(
        "reconstructed {n}x{n} {problem} from {} readings in {secs:.2} s ({} samples, device runtime, int8 or f32 as exported)",
        obs.len(),
        args.samples
    );
    if let Some(m) = &metrics {
        print!("relative L2 error {:.1} %", 100.0 * m.rel_l2);
        if let Some(e) = m.error_rate {
            print!(", error rate {:.1} % of nodes in the wrong phase", 100.0 * e);
        }
        println!(", truth inside mean +- 2 std at {:.0} % of nodes", 100.0 * m.calibration);
    }
    let panels = if truth.is_some() { "truth, sensors, mean, std, |error|" } else { "sensors, mean, std" };
    println!("wrote {}/panel.png ({panels}), mean.npy, std.npy, readings.csv, run.json", dir.display());
    Ok(())
}

/// `ddis reconstruct --artifact`: the device runtime on the host.
pub(crate) fn reconstruct_artifact_cmd(args: &ReconstructArgs) -> Result<()> {
    let path = args.artifact.clone().unwrap_or_default();
    let bytes = read_artifact(&path)?;
    let art = ddis_runtime::Artifact::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let obs = crate::observe::Observations::load(&args.obs, art.n(), args.noise)?;
    let data = art.data();
    for w in obs.warnings(Some((data.u_min as f64, data.u_max as f64))) {
        crate::output::warn(w);
    }
    let out = crate::output::Staged::new(&args.out, args.force)?;
    let t0 = std::time::Instant::now();
    let post = crate::export::runtime_posterior(&bytes, &obs, args.samples, args.seed)?;
    let secs = t0.elapsed().as_secs_f64();
    warn_clamped(post.stats.clamped as usize);
    write_reconstruction(&out, art.n(), &obs, None, &post.mean, &post.std)?;
    let record = serde_json::json!({
        "command": "reconstruct",
        "ddis_version": env!("CARGO_PKG_VERSION"),
        "models": { "artifact": crate::output::model_entry(&path)? },
        "problem": art.problem(),
        "grid": art.n(),
        "readings": { "file": args.obs.display().to_string(), "count": obs.len(), "noise_std": args.noise },
        "method": "device runtime",
        "samples": args.samples,
        "seed": args.seed,
        "seconds": { "sampler": secs },
        "sampler": runtime_counters(&post.stats),
    });
    let dir = out.commit(&record)?;
    eprintln!(
        "{} posterior samples in {secs:.2} s on the device runtime ({} denoiser calls, {} guide calls, {} clamped) -> {}",
        args.samples,
        post.stats.denoiser_calls,
        post.stats.guide_calls,
        post.stats.clamped,
        dir.display()
    );
    Ok(())
}

/// The device runtime's counters for a `run.json`.
pub(crate) fn runtime_counters(s: &ddis_runtime::sampler::SampleStats) -> serde_json::Value {
    serde_json::json!({
        "denoiser_calls": s.denoiser_calls,
        "guide_calls": s.guide_calls,
        "clamped": s.clamped,
        "non_finite": s.non_finite,
    })
}

/// A warning when the sampler's safety clamp fired.
pub(crate) fn warn_clamped(clamped: usize) {
    if clamped > 0 {
        crate::output::warn(format_args!(
            "the sampler's safety clamp changed {clamped} node values: the posterior may be distorted (a smaller step, or another schedule)"
        ));
    }
}

/// `ddis reconstruct` with the burn host samplers; the shipped host models
/// when no run is named.
pub(crate) fn reconstruct_cmd(args: ReconstructArgs, progress: bool) -> Result<()> {
    let (daps, dps) = args.sampler_args.configs(args.sampler == SamplerKind::DapsLite)?;
    let method = match (args.sampler, args.joint.is_some()) {
        (SamplerKind::Dps, false) => Method::DdisDps,
        (SamplerKind::Dps, true) => Method::JointDps,
        (_, false) => Method::DdisDaps,
        (_, true) => Method::JointDaps,
    };
    let prior = match (&args.prior, &args.joint) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(shipped_run(args.pde, 32, "prior")?),
    };
    let operator = match (&args.operator, &prior, args.physics, &args.joint) {
        (Some(o), ..) => Some(o.clone()),
        (None, Some(p), Physics::Surrogate, None) => {
            let cfg = crate::train::run::RunDir::read_config(p)?;
            let pde = cfg
                .pointer("/data_meta/pde/kind")
                .and_then(|v| v.as_str())
                .and_then(|k| k.parse::<PdeKind>().ok())
                .with_context(|| format!("{} has no readable problem in its config.json", p.display()))?;
            let res = cfg.pointer("/data_meta/res").and_then(|v| v.as_u64()).unwrap_or(32) as usize;
            Some(shipped_run(pde, res, "op-p100").context("--physics surrogate needs --operator")?)
        }
        _ => None,
    };
    let opts = ReconstructOptions {
        prior,
        operator,
        joint: args.joint,
        obs: args.obs,
        noise: args.noise,
        method: MethodSpec { method, daps, dps, device_noise_width: None, exact_prior: false },
        physics: args.physics,
        samples: args.samples,
        seed: args.seed,
        out: args.out.clone(),
        force: args.force,
        progress,
    };
    let post = on_backend!(args.backend.backend, args.backend.gpu, |B, device| run_reconstruct::<Autodiff<B>>(
        &opts, &device
    )?);
    eprintln!(
        "{} posterior samples in {:.2} s ({} denoiser calls, {} guide calls, {} clamped) -> {}",
        post.samples,
        post.seconds,
        post.stats.denoiser_calls,
        post.stats.guide_calls,
        post.stats.clamped,
        args.out.display()
    );
    Ok(())
}

/// `ddis eval`.
pub(crate) fn eval_cmd(args: EvalArgs, progress: bool) -> Result<()> {
    let (daps, dps) = args.sampler_args.configs(false)?;
    let methods = args
        .methods
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| MethodSpec::parse(m, &daps, &dps))
        .collect::<Result<Vec<_>>>()?;
    let paired = args
        .paired
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && *v <= 1.0)
                .ok_or_else(|| anyhow::anyhow!("--paired-fraction: `{p}` is not a fraction in (0, 1]"))
        })
        .collect::<Result<Vec<_>>>()?;
    let runs = match args.runs {
        Some(r) => vec![r],
        None => vec![PathBuf::from("runs"), crate::output::shipped_runs()],
    };
    let opts = EvalOptions {
        pde: args.pde,
        res: args.res,
        cases: args.cases,
        sensors: args.sensors,
        noise: args.noise,
        methods,
        paired,
        physics: args.physics,
        samples: args.samples,
        batch_cases: args.batch_cases,
        seed: args.seed,
        validation: args.validation,
        runs,
        force: args.force,
        data: args.data,
        panels: args.panels,
        out: args.out.clone(),
        artifact: Some(
            args.artifact.clone().unwrap_or_else(|| crate::output::shipped_artifact(args.pde.name(), args.res)),
        ),
        progress,
    };
    on_backend!(args.backend.backend, args.backend.gpu, |B, device| run_eval::<Autodiff<B>>(&opts, &device)?);
    println!("wrote {}", args.out.join("results.md").display());
    Ok(())
}

/// `ddis device`: one reconstruction on the firmware (QEMU or a board).
pub(crate) fn device_cmd(args: DeviceArgs, progress: bool) -> Result<()> {
    use crate::board::{DeviceOptions, QemuOptions, Transport, device_reconstruct};
    let transport = match args.serial {
        Some(port) => Transport::Serial { port, baud: args.baud },
        None => Transport::Qemu(QemuOptions { machine: args.machine, elf: args.elf, ..QemuOptions::default() }),
    };
    let opts = DeviceOptions {
        transport,
        obs: args.obs,
        noise: args.noise,
        out: args.out.clone(),
        force: args.force,
        seed: args.seed,
        samples: args.samples,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
    };
    if progress {
        eprintln!("reconstructing on the device (seconds per sample under QEMU; Ctrl-C cancels it on the device) ...");
    }
    let r = device_reconstruct(&opts)?;
    let ins = r.run.report.instructions;
    println!(
        "device: {0}x{0} field in {1:.1} s wall; {ins} instructions = {2:.1} s at 168 MHz (an estimate from instructions, not cycles); stack high-water {3} B of {4} B -> {5}",
        r.info.n,
        r.seconds,
        ins as f64 / 168e6,
        r.info.stack_high_water,
        r.info.stack_bytes,
        args.out.display()
    );
    Ok(())
}
