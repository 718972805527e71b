//! Export to the device artifact, the host half of
//! `ddis_runtime::artifact` (which defines the format; docs/format.md
//! describes it). Everything the device cannot compute well is folded here
//! in f64: the DAPS schedule with the EDM coefficients, the prior's noise
//! embedding and FiLM layers at every annealing level, the DFT twiddles,
//! the smooth-noise square-root kernel. Weights are transposed to the
//! runtime's row-per-output-channel layout and, for [`Quant::Int8`],
//! quantised per row with the runtime's own `quantize_row`
//! (`operator`, beside this file).
//!
//! [`inspect()`] describes an artifact; [`runtime_reconstruct`] runs the
//! runtime's sampler on the host, the very code the device runs.

mod inspect;
mod operator;
mod runtime;

use anyhow::{Context, Result, anyhow, ensure};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ddis_runtime::artifact::{
    self, Artifact, Body, Bytes, DataParams, KIND_NOISE, KIND_PHYSICS, KIND_PRIOR, KIND_SCHEDULE, KIND_SURROGATE,
    LEVEL_SCALARS, NoiseParams, PhysicsParams, PriorParams, STEP_GAUSS_NEWTON, STEP_LANGEVIN, ScheduleParams,
    SurrogateParams,
};

use crate::model::denoiser::{Denoiser, EdmModel};
use crate::model::edm;
use crate::model::fno::Fno;
use crate::sample::DapsConfig;
pub use inspect::{
    DEVICE_FLASH_BYTES, DEVICE_RAM_BYTES, FIRMWARE_CODE_BYTES, FIRMWARE_RAM_BYTES, budget_check, budget_warnings,
    inspect,
};
use operator::{NetParts, OwnedNet};
pub use runtime::{RuntimePosterior, runtime_posterior, runtime_reconstruct};

/// How weights are stored in the artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Quant {
    /// int8 weights with one f32 scale per output channel (per row of each
    /// weight matrix; for spectral weights per mode and output channel).
    Int8,
    /// f32 weights (parity checks against burn; about 4x the bytes).
    F32,
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quant::Int8 => "int8",
            Quant::F32 => "f32",
        })
    }
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data().to_vec::<f32>().map_err(|e| anyhow!("tensor data: {e:?}"))
}

/// `relu(W x + b)` (or without the ReLU) in f64 from a burn layer.
fn dense<B: Backend>(l: &Linear<B>, x: &[f64], relu: bool) -> Result<Vec<f64>> {
    let [din, dout] = l.weight.dims();
    ensure!(din == x.len(), "embedding layer expects {din} inputs, got {}", x.len());
    let w = values(l.weight.val())?;
    let b = match &l.bias {
        Some(b) => values(b.val())?,
        None => vec![0.0; dout],
    };
    Ok((0..dout)
        .map(|o| {
            let v = f64::from(b[o]) + (0..din).map(|i| f64::from(w[i * dout + o]) * x[i]).sum::<f64>();
            if relu { v.max(0.0) } else { v }
        })
        .collect())
}

/// The prior's FiLM table at noise level `sigma`, folded in f64: per layer
/// `width` values of `1 + scale`, then `width` shifts.
fn film_table<B: Backend>(net: &Denoiser<B>, sigma: f64) -> Result<Vec<f64>> {
    let c = edm::c_noise(sigma);
    let f = net.embed_frequencies;
    let phase: Vec<f64> = (0..f).map(|k| c * (1u64 << k.min(63)) as f64).collect();
    let features: Vec<f64> = phase.iter().map(|p| p.sin()).chain(phase.iter().map(|p| p.cos())).collect();
    let emb = dense(&net.embed_out, &dense(&net.embed_in, &features, true)?, true)?;
    let mut out = Vec::new();
    for film in &net.film {
        let ss = dense(film, &emb, false)?;
        let w = ss.len() / 2;
        out.extend(ss[..w].iter().map(|s| s + 1.0));
        out.extend_from_slice(&ss[w..]);
    }
    Ok(out)
}

/// The inner step of the device sampler's annealing levels (the host
/// sampler's own setting, [`DapsConfig::step`]).
pub use crate::sample::daps::StepKind;

/// The forward model the device sampler guides with.
pub enum ForwardModel<'m, B: Backend> {
    /// The trained FNO surrogate.
    Surrogate(&'m Fno<B>),
    /// Exact finite-difference physics of the prior's PDE.
    Solver {
        /// The PDE and its settings (Darcy phases, Helmholtz `k`).
        pde: crate::pde::PdeConfig,
        /// Floor of the readings' unit: the spread of `u` in the data.
        u_floor: f64,
    },
}

/// How the device samples: the inner step and the sensor cap that sizes
/// the sensor-space memory.
#[derive(Clone, Copy, Debug)]
pub struct DeviceStep {
    /// The inner step.
    pub step: StepKind,
    /// Most sensors a request may bring (Gauss–Newton and exact physics).
    pub max_sensors: usize,
    /// Gauss–Newton prior spread `r_i = r_scale * c_out(s_i)`.
    pub r_scale: f64,
    /// The share of the readings' noise in the likelihood width:
    /// `max(tau, noise_width * noise / unit)` (1: the noise's own width).
    pub noise_width: f64,
}

impl Default for DeviceStep {
    fn default() -> Self {
        Self { step: StepKind::Langevin, max_sensors: 100, r_scale: 1.0, noise_width: DapsConfig::DEFAULT_NOISE_WIDTH }
    }
}

/// `bytes` (an artifact) with its schedule's `noise_width` replaced by
/// `width`, re-encoded and re-validated: what `ddis eval`'s
/// `device+noise_width=W` runs, so that a width can be tuned without
/// exporting one artifact per value.
pub fn with_noise_width(bytes: &[u8], width: f64) -> Result<Vec<u8>> {
    let mut body = artifact::decode(bytes).map_err(|e| anyhow!("the artifact: {e}"))?;
    let schedule = body.schedule.as_mut().context("the artifact has no sampler schedule")?;
    schedule.noise_width = width as f32;
    let mut out = vec![0u8; artifact::encoded_len(&body)?];
    let len = artifact::encode(&body, &mut out)?;
    out.truncate(len);
    Artifact::parse(&out).map_err(|e| anyhow!("noise_width={width}: {e}"))?;
    Ok(out)
}

/// Builds the device artifact for an `n x n` grid with the surrogate and
/// Langevin steps: [`build_artifact_with`] with [`DeviceStep::default`].
pub fn build_artifact<B: Backend>(
    prior: &EdmModel<B>,
    operator: &Fno<B>,
    daps: &DapsConfig,
    problem: &str,
    n: usize,
    quant: Quant,
) -> Result<Vec<u8>> {
    let pde = crate::pde::PdeConfig::for_kind(problem.parse().unwrap_or(crate::pde::PdeKind::Darcy));
    let about = About { problem, data: data_params(&pde, (0.0, 1.0)) };
    build_artifact_with(prior, ForwardModel::Surrogate(operator), daps, &DeviceStep::default(), &about, n, quant)
}

/// What an artifact says about its models: the problem's name and the
/// training data's law and solution range.
#[derive(Clone, Copy, Debug)]
pub struct About<'a> {
    /// The problem (`darcy`, `poisson`, ...).
    pub problem: &'a str,
    /// The data section.
    pub data: DataParams,
}

/// The artifact's data section: the input law of `pde` and the solution
/// range `u_range` measured on the training data.
pub fn data_params(pde: &crate::pde::PdeConfig, u_range: (f64, f64)) -> DataParams {
    let darcy = pde.kind == crate::pde::PdeKind::Darcy;
    let helmholtz = pde.kind == crate::pde::PdeKind::Helmholtz;
    DataParams {
        phase_low: if darcy { pde.darcy.a_low as f32 } else { 0.0 },
        phase_high: if darcy { pde.darcy.a_high as f32 } else { 0.0 },
        threshold: if darcy { pde.darcy.threshold as f32 } else { 0.0 },
        grf_alpha: pde.grf.alpha as f32,
        grf_tau: pde.grf.tau as f32,
        helmholtz_k: if helmholtz { pde.helmholtz_k as f32 } else { 0.0 },
        u_min: u_range.0 as f32,
        u_max: u_range.1 as f32,
    }
}

/// The PDE law an artifact was trained on (its problem name and data
/// section); `None` for a problem ddis has no generator for.
pub fn artifact_pde(art: &Artifact<'_>) -> Option<crate::pde::PdeConfig> {
    let kind: crate::pde::PdeKind = art.problem().parse().ok()?;
    let d = art.data();
    let mut pde = crate::pde::PdeConfig::for_kind(kind);
    pde.grf = crate::grf::GrfConfig { alpha: d.grf_alpha as f64, tau: d.grf_tau as f64 };
    match kind {
        crate::pde::PdeKind::Darcy => {
            pde.darcy = crate::pde::DarcyConfig {
                a_low: d.phase_low as f64,
                a_high: d.phase_high as f64,
                threshold: d.threshold as f64,
            }
        }
        crate::pde::PdeKind::Helmholtz => pde.helmholtz_k = d.helmholtz_k as f64,
        crate::pde::PdeKind::Poisson => {}
    }
    Some(pde)
}

/// Builds the device artifact for an `n x n` grid: the forward model (the
/// surrogate or exact physics), the prior (one data channel), the prior's
/// smooth noise and the DAPS schedule `daps` (which must use one ODE step
/// and no preconditioning, as the device does) with the inner step of
/// `step`. The result is parsed back by the runtime before it is returned.
pub fn build_artifact_with<B: Backend>(
    prior: &EdmModel<B>,
    forward: ForwardModel<'_, B>,
    daps: &DapsConfig,
    step: &DeviceStep,
    about: &About<'_>,
    n: usize,
    quant: Quant,
) -> Result<Vec<u8>> {
    let About { problem, data } = *about;
    daps.validate()?;
    data.validate().map_err(|e| anyhow!("the data section: {e}"))?;
    ensure!(
        (1..=ddis_runtime::MAX_SENSORS).contains(&step.max_sensors),
        "the sensor cap must be 1..={}, not {}",
        ddis_runtime::MAX_SENSORS,
        step.max_sensors
    );
    ensure!(step.r_scale.is_finite() && step.r_scale > 0.0, "r_scale must be finite and > 0");
    ensure!(
        (0.0..=f64::from(ddis_runtime::artifact::MAX_NOISE_WIDTH)).contains(&step.noise_width),
        "noise_width must be in 0..={}, not {}",
        ddis_runtime::artifact::MAX_NOISE_WIDTH,
        step.noise_width
    );
    ensure!(
        daps.ode_steps == 1,
        "the device sampler takes one ODE step (Tweedie); the schedule has {}",
        daps.ode_steps
    );
    ensure!(!daps.precondition, "the device sampler does not precondition the Langevin steps (daps.precondition)");
    let cfg = prior.config();
    let den = &prior.denoiser;
    ensure!(den.channels == 1, "the device prior has one data channel, this one has {}", den.channels);
    cfg.denoiser.check_resolution(n).map_err(|e| anyhow!("prior at n = {n}: {e}"))?;
    let fno_net = match &forward {
        ForwardModel::Surrogate(operator) => Some((
            OwnedNet::new(
                NetParts {
                    lift: &operator.lift,
                    blocks: &operator.blocks,
                    proj_hidden: &operator.proj_hidden,
                    proj_out: &operator.proj_out,
                    modes: operator.modes,
                    pad: operator.pad_len(n),
                },
                n,
                quant,
                "surrogate",
            )?,
            &operator.normalization,
        )),
        ForwardModel::Solver { .. } => None,
    };
    let physics = match &forward {
        ForwardModel::Surrogate(_) => None,
        ForwardModel::Solver { pde, u_floor } => Some(physics_params(pde, *u_floor)?),
    };
    let prior_net = OwnedNet::new(
        NetParts {
            lift: &den.lift,
            blocks: &den.blocks,
            proj_hidden: &den.proj_hidden,
            proj_out: &den.proj_out,
            modes: den.modes,
            pad: crate::model::spectral::pad_len(den.pad_fraction, n),
        },
        n,
        quant,
        "prior",
    )?;

    // The schedule, one row per level.
    let sd = cfg.sigma_data;
    let sigmas = daps.sigmas();
    let mut table = Vec::with_capacity(sigmas.len() * (LEVEL_SCALARS + 2 * 16 * 4));
    for (i, &s) in sigmas.iter().enumerate() {
        let lr = daps.step_size(i, s);
        let row = [
            s,
            edm::c_in(s, sd),
            edm::c_skip(s, sd),
            edm::c_out(s, sd),
            lr,
            (2.0 * lr).sqrt(),
            1.0 / (s * s),
            sigmas.get(i + 1).copied().unwrap_or(0.0),
            step.r_scale * edm::c_out(s, sd),
        ];
        table.extend(row.iter().map(|&v| v as f32));
        table.extend(film_table(den, s)?.iter().map(|&v| v as f32));
    }
    let table = le_bytes(&table);
    let noise = cfg.smooth_noise(n).map_err(|e| anyhow!("smooth noise at n = {n}: {e}"))?;
    let kernel = le_bytes(&kernel_f32(noise.sqrt_kernel(), n));
    let sqrt_kernel = le_bytes(noise.sqrt_kernel_f32());
    let (pm, ps) = cfg.normalization.channel(0);

    let body = Body {
        kind: KIND_PRIOR
            | KIND_NOISE
            | KIND_SCHEDULE
            | if fno_net.is_some() { KIND_SURROGATE } else { 0 }
            | if physics.is_some() { KIND_PHYSICS } else { 0 },
        problem,
        n: n as u32,
        surrogate: fno_net.as_ref().map(|(net, nz)| SurrogateParams {
            net: net.params(),
            a_mean: nz.a_mean as f32,
            a_std: nz.a_std as f32,
            u_mean: nz.u_mean as f32,
            u_std: nz.u_std as f32,
        }),
        prior: Some(PriorParams { net: prior_net.params(), mean: pm as f32, std: ps as f32, sigma_data: sd as f32 }),
        noise: Some(NoiseParams { sqrt_kernel: Bytes(&sqrt_kernel), kernel: Bytes(&kernel) }),
        schedule: Some(ScheduleParams {
            levels: sigmas.len() as u32,
            step: match step.step {
                StepKind::Langevin => STEP_LANGEVIN,
                StepKind::GaussNewton => STEP_GAUSS_NEWTON,
            },
            langevin: daps.langevin as u32,
            max_sensors: step.max_sensors as u32,
            tau: daps.tau as f32,
            noise_width: step.noise_width as f32,
            clamp: daps.clamp as f32,
            table: Bytes(&table),
        }),
        physics,
        data,
    };
    let mut out = vec![0u8; artifact::encoded_len(&body)?];
    let len = artifact::encode(&body, &mut out)?;
    out.truncate(len);
    Artifact::parse(&out).context("the runtime rejects the artifact just built")?;
    Ok(out)
}

/// `K1 = L L` (L symmetric) in f64, rounded to f32: the 1-D factor of the
/// noise covariance `C = K1 (x) K1`.
fn kernel_f32(l: &[f64], n: usize) -> Vec<f32> {
    (0..n * n).map(|k| (0..n).map(|c| l[(k / n) * n + c] * l[c * n + k % n]).sum::<f64>() as f32).collect()
}

/// The artifact's exact-physics section for `pde`.
fn physics_params(pde: &crate::pde::PdeConfig, u_floor: f64) -> Result<PhysicsParams> {
    use crate::pde::PdeKind;
    use ddis_runtime::physics::{PDE_DARCY, PDE_HELMHOLTZ, PDE_POISSON};
    ensure!(u_floor.is_finite() && u_floor > 0.0, "the readings' unit floor must be finite and > 0, not {u_floor}");
    let (code, shift, floor) = match pde.kind {
        // Half the lower phase: iterates may leave [a_low, a_high], the
        // operator must stay definite.
        PdeKind::Darcy => (PDE_DARCY, 0.0, 0.5 * pde.darcy.a_low.min(pde.darcy.a_high)),
        PdeKind::Poisson => (PDE_POISSON, 0.0, 1.0),
        PdeKind::Helmholtz => (PDE_HELMHOLTZ, pde.helmholtz_k * pde.helmholtz_k, 1.0),
    };
    Ok(PhysicsParams { pde: code, shift: shift as f32, coef_floor: floor as f32, u_floor: u_floor as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `eval`'s `device+noise_width=W` edits one field: the shipped
    /// artifact round-trips to its own bytes, and a width past the format's
    /// range is refused.
    #[test]
    fn with_noise_width_edits_that_field_only() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/darcy32.ddis");
        let shipped = std::fs::read(path).expect("the shipped artifact");
        let wide = with_noise_width(&shipped, 0.5).unwrap();
        let art = Artifact::parse(&wide).unwrap();
        assert_eq!(art.schedule().unwrap().noise_width(), 0.5);
        let width = Artifact::parse(&shipped).unwrap().schedule().unwrap().noise_width();
        assert_eq!(width, DapsConfig::DEFAULT_NOISE_WIDTH as f32, "shipped with the default");
        assert_eq!(with_noise_width(&wide, f64::from(width)).unwrap(), shipped, "back to the shipped bytes");
        let err = with_noise_width(&shipped, 20.0).unwrap_err().to_string();
        assert!(err.contains("noise_width"), "{err}");
    }
}
