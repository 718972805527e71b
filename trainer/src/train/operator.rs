//! Training and evaluating the FNO forward surrogate `a -> u` on the paired
//! subset of a dataset, with the relative-L2 loss.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Batch, RunConfig, RunDir, Split, Task, TrainConfig, augment};
use crate::data::Dataset;
use crate::model::fno::{Fno, FnoConfig, Normalization, rel_l2_loss};

/// Samples per forward pass when evaluating.
const EVAL_CHUNK: usize = 64;

/// What `RUN/config.json` holds for an operator run (`kind` is `"operator"`).
pub type OperatorRunConfig = RunConfig<String, FnoConfig>;

struct OperatorTask<B: AutodiffBackend> {
    data: Arc<Dataset>,
    val: Vec<usize>,
    device: B::Device,
    /// `a` and `u` of every sample on the device, `[count, n, n]` each,
    /// uploaded once: un-augmented batches are a `select`, no host work.
    resident: (Tensor<B::InnerBackend, 3>, Tensor<B::InnerBackend, 3>),
}

impl<B: AutodiffBackend> OperatorTask<B> {
    fn new(data: Arc<Dataset>, val: Vec<usize>, device: &B::Device) -> Self {
        let (count, n) = (data.len(), data.res());
        let upload = |f: &[f32]| Tensor::from_data(TensorData::new(f.to_vec(), [count, n, n]), device);
        let resident = (upload(&data.a), upload(&data.u));
        Self { data, val, device: device.clone(), resident }
    }
}

/// A batch of `field` samples as a `[b, n, n]` tensor.
fn batch_tensor<B: Backend>(data: &Dataset, field: &[f32], idx: &[usize], device: &B::Device) -> Tensor<B, 3> {
    let n = data.res();
    Tensor::from_data(TensorData::new(data.gather(field, idx), [idx.len(), n, n]), device)
}

impl<B: AutodiffBackend> Task<B> for OperatorTask<B> {
    type Model = Fno<B>;

    fn loss(&self, model: &Fno<B>, batch: &Batch, _rng: &mut ChaCha8Rng) -> Tensor<B, 1> {
        if batch.symmetries.is_empty() {
            let (a, u) = &self.resident;
            let pick = |t: &Tensor<B::InnerBackend, 3>| Tensor::from_inner(super::select_rows(t, &batch.indices));
            return rel_l2_loss(model.forward(pick(a)), pick(u));
        }
        // `a` and `u` of a sample under one symmetry: still a solution pair.
        let field = |f: &[f32]| {
            let n = self.data.res();
            let mut x = self.data.gather(f, &batch.indices);
            augment::apply_batch(&mut x, 1, n, &batch.symmetries);
            Tensor::<B, 3>::from_data(TensorData::new(x, [batch.indices.len(), n, n]), &self.device)
        };
        rel_l2_loss(model.forward(field(&self.data.a)), field(&self.data.u))
    }

    fn validate(&self, model: &Fno<B::InnerBackend>) -> f64 {
        mean_rel_l2(model, &self.data, &self.val, &self.device)
    }

    fn val_name(&self) -> &'static str {
        "val_rel_l2"
    }
}

/// Per-sample relative L2 errors of `model` on the samples `idx`.
pub fn rel_l2_errors<B: Backend>(model: &Fno<B>, data: &Dataset, idx: &[usize], device: &B::Device) -> Vec<f64> {
    let mut errors = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(EVAL_CHUNK) {
        let a = batch_tensor::<B>(data, &data.a, chunk, device);
        let pred: Vec<f32> = model.forward(a).into_data().to_vec().unwrap_or_default();
        let truth = data.gather(&data.u, chunk);
        let per = data.res() * data.res();
        for (p, t) in pred.chunks(per).zip(truth.chunks(per)) {
            errors.push(crate::metrics::rel_l2(p, t).unwrap_or(f64::NAN));
        }
    }
    errors
}

fn mean_rel_l2<B: Backend>(model: &Fno<B>, data: &Dataset, idx: &[usize], device: &B::Device) -> f64 {
    let e = rel_l2_errors(model, data, idx, device);
    e.iter().sum::<f64>() / e.len().max(1) as f64
}

/// Options of `ddis train operator`.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Dataset directory.
    pub data: std::path::PathBuf,
    /// Run directory.
    pub out: std::path::PathBuf,
    /// Fraction of the dataset's pairs to train on.
    pub paired_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
    /// Model hyper-parameters (normalisation is fitted here).
    pub model: FnoConfig,
    /// Optimisation knobs.
    pub train: TrainConfig,
    /// Resume, progress and test hooks.
    pub session: super::Session,
}

/// Figures of a finished operator run, also written to `RUN/summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperatorSummary {
    /// Trainable parameters.
    pub params: usize,
    /// Training pairs used.
    pub pairs: usize,
    /// Mean relative L2 on the test split.
    pub test_rel_l2: f64,
    /// Standard error of that mean.
    pub test_rel_l2_stderr: f64,
    /// Wall time of the training steps, seconds.
    pub train_seconds: f64,
}

/// Trains (or resumes) the surrogate and evaluates it on the test split.
pub fn train_operator<B: AutodiffBackend>(opts: &OperatorOptions, device: &B::Device) -> Result<OperatorSummary> {
    let data = Arc::new(Dataset::load(&opts.data)?);
    let split = Split::new(data.len(), opts.split_seed, opts.paired_fraction)?;
    let mut model_cfg = opts.model.clone();
    model_cfg.validate()?;
    opts.train.augment.check(&data.meta)?;
    let n = data.res();
    model_cfg.check_resolution(n).map_err(|e| {
        anyhow::anyhow!(
            "`modes` = {} does not fit the {n}x{n} grid of {} with `pad_fraction` = {}: {e}",
            model_cfg.modes,
            opts.data.display(),
            model_cfg.pad_fraction
        )
    })?;
    let pa = data.gather(&data.a, &split.paired);
    let pu = data.gather(&data.u, &split.paired);
    model_cfg.normalization = Normalization::fit(&pa, &pu);
    let mut run_cfg =
        OperatorRunConfig::new("operator".into(), &opts.data, &data, &split, model_cfg.clone(), opts.train.clone());
    let run = RunDir::create(&opts.out, &mut run_cfg, &split, opts.session.resume)?;
    let train_cfg = &run_cfg.train;

    B::seed(device, opts.train.seed);
    let model = model_cfg.init::<B>(device);
    // On another backend the weights are drawn on the CPU (see `with_cpu_weights`).
    let model = if super::backend::is_cpu::<B>() {
        model
    } else {
        let cpu = Default::default();
        super::backend::Cpu::seed(&cpu, opts.train.seed);
        super::with_cpu_weights(model, model_cfg.init::<super::backend::Cpu>(&cpu), device)?
    };
    let params = model.param_count();
    if opts.session.progress {
        eprintln!(
            "FNO ({params} parameters) on {} of {} pairs at {}x{}",
            split.paired.len(),
            data.len(),
            data.res(),
            data.res()
        );
    }
    let task = OperatorTask::<B>::new(data.clone(), split.val.clone(), device);
    let trained = super::train(&task, model, train_cfg, &run, &split.paired, &opts.session, device)?;
    let model = trained.model;
    let errors = rel_l2_errors(&model, &data, &split.test, device);
    let (mean, stderr) = crate::metrics::mean_and_stderr(&errors);
    super::save_model(&run, model)?;
    let summary = OperatorSummary {
        params,
        pairs: split.paired.len(),
        test_rel_l2: mean,
        test_rel_l2_stderr: stderr,
        train_seconds: trained.train_seconds,
    };
    std::fs::write(run.path().join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    Ok(summary)
}

/// Loads a trained surrogate from its run directory.
pub fn load_operator<B: Backend>(run: &Path, device: &B::Device) -> Result<Fno<B>> {
    load_operator_run(run, device).map(|(model, _)| model)
}

/// [`load_operator`] and the run's record (data, split, settings).
pub fn load_operator_run<B: Backend>(run: &Path, device: &B::Device) -> Result<(Fno<B>, OperatorRunConfig)> {
    let cfg: OperatorRunConfig = serde_json::from_value(RunDir::read_config(run)?)
        .with_context(|| format!("{} is not an operator run", run.display()))?;
    let model = super::load_model(run, cfg.model.init::<B>(device), device)?;
    Ok((model, cfg))
}

/// Relative L2 (mean, standard error, count) of a trained surrogate on the
/// samples `idx` of a dataset, or on every sample (for resolution
/// transfer: the same weights on another grid).
pub fn eval_operator<B: Backend>(
    run: &Path,
    data_dir: &Path,
    idx: Option<&[usize]>,
    device: &B::Device,
) -> Result<(f64, f64, usize)> {
    let model = load_operator::<B>(run, device)?;
    let data = Dataset::load(data_dir)?;
    let cfg: OperatorRunConfig = serde_json::from_value(RunDir::read_config(run)?)?;
    cfg.model.check_resolution(data.res()).map_err(anyhow::Error::msg)?;
    let all: Vec<usize>;
    let idx = match idx {
        Some(idx) => {
            anyhow::ensure!(idx.iter().all(|&k| k < data.len()), "a sample index is past the {} samples", data.len());
            idx
        }
        None => {
            all = (0..data.len()).collect();
            &all
        }
    };
    let errors = rel_l2_errors(&model, &data, idx, device);
    let (m, s) = crate::metrics::mean_and_stderr(&errors);
    Ok((m, s, idx.len()))
}
