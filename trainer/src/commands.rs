//! What each `ddis` command does, one function per command: the glue
//! between the parsed arguments (`crate::cli`) and the library (data,
//! training, samplers, export, the board link). It owns the command-line
//! conventions the library does not know: the shipped models' defaults,
//! staged output folders with their `run.json`, warnings and the one-line
//! summaries on stdout.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;

use crate::cli::{
    Arch, Cli, Command, CommonTrainArgs, DataCommand, DemoArgs, DeviceArgs, EvalArgs, EvalOperatorArgs, ExportArgs,
    GenArgs, ImportArgs, InspectArgs, ReconstructArgs, SamplerKind, SolveArgs, TrainCommand, TrainOperatorArgs,
};
use crate::data::{self, GenOptions};
use crate::eval::{EvalOptions, Method, MethodSpec, Physics, ReconstructOptions, run_eval, run_reconstruct};
use crate::grf::GrfConfig;
use crate::pde::PdeKind;
use crate::train::backend::{Cpu, on_backend};
use crate::train::diffusion::{DiffusionKind, DiffusionOptions, train_diffusion};
use crate::train::operator::{OperatorOptions, OperatorSummary, train_operator};

pub(crate) fn read_artifact(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the artifact {}: {e} (the shipped ones are in models/; `ddis export` writes new ones)",
            path.display()
        )
    })
}

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

pub(crate) fn train_diffusion_cmd(
    kind: DiffusionKind,
    c: &CommonTrainArgs,
    arch: Arch,
    paired_fraction: f64,
    stat_samples: usize,
    progress: bool,
) -> Result<()> {
    let opts = DiffusionOptions {
        kind,
        data: c.data.clone(),
        out: c.out.clone(),
        paired_fraction,
        split_seed: c.split_seed,
        model: c.edm_config(arch, kind.channels())?,
        train: c.train_config(),
        stat_samples,
        session: c.session(progress),
    };
    let s = on_backend!(c.backend.backend, c.backend.gpu, |B, device| train_diffusion::<Autodiff<B>>(&opts, &device)?);
    let phase = match (s.high_phase_fraction_samples, s.high_phase_fraction_data) {
        (Some(a), Some(b)) => format!(", high phase on {:.1} % of nodes (data {:.1} %)", 100.0 * a, 100.0 * b),
        _ => String::new(),
    };
    println!(
        "{kind:?}: {} parameters, {} samples, {:.0} s training; {} unconditional samples: mean-spectrum error {:.3} (geometric) / {:.3} (arithmetic){phase} -> {}",
        s.params,
        s.samples,
        s.train_seconds,
        s.stat_samples,
        s.mean_spectrum_error_geometric,
        s.mean_spectrum_error_arithmetic,
        c.out.display()
    );
    Ok(())
}

/// `ddis export`: the device artifact from a prior run and a forward model.
pub(crate) fn export_cmd(args: &ExportArgs) -> Result<()> {
    let (daps, _) = args.sampler_args.configs(true)?;
    anyhow::ensure!(args.force || !args.out.exists(), "{} exists; pass --force to replace it", args.out.display());
    let device = Default::default();
    let prior_dir = match &args.prior {
        Some(p) => p.clone(),
        None => shipped_run(args.pde, 32, "prior")?,
    };
    let (prior, cfg) = crate::train::diffusion::load_diffusion::<Cpu>(&prior_dir, &device)?;
    let prior = prior.into_fno().with_context(|| format!("cannot export {}", prior_dir.display()))?;
    let problem = cfg.data_meta.pde.kind;
    let operator_dir = match (&args.operator, args.physics) {
        (Some(o), _) => Some(o.clone()),
        (None, Physics::Surrogate) => {
            Some(shipped_run(problem, cfg.data_meta.res, "op-p100").context("--physics surrogate needs --operator")?)
        }
        (None, Physics::Solver) => None,
    };
    let operator = match &operator_dir {
        Some(dir) => {
            let (operator, op_cfg) = crate::train::operator::load_operator_run::<Cpu>(dir, &device)?;
            crate::eval::ensure_same_problem(
                ("the prior", &prior_dir, &cfg.data_meta),
                ("the surrogate", dir, &op_cfg.data_meta),
            )?;
            Some(operator)
        }
        None => None,
    };
    // The readings' range (and spread) over the training data, recorded in
    // the artifact so hosts and the device can check readings against it.
    let stats = match crate::data::solution_stats(std::path::Path::new(&cfg.data)) {
        Ok(s) => s,
        Err(e) => {
            let Some(op) = &operator else {
                return Err(e.context(format!(
                    "the prior's dataset {} is needed for the readings' range (or pass --operator)",
                    cfg.data
                )));
            };
            let nz = &op.normalization;
            crate::output::warn(format_args!(
                "cannot read the prior's dataset {} ({e:#}); the readings' range is taken as the surrogate's u mean +- 6 std",
                cfg.data
            ));
            crate::data::SolutionStats {
                spread: nz.u_std,
                min: nz.u_mean - 6.0 * nz.u_std,
                max: nz.u_mean + 6.0 * nz.u_std,
            }
        }
    };
    let forward = match (args.physics, &operator) {
        (Physics::Surrogate, Some(op)) => crate::export::ForwardModel::Surrogate(op),
        (Physics::Surrogate, None) => anyhow::bail!("--physics surrogate needs --operator"),
        (Physics::Solver, op) => {
            let u_floor = op.as_ref().map(|op| op.normalization.u_std).unwrap_or(stats.spread);
            crate::export::ForwardModel::Solver { pde: cfg.data_meta.pde, u_floor }
        }
    };
    let step = crate::export::DeviceStep {
        step: args.step,
        max_sensors: args.max_sensors,
        r_scale: args.r_scale,
        noise_width: args.noise_width,
    };
    let n = args.res.unwrap_or(cfg.data_meta.res);
    let about = crate::export::About {
        problem: problem.name(),
        data: crate::export::data_params(&cfg.data_meta.pde, (stats.min, stats.max)),
    };
    let bytes = crate::export::build_artifact_with(&prior, forward, &daps, &step, &about, n, args.quant)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::atomic::write(&args.out, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    print!("{}", crate::export::inspect(&bytes)?);
    for w in crate::export::budget_warnings(&bytes)? {
        crate::output::warn(w);
    }
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}

/// The shipped host run `models/host/<pde><res>-<name>` (e.g. `prior`,
/// `op-p100`), or an error saying how to get one.
pub(crate) fn shipped_run(pde: PdeKind, res: usize, name: &str) -> Result<PathBuf> {
    let dir = crate::output::shipped_runs().join(format!("{}{res}-{name}", pde.name()));
    anyhow::ensure!(
        dir.join("model.bin").is_file(),
        "no shipped {name} model for {pde} {res}x{res} at {}: pass a run you trained (`ddis train ...`)",
        dir.display()
    );
    Ok(dir)
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
        method: MethodSpec { method, daps, dps, device_noise_width: None },
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

/// `ddis data gen`.
pub(crate) fn data_gen(args: &GenArgs, progress: bool) -> Result<()> {
    let grf = GrfConfig { alpha: args.alpha, tau: args.tau };
    let opts = GenOptions {
        pde: args.pde.config(grf),
        res: args.res,
        count: args.count,
        seed: args.seed,
        force: args.force,
        progress,
    };
    let t0 = std::time::Instant::now();
    let meta = data::generate_dataset(&opts, &args.out)?;
    eprintln!(
        "wrote {} {} samples at {}x{} to {} in {:.1} s",
        meta.count,
        meta.pde.kind,
        meta.res,
        meta.res,
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `ddis data import`.
pub(crate) fn data_import(args: ImportArgs, progress: bool) -> Result<()> {
    let opts = data::ImportOptions {
        pde: args.pde.config(GrfConfig::default()),
        fields: args.fields,
        solutions: args.solutions,
        force: args.force,
        progress,
    };
    let meta = data::import_dataset(&opts, &args.out)?;
    let phases = if meta.pde.kind == PdeKind::Darcy {
        format!(" (phases a = {} / {})", meta.pde.darcy.a_low, meta.pde.darcy.a_high)
    } else {
        String::new()
    };
    eprintln!(
        "wrote {} {} samples at {}x{}{phases} to {}",
        meta.count,
        meta.pde.kind,
        meta.res,
        meta.res,
        args.out.display()
    );
    Ok(())
}

/// `ddis data solve`.
pub(crate) fn data_solve(args: &SolveArgs, progress: bool) -> Result<()> {
    let cfg = args.pde.config(GrfConfig::default());
    data::solve_file(&cfg, &args.field, &args.out, progress)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `ddis train operator`.
pub(crate) fn train_operator_cmd(args: &TrainOperatorArgs, progress: bool) -> Result<()> {
    let c = &args.common;
    let opts = OperatorOptions {
        data: c.data.clone(),
        out: c.out.clone(),
        paired_fraction: args.paired_fraction,
        split_seed: c.split_seed,
        model: c.fno_config()?,
        train: c.train_config(),
        session: c.session(progress),
    };
    let s: OperatorSummary =
        on_backend!(c.backend.backend, c.backend.gpu, |B, device| train_operator::<Autodiff<B>>(&opts, &device)?);
    println!(
        "operator: {} parameters, {} pairs, test relative L2 {:.4} +- {:.4}, {:.0} s training -> {}",
        s.params,
        s.pairs,
        s.test_rel_l2,
        s.test_rel_l2_stderr,
        s.train_seconds,
        c.out.display()
    );
    Ok(())
}

/// `ddis eval-operator`: refuses a dataset of another problem.
pub(crate) fn eval_operator(args: &EvalOperatorArgs) -> Result<()> {
    let cfg: crate::train::operator::OperatorRunConfig =
        serde_json::from_value(crate::train::run::RunDir::read_config(&args.operator)?)
            .with_context(|| format!("{} is not an operator run", args.operator.display()))?;
    let meta = crate::data::DatasetMeta::load(&args.data)?;
    crate::eval::ensure_same_problem(
        ("the surrogate", &args.operator, &cfg.data_meta),
        ("the dataset", &args.data, &meta),
    )?;
    let split = if args.test_split { Some(crate::train::run::RunDir::read_split(&args.operator)?) } else { None };
    let samples = match &split {
        Some(split) => {
            anyhow::ensure!(
                meta.count == cfg.data_meta.count && meta.res == cfg.data_meta.res,
                "--test-split: {} is not the run's dataset ({} samples at {}x{}; the run's has {} at {}x{})",
                args.data.display(),
                meta.count,
                meta.res,
                meta.res,
                cfg.data_meta.count,
                cfg.data_meta.res,
                cfg.data_meta.res
            );
            Some(split.test.as_slice())
        }
        None => None,
    };
    let (mean, stderr, count) = on_backend!(args.backend.backend, args.backend.gpu, |B, device| {
        crate::train::operator::eval_operator::<B>(&args.operator, &args.data, samples, &device)?
    });
    let which = if args.test_split { "test samples" } else { "samples" };
    println!("relative L2 {mean:.4} +- {stderr:.4} over {count} {which} of {}", args.data.display());
    Ok(())
}

/// `ddis inspect`.
pub(crate) fn inspect(args: &InspectArgs) -> Result<()> {
    let bytes = read_artifact(&args.artifact)?;
    print!("{}", crate::export::inspect(&bytes)?);
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        anyhow::ensure!(threads >= 1, "--threads must be at least 1");
        // burn-ndarray's matrix products run on matrixmultiply's own pool,
        // which ignores rayon and reads this variable once, at first use.
        // SAFETY: called before any other thread of ours exists or reads
        // the environment.
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", threads.to_string()) };
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    let progress = !cli.quiet;
    match cli.command {
        Command::Data(DataCommand::Gen(args)) => data_gen(&args, progress),
        Command::Data(DataCommand::Import(args)) => data_import(args, progress),
        Command::Data(DataCommand::Solve(args)) => data_solve(&args, progress),
        Command::Train(TrainCommand::Operator(args)) => train_operator_cmd(&args, progress),
        Command::Train(TrainCommand::Prior(args)) => {
            train_diffusion_cmd(DiffusionKind::Prior, &args.common, args.arch, 1.0, args.stat_samples, progress)
        }
        Command::Train(TrainCommand::Joint(args)) => {
            train_diffusion_cmd(DiffusionKind::Joint, &args.common, args.arch, args.paired_fraction, 64, progress)
        }
        Command::EvalOperator(args) => eval_operator(&args),
        Command::Reconstruct(args) if args.artifact.is_some() => reconstruct_artifact_cmd(&args),
        Command::Reconstruct(args) => reconstruct_cmd(args, progress),
        Command::Eval(args) => eval_cmd(args, progress),
        Command::Export(args) => export_cmd(&args),
        Command::Inspect(args) => inspect(&args),
        Command::Demo(args) => demo(&args, progress),
        Command::Device(args) => device_cmd(args, progress),
    }
}
