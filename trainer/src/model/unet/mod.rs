//! A small U-shaped convolutional denoiser (DDPM/EDM style), the second
//! architecture of the EDM network `N(x_in; c_noise)` beside the FNO-type
//! [`Denoiser`](super::denoiser::Denoiser). Host only: the device runs the
//! FNO denoiser; this one exists so that the joint baseline can use the
//! network the field's joint models use (issue 13).
//!
//! Pipeline of [`Unet::forward`] (channels-first, `[batch, C, n, n]`):
//!
//! 1. `conv_in`: 3x3 conv `C -> width`;
//! 2. encoder: at level `l` (`n / 2^l` nodes per side) one residual block to
//!    `width * mults[l]` channels, kept for the skip; then a 2x2 average
//!    pool, except after the last level;
//! 3. middle: one residual block at the lowest resolution;
//! 4. decoder: at each level, from the lowest up, concatenate the level's
//!    skip, one residual block back to `width * mults[l]`; then nearest 2x
//!    up-sampling and a 3x3 conv to the next level's width;
//! 5. `GroupNorm -> SiLU -> conv_out` (3x3, `width -> C`, zero-initialised,
//!    so the network starts at `N = 0` and `D(x; s) = c_skip x`).
//!
//! A residual block: `GN -> SiLU -> conv3x3 -> GN -> FiLM -> SiLU -> conv3x3`
//! plus the input (through a 1x1 conv when the width changes); FiLM is
//! `h (1 + scale) + shift` with `(scale, shift)` per channel from the noise
//! embedding (EDM's "adaptive scale"). The embedding is the FNO denoiser's:
//! `[sin(2^k c), cos(2^k c)]` of `c = c_noise(sigma)`, then
//! `Linear -> SiLU -> Linear -> SiLU`. Zero padding at the borders (the
//! fields' Dirichlet boundary is where `u = 0`, and convolutions see it).
//! No attention: at 8x8 it would cost more than it is likely to add here.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::error::Error;

/// Hyper-parameters of a [`Unet`].
#[derive(Config, Debug, PartialEq)]
pub struct UnetConfig {
    /// Data channels `C`: 1 for the prior over `a`, 2 for the joint `(a, u)`
    /// baseline.
    pub channels: usize,
    /// Channels at the finest level.
    pub width: usize,
    /// Channel multiplier of each level, finest first; `len` levels, so
    /// `len - 1` halvings of the grid.
    pub mults: Vec<usize>,
    /// GroupNorm groups; must divide every level's width.
    #[config(default = 4)]
    pub groups: usize,
    /// Sinusoid frequencies `2^k`, `k < embed_frequencies`, of `c_noise`.
    #[config(default = 8)]
    pub embed_frequencies: usize,
    /// Width of the noise-embedding MLP.
    #[config(default = 64)]
    pub embed_width: usize,
}

impl UnetConfig {
    /// The `--size device` preset of `--arch unet`: width 16, levels
    /// 32/16/8 at 32x32 with widths 16/32/32 (chosen by one-thread CPU step
    /// time against the FNO device denoiser; docs/results.md).
    pub fn device(channels: usize) -> Self {
        Self::new(channels, 16, vec![1, 2, 2])
    }

    /// The `--size host` preset: width 32, widths 32/64/64.
    pub fn host(channels: usize) -> Self {
        Self::new(channels, 32, vec![1, 2, 2]).with_groups(8)
    }

    /// The width of each level.
    pub fn widths(&self) -> Vec<usize> {
        self.mults.iter().map(|m| m * self.width).collect()
    }

    /// Checks that every size is positive and the groups divide the widths.
    pub fn validate(&self) -> Result<(), Error> {
        let sizes = [
            ("unet.channels", self.channels),
            ("unet.width", self.width),
            ("unet.mults.len", self.mults.len()),
            ("unet.groups", self.groups),
            ("unet.embed_frequencies", self.embed_frequencies),
            ("unet.embed_width", self.embed_width),
        ];
        for (name, value) in sizes.into_iter().chain(self.mults.iter().map(|&m| ("unet.mults", m))) {
            if value == 0 {
                return Err(Error::InvalidConfig { name, value: 0.0, reason: "must be >= 1" });
            }
        }
        if self.mults.len() > 8 {
            return Err(Error::InvalidConfig {
                name: "unet.mults.len",
                value: self.mults.len() as f64,
                reason: "at most 8 levels",
            });
        }
        if let Some(w) = self.widths().into_iter().find(|w| w % self.groups != 0) {
            return Err(Error::InvalidConfig {
                name: "unet.groups",
                value: self.groups as f64,
                reason: if w == self.width { "must divide unet.width" } else { "must divide width * every mult" },
            });
        }
        Ok(())
    }

    /// The grid factor `2^(levels - 1)`: `n` must be a multiple of it.
    pub fn factor(&self) -> usize {
        1 << self.mults.len().saturating_sub(1)
    }

    /// Whether an `n x n` grid can be run: `n` a multiple of
    /// [`factor`](Self::factor), and at least 2 nodes per side at the
    /// lowest level.
    pub fn check_resolution(&self, n: usize) -> Result<(), Error> {
        let f = self.factor();
        if n < 2 * f {
            return Err(Error::GridTooSmall { n, min: 2 * f });
        }
        if !n.is_multiple_of(f) {
            return Err(Error::GridNotDivisible { n, factor: f, levels: self.mults.len() });
        }
        Ok(())
    }

    /// Parameter count of the network this config builds, in closed form.
    pub fn param_count(&self) -> usize {
        let (c, e, g) = (self.channels, self.embed_width, 2 * self.embed_frequencies);
        let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
        let norm = |ch: usize| 2 * ch;
        let block = |i: usize, o: usize| {
            norm(i)
                + conv(i, o, 3)
                + norm(o)
                + (e * 2 * o + 2 * o)
                + conv(o, o, 3)
                + if i == o { 0 } else { conv(i, o, 1) }
        };
        let w = self.widths();
        let levels = w.len();
        let embed = g * e + e + e * e + e;
        let mut total = embed + conv(c, self.width, 3);
        let mut prev = self.width;
        for &wl in &w {
            total += block(prev, wl);
            prev = wl;
        }
        total += block(prev, prev);
        for l in (0..levels).rev() {
            total += block(prev + w[l], w[l]);
            prev = w[l];
            if l > 0 {
                total += conv(prev, w[l - 1], 3);
                prev = w[l - 1];
            }
        }
        total + norm(prev) + conv(prev, c, 3)
    }

    /// A freshly initialised network (burn's initialisers; seed the backend
    /// for a reproducible init). FiLM layers and the output conv start at
    /// zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Unet<B> {
        let w = self.widths();
        let (e, g) = (self.embed_width, self.groups);
        let block = |i: usize, o: usize| ResBlock::new(i, o, e, g, device);
        let mut enc = Vec::with_capacity(w.len());
        let mut prev = self.width;
        for &wl in &w {
            enc.push(block(prev, wl));
            prev = wl;
        }
        let mid = block(prev, prev);
        let mut dec = Vec::with_capacity(w.len());
        let mut up = Vec::with_capacity(w.len().saturating_sub(1));
        for l in (0..w.len()).rev() {
            dec.push(block(prev + w[l], w[l]));
            prev = w[l];
            if l > 0 {
                up.push(conv3(prev, w[l - 1], device));
                prev = w[l - 1];
            }
        }
        Unet {
            conv_in: conv3(self.channels, self.width, device),
            enc,
            mid,
            dec,
            up,
            norm_out: GroupNormConfig::new(g, prev).init(device),
            conv_out: Conv2dConfig::new([prev, self.channels], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device),
            embed_in: LinearConfig::new(2 * self.embed_frequencies, e).init(device),
            embed_out: LinearConfig::new(e, e).init(device),
            channels: self.channels,
            embed_frequencies: self.embed_frequencies,
        }
    }
}

/// A 3x3 convolution with zero padding 1 (same size).
fn conv3<B: Backend>(i: usize, o: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)
}

/// A residual block with FiLM from the noise embedding (module docs).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    /// GroupNorm of the input.
    pub norm1: GroupNorm<B>,
    /// First 3x3 conv, `in -> out`.
    pub conv1: Conv2d<B>,
    /// GroupNorm before FiLM.
    pub norm2: GroupNorm<B>,
    /// Embedding -> `(scale, shift)`, `embed_width -> 2 out` (zero init).
    pub film: Linear<B>,
    /// Second 3x3 conv, `out -> out`.
    pub conv2: Conv2d<B>,
    /// 1x1 conv on the residual path when `in != out`.
    pub skip: Option<Conv2d<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(i: usize, o: usize, embed: usize, groups: usize, device: &B::Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups, i).init(device),
            conv1: conv3(i, o, device),
            norm2: GroupNormConfig::new(groups, o).init(device),
            film: LinearConfig::new(embed, 2 * o).with_initializer(Initializer::Zeros).init(device),
            conv2: conv3(o, o, device),
            skip: (i != o).then(|| Conv2dConfig::new([i, o], [1, 1]).init(device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, emb: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, ..] = x.dims();
        let out = self.film.weight.dims()[1] / 2;
        let h = conv(&self.conv1, silu(self.norm1.forward(x.clone())));
        let ss = self.film.forward(emb).reshape([batch, 2 * out, 1, 1]);
        let scale = ss.clone().narrow(1, 0, out).add_scalar(1.0);
        let shift = ss.narrow(1, out, out);
        let h = conv(&self.conv2, silu(self.norm2.forward(h) * scale + shift));
        let res = match &self.skip {
            Some(skip) => conv(skip, x),
            None => x,
        };
        h + res
    }
}

/// The U-shaped network `N(x_in; c_noise)` (module docs).
#[derive(Module, Debug)]
pub struct Unet<B: Backend> {
    /// 3x3 conv `C -> width`.
    pub conv_in: Conv2d<B>,
    /// Encoder blocks, finest level first.
    pub enc: Vec<ResBlock<B>>,
    /// The block at the lowest resolution.
    pub mid: ResBlock<B>,
    /// Decoder blocks, lowest level first.
    pub dec: Vec<ResBlock<B>>,
    /// 3x3 convs after each nearest up-sampling, lowest level first.
    pub up: Vec<Conv2d<B>>,
    /// GroupNorm before the output conv.
    pub norm_out: GroupNorm<B>,
    /// 3x3 conv `width -> C` (zero init).
    pub conv_out: Conv2d<B>,
    /// First embedding layer, `2 embed_frequencies -> embed_width`.
    pub embed_in: Linear<B>,
    /// Second embedding layer, `embed_width -> embed_width`.
    pub embed_out: Linear<B>,
    /// Data channels `C` (copied from the config).
    pub channels: usize,
    /// Embedding frequencies (copied from the config).
    pub embed_frequencies: usize,
}

impl<B: Backend> Unet<B> {
    /// `N(x_in; c_noise)`: `x_in` is `[batch, C, n, n]` (already scaled by
    /// `c_in`), `c_noise` is `[batch]`; returns `[batch, C, n, n]`.
    ///
    /// # Panics
    /// If the field is not square, has another channel count, or `n` is not
    /// a multiple of `2^(levels - 1)`; check with
    /// [`UnetConfig::check_resolution`] at the edge.
    pub fn forward(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4> {
        let [_, c, n, n2] = x_in.dims();
        assert_eq!(n, n2, "the denoiser takes square fields, got {n}x{n2}");
        assert_eq!(c, self.channels, "the denoiser was built for {} channels, got {c}", self.channels);
        let levels = self.enc.len();
        let factor = 1usize << levels.saturating_sub(1);
        assert!(n % factor == 0 && n >= 2 * factor, "a {levels}-level U-Net needs n a multiple of {factor}, got {n}");

        let emb = self.embedding(c_noise);
        let mut h = conv(&self.conv_in, x_in);
        let mut skips = Vec::with_capacity(levels);
        for (l, block) in self.enc.iter().enumerate() {
            h = block.forward(h, emb.clone());
            skips.push(h.clone());
            if l + 1 < levels {
                h = pool2(h);
            }
        }
        h = self.mid.forward(h, emb.clone());
        let mut up = self.up.iter();
        for block in &self.dec {
            let skip = skips.pop().expect("one skip per level");
            h = block.forward(Tensor::cat(vec![h, skip], 1), emb.clone());
            if let Some(up_conv) = up.next() {
                h = conv(up_conv, upsample2(h));
            }
        }
        conv(&self.conv_out, silu(self.norm_out.forward(h)))
    }

    /// The noise embedding `[batch, embed_width]` of `c_noise` `[batch]`.
    pub fn embedding(&self, c_noise: Tensor<B, 1>) -> Tensor<B, 2> {
        let features = super::edm::noise_features(c_noise, self.embed_frequencies);
        silu(self.embed_out.forward(silu(self.embed_in.forward(features))))
    }

    /// Number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.num_params()
    }
}

/// `conv` applied by burn's `Conv2d::forward`. On burn-ndarray that runs the
/// workspace's patched convolution (vendor/burn-ndarray, `ops/conv_gemm.rs`:
/// im2col and one matrix product per sample, the backward passes likewise),
/// which trainer/tests/backend_patch.rs checks against a direct loop. A
/// training step of the joint U-Net: 0.59 s with upstream's direct loop
/// behind an im2col composed of `narrow`/`cat`/`matmul`, 0.29 s now
/// (`cargo bench --bench unet_step`, vendor/README.md).
fn conv<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    conv.forward(x)
}

/// 2x2 average pooling of `[batch, ch, h, w]` (even `h`, `w`) by a reshape
/// and a mean.
fn pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / 2, 2, w / 2, 2]).mean_dim(5).mean_dim(3).reshape([b, c, h / 2, w / 2])
}

/// Nearest-neighbour 2x up-sampling of `[batch, ch, h, w]` (each value to a
/// 2x2 block), by a broadcast and a reshape, so it differentiates on every
/// backend.
fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

#[cfg(test)]
mod tests;
