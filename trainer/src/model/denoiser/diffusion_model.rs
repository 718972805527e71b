//! A trained diffusion model of either architecture, for the code that
//! loads a run and does not care which network it holds.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::edm_model::{EdmConfig, EdmModel};
use super::network::NetworkConfig;
use crate::error::Error;
use crate::model::edm::HeunConfig;
use crate::model::unet::Unet;

/// A trained EDM model of either architecture, for the code that loads a
/// run and does not care which network it holds (sampling, evaluation).
/// Training and saving work on the concrete [`EdmModel`], whose record is
/// what `model.bin` holds; this enum's own record is never written. The
/// variants differ in size (the FNO-type one carries cached spectral
/// bases); a model is loaded once per run, so boxing buys nothing.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum DiffusionModel<B: Backend> {
    /// The FNO-type denoiser.
    Fno(EdmModel<B>),
    /// The U-Net.
    Unet(EdmModel<B, Unet<B>>),
}

impl<B: Backend> DiffusionModel<B> {
    /// The config this model was built from.
    pub fn config(&self) -> &EdmConfig {
        match self {
            Self::Fno(m) => m.config(),
            Self::Unet(m) => m.config(),
        }
    }

    /// `D(x; sigma)` with one noise level for the whole batch.
    pub fn denoise_at(&self, x: Tensor<B, 4>, sigma: f64) -> Tensor<B, 4> {
        match self {
            Self::Fno(m) => m.denoise_at(x, sigma),
            Self::Unet(m) => m.denoise_at(x, sigma),
        }
    }

    /// Unconditional samples (see [`EdmModel::sample`]).
    pub fn sample(&self, noise: Tensor<B, 4>, heun: &HeunConfig) -> Tensor<B, 4> {
        match self {
            Self::Fno(m) => m.sample(noise, heun),
            Self::Unet(m) => m.sample(noise, heun),
        }
    }

    /// Number of trainable scalars of the network.
    pub fn param_count(&self) -> usize {
        match self {
            Self::Fno(m) => m.param_count(),
            Self::Unet(m) => m.param_count(),
        }
    }

    /// The FNO-type model, or an error naming the U-Net (the device export
    /// and the device parity checks run the FNO denoiser only).
    pub fn into_fno(self) -> Result<EdmModel<B>, Error> {
        match self {
            Self::Fno(m) => Ok(m),
            Self::Unet(_) => Err(Error::ArchMismatch { expected: "fno", got: "unet" }),
        }
    }
}

impl EdmConfig {
    /// A freshly initialised model of the config's architecture.
    pub fn init_any<B: Backend>(&self, device: &B::Device) -> Result<DiffusionModel<B>, Error> {
        Ok(match self.denoiser {
            NetworkConfig::Fno(_) => DiffusionModel::Fno(self.init_network(device)?),
            NetworkConfig::Unet(_) => DiffusionModel::Unet(self.init_network(device)?),
        })
    }
}
