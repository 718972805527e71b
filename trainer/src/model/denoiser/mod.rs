//! The diffusion prior: its raw network and the EDM model around it
//! (docs/science.md section 2), one job per file, in layers:
//!
//! * `operator`: the FNO-type operator denoiser [`Denoiser`] (what the
//!   device runs), on the shared FNO trunk with FiLM;
//! * `network`: the seam to the raw network, [`NetworkConfig`] (`--arch`)
//!   and the [`Network`] trait, implemented by [`Denoiser`] and the U-Net;
//! * `norm`: the per-channel data normalisation [`ChannelNorm`];
//! * `edm_model`: [`EdmConfig`] and [`EdmModel`], the EDM preconditioning,
//!   loss, training noise and sampler around any [`Network`];
//! * `diffusion_model`: [`DiffusionModel`], a loaded model of either
//!   architecture.
//!
//! Everything is re-exported here, so callers name `model::denoiser::X`.

mod diffusion_model;
mod edm_model;
mod network;
mod norm;
mod operator;

pub use diffusion_model::DiffusionModel;
pub use edm_model::{EdmConfig, EdmModel, Settings};
pub use network::{Network, NetworkConfig};
pub use norm::ChannelNorm;
pub use operator::{Denoiser, DenoiserConfig};

#[cfg(test)]
mod tests;
