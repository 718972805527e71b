//! The `ddis` command line: the arguments of every command, their help
//! texts and defaults, and nothing else (`train` and `data` hold those of
//! their subcommands). What each command does is in the `commands` module
//! (one function per command, each a thin shell over library functions, so
//! everything the CLI does is also reachable and tested from Rust);
//! `commands::run` dispatches a parsed [`Cli`].

pub mod data;
pub mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::eval::Physics;
use crate::export::Quant;
use crate::pde::PdeKind;
use crate::train::backend::BackendKind;
pub use data::{DataCommand, GenArgs, ImportArgs, PdeArgs, SolveArgs};
pub use train::{Arch, CommonTrainArgs, Size, TrainCommand, TrainJointArgs, TrainOperatorArgs, TrainPriorArgs};

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
    #[arg(long, default_value_t = crate::sample::DapsConfig::DEFAULT_NOISE_WIDTH)]
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
    /// Methods, comma-separated, each `NAME[+key=value...]`: ddis-daps, ddis-dps, joint-dps, joint-daps, device (needs --artifact), exact (Poisson, Helmholtz), prior (the no-guidance ablation); keys: schedule, tau, lr, lr_min_ratio, lr_cap, sigma_max, precondition, noise_step, noise_width, step=gn (Gauss-Newton conditional step; schedule's inner count = its iterations), r_scale, prior=exact (ddis-daps on the exact Gaussian prior's denoiser instead of the trained network; Poisson, Helmholtz), steps, zeta, heun=1 for Heun DPS steps.
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
