//! Weights on disk: checkpoints (model, optimiser, weight average and the
//! loss history, swapped in whole so a kill never leaves half of one), the
//! final `model.bin`, and CPU-drawn initial weights moved to another backend.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::LossRow;
use crate::train::backend;
use crate::train::run::RunDir;

/// What a checkpoint records beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    pub(super) step: usize,
    pub(super) history: Vec<LossRow>,
}

type Rec = BinFileRecorder<FullPrecisionSettings>;

/// Writes the checkpoint into `checkpoint.tmp/`, then swaps it in, so a kill
/// at any moment leaves one complete checkpoint (`checkpoint/` or, during the
/// swap, `checkpoint.old/`). The weight average, if any, is `ema.bin`.
pub(super) fn save_checkpoint<B, M, O>(
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
pub(super) struct Loaded<M: AutodiffModule<B>, O, B: AutodiffBackend> {
    pub(super) model: M,
    pub(super) optim: O,
    pub(super) ema: Option<M::InnerModule>,
    pub(super) state: CheckpointState,
}

/// Loads the last checkpoint into `model`, `optim` and, for a run with a
/// weight average, `ema`.
pub(super) fn load_checkpoint<B, M, O>(
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
