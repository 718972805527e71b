//! `ddis train operator | prior | joint` and `ddis eval-operator`: the
//! training knobs and model settings from the arguments, the run, its summary.

use anyhow::{Context, Result};
use burn::backend::Autodiff;

use crate::cli::{Arch, CommonTrainArgs, EvalOperatorArgs, Size, TrainOperatorArgs};
use crate::model::denoiser::{DenoiserConfig, EdmConfig};
use crate::model::fno::FnoConfig;
use crate::model::unet::UnetConfig;
use crate::train::TrainConfig;
use crate::train::backend::on_backend;
use crate::train::diffusion::{DiffusionKind, DiffusionOptions, train_diffusion};
use crate::train::operator::{OperatorOptions, OperatorSummary, train_operator};

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

/// `ddis train prior` and `ddis train joint`.
pub(crate) fn train_diffusion_cmd(
    kind: DiffusionKind,
    c: &CommonTrainArgs,
    arch: Arch,
    paired_fraction: f64,
    stat_samples: usize,
    progress: bool,
) -> Result<()> {
    let opts = DiffusionOptions {
        kind,
        data: c.data.clone(),
        out: c.out.clone(),
        paired_fraction,
        split_seed: c.split_seed,
        model: c.edm_config(arch, kind.channels())?,
        train: c.train_config(),
        stat_samples,
        session: c.session(progress),
    };
    let s = on_backend!(c.backend.backend, c.backend.gpu, |B, device| train_diffusion::<Autodiff<B>>(&opts, &device)?);
    let phase = match (s.high_phase_fraction_samples, s.high_phase_fraction_data) {
        (Some(a), Some(b)) => format!(", high phase on {:.1} % of nodes (data {:.1} %)", 100.0 * a, 100.0 * b),
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

/// `ddis train operator`.
pub(crate) fn train_operator_cmd(args: &TrainOperatorArgs, progress: bool) -> Result<()> {
    let c = &args.common;
    let opts = OperatorOptions {
        data: c.data.clone(),
        out: c.out.clone(),
        paired_fraction: args.paired_fraction,
        split_seed: c.split_seed,
        model: c.fno_config()?,
        train: c.train_config(),
        session: c.session(progress),
    };
    let s: OperatorSummary =
        on_backend!(c.backend.backend, c.backend.gpu, |B, device| train_operator::<Autodiff<B>>(&opts, &device)?);
    println!(
        "operator: {} parameters, {} pairs, test relative L2 {:.4} +- {:.4}, {:.0} s training -> {}",
        s.params,
        s.pairs,
        s.test_rel_l2,
        s.test_rel_l2_stderr,
        s.train_seconds,
        c.out.display()
    );
    Ok(())
}

/// `ddis eval-operator`: refuses a dataset of another problem.
pub(crate) fn eval_operator(args: &EvalOperatorArgs) -> Result<()> {
    let cfg: crate::train::operator::OperatorRunConfig =
        serde_json::from_value(crate::train::run::RunDir::read_config(&args.operator)?)
            .with_context(|| format!("{} is not an operator run", args.operator.display()))?;
    let meta = crate::data::DatasetMeta::load(&args.data)?;
    crate::eval::ensure_same_problem(
        ("the surrogate", &args.operator, &cfg.data_meta),
        ("the dataset", &args.data, &meta),
    )?;
    let split = if args.test_split { Some(crate::train::run::RunDir::read_split(&args.operator)?) } else { None };
    let samples = match &split {
        Some(split) => {
            anyhow::ensure!(
                meta.count == cfg.data_meta.count && meta.res == cfg.data_meta.res,
                "--test-split: {} is not the run's dataset ({} samples at {}x{}; the run's has {} at {}x{})",
                args.data.display(),
                meta.count,
                meta.res,
                meta.res,
                cfg.data_meta.count,
                cfg.data_meta.res,
                cfg.data_meta.res
            );
            Some(split.test.as_slice())
        }
        None => None,
    };
    let (mean, stderr, count) = on_backend!(args.backend.backend, args.backend.gpu, |B, device| {
        crate::train::operator::eval_operator::<B>(&args.operator, &args.data, samples, &device)?
    });
    let which = if args.test_split { "test samples" } else { "samples" };
    println!("relative L2 {mean:.4} +- {stderr:.4} over {count} {which} of {}", args.data.display());
    Ok(())
}
