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
pub mod diffusion;
pub mod operator;
pub mod run;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::progress_bar;
pub use augment::{Augment, Symmetry};
pub use run::{RunConfig, RunDir, Split, model_config};

/// The learning rate every decay ends at, as a fraction of the peak `--lr`.
pub const LR_FLOOR: f64 = 0.01;

/// Knobs of the optimisation loop, written to `RUN/config.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate (Adam).
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    /// Seed of the initial weights, the split, the batches and the noise.
    pub seed: u64,
    /// Steps between checkpoints (a final one is always written).
    pub checkpoint_every: usize,
    /// Steps between validation evaluations (0: only at checkpoints).
    pub log_every: usize,
    /// Every change of `--steps` on `--resume`, oldest first; empty for a run
    /// that kept its first step count (and absent from its `config.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    /// Decay of the exponential moving average of the weights (`--ema`; 0:
    /// off, and absent from `config.json`). With it, validation and the
    /// final `model.bin` use the average (see [`TrainConfig::ema_decay`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ema: f64,
    /// Largest global L2 norm of the gradient, all parameters together
    /// (`--grad-clip`; 0: no clipping, and absent from `config.json`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grad_clip: f64,
    /// Augmentation of the training samples (`--augment`; absent from
    /// `config.json` when none).
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A change of the step count on `--resume`: the cosine decay is re-planned
/// from step `at` on (see [`TrainConfig::lr_at`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extension {
    /// The step the run had reached (its checkpoint) when `--steps` changed.
    pub at: usize,
    /// The step count before the change.
    pub from_steps: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch: 16,
            lr: 1e-3,
            warmup: 50,
            seed: 0,
            checkpoint_every: 500,
            log_every: 50,
            extensions: Vec::new(),
            ema: 0.0,
            grad_clip: 0.0,
            augment: Augment::None,
        }
    }
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based): linear warm-up over
    /// `warmup` steps, then cosine decay from `lr` to the floor `0.01 lr` at
    /// the run's first step count. A pure function of the config, so resumed
    /// runs follow the same schedule.
    ///
    /// Each [`Extension`] re-plans the rest of the decay from its knot
    /// `k = max(at, warmup)` to the new end `N`:
    /// `lr(t) = floor + (lr_before(k) - floor) (1 + cos(pi (t - k) / (N - k))) / 2`
    /// for `t >= k`, where `lr_before` is the schedule before the extension.
    /// The curve is continuous at `k`, still ends at the floor, and the steps
    /// before `k` keep the rates they trained with.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        // The fraction (1 + cos(pi x)) / 2 still to go of a decay from
        // `knot` to `end`.
        let remaining = |knot: usize, end: usize, t: usize| {
            let span = (end.saturating_sub(knot)).max(1) as f64;
            let x = ((t - knot) as f64 / span).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * x).cos())
        };
        let floor = LR_FLOOR * self.lr;
        let ends: Vec<usize> = self.extensions.iter().map(|e| e.from_steps).chain([self.steps]).collect();
        // (knot, end, rate at the knot); `None` is the first decay, kept in
        // its original form so runs without extensions train bit for bit as
        // before.
        let mut segment = (self.warmup, ends[0], None);
        let rate = |(knot, end, start): (usize, usize, Option<f64>), t: usize| match start {
            None => self.lr * (LR_FLOOR + (1.0 - LR_FLOOR) * remaining(knot, end, t)),
            Some(start) => floor + (start - floor) * remaining(knot, end, t),
        };
        for (e, &end) in self.extensions.iter().zip(&ends[1..]) {
            let knot = e.at.max(self.warmup);
            if step < knot {
                break;
            }
            segment = (knot, end, Some(rate(segment, knot)));
        }
        rate(segment, step)
    }

    /// The training knobs of a run recorded as `self` that resumes from a
    /// checkpoint at step `reached` with `--steps steps`: the recorded
    /// schedule, with an [`Extension`] at `reached` if the step count
    /// changes. Extensions at or after `reached` have not trained a step yet
    /// (their session was killed before a checkpoint), so they are re-planned
    /// rather than stacked.
    ///
    /// # Errors
    /// `steps` below `reached`: those steps are already trained.
    pub fn resumed(&self, steps: usize, reached: usize) -> Result<Self> {
        anyhow::ensure!(
            steps >= reached,
            "--steps {steps} is below step {reached}, which the run has already reached; pass --steps {reached} or more"
        );
        let mut cfg = self.clone();
        while let Some(e) = cfg.extensions.last().copied().filter(|e| e.at >= reached) {
            cfg.steps = e.from_steps;
            cfg.extensions.pop();
        }
        if steps != cfg.steps {
            cfg.extensions.push(Extension { at: reached, from_steps: cfg.steps });
            cfg.steps = steps;
        }
        Ok(cfg)
    }

    /// The decay of the weight average after `updates` optimiser steps:
    /// `min(ema, (1 + updates) / (10 + updates))`. The ramp keeps the
    /// random initial weights from lingering in the average of a short run
    /// (at decay 0.999 they would still weigh 5 % after 3000 steps); it is a
    /// pure function of the step, so resumed runs average alike.
    pub fn ema_decay(&self, updates: usize) -> f64 {
        self.ema.min((1 + updates) as f64 / (10 + updates) as f64)
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.steps >= 1, "--steps must be at least 1");
        anyhow::ensure!(self.batch >= 1, "--batch must be at least 1");
        anyhow::ensure!(self.lr.is_finite() && self.lr > 0.0, "--lr must be positive, got {}", self.lr);
        anyhow::ensure!(self.checkpoint_every >= 1, "--checkpoint-every must be at least 1");
        anyhow::ensure!(
            (0.0..1.0).contains(&self.ema),
            "--ema must be in [0, 1) (0 turns it off; 0.999 is usual), got {}",
            self.ema
        );
        anyhow::ensure!(
            self.grad_clip.is_finite() && self.grad_clip >= 0.0,
            "--grad-clip must be >= 0 (0 turns it off), got {}",
            self.grad_clip
        );
        Ok(())
    }
}

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

/// What a checkpoint records beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    history: Vec<LossRow>,
}

type Rec = BinFileRecorder<FullPrecisionSettings>;

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

/// Scales every gradient of `model` by `min(1, max_norm / ||g||)`, where
/// `||g||` is the L2 norm of all of them together, and returns `||g||`.
/// (burn's `GradientClippingConfig::Norm` clips each parameter tensor on its
/// own, which changes the gradient's direction; the field clips globally.)
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.sum += scalar(g.square().sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares { grads, sum: 0.0 };
    model.visit(&mut sum);
    let norm = sum.sum.sqrt();
    if norm > max_norm {
        model.visit(&mut Scale { grads, factor: max_norm / norm });
    }
    norm
}

/// `decay * average + (1 - decay) * current`, parameter by parameter (the
/// two modules share one structure; parameters are paired in visiting
/// order, not by id).
pub fn ema_update<B: Backend, M: Module<B>>(average: M, current: &M, decay: f64) -> M {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            let len = t.shape().num_elements();
            self.0.push(t.reshape([len]));
        }
    }
    struct Blend<B: Backend> {
        current: std::vec::IntoIter<Tensor<B, 1>>,
        decay: f64,
    }
    impl<B: Backend> ModuleMapper<B> for Blend<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, avg, mapper) = param.consume();
            let cur = self.current.next().expect("the average and the model share one structure");
            let cur = cur.reshape(avg.shape());
            Param::from_mapped_value(id, avg.mul_scalar(self.decay) + cur.mul_scalar(1.0 - self.decay), mapper)
        }
    }
    let mut collect = Collect(Vec::new());
    current.visit(&mut collect);
    let mut blend = Blend { current: collect.0.into_iter(), decay };
    let out = average.map(&mut blend);
    debug_assert!(blend.current.next().is_none(), "the model has more parameters than its average");
    out
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

/// Writes the checkpoint into `checkpoint.tmp/`, then swaps it in, so a kill
/// at any moment leaves one complete checkpoint (`checkpoint/` or, during the
/// swap, `checkpoint.old/`). The weight average, if any, is `ema.bin`.
fn save_checkpoint<B, M, O>(
    run: &RunDir,
    model: &M,
    optim: &O,
    ema: Option<&M::InnerModule>,
    state: &CheckpointState,
) -> Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Clone,
    O: Optimizer<M, B>,
{
    let root = run.path();
    let (tmp, cur, old) = (root.join("checkpoint.tmp"), root.join("checkpoint"), root.join("checkpoint.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot write to {}", root.display()))?;
    let rec = Rec::new();
    rec.record(model.clone().into_record(), tmp.join("model")).context("saving model checkpoint")?;
    rec.record(optim.to_record(), tmp.join("optim")).context("saving optimiser checkpoint")?;
    if let Some(ema) = ema {
        Recorder::<B::InnerBackend>::record(&rec, ema.clone().into_record(), tmp.join("ema"))
            .context("saving the weight average")?;
    }
    std::fs::write(tmp.join("state.json"), serde_json::to_string(state)?)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if cur.exists() {
        std::fs::rename(&cur, &old)?;
    }
    std::fs::rename(&tmp, &cur)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// What a resume restores.
struct Loaded<M: AutodiffModule<B>, O, B: AutodiffBackend> {
    model: M,
    optim: O,
    ema: Option<M::InnerModule>,
    state: CheckpointState,
}

/// Loads the last checkpoint into `model`, `optim` and, for a run with a
/// weight average, `ema`.
fn load_checkpoint<B, M, O>(
    run: &RunDir,
    model: M,
    optim: O,
    ema: Option<M::InnerModule>,
    device: &B::Device,
) -> Result<Option<Loaded<M, O, B>>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let Some((dir, state)) = read_checkpoint_state(run.path())? else {
        return Ok(None);
    };
    let rec = Rec::new();
    let model_record = rec
        .load(dir.join("model"), device)
        .with_context(|| format!("cannot load {}; was the run made with other model settings?", dir.display()))?;
    let optim_record = rec.load(dir.join("optim"), device).with_context(|| format!("cannot load {}", dir.display()))?;
    let ema = match ema {
        Some(ema) => {
            let record = Recorder::<B::InnerBackend>::load(&rec, dir.join("ema"), device)
                .with_context(|| format!("cannot load the weight average (--ema) in {}", dir.display()))?;
            Some(ema.load_record(record))
        }
        None => None,
    };
    Ok(Some(Loaded { model: model.load_record(model_record), optim: optim.load_record(optim_record), ema, state }))
}

/// The checkpoint a resume loads — `checkpoint/`, or `checkpoint.old/` when
/// a kill fell in the middle of the swap — and its state.
fn read_checkpoint_state(root: &Path) -> Result<Option<(std::path::PathBuf, CheckpointState)>> {
    let Some(dir) =
        [root.join("checkpoint"), root.join("checkpoint.old")].into_iter().find(|d| d.join("state.json").exists())
    else {
        return Ok(None);
    };
    let state: CheckpointState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)
        .with_context(|| format!("{} is damaged", dir.join("state.json").display()))?;
    Ok(Some((dir, state)))
}

/// The step of the checkpoint a resume of the run in `root` would load
/// (0 without one).
pub fn checkpoint_step(root: &Path) -> Result<usize> {
    Ok(read_checkpoint_state(root)?.map_or(0, |(_, state)| state.step))
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

/// `model` with the weights of `cpu`, a module of the same config drawn on
/// the CPU (in full precision). A run on another backend than the CPU draws
/// its initial weights on the CPU from its seed and moves them, so they do
/// not depend on that backend's generator. CPU runs keep drawing theirs as
/// before, untouched: burn draws parameters lazily, at first use, so the
/// order (hence the values) depends on the code that first touches them,
/// and a CPU run's weights stay bit for bit what they were. A GPU run's
/// weights are therefore CPU-drawn, but not necessarily the CPU run's.
pub fn with_cpu_weights<B: Backend, M: Module<B>, C: Module<backend::Cpu>>(
    model: M,
    cpu: C,
    device: &B::Device,
) -> Result<M> {
    let rec = burn::record::BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<backend::Cpu>::record(&rec, cpu.into_record(), ()).context("recording the CPU weights")?;
    let record = Recorder::<B>::load(&rec, bytes, device).context("moving the CPU weights to the backend")?;
    Ok(model.load_record(record))
}

/// Saves the final model weights as `RUN/model.bin`.
pub fn save_model<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(run: &RunDir, model: M) -> Result<()> {
    Rec::new().record(model.into_record(), run.path().join("model")).context("saving the model")?;
    Ok(())
}

/// Loads `RUN/model.bin` into a freshly built `model` of the same config.
pub fn load_model<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    run: &Path,
    model: M,
    device: &B::Device,
) -> Result<M> {
    let record = Rec::new()
        .load(run.join("model"), device)
        .with_context(|| format!("cannot load the model in {}", run.display()))?;
    Ok(model.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_one_percent() {
        let cfg = TrainConfig { steps: 1000, warmup: 100, lr: 1e-3, ..TrainConfig::default() };
        assert!((cfg.lr_at(0) - 1e-5).abs() < 1e-12);
        assert!((cfg.lr_at(99) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(100) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(1000) - 1e-5).abs() < 1e-12);
        assert!(cfg.lr_at(400) > cfg.lr_at(800));
    }

    /// Relative plus absolute tolerance of schedule values computed two ways.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs() + 1e-18
    }

    #[test]
    fn schedule_without_extensions_is_bit_for_bit_the_original() {
        // The formula runs trained with before extensions existed: resuming
        // them must replay the same rates exactly.
        let original = |c: &TrainConfig, step: usize| {
            if step < c.warmup {
                return c.lr * (step + 1) as f64 / c.warmup as f64;
            }
            let span = (c.steps.saturating_sub(c.warmup)).max(1) as f64;
            let t = ((step - c.warmup) as f64 / span).min(1.0);
            c.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
        };
        for (steps, warmup, lr) in [(6, 1, 1e-3), (2000, 100, 1e-3), (12000, 200, 3e-4), (7, 50, 2e-3)] {
            let c = TrainConfig { steps, warmup, lr, ..TrainConfig::default() };
            for step in 0..steps + 5 {
                assert_eq!(c.lr_at(step).to_bits(), original(&c, step).to_bits(), "{steps}/{warmup} at step {step}");
            }
        }
    }

    #[test]
    fn extension_continues_the_decay_from_the_resume_step() {
        let c = TrainConfig { steps: 1000, warmup: 50, lr: 1e-3, ..TrainConfig::default() };
        let e = c.resumed(2000, 600).unwrap();
        assert_eq!(e.extensions, [Extension { at: 600, from_steps: 1000 }]);
        assert_eq!(e.steps, 2000);
        for step in 0..600 {
            assert_eq!(e.lr_at(step).to_bits(), c.lr_at(step).to_bits(), "trained step {step} changed its rate");
        }
        assert_eq!(e.lr_at(600).to_bits(), c.lr_at(600).to_bits(), "the knot must keep the old rate");
        // Cosine from lr(600) down to the floor at 2000.
        let floor = LR_FLOOR * c.lr;
        let mid = floor + (c.lr_at(600) - floor) * 0.5;
        assert!(close(e.lr_at(1300), mid), "{} vs {mid}", e.lr_at(1300));
        assert!(close(e.lr_at(2000), floor));
        assert!((600..2000).all(|t| e.lr_at(t + 1) <= e.lr_at(t)), "the decay must not rise");
        // The jump at the knot is no larger than the old schedule's own step.
        let jump = |f: &TrainConfig, t: usize| (f.lr_at(t) - f.lr_at(t - 1)).abs() / f.lr_at(t - 1);
        assert!(jump(&e, 600) <= jump(&c, 600) * (1.0 + 1e-12));
    }

    #[test]
    fn extensions_stack_replan_and_start_in_warm_up() {
        let c = TrainConfig { steps: 1000, warmup: 50, lr: 1e-3, ..TrainConfig::default() };
        let floor = LR_FLOOR * c.lr;
        // A second extension forks the first one's decay.
        let e1 = c.resumed(2000, 600).unwrap();
        let e2 = e1.resumed(3000, 1500).unwrap();
        assert_eq!(e2.extensions.len(), 2);
        assert!((0..=1500).all(|t| e2.lr_at(t).to_bits() == e1.lr_at(t).to_bits()));
        assert!(close(e2.lr_at(3000), floor));
        // Re-resuming at the same count changes nothing; an extension that
        // never trained a step is re-planned, not stacked.
        assert_eq!(e2.resumed(3000, 1700).unwrap(), e2);
        assert_eq!(e1.resumed(1000, 600).unwrap(), c);
        assert_eq!(e1.resumed(2500, 600).unwrap().extensions, [Extension { at: 600, from_steps: 1000 }]);
        // A finished run continues at the floor.
        let done = c.resumed(1500, 1000).unwrap();
        assert!((1000..1500).all(|t| close(done.lr_at(t), floor)));
        // Resumed in the warm-up: the warm-up ends as planned, then one cosine
        // to the new end.
        let early = c.resumed(2000, 10).unwrap();
        let fresh = TrainConfig { steps: 2000, ..c.clone() };
        assert!((0..=2000).all(|t| close(early.lr_at(t), fresh.lr_at(t))));
        // Shorter than the step reached: an error naming --steps.
        let err = c.resumed(500, 600).unwrap_err().to_string();
        assert!(err.contains("--steps 500") && err.contains("600"), "{err}");
    }

    #[test]
    fn old_train_configs_parse_and_new_ones_look_the_same() {
        let old =
            r#"{"batch":16,"checkpoint_every":1000,"log_every":60,"lr":0.001,"seed":0,"steps":6000,"warmup":200}"#;
        let c: TrainConfig = serde_json::from_str(old).unwrap();
        assert!(c.extensions.is_empty());
        assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::from_str::<serde_json::Value>(old).unwrap());
        let e = c.resumed(9000, 3000).unwrap();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    mod loop_options {
        //! `--ema`, `--grad-clip` and `--augment` in the training loop, on a
        //! toy task small enough to follow step by step.
        use super::super::*;
        use crate::data::DatasetMeta;
        use burn::backend::{Autodiff, NdArray};
        use std::cell::RefCell;

        type Inner = NdArray<f32>;
        type Ad = Autodiff<Inner>;

        /// f32 round-off of a few hundred multiply-adds of values near 1.
        const F32_REL: f64 = 1e-5;

        #[derive(Module, Debug)]
        struct Toy<B: Backend> {
            w: Param<Tensor<B, 1>>,
            v: Param<Tensor<B, 2>>,
        }

        impl<B: Backend> Toy<B> {
            fn new(w: [f32; 3], v: [[f32; 2]; 2], device: &B::Device) -> Self {
                Self {
                    w: Param::from_tensor(Tensor::from_floats(w, device)),
                    v: Param::from_tensor(Tensor::from_floats(v, device)),
                }
            }

            fn values(&self) -> Vec<f32> {
                let w: Vec<f32> = self.w.val().into_data().to_vec().unwrap();
                let v: Vec<f32> = self.v.val().into_data().to_vec().unwrap();
                [w, v].concat()
            }
        }

        /// `mean((params - target)^2)`, the target set by the samples' indices
        /// and symmetries, so the weights keep moving and an average differs.
        /// `validate` records the weights it was shown.
        struct ToyTask {
            seen: RefCell<Vec<Vec<f32>>>,
        }

        impl Task<Ad> for ToyTask {
            type Model = Toy<Ad>;

            fn loss(&self, model: &Toy<Ad>, batch: &Batch, _rng: &mut ChaCha8Rng) -> Tensor<Ad, 1> {
                let k: usize = batch.indices.iter().sum::<usize>()
                    + batch.symmetries.iter().map(|s| 3 * usize::from(s.0)).sum::<usize>();
                let t = (k % 7) as f32 / 7.0;
                let device = Default::default();
                let dw = model.w.val() - Tensor::from_floats([t, 1.0 - t, 0.5], &device);
                let dv = model.v.val() - Tensor::from_floats([[t, t], [0.0, 1.0]], &device);
                (dw.powf_scalar(2.0).sum() + dv.powf_scalar(2.0).sum()).div_scalar(7.0)
            }

            fn validate(&self, model: &Toy<Inner>) -> f64 {
                self.seen.borrow_mut().push(model.values());
                0.0
            }

            fn val_name(&self) -> &'static str {
                "val_toy"
            }
        }

        fn run_dir(root: &Path, train: &TrainConfig) -> RunDir {
            let meta = DatasetMeta {
                pde: crate::pde::PdeConfig::default(),
                res: 2,
                count: 20,
                seed: 0,
                shape: [20, 2, 2],
                input: "a".into(),
                ddis_version: "test".into(),
            };
            let split = Split::new(20, 0, 1.0).unwrap();
            let mut cfg = RunConfig {
                kind: "toy".to_string(),
                data: "none".into(),
                data_meta: meta,
                split_seed: 0,
                paired_fraction: 1.0,
                model: (),
                train: train.clone(),
            };
            RunDir::create(root, &mut cfg, &split, true).unwrap()
        }

        /// Trains the toy from fixed weights; returns the final weights and
        /// every set of weights validation saw.
        fn toy_run(root: &Path, cfg: &TrainConfig, session: &Session) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
            let device = Default::default();
            let task = ToyTask { seen: RefCell::new(Vec::new()) };
            let model = Toy::<Ad>::new([0.2, -0.3, 0.9], [[0.1, 0.0], [-1.0, 0.4]], &device);
            let pool: Vec<usize> = (0..17).collect();
            let trained = train(&task, model, cfg, &run_dir(root, cfg), &pool, session, &device)?;
            Ok((trained.model.values(), task.seen.into_inner()))
        }

        fn config() -> TrainConfig {
            TrainConfig {
                steps: 12,
                batch: 3,
                lr: 0.05,
                warmup: 2,
                checkpoint_every: 1,
                log_every: 0,
                ..TrainConfig::default()
            }
        }

        fn assert_close(got: &[f32], want: &[f64], what: &str) {
            for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= F32_REL * w.abs().max(1.0),
                    "{what}, parameter {k}: got {g}, expected {w}"
                );
            }
        }

        #[test]
        fn ema_is_validated_returned_and_equal_to_the_average_of_the_iterates() {
            let tmp = tempfile::tempdir().unwrap();
            // Without --ema, validation after every step sees the iterates.
            let plain = config();
            let (raw_final, iterates) = toy_run(&tmp.path().join("plain"), &plain, &Session::default()).unwrap();
            assert_eq!(iterates.len(), 12);
            assert_eq!(iterates.last().unwrap(), &raw_final, "without --ema the last iterate is returned");

            let ema = TrainConfig { ema: 0.9, ..config() };
            let (avg_final, validated) = toy_run(&tmp.path().join("ema"), &ema, &Session::default()).unwrap();
            // The average by hand: from the initial weights, decay ramped up.
            let mut avg: Vec<f64> = vec![0.2, -0.3, 0.9, 0.1, 0.0, -1.0, 0.4];
            for (t, (w, seen)) in iterates.iter().zip(&validated).enumerate() {
                let d = ema.ema_decay(t + 1);
                for (a, &x) in avg.iter_mut().zip(w) {
                    *a = d * *a + (1.0 - d) * f64::from(x);
                }
                assert_close(seen, &avg, &format!("weights validated after step {}", t + 1));
            }
            assert_eq!(validated.last().unwrap(), &avg_final, "the validated average is the returned model");
            assert_close(&avg_final, &avg, "returned model");
            let moved = avg_final.iter().zip(&raw_final).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(moved > 1e-3, "the average should differ from the last iterate, by {moved}");
            // The ramp: min(decay, (1 + t) / (10 + t)).
            assert_eq!((ema.ema_decay(1), ema.ema_decay(80), ema.ema_decay(10_000)), (2.0 / 11.0, 81.0 / 90.0, 0.9));
        }

        #[test]
        fn killed_and_resumed_runs_with_every_option_match_uninterrupted_ones() {
            let tmp = tempfile::tempdir().unwrap();
            let cfg = TrainConfig { ema: 0.95, grad_clip: 0.05, augment: Augment::D8, checkpoint_every: 5, ..config() };
            let (whole, _) = toy_run(&tmp.path().join("whole"), &cfg, &Session::default()).unwrap();
            let killed = tmp.path().join("killed");
            let halt = Session { halt_after: Some(7), ..Session::default() };
            assert!(toy_run(&killed, &cfg, &halt).is_err(), "halted runs report failure");
            let (resumed, _) = toy_run(&killed, &cfg, &Session { resume: true, ..Session::default() }).unwrap();
            assert_eq!(
                whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                resumed.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "resumed from step 5 after a kill at 7"
            );
            assert!(killed.join("checkpoint").join("ema.bin").exists(), "the average is checkpointed");
            // Each option changes the run (so each one is exercised above).
            for other in [
                TrainConfig { ema: 0.0, ..cfg.clone() },
                TrainConfig { grad_clip: 0.0, ..cfg.clone() },
                TrainConfig { augment: Augment::None, ..cfg.clone() },
            ] {
                let dir = tmp.path().join(format!("other{}{}{:?}", other.ema, other.grad_clip, other.augment));
                assert_ne!(toy_run(&dir, &other, &Session::default()).unwrap().0, whole, "{other:?}");
            }
        }

        #[test]
        fn gradients_are_clipped_to_a_global_norm_keeping_their_direction() {
            let device = Default::default();
            let model = Toy::<Ad>::new([1.0, 2.0, 3.0], [[4.0, 5.0], [6.0, 7.0]], &device);
            // d/dp of sum(p^2 / 2) is p: the gradient is the weights, norm sqrt(140).
            let loss = model.w.val().powf_scalar(2.0).sum().div_scalar(2.0)
                + model.v.val().powf_scalar(2.0).sum().div_scalar(2.0);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let read = |g: &GradientsParams| -> Vec<f64> {
                let w: Vec<f32> = g.get::<Inner, 1>(model.w.id).unwrap().into_data().to_vec().unwrap();
                let v: Vec<f32> = g.get::<Inner, 2>(model.v.id).unwrap().into_data().to_vec().unwrap();
                w.into_iter().chain(v).map(f64::from).collect()
            };
            let full = read(&grads);
            let norm = 140f64.sqrt();
            // Below the limit: untouched, bit for bit.
            let mut g = GradientsParams::from_grads(
                (model.w.val().powf_scalar(2.0).sum().div_scalar(2.0)
                    + model.v.val().powf_scalar(2.0).sum().div_scalar(2.0))
                .backward(),
                &model,
            );
            let measured = clip_global_norm(&model, &mut g, 20.0);
            assert!((measured - norm).abs() <= F32_REL * norm, "norm {measured}, expected {norm}");
            assert_eq!(read(&g), full);
            // Above it: one factor for every parameter, so the direction stays.
            let mut g = grads;
            clip_global_norm(&model, &mut g, 2.0);
            let want: Vec<f64> = full.iter().map(|x| x * 2.0 / norm).collect();
            let got = read(&g);
            assert_close(&got.iter().map(|&x| x as f32).collect::<Vec<_>>(), &want, "clipped gradient");
            let clipped_norm = got.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((clipped_norm - 2.0).abs() <= F32_REL * 2.0, "clipped norm {clipped_norm}");
        }
    }

    #[test]
    fn new_options_stay_out_of_old_configs_and_are_checked() {
        let c = TrainConfig::default();
        let v = serde_json::to_value(&c).unwrap();
        for key in ["ema", "grad_clip", "augment"] {
            assert!(v.get(key).is_none(), "{key} written for a run without it");
        }
        let on = TrainConfig { ema: 0.999, grad_clip: 1.0, augment: Augment::D8, ..c.clone() };
        let v = serde_json::to_value(&on).unwrap();
        assert_eq!(
            (v["ema"].as_f64(), v["grad_clip"].as_f64(), v["augment"].as_str()),
            (Some(0.999), Some(1.0), Some("d8"))
        );
        assert_eq!(serde_json::from_value::<TrainConfig>(v).unwrap(), on);
        for (bad, needle) in [
            (TrainConfig { ema: 1.0, ..c.clone() }, "--ema"),
            (TrainConfig { ema: -0.1, ..c.clone() }, "--ema"),
            (TrainConfig { grad_clip: -1.0, ..c.clone() }, "--grad-clip"),
            (TrainConfig { grad_clip: f64::NAN, ..c.clone() }, "--grad-clip"),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn step_streams_are_reproducible_and_distinct() {
        let pool: Vec<usize> = (100..200).collect();
        let a = draw_batch(&pool, 16, &mut step_rng(5, 3));
        assert_eq!(a, draw_batch(&pool, 16, &mut step_rng(5, 3)));
        assert_ne!(a, draw_batch(&pool, 16, &mut step_rng(5, 4)));
        assert!(a.iter().all(|i| pool.contains(i)));
    }
}
