//! The learned models, float twins of the `runtime` kernels.
//!
//! Everything here is plain burn (`Tensor<B, D>` on any backend, gradients
//! through `Autodiff`); export to int8 lives elsewhere.

/// Truncated-DFT spectral convolution (real matmuls, any resolution).
pub mod spectral;

/// The FNO trunk (lift, Fourier blocks with optional FiLM, projection)
/// shared by the surrogate and the prior's denoiser.
pub mod trunk;

/// The FNO forward surrogate, its config presets and the relative-L2 loss.
pub mod fno;

/// EDM preconditioning, noise schedule and the Heun sampler.
pub mod edm;

/// Smooth (RBF) function-space training noise.
pub mod noise;

/// The prior's operator denoiser and the EDM-wrapped model.
pub mod denoiser;

/// A small U-shaped convolutional denoiser, the host-only alternative to the
/// operator denoiser (`--arch unet`).
pub mod unet;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

use burn::tensor::backend::{Backend, DeviceId, DeviceOps};

type CacheKey = (&'static str, TypeId, DeviceId, [usize; 3]);

thread_local! {
    /// Constant tensors built so far on this thread ([`per_device`]).
    static CONSTANTS: RefCell<HashMap<CacheKey, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// A constant of the models (DFT bases, coordinate channels) for backend
/// `B` on `device`, built by `build` on first use and cloned from a
/// per-thread cache afterwards, keyed by `what`, the backend type, the
/// device and `dims`. Tensor clones share their data, so a hit costs no
/// copy and no upload. The entries live as long as the thread (a few per
/// grid size, kilobytes each).
pub(crate) fn per_device<B: Backend, T: Clone + 'static>(
    what: &'static str,
    dims: [usize; 3],
    device: &B::Device,
    build: impl FnOnce() -> T,
) -> T {
    let key = (what, TypeId::of::<B>(), device.id(), dims);
    if let Some(hit) = CONSTANTS.with(|c| c.borrow().get(&key).and_then(|v| v.downcast_ref::<T>()).cloned()) {
        return hit;
    }
    let built = build();
    CONSTANTS.with(|c| c.borrow_mut().insert(key, Box::new(built.clone())));
    built
}

/// burn-ndarray's weight initialisers draw from one process-wide RNG that
/// `Backend::seed` resets; tests that seed and then build a model hold this
/// lock so that concurrently running tests cannot interleave their draws.
#[cfg(test)]
pub(crate) static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
