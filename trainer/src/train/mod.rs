//! The training harness shared by the surrogate, the prior and the joint
//! baseline: run directories, reproducible splits, the Adam loop with a
//! cosine schedule, checkpoints, `--resume`, and loss curves (CSV and PNG).
//!
//! A model plugs in through [`Task`]: it turns a [`Batch`] of training
//! indices (with their augmentation) and a random stream into a loss. All
//! randomness of step `s` comes from the ChaCha8 stream `s` of the run seed,
//! so a resumed run replays exactly the batches, symmetries and noise of an
//! uninterrupted one. Options the field's diffusion baselines train with
//! (`--ema`, `--grad-clip`, `--augment d8`) are off by default, so runs
//! without them train bit for bit as before they existed.

pub mod augment;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod diffusion;
pub mod operator;
pub mod optim;
pub mod run;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::progress_bar;
pub use augment::{Augment, Symmetry};
use checkpoint::{CheckpointState, load_checkpoint, save_checkpoint};
pub use checkpoint::{checkpoint_step, load_model, save_model, with_cpu_weights};
pub use config::{Extension, LR_FLOOR, TrainConfig};
pub use optim::{clip_global_norm, ema_update};
pub use run::{RunConfig, RunDir, Split, model_config};

/// The random stream of training step `step`: batch indices, noise levels and
/// noise all come from here.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7472_6169_6e00_0000);
    rng.set_stream(step as u64);
    rng
}

/// `batch` indices drawn uniformly (with replacement) from `pool`.
pub fn draw_batch(pool: &[usize], batch: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    (0..batch).map(|_| pool[rng.random_range(0..pool.len())]).collect()
}

/// The samples of one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Indices into the dataset.
    pub indices: Vec<usize>,
    /// The symmetry each sample is seen under (`--augment d8`); empty
    /// without augmentation.
    pub symmetries: Vec<Symmetry>,
}

impl Batch {
    /// Un-augmented samples.
    pub fn plain(indices: Vec<usize>) -> Self {
        Self { indices, symmetries: Vec::new() }
    }
}

/// One model's training problem.
pub trait Task<B: AutodiffBackend> {
    /// The trained module.
    type Model: AutodiffModule<B> + Clone;

    /// The training loss on `batch`, each sample under its symmetry; every
    /// random draw comes from `rng`.
    fn loss(&self, model: &Self::Model, batch: &Batch, rng: &mut ChaCha8Rng) -> Tensor<B, 1>;

    /// A validation figure on held-out samples (lower is better), on the
    /// gradient-free model.
    fn validate(&self, model: &<Self::Model as AutodiffModule<B>>::InnerModule) -> f64;

    /// What `validate` measures, for the CSV header and messages.
    fn val_name(&self) -> &'static str;
}

/// One row of `loss.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LossRow {
    /// Step (1-based: after this many updates).
    pub step: usize,
    /// Mean training loss since the previous row.
    pub train_loss: f64,
    /// Validation figure at this step, if measured.
    pub val: Option<f64>,
    /// Learning rate of the step.
    pub lr: f64,
    /// Training wall time so far, seconds (summed over resumed sessions).
    pub elapsed_s: f64,
}

/// How one invocation runs, as opposed to what it trains (not recorded in
/// `config.json`).
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// Continue from the last checkpoint in the run directory.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop (as if killed) after this many steps, right after the
    /// checkpoint of that step if one falls there: a hook for tests of
    /// `--resume`.
    pub halt_after: Option<usize>,
}

/// The outcome of [`train`].
pub struct Trained<M> {
    /// The final weights, without gradients: the moving average under
    /// `--ema`, else the last optimiser iterate.
    pub model: M,
    /// The loss curve.
    pub history: Vec<LossRow>,
    /// Wall time of the training steps, seconds (all sessions of the run).
    pub train_seconds: f64,
}

/// Runs (or resumes) the Adam loop for `task` in `run`, checkpointing every
/// `checkpoint_every` steps and at the end.
///
/// Per step: draw the batch and its symmetries, compute the loss, clip the
/// gradient to a global norm (`grad_clip`), step Adam, then fold the new
/// weights into the average (`ema`). The average is checkpointed beside the
/// weights and the optimiser, so a resume continues it exactly. The loss is
/// read back from the device only at log and checkpoint steps, where a
/// non-finite one stops the run (naming its step) before anything is saved.
pub fn train<B, T>(
    task: &T,
    mut model: T::Model,
    cfg: &TrainConfig,
    run: &RunDir,
    pool: &[usize],
    session: &Session,
    device: &B::Device,
) -> Result<Trained<<T::Model as AutodiffModule<B>>::InnerModule>>
where
    B: AutodiffBackend,
    T: Task<B>,
{
    cfg.validate()?;
    anyhow::ensure!(!pool.is_empty(), "no training samples");
    let mut optim = AdamConfig::new().init::<B, T::Model>();
    let mut ema = (cfg.ema > 0.0).then(|| model.valid());
    let mut start = 0;
    let mut history: Vec<LossRow> = Vec::new();
    let progress = session.progress;
    if session.resume {
        match load_checkpoint::<B, T::Model, _>(run, model.clone(), optim.clone(), ema.clone(), device)? {
            Some(loaded) => {
                (model, optim, ema) = (loaded.model, loaded.optim, loaded.ema);
                start = loaded.state.step;
                history = loaded.state.history;
                eprintln!("resuming {} from step {start}", run.path().display());
                if let Some(e) = cfg.extensions.last().filter(|e| e.at == start) {
                    eprintln!(
                        "--steps changed from {} to {}: the learning rate continues from {:.3e} at step {start} and decays to {:.3e} at step {}",
                        e.from_steps,
                        cfg.steps,
                        cfg.lr_at(start),
                        LR_FLOOR * cfg.lr,
                        cfg.steps
                    );
                }
            }
            None => eprintln!("no checkpoint in {}; starting from step 0", run.path().display()),
        }
    }
    anyhow::ensure!(
        start <= cfg.steps,
        "--steps {} is below step {start}, which the run has already reached",
        cfg.steps
    );
    let elapsed_before = history.last().map_or(0.0, |r| r.elapsed_s);
    let t0 = Instant::now();
    let bar = progress_bar((cfg.steps - start) as u64, progress, "training");
    let (mut acc, mut acc_n, mut clipped) = (0.0f64, 0usize, 0usize);
    // Losses stay on the device until the next log step (one read-back per
    // row of loss.csv instead of one per step; summed in step order, so the
    // figures are the same).
    let mut pending: Vec<(usize, Tensor<B::InnerBackend, 1>)> = Vec::new();
    for step in start..cfg.steps {
        let mut rng = step_rng(cfg.seed, step);
        let indices = draw_batch(pool, cfg.batch, &mut rng);
        let symmetries = cfg.augment.draw(indices.len(), &mut rng);
        let loss = task.loss(&model, &Batch { indices, symmetries }, &mut rng);
        pending.push((step, loss.clone().inner()));
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if cfg.grad_clip > 0.0 {
            let norm = clip_global_norm(&model, &mut grads, cfg.grad_clip);
            clipped += usize::from(norm > cfg.grad_clip);
        }
        let lr = cfg.lr_at(step);
        model = optim.step(lr, model, grads);
        let done = step + 1;
        if let Some(avg) = ema.take() {
            ema = Some(ema_update(avg, &model.valid(), cfg.ema_decay(done)));
        }
        let checkpoint = done % cfg.checkpoint_every == 0 || done == cfg.steps;
        let log = checkpoint || (cfg.log_every > 0 && done % cfg.log_every == 0);
        if log {
            for (at, loss) in pending.drain(..) {
                let loss_value = scalar(loss);
                anyhow::ensure!(loss_value.is_finite(), "loss became {loss_value} at step {at}; lower --lr");
                acc += loss_value;
                acc_n += 1;
            }
            let val = checkpoint.then(|| match &ema {
                Some(avg) => task.validate(avg),
                None => task.validate(&model.valid()),
            });
            let row = LossRow {
                step: done,
                train_loss: acc / acc_n as f64,
                val,
                lr,
                elapsed_s: elapsed_before + t0.elapsed().as_secs_f64(),
            };
            let clip_note = if cfg.grad_clip > 0.0 {
                format!(", gradient clipped on {clipped} of {acc_n} steps")
            } else {
                String::new()
            };
            let msg = format!(
                "training loss {:.4}{}{clip_note}",
                row.train_loss,
                val.map_or(String::new(), |v| format!(" {} {v:.4}", task.val_name()))
            );
            // A log file gets plain lines where a terminal gets the bar.
            if progress && !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("step {done}/{}: {msg} ({:.0} s)", cfg.steps, row.elapsed_s);
            }
            bar.set_message(msg);
            history.push(row);
            (acc, acc_n, clipped) = (0.0, 0, 0);
        }
        if checkpoint {
            let state = CheckpointState { step: done, history: history.clone() };
            save_checkpoint::<B, _, _>(run, &model, &optim, ema.as_ref(), &state)?;
            write_curves(run.path(), &history, task.val_name())?;
        }
        bar.inc(1);
        if session.halt_after == Some(done) {
            anyhow::bail!("halted after step {done} as asked (--halt-after)");
        }
    }
    bar.finish_and_clear();
    let train_seconds = history.last().map_or(0.0, |r| r.elapsed_s);
    let model = ema.unwrap_or_else(|| model.valid());
    Ok(Trained { model, history, train_seconds })
}

/// Rows `idx` (dim 0, repeats allowed) of a device-resident tensor: one
/// `select`, the indices the only upload.
pub(crate) fn select_rows<B: Backend, const D: usize>(t: &Tensor<B, D>, idx: &[usize]) -> Tensor<B, D> {
    let idx: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let len = idx.len();
    t.clone().select(0, Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(idx, [len]), &t.device()))
}

fn scalar<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> f64 {
    let data: TensorData = t.into_data();
    data.iter::<f64>().next().unwrap_or(f64::NAN)
}

/// Writes `loss.csv` and `loss.png` from the history.
pub fn write_curves(dir: &Path, history: &[LossRow], val_name: &str) -> Result<()> {
    let mut csv = format!("step,train_loss,{val_name},lr,elapsed_s\n");
    for r in history {
        let val = r.val.map_or(String::new(), |v| format!("{v:.6e}"));
        csv.push_str(&format!("{},{:.6e},{val},{:.3e},{:.2}\n", r.step, r.train_loss, r.lr, r.elapsed_s));
    }
    std::fs::write(dir.join("loss.csv"), csv).with_context(|| format!("cannot write {}", dir.display()))?;
    let train: Vec<(f64, f64)> = history.iter().map(|r| (r.step as f64, r.train_loss)).collect();
    let val: Vec<(f64, f64)> = history.iter().filter_map(|r| r.val.map(|v| (r.step as f64, v))).collect();
    let val_label = format!("validation ({val_name})");
    crate::plot::line_chart(&dir.join("loss.png"), &[("train", &train), (&val_label, &val)], "step", "loss", true)?;
    Ok(())
}

#[cfg(test)]
mod tests;
