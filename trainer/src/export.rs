//! Export to the device artifact, the host half of
//! `ddis_runtime::artifact` (which defines the format; docs/format.md
//! describes it). Everything the device cannot compute well is folded here
//! in f64: the DAPS schedule with the EDM coefficients, the prior's noise
//! embedding and FiLM layers at every annealing level, the DFT twiddles,
//! the smooth-noise square-root kernel. Weights are transposed to the
//! runtime's row-per-output-channel layout and, for [`Quant::Int8`],
//! quantised per row with the runtime's own [`quantize_row`].
//!
//! [`inspect`] describes an artifact; [`runtime_reconstruct`] runs the
//! runtime's sampler on the host, the very code the device runs.

use std::fmt::Write as _;

use anyhow::{Context, Result, anyhow, ensure};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ddis_runtime::artifact::{
    self, Artifact, Body, Bytes, DataParams, KIND_NOISE, KIND_PHYSICS, KIND_PRIOR, KIND_SCHEDULE, KIND_SURROGATE,
    LEVEL_SCALARS, LinearParams, NoiseParams, OperatorParams, PhysicsParams, PriorParams, STEP_GAUSS_NEWTON,
    STEP_LANGEVIN, ScheduleParams, SurrogateParams, Weights,
};
use ddis_runtime::kernels::quantize_row;
use ddis_runtime::operator::OperatorShape;
use ddis_runtime::sampler::{self, SampleStats};
use ddis_runtime::{Error as RuntimeError, Grid, Sensors};

use crate::model::denoiser::{Denoiser, EdmModel};
use crate::model::edm;
use crate::model::fno::Fno;
use crate::model::spectral::SpectralConv2d;
use crate::observe::Observations;
use crate::sample::DapsConfig;

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

/// Owned bytes of one weight matrix (row-major, rows = output channels).
struct OwnedWeights {
    values: Vec<u8>,
    q: Vec<u8>,
    scales: Vec<u8>,
    quant: Quant,
}

impl OwnedWeights {
    fn new(w: &[f32], rows: usize, cols: usize, quant: Quant) -> Self {
        debug_assert_eq!(w.len(), rows * cols);
        match quant {
            Quant::F32 => Self { values: le_bytes(w), q: vec![], scales: vec![], quant },
            Quant::Int8 => {
                let mut q = vec![0u8; rows * cols];
                let scales: Vec<f32> = w
                    .chunks_exact(cols.max(1))
                    .zip(q.chunks_exact_mut(cols.max(1)))
                    .map(|(row, q)| quantize_row(row, q))
                    .collect();
                Self { values: vec![], q, scales: le_bytes(&scales), quant }
            }
        }
    }

    fn weights(&self) -> Weights<'_> {
        match self.quant {
            Quant::F32 => Weights::F32 { values: Bytes(&self.values) },
            Quant::Int8 => Weights::I8 { q: Bytes(&self.q), scales: Bytes(&self.scales) },
        }
    }
}

/// Owned bytes of a (possibly stacked) linear layer.
struct OwnedLinear {
    inputs: usize,
    outputs: usize,
    w: OwnedWeights,
    bias: Vec<u8>,
}

impl OwnedLinear {
    /// Stacks `layers` (each `inputs -> outputs_each`) into one layer whose
    /// rows are `layer * outputs_each + o`.
    fn stack<B: Backend>(layers: &[&Linear<B>], inputs: usize, quant: Quant, what: &str) -> Result<Self> {
        let (mut w, mut bias) = (Vec::new(), Vec::new());
        let mut outputs = 0;
        for l in layers {
            let [din, dout] = l.weight.dims();
            ensure!(din == inputs, "{what}: expected {inputs} inputs, the layer has {din}");
            let wt = values(l.weight.val())?; // [in, out] row-major
            for o in 0..dout {
                w.extend((0..din).map(|i| wt[i * dout + o]));
            }
            match &l.bias {
                Some(b) => bias.extend(values(b.val())?),
                None => bias.extend(std::iter::repeat_n(0.0, dout)),
            }
            outputs += dout;
        }
        Ok(Self { inputs, outputs, w: OwnedWeights::new(&w, outputs, inputs, quant), bias: le_bytes(&bias) })
    }

    fn params(&self) -> LinearParams<'_> {
        LinearParams {
            inputs: self.inputs as u32,
            outputs: self.outputs as u32,
            weight: self.w.weights(),
            bias: Bytes(&self.bias),
        }
    }
}

/// Owned bytes of one operator network.
struct OwnedNet {
    shape: OperatorShape,
    lift: OwnedLinear,
    spectral: OwnedWeights,
    skip: OwnedLinear,
    proj_hidden: OwnedLinear,
    proj_out: OwnedLinear,
    twiddle: Vec<u8>,
}

/// The parts of an FNO-type network that the runtime's operator ships.
struct NetParts<'m, B: Backend> {
    lift: &'m Linear<B>,
    spectral: &'m [SpectralConv2d<B>],
    skip: &'m [Linear<B>],
    proj_hidden: &'m Linear<B>,
    proj_out: &'m Linear<B>,
    modes: usize,
    pad: usize,
}

/// `cos(2 pi j / p)` for `j < p`, then `sin(2 pi j / p)`, in f64 rounded
/// once. The phase index is exact, as in `model::spectral`.
fn twiddle(p: usize) -> Vec<f32> {
    let tau = std::f64::consts::TAU;
    let cos = (0..p).map(|j| (tau * j as f64 / p as f64).cos() as f32);
    let sin = (0..p).map(|j| (tau * j as f64 / p as f64).sin() as f32);
    cos.chain(sin).collect()
}

impl OwnedNet {
    fn new<B: Backend>(parts: NetParts<'_, B>, n: usize, quant: Quant, what: &str) -> Result<Self> {
        let layers = parts.spectral.len();
        ensure!(
            layers >= 1 && parts.skip.len() == layers,
            "{what}: {layers} spectral layers, {} skips",
            parts.skip.len()
        );
        let width = parts.lift.weight.dims()[1];
        let m = parts.modes;
        let proj_width = parts.proj_hidden.weight.dims()[1];
        ensure!(parts.proj_out.weight.dims()[1] == 1, "{what}: the device networks have one output channel");
        let lift = OwnedLinear::stack(&[parts.lift], 3, quant, what)?;
        ensure!(lift.outputs == width, "{what}: lift shape");
        // Spectral weights [in, out, 2m, m] -> rows ((l 2m + r) m + k2) width + o,
        // columns re(i) for i < width, then im(i).
        let mut spec = Vec::with_capacity(layers * 2 * m * m * width * 2 * width);
        for (l, sc) in parts.spectral.iter().enumerate() {
            let dims = sc.weight_re.dims();
            ensure!(
                dims == [width, width, 2 * m, m],
                "{what}: spectral layer {l} has weights {dims:?}, expected [{width}, {width}, {}, {m}]",
                2 * m
            );
            let (wr, wi) = (values(sc.weight_re.val())?, values(sc.weight_im.val())?);
            let at = |i: usize, o: usize, r: usize, k2: usize| ((i * width + o) * 2 * m + r) * m + k2;
            for r in 0..2 * m {
                for k2 in 0..m {
                    for o in 0..width {
                        spec.extend((0..width).map(|i| wr[at(i, o, r, k2)]));
                        spec.extend((0..width).map(|i| wi[at(i, o, r, k2)]));
                    }
                }
            }
        }
        let skip_refs: Vec<&Linear<B>> = parts.skip.iter().collect();
        let shape = OperatorShape { n, width, modes: m, layers, pad: parts.pad, proj_width };
        Ok(Self {
            shape,
            lift,
            spectral: OwnedWeights::new(&spec, layers * 2 * m * m * width, 2 * width, quant),
            skip: OwnedLinear::stack(&skip_refs, width, quant, what)?,
            proj_hidden: OwnedLinear::stack(&[parts.proj_hidden], width, quant, what)?,
            proj_out: OwnedLinear::stack(&[parts.proj_out], proj_width, quant, what)?,
            twiddle: le_bytes(&twiddle(shape.padded())),
        })
    }

    fn params(&self) -> OperatorParams<'_> {
        let s = self.shape;
        OperatorParams {
            width: s.width as u32,
            modes: s.modes as u32,
            layers: s.layers as u32,
            pad: s.pad as u32,
            proj_width: s.proj_width as u32,
            lift: self.lift.params(),
            spectral: self.spectral.weights(),
            skip: self.skip.params(),
            proj_hidden: self.proj_hidden.params(),
            proj_out: self.proj_out.params(),
            twiddle: Bytes(&self.twiddle),
        }
    }
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

/// The inner step of the device sampler's annealing levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StepKind {
    /// Langevin steps on the likelihood gradient (`lr`, `clamp`).
    Langevin,
    /// The Gauss–Newton conditional step in sensor space (no step size, no
    /// clamp; the schedule's inner count is the number of iterations).
    GaussNewton,
}

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

impl DeviceStep {
    /// The default `noise_width`, the host sampler's too
    /// ([`DapsConfig::noise_width`]): tuned on Darcy validation cases.
    pub const DEFAULT_NOISE_WIDTH: f64 = 0.1;
}

impl Default for DeviceStep {
    fn default() -> Self {
        Self { step: StepKind::Langevin, max_sensors: 100, r_scale: 1.0, noise_width: Self::DEFAULT_NOISE_WIDTH }
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
                    spectral: &operator.spectral,
                    skip: &operator.skip,
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
            spectral: &den.spectral,
            skip: &den.skip,
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

fn describe_net(out: &mut String, name: &str, net: &ddis_runtime::operator::Operator<'_>) {
    let s = net.shape();
    let _ = writeln!(
        out,
        "{name}: width {}, modes {}, layers {}, pad {} (padded {}x{}), projection {}; {} parameters, {} weights, {} bytes",
        s.width,
        s.modes,
        s.layers,
        s.pad,
        s.padded(),
        s.padded(),
        s.proj_width,
        s.params(),
        if net.is_int8() { "int8" } else { "f32" },
        net.bytes()
    );
}

/// Flash of the reference device (an STM32F4-class Cortex-M4F).
pub const DEVICE_FLASH_BYTES: usize = 1024 * 1024;
/// RAM of the reference device.
pub const DEVICE_RAM_BYTES: usize = 256 * 1024;
/// Flash the reference firmware needs besides the artifact (measured
/// 84 094 B of code and constants, rounded up).
pub const FIRMWARE_CODE_BYTES: usize = 96 * 1024;
/// RAM the reference firmware needs besides the sampler's workspace and
/// its two output fields: frame buffers and the smallest stack it accepts
/// (firmware/src/main.rs).
pub const FIRMWARE_RAM_BYTES: usize = 32 * 1024;

/// Why an artifact will not fit the reference device (empty when it fits):
/// flash for the artifact plus the firmware, RAM for the workspace, the
/// two output fields and the firmware's buffers and stack.
pub fn budget_warnings(bytes: &[u8]) -> Result<Vec<String>> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact: {e}"))?;
    Ok(budget_check(art.len_bytes(), art.workspace_bytes(), art.n()))
}

/// [`budget_warnings`] from the sizes: artifact bytes, workspace bytes (if
/// the artifact can sample) and the grid.
pub fn budget_check(artifact_bytes: usize, workspace_bytes: Option<usize>, n: usize) -> Vec<String> {
    let mut out = vec![];
    let flash = artifact_bytes + FIRMWARE_CODE_BYTES;
    if flash > DEVICE_FLASH_BYTES {
        out.push(format!(
            "the artifact ({artifact_bytes} B) plus the firmware (about {FIRMWARE_CODE_BYTES} B) needs {flash} B of flash, more than the reference device's {DEVICE_FLASH_BYTES} B: the firmware will not link (fewer parameters, or int8)"
        ));
    }
    if let Some(ws) = workspace_bytes {
        let ram = ws + 2 * n * n * 4 + FIRMWARE_RAM_BYTES;
        if ram > DEVICE_RAM_BYTES {
            out.push(format!(
                "the sampler's workspace ({ws} B) plus two output fields and the firmware's buffers and stack needs {ram} B of RAM, more than the reference device's {DEVICE_RAM_BYTES} B: the firmware will not link (a smaller grid, fewer sensors with --max-sensors, or a narrower prior)"
            ));
        }
    }
    out
}

/// A human-readable description of an artifact: kind, grid, shapes,
/// parameter counts, sizes, workspace, CRC and schedule. Errors (damaged,
/// wrong version, bad shapes) carry the runtime's message.
pub fn inspect(bytes: &[u8]) -> Result<String> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact ({} bytes): {e}", bytes.len()))?;
    let mut out = String::new();
    let kind = art.kind();
    let names: Vec<&str> = [
        (artifact::KIND_SURROGATE, "surrogate"),
        (artifact::KIND_PRIOR, "prior"),
        (artifact::KIND_NOISE, "noise"),
        (artifact::KIND_SCHEDULE, "schedule"),
        (artifact::KIND_PHYSICS, "exact physics"),
    ]
    .iter()
    .filter(|(f, _)| kind & f != 0)
    .map(|&(_, name)| name)
    .collect();
    let _ = writeln!(out, "format: DDIS version {}", artifact::FORMAT_VERSION);
    let _ = writeln!(out, "problem: {}", art.problem());
    let d = art.data();
    if d.phase_low != 0.0 || d.phase_high != 0.0 {
        let _ =
            writeln!(out, "phases: a = {} below the GRF level {}, {} above", d.phase_low, d.threshold, d.phase_high);
    }
    let _ = writeln!(
        out,
        "training data: GRF alpha {}, tau {}{}; u in [{:.4e}, {:.4e}]",
        d.grf_alpha,
        d.grf_tau,
        if d.helmholtz_k != 0.0 { format!(", Helmholtz k {}", d.helmholtz_k) } else { String::new() },
        d.u_min,
        d.u_max
    );
    let _ = writeln!(out, "kind: {kind:#04x} ({})", names.join(" + "));
    let _ = writeln!(out, "grid: {0} x {0}", art.n());
    let _ = writeln!(out, "artifact: {} bytes ({:.1} KiB)", art.len_bytes(), art.len_bytes() as f64 / 1024.0);
    let _ = writeln!(out, "crc32: {:#010x} (verified)", art.crc());
    if let Some(f) = art.surrogate() {
        describe_net(&mut out, "surrogate", f.net());
        let (am, asd, um, usd) = f.normalization();
        let _ = writeln!(out, "  normalisation: a {am} +- {asd}, u {um} +- {usd}");
    }
    if let Some(p) = art.prior() {
        describe_net(&mut out, "prior", p.net());
        let (m, s) = p.normalization();
        let _ = writeln!(out, "  normalisation: a {m} +- {s}; sigma_data {}", p.sigma_data());
    }
    if let Some(nz) = art.noise() {
        let _ = writeln!(out, "noise: {0} x {0} square-root kernel, {1} bytes", nz.n(), nz.bytes());
    }
    if let Some(p) = art.physics() {
        let (factor, solve) = p.factor_solve_madds();
        let _ = writeln!(
            out,
            "physics: exact finite differences on {0} x {0}, banded L D L^T ({factor} multiply-adds per factorisation, {solve} per solve); readings' unit floor {1}",
            p.n(),
            p.u_floor()
        );
    }
    if let Some(s) = art.schedule() {
        let inner = match s.step() {
            ddis_runtime::schedule::Step::Langevin => "Langevin steps",
            ddis_runtime::schedule::Step::GaussNewton => "Gauss-Newton iterations",
        };
        let _ = writeln!(
            out,
            "schedule: {} levels x {} {inner} (one ODE step), tau {} (noise width {}), clamp {}, at most {} sensors, {} bytes",
            s.levels(),
            s.langevin(),
            s.tau(),
            s.noise_width(),
            s.clamp(),
            s.max_sensors(),
            s.bytes()
        );
        let _ = writeln!(out, "  level   sigma        lr           sqrt(2 lr)   c_skip   c_out    r");
        for i in 0..s.levels() {
            if let Ok(l) = s.level(i) {
                let _ = writeln!(
                    out,
                    "  {i:>5}   {:<11.4e}  {:<11.4e}  {:<11.4e}  {:<7.4}  {:<7.4}  {:<7.4}",
                    l.sigma, l.lr, l.noise_std, l.c_skip, l.c_out, l.r
                );
            }
        }
    }
    match art.workspace_bytes() {
        Some(b) => {
            let _ = writeln!(out, "workspace: {b} bytes ({:.1} KiB) for the sampler", b as f64 / 1024.0);
            for k in [31usize, 100] {
                if let Some(f) = sampler::flops(&art, k) {
                    let _ = writeln!(out, "  {:.3e} FLOP per posterior sample with {k} sensors", f as f64);
                }
            }
        }
        None => {
            let _ = writeln!(out, "workspace: n/a (not a complete sampler artifact)");
        }
    }
    Ok(out)
}

/// What [`runtime_posterior`] returns.
#[derive(Clone, Debug)]
pub struct RuntimePosterior {
    /// Pointwise posterior mean, physical units, `n * n`.
    pub mean: Vec<f32>,
    /// Pointwise posterior standard deviation (population), `n * n`.
    pub std: Vec<f32>,
    /// The sampler's counters, summed over the samples.
    pub stats: SampleStats,
}

/// Runs the runtime's reduced-step DAPS on the host: `samples` posterior
/// samples from `seed` for the readings `obs` (nodes and noise level as
/// given), reduced to mean and std. Bit-identical to the device run, and
/// refuses what the device refuses: a reading outside the artifact's range
/// (`DataParams::reading_range`) is an error naming the sensor as the
/// host's warnings do (1-based, with its position), the range and the rule.
pub fn runtime_posterior(bytes: &[u8], obs: &Observations, samples: usize, seed: u64) -> Result<RuntimePosterior> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact: {e}"))?;
    ensure!(obs.n == art.n(), "readings on a {0}x{0} grid, the artifact is for {1}x{1}", obs.n, art.n());
    let mut sensors = Sensors::new(Grid::new(art.n())?);
    for (k, (&node, &value)) in obs.nodes.iter().zip(&obs.values).enumerate() {
        sensors.push_node(node, value as f32).with_context(|| format!("sensor {k}"))?;
    }
    let need = art.workspace_len().ok_or_else(|| anyhow!("the artifact lacks a section the sampler needs"))?;
    let mut ws = vec![0.0f32; need];
    let n2 = art.n() * art.n();
    let (mut mean, mut std) = (vec![0.0f32; n2], vec![0.0f32; n2]);
    let stats = sampler::posterior(&art, &sensors, obs.noise_sigma as f32, seed, samples, &mut mean, &mut std, &mut ws)
        .map_err(|e| match e {
            RuntimeError::ReadingOutOfRange { index, value, min, max } if index < obs.len() => {
                let (x, y) = obs.xy(index);
                let d = art.data();
                anyhow!(
                    "sensor {} at x = {x:.3}, y = {y:.3} reads {value:.4e}, outside the range the artifact accepts, \
                     [{min:.4e}, {max:.4e}] (its training data's u in [{:.4e}, {:.4e}], widened by {} range-width \
                     and {} noise levels on each side): check the units and the problem",
                    index + 1,
                    d.u_min,
                    d.u_max,
                    ddis_runtime::artifact::READING_MARGIN,
                    ddis_runtime::artifact::NOISE_MARGIN
                )
            }
            e => anyhow!(e),
        })?;
    Ok(RuntimePosterior { mean, std, stats })
}

/// [`runtime_posterior`] without the counters: `(mean, std)`.
pub fn runtime_reconstruct(
    bytes: &[u8],
    obs: &Observations,
    samples: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let p = runtime_posterior(bytes, obs, samples, seed)?;
    Ok((p.mean, p.std))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_budget_warns_only_past_its_limits() {
        // The shipped image's sizes fit (311 570 B, 210 144 B of workspace, 32 x 32).
        assert!(budget_check(311_570, Some(210_144), 32).is_empty());
        let flash = budget_check(DEVICE_FLASH_BYTES - FIRMWARE_CODE_BYTES + 1, None, 32);
        assert_eq!(flash.len(), 1);
        assert!(flash[0].contains("flash"), "{flash:?}");
        let ram = budget_check(1000, Some(DEVICE_RAM_BYTES), 32);
        assert_eq!(ram.len(), 1);
        assert!(ram[0].contains("RAM") && ram[0].contains("--max-sensors"), "{ram:?}");
    }

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
        assert_eq!(width, DeviceStep::DEFAULT_NOISE_WIDTH as f32, "shipped with the default");
        assert_eq!(with_noise_width(&wide, f64::from(width)).unwrap(), shipped, "back to the shipped bytes");
        let err = with_noise_width(&shipped, 20.0).unwrap_err().to_string();
        assert!(err.contains("noise_width"), "{err}");
    }
}
