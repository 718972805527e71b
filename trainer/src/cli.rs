//! The `ddis` command line: the arguments of every command, their help
//! texts and defaults, and nothing else. What each command does is in
//! the `commands` module (one function per command, each a thin shell over
//! library functions, so everything the CLI does is also reachable and
//! tested from Rust); `commands::run` dispatches a parsed [`Cli`].

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::eval::Physics;
use crate::export::{DeviceStep, Quant};
use crate::grf::GrfConfig;
use crate::model::denoiser::{DenoiserConfig, EdmConfig};
use crate::model::fno::FnoConfig;
use crate::model::unet::UnetConfig;
use crate::pde::{DarcyConfig, PdeConfig, PdeKind};
use crate::sample::{DapsConfig, DpsConfig};
use crate::train::TrainConfig;
use crate::train::backend::BackendKind;

/// Posterior samples drawn by default wherever a posterior is drawn
/// (`demo`, `reconstruct`, `eval`, `device`).
pub const DEFAULT_SAMPLES: usize = 4;

/// ddis — Decoupled Diffusion Inverse Solver.
///
/// Reconstructs a physical field from a few sensor readings with a diffusion
/// prior and a neural-operator model of the PDE.
#[derive(Debug, Parser)]
#[command(name = "ddis", version, long_about = None)]
pub struct Cli {
    /// Hide progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate PDE datasets and solve user fields.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train the FNO surrogate, the diffusion prior or the joint baseline.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Relative L2 of a trained surrogate on every sample of a dataset (any resolution).
    EvalOperator(EvalOperatorArgs),
    /// Reconstruct a field from sensor readings (posterior mean, std, panel).
    Reconstruct(ReconstructArgs),
    /// Evaluate samplers on held-out cases: results.md, results.csv and panels.
    Eval(EvalArgs),
    /// Write the device artifact (prior + surrogate + reduced DAPS schedule), int8 or f32.
    Export(ExportArgs),
    /// Print what an artifact holds: kind, shapes, sizes, workspace bytes, CRC state.
    Inspect(InspectArgs),
    /// The main job: a fresh ground truth (or your readings), reconstructed by the device runtime.
    Demo(DemoArgs),
    /// Reconstruct on the device: the firmware under QEMU (--qemu) or a board (--serial); Ctrl-C cancels it.
    Device(DeviceArgs),
}

/// Arguments of `ddis device`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Boot the firmware in QEMU and talk to it over its emulated UART.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    pub qemu: bool,
    /// A real board's serial port (e.g. /dev/ttyACM0).
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// QEMU machine (mps2-an386: Cortex-M4F; mps2-an500: Cortex-M7).
    #[arg(long, default_value = crate::board::DEFAULT_MACHINE)]
    pub machine: String,
    /// Firmware ELF (build it with `cd firmware && cargo build --release`).
    #[arg(long, default_value = crate::board::DEFAULT_ELF)]
    pub elf: PathBuf,
    /// Sensor readings: CSV `x,y,value` or .npy [K, 3].
    #[arg(long)]
    pub obs: PathBuf,
    /// Standard deviation of the reading noise (physical units).
    #[arg(long = "noise-std", alias = "noise", default_value_t = 0.0)]
    pub noise: f64,
    /// Output folder: mean.npy, std.npy, readings.csv, panel.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the device sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Posterior samples (mean and std are over these; the device serves at most 16 per request).
    #[arg(long, default_value_t = DEFAULT_SAMPLES as u8)]
    pub samples: u8,
    /// Replace --out even if ddis did not write it.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the reconstruction.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// Arguments of `ddis export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Prior run [default: the shipped host prior for --pde, models/host/<pde>32-prior]
    #[arg(long)]
    pub prior: Option<PathBuf>,
    /// Problem of the shipped host models used when --prior / --operator are not given.
    #[arg(long, default_value = "darcy")]
    pub pde: PdeKind,
    /// Surrogate run: the forward model with `--physics surrogate`; with
    /// `--physics solver` only its `u` spread is used (the readings' unit
    /// floor), else that spread is read from the prior's dataset.
    /// [default with `--physics surrogate`: the shipped models/host/<pde>32-op-p100]
    #[arg(long)]
    pub operator: Option<PathBuf>,
    /// Forward model the device guides with: the trained surrogate, or
    /// exact finite-difference physics of the prior's PDE (banded direct
    /// solves on the device; no surrogate in the artifact).
    #[arg(long, value_enum, default_value_t = Physics::Surrogate)]
    pub physics: Physics,
    /// Inner step of each annealing level on the device.
    #[arg(long, value_enum, default_value_t = crate::export::StepKind::Langevin)]
    pub step: crate::export::StepKind,
    /// Most sensors one request may bring (sizes the device's sensor-space
    /// memory for the Gauss-Newton step and exact physics).
    #[arg(long, default_value_t = 100)]
    pub max_sensors: usize,
    /// Gauss-Newton prior spread per level as a multiple of the EDM
    /// `c_out(sigma)` (the denoiser's own error scale).
    #[arg(long, default_value_t = 1.0)]
    pub r_scale: f64,
    /// The share of the readings' noise in the device's likelihood width:
    /// `max(tau, noise_width * noise / RMS)`; 1 is the noise's own width,
    /// 0 ignores the noise (0.1: tuned on Darcy validation cases at 1 % and
    /// 5 % noise, docs/results.md).
    #[arg(long, default_value_t = DeviceStep::DEFAULT_NOISE_WIDTH)]
    pub noise_width: f64,
    /// Output artifact (e.g. models/darcy32.ddis).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight storage.
    #[arg(long, value_enum, default_value_t = Quant::Int8)]
    pub quant: Quant,
    /// Grid of the artifact [default: the prior's training grid]
    #[arg(long)]
    pub res: Option<usize>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub sampler_args: SamplerArgs,
}

/// Arguments of `ddis inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The artifact.
    pub artifact: PathBuf,
}

/// Arguments of `ddis demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// PDE of the truth drawn for the demo [default: the artifact's problem, else darcy]
    #[arg(long)]
    pub pde: Option<PdeKind>,
    /// Artifact [default: the shipped models/<pde>32.ddis, found from any folder; $DDIS_MODELS overrides]
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    /// Reconstruct these readings (CSV `x,y,value` or .npy [K, 3]) instead of a fresh truth.
    #[arg(long)]
    pub obs: Option<PathBuf>,
    /// Sensors on the fresh truth (random interior nodes).
    #[arg(long, default_value_t = 31)]
    pub sensors: usize,
    /// Posterior samples (mean and std are over these).
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    pub samples: usize,
    /// Seed of the truth, the sensors and the sampler: each seed is another case (3, the default, is a typical one; errors vary from case to case).
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// Standard deviation of the reading noise (physical units).
    #[arg(long = "noise-std", alias = "noise", default_value_t = 0.0)]
    pub noise: f64,
    /// Output folder: panel.png, mean.npy, std.npy, truth.npy, readings.csv, run.json (replaced whole on every run).
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Replace --out even if ddis did not write it.
    #[arg(long)]
    pub force: bool,
}

/// Sampler knobs shared by `reconstruct` and `eval` (defaults in docs/results.md).
#[derive(Debug, Args)]
pub struct SamplerArgs {
    /// DAPS schedule ANNEALINGxODExLANGEVIN for `--sampler daps` / DAPS methods [default: the full schedule]
    #[arg(long)]
    pub schedule: Option<String>,
    /// DAPS likelihood width tau, relative to the RMS of the readings [default: per schedule]
    #[arg(long = "likelihood-width", alias = "tau")]
    pub tau: Option<f64>,
    /// DAPS Langevin step size at the first level (capped by lr_cap * sigma^2)
    #[arg(long = "langevin-step", alias = "lr")]
    pub lr: Option<f64>,
    /// DAPS highest annealing level
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// DPS steps
    #[arg(long)]
    pub dps_steps: Option<usize>,
    /// DPS guidance weight zeta
    #[arg(long)]
    pub zeta: Option<f64>,
    /// DPS with Heun (second-order) steps of the ODE instead of Euler: one more denoiser call per step
    #[arg(long)]
    pub dps_heun: bool,
}

impl SamplerArgs {
    /// The DAPS and DPS settings after the overrides; `lite` starts from the
    /// reduced-step schedule.
    pub fn configs(&self, lite: bool) -> Result<(DapsConfig, DpsConfig)> {
        let mut daps = if lite { DapsConfig::reduced() } else { DapsConfig::full() };
        if let Some(s) = &self.schedule {
            daps = daps.with_steps(s)?;
        }
        if let Some(v) = self.tau {
            daps.tau = v;
        }
        if let Some(v) = self.lr {
            daps.lr = v;
        }
        let mut dps = DpsConfig::default_for_budget(self.dps_steps.unwrap_or(DpsConfig::DEFAULT_STEPS));
        if let Some(v) = self.sigma_max {
            daps.sigma_max = v;
            dps.sigma_max = v;
        }
        if let Some(v) = self.zeta {
            dps.zeta = v;
        }
        dps.heun = self.dps_heun;
        daps.validate()?;
        dps.validate()?;
        Ok((daps, dps))
    }
}

/// The sampler of `ddis reconstruct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerKind {
    /// DAPS with the full host schedule.
    Daps,
    /// DAPS with the reduced-step device schedule.
    DapsLite,
    /// DPS (gradient through the denoiser).
    Dps,
}

/// Arguments of `ddis reconstruct`.
#[derive(Debug, Args)]
pub struct ReconstructArgs {
    /// Prior run (`ddis train prior`) [default: the shipped prior for --pde]
    #[arg(long)]
    pub prior: Option<PathBuf>,
    /// Problem of the shipped models used when --prior is not given.
    #[arg(long, default_value = "darcy")]
    pub pde: PdeKind,
    /// Run the device runtime on this artifact (`ddis export`) instead of the burn host sampler.
    #[arg(long, conflicts_with_all = ["prior", "operator", "joint", "sampler", "physics", "backend", "gpu"])]
    pub artifact: Option<PathBuf>,
    /// Surrogate run (`ddis train operator`) for `--physics surrogate` [default: the shipped 100 %-pairs surrogate for the prior's problem]
    #[arg(long)]
    pub operator: Option<PathBuf>,
    /// Sample the joint baseline of this run instead of prior + physics.
    #[arg(long, conflicts_with_all = ["prior", "operator"])]
    pub joint: Option<PathBuf>,
    /// Sensor readings: CSV with header `x,y,value` (x, y in [0,1]) or .npy [K, 3].
    #[arg(long)]
    pub obs: PathBuf,
    /// Output folder: mean.npy, std.npy, samples.npy, readings.csv, panel.png, run.json (replaced whole).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out even if ddis did not write it.
    #[arg(long)]
    pub force: bool,
    /// Sampler.
    #[arg(long, value_enum, default_value_t = SamplerKind::Daps)]
    pub sampler: SamplerKind,
    /// Posterior samples (mean and std are over these).
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    pub samples: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Standard deviation of the reading noise (physical units).
    #[arg(long = "noise-std", alias = "noise", default_value_t = 0.0)]
    pub noise: f64,
    /// Guide through the trained surrogate or the exact finite-difference solver.
    #[arg(long, value_enum, default_value_t = Physics::Surrogate)]
    pub physics: Physics,
    #[command(flatten)]
    pub sampler_args: SamplerArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Arguments of `ddis eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// PDE of the runs and data: darcy, poisson or helmholtz.
    #[arg(long)]
    pub pde: PdeKind,
    /// Grid of the runs and data.
    #[arg(long, default_value_t = 32)]
    pub res: usize,
    /// Held-out cases (the first ones of the test split).
    #[arg(long, default_value_t = 100)]
    pub cases: usize,
    /// Sensors per case (random interior nodes).
    #[arg(long, default_value_t = 31)]
    pub sensors: usize,
    /// Methods, comma-separated, each `NAME[+key=value...]`: ddis-daps, ddis-dps, joint-dps, joint-daps, device (needs --artifact), exact (Poisson, Helmholtz), prior (the no-guidance ablation); keys: schedule, tau, lr, lr_min_ratio, lr_cap, sigma_max, steps, zeta, heun=1 for Heun DPS steps.
    #[arg(long, default_value = "ddis-daps,ddis-dps,joint-dps,joint-daps")]
    pub methods: String,
    /// Paired-data fractions of the surrogate and joint runs, comma-separated.
    #[arg(long = "paired-fraction", alias = "paired", default_value = "1.0")]
    pub paired: String,
    /// Posterior samples per case.
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    pub samples: usize,
    /// Cases per sampler batch.
    #[arg(long, default_value_t = 25)]
    pub batch_cases: usize,
    /// Standard deviation of the reading noise (physical units).
    #[arg(long = "noise-std", alias = "noise", default_value_t = 0.0)]
    pub noise: f64,
    /// Physics of the decoupled methods.
    #[arg(long, value_enum, default_value_t = Physics::Surrogate)]
    pub physics: Physics,
    /// Seed of sensors, reading noise and samplers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate on validation cases (for tuning) instead of test cases.
    #[arg(long)]
    pub validation: bool,
    /// Folder holding the trained runs (found by their config) [default: ./runs, then the shipped models/host]
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Dataset (default: the prior run's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Cases with a PNG panel per method.
    #[arg(long, default_value_t = 3)]
    pub panels: usize,
    /// Report folder (replaced whole; run.json records the settings).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out even if ddis did not write it.
    #[arg(long)]
    pub force: bool,
    /// Artifact for the `device` method (the no_std runtime) [default: the shipped models/<pde><res>.ddis]
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    #[command(flatten)]
    pub sampler_args: SamplerArgs,
    /// Where the burn methods run (`device` and `exact` run on the CPU regardless).
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Where a command runs its models: `--backend` and `--gpu`, shared by
/// every command that runs one (`train`, `reconstruct`, `eval`,
/// `eval-operator`).
#[derive(Clone, Copy, Debug, Args)]
pub struct BackendArgs {
    /// Compute backend: cpu (burn-ndarray), or cuda (burn-cuda; needs a build
    /// with `--features cuda`, the NVIDIA driver and NVRTC).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// The CUDA device to run on, by its index (0 = the first GPU, as
    /// nvidia-smi counts them unless CUDA_VISIBLE_DEVICES renumbers them)
    /// [default: 0]; needs --backend cuda.
    #[arg(long, value_name = "INDEX")]
    pub gpu: Option<usize>,
}

/// `ddis train ...`
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// The FNO forward surrogate a -> u, on the paired subset (relative L2 loss).
    Operator(TrainOperatorArgs),
    /// The function-space diffusion prior over a (EDM, smooth noise), on every training sample.
    Prior(TrainPriorArgs),
    /// The joint (a, u) diffusion baseline, on the paired subset only.
    Joint(TrainJointArgs),
}

/// Arguments of `ddis train prior`.
#[derive(Debug, Args)]
pub struct TrainPriorArgs {
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// The denoiser network.
    #[arg(long, value_enum, default_value_t = Arch::Fno)]
    pub arch: Arch,
    /// Unconditional samples drawn after training to compare with the data.
    #[arg(long, default_value_t = 64)]
    pub stat_samples: usize,
}

/// Arguments of `ddis train joint`.
#[derive(Debug, Args)]
pub struct TrainJointArgs {
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// Fraction of the dataset's pairs to train on (0 < F <= 1; 0.01 of 10 000 = 100 pairs).
    #[arg(long, default_value_t = 1.0)]
    pub paired_fraction: f64,
    /// The denoiser network.
    #[arg(long, value_enum, default_value_t = Arch::Fno)]
    pub arch: Arch,
}

/// The diffusion models' denoiser network (recorded in the run's
/// config.json, so every command that loads the run builds the same one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// FNO-type operator denoiser with FiLM noise conditioning (what the device runs).
    Fno,
    /// Small U-shaped convolutional denoiser (GroupNorm, SiLU, residual blocks,
    /// skip concatenation; host only; --size device: widths 16/32/32, host: 32/64/64).
    Unet,
}

/// Model size presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// Small enough for the int8 device artifact (prior + surrogate <= 1 MiB).
    Device,
    /// Larger, for the host samplers.
    Host,
}

/// Options shared by every `ddis train` command.
#[derive(Debug, Args)]
pub struct CommonTrainArgs {
    /// Dataset directory (from `ddis data gen`).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory (config, split, checkpoints, model, loss curves).
    #[arg(long)]
    pub out: PathBuf,
    /// Model size preset (a named model config; --model-config keys override it).
    #[arg(long, value_enum, default_value_t = Size::Device)]
    pub size: Size,
    /// JSON model settings laid over the --size preset, in the form of the run's
    /// config.json "model", every key optional: e.g. {"width": 8, "modes": 4,
    /// "layers": 2} for `operator`, {"denoiser": {"width": 8, "modes": 4}} for
    /// `prior`/`joint`. Unknown keys, zero sizes and modes the grid cannot
    /// carry are errors; "normalization" is ignored (fitted on the data).
    #[arg(long, value_name = "FILE.json")]
    pub model_config: Option<PathBuf>,
    /// Optimiser steps. With --resume, a new value (not below the step the run
    /// reached) re-plans the rest of the run: the learning rate continues from
    /// its value at the resume step and decays by a cosine to 1 % of --lr at
    /// the new end; the warm-up stays the run's.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate (Adam; warm-up then cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the weights, batches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the train/validation/test split (keep it equal across models of one dataset).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Steps between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Keep an exponential moving average of the weights with this decay
    /// (e.g. 0.999; 0 = off). The decay ramps up as min(DECAY, (1+t)/(10+t))
    /// after t steps; validation and the final model.bin use the average, and
    /// checkpoints hold it, so --resume stays exact.
    #[arg(long, value_name = "DECAY", default_value_t = 0.0)]
    pub ema: f64,
    /// Scale the gradient down to this global L2 norm (all parameters
    /// together) when it is larger (e.g. 1.0; 0 = off).
    #[arg(long, value_name = "NORM", default_value_t = 0.0)]
    pub grad_clip: f64,
    /// Show each training sample under a random one of the 8 flips and
    /// transposes of the square (d8; the same one for a and u of a pair):
    /// the data laws and PDEs of every dataset here are invariant under them.
    #[arg(long, value_enum, default_value_t = crate::train::Augment::None)]
    pub augment: crate::train::Augment,
    /// Continue the run in --out from its last checkpoint. Every other option
    /// must match the run's; only --steps may change (see --steps). At the
    /// same --steps the result is bit for bit an uninterrupted run's.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Stop after this many steps as if killed (tests of --resume).
    #[arg(long, hide = true)]
    pub halt_after: Option<usize>,
}

impl CommonTrainArgs {
    pub(crate) fn session(&self, progress: bool) -> crate::train::Session {
        crate::train::Session { resume: self.resume, progress, halt_after: self.halt_after }
    }

    /// The training knobs of a new run; on `--resume` the run's recorded
    /// warm-up, log interval and extensions replace the derived ones.
    pub(crate) fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            warmup: (self.steps / 20).clamp(1, 200),
            log_every: (self.steps / 100).clamp(1, 100),
            extensions: Vec::new(),
            ema: self.ema,
            grad_clip: self.grad_clip,
            augment: self.augment,
        }
    }

    /// The surrogate's settings: the `--size` preset under `--model-config`.
    pub(crate) fn fno_config(&self) -> Result<FnoConfig> {
        let preset = match self.size {
            Size::Device => FnoConfig::device(),
            Size::Host => FnoConfig::host(),
        };
        self.model_config(preset, |mut c| {
            c.normalization = crate::model::fno::Normalization::identity();
            c.validate().map(|()| c)
        })
    }

    /// The diffusion model's settings for `channels` data channels: the
    /// `--arch` and `--size` preset under `--model-config`.
    pub(crate) fn edm_config(&self, arch: Arch, channels: usize) -> Result<EdmConfig> {
        let preset = EdmConfig::new(match (arch, self.size) {
            (Arch::Fno, Size::Device) => DenoiserConfig::device(channels).into(),
            (Arch::Fno, Size::Host) => DenoiserConfig::host(channels).into(),
            (Arch::Unet, Size::Device) => UnetConfig::device(channels).into(),
            (Arch::Unet, Size::Host) => UnetConfig::host(channels).into(),
        });
        self.model_config(preset, |mut c| {
            c.normalization = crate::model::denoiser::ChannelNorm::identity();
            c.validate().map(|()| c)
        })
    }

    /// `preset` with the keys of `--model-config` laid over it, then checked
    /// by `check` (which also drops the fitted normalisation).
    fn model_config<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        preset: T,
        check: impl FnOnce(T) -> Result<T, crate::error::Error>,
    ) -> Result<T> {
        let Some(file) = &self.model_config else {
            return Ok(preset);
        };
        let cfg = crate::train::model_config(&preset, file)?;
        check(cfg).map_err(|e| anyhow::anyhow!("--model-config {}: {e}", file.display()))
    }
}

/// Arguments of `ddis train operator`.
#[derive(Debug, Args)]
pub struct TrainOperatorArgs {
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// Fraction of the dataset's pairs to train on (0 < F <= 1; 0.01 of 10 000 = 100 pairs).
    #[arg(long, default_value_t = 1.0)]
    pub paired_fraction: f64,
}

/// Arguments of `ddis eval-operator`.
#[derive(Debug, Args)]
pub struct EvalOperatorArgs {
    /// Operator run directory.
    #[arg(long)]
    pub operator: PathBuf,
    /// Dataset directory (any resolution the model supports).
    #[arg(long)]
    pub data: PathBuf,
    /// Score only the run's test split (its split.json; --data must be the
    /// run's dataset): the figure `ddis train operator` reported, now on
    /// this backend.
    #[arg(long)]
    pub test_split: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `ddis data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset: DIR/a.npy, DIR/u.npy ([count, res, res] float32) and DIR/meta.json.
    Gen(GenArgs),
    /// Solve the PDE for fields you bring: IN.npy ([res, res] or [count, res, res]) -> OUT.npy.
    Solve(SolveArgs),
    /// Make a dataset of fields you bring (solving them unless you bring the solutions too).
    Import(ImportArgs),
}

/// Arguments of `ddis data import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Input fields, [count, res, res] .npy (float32 or float64): a for Darcy (two values), f otherwise.
    #[arg(long)]
    pub fields: PathBuf,
    /// Their solutions u, same shape [default: solve them with ddis's finite-difference solver]
    #[arg(long)]
    pub solutions: Option<PathBuf>,
    /// Output dataset directory (a.npy, u.npy, meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing dataset at --out.
    #[arg(long)]
    pub force: bool,
}

/// The PDE and its parameters, shared by `gen` and `solve`.
#[derive(Debug, Args)]
pub struct PdeArgs {
    /// darcy (-div(a grad u) = 1), poisson (Laplacian u = f) or helmholtz (Laplacian u + k^2 u = f).
    #[arg(long, default_value = "darcy")]
    pub pde: PdeKind,
    /// Helmholtz wavenumber k.
    #[arg(long, default_value_t = 1.0)]
    pub k: f64,
}

/// Arguments of `ddis data gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Grid nodes per side, boundary included.
    #[arg(long, default_value_t = 32)]
    pub res: usize,
    /// Number of samples.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Master seed (sample k uses stream k of it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// GRF smoothness alpha of the covariance (-Laplacian + tau^2)^(-alpha).
    #[arg(long = "grf-alpha", alias = "alpha", default_value_t = 2.0)]
    pub alpha: f64,
    /// GRF inverse length scale tau of that covariance.
    #[arg(long = "grf-tau", alias = "tau", default_value_t = 3.0)]
    pub tau: f64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing dataset at --out.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `ddis data solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Input fields (.npy, float32 or float64): a for Darcy (any positive values), f otherwise.
    #[arg(long)]
    pub field: PathBuf,
    /// Output .npy for the solutions u (same shape as the input).
    #[arg(long)]
    pub out: PathBuf,
}

impl PdeArgs {
    pub(crate) fn config(&self, grf: GrfConfig) -> PdeConfig {
        PdeConfig { kind: self.pde, darcy: DarcyConfig::default(), helmholtz_k: self.k, grf }
    }
}
