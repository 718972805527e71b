//! The methods `ddis eval` and `ddis reconstruct` run: their names and
//! settings ([`MethodSpec`]), the trained models they need ([`Models`]), and
//! [`reconstruct_cases`], which batches cases through the host samplers of
//! `sample` and returns posterior samples ([`Posterior`]).

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::progress_bar;
use crate::model::denoiser::DiffusionModel;
use crate::model::edm::HeunConfig;
use crate::model::fno::Fno;
use crate::observe::Observations;
use crate::pde::{PdeConfig, PdeKind, Solver};
use crate::sample::{
    DapsConfig, DpsConfig, ExactGaussianDenoiser, JointGuide, Noise, ObservationBatch, SampleStats, SolverGuide,
    StepKind, SurrogateGuide, daps_sample, dps_sample,
};
use crate::train::diffusion::DiffusionRunConfig;

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
    /// `device` only: the artifact's `noise_width` replaced by this value
    /// for the run (the `noise_width` key; the artifact file is untouched).
    pub device_noise_width: Option<f64>,
    /// `ddis-daps` only: the trained prior's network replaced by the exact
    /// denoiser of the data's Gaussian prior (the `prior=exact` key;
    /// Poisson and Helmholtz), so the row measures the sampler alone.
    pub exact_prior: bool,
}

impl MethodSpec {
    /// Parses `METHOD[+key=value...]`, keys `schedule` (AxOxL), `tau`, `lr`,
    /// `lr_min_ratio`, `lr_cap`, `sigma_max`, `precondition`, `noise_step`,
    /// `noise_width`, `step` (`langevin` or `gn`: the Gauss–Newton
    /// conditional step, `schedule`'s inner count its iterations),
    /// `r_scale` (its prior spread) (DAPS; `noise_step=0` keeps the
    /// noiseless step under noisy readings; `noise_width` scales the noise's
    /// likelihood width, and for `device` replaces the artifact's own),
    /// `steps`, `zeta`, `heun`
    /// (DPS; `heun=1` takes Heun steps, `0` Euler; `steps` also sets the
    /// `prior` ablation's Heun steps), `prior` (`model` or `exact`,
    /// `ddis-daps` only), on top of the given defaults.
    pub fn parse(spec: &str, daps: &DapsConfig, dps: &DpsConfig) -> Result<Self> {
        let mut parts = spec.trim().split('+');
        let method = Method::parse(parts.next().unwrap_or_default())?;
        let (mut daps, mut dps) = (daps.clone(), dps.clone());
        let mut device_noise_width = None;
        let mut exact_prior = false;
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
                "noise_step" => daps.noise_scaled_step = num()? != 0.0,
                "step" => {
                    daps.step = match v {
                        "langevin" => StepKind::Langevin,
                        "gn" | "gauss-newton" => StepKind::GaussNewton,
                        _ => bail!("`{kv}` in `{spec}`: the step is `langevin` or `gn` (Gauss-Newton)"),
                    }
                }
                "r_scale" => daps.r_scale = num()?,
                "prior" => {
                    exact_prior = match v {
                        "model" => false,
                        "exact" => true,
                        _ => bail!("`{kv}` in `{spec}`: the prior is `model` (the trained run) or `exact`"),
                    };
                    ensure!(
                        !exact_prior || method == Method::DdisDaps,
                        "`{kv}` in `{spec}`: only ddis-daps runs on the exact Gaussian prior"
                    );
                }
                "noise_width" => {
                    daps.noise_width = num()?;
                    if method == Method::Device {
                        device_noise_width = Some(daps.noise_width);
                    }
                }
                _ => bail!(
                    "unknown setting `{k}` in `{spec}` (valid: schedule, tau, lr, lr_min_ratio, lr_cap, sigma_max, precondition, noise_step, noise_width, step, r_scale, prior, steps, zeta, heun)"
                ),
            }
        }
        daps.validate()?;
        dps.validate()?;
        Ok(Self { method, daps, dps, device_noise_width, exact_prior })
    }

    /// A short description of the settings that matter for this method.
    pub fn settings(&self) -> String {
        match self.method {
            Method::DdisDaps | Method::JointDaps => {
                let d = &self.daps;
                let pre = if d.precondition { " precond." } else { "" };
                let fixed = if d.noise_scaled_step { "" } else { " fixed-step" };
                let width = if d.noise_width == DapsConfig::reduced().noise_width {
                    String::new()
                } else {
                    format!(" noise_width={}", d.noise_width)
                };
                let prior = if self.exact_prior { " on the exact Gaussian prior" } else { "" };
                match d.step {
                    StepKind::Langevin => format!(
                        "DAPS {} tau={} lr={} s_max={}{pre}{fixed}{width}{prior}",
                        d.label(),
                        d.tau,
                        d.lr,
                        d.sigma_max
                    ),
                    StepKind::GaussNewton => format!(
                        "DAPS {} Gauss-Newton tau={} r_scale={} s_max={}{width}{prior}",
                        d.label(),
                        d.tau,
                        d.r_scale,
                        d.sigma_max
                    ),
                }
            }
            Method::DdisDps | Method::JointDps => {
                let kind = if self.dps.heun { " Heun" } else { "" };
                format!("DPS {}{kind} steps zeta={}", self.dps.steps, self.dps.zeta)
            }
            Method::Device => match self.device_noise_width {
                None => "runtime on the artifact (its forward model and schedule)".to_string(),
                Some(w) => format!("runtime on the artifact (its forward model and schedule), noise_width={w}"),
            },
            Method::Exact => "exact Gaussian posterior, Matheron draws".to_string(),
            Method::Prior => format!("no guidance: prior samples, {} Heun steps", self.dps.steps),
        }
    }
}

/// The trained runs a reconstruction may use.
pub struct Models<AB: AutodiffBackend> {
    /// The prior over `a` and its run config.
    pub prior: Option<(DiffusionModel<AB>, DiffusionRunConfig)>,
    /// The FNO surrogate.
    pub operator: Option<Fno<AB>>,
    /// The joint `(a, u)` model and its run config.
    pub joint: Option<(DiffusionModel<AB>, DiffusionRunConfig)>,
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

/// The exact denoiser of the data's Gaussian prior (Poisson, Helmholtz) in
/// the prior run's normalised coordinates: `x = (a - mean) / std`, so
/// `m = -mean / std` and `C = Sigma / std^2` ([`crate::exact`]'s `Sigma`).
fn exact_gaussian_denoiser(
    pde: &PdeConfig,
    n: usize,
    edm: &crate::model::denoiser::EdmConfig,
    noise: &Noise,
) -> Result<ExactGaussianDenoiser> {
    let model = crate::exact::LinearGaussian::new(pde, n)
        .context("prior=exact needs a linear-Gaussian PDE (Poisson or Helmholtz)")?;
    let (mean, std) = edm.normalization.channel(0);
    let mut cov = model.covariance()?;
    cov.iter_mut().for_each(|v| *v /= std * std);
    let m = model.prior_mean().iter().map(|v| (v - mean) / std).collect();
    Ok(ExactGaussianDenoiser::new(n, m, &cov, noise, edm.sigma_data)?)
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
    let channels = edm.denoiser.channels();
    let noise = Noise::Smooth(edm.smooth_noise(n)?);
    let a_norm = edm.normalization.channel(0);
    let bar = progress_bar(cases.len() as u64, progress, spec.method.name());
    let start = Instant::now();
    let mut fields = Vec::with_capacity(cases.len() * samples * per);
    let mut u_consistency = vec![];
    let mut solver = if spec.method.is_joint() { Some(pde.solver(n)?) } else { None };
    let mut stats = SampleStats::default();
    // A source that vanishes on the boundary (Helmholtz): the decoupled DAPS
    // step keeps its spread off it, and the samples get its 0 there.
    let mut daps_cfg = spec.daps.clone();
    daps_cfg.zero_boundary = pde.input_vanishes_on_boundary() && spec.method == Method::DdisDaps;
    let exact_prior = if spec.exact_prior { Some(exact_gaussian_denoiser(pde, n, &edm, &noise)?) } else { None };
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
                match &exact_prior {
                    Some(d) => daps_sample(d, &mut g, &noise, &daps_cfg, [batch, channels], chunk_seed, device)?,
                    None => daps_sample(&inner, &mut g, &noise, &daps_cfg, [batch, channels], chunk_seed, device)?,
                }
            }
            (Method::DdisDps, Physics::Surrogate) => {
                let fno = models.operator.clone().context("--physics surrogate needs an operator run (--operator)")?;
                let mut g = SurrogateGuide::new(fno, obs, a_norm, device)?;
                dps_sample(model, &mut g, &noise, &spec.dps, [batch, channels], chunk_seed, device)?
            }
            (Method::DdisDaps, Physics::Solver) => {
                let mut g = SolverGuide::new(*pde, obs, a_norm)?;
                match &exact_prior {
                    Some(d) => daps_sample(d, &mut g, &noise, &daps_cfg, [batch, channels], chunk_seed, device)?,
                    None => daps_sample(&inner, &mut g, &noise, &daps_cfg, [batch, channels], chunk_seed, device)?,
                }
            }
            (Method::DdisDps, Physics::Solver) => {
                let mut g = SolverGuide::new(*pde, obs, a_norm)?;
                dps_sample(model, &mut g, &noise, &spec.dps, [batch, channels], chunk_seed, device)?
            }
            (Method::Prior, _) => {
                let d = &spec.dps;
                let heun = HeunConfig { steps: d.steps, sigma_min: d.sigma_min, sigma_max: d.sigma_max, rho: d.rho };
                let mut rng = ChaCha8Rng::seed_from_u64(chunk_seed);
                let x = inner.sample(noise.draw::<AB::InnerBackend, _>(&mut rng, batch, channels, device), &heun);
                (x, SampleStats { denoiser_calls: 2 * heun.steps - 1, ..SampleStats::default() })
            }
            (Method::Device | Method::Exact, _) => unreachable!("rejected above"),
        };
        let (x, s) = x;
        stats.denoiser_calls += s.denoiser_calls;
        stats.denoiser_vjps += s.denoiser_vjps;
        stats.guide_calls += s.guide_calls;
        stats.clamped += s.clamped;
        stats.non_finite += s.non_finite;
        stats.widened += s.widened;
        let mut data: Vec<f32> = x.into_data().to_vec().map_err(|e| anyhow::anyhow!("sampler output: {e:?}"))?;
        edm.normalization.denormalize_slice(&mut data, channels, per);
        if daps_cfg.zero_boundary {
            let grid = crate::grid::Grid { n };
            for field in data.chunks_mut(per) {
                for (k, v) in field.iter_mut().enumerate() {
                    let (i, j) = grid.ij(k);
                    if grid.is_boundary(i, j) {
                        *v = 0.0;
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::synthetic_case;

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
        let m = MethodSpec::parse("ddis-daps+schedule=10x1x1+step=gn+r_scale=0.35+tau=0.002", &d, &p).unwrap();
        assert_eq!((m.daps.step, m.daps.r_scale, m.daps.langevin), (StepKind::GaussNewton, 0.35, 1));
        assert_eq!(m.settings(), "DAPS 10x1x1 Gauss-Newton tau=0.002 r_scale=0.35 s_max=10");
        assert_eq!(MethodSpec::parse("ddis-daps+step=langevin", &d, &p).unwrap().daps.step, StepKind::Langevin);
        assert!(!m.exact_prior);
        let m =
            MethodSpec::parse("ddis-daps+schedule=10x1x1+step=gn+r_scale=0.35+tau=0.002+prior=exact", &d, &p).unwrap();
        assert!(m.exact_prior);
        assert!(m.settings().ends_with("on the exact Gaussian prior"), "{}", m.settings());
        for bad in [
            "ddis-daps+prior=gaussian",
            "joint-daps+prior=exact",
            "prior+prior=exact",
            "ddis",
            "ddis-daps+tau",
            "ddis-daps+tau=x",
            "ddis-daps+tau=-1",
            "ddis-daps+color=3",
            "ddis-daps+step=newton",
            "ddis-daps+r_scale=0",
        ] {
            assert!(MethodSpec::parse(bad, &d, &p).is_err(), "{bad}");
        }
    }
}
