//! The learned models, float twins of the `runtime` kernels.
//!
//! Everything here is plain burn (`Tensor<B, D>` on any backend, gradients
//! through `Autodiff`); export to int8 lives elsewhere.

/// Truncated-DFT spectral convolution (real matmuls, any resolution).
pub mod spectral;

/// The FNO forward surrogate, its config presets and the relative-L2 loss.
pub mod fno;

/// EDM preconditioning, noise schedule and the Heun sampler.
pub mod edm;

/// Smooth (RBF) function-space training noise.
pub mod noise;

/// The prior's operator denoiser and the EDM-wrapped model.
pub mod denoiser;

/// burn-ndarray's weight initialisers draw from one process-wide RNG that
/// `Backend::seed` resets; tests that seed and then build a model hold this
/// lock so that concurrently running tests cannot interleave their draws.
#[cfg(test)]
pub(crate) static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
