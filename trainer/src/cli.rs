//! The `ddis` command line: argument parsing and dispatch.
//!
//! Each subcommand is a thin shell over a library function, so everything the
//! CLI does is also reachable (and tested) from Rust.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::data::{self, GenOptions};
use crate::grf::GrfConfig;
use crate::model::denoiser::{DenoiserConfig, EdmConfig};
use crate::model::fno::FnoConfig;
use crate::pde::{DarcyConfig, PdeConfig, PdeKind};
use crate::train::TrainConfig;
use crate::train::backend::{BackendKind, Cpu, CpuAutodiff};
use crate::train::diffusion::{DiffusionKind, DiffusionOptions, train_diffusion};
use crate::train::operator::{OperatorOptions, OperatorSummary, train_operator};

/// Calls the training function `$f::<B>($opts, &device)` on the backend
/// chosen by `--backend` (a generic function cannot be passed as a value).
macro_rules! on_backend {
    ($kind:expr, $f:ident, $opts:expr) => {
        match $kind {
            BackendKind::Ndarray => $f::<CpuAutodiff>($opts, &Default::default())?,
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => {
                let device = crate::train::backend::cuda_device()?;
                $f::<crate::train::backend::CudaAutodiff>($opts, &device)?
            }
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => return crate::train::backend::cuda_unavailable(),
        }
    };
}

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
}

/// `ddis train ...`
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// The FNO forward surrogate a -> u, on the paired subset (relative L2 loss).
    Operator(TrainOperatorArgs),
    /// The function-space diffusion prior over a (EDM, smooth noise), on every training sample.
    Prior(TrainPriorArgs),
    /// The joint (a, u) diffusion baseline, on the paired subset only.
    Joint(TrainOperatorArgs),
}

/// Arguments of `ddis train prior`.
#[derive(Debug, Args)]
pub struct TrainPriorArgs {
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// Unconditional samples drawn after training to compare with the data.
    #[arg(long, default_value_t = 64)]
    pub stat_samples: usize,
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
    /// Model size preset.
    #[arg(long, value_enum, default_value_t = Size::Device)]
    pub size: Size,
    /// Optimiser steps.
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
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// Stop after this many steps as if killed (tests of --resume).
    #[arg(long, hide = true)]
    pub halt_after: Option<usize>,
}

impl CommonTrainArgs {
    fn session(&self, progress: bool) -> crate::train::Session {
        crate::train::Session { resume: self.resume, progress, halt_after: self.halt_after }
    }

    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            warmup: (self.steps / 20).clamp(1, 200),
            log_every: (self.steps / 100).clamp(1, 100),
        }
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
}

/// `ddis data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset: DIR/a.npy, DIR/u.npy ([count, res, res] float32) and DIR/meta.json.
    Gen(GenArgs),
    /// Solve the PDE for fields you bring: IN.npy ([res, res] or [count, res, res]) -> OUT.npy.
    Solve(SolveArgs),
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
    #[arg(long, default_value_t = 2.0)]
    pub alpha: f64,
    /// GRF inverse length scale tau.
    #[arg(long, default_value_t = 3.0)]
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
    fn config(&self, grf: GrfConfig) -> PdeConfig {
        PdeConfig { kind: self.pde, darcy: DarcyConfig::default(), helmholtz_k: self.k, grf }
    }
}

fn train_diffusion_cmd(
    kind: DiffusionKind,
    c: &CommonTrainArgs,
    paired_fraction: f64,
    stat_samples: usize,
    progress: bool,
) -> Result<()> {
    let channels = kind.channels();
    let denoiser = match c.size {
        Size::Device => DenoiserConfig::device(channels),
        Size::Host => DenoiserConfig::host(channels),
    };
    let opts = DiffusionOptions {
        kind,
        data: c.data.clone(),
        out: c.out.clone(),
        paired_fraction,
        split_seed: c.split_seed,
        model: EdmConfig::new(denoiser),
        train: c.train_config(),
        stat_samples,
        session: c.session(progress),
    };
    let s = on_backend!(c.backend, train_diffusion, &opts);
    let phase = match (s.high_phase_fraction_samples, s.high_phase_fraction_data) {
        (Some(a), Some(b)) => format!(", a >= 7.5 on {:.1} % of nodes (data {:.1} %)", 100.0 * a, 100.0 * b),
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
        Command::Data(DataCommand::Gen(args)) => {
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
        }
        Command::Data(DataCommand::Solve(args)) => {
            let cfg = args.pde.config(GrfConfig::default());
            data::solve_file(&cfg, &args.field, &args.out, progress)?;
            eprintln!("wrote {}", args.out.display());
        }
        Command::Train(TrainCommand::Operator(args)) => {
            let c = &args.common;
            let opts = OperatorOptions {
                data: c.data.clone(),
                out: c.out.clone(),
                paired_fraction: args.paired_fraction,
                split_seed: c.split_seed,
                model: match c.size {
                    Size::Device => FnoConfig::device(),
                    Size::Host => FnoConfig::host(),
                },
                train: c.train_config(),
                session: c.session(progress),
            };
            let s: OperatorSummary = on_backend!(c.backend, train_operator, &opts);
            println!(
                "operator: {} parameters, {} pairs, test relative L2 {:.4} +- {:.4}, {:.0} s training -> {}",
                s.params,
                s.pairs,
                s.test_rel_l2,
                s.test_rel_l2_stderr,
                s.train_seconds,
                c.out.display()
            );
        }
        Command::Train(TrainCommand::Prior(args)) => {
            train_diffusion_cmd(DiffusionKind::Prior, &args.common, 1.0, args.stat_samples, progress)?
        }
        Command::Train(TrainCommand::Joint(args)) => {
            train_diffusion_cmd(DiffusionKind::Joint, &args.common, args.paired_fraction, 64, progress)?
        }
        Command::EvalOperator(args) => {
            let (mean, stderr, count) =
                crate::train::operator::eval_operator::<Cpu>(&args.operator, &args.data, &Default::default())?;
            println!("relative L2 {mean:.4} +- {stderr:.4} over {count} samples of {}", args.data.display());
        }
    }
    Ok(())
}
