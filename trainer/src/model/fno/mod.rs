//! The FNO forward surrogate `F ≈ G` (docs/science.md section 2), float twin of
//! `runtime::fno`.
//!
//! Pipeline (the shared [`Trunk`], channels-first inside;
//! [`Fno::forward_normalized_reference`] is the same network channels-last
//! with the reference spectral layer):
//!
//! 1. normalise `a` with the stored statistics and append the coordinate
//!    channels `x = j/(n-1)`, `y = i/(n-1)` (3 channels);
//! 2. reflect-pad by `p = round(pad_fraction * n)` nodes on every side
//!    ([`reflect_pad`](super::trunk::reflect_pad));
//! 3. lift: `Linear(3 -> width)`;
//! 4. `layers` Fourier layers `h = relu(spectral(h) + skip(h))`, the skip a
//!    pointwise `Linear(width -> width)` ([`FnoBlocks`]);
//! 5. crop back to `n x n`;
//! 6. project: `Linear(width -> proj_width) -> relu -> Linear(proj_width -> 1)`;
//! 7. de-normalise with the stored `u` statistics.
//!
//! ReLU, not GELU: the device runs the vector-Jacobian product for guidance,
//! and a piecewise-linear activation needs only a sign mask there.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::spectral::check_grid;
use super::trunk::{FnoBlocks, FnoBlocksConfig, Trunk, validate_sizes};
use crate::error::Error;

/// Per-channel statistics of `a` and `u`, applied inside [`Fno::forward`] as
/// `(a - a_mean) / a_std` and `u_mean + u_std * net`.
///
/// They live in the config (not in the weight record) so they are written
/// next to every artifact with the other hyper-parameters.
#[derive(Config, Debug, PartialEq)]
pub struct Normalization {
    /// Mean of the input field `a`.
    pub a_mean: f64,
    /// Standard deviation of `a` (> 0).
    pub a_std: f64,
    /// Mean of the solution `u`.
    pub u_mean: f64,
    /// Standard deviation of `u` (> 0).
    pub u_std: f64,
}

impl Normalization {
    /// No normalisation (mean 0, std 1 for both fields).
    pub fn identity() -> Self {
        Self::new(0.0, 1.0, 0.0, 1.0)
    }

    /// Statistics of the given samples (all nodes of all samples pooled),
    /// accumulated in f64. A constant field gets std 1 rather than 0.
    pub fn fit(a: &[f32], u: &[f32]) -> Self {
        let (a_mean, a_std) = mean_std(a);
        let (u_mean, u_std) = mean_std(u);
        Self::new(a_mean, a_std, u_mean, u_std)
    }
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 1.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 1e-12 * mean.abs().max(1.0) { std } else { 1.0 })
}

/// Hyper-parameters of an [`Fno`].
#[derive(Config, Debug)]
pub struct FnoConfig {
    /// Hidden channels of the Fourier layers.
    pub width: usize,
    /// Modes kept per axis in every spectral convolution (`2m x m` weights).
    pub modes: usize,
    /// Number of Fourier layers.
    pub layers: usize,
    /// Reflection pad on each side as a fraction of `n` (DDIS uses 0.5).
    pub pad_fraction: f64,
    /// Hidden channels of the projection.
    pub proj_width: usize,
    /// Statistics of `a` and `u`; fit them on the training set.
    #[config(default = "Normalization::identity()")]
    pub normalization: Normalization,
}

impl FnoConfig {
    /// The microcontroller size: 264 449 parameters (~258 KiB as int8),
    /// leaving room for the prior in 1 MiB. Pads by `n/4`, not DDIS's `n/2`:
    /// the padded grid is 48x48 instead of 64x64 at n = 32, 1.8x less work
    /// per layer on the device.
    pub fn device() -> Self {
        Self::new(16, 8, 4, 0.25, 64)
    }

    /// The host size (2 368 001 parameters), padded by `n/2` as in DDIS.
    pub fn host() -> Self {
        Self::new(32, 12, 4, 0.5, 128)
    }

    /// Checks that every size is positive and the pad fraction in `[0, 1)`
    /// (the grid is checked by [`check_resolution`](Self::check_resolution)).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let sizes =
            [("width", self.width), ("modes", self.modes), ("layers", self.layers), ("proj_width", self.proj_width)];
        validate_sizes(&sizes, ("pad_fraction", self.pad_fraction))
    }

    /// Nodes of reflection padding on each side of an `n x n` grid.
    pub fn pad_len(&self, n: usize) -> usize {
        crate::model::spectral::pad_len(self.pad_fraction, n)
    }

    /// Whether an `n x n` grid can be run: reflection needs `p < n` and the
    /// padded grid must carry the modes ([`check_grid`]).
    ///
    /// # Errors
    /// A message naming the grid and the limit it breaks.
    pub fn check_resolution(&self, n: usize) -> Result<(), String> {
        if n < 2 {
            return Err(format!("grid of {n} nodes per side is too small"));
        }
        let padded = n + 2 * self.pad_len(n);
        check_grid(padded, padded, self.modes).map_err(|e| format!("n = {n} (padded to {padded}): {e}"))
    }

    /// Smallest `n` that [`check_resolution`](Self::check_resolution)
    /// accepts; `usize::MAX` if none does (zero modes).
    pub fn min_resolution(&self) -> usize {
        // n = 2m + 2 always passes (p >= 0, p < n), so the search is bounded.
        (2..=2 * self.modes + 2).find(|&n| self.check_resolution(n).is_ok()).unwrap_or(usize::MAX)
    }

    /// Parameter count of the model this config builds, in closed form.
    pub fn param_count(&self) -> usize {
        let (w, m, p) = (self.width, self.modes, self.proj_width);
        let lift = 3 * w + w;
        let layer = 2 * w * w * 2 * m * m + w * w + w;
        let proj = w * p + p + p + 1;
        lift + self.layers * layer + proj
    }

    /// A freshly initialised model.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Fno<B> {
        let w = self.width;
        Fno {
            lift: LinearConfig::new(3, w).init(device),
            blocks: FnoBlocksConfig::new(w, self.modes, self.layers).init(device),
            proj_hidden: LinearConfig::new(w, self.proj_width).init(device),
            proj_out: LinearConfig::new(self.proj_width, 1).init(device),
            modes: self.modes,
            pad_fraction: self.pad_fraction,
            normalization: self.normalization.clone(),
        }
    }
}

/// Fourier neural operator `a -> u` on the node grid (see the module docs).
#[derive(Module, Debug)]
pub struct Fno<B: Backend> {
    /// Pointwise lift, 3 -> width (channels: normalised a, x, y).
    pub lift: Linear<B>,
    /// The Fourier layers (their record sits where the plain `spectral`
    /// and `skip` fields were).
    pub blocks: FnoBlocks<B>,
    /// Projection hidden layer, `width -> proj_width`.
    pub proj_hidden: Linear<B>,
    /// Projection output layer, `proj_width -> 1`.
    pub proj_out: Linear<B>,
    /// Modes per axis (copied from the config).
    pub modes: usize,
    /// Pad fraction (copied from the config).
    pub pad_fraction: f64,
    /// Statistics of a and u (copied from the config; not in the record).
    pub normalization: Normalization,
}

impl<B: Backend> Fno<B> {
    /// Predicts `u` from `a`, both `[batch, n, n]` in physical units.
    ///
    /// # Panics
    /// If the field is not square or `n` is below the config's
    /// `min_resolution`; check with `FnoConfig::check_resolution` at the edge.
    pub fn forward(&self, a: Tensor<B, 3>) -> Tensor<B, 3> {
        let nz = &self.normalization;
        let a = (a - nz.a_mean).div_scalar(nz.a_std);
        self.forward_normalized(a).mul_scalar(nz.u_std).add_scalar(nz.u_mean)
    }

    /// The network between the normalisations: normalised `a` in,
    /// normalised `u` out, `[batch, n, n]` each.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_normalized(&self, a: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_normalized_mixing(a, &self.mixing_matrices())
    }

    /// The spectral layers' mixing matrices ([`FnoBlocks::mixing_matrices`]),
    /// for [`forward_mixing`](Self::forward_mixing) with frozen weights.
    pub fn mixing_matrices(&self) -> Vec<Tensor<B, 3>> {
        self.blocks.mixing_matrices()
    }

    /// [`forward`](Self::forward) with the mixing matrices built beforehand
    /// (they must come from these weights; a sampler's guide builds them once
    /// instead of on every call).
    ///
    /// # Panics
    /// As [`forward`](Self::forward), or if `mixing` has another length
    /// than the layers.
    pub fn forward_mixing(&self, a: Tensor<B, 3>, mixing: &[Tensor<B, 3>]) -> Tensor<B, 3> {
        let nz = &self.normalization;
        let a = (a - nz.a_mean).div_scalar(nz.a_std);
        self.forward_normalized_mixing(a, mixing).mul_scalar(nz.u_std).add_scalar(nz.u_mean)
    }

    fn forward_normalized_mixing(&self, a: Tensor<B, 3>, mixing: &[Tensor<B, 3>]) -> Tensor<B, 3> {
        let [batch, n, n2] = a.dims();
        assert_eq!(n, n2, "the FNO takes square fields, got {n}x{n2}");
        self.trunk().forward_cf(a.unsqueeze_dim::<4>(1), Some(mixing), None).reshape([batch, n, n])
    }

    /// [`forward_normalized`](Self::forward_normalized) computed the plain
    /// way: channels-last, burn's `Linear`, the reference spectral layer
    /// and bases built for the call. The fast path is tested against it.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_normalized_reference(&self, a: Tensor<B, 3>) -> Tensor<B, 3> {
        self.trace_normalized(a, |_, _| {})
    }

    /// [`forward_normalized_reference`](Self::forward_normalized_reference)
    /// showing the padded hidden state `[batch, n + 2p, n + 2p, width]` to
    /// `on_stage(0, h)` after the lift and `on_stage(l, h)` after layer `l`,
    /// as `runtime::fno`'s `trace_normalized` does on the device.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn trace_normalized(&self, a: Tensor<B, 3>, on_stage: impl FnMut(usize, &Tensor<B, 4>)) -> Tensor<B, 3> {
        let [batch, n, n2] = a.dims();
        assert_eq!(n, n2, "the FNO takes square fields, got {n}x{n2}");
        self.trunk().trace_reference(a.unsqueeze_dim::<4>(3), None, on_stage).reshape([batch, n, n])
    }

    /// The network's weights as the shared FNO pipeline.
    pub fn trunk(&self) -> Trunk<'_, B> {
        Trunk {
            lift: &self.lift,
            blocks: &self.blocks,
            proj_hidden: &self.proj_hidden,
            proj_out: &self.proj_out,
            pad_fraction: self.pad_fraction,
        }
    }

    /// Nodes of reflection padding on each side of an `n x n` grid.
    pub fn pad_len(&self, n: usize) -> usize {
        crate::model::spectral::pad_len(self.pad_fraction, n)
    }

    /// Number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.num_params()
    }
}

/// Relative L2 loss, `mean_b ||pred_b - target_b|| / ||target_b||`, over
/// all dims but the first (batch).
///
/// A 1e-12 floor inside the numerator's square root keeps the gradient
/// finite when `pred == target`; an all-zero target gives an infinite loss.
pub fn rel_l2_loss<B: Backend, const D: usize>(pred: Tensor<B, D>, target: Tensor<B, D>) -> Tensor<B, 1> {
    let batch = pred.dims()[0];
    let diff = (pred - target.clone()).reshape([batch as i32, -1]);
    let target = target.reshape([batch as i32, -1]);
    let num = diff.powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    let den = target.powi_scalar(2).sum_dim(1).sqrt();
    (num / den).mean()
}

#[cfg(test)]
mod tests;
