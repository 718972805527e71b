//! Reconstruction and evaluation on the host: `ddis reconstruct` (one set
//! of readings -> posterior mean, std and a panel) and `ddis eval` (many
//! test cases x methods x paired fractions -> results.md / results.csv /
//! panels), docs/science.md sections 2-5.
//!
//! This module owns the plumbing between trained runs and the samplers in
//! `sample`: finding runs, building guides, batching cases, turning
//! posterior samples into estimates and metrics. The samplers know nothing
//! about files; the metrics know nothing about samplers.
//!
//! Layout: [`method`] (methods, models, batching cases through the
//! samplers), [`case`] (per-case estimate, metrics, panel), [`runs`]
//! (finding trained runs), [`report`] (results.md / .csv / .json),
//! [`reconstruct`] (`ddis reconstruct`); this file runs `ddis eval`.

mod case;
mod method;
mod options;
mod reconstruct;
mod report;
mod runs;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::AutodiffBackend;

use crate::data::{Dataset, progress_bar};
use crate::observe::{Observations, random_interior_nodes};
use crate::pde::PdeConfig;
use crate::sample::SampleStats;
use crate::train::diffusion::{DiffusionKind, load_diffusion};
use crate::train::operator::load_operator;
use crate::train::run::Split;

pub use case::*;
pub use method::*;
pub use options::*;
pub use reconstruct::*;
use report::write_report;
pub use runs::*;

/// Per-case posterior mean and standard deviation.
pub type MeanStd = (Vec<f32>, Vec<f32>);

/// The device runtime on every case: case `k` uses seed `seed + k`.
/// Returns per-case (mean, std), wall seconds and the summed counters.
fn device_cases(
    bytes: &[u8],
    cases: &[Observations],
    samples: usize,
    seed: u64,
    progress: bool,
) -> Result<(Vec<MeanStd>, f64, SampleStats)> {
    let bar = progress_bar(cases.len() as u64, progress, "device");
    let start = Instant::now();
    let mut stats = SampleStats::default();
    let mut out = Vec::with_capacity(cases.len());
    for (k, c) in cases.iter().enumerate() {
        let p = crate::export::runtime_posterior(bytes, c, samples, seed.wrapping_add(k as u64))?;
        stats.denoiser_calls += p.stats.denoiser_calls as usize;
        stats.guide_calls += p.stats.guide_calls as usize;
        stats.clamped += p.stats.clamped as usize;
        stats.non_finite += p.stats.non_finite as usize;
        out.push((p.mean, p.std));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((out, start.elapsed().as_secs_f64(), stats))
}

/// The exact Gaussian posterior on every case (Poisson, Helmholtz; see
/// [`crate::exact`]): `samples` Matheron draws per case, and the closed-form
/// per-case mean and std. Case `k` draws from stream `k` of `seed`. The
/// seconds in the returned posterior cover both.
pub fn exact_cases(
    pde: &PdeConfig,
    cases: &[Observations],
    samples: usize,
    seed: u64,
    progress: bool,
) -> Result<(Posterior, Vec<MeanStd>)> {
    ensure!(!cases.is_empty(), "no cases to reconstruct");
    ensure!(samples >= 1, "--samples must be >= 1");
    let n = cases[0].n;
    let mut model = crate::exact::LinearGaussian::new(pde, n)?;
    let bar = progress_bar(cases.len() as u64, progress, Method::Exact.name());
    let start = Instant::now();
    let mut fields = Vec::with_capacity(cases.len() * samples * n * n);
    let mut closed = Vec::with_capacity(cases.len());
    for (k, obs) in cases.iter().enumerate() {
        let post = model.condition(obs).with_context(|| format!("exact posterior of case {k}"))?;
        let mut rng = crate::data::sample_rng(seed ^ 0xE8AC_7D00, k as u64);
        for _ in 0..samples {
            fields.extend(model.sample(&post, &mut rng)?.iter().map(|&v| v as f32));
        }
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        closed.push((to_f32(post.mean()), to_f32(post.std())));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    Ok((Posterior { n, samples, fields, stats: SampleStats::default(), seconds, u_consistency: vec![] }, closed))
}

/// Runs the evaluation and writes `results.md`, `results.csv`,
/// `results.json` and panels into `opts.out`.
pub fn run_eval<AB: AutodiffBackend>(opts: &EvalOptions, device: &AB::Device) -> Result<Vec<EvalRow>> {
    ensure!(opts.cases >= 1 && opts.sensors >= 1, "--cases and --sensors must be >= 1");
    ensure!(!opts.methods.is_empty() && !opts.paired.is_empty(), "need at least one method and one paired fraction");
    let pde_name = opts.pde.name();
    if opts.methods.iter().any(|m| m.method == Method::Exact) {
        crate::exact::check_linear_gaussian(opts.pde)?;
    }
    // The exact and device methods need no trained run: without a prior
    // run they take the dataset from --data and the split from the
    // training default seed.
    let model_free = opts.methods.iter().all(|m| matches!(m.method, Method::Exact | Method::Device));
    let runs = if model_free && !opts.runs.iter().any(|r| r.is_dir()) { vec![] } else { find_runs_in(&opts.runs)? };
    let has_prior = runs.iter().any(|r| r.kind == "prior" && r.pde == pde_name && r.res == opts.res);
    let roots = opts.runs.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
    let prior = if model_free && (!has_prior || opts.data.is_some()) {
        ensure!(
            opts.data.is_some(),
            "no prior run for {pde_name} {0}x{0} under {roots}: the exact and device methods need only the dataset, so pass --data DIR (the test split then uses split seed {DEFAULT_SPLIT_SEED}, the `ddis train` default)",
            opts.res,
        );
        None
    } else {
        let path = pick_run(&runs, "prior", pde_name, opts.res, None)?;
        let (model, cfg) = load_diffusion::<AB>(&path, device)?;
        ensure!(cfg.kind == DiffusionKind::Prior, "{} is not a prior run", path.display());
        Some((path, model, cfg))
    };
    let prior_desc = match &prior {
        Some((path, _, _)) => format!("prior `{}`", path.display()),
        None => format!("no prior run (split seed {DEFAULT_SPLIT_SEED})"),
    };
    let data_dir = match (&opts.data, &prior) {
        (Some(d), _) => d.clone(),
        (None, Some((_, _, cfg))) => PathBuf::from(&cfg.data),
        (None, None) => unreachable!("checked above"),
    };
    let data = Dataset::load(&data_dir)?;
    ensure!(
        data.res() == opts.res,
        "{} is {}x{}, not {}x{}",
        data_dir.display(),
        data.res(),
        data.res(),
        opts.res,
        opts.res
    );
    ensure!(
        data.meta.pde.kind == opts.pde,
        "{} holds {} data, not {pde_name}",
        data_dir.display(),
        data.meta.pde.kind.name()
    );
    let pde = data.meta.pde;
    let split_seed = prior.as_ref().map_or(DEFAULT_SPLIT_SEED, |(_, _, cfg)| cfg.split_seed);
    let split = Split::new(data.len(), split_seed, 1.0)?;
    let pool = if opts.validation { &split.val } else { &split.test };
    ensure!(opts.cases <= pool.len(), "--cases {} exceeds the {} cases of the split", opts.cases, pool.len());
    let idx = &pool[..opts.cases];
    let n = opts.res;
    let per = n * n;

    // Sensors and readings: case k draws from stream k of the seed.
    let mut cases = vec![];
    for (k, &i) in idx.iter().enumerate() {
        let mut rng = crate::data::sample_rng(opts.seed ^ 0x0B5E_5E75, k as u64);
        let nodes = random_interior_nodes(n, opts.sensors, &mut rng)?;
        cases.push(Observations::measure(n, nodes, &data.u[i * per..(i + 1) * per], opts.noise, &mut rng)?);
    }
    let record = serde_json::json!({
        "command": "eval",
        "ddis_version": env!("CARGO_PKG_VERSION"),
        "problem": pde_name,
        "grid": n,
        "data": data_dir.display().to_string(),
        "split": if opts.validation { "validation" } else { "test" },
        "cases": opts.cases,
        "sensors": opts.sensors,
        "noise_std": opts.noise,
        "samples": opts.samples,
        "seed": opts.seed,
        "methods": opts.methods.iter().map(|m| format!("{} ({})", m.method.name(), m.settings())).collect::<Vec<_>>(),
        "paired_fractions": opts.paired,
        "prior": prior_desc,
    });
    crate::output::fresh_dir(&opts.out, opts.force, &record)?;
    let artifact = match (&opts.artifact, opts.methods.iter().any(|m| m.method == Method::Device)) {
        (Some(p), true) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read the artifact {}", p.display()))?;
            let art = ddis_runtime::Artifact::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            ensure!(
                art.problem() == pde_name && art.n() == n,
                "{} is a {2}x{2} {1} artifact; this evaluation is {pde_name} on {n}x{n}: pass --artifact with a matching one",
                p.display(),
                art.problem(),
                art.n()
            );
            Some(bytes)
        }
        _ => None,
    };
    let mut rows = vec![];
    for &paired in &opts.paired {
        let needs_op = opts
            .methods
            .iter()
            .any(|m| !m.method.is_joint() && !matches!(m.method, Method::Device | Method::Exact | Method::Prior))
            && opts.physics == Physics::Surrogate;
        let operator = if needs_op {
            Some(load_operator::<AB>(&pick_run(&runs, "operator", pde_name, n, Some(paired))?, device)?)
        } else {
            None
        };
        let joint = if opts.methods.iter().any(|m| m.method.is_joint()) {
            Some(load_diffusion::<AB>(&pick_run(&runs, "joint", pde_name, n, Some(paired))?, device)?)
        } else {
            None
        };
        let models = Models { prior: prior.as_ref().map(|(_, m, c)| (m.clone(), c.clone())), operator, joint };
        for (m, spec) in opts.methods.iter().enumerate() {
            // Each method gives one row, the exact method two:
            // (name, settings, per-case mean and std, seconds, counters).
            let mut outputs = vec![];
            if matches!(spec.method, Method::Device | Method::Exact) && Some(&paired) != opts.paired.first() {
                continue; // no paired model involved: one row is enough
            }
            if spec.method == Method::Exact {
                let (post, closed) = exact_cases(&pde, &cases, opts.samples, opts.seed, opts.progress)?;
                let sampled = (0..cases.len()).map(|k| post.mean_std(k)).collect::<Vec<_>>();
                let settings = format!("exact Gaussian posterior, mean of {} Matheron draws", opts.samples);
                outputs.push((spec.method.name().to_string(), settings, sampled, post.seconds, post.stats, vec![]));
                let settings = "exact Gaussian posterior, closed-form mean and std (infinitely many draws)".to_string();
                outputs.push((
                    "exact-mean".to_string(),
                    settings,
                    closed,
                    post.seconds,
                    SampleStats::default(),
                    vec![],
                ));
            } else if spec.method == Method::Device {
                let bytes = artifact.as_ref().context("the device method needs --artifact")?;
                let edited;
                let bytes = match spec.device_noise_width {
                    Some(w) => {
                        edited = crate::export::with_noise_width(bytes, w)?;
                        &edited
                    }
                    None => bytes,
                };
                let (per_case, seconds, stats) = device_cases(bytes, &cases, opts.samples, opts.seed, opts.progress)?;
                outputs.push((spec.method.name().to_string(), spec.settings(), per_case, seconds, stats, vec![]));
            } else {
                let post = reconstruct_cases(
                    spec,
                    opts.physics,
                    &models,
                    &pde,
                    &cases,
                    opts.samples,
                    opts.batch_cases,
                    opts.seed,
                    opts.progress,
                    device,
                )?;
                let per_case = (0..cases.len()).map(|k| post.mean_std(k)).collect::<Vec<_>>();
                outputs.push((
                    spec.method.name().to_string(),
                    spec.settings(),
                    per_case,
                    post.seconds,
                    post.stats,
                    post.u_consistency,
                ));
            }
            for (name, settings, per_case, seconds, stats, u_consistency) in outputs {
                let mut metrics_rows = vec![];
                for (k, &i) in idx.iter().enumerate() {
                    let truth = &data.a[i * per..(i + 1) * per];
                    let (mean, std) = &per_case[k];
                    metrics_rows.push(case_metrics(&pde, truth, mean, std, n)?);
                    if k < opts.panels {
                        let file = format!("m{m}-{name}-p{paired}-case{k}.png");
                        write_panel(&opts.out.join(file), n, Some(truth), &cases[k], mean, std)?;
                    }
                }
                let row = EvalRow {
                    method: name,
                    settings,
                    paired,
                    cases: metrics_rows,
                    seconds_per_case: seconds / opts.cases as f64,
                    stats,
                    u_consistency,
                };
                let (l2, l2_se) = row.summary(|c| c.rel_l2);
                if opts.progress {
                    eprintln!(
                        "{} (paired {paired}, {}): rel. L2 {:.2} % +- {:.2} %, {:.2} s/case",
                        row.method,
                        row.settings,
                        100.0 * l2,
                        100.0 * l2_se,
                        row.seconds_per_case
                    );
                    if row.stats.widened > 0 {
                        eprintln!(
                            "  {} Gauss-Newton sensor-space solves needed a wider nugget than tau^2 (f32 round-off: a width tight for this many readings)",
                            row.stats.widened
                        );
                    }
                }
                rows.push(row);
                write_report(opts, &rows, &prior_desc, &data_dir)?;
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pde::PdeKind;
    use crate::sample::{DapsConfig, DpsConfig};

    fn exact_eval_options(pde: PdeKind, root: &Path, cases: usize) -> EvalOptions {
        let (d, p) = (DapsConfig::full(), DpsConfig::default_for_budget(100));
        EvalOptions {
            pde,
            res: 16,
            cases,
            sensors: 10,
            noise: 0.0,
            methods: vec![MethodSpec::parse("exact", &d, &p).unwrap()],
            paired: vec![1.0, 0.1],
            physics: Physics::Surrogate,
            samples: 2,
            batch_cases: 4,
            seed: 0,
            validation: false,
            runs: vec![root.join("no-runs")],
            force: false,
            data: Some(root.join("data")),
            panels: 0,
            out: root.join("out"),
            artifact: None,
            progress: false,
        }
    }

    #[test]
    fn exact_method_runs_without_models_and_beats_the_prior_mean() {
        // The prior mean of the GRF source is the zero field, whose rel. L2 is 1.
        const PRIOR_MEAN_REL_L2: f64 = 1.0;
        let root = tempfile::tempdir().unwrap();
        let gen_opts = crate::data::GenOptions {
            pde: PdeConfig::for_kind(PdeKind::Poisson),
            res: 16,
            count: 40,
            seed: 1,
            force: false,
            progress: false,
        };
        crate::data::generate_dataset(&gen_opts, &root.path().join("data")).unwrap();
        let opts = exact_eval_options(PdeKind::Poisson, root.path(), 4);
        let rows = run_eval::<crate::train::backend::CpuAutodiff>(&opts, &Default::default()).unwrap();
        // One paired fraction's worth: exact draws and the closed form.
        let names: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(names, ["exact", "exact-mean"]);
        for row in &rows {
            assert_eq!(row.cases.len(), 4);
            for c in &row.cases {
                assert!(c.rel_l2.is_finite() && c.spectral_geo.is_finite() && c.calibration.is_finite(), "{c:?}");
            }
            let l2 = row.summary(|c| c.rel_l2).0;
            assert!(l2 < PRIOR_MEAN_REL_L2, "{}: rel. L2 {l2} is no better than the prior mean", row.method);
        }
        let md = std::fs::read_to_string(root.path().join("out/results.md")).unwrap();
        assert!(md.contains("| exact-mean |") && md.contains("no prior run"), "{md}");
    }

    #[test]
    fn exact_method_refuses_darcy_by_name() {
        let root = tempfile::tempdir().unwrap();
        let opts = exact_eval_options(PdeKind::Darcy, root.path(), 1);
        let e = run_eval::<crate::train::backend::CpuAutodiff>(&opts, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("darcy") && e.contains("exact posterior"), "{e}");
    }
}
