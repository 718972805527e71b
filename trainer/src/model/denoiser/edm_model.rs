//! The EDM wrapper around a raw network: its config (network, EDM
//! constants, training noise, normalisation), the preconditioned denoiser
//! `D(x; sigma)`, the weighted training loss and its seeded noise, and the
//! unconditional sampler. The EDM formulas themselves are in `model::edm`,
//! the training noise in `model::noise`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_distr::StandardNormal;

use super::network::{Network, NetworkConfig};
use super::norm::ChannelNorm;
use super::operator::Denoiser;
use crate::error::Error;
use crate::model::edm::{self, HeunConfig};
use crate::model::noise::SmoothNoise;

/// Everything that defines a diffusion prior: the network, the EDM
/// constants, the training noise and the data normalisation.
#[derive(Config, Debug, PartialEq)]
pub struct EdmConfig {
    /// The raw network (the FNO-type denoiser, or a U-Net).
    pub denoiser: NetworkConfig,
    /// Standard deviation of the (normalised) data. Data are standardised
    /// per channel, so 1; a two-phase field standardised this way has
    /// exactly unit variance too.
    #[config(default = 1.0)]
    pub sigma_data: f64,
    /// Mean of `ln sigma` during training.
    #[config(default = "edm::P_MEAN")]
    pub p_mean: f64,
    /// Standard deviation of `ln sigma` during training.
    #[config(default = "edm::P_STD")]
    pub p_std: f64,
    /// RBF length scale of the smooth training noise.
    #[config(default = "crate::model::noise::DEFAULT_LENGTH_SCALE")]
    pub noise_length_scale: f64,
    /// Per-channel data normalisation (identity by default; fit it on the
    /// training set).
    #[config(default = "ChannelNorm::identity()")]
    pub normalization: ChannelNorm,
}

impl EdmConfig {
    /// Checks the network sizes, the EDM constants and the normalisation.
    pub fn validate(&self) -> Result<(), Error> {
        self.denoiser.validate()?;
        for (name, value) in [
            ("edm.sigma_data", self.sigma_data),
            ("edm.p_std", self.p_std),
            ("edm.noise_length_scale", self.noise_length_scale),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidConfig { name, value, reason: "must be finite and > 0" });
            }
        }
        if !self.p_mean.is_finite() {
            return Err(Error::InvalidConfig { name: "edm.p_mean", value: self.p_mean, reason: "must be finite" });
        }
        self.normalization.validate(self.denoiser.channels())
    }

    /// A freshly initialised FNO-type model (see [`DenoiserConfig::init`](super::DenoiserConfig::init)),
    /// after [`validate`](Self::validate); an error for a U-Net config.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<EdmModel<B>, Error> {
        self.init_network(device)
    }

    /// A freshly initialised model with network `N`, after
    /// [`validate`](Self::validate); an error if `N` is not the config's
    /// architecture.
    pub fn init_network<B: Backend, N: Network<B>>(&self, device: &B::Device) -> Result<EdmModel<B, N>, Error> {
        self.validate()?;
        let denoiser = N::build(&self.denoiser, device)
            .ok_or(Error::ArchMismatch { expected: N::ARCH, got: self.denoiser.arch() })?;
        Ok(EdmModel { denoiser, config: Settings::new(self.clone()) })
    }

    /// The smooth training noise for an `n x n` grid.
    pub fn smooth_noise(&self, n: usize) -> Result<SmoothNoise, Error> {
        SmoothNoise::new(n, self.noise_length_scale)
    }
}

/// The EDM denoiser `D(x; s) = c_skip x + c_out N(c_in x; c_noise)` on
/// normalised fields `[batch, C, n, n]`.
///
/// The config (EDM constants, normalisation) is not part of the weight
/// record: save it with `Config::save` next to the record and rebuild with
/// `config.init(device)?.load_record(record)`.
///
/// `N` is the raw network ([`Network`]); the default, the FNO-type
/// [`Denoiser`], keeps the weight record of the runs made before the U-Net
/// existed byte for byte (the config field records as the same empty value
/// as the plain `EdmConfig` field it replaced).
#[derive(Module, Debug)]
pub struct EdmModel<B: Backend, N: Module<B> = Denoiser<B>> {
    /// The raw network `N`.
    pub denoiser: N,
    /// The config this model was built from.
    pub config: Settings<B>,
}

/// The config inside an [`EdmModel`]: not recorded (its record is burn's
/// `EmptyRecord`, as a plain non-module field's is), but typed by the
/// backend so that `EdmModel` can be generic over its network and still
/// name `B` in a field.
#[derive(Clone, Debug)]
pub struct Settings<B: Backend> {
    /// The config.
    pub value: EdmConfig,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> Settings<B> {
    fn new(value: EdmConfig) -> Self {
        Self { value, _backend: std::marker::PhantomData }
    }
}

impl<B: Backend> std::ops::Deref for Settings<B> {
    type Target = EdmConfig;

    fn deref(&self) -> &EdmConfig {
        &self.value
    }
}

impl<B: Backend> Module<B> for Settings<B> {
    type Record = burn::module::EmptyRecord;

    fn visit<V: burn::module::ModuleVisitor<B>>(&self, _visitor: &mut V) {}

    fn map<M: burn::module::ModuleMapper<B>>(self, _mapper: &mut M) -> Self {
        self
    }

    fn load_record(self, _record: Self::Record) -> Self {
        self
    }

    fn into_record(self) -> Self::Record {
        burn::module::EmptyRecord::new()
    }

    fn to_device(self, _: &B::Device) -> Self {
        self
    }

    fn fork(self, _: &B::Device) -> Self {
        self
    }

    fn collect_devices(&self, devices: Vec<B::Device>) -> Vec<B::Device> {
        devices
    }
}

impl<B: Backend> burn::module::ModuleDisplayDefault for Settings<B> {
    fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
        content.add_single(&"EdmConfig".to_string()).optional()
    }
}

impl<B: Backend> burn::module::ModuleDisplay for Settings<B> {}

impl<B: burn::tensor::backend::AutodiffBackend> burn::module::AutodiffModule<B> for Settings<B> {
    type InnerModule = Settings<B::InnerBackend>;

    fn valid(&self) -> Self::InnerModule {
        Settings::new(self.value.clone())
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        Settings::new(module.value)
    }
}

impl<B: Backend, N: Network<B>> EdmModel<B, N> {
    /// The config this model was built from.
    pub fn config(&self) -> &EdmConfig {
        &self.config
    }

    /// `D(x; sigma)` for normalised `x: [batch, C, n, n]` and per-sample
    /// noise levels `sigma: [batch]` (> 0).
    pub fn denoise(&self, x: Tensor<B, 4>, sigma: Tensor<B, 1>) -> Tensor<B, 4> {
        let [batch, ..] = x.dims();
        let sd = self.config.sigma_data;
        let s = sigma.clone().reshape([batch, 1, 1, 1]);
        let s2_sd2 = s.clone().square().add_scalar(sd * sd);
        let c_skip = s2_sd2.clone().recip().mul_scalar(sd * sd);
        let c_in = s2_sd2.sqrt().recip();
        let c_out = s * c_in.clone() * sd;
        let c_noise = sigma.log().div_scalar(4.0);
        let net = self.denoiser.forward_net(x.clone() * c_in, c_noise);
        x * c_skip + net * c_out
    }

    /// `D(x; sigma)` with one noise level for the whole batch.
    pub fn denoise_at(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4> {
        let [batch, ..] = x.dims();
        let sigma = Tensor::full([batch], sigma, &x.device());
        self.denoise(x, sigma)
    }

    /// The weighted EDM loss `mean(lambda(s) (D(x + s noise; s) - x)^2)` over
    /// batch, channels and nodes, with `lambda = (s^2 + s_d^2) / (s s_d)^2`.
    /// `x_clean` is normalised `[batch, C, n, n]`; `sigma: [batch]` and
    /// `noise` (like `x_clean`) come from the caller's host RNG
    /// ([`draw_training_noise`](Self::draw_training_noise)).
    pub fn loss(&self, x_clean: Tensor<B, 4>, sigma: Tensor<B, 1>, noise: Tensor<B, 4>) -> Tensor<B, 1> {
        let [batch, ..] = x_clean.dims();
        let sd2 = self.config.sigma_data * self.config.sigma_data;
        let s = sigma.clone().reshape([batch, 1, 1, 1]);
        let s2 = s.clone().square();
        let weight = s2.clone().add_scalar(sd2) / s2.mul_scalar(sd2);
        let noisy = x_clean.clone() + noise * s;
        let err = self.denoise(noisy, sigma) - x_clean;
        (err.square() * weight).mean()
    }

    /// One training step's randomness, drawn from `rng` in a fixed order:
    /// first `batch` noise levels `ln s ~ N(p_mean, p_std^2)`, then
    /// `batch * C` smooth noise fields from `noise` (whose grid fixes `n`),
    /// sample-major. Returns `(sigma [batch], noise [batch, C, n, n])`.
    pub fn draw_training_noise<R: Rng + ?Sized>(
        &self,
        noise: &SmoothNoise,
        batch: usize,
        rng: &mut R,
        device: &B::Device,
    ) -> (Tensor<B, 1>, Tensor<B, 4>) {
        let cfg = &self.config;
        let sigmas: Vec<f32> =
            (0..batch).map(|_| edm::training_sigma(rng.sample(StandardNormal), cfg.p_mean, cfg.p_std) as f32).collect();
        let sigmas = Tensor::from_data(TensorData::new(sigmas, [batch]), device);
        let fields = noise.sample_tensor(rng, batch, cfg.denoiser.channels(), device);
        (sigmas, fields)
    }

    /// Unconditional samples (normalised) by the deterministic Heun sampler,
    /// starting from `sigma_max * noise`; `noise` is `[batch, C, n, n]` of
    /// unit variance (smooth noise for the function-space prior).
    pub fn sample(&self, noise: Tensor<B, 4>, heun: &HeunConfig) -> Tensor<B, 4> {
        edm::heun_sample(|x, s| self.denoise_at(x, s), noise, &heun.sigmas())
    }

    /// Number of trainable scalars of the network.
    pub fn param_count(&self) -> usize {
        Module::<B>::num_params(&self.denoiser)
    }
}
