//! Reconstruction and evaluation on the host: `ddis reconstruct` (one set
//! of readings -> posterior mean, std and a panel) and `ddis eval` (many
//! test cases x methods x paired fractions -> results.md / results.csv /
//! panels), docs/science.md sections 2-5.
//!
//! This module owns the plumbing between trained runs and the samplers in
//! `sample`: finding runs, building guides, batching cases, turning
//! posterior samples into estimates and metrics. The samplers know nothing
//! about files; the metrics know nothing about samplers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Dataset, progress_bar};
use crate::metrics;
use crate::model::denoiser::EdmModel;
use crate::model::fno::Fno;
use crate::observe::{Observations, random_interior_nodes};
use crate::pde::{PdeConfig, PdeKind, Solver};
use crate::sample::{
    DapsConfig, DpsConfig, JointGuide, Noise, ObservationBatch, SampleStats, SolverGuide, SurrogateGuide, daps_sample,
    dps_sample,
};
use crate::train::diffusion::{DiffusionKind, DiffusionRunConfig, load_diffusion};
use crate::train::operator::{load_operator, load_operator_run};
use crate::train::run::{RunDir, Split};

/// Which sampler on which model pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Method {
    /// DDIS: DAPS on the prior, guided through the surrogate or the solver.
    DdisDaps,
    /// DPS on the prior, guided through the surrogate or the solver.
    DdisDps,
    /// DAPS on the joint `(a, u)` model, loss on the `u` channel.
    JointDaps,
    /// DPS on the joint model (DiffusionPDE).
    JointDps,
    /// The device runtime (`ddis-runtime`) on an exported artifact, with
    /// the artifact's own surrogate and schedule (`--artifact`).
    Device,
    /// The exact Gaussian posterior (Poisson, Helmholtz): Matheron draws
    /// (row `exact`) and the closed-form mean and std (row `exact-mean`).
    /// Needs no trained model; see [`crate::exact`].
    Exact,
    /// The ablation without guidance: unconditional samples of the prior
    /// (EDM Heun over the DPS settings' `steps` and noise range), the
    /// readings ignored. What the prior alone knows about a case.
    Prior,
}

impl Method {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Method::DdisDaps => "ddis-daps",
            Method::DdisDps => "ddis-dps",
            Method::JointDaps => "joint-daps",
            Method::JointDps => "joint-dps",
            Method::Device => "device",
            Method::Exact => "exact",
            Method::Prior => "prior",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ddis-daps" => Method::DdisDaps,
            "ddis-dps" => Method::DdisDps,
            "joint-daps" => Method::JointDaps,
            "joint-dps" => Method::JointDps,
            "device" => Method::Device,
            "exact" => Method::Exact,
            "prior" => Method::Prior,
            _ => {
                bail!("unknown method `{s}` (valid: ddis-daps, ddis-dps, joint-daps, joint-dps, device, exact, prior)")
            }
        })
    }

    /// Whether it samples the joint model.
    pub fn is_joint(self) -> bool {
        matches!(self, Method::JointDaps | Method::JointDps)
    }
}

/// Which physics guides the decoupled methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Physics {
    /// The trained FNO surrogate.
    Surrogate,
    /// The exact finite-difference solver with its adjoint.
    Solver,
}

/// A method with its sampler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodSpec {
    /// The method.
    pub method: Method,
    /// DAPS settings (DAPS methods).
    pub daps: DapsConfig,
    /// DPS settings (DPS methods).
    pub dps: DpsConfig,
}

impl MethodSpec {
    /// Parses `METHOD[+key=value...]`, keys `schedule` (AxOxL), `tau`, `lr`,
    /// `lr_min_ratio`, `lr_cap`, `sigma_max` (DAPS), `steps`, `zeta`, `heun`
    /// (DPS; `heun=1` takes Heun steps, `0` Euler; `steps` also sets the
    /// `prior` ablation's Heun steps), on top of the given defaults.
    pub fn parse(spec: &str, daps: &DapsConfig, dps: &DpsConfig) -> Result<Self> {
        let mut parts = spec.trim().split('+');
        let method = Method::parse(parts.next().unwrap_or_default())?;
        let (mut daps, mut dps) = (daps.clone(), dps.clone());
        for kv in parts {
            let (k, v) = kv.split_once('=').with_context(|| format!("`{kv}` in `{spec}`: expected key=value"))?;
            let num = || -> Result<f64> { v.parse().with_context(|| format!("`{kv}` in `{spec}`: not a number")) };
            match k {
                "schedule" => daps = daps.with_steps(v)?,
                "tau" => daps.tau = num()?,
                "lr" => daps.lr = num()?,
                "lr_min_ratio" => daps.lr_min_ratio = num()?,
                "lr_cap" => daps.lr_cap = num()?,
                "sigma_max" => {
                    daps.sigma_max = num()?;
                    dps.sigma_max = daps.sigma_max;
                }
                "steps" => dps.steps = num()? as usize,
                "zeta" => dps.zeta = num()?,
                "heun" => dps.heun = num()? != 0.0,
                "precondition" => daps.precondition = num()? != 0.0,
                _ => bail!(
                    "unknown setting `{k}` in `{spec}` (valid: schedule, tau, lr, lr_min_ratio, lr_cap, sigma_max, precondition, steps, zeta, heun)"
                ),
            }
        }
        daps.validate()?;
        dps.validate()?;
        Ok(Self { method, daps, dps })
    }

    /// A short description of the settings that matter for this method.
    pub fn settings(&self) -> String {
        match self.method {
            Method::DdisDaps | Method::JointDaps => {
                let d = &self.daps;
                let pre = if d.precondition { " precond." } else { "" };
                format!("DAPS {} tau={} lr={} s_max={}{pre}", d.label(), d.tau, d.lr, d.sigma_max)
            }
            Method::DdisDps | Method::JointDps => {
                let kind = if self.dps.heun { " Heun" } else { "" };
                format!("DPS {}{kind} steps zeta={}", self.dps.steps, self.dps.zeta)
            }
            Method::Device => "runtime on the artifact (its forward model and schedule)".to_string(),
            Method::Exact => "exact Gaussian posterior, Matheron draws".to_string(),
            Method::Prior => format!("no guidance: prior samples, {} Heun steps", self.dps.steps),
        }
    }
}

/// The trained runs a reconstruction may use.
pub struct Models<AB: AutodiffBackend> {
    /// The prior over `a` and its run config.
    pub prior: Option<(EdmModel<AB>, DiffusionRunConfig)>,
    /// The FNO surrogate.
    pub operator: Option<Fno<AB>>,
    /// The joint `(a, u)` model and its run config.
    pub joint: Option<(EdmModel<AB>, DiffusionRunConfig)>,
}

/// Posterior samples of many cases, physical units.
#[derive(Clone, Debug)]
pub struct Posterior {
    /// Nodes per side.
    pub n: usize,
    /// Samples per case.
    pub samples: usize,
    /// `[cases * samples, n * n]`, case-major.
    pub fields: Vec<f32>,
    /// What the sampler did.
    pub stats: SampleStats,
    /// Wall time of the sampler, seconds.
    pub seconds: f64,
    /// Joint methods only: per chain (case-major like `fields`), the
    /// relative residual of the sampled `u` channel against the PDE solved
    /// for the sampled `a`, `||u - solve(a)|| / ||u||`
    /// ([`u_channel_consistency`]); empty for the decoupled methods, whose
    /// `u` is the physics' own by construction.
    pub u_consistency: Vec<f64>,
}

/// Floor of the Darcy coefficient, as a fraction of the low phase, applied to
/// a joint sample's `a` before [`u_channel_consistency`] solves with it (a
/// raw diffusion sample can dip below zero where the solve is undefined).
pub const CONSISTENCY_A_FLOOR: f64 = 0.1;

/// `||u - solve(a)|| / ||u||` over all nodes for one joint sample (physical
/// units). For Darcy `a` is floored at [`CONSISTENCY_A_FLOOR`] times the low
/// phase first. The joint model learns `u` as a second channel, not through
/// the PDE: this says how far its `u` is from the physics of its own `a`.
pub fn u_channel_consistency(solver: &mut Solver, pde: &PdeConfig, a: &[f32], u: &[f32]) -> Result<f64> {
    let floor = CONSISTENCY_A_FLOOR * pde.darcy.a_low;
    let input: Vec<f64> =
        a.iter().map(|&v| if pde.kind == PdeKind::Darcy { f64::from(v).max(floor) } else { f64::from(v) }).collect();
    let solved = solver.solve(&input)?;
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&s, &v) in solved.iter().zip(u) {
        let v = f64::from(v);
        diff += (v - s) * (v - s);
        norm += v * v;
    }
    Ok(if norm > 0.0 { (diff / norm).sqrt() } else { f64::NAN })
}

impl Posterior {
    /// Per-case pixelwise mean and standard deviation (`n * n` each).
    pub fn mean_std(&self, case: usize) -> (Vec<f32>, Vec<f32>) {
        let per = self.n * self.n;
        let m = self.samples;
        let block = &self.fields[case * m * per..(case + 1) * m * per];
        let mut mean = vec![0.0f64; per];
        let mut sq = vec![0.0f64; per];
        for s in block.chunks(per) {
            for ((mu, q), &v) in mean.iter_mut().zip(sq.iter_mut()).zip(s) {
                *mu += f64::from(v);
                *q += f64::from(v) * f64::from(v);
            }
        }
        let mean: Vec<f64> = mean.iter().map(|v| v / m as f64).collect();
        let std = sq.iter().zip(&mean).map(|(q, mu)| ((q / m as f64 - mu * mu).max(0.0)).sqrt() as f32).collect();
        (mean.iter().map(|&v| v as f32).collect(), std)
    }
}

/// Runs one method on `cases` (same sensor count each), `samples` chains
/// per case, in batches of `batch_cases` cases. Chain seeds depend only on
/// `seed` and the batch index.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_cases<AB: AutodiffBackend>(
    spec: &MethodSpec,
    physics: Physics,
    models: &Models<AB>,
    pde: &PdeConfig,
    cases: &[Observations],
    samples: usize,
    batch_cases: usize,
    seed: u64,
    progress: bool,
    device: &AB::Device,
) -> Result<Posterior> {
    ensure!(!cases.is_empty(), "no cases to reconstruct");
    ensure!(samples >= 1 && batch_cases >= 1, "--samples and the batch size must be >= 1");
    ensure!(
        spec.method != Method::Device,
        "the device method runs through `export::runtime_posterior`, not the host sampler"
    );
    ensure!(spec.method != Method::Exact, "the exact method runs through `exact_cases`, not the host sampler");
    let n = cases[0].n;
    let per = n * n;
    let (model, cfg) = if spec.method.is_joint() {
        models.joint.as_ref().context("this method needs a joint run (--joint)")?
    } else {
        models.prior.as_ref().context("this method needs a prior run (--prior)")?
    };
    let edm = cfg.model.clone();
    edm.denoiser.check_resolution(n)?;
    let channels = edm.denoiser.channels;
    let noise = Noise::Smooth(edm.smooth_noise(n)?);
    let a_norm = edm.normalization.channel(0);
    let bar = progress_bar(cases.len() as u64, progress, spec.method.name());
    let start = Instant::now();
    let mut fields = Vec::with_capacity(cases.len() * samples * per);
    let mut u_consistency = vec![];
    let mut solver = if spec.method.is_joint() { Some(pde.solver(n)?) } else { None };
    let mut stats = SampleStats::default();
    for (k, chunk) in cases.chunks(batch_cases).enumerate() {
        let obs = ObservationBatch::new(chunk, samples)?;
        let batch = obs.len();
        let chunk_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k as u64);
        let inner = model.valid();
        let x = match (spec.method, physics) {
            (Method::JointDaps, _) => {
                let mut g = JointGuide::new(obs, edm.normalization.channel(1));
                daps_sample(&inner, &mut g, &noise, &spec.daps, [batch, channels], chunk_seed, device)?
            }
            (Method::JointDps, _) => {
                let mut g = JointGuide::new(obs, edm.normalization.channel(1));
                dps_sample(model, &mut g, &noise, &spec.dps, [batch, channels], chunk_seed, device)?
            }
            (Method::DdisDaps, Physics::Surrogate) => {
                let fno = models.operator.clone().context("--physics surrogate needs an operator run (--operator)")?;
                let mut g = SurrogateGuide::new(fno, obs, a_norm, device)?;
                daps_sample(&inner, &mut g, &noise, &spec.daps, [batch, channels], chunk_seed, device)?
            }
            (Method::DdisDps, Physics::Surrogate) => {
                let fno = models.operator.clone().context("--physics surrogate needs an operator run (--operator)")?;
                let mut g = SurrogateGuide::new(fno, obs, a_norm, device)?;
                dps_sample(model, &mut g, &noise, &spec.dps, [batch, channels], chunk_seed, device)?
            }
            (Method::DdisDaps, Physics::Solver) => {
                let mut g = SolverGuide::new(*pde, obs, a_norm)?;
                daps_sample(&inner, &mut g, &noise, &spec.daps, [batch, channels], chunk_seed, device)?
            }
            (Method::DdisDps, Physics::Solver) => {
                let mut g = SolverGuide::new(*pde, obs, a_norm)?;
                dps_sample(model, &mut g, &noise, &spec.dps, [batch, channels], chunk_seed, device)?
            }
            (Method::Prior, _) => {
                let sigmas = crate::model::edm::karras_sigmas(
                    spec.dps.steps,
                    spec.dps.sigma_min,
                    spec.dps.sigma_max,
                    spec.dps.rho,
                );
                let mut rng = ChaCha8Rng::seed_from_u64(chunk_seed);
                let start = noise.draw::<AB::InnerBackend, _>(&mut rng, batch, channels, device);
                let x = crate::model::edm::heun_sample(|x, s| inner.denoise_at(x, s), start, &sigmas);
                (x, SampleStats { denoiser_calls: 2 * sigmas.len() - 1, ..SampleStats::default() })
            }
            (Method::Device | Method::Exact, _) => unreachable!("rejected above"),
        };
        let (x, s) = x;
        stats.denoiser_calls += s.denoiser_calls;
        stats.denoiser_vjps += s.denoiser_vjps;
        stats.guide_calls += s.guide_calls;
        stats.clamped += s.clamped;
        stats.non_finite += s.non_finite;
        let mut data: Vec<f32> = x.into_data().to_vec().map_err(|e| anyhow::anyhow!("sampler output: {e:?}"))?;
        edm.normalization.denormalize_slice(&mut data, channels, per);
        // Keep channel 0 (a) of every chain.
        fields.extend(data.chunks(per).step_by(channels).flatten().copied());
        if let Some(solver) = solver.as_mut() {
            for chain in data.chunks(channels * per) {
                u_consistency.push(u_channel_consistency(solver, pde, &chain[..per], &chain[per..2 * per])?);
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Posterior { n, samples, fields, stats, seconds: start.elapsed().as_secs_f64(), u_consistency })
}

/// The point estimate of a case: the posterior mean, thresholded to the two
/// phases for Darcy (docs/science.md section 2: the better estimate for
/// two-phase fields).
pub fn point_estimate(pde: &PdeConfig, mean: &[f32]) -> Vec<f32> {
    if pde.kind != PdeKind::Darcy {
        return mean.to_vec();
    }
    let d = &pde.darcy;
    let mid = pde.darcy.phase_midpoint();
    mean.iter().map(|&v| if f64::from(v) >= mid { d.a_high as f32 } else { d.a_low as f32 }).collect()
}

/// Refuses two models (or a model and a dataset) made for different
/// problems: another PDE, other Darcy phases or another Helmholtz `k`.
/// Each side is `(what, path, its dataset description)`; the error names
/// both and what differs.
pub fn ensure_same_problem(
    a: (&str, &Path, &crate::data::DatasetMeta),
    b: (&str, &Path, &crate::data::DatasetMeta),
) -> Result<()> {
    let (pa, pb) = (&a.2.pde, &b.2.pde);
    let differs = if pa.kind != pb.kind {
        Some(format!("{} fields vs {} fields", pa.kind, pb.kind))
    } else if pa.kind == PdeKind::Darcy && pa.darcy != pb.darcy {
        Some(format!(
            "Darcy phases {}/{} (threshold {}) vs {}/{} (threshold {})",
            pa.darcy.a_low, pa.darcy.a_high, pa.darcy.threshold, pb.darcy.a_low, pb.darcy.a_high, pb.darcy.threshold
        ))
    } else if pa.kind == PdeKind::Helmholtz && pa.helmholtz_k != pb.helmholtz_k {
        Some(format!("Helmholtz k = {} vs k = {}", pa.helmholtz_k, pb.helmholtz_k))
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some(what) => bail!(
            "{} ({}) and {} ({}) were made for different problems: {what}; use models trained for one problem",
            a.0,
            a.1.display(),
            b.0,
            b.1.display()
        ),
    }
}

/// Fraction of nodes where the truth lies within `mean +- 2 std`.
pub fn calibration(truth: &[f32], mean: &[f32], std: &[f32]) -> f64 {
    let inside = truth.iter().zip(mean).zip(std).filter(|((t, m), s)| (*t - *m).abs() <= 2.0 * **s).count();
    inside as f64 / truth.len().max(1) as f64
}

/// Metrics of one reconstructed case.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CaseMetrics {
    /// Relative L2 of the point estimate.
    pub rel_l2: f64,
    /// Spectral error, geometric mean over bins.
    pub spectral_geo: f64,
    /// Spectral error, arithmetic mean over bins.
    pub spectral_arith: f64,
    /// Darcy error rate (fraction of nodes in the wrong phase), if Darcy.
    pub error_rate: Option<f64>,
    /// Fraction of nodes with the truth inside mean +- 2 std.
    pub calibration: f64,
}

/// Metrics of one case from its posterior mean and std.
pub fn case_metrics(pde: &PdeConfig, truth: &[f32], mean: &[f32], std: &[f32], n: usize) -> Result<CaseMetrics> {
    let est = point_estimate(pde, mean);
    let (geo, arith) = metrics::spectral_error(&est, truth, n)?;
    Ok(CaseMetrics {
        rel_l2: metrics::rel_l2(&est, truth)?,
        spectral_geo: geo,
        spectral_arith: arith,
        error_rate: (pde.kind == PdeKind::Darcy)
            .then(|| metrics::darcy_error_rate(mean, truth, pde.darcy.phase_midpoint()))
            .transpose()?,
        calibration: calibration(truth, mean, std),
    })
}

/// Writes the panel of one case: truth (if known), sensor readings,
/// posterior mean, std and |error| (if the truth is known), titled, with
/// x/y axes and colour bars; truth and mean share one colour scale (see
/// [`crate::plot::posterior_panels`]).
pub fn write_panel(
    path: &Path,
    n: usize,
    truth: Option<&[f32]>,
    obs: &Observations,
    mean: &[f32],
    std: &[f32],
) -> Result<()> {
    let panels = crate::plot::posterior_panels(n, truth, obs, mean, std)?;
    crate::plot::PanelFigure::new(n, panels)?.save(path)
}

/// A run found under `--runs`.
#[derive(Clone, Debug)]
pub struct FoundRun {
    /// Its directory.
    pub path: PathBuf,
    /// `prior`, `joint` or `operator`.
    pub kind: String,
    /// PDE name.
    pub pde: String,
    /// Grid.
    pub res: usize,
    /// Paired fraction it was trained with.
    pub paired_fraction: f64,
    /// Its dataset directory.
    pub data: String,
    /// Index of the runs folder it was found in (earlier folders win).
    pub rank: usize,
}

/// The runs of every folder in `roots` that exists, in order; a folder
/// named first wins when two hold a run for the same slot. None of them
/// existing is an error naming them.
pub fn find_runs_in(roots: &[PathBuf]) -> Result<Vec<FoundRun>> {
    let mut out = vec![];
    for (rank, root) in roots.iter().enumerate().filter(|(_, r)| r.is_dir()) {
        out.extend(find_runs(root)?.into_iter().map(|r| FoundRun { rank, ..r }));
    }
    if out.is_empty() && !roots.iter().any(|r| r.is_dir()) {
        bail!(
            "none of the runs folders exists: {}",
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(out)
}

/// Every run directory directly under `root` with a readable config and a
/// trained model.
pub fn find_runs(root: &Path) -> Result<Vec<FoundRun>> {
    let mut out = vec![];
    let entries = std::fs::read_dir(root).with_context(|| format!("cannot read the runs folder {}", root.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        if !path.join("model.bin").is_file() {
            continue;
        }
        let Ok(cfg) = RunDir::read_config(&path) else { continue };
        let get = |k: &str| cfg.get(k).cloned().unwrap_or_default();
        out.push(FoundRun {
            kind: get("kind").as_str().unwrap_or_default().to_string(),
            pde: cfg.pointer("/data_meta/pde/kind").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            res: cfg.pointer("/data_meta/res").and_then(|v| v.as_u64()).unwrap_or_default() as usize,
            paired_fraction: get("paired_fraction").as_f64().unwrap_or(f64::NAN),
            data: get("data").as_str().unwrap_or_default().to_string(),
            rank: 0,
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The one run of `kind` for this PDE and grid (and paired fraction, for
/// operator and joint runs); an error lists the candidates otherwise.
pub fn pick_run(runs: &[FoundRun], kind: &str, pde: &str, res: usize, paired: Option<f64>) -> Result<PathBuf> {
    let mut hits: Vec<&FoundRun> = runs
        .iter()
        .filter(|r| r.kind == kind && r.pde == pde && r.res == res)
        .filter(|r| paired.is_none_or(|p| (r.paired_fraction - p).abs() < 1e-9))
        .collect();
    if let Some(first) = hits.iter().map(|r| r.rank).min() {
        hits.retain(|r| r.rank == first);
    }
    let what = match paired {
        Some(p) => format!("{kind} run for {pde} {res}x{res} with paired fraction {p}"),
        None => format!("{kind} run for {pde} {res}x{res}"),
    };
    match hits.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => bail!("no {what} under the runs folder; train one (`ddis train {kind} ...`) or pass its directory"),
        many => bail!(
            "several {what}: {}; pass --runs with a folder that holds only the runs to evaluate",
            many.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The split seed `ddis eval` assumes when the exact method runs without a
/// prior run to read it from: the `ddis train --split-seed` default.
pub const DEFAULT_SPLIT_SEED: u64 = 0;

/// `ddis eval` settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// PDE.
    pub pde: PdeKind,
    /// Grid.
    pub res: usize,
    /// Test (or validation) cases, the first ones of the split.
    pub cases: usize,
    /// Sensors per case.
    pub sensors: usize,
    /// Reading noise standard deviation.
    pub noise: f64,
    /// Methods with their settings.
    pub methods: Vec<MethodSpec>,
    /// Paired fractions.
    pub paired: Vec<f64>,
    /// Physics for the decoupled methods.
    pub physics: Physics,
    /// Posterior samples per case.
    pub samples: usize,
    /// Cases per sampler batch.
    pub batch_cases: usize,
    /// Seed of sensors, noise and samplers.
    pub seed: u64,
    /// Use validation cases instead of test cases (for tuning).
    pub validation: bool,
    /// Runs folders, searched in order (the first with a matching run wins).
    pub runs: Vec<PathBuf>,
    /// Replace `out` even when ddis did not write it.
    pub force: bool,
    /// Dataset override.
    pub data: Option<PathBuf>,
    /// Cases with a PNG panel per method.
    pub panels: usize,
    /// Report folder.
    pub out: PathBuf,
    /// Artifact for the `device` method.
    pub artifact: Option<PathBuf>,
    /// Show progress.
    pub progress: bool,
}

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

/// One row of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalRow {
    /// Method name.
    pub method: String,
    /// Sampler settings.
    pub settings: String,
    /// Paired fraction of the surrogate / joint model.
    pub paired: f64,
    /// Per-case metrics.
    pub cases: Vec<CaseMetrics>,
    /// Sampler wall time per case, seconds.
    pub seconds_per_case: f64,
    /// Sampler counters.
    pub stats: SampleStats,
    /// Joint methods: `||u - solve(a)|| / ||u||` of every posterior sample
    /// (see [`u_channel_consistency`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub u_consistency: Vec<f64>,
}

impl EvalRow {
    fn summary(&self, f: impl Fn(&CaseMetrics) -> f64) -> (f64, f64) {
        metrics::mean_and_stderr(&self.cases.iter().map(f).collect::<Vec<_>>())
    }
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
                }
                rows.push(row);
                write_report(opts, &rows, &prior_desc, &data_dir)?;
            }
        }
    }
    Ok(rows)
}

fn write_report(opts: &EvalOptions, rows: &[EvalRow], prior: &str, data: &Path) -> Result<()> {
    let darcy = opts.pde == PdeKind::Darcy;
    let mut md = String::new();
    let _ = writeln!(md, "# ddis eval: {} {}x{}\n", opts.pde.name(), opts.res, opts.res);
    let _ = writeln!(
        md,
        "{} {} cases of `{}`, {} sensors, reading noise {}, {} posterior samples per case, physics {}, seed {}; {}.\n",
        opts.cases,
        if opts.validation { "validation" } else { "test" },
        data.display(),
        opts.sensors,
        opts.noise,
        opts.samples,
        format!("{:?}", opts.physics).to_lowercase(),
        opts.seed,
        prior
    );
    let _ = writeln!(
        md,
        "Mean +- standard error over cases. Point estimate: the posterior mean{}. Calibration: fraction of nodes with the truth inside mean +- 2 std.\n",
        if darcy { ", thresholded at 7.5 to the two phases" } else { "" }
    );
    let _ = writeln!(
        md,
        "| method | paired | settings | rel. L2 (%) | spectral err. geo | spectral err. arith |{} calibration | s / case | clamped |",
        if darcy { " error rate (%) |" } else { "" }
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|{}---|---|---|", if darcy { "---|" } else { "" });
    let mut csv = String::from(
        "method,paired,settings,rel_l2,rel_l2_se,spectral_geo,spectral_geo_se,spectral_arith,spectral_arith_se,error_rate,error_rate_se,calibration,seconds_per_case,clamped\n",
    );
    for r in rows {
        let (l2, l2s) = r.summary(|c| c.rel_l2);
        let (g, gs) = r.summary(|c| c.spectral_geo);
        let (a, as_) = r.summary(|c| c.spectral_arith);
        let (e, es) = r.summary(|c| c.error_rate.unwrap_or(f64::NAN));
        let (cal, _) = r.summary(|c| c.calibration);
        let er = if darcy { format!(" {:.2} +- {:.2} |", 100.0 * e, 100.0 * es) } else { String::new() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} +- {:.2} | {:.3} +- {:.3} | {:.3} +- {:.3} |{er} {:.3} | {:.3} | {} |",
            r.method,
            r.paired,
            r.settings,
            100.0 * l2,
            100.0 * l2s,
            g,
            gs,
            a,
            as_,
            cal,
            r.seconds_per_case,
            r.stats.clamped
        );
        let _ = writeln!(
            csv,
            "{},{},\"{}\",{l2},{l2s},{g},{gs},{a},{as_},{},{},{cal},{},{}",
            r.method,
            r.paired,
            r.settings,
            if darcy { e.to_string() } else { String::new() },
            if darcy { es.to_string() } else { String::new() },
            r.seconds_per_case,
            r.stats.clamped
        );
    }
    // DDIS against the best joint baseline, per paired fraction.
    let mut ratios = String::new();
    for &p in &opts.paired {
        let best = |joint: bool, f: &dyn Fn(&EvalRow) -> f64| {
            rows.iter()
                // The device row runs the artifact's own surrogate whatever
                // the paired fraction: it is not a DDIS-at-`p` figure; the
                // exact rows are the reference, not a sampler.
                .filter(|r| {
                    r.paired == p
                        && r.method != Method::Device.name()
                        && !r.method.starts_with(Method::Exact.name())
                        && r.method != Method::Prior.name()
                        && r.method.starts_with("joint") == joint
                })
                .map(f)
                .fold(f64::INFINITY, f64::min)
        };
        let l2 = |r: &EvalRow| r.summary(|c| c.rel_l2).0;
        let es = |r: &EvalRow| r.summary(|c| c.spectral_geo).0;
        let (d_l2, j_l2, d_es, j_es) = (best(false, &l2), best(true, &l2), best(false, &es), best(true, &es));
        if d_l2.is_finite() && j_l2.is_finite() {
            let _ = writeln!(
                ratios,
                "- paired {p}: best DDIS host sampler rel. L2 {:.2} % vs best joint {:.2} % ({:+.0} %); spectral error {:.3} vs {:.3} ({:+.0} %)",
                100.0 * d_l2,
                100.0 * j_l2,
                100.0 * (d_l2 / j_l2 - 1.0),
                d_es,
                j_es,
                100.0 * (d_es / j_es - 1.0)
            );
        }
    }
    if rows.iter().any(|r| r.method.starts_with(Method::Exact.name())) {
        let _ = writeln!(
            md,
            "\n`exact`: the mean of {} draws of the exact Gaussian posterior, the floor a sampler with as many draws can reach; `exact-mean`: the exact posterior mean itself (infinitely many draws).",
            opts.samples
        );
    }
    let consistency: String = rows
        .iter()
        .filter(|r| !r.u_consistency.is_empty())
        .map(|r| {
            let (m, se) = metrics::mean_and_stderr(&r.u_consistency);
            format!("| {} | {} | {} | {:.2} +- {:.2} |\n", r.method, r.paired, r.settings, 100.0 * m, 100.0 * se)
        })
        .collect();
    if !consistency.is_empty() {
        let _ = writeln!(
            md,
            "\n## Joint models: consistency of the sampled `u` channel\n\n`||u - solve(a)|| / ||u||` over every posterior sample, `a` and `u` both the joint model's own (Darcy: `a` floored at {CONSISTENCY_A_FLOOR} x the low phase before the solve). The decoupled methods have no such error: their `u` is the physics of their `a`.\n\n| method | paired | settings | u-channel residual (%) |\n|---|---|---|---|\n{consistency}"
        );
    }
    if !ratios.is_empty() {
        let _ = writeln!(md, "\n## DDIS against the best joint baseline\n\n{ratios}");
    }
    md.push_str(&paired_comparisons(rows, darcy, opts.seed));
    write_atomic(&opts.out.join("results.md"), md.as_bytes())?;
    write_atomic(&opts.out.join("results.csv"), csv.as_bytes())?;
    write_atomic(&opts.out.join("results.json"), serde_json::to_string_pretty(rows)?.as_bytes())?;
    Ok(())
}

/// One per-case figure of a [`CaseMetrics`].
type CaseMetric = fn(&CaseMetrics) -> f64;

/// Every decoupled method against every joint baseline of the same paired
/// fraction (the device and exact rows against the joint rows of every
/// fraction): paired bootstrap intervals over the shared cases for the
/// difference and the ratio of the mean errors (`crate::stats`). Empty
/// when there is nothing to pair.
fn paired_comparisons(rows: &[EvalRow], darcy: bool, seed: u64) -> String {
    let is_joint = |r: &EvalRow| r.method.starts_with("joint");
    let fraction_free = |r: &EvalRow| r.method == Method::Device.name() || r.method.starts_with(Method::Exact.name());
    let mut metrics: Vec<(&str, CaseMetric)> = vec![("rel. L2", |c| c.rel_l2)];
    if darcy {
        metrics.push(("error rate", |c| c.error_rate.unwrap_or(f64::NAN)));
    }
    let mut out = String::new();
    for d in rows.iter().filter(|r| !is_joint(r)) {
        for j in rows.iter().filter(|r| is_joint(r) && (fraction_free(d) || r.paired == d.paired)) {
            for (name, f) in &metrics {
                let a: Vec<f64> = d.cases.iter().map(f).collect();
                let b: Vec<f64> = j.cases.iter().map(f).collect();
                let Some(c) = crate::stats::paired_bootstrap(&a, &b, seed) else { continue };
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {name} | {:.2} | {:.2} | {:+.2} [{:+.2}, {:+.2}]{} | {:.3} [{:.3}, {:.3}] |",
                    j.paired,
                    d.method,
                    j.method,
                    100.0 * mean(&a),
                    100.0 * mean(&b),
                    100.0 * c.diff,
                    100.0 * c.diff_ci.0,
                    100.0 * c.diff_ci.1,
                    if c.significant() { " *" } else { "" },
                    c.ratio,
                    c.ratio_ci.0,
                    c.ratio_ci.1
                );
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "\n## Paired comparisons\n\nEach decoupled method against each joint baseline on the same cases and sensors: the difference of the mean errors (percentage points) and their ratio, with {:.0} % percentile bootstrap intervals over cases ({} resamples, seed {seed}); `*`: the difference's interval excludes 0.\n\n| paired | method | baseline | metric | method (%) | baseline (%) | difference [95 % CI] | ratio [95 % CI] |\n|---|---|---|---|---|---|---|---|\n{out}",
        100.0 * crate::stats::COVERAGE,
        crate::stats::BOOTSTRAP_RESAMPLES
    )
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

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
    match crate::data::solution_stats(Path::new(data)) {
        Ok(s) => Some((s.min, s.max)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The solve is direct (banded Cholesky): a consistent pair is exact to
    /// rounding.
    const CONSISTENCY_TOL: f64 = 1e-6;

    #[test]
    fn u_channel_consistency_is_zero_for_the_physics_and_scales_with_the_error() {
        for kind in [PdeKind::Darcy, PdeKind::Poisson] {
            let pde = PdeConfig::for_kind(kind);
            let (a, _) = synthetic_case(&pde, 16, 5, 0.0, 3).unwrap();
            let mut solver = pde.solver(16).unwrap();
            let u: Vec<f32> = solver
                .solve(&a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
                .unwrap()
                .iter()
                .map(|&v| v as f32)
                .collect();
            let r = u_channel_consistency(&mut solver, &pde, &a, &u).unwrap();
            assert!(r < CONSISTENCY_TOL, "{kind}: {r}");
            // u twice the physics: ||2s - s|| / ||2s|| = 1/2.
            let u2: Vec<f32> = u.iter().map(|v| 2.0 * v).collect();
            let r = u_channel_consistency(&mut solver, &pde, &a, &u2).unwrap();
            assert!((r - 0.5).abs() < CONSISTENCY_TOL, "{kind}: {r}");
        }
    }

    #[test]
    fn calibration_and_point_estimate_hand_cases() {
        // |t - m| = 0, 1, 2.5, 4 against 2 std = 2: nodes 0, 1 inside (2 exactly counts).
        let truth = [0.0f32, 1.0, 2.5, 4.0];
        let mean = [0.0f32; 4];
        assert_eq!(calibration(&truth, &mean, &[1.0; 4]), 0.5);
        assert_eq!(calibration(&truth, &mean, &[2.0; 4]), 1.0);
        let darcy = PdeConfig::for_kind(PdeKind::Darcy);
        assert_eq!(darcy.darcy.phase_midpoint(), 7.5);
        assert_eq!(point_estimate(&darcy, &[7.49, 7.5, 20.0, -1.0]), vec![3.0, 12.0, 12.0, 3.0]);
        let poisson = PdeConfig::for_kind(PdeKind::Poisson);
        assert_eq!(point_estimate(&poisson, &[7.49, -1.0]), vec![7.49, -1.0]);
    }

    #[test]
    fn posterior_mean_and_std_per_case() {
        // Two cases of a 1x1 "grid" (n = 1), three samples each.
        let post = Posterior {
            n: 1,
            samples: 3,
            fields: vec![1.0, 2.0, 3.0, 10.0, 10.0, 10.0],
            stats: SampleStats::default(),
            seconds: 0.0,
            u_consistency: vec![],
        };
        let (m, s) = post.mean_std(0);
        assert_eq!(m, vec![2.0]);
        assert!((s[0] - (2.0f32 / 3.0).sqrt()).abs() < 1e-6, "population std of 1, 2, 3: {}", s[0]);
        assert_eq!(post.mean_std(1), (vec![10.0], vec![0.0]));
    }

    #[test]
    fn method_specs_parse_with_overrides() {
        let (d, p) = (DapsConfig::full(), DpsConfig::default_for_budget(100));
        let m = MethodSpec::parse("ddis-daps+schedule=20x1x5+tau=0.01", &d, &p).unwrap();
        assert_eq!((m.method, m.daps.annealing, m.daps.langevin, m.daps.tau), (Method::DdisDaps, 20, 5, 0.01));
        let m = MethodSpec::parse("joint-dps+steps=30+zeta=2", &d, &p).unwrap();
        assert_eq!((m.method, m.dps.steps, m.dps.zeta, m.dps.heun), (Method::JointDps, 30, 2.0, false));
        let m = MethodSpec::parse("joint-dps+steps=200+heun=1", &d, &p).unwrap();
        assert_eq!((m.dps.steps, m.dps.heun), (200, true));
        assert_eq!(m.settings(), "DPS 200 Heun steps zeta=10");
        assert!(!MethodSpec::parse("joint-dps+heun=0", &d, &DpsConfig { heun: true, ..p.clone() }).unwrap().dps.heun);
        assert!(m.method.is_joint());
        for bad in ["ddis", "ddis-daps+tau", "ddis-daps+tau=x", "ddis-daps+tau=-1", "ddis-daps+color=3"] {
            assert!(MethodSpec::parse(bad, &d, &p).is_err(), "{bad}");
        }
    }

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

    #[test]
    fn run_lookup_is_unambiguous_or_an_error() {
        let run = |path: &str, kind: &str, paired: f64| FoundRun {
            path: PathBuf::from(path),
            kind: kind.into(),
            pde: "darcy".into(),
            res: 32,
            paired_fraction: paired,
            data: String::new(),
            rank: 0,
        };
        let runs = vec![run("p", "prior", 1.0), run("o1", "operator", 1.0), run("o2", "operator", 0.01)];
        // A run in an earlier folder shadows one for the same slot in a
        // later folder (your runs/ before the shipped models).
        let shipped = FoundRun { rank: 1, ..run("shipped-p", "prior", 1.0) };
        let both = vec![shipped.clone(), runs[0].clone()];
        assert_eq!(pick_run(&both, "prior", "darcy", 32, None).unwrap(), PathBuf::from("p"));
        assert_eq!(pick_run(&[shipped], "prior", "darcy", 32, None).unwrap(), PathBuf::from("shipped-p"));
        assert_eq!(pick_run(&runs, "operator", "darcy", 32, Some(0.01)).unwrap(), PathBuf::from("o2"));
        assert_eq!(pick_run(&runs, "prior", "darcy", 32, None).unwrap(), PathBuf::from("p"));
        let e = pick_run(&runs, "operator", "darcy", 32, None).unwrap_err().to_string();
        assert!(e.contains("several") && e.contains("o1") && e.contains("o2"), "{e}");
        let e = pick_run(&runs, "joint", "darcy", 32, Some(1.0)).unwrap_err().to_string();
        assert!(e.contains("no joint run"), "{e}");
        assert!(pick_run(&runs, "prior", "poisson", 32, None).is_err());
    }
}
