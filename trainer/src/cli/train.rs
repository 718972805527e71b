//! The arguments of `ddis train operator | prior | joint`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::BackendArgs;

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

/// Arguments of `ddis train operator`.
#[derive(Debug, Args)]
pub struct TrainOperatorArgs {
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// Fraction of the dataset's pairs to train on (0 < F <= 1; 0.01 of 10 000 = 100 pairs).
    #[arg(long, default_value_t = 1.0)]
    pub paired_fraction: f64,
}
