//! The prior's raw network: a resolution-agnostic FNO-type operator
//! denoiser `N(x_in; c_noise)` with a noise-level embedding
//! (docs/science.md section 2).
//!
//! Pipeline of [`Denoiser::forward`] (the shared
//! [`Trunk`], channels-first inside; [`Denoiser::forward_reference`] is the
//! same network channels-last with the reference spectral layer):
//!
//! 1. append the coordinate channels `x = j/(n-1)`, `y = i/(n-1)` to the
//!    `C` data channels and reflect-pad by `round(pad_fraction * n)` nodes;
//! 2. lift: `Linear(C + 2 -> width)`;
//! 3. `layers` Fourier blocks `h = relu((spectral(h) + skip(h)) (1 + scale) + shift)`,
//!    with `(scale, shift)` per channel from the noise embedding (FiLM);
//! 4. crop to `n x n`, project: `Linear(width -> proj_width) -> relu ->
//!    Linear(proj_width -> C)`.
//!
//! The noise embedding is `[sin(2^k c), cos(2^k c)]`, `k < embed_frequencies`,
//! of `c = c_noise(sigma)`, then `Linear -> relu -> Linear -> relu`. Only
//! ReLU: the device runs this network and a piecewise-linear activation is
//! one compare. The device sampler's noise levels are fixed, so the export
//! can fold the embedding and FiLM layers into per-level `(scale, shift)`
//! tables computed here on the host.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

use crate::error::Error;
use crate::model::edm;
use crate::model::spectral::{check_grid, pad_len};
use crate::model::trunk::{Film, FnoBlocks, FnoBlocksConfig, Trunk, validate_sizes};

/// Bytes of one activation value on the device (f32; docs/format.md).
const ACTIVATION_BYTES: usize = 4;

/// Hyper-parameters of a [`Denoiser`].
#[derive(Config, Debug, PartialEq)]
pub struct DenoiserConfig {
    /// Data channels `C`: 1 for the prior over `a`, 2 for the joint `(a, u)`
    /// baseline.
    pub channels: usize,
    /// Hidden channels of the Fourier blocks.
    pub width: usize,
    /// Modes kept per axis by every spectral convolution (`2m x m` weights).
    pub modes: usize,
    /// Number of Fourier blocks.
    pub layers: usize,
    /// Reflection pad on each side as a fraction of `n`. A fraction, not a
    /// node count, so that the padded domain and with it the meaning of each
    /// Fourier mode is the same at every resolution.
    pub pad_fraction: f64,
    /// Hidden channels of the projection.
    pub proj_width: usize,
    /// Sinusoid frequencies `2^k`, `k < embed_frequencies`, of `c_noise`.
    #[config(default = 6)]
    pub embed_frequencies: usize,
    /// Width of the noise-embedding MLP.
    #[config(default = 32)]
    pub embed_width: usize,
}

impl DenoiserConfig {
    /// The microcontroller size for `channels` data channels: width 16,
    /// 8 modes, 4 blocks, pad `n/8`, projection 32. For `C = 1`:
    /// 269 569 parameters (~263 KiB as int8; with the 258 KiB device FNO
    /// well inside 1 MiB) and 176 752 activation bytes (172.6 KiB) for one
    /// forward at 32x32 by the scheme of [`activation_bytes`](Self::activation_bytes).
    pub fn device(channels: usize) -> Self {
        Self::new(channels, 16, 8, 4, 0.125, 32)
    }

    /// The host size for `channels` data channels: width 32, 12 modes,
    /// 4 blocks, pad `n/4`, projection 128, a 64-wide embedding.
    pub fn host(channels: usize) -> Self {
        Self::new(channels, 32, 12, 4, 0.25, 128).with_embed_frequencies(8).with_embed_width(64)
    }

    /// Checks that every size is positive and the pad fraction in `[0, 1)`.
    pub fn validate(&self) -> Result<(), Error> {
        let sizes = [
            ("denoiser.channels", self.channels),
            ("denoiser.width", self.width),
            ("denoiser.modes", self.modes),
            ("denoiser.layers", self.layers),
            ("denoiser.proj_width", self.proj_width),
            ("denoiser.embed_frequencies", self.embed_frequencies),
            ("denoiser.embed_width", self.embed_width),
        ];
        validate_sizes(&sizes, ("denoiser.pad_fraction", self.pad_fraction))
    }

    /// Nodes of reflection padding on each side of an `n x n` grid.
    pub fn pad_len(&self, n: usize) -> usize {
        pad_len(self.pad_fraction, n)
    }

    /// Whether an `n x n` grid can be run: reflection needs `p < n` and the
    /// padded grid must carry the modes.
    pub fn check_resolution(&self, n: usize) -> Result<(), Error> {
        let padded = n + 2 * self.pad_len(n);
        if n < 2 || check_grid(padded, padded, self.modes).is_err() {
            return Err(Error::GridTooSmall { n, min: self.min_resolution() });
        }
        Ok(())
    }

    /// Smallest `n` that [`check_resolution`](Self::check_resolution) accepts.
    pub fn min_resolution(&self) -> usize {
        (2..4096)
            .find(|&n| check_grid(n + 2 * self.pad_len(n), n + 2 * self.pad_len(n), self.modes).is_ok())
            .unwrap_or(usize::MAX)
    }

    /// Parameter count of the network this config builds, in closed form.
    pub fn param_count(&self) -> usize {
        let (c, w, m, p) = (self.channels, self.width, self.modes, self.proj_width);
        let (f, e) = (2 * self.embed_frequencies, self.embed_width);
        let lift = (c + 2) * w + w;
        let embed = f * e + e + e * e + e;
        let block = 2 * w * w * 2 * m * m + w * w + w + e * 2 * w + 2 * w;
        let proj = w * p + p + p * c + c;
        lift + embed + self.layers * block + proj
    }

    /// f32 activation bytes of one forward of one field at `n x n`, for a
    /// device implementation that updates the hidden state in place:
    ///
    /// * the padded hidden state, `P^2 width` (`P = n + 2 pad`);
    /// * the spectral scratch: the column-axis partial DFT (and later the
    ///   row-axis inverse), `2 P m width`, plus the kept modes before and
    ///   after channel mixing, `2 * 2 (2m m) width` (real and imaginary);
    /// * one node's worth of pointwise scratch (`width + proj_width`) and the
    ///   embedding vectors (`2 F + 2 E + 2 width`).
    ///
    /// In place works because the spectral branch only needs the kept
    /// modes of the old state, and the skip, FiLM and ReLU are pointwise;
    /// lift and projection stream node by node. The caller's input and
    /// output fields are not counted.
    pub fn activation_bytes(&self, n: usize) -> usize {
        let (w, m) = (self.width, self.modes);
        let p = n + 2 * self.pad_len(n);
        let hidden = p * p * w;
        let spectral = 2 * p * m * w + 2 * 2 * (2 * m * m) * w;
        let pointwise = w + self.proj_width;
        let embed = 2 * self.embed_frequencies + 2 * self.embed_width + 2 * w;
        (hidden + spectral + pointwise + embed) * ACTIVATION_BYTES
    }

    /// A freshly initialised network. Weights are drawn by burn's
    /// initialisers (seed the backend for a reproducible init); the FiLM
    /// layers start at zero, so every block starts as a plain FNO block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Denoiser<B> {
        let (c, w) = (self.channels, self.width);
        let (f, e) = (2 * self.embed_frequencies, self.embed_width);
        Denoiser {
            lift: LinearConfig::new(c + 2, w).init(device),
            blocks: FnoBlocksConfig::new(w, self.modes, self.layers).init(device),
            film: (0..self.layers)
                .map(|_| LinearConfig::new(e, 2 * w).with_initializer(Initializer::Zeros).init(device))
                .collect(),
            embed_in: LinearConfig::new(f, e).init(device),
            embed_out: LinearConfig::new(e, e).init(device),
            proj_hidden: LinearConfig::new(w, self.proj_width).init(device),
            proj_out: LinearConfig::new(self.proj_width, c).init(device),
            channels: c,
            modes: self.modes,
            pad_fraction: self.pad_fraction,
            embed_frequencies: self.embed_frequencies,
        }
    }
}

/// The raw network `N(x_in; c_noise)` of the EDM denoiser (module docs).
#[derive(Module, Debug)]
pub struct Denoiser<B: Backend> {
    /// Pointwise lift, `C + 2 -> width` (data channels, then x, y).
    pub lift: Linear<B>,
    /// The Fourier blocks (their record sits where the plain `spectral`
    /// and `skip` fields were).
    pub blocks: FnoBlocks<B>,
    /// Per block: embedding -> `(scale, shift)`, `embed_width -> 2 width`
    /// (the blocks' [`Film`]).
    pub film: Vec<Linear<B>>,
    /// First embedding layer, `2 embed_frequencies -> embed_width`.
    pub embed_in: Linear<B>,
    /// Second embedding layer, `embed_width -> embed_width`.
    pub embed_out: Linear<B>,
    /// Projection hidden layer, `width -> proj_width`.
    pub proj_hidden: Linear<B>,
    /// Projection output layer, `proj_width -> C`.
    pub proj_out: Linear<B>,
    /// Data channels `C` (copied from the config).
    pub channels: usize,
    /// Modes per axis (copied from the config).
    pub modes: usize,
    /// Pad fraction (copied from the config).
    pub pad_fraction: f64,
    /// Embedding frequencies (copied from the config).
    pub embed_frequencies: usize,
}

impl<B: Backend> Denoiser<B> {
    /// `N(x_in; c_noise)`: `x_in` is `[batch, C, n, n]` (already scaled by
    /// `c_in`), `c_noise` is `[batch]`; returns `[batch, C, n, n]`.
    ///
    /// # Panics
    /// If the field is not square, has another channel count, or `n` is
    /// below the config's `min_resolution`; check shapes with
    /// `DenoiserConfig::check_resolution` at the edge.
    pub fn forward(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4> {
        self.check_input(&x_in);
        let film = Film { layers: &self.film, embedding: self.embedding(c_noise) };
        self.trunk().forward_cf(x_in, None, Some(&film))
    }

    /// [`forward`](Self::forward) computed the plain way: channels-last,
    /// burn's `Linear`, the reference spectral layer and bases built for the
    /// call. The fast path is tested against it.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_reference(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4> {
        self.trace(x_in, c_noise, |_, _| {})
    }

    /// [`forward_reference`](Self::forward_reference) showing the padded
    /// hidden state `[batch, n + 2p, n + 2p, width]` to `on_stage(0, h)`
    /// after the lift and `on_stage(l, h)` after block `l`, as the runtime
    /// denoiser's `trace` does on the device.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn trace(
        &self,
        x_in: Tensor<B, 4>,
        c_noise: Tensor<B, 1>,
        on_stage: impl FnMut(usize, &Tensor<B, 4>),
    ) -> Tensor<B, 4> {
        self.check_input(&x_in);
        let film = Film { layers: &self.film, embedding: self.embedding(c_noise) };
        self.trunk().trace_reference(x_in.permute([0, 2, 3, 1]), Some(&film), on_stage).permute([0, 3, 1, 2])
    }

    /// Checks the input's shape, and touches the first skip's weight before
    /// any other parameter: burn draws a fresh model's weights lazily, at
    /// first touch, and this network has always touched that one first
    /// (reading its width), so a freshly seeded model that is run before
    /// anything else touches it keeps drawing the same weights.
    fn check_input(&self, x_in: &Tensor<B, 4>) {
        let [_, c, n, n2] = x_in.dims();
        assert_eq!(n, n2, "the denoiser takes square fields, got {n}x{n2}");
        assert_eq!(c, self.channels, "the denoiser was built for {} channels, got {c}", self.channels);
        let _ = self.blocks.skip.first().map(|s| s.weight.dims());
    }

    /// The network's weights as the shared FNO pipeline (the FiLM layers
    /// and the embedding come in per call).
    pub fn trunk(&self) -> Trunk<'_, B> {
        Trunk {
            lift: &self.lift,
            blocks: &self.blocks,
            proj_hidden: &self.proj_hidden,
            proj_out: &self.proj_out,
            pad_fraction: self.pad_fraction,
        }
    }

    /// The noise embedding `[batch, embed_width]` of `c_noise` `[batch]`.
    pub fn embedding(&self, c_noise: Tensor<B, 1>) -> Tensor<B, 2> {
        let features = edm::noise_features(c_noise, self.embed_frequencies);
        relu(self.embed_out.forward(relu(self.embed_in.forward(features))))
    }

    /// Number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.num_params()
    }
}
