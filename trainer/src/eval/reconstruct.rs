//! `ddis reconstruct` on the host samplers: one set of readings -> posterior
//! samples, plus the synthetic cases the demo and the tests draw.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::eval::case::write_panel;
use crate::eval::method::{MethodSpec, Models, Physics, Posterior, reconstruct_cases};
use crate::eval::runs::ensure_same_problem;
use crate::model::fno::Fno;
use crate::observe::{Observations, random_interior_nodes};
use crate::pde::PdeConfig;
use crate::train::diffusion::load_diffusion;
use crate::train::operator::load_operator_run;

/// `ddis reconstruct` settings.
#[derive(Clone, Debug)]
pub struct ReconstructOptions {
    /// Prior run.
    pub prior: Option<PathBuf>,
    /// Operator run.
    pub operator: Option<PathBuf>,
    /// Joint run (joint methods).
    pub joint: Option<PathBuf>,
    /// Readings (CSV or npy).
    pub obs: PathBuf,
    /// Reading noise standard deviation.
    pub noise: f64,
    /// Method and settings.
    pub method: MethodSpec,
    /// Physics.
    pub physics: Physics,
    /// Posterior samples.
    pub samples: usize,
    /// Seed.
    pub seed: u64,
    /// Output folder.
    pub out: PathBuf,
    /// Replace `out` even when ddis did not write it.
    pub force: bool,
    /// Progress.
    pub progress: bool,
}

/// Reconstructs one field from a readings file; writes `mean.npy`,
/// `std.npy`, `samples.npy`, `readings.csv`, `panel.png` and `run.json`
/// (models with their hashes, settings, seed, timings, sampler counters)
/// into a fresh `opts.out`. Returns the posterior.
pub fn run_reconstruct<AB: AutodiffBackend>(opts: &ReconstructOptions, device: &AB::Device) -> Result<Posterior> {
    let t_load = std::time::Instant::now();
    let prior = opts.prior.as_ref().map(|p| load_diffusion::<AB>(p, device)).transpose()?;
    let joint = opts.joint.as_ref().map(|p| load_diffusion::<AB>(p, device)).transpose()?;
    let operator = opts.operator.as_ref().map(|p| load_operator_run::<AB>(p, device)).transpose()?;
    if let (Some((_, pc)), Some((_, oc)), Some(pp), Some(op)) = (&prior, &operator, &opts.prior, &opts.operator) {
        ensure_same_problem(("the prior", pp, &pc.data_meta), ("the surrogate", op, &oc.data_meta))?;
    }
    let model_cfg = if opts.method.method.is_joint() { &joint } else { &prior };
    let (_, cfg) = model_cfg.as_ref().with_context(|| {
        format!(
            "{} needs {}",
            opts.method.method.name(),
            if opts.method.method.is_joint() { "--joint RUN" } else { "--prior RUN" }
        )
    })?;
    let n = cfg.data_meta.res;
    let pde = cfg.data_meta.pde;
    let obs = Observations::load(&opts.obs, n, opts.noise)?;
    let range = training_range(&cfg.data, operator.as_ref().map(|(op, _)| op));
    for w in obs.warnings(range) {
        crate::output::warn(w);
    }
    let out = crate::output::Staged::new(&opts.out, opts.force)?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    let models = Models { prior, operator: operator.map(|(op, _)| op), joint };
    let post = reconstruct_cases(
        &opts.method,
        opts.physics,
        &models,
        &pde,
        std::slice::from_ref(&obs),
        opts.samples,
        1,
        opts.seed,
        opts.progress,
        device,
    )?;
    if post.stats.clamped > 0 {
        crate::output::warn(format_args!(
            "the sampler's safety clamp changed {} node values: the posterior may be distorted (a smaller step, or another schedule)",
            post.stats.clamped
        ));
    }
    let (mean, std) = post.mean_std(0);
    crate::npy::write(&out.join("mean.npy"), &[n, n], &mean)?;
    crate::npy::write(&out.join("std.npy"), &[n, n], &std)?;
    crate::npy::write(&out.join("samples.npy"), &[post.samples, n, n], &post.fields)?;
    obs.write_csv(&out.join("readings.csv"))?;
    write_panel(&out.join("panel.png"), n, None, &obs, &mean, &std)?;
    let mut models_json = serde_json::Map::new();
    for (name, path) in [("prior", &opts.prior), ("operator", &opts.operator), ("joint", &opts.joint)] {
        if let Some(p) = path {
            models_json.insert(name.into(), crate::output::model_entry(p)?);
        }
    }
    let record = serde_json::json!({
        "command": "reconstruct",
        "ddis_version": env!("CARGO_PKG_VERSION"),
        "models": models_json,
        "problem": pde.kind.name(),
        "grid": n,
        "readings": { "file": opts.obs.display().to_string(), "count": obs.len(), "noise_std": opts.noise },
        "method": opts.method.method.name(),
        "physics": format!("{:?}", opts.physics).to_lowercase(),
        "daps": serde_json::to_value(&opts.method.daps)?,
        "dps": serde_json::to_value(&opts.method.dps)?,
        "samples": opts.samples,
        "seed": opts.seed,
        "seconds": { "load": load_seconds, "sampler": post.seconds },
        "sampler": {
            "denoiser_calls": post.stats.denoiser_calls,
            "denoiser_vjps": post.stats.denoiser_vjps,
            "guide_calls": post.stats.guide_calls,
            "clamped": post.stats.clamped,
            "non_finite": post.stats.non_finite,
        },
    });
    out.commit(&record)?;
    Ok(post)
}

/// The solution range of a model's training data, for the readings'
/// sanity check: from the dataset when it is on disk, else the surrogate's
/// `u` mean +- 6 std, else unknown.
pub fn training_range<B: burn::tensor::backend::Backend>(data: &str, operator: Option<&Fno<B>>) -> Option<(f64, f64)> {
    match crate::data::solution_range(Path::new(data)) {
        Ok(range) => Some(range),
        Err(_) => operator.map(|op| {
            let nz = &op.normalization;
            (nz.u_mean - 6.0 * nz.u_std, nz.u_mean + 6.0 * nz.u_std)
        }),
    }
}

/// Draws a fresh ground truth from the PDE's generator, solves it and reads
/// `sensors` random interior nodes: the demo's and the tests' source of cases.
pub fn synthetic_case(
    pde: &PdeConfig,
    n: usize,
    sensors: usize,
    noise: f64,
    seed: u64,
) -> Result<(Vec<f32>, Observations)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut solver = pde.solver(n)?;
    let grf = pde.grf_sampler(n)?;
    let input = solver.sample_input(&grf, &mut rng)?;
    let u: Vec<f32> = solver.solve(&input)?.iter().map(|&v| v as f32).collect();
    let nodes = random_interior_nodes(n, sensors, &mut rng)?;
    let obs = Observations::measure(n, nodes, &u, noise, &mut rng)?;
    Ok((input.iter().map(|&v| v as f32).collect(), obs))
}
