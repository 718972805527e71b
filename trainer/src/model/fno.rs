//! The FNO forward surrogate `F ≈ G` (docs/science.md section 2), float twin of
//! `runtime::fno`.
//!
//! Pipeline (channels-first inside, `[batch, channels, n, n]`, the layout
//! of [`SpectralConv2d::forward_cf`]; [`Fno::forward_normalized_reference`]
//! is the same network channels-last with the reference spectral layer):
//!
//! 1. normalise `a` with the stored statistics and append the coordinate
//!    channels `x = j/(n-1)`, `y = i/(n-1)` (3 channels);
//! 2. reflect-pad by `p = round(pad_fraction * n)` nodes on every side
//!    ([`reflect_pad`]). Padding the 3 input channels before the pointwise
//!    lift is the same as padding the lifted features (reflection commutes
//!    with pointwise maps) and cheaper;
//! 3. lift: `Linear(3 -> width)`;
//! 4. `layers` Fourier layers `h = relu(spectral(h) + skip(h))`, the skip a
//!    pointwise `Linear(width -> width)`;
//! 5. crop back to `n x n` ([`crop`]);
//! 6. project: `Linear(width -> proj_width) -> relu -> Linear(proj_width -> 1)`;
//! 7. de-normalise with the stored `u` statistics.
//!
//! ReLU, not GELU: the device runs the vector-Jacobian product for guidance,
//! and a piecewise-linear activation needs only a sign mask there.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::spectral::{SpectralBases, SpectralBlocks, SpectralConv2d, SpectralConvConfig, check_grid};
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
        for (name, value) in sizes {
            if value == 0 {
                return Err(Error::InvalidConfig { name, value: 0.0, reason: "must be >= 1" });
            }
        }
        if !(self.pad_fraction.is_finite() && (0.0..1.0).contains(&self.pad_fraction)) {
            return Err(Error::InvalidConfig {
                name: "pad_fraction",
                value: self.pad_fraction,
                reason: "must be in [0, 1)",
            });
        }
        Ok(())
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
            spectral: (0..self.layers).map(|_| SpectralConvConfig::new(w, w, self.modes).init(device)).collect(),
            skip: (0..self.layers).map(|_| LinearConfig::new(w, w).init(device)).collect(),
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
    /// Spectral convolutions of the Fourier layers.
    pub spectral: Vec<SpectralConv2d<B>>,
    /// Pointwise skips of the Fourier layers, width -> width.
    pub skip: Vec<Linear<B>>,
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

    /// The spectral layers' mixing matrices
    /// ([`SpectralConv2d::mixing_matrix`]), for
    /// [`forward_mixing`](Self::forward_mixing) with frozen weights.
    pub fn mixing_matrices(&self) -> Vec<Tensor<B, 3>> {
        self.spectral.iter().map(SpectralConv2d::mixing_matrix).collect()
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
        assert_eq!(mixing.len(), self.spectral.len(), "one mixing matrix per spectral layer");
        let [batch, n, n2] = a.dims();
        assert_eq!(n, n2, "the FNO takes square fields, got {n}x{n2}");
        let device = a.device();
        let p = self.pad_len(n);

        let coords = coordinate_channels_cf::<B>(n, &device).expand([batch, 2, n, n]);
        let x = Tensor::cat(vec![a.unsqueeze_dim::<4>(1), coords], 1);
        let mut h = pointwise_cf(&self.lift, reflect_pad_axes(x, p, [2, 3]));
        let blocks = SpectralBlocks::cached(n + 2 * p, n + 2 * p, self.modes, &device);
        for ((spectral, skip), mix) in self.spectral.iter().zip(&self.skip).zip(mixing) {
            h = relu(spectral.forward_cf_mixing(&blocks, mix.clone(), h.clone()) + pointwise_cf(skip, h));
        }
        let h = h.narrow(2, p, n).narrow(3, p, n);
        let u = pointwise_cf(&self.proj_out, relu(pointwise_cf(&self.proj_hidden, h)));
        u.reshape([batch, n, n])
    }

    /// [`forward_normalized`](Self::forward_normalized) computed the plain
    /// way: channels-last, burn's `Linear`, the reference spectral layer
    /// ([`SpectralConv2d::forward_with`]) and bases built for the call. The
    /// fast path is tested against it.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_normalized_reference(&self, a: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, n, n2] = a.dims();
        assert_eq!(n, n2, "the FNO takes square fields, got {n}x{n2}");
        let device = a.device();
        let p = self.pad_len(n);

        let x = Tensor::cat(vec![a.unsqueeze_dim::<4>(3), coordinate_channels::<B>(batch, n, &device)], 3);
        let mut h = self.lift.forward(reflect_pad(x, p));
        let bases = SpectralBases::new(n + 2 * p, n + 2 * p, self.modes, &device);
        for (spectral, skip) in self.spectral.iter().zip(&self.skip) {
            h = relu(spectral.forward_with(&bases, h.clone()) + skip.forward(h));
        }
        let h = crop(h, p, n);
        let u = self.proj_out.forward(relu(self.proj_hidden.forward(h)));
        u.reshape([batch, n, n])
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

/// The coordinate channels `[batch, n, n, 2]`: channel 0 is
/// `x = j/(n-1)`, channel 1 is `y = i/(n-1)` (docs/science.md section 4).
pub fn coordinate_channels<B: Backend>(batch: usize, n: usize, device: &B::Device) -> Tensor<B, 4> {
    let step = 1.0 / (n.max(2) - 1) as f64;
    let mut v = Vec::with_capacity(n * n * 2);
    for i in 0..n {
        for j in 0..n {
            v.push((j as f64 * step) as f32);
            v.push((i as f64 * step) as f32);
        }
    }
    Tensor::<B, 4>::from_data(TensorData::new(v, [1, n, n, 2]), device).repeat_dim(0, batch)
}

/// The coordinate channels channels-first, `[1, 2, n, n]` (as
/// [`coordinate_channels`]), built once per `(backend, device, n)` on this
/// thread.
pub fn coordinate_channels_cf<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 4> {
    super::per_device::<B, Tensor<B, 4>>("coordinate channels", [n, 0, 0], device, || {
        coordinate_channels::<B>(1, n, device).permute([0, 3, 1, 2]).reshape([1, 2, n, n])
    })
}

/// `linear` applied along the channel dim of channels-first
/// `x: [batch, in, h, w]` (a 1x1 convolution): `W^T x + b` as one product
/// per sample, `[batch, out, h, w]`. Same weights and record as on
/// channels-last data.
pub fn pointwise_cf<B: Backend>(linear: &Linear<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let wt = linear.weight.val().transpose().unsqueeze::<3>();
    let o = wt.dims()[1];
    let y = wt.matmul(x.reshape([b, c, h * w]));
    let y = match &linear.bias {
        Some(bias) => y + bias.val().reshape([1, o, 1]),
        None => y,
    };
    y.reshape([b, o, h, w])
}

/// Reflection padding of dims 1 and 2 of `[batch, h, w, c]` by `p` on every
/// side, edge not repeated (numpy's `"reflect"`):
/// `out[p - k] = x[k]` and `out[p + n - 1 + k] = x[n - 1 - k]` for
/// `k = 1..=p`, along each axis.
///
/// # Panics
/// If `p >= h` or `p >= w` (nothing left to mirror).
pub fn reflect_pad<B: Backend>(x: Tensor<B, 4>, p: usize) -> Tensor<B, 4> {
    reflect_pad_axes(x, p, [1, 2])
}

/// [`reflect_pad`] of the two given dims (`[2, 3]` for channels-first).
///
/// # Panics
/// If `p` is not below the size of both dims.
pub fn reflect_pad_axes<B: Backend>(x: Tensor<B, 4>, p: usize, dims: [usize; 2]) -> Tensor<B, 4> {
    if p == 0 {
        return x;
    }
    let pad_dim = |t: Tensor<B, 4>, dim: usize| {
        let n = t.dims()[dim];
        assert!(p < n, "reflect pad {p} needs more than {p} nodes, axis {dim} has {n}");
        let before = t.clone().narrow(dim, 1, p).flip([dim as isize]);
        let after = t.clone().narrow(dim, n - 1 - p, p).flip([dim as isize]);
        Tensor::cat(vec![before, t, after], dim)
    };
    pad_dim(pad_dim(x, dims[0]), dims[1])
}

/// Inverse of [`reflect_pad`]: the `n x n` interior of `[batch, n + 2p, n + 2p, c]`.
pub fn crop<B: Backend>(x: Tensor<B, 4>, p: usize, n: usize) -> Tensor<B, 4> {
    x.narrow(1, p, n).narrow(2, p, n)
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
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = NdArray<f32>;
    type AB = Autodiff<B>;

    fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    fn close(got: &[f32], want: &[f32], rel: f32, abs: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= abs + rel * w.abs(), "{what}[{i}]: got {g}, expected {w}");
        }
    }

    #[test]
    fn reflect_pad_mirrors_without_repeating_the_edge() {
        let device = Default::default();
        let (h, w, p) = (4, 5, 2);
        // Value encodes the node: 10 * i + j, two channels (+0, +100).
        let v: Vec<f32> = (0..h * w * 2).map(|k| ((k / 2) / w * 10 + (k / 2) % w + (k % 2) * 100) as f32).collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(v, [1, h, w, 2]), &device);
        let padded = reflect_pad(x, p);
        assert_eq!(padded.dims(), [1, h + 2 * p, w + 2 * p, 2]);
        let got = to_vec(padded);
        // Mirror index along one axis of length len: -k -> k, len-1+k -> len-1-k.
        let mirror = |q: isize, len: usize| -> usize {
            let len = len as isize;
            let r = if q < 0 {
                -q
            } else if q >= len {
                2 * (len - 1) - q
            } else {
                q
            };
            r as usize
        };
        for pi in 0..h + 2 * p {
            for pj in 0..w + 2 * p {
                let i = mirror(pi as isize - p as isize, h);
                let j = mirror(pj as isize - p as isize, w);
                for c in 0..2 {
                    let want = (10 * i + j + 100 * c) as f32;
                    let g = got[(pi * (w + 2 * p) + pj) * 2 + c];
                    assert_eq!(g, want, "padded[{pi}, {pj}, {c}] should mirror [{i}, {j}]");
                }
            }
        }
    }

    #[test]
    fn reflect_pad_then_crop_is_identity() {
        let device = Default::default();
        let n = 6;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let v: Vec<f32> = (0..2 * n * n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(v.clone(), [2, n, n, 3]), &device);
        for p in [0, 1, 3, 5] {
            let back = crop(reflect_pad(x.clone(), p), p, n);
            assert_eq!(to_vec(back), v, "pad {p} then crop");
        }
    }

    #[test]
    fn coordinates_follow_the_grid_convention() {
        let c = to_vec(coordinate_channels::<B>(1, 3, &Default::default()));
        // node [i=1, j=2]: x = 1, y = 0.5
        assert_eq!(&c[(3 + 2) * 2..(3 + 2) * 2 + 2], &[1.0, 0.5]);
    }

    #[test]
    fn rel_l2_loss_matches_hand_computation() {
        let device = Default::default();
        let t = Tensor::<B, 3>::from_data([[[3.0, 4.0]], [[1.0, 0.0]]], &device);
        let p = Tensor::<B, 3>::from_data([[[3.0, 4.5]], [[0.0, 0.0]]], &device);
        // sample 0: 0.5 / 5, sample 1: 1 / 1 -> mean 0.55
        let got = rel_l2_loss(p, t).into_scalar();
        assert!((got - 0.55).abs() < 1e-6, "got {got}, expected 0.55");
    }

    #[test]
    fn preset_param_counts_match_closed_form_and_budget() {
        let device = Default::default();
        for (name, cfg) in [("device", FnoConfig::device()), ("host", FnoConfig::host())] {
            let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
            let model = cfg.init::<B>(&device);
            assert_eq!(model.param_count(), cfg.param_count(), "{name} preset");
        }
        assert_eq!(FnoConfig::device().param_count(), 264_449);
        assert_eq!(FnoConfig::host().param_count(), 2_368_001);
        // int8 weights of prior + surrogate share 1 MiB: keep the FNO under 300k.
        assert!(FnoConfig::device().param_count() <= 300_000);
    }

    #[test]
    fn resolution_checks() {
        let cfg = FnoConfig::device();
        assert!(cfg.check_resolution(32).is_ok());
        assert!(cfg.check_resolution(64).is_ok());
        let min = cfg.min_resolution();
        assert!(cfg.check_resolution(min).is_ok() && cfg.check_resolution(min - 1).is_err());
        assert_eq!(FnoConfig::new(4, 0, 1, 0.5, 4).min_resolution(), usize::MAX);
    }

    #[test]
    fn forward_applies_the_stored_normalization() {
        let device = Default::default();
        let nz = Normalization::new(2.0, 0.5, -1.0, 0.01);
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        let model = FnoConfig::new(4, 2, 1, 0.25, 8).with_normalization(nz.clone()).init::<B>(&device);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let v: Vec<f32> = (0..2 * 8 * 8).map(|_| rng.random_range(0.0..4.0)).collect();
        let a = Tensor::<B, 3>::from_data(TensorData::new(v, [2, 8, 8]), &device);
        let got = to_vec(model.forward(a.clone()));
        let want = to_vec(model.forward_normalized((a - 2.0) / 0.5) * 0.01 - 1.0);
        close(&got, &want, 1e-6, 1e-6, "physical forward");
    }

    /// f32 round-off of the fast path against the reference, relative to
    /// the largest output (sums of a few thousand products per layer).
    const FAST_VS_REFERENCE_REL: f32 = 2e-5;

    fn max_abs(v: &[f32]) -> f32 {
        v.iter().fold(0.0f32, |a, x| a.max(x.abs()))
    }

    #[test]
    fn fast_forward_and_gradients_match_the_reference() {
        let device = Default::default();
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        AB::seed(&device, 3);
        for (cfg, n) in [(FnoConfig::device(), 32), (FnoConfig::new(6, 3, 2, 0.5, 8), 11)] {
            let model = cfg.init::<AB>(&device);
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let v: Vec<f32> = (0..2 * n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let a = Tensor::<AB, 3>::from_data(TensorData::new(v, [2, n, n]), &device);
            let fast = model.forward_normalized(a.clone());
            let reference = model.forward_normalized_reference(a.clone());
            let (f, r) = (to_vec(fast.clone().inner()), to_vec(reference.clone().inner()));
            close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * max_abs(&r), "fast forward");
            // Gradients of the same scalar with respect to every weight.
            let gf = fast.powi_scalar(2).sum().backward();
            let gr = reference.powi_scalar(2).sum().backward();
            let pairs = [
                (model.spectral[0].weight_re.grad(&gf), model.spectral[0].weight_re.grad(&gr)),
                (model.spectral[1].weight_im.grad(&gf), model.spectral[1].weight_im.grad(&gr)),
            ];
            for (k, (f, r)) in pairs.into_iter().enumerate() {
                let (f, r) = (to_vec(f.unwrap()), to_vec(r.unwrap()));
                close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&r), &format!("spectral gradient {k}"));
            }
            for (name, f, r) in [
                ("lift", model.lift.weight.grad(&gf), model.lift.weight.grad(&gr)),
                ("skip", model.skip[1].weight.grad(&gf), model.skip[1].weight.grad(&gr)),
                ("proj", model.proj_hidden.weight.grad(&gf), model.proj_hidden.weight.grad(&gr)),
            ] {
                let (f, r) = (to_vec(f.unwrap()), to_vec(r.unwrap()));
                close(&f, &r, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&r), &format!("{name} gradient"));
            }
            let bf = to_vec(model.skip[0].bias.as_ref().unwrap().grad(&gf).unwrap());
            let br = to_vec(model.skip[0].bias.as_ref().unwrap().grad(&gr).unwrap());
            close(&bf, &br, 0.0, FAST_VS_REFERENCE_REL * 10.0 * max_abs(&br), "skip bias gradient");
        }
    }

    #[test]
    fn same_model_runs_at_32_and_64() {
        let device = Default::default();
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        let model = FnoConfig::device().init::<B>(&device);
        for n in [32, 64] {
            let a = Tensor::<B, 3>::ones([2, n, n], &device);
            let u = model.forward(a);
            assert_eq!(u.dims(), [2, n, n], "output shape at n = {n}");
            assert!(to_vec(u).iter().all(|v| v.is_finite()), "finite output at n = {n}");
        }
    }

    /// Target operator for the training test: three sweeps of a 5-point
    /// average with zero boundary (a Poisson-like smoothing).
    fn smooth(a: &[f32], n: usize) -> Vec<f32> {
        let mut u = a.to_vec();
        for _ in 0..3 {
            let prev = u.clone();
            for i in 0..n {
                for j in 0..n {
                    let at = |ii: isize, jj: isize| {
                        if ii < 0 || jj < 0 || ii >= n as isize || jj >= n as isize {
                            0.0
                        } else {
                            prev[ii as usize * n + jj as usize]
                        }
                    };
                    let (ii, jj) = (i as isize, j as isize);
                    u[i * n + j] =
                        (at(ii, jj) + at(ii - 1, jj) + at(ii + 1, jj) + at(ii, jj - 1) + at(ii, jj + 1)) / 5.0;
                }
            }
        }
        u
    }

    #[test]
    fn tiny_fno_learns_a_smoothing_map() {
        let device = Default::default();
        let (batch, n) = (8, 12);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut a = Vec::with_capacity(batch * n * n);
        let mut u = Vec::with_capacity(batch * n * n);
        for _ in 0..batch {
            // A few random low-frequency waves plus an offset.
            let waves: Vec<(f32, f32, f32, f32)> = (0..3)
                .map(|_| {
                    (
                        rng.random_range(-1.0..1.0),
                        rng.random_range(0.0..3.0),
                        rng.random_range(0.0..3.0),
                        rng.random_range(0.0..6.3),
                    )
                })
                .collect();
            let field: Vec<f32> = (0..n * n)
                .map(|k| {
                    let (y, x) = ((k / n) as f32 / (n - 1) as f32, (k % n) as f32 / (n - 1) as f32);
                    1.0 + waves.iter().map(|&(amp, fx, fy, ph)| amp * (3.0 * (fx * x + fy * y) + ph).sin()).sum::<f32>()
                })
                .collect();
            u.extend(smooth(&field, n));
            a.extend(field);
        }
        let a = Tensor::<AB, 3>::from_data(TensorData::new(a, [batch, n, n]), &device);
        let u = Tensor::<AB, 3>::from_data(TensorData::new(u, [batch, n, n]), &device);

        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        AB::seed(&device, 11);
        let mut model = FnoConfig::new(8, 3, 2, 0.25, 16).init::<AB>(&device);
        let mut optim = AdamConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..50 {
            let loss = rel_l2_loss(model.forward(a.clone()), u.clone());
            losses.push(loss.clone().into_scalar());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        let best = losses.iter().copied().fold(f32::INFINITY, f32::min);
        eprintln!("tiny FNO rel-L2: first {first:.4}, last {last:.4}, best {best:.4}");
        assert!(
            best < first / 4.0 && last < first / 3.0,
            "loss should fall clearly: first {first}, last {last}, best {best}, all {losses:?}"
        );
    }
}
