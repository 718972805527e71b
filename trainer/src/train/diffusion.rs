//! Training the function-space diffusion models: the prior over `a` (one
//! channel, every training sample — unpaired data is cheap) and the joint
//! baseline over `(a, u)` (two channels, the paired subset only, as
//! DiffusionPDE/FunDPS train it). After training, unconditional samples are
//! compared with the data (two-phase fraction, mean power spectrum).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Batch, RunConfig, RunDir, Session, Split, Symmetry, Task, TrainConfig, augment};
use crate::data::Dataset;
use crate::metrics;
use crate::model::denoiser::{ChannelNorm, Denoiser, DiffusionModel, EdmConfig, EdmModel, Network, NetworkConfig};
use crate::model::edm::HeunConfig;
use crate::model::noise::{SmoothNoise, host_batch_to_tensor};
use crate::model::unet::Unet;
use crate::pde::PdeKind;

/// Validation samples scored at each checkpoint (fixed noise, so the figure
/// is comparable across checkpoints).
const VAL_SAMPLES: usize = 64;
/// Seed of the fixed validation noise.
const VAL_SEED: u64 = 0x7661_6c00;

/// Which diffusion model a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffusionKind {
    /// The prior over `a` alone (DDIS).
    Prior,
    /// The joint `(a, u)` baseline.
    Joint,
}

impl DiffusionKind {
    /// Data channels: 1 (`a`) or 2 (`a`, `u`).
    pub fn channels(self) -> usize {
        match self {
            Self::Prior => 1,
            Self::Joint => 2,
        }
    }
}

/// What `RUN/config.json` holds for a prior or joint run.
pub type DiffusionRunConfig = RunConfig<DiffusionKind, EdmConfig>;

/// Samples `[count, C, n*n]` of the dataset: `a`, then `u` for the joint model.
fn stacked(data: &Dataset, idx: &[usize], channels: usize) -> Vec<f32> {
    let per = data.res() * data.res();
    let mut out = Vec::with_capacity(idx.len() * channels * per);
    for &k in idx {
        out.extend_from_slice(&data.a[k * per..(k + 1) * per]);
        if channels == 2 {
            out.extend_from_slice(&data.u[k * per..(k + 1) * per]);
        }
    }
    out
}

struct DiffusionTask<B: AutodiffBackend, N> {
    n: usize,
    channels: usize,
    noise: SmoothNoise,
    val: Vec<usize>,
    device: B::Device,
    /// Every sample of the dataset, normalised on the host (f64, as
    /// `ChannelNorm::normalize_slice` always did), `[count, C, n * n]`:
    /// the source of augmented batches.
    host: Vec<f32>,
    /// The same values on the device, `[count, C, n, n]`, uploaded once:
    /// un-augmented batches are a `select` on it, no host work per step.
    resident: Tensor<B::InnerBackend, 4>,
    network: std::marker::PhantomData<N>,
}

impl<B: AutodiffBackend, N> DiffusionTask<B, N> {
    fn new(
        data: &Dataset,
        norm: &ChannelNorm,
        channels: usize,
        noise: SmoothNoise,
        val: Vec<usize>,
        device: &B::Device,
    ) -> Self {
        let n = data.res();
        let all: Vec<usize> = (0..data.len()).collect();
        let mut host = stacked(data, &all, channels);
        norm.normalize_slice(&mut host, channels, n * n);
        let resident = host_batch_to_tensor(host.clone(), [data.len(), channels, n], device)
            .expect("lengths match by construction");
        Self { n, channels, noise, val, device: device.clone(), host, resident, network: std::marker::PhantomData }
    }

    /// The normalised samples `idx`, each under its symmetry (none when
    /// `symmetries` is empty), `[len, C, n, n]`. Bit for bit what gathering,
    /// augmenting and normalising on the host gives (normalisation is per
    /// channel, so it commutes with the symmetries).
    fn clean_batch(&self, idx: &[usize], symmetries: &[Symmetry]) -> Tensor<B::InnerBackend, 4> {
        if symmetries.is_empty() {
            return super::select_rows(&self.resident, idx);
        }
        let (n, c) = (self.n, self.channels);
        let per = c * n * n;
        let mut x = Vec::with_capacity(idx.len() * per);
        for &k in idx {
            x.extend_from_slice(&self.host[k * per..(k + 1) * per]);
        }
        augment::apply_batch(&mut x, c, n, symmetries);
        host_batch_to_tensor(x, [idx.len(), c, n], &self.device).expect("lengths match by construction")
    }

    fn loss_on<BB: Backend, NN: Network<BB>>(
        &self,
        model: &EdmModel<BB, NN>,
        x: Tensor<BB, 4>,
        rng: &mut ChaCha8Rng,
        device: &BB::Device,
    ) -> Tensor<BB, 1> {
        let (sigma, noise) = model.draw_training_noise(&self.noise, x.dims()[0], rng, device);
        model.loss(x, sigma, noise)
    }
}

impl<B, N> Task<B> for DiffusionTask<B, N>
where
    B: AutodiffBackend,
    N: Network<B> + burn::module::AutodiffModule<B>,
    N::InnerModule: Network<B::InnerBackend>,
{
    type Model = EdmModel<B, N>;

    fn loss(&self, model: &EdmModel<B, N>, batch: &Batch, rng: &mut ChaCha8Rng) -> Tensor<B, 1> {
        let x = Tensor::from_inner(self.clean_batch(&batch.indices, &batch.symmetries));
        self.loss_on(model, x, rng, &self.device)
    }

    fn validate(&self, model: &EdmModel<B::InnerBackend, N::InnerModule>) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(VAL_SEED);
        let idx = &self.val[..self.val.len().min(VAL_SAMPLES)];
        let x = self.clean_batch(idx, &[]);
        let loss = self.loss_on(model, x, &mut rng, &self.device);
        loss.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
    }

    fn val_name(&self) -> &'static str {
        "val_edm_loss"
    }
}

/// Options of `ddis train prior` and `ddis train joint`.
#[derive(Clone, Debug)]
pub struct DiffusionOptions {
    /// Prior or joint.
    pub kind: DiffusionKind,
    /// Dataset directory.
    pub data: std::path::PathBuf,
    /// Run directory.
    pub out: std::path::PathBuf,
    /// Fraction of pairs (joint only; the prior ignores pairing).
    pub paired_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
    /// Model settings (normalisation is fitted here).
    pub model: EdmConfig,
    /// Optimisation knobs.
    pub train: TrainConfig,
    /// Unconditional samples drawn after training for the statistics.
    pub stat_samples: usize,
    /// Resume, progress and test hooks.
    pub session: Session,
}

/// Unconditional samples against the data, written to `RUN/summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiffusionSummary {
    /// Trainable parameters.
    pub params: usize,
    /// Training samples used.
    pub samples: usize,
    /// Wall time of the training steps, seconds.
    pub train_seconds: f64,
    /// Unconditional samples drawn for the statistics.
    pub stat_samples: usize,
    /// Fraction of nodes above the midpoint of the two Darcy phases (7.5 for
    /// 3 / 12), samples (Darcy only).
    pub high_phase_fraction_samples: Option<f64>,
    /// The same fraction over the test data (Darcy only).
    pub high_phase_fraction_data: Option<f64>,
    /// Spectral error between the mean power spectra of samples and test
    /// data (geometric mean over bins k >= 1).
    pub mean_spectrum_error_geometric: f64,
    /// The same, arithmetic mean over bins.
    pub mean_spectrum_error_arithmetic: f64,
    /// Mean radially averaged power spectrum of the samples (channel `a`).
    pub spectrum_samples: Vec<f64>,
    /// Mean radially averaged power spectrum of the test data (channel `a`).
    pub spectrum_data: Vec<f64>,
}

/// Trains (or resumes) a prior or joint model with the network its config
/// names (`--arch`), then compares unconditional samples with the test data.
pub fn train_diffusion<B: AutodiffBackend>(opts: &DiffusionOptions, device: &B::Device) -> Result<DiffusionSummary> {
    match opts.model.denoiser {
        NetworkConfig::Fno(_) => train_network::<B, Denoiser<B>>(opts, device),
        NetworkConfig::Unet(_) => train_network::<B, Unet<B>>(opts, device),
    }
}

fn train_network<B, N>(opts: &DiffusionOptions, device: &B::Device) -> Result<DiffusionSummary>
where
    B: AutodiffBackend,
    N: Network<B> + burn::module::AutodiffModule<B>,
    N::InnerModule: Network<B::InnerBackend>,
{
    let data = Arc::new(Dataset::load(&opts.data)?);
    let n = data.res();
    let split = Split::new(data.len(), opts.split_seed, opts.paired_fraction)?;
    let channels = opts.kind.channels();
    let pool = match opts.kind {
        DiffusionKind::Prior => split.train.clone(),
        DiffusionKind::Joint => split.paired.clone(),
    };
    let mut model_cfg = opts.model.clone();
    anyhow::ensure!(
        model_cfg.denoiser.channels() == channels,
        "`denoiser.channels` = {}, but a {} model has {channels} data channel(s)",
        model_cfg.denoiser.channels(),
        format!("{:?}", opts.kind).to_lowercase()
    );
    opts.train.augment.check(&data.meta)?;
    model_cfg.normalization = ChannelNorm::fit(&stacked(&data, &pool, channels), channels, n)?;
    model_cfg.validate()?;
    model_cfg.denoiser.check_resolution(n).map_err(|e| match &model_cfg.denoiser {
        NetworkConfig::Fno(d) => anyhow::anyhow!(
            "`denoiser.modes` = {} does not fit the {n}x{n} grid of {} with `denoiser.pad_fraction` = {}: {e}",
            d.modes,
            opts.data.display(),
            d.pad_fraction
        ),
        NetworkConfig::Unet(u) => anyhow::anyhow!(
            "the U-Net's {} levels (`denoiser.mults`) do not fit the {n}x{n} grid of {}: {e}",
            u.mults.len(),
            opts.data.display()
        ),
    })?;
    let mut run_cfg =
        DiffusionRunConfig::new(opts.kind, &opts.data, &data, &split, model_cfg.clone(), opts.train.clone());
    let run = RunDir::create(&opts.out, &mut run_cfg, &split, opts.session.resume)?;

    B::seed(device, opts.train.seed);
    let model = model_cfg.init_network::<B, N>(device)?;
    // On another backend the weights are drawn on the CPU (see `with_cpu_weights`).
    let model = if super::backend::is_cpu::<B>() {
        model
    } else {
        let cpu = Default::default();
        super::backend::Cpu::seed(&cpu, opts.train.seed);
        match model_cfg.init_any::<super::backend::Cpu>(&cpu)? {
            DiffusionModel::Fno(m) => super::with_cpu_weights(model, m, device)?,
            DiffusionModel::Unet(m) => super::with_cpu_weights(model, m, device)?,
        }
    };
    let params = model.param_count();
    if opts.session.progress {
        let arch = model_cfg.denoiser.arch();
        eprintln!("{:?} denoiser ({arch}, {params} parameters) on {} samples at {n}x{n}", opts.kind, pool.len());
    }
    let task = DiffusionTask::<B, N>::new(
        &data,
        &model_cfg.normalization,
        channels,
        model_cfg.smooth_noise(n)?,
        split.val.clone(),
        device,
    );
    let trained = super::train(&task, model, &run_cfg.train, &run, &pool, &opts.session, device)?;
    // The weight average under --ema, else the last iterate.
    let model = trained.model;
    super::save_model(&run, model.clone())?;

    let (stats, samples) = sample_statistics(&model, &data, &split.test, opts.stat_samples, opts.train.seed, device)?;
    // Top row: test data; bottom row: unconditional samples (channel a).
    let per = n * n;
    let shown = 6.min(samples.len() / (channels * per)).min(split.test.len());
    let mut panels: Vec<&[f32]> = split.test[..shown].iter().map(|&k| &data.a[k * per..(k + 1) * per]).collect();
    panels.extend(samples.chunks(per).step_by(channels).take(shown));
    let rows = ["test data (channel a)", "prior samples (channel a)"];
    crate::plot::heatmaps(&run.path().join("samples.png"), &panels, n, shown.max(1), &rows)?;
    let summary = DiffusionSummary {
        params,
        samples: pool.len(),
        train_seconds: trained.train_seconds,
        stat_samples: opts.stat_samples,
        ..stats
    };
    std::fs::write(run.path().join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    Ok(summary)
}

/// Draws `count` unconditional samples (EDM Heun, 18 levels, from
/// `sigma_max = 80`) and compares channel `a` with the test data. Also
/// returns the samples, physical units, `[count, C, n*n]`.
pub fn sample_statistics<B: Backend, N: Network<B>>(
    model: &EdmModel<B, N>,
    data: &Dataset,
    test: &[usize],
    count: usize,
    seed: u64,
    device: &B::Device,
) -> Result<(DiffusionSummary, Vec<f32>)> {
    let n = data.res();
    let per = n * n;
    let cfg = model.config();
    let channels = cfg.denoiser.channels();
    let noise = cfg.smooth_noise(n)?;
    let heun = HeunConfig::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5354_4154);
    let mut samples: Vec<f32> = Vec::with_capacity(count * channels * per);
    for start in (0..count).step_by(32) {
        let b = (count - start).min(32);
        let z = noise.sample_tensor::<B, _>(&mut rng, b, channels, device);
        let x: Vec<f32> = model.sample(z, &heun).into_data().to_vec().context("sample data")?;
        samples.extend(x);
    }
    cfg.normalization.denormalize_slice(&mut samples, channels, per);
    let a_samples: Vec<&[f32]> = samples.chunks(per).step_by(channels).collect();
    let a_data: Vec<&[f32]> = test.iter().map(|&k| &data.a[k * per..(k + 1) * per]).collect();
    let mean_spectrum = |fields: &[&[f32]]| -> Result<Vec<f64>> {
        let mut acc: Vec<f64> = Vec::new();
        for f in fields {
            let p = metrics::radial_power_spectrum(f, n)?;
            if acc.is_empty() {
                acc = vec![0.0; p.len()];
            }
            for (a, v) in acc.iter_mut().zip(p) {
                *a += v / fields.len() as f64;
            }
        }
        Ok(acc)
    };
    let spectrum_samples = mean_spectrum(&a_samples)?;
    let spectrum_data = mean_spectrum(&a_data)?;
    let (geo, arith) = metrics::spectrum_error(&spectrum_samples, &spectrum_data);
    let darcy = data.meta.pde.kind == PdeKind::Darcy;
    let mid = data.meta.pde.darcy.phase_midpoint();
    let fraction = |fields: &[&[f32]]| {
        fields.iter().map(|f| metrics::two_phase_fraction(f, mid)).sum::<f64>() / fields.len().max(1) as f64
    };
    let summary = DiffusionSummary {
        params: model.param_count(),
        samples: 0,
        train_seconds: 0.0,
        stat_samples: count,
        high_phase_fraction_samples: darcy.then(|| fraction(&a_samples)),
        high_phase_fraction_data: darcy.then(|| fraction(&a_data)),
        mean_spectrum_error_geometric: geo,
        mean_spectrum_error_arithmetic: arith,
        spectrum_samples,
        spectrum_data,
    };
    Ok((summary, samples))
}

/// Loads a trained prior or joint model, of the architecture its config
/// records, from its run directory.
pub fn load_diffusion<B: Backend>(run: &Path, device: &B::Device) -> Result<(DiffusionModel<B>, DiffusionRunConfig)> {
    let cfg: DiffusionRunConfig = serde_json::from_value(RunDir::read_config(run)?)
        .with_context(|| format!("{} is not a prior or joint run", run.display()))?;
    let model = match cfg.model.init_any::<B>(device)? {
        DiffusionModel::Fno(m) => DiffusionModel::Fno(super::load_model(run, m, device)?),
        DiffusionModel::Unet(m) => DiffusionModel::Unet(super::load_model(run, m, device)?),
    };
    Ok((model, cfg))
}
