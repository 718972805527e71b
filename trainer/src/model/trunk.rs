//! The FNO trunk that the surrogate ([`Fno`](super::fno::Fno)) and the
//! prior's network ([`Denoiser`](super::denoiser::Denoiser)) share, written
//! once: append the coordinate channels and reflect-pad, lift pointwise, run
//! the Fourier blocks ([`FnoBlocks`], FiLM-conditioned for the denoiser as
//! neuraloperator's conditioned `FNOBlocks`), crop, project pointwise.
//!
//! Two layouts of one network: channels-first with the block spectral bases
//! ([`Trunk::forward_cf`], what the models run) and channels-last with the
//! reference spectral layer ([`Trunk::trace_reference`], what they are
//! tested against and what the device parity compares layer by layer).
//! The weights are fields of the two models, whose records are what
//! `model.bin` holds; a [`Trunk`] borrows them for one call.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::Error;

use super::spectral::{SpectralBases, SpectralBlocks, SpectralConv2d, SpectralConvConfig, pad_len};

/// Sizes of an [`FnoBlocks`].
#[derive(Config, Debug)]
pub struct FnoBlocksConfig {
    /// Hidden channels.
    pub width: usize,
    /// Modes kept per axis by every spectral convolution.
    pub modes: usize,
    /// Number of blocks.
    pub layers: usize,
}

impl FnoBlocksConfig {
    /// Fresh blocks. burn draws each weight lazily, when it is first
    /// touched, so the values of a seeded model depend on the order its
    /// first run touches them in, not on this construction.
    pub fn init<B: Backend>(&self, device: &B::Device) -> FnoBlocks<B> {
        let w = self.width;
        FnoBlocks {
            spectral: (0..self.layers).map(|_| SpectralConvConfig::new(w, w, self.modes).init(device)).collect(),
            skip: (0..self.layers).map(|_| LinearConfig::new(w, w).init(device)).collect(),
        }
    }
}

/// The Fourier blocks of an FNO, `h <- relu(spectral(h) + skip(h))`, or
/// with FiLM `h <- relu((spectral(h) + skip(h)) (1 + scale) + shift)`.
///
/// Inside a model's record these two fields sit where the model's own
/// `spectral` and `skip` fields were before the trunk was shared: burn's
/// binary records write fields in order and a nested module adds no bytes,
/// so every saved `model.bin` reads unchanged. The FiLM layers stay fields
/// of the denoiser (a `film` field here would add bytes to every surrogate
/// record) and come in through [`Film`].
#[derive(Module, Debug)]
pub struct FnoBlocks<B: Backend> {
    /// Spectral convolutions, one per block.
    pub spectral: Vec<SpectralConv2d<B>>,
    /// Pointwise skips, `width -> width`, one per block.
    pub skip: Vec<Linear<B>>,
}

/// The FiLM conditioning of the blocks: per block a layer
/// `embedding -> (scale, shift)` (`embed_width -> 2 width`) and the
/// embedding it reads, `[batch, embed_width]`.
pub struct Film<'m, B: Backend> {
    /// One layer per block.
    pub layers: &'m [Linear<B>],
    /// The conditioning input (the noise-level embedding).
    pub embedding: Tensor<B, 2>,
}

impl<B: Backend> Film<'_, B> {
    /// `(1 + scale, shift)` of block `l`, each `width` channels along `dim`
    /// of a rank-4 shape that is 1 elsewhere but the batch.
    fn modulation(&self, l: usize, batch: usize, width: usize, dim: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let mut shape = [batch, 1, 1, 1];
        shape[dim] = 2 * width;
        let ss = self.layers[l].forward(self.embedding.clone()).reshape(shape);
        let scale = ss.clone().narrow(dim, 0, width).add_scalar(1.0);
        let shift = ss.narrow(dim, width, width);
        (scale, shift)
    }
}

impl<B: Backend> FnoBlocks<B> {
    /// The spectral layers' mixing matrices
    /// ([`SpectralConv2d::mixing_matrix`]), for frozen weights run many times.
    pub fn mixing_matrices(&self) -> Vec<Tensor<B, 3>> {
        self.spectral.iter().map(SpectralConv2d::mixing_matrix).collect()
    }

    /// The blocks on channels-first `h: [batch, width, H, W]`, the fast
    /// path. `mixing`, if given, holds the layers' mixing matrices built
    /// beforehand (from these weights); else each layer builds its own.
    ///
    /// # Panics
    /// If the grid cannot carry the modes, `mixing` or the FiLM layers
    /// number other than the blocks, or the widths differ.
    pub fn forward_cf(
        &self,
        mut h: Tensor<B, 4>,
        mixing: Option<&[Tensor<B, 3>]>,
        film: Option<&Film<B>>,
    ) -> Tensor<B, 4> {
        self.check_counts(mixing.map(<[_]>::len), film);
        let Some(first) = self.spectral.first() else { return h };
        // The width from `h`, not from a weight: reading a fresh weight's
        // shape draws it, out of the order the network touches them in.
        let [batch, width, hh, ww] = h.dims();
        let bases = SpectralBlocks::cached(hh, ww, first.modes, &h.device());
        for (l, (spectral, skip)) in self.spectral.iter().zip(&self.skip).enumerate() {
            let modulation = film.map(|f| f.modulation(l, batch, width, 1));
            let mixed = match mixing {
                Some(m) => spectral.forward_cf_mixing(&bases, m[l].clone(), h.clone()),
                None => spectral.forward_cf(&bases, h.clone()),
            };
            let y = mixed + pointwise_cf(skip, h);
            h = relu(match modulation {
                Some((scale, shift)) => y * scale + shift,
                None => y,
            });
        }
        h
    }

    /// The blocks computed the plain way on channels-last
    /// `h: [batch, H, W, width]` (burn's `Linear`, the reference spectral
    /// layer, bases built for the call), showing block `l`'s output to
    /// `on_block(l + 1, h)`.
    ///
    /// # Panics
    /// As [`forward_cf`](Self::forward_cf).
    pub fn trace_reference(
        &self,
        mut h: Tensor<B, 4>,
        film: Option<&Film<B>>,
        mut on_block: impl FnMut(usize, &Tensor<B, 4>),
    ) -> Tensor<B, 4> {
        self.check_counts(None, film);
        let Some(first) = self.spectral.first() else { return h };
        let [batch, hh, ww, width] = h.dims();
        let bases = SpectralBases::new(hh, ww, first.modes, &h.device());
        for (l, (spectral, skip)) in self.spectral.iter().zip(&self.skip).enumerate() {
            let modulation = film.map(|f| f.modulation(l, batch, width, 3));
            let y = spectral.forward_with(&bases, h.clone()) + skip.forward(h);
            h = relu(match modulation {
                Some((scale, shift)) => y * scale + shift,
                None => y,
            });
            on_block(l + 1, &h);
        }
        h
    }

    fn check_counts(&self, mixing: Option<usize>, film: Option<&Film<B>>) {
        let layers = self.spectral.len();
        assert_eq!(self.skip.len(), layers, "one skip per spectral layer");
        assert!(mixing.is_none_or(|m| m == layers), "one mixing matrix per spectral layer");
        assert!(film.is_none_or(|f| f.layers.len() == layers), "one FiLM layer per block");
    }
}

/// The whole FNO pipeline of a model, borrowed from its fields (module
/// docs): `lift` takes the data channels and the two coordinate channels,
/// the projection is `proj_out(relu(proj_hidden(h)))`.
pub struct Trunk<'m, B: Backend> {
    /// Pointwise lift, `data channels + 2 -> width`.
    pub lift: &'m Linear<B>,
    /// The Fourier blocks.
    pub blocks: &'m FnoBlocks<B>,
    /// Projection hidden layer, `width -> proj_width`.
    pub proj_hidden: &'m Linear<B>,
    /// Projection output layer, `proj_width -> out channels`.
    pub proj_out: &'m Linear<B>,
    /// Reflection pad on each side as a fraction of `n`
    /// ([`pad_len`]).
    pub pad_fraction: f64,
}

impl<B: Backend> Trunk<'_, B> {
    /// The network on channels-first data `x: [batch, C, n, n]`, returning
    /// `[batch, out, n, n]` (the fast path; `mixing` and `film` as in
    /// [`FnoBlocks::forward_cf`]).
    ///
    /// # Panics
    /// If `n` is too small for the pad or the modes, or a width differs.
    pub fn forward_cf(&self, x: Tensor<B, 4>, mixing: Option<&[Tensor<B, 3>]>, film: Option<&Film<B>>) -> Tensor<B, 4> {
        let [batch, _, n, _] = x.dims();
        let p = pad_len(self.pad_fraction, n);
        let coords = coordinate_channels_cf::<B>(n, &x.device()).expand([batch, 2, n, n]);
        let x = Tensor::cat(vec![x, coords], 1);
        let h = pointwise_cf(self.lift, reflect_pad_axes(x, p, [2, 3]));
        let h = self.blocks.forward_cf(h, mixing, film);
        let h = h.narrow(2, p, n).narrow(3, p, n);
        pointwise_cf(self.proj_out, relu(pointwise_cf(self.proj_hidden, h)))
    }

    /// The network computed the plain way on channels-last data
    /// `x: [batch, n, n, C]`, returning `[batch, n, n, out]`. The padded
    /// hidden state `[batch, n + 2p, n + 2p, width]` is shown to
    /// `on_stage(0, h)` after the lift and `on_stage(l, h)` after block `l`
    /// (as `runtime::fno`'s traces).
    ///
    /// # Panics
    /// As [`forward_cf`](Self::forward_cf).
    pub fn trace_reference(
        &self,
        x: Tensor<B, 4>,
        film: Option<&Film<B>>,
        mut on_stage: impl FnMut(usize, &Tensor<B, 4>),
    ) -> Tensor<B, 4> {
        let [batch, n, _, _] = x.dims();
        let p = pad_len(self.pad_fraction, n);
        let device = x.device();
        let x = Tensor::cat(vec![x, coordinate_channels::<B>(batch, n, &device)], 3);
        let h = self.lift.forward(reflect_pad(x, p));
        on_stage(0, &h);
        let h = self.blocks.trace_reference(h, film, &mut on_stage);
        self.proj_out.forward(relu(self.proj_hidden.forward(crop(h, p, n))))
    }
}

/// Checks a trunk-based config: every size `>= 1` and the pad fraction in
/// `[0, 1)` (the surrogate's and the denoiser's `validate`).
///
/// # Errors
/// [`Error::InvalidConfig`] naming the first field that fails.
pub fn validate_sizes(
    sizes: &[(&'static str, usize)],
    (pad_name, pad_fraction): (&'static str, f64),
) -> Result<(), Error> {
    if let Some(&(name, _)) = sizes.iter().find(|(_, value)| *value == 0) {
        return Err(Error::InvalidConfig { name, value: 0.0, reason: "must be >= 1" });
    }
    if !(pad_fraction.is_finite() && (0.0..1.0).contains(&pad_fraction)) {
        return Err(Error::InvalidConfig { name: pad_name, value: pad_fraction, reason: "must be in [0, 1)" });
    }
    Ok(())
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
/// `k = 1..=p`, along each axis. Padding the input channels before the
/// pointwise lift is the same as padding the lifted features (reflection
/// commutes with pointwise maps), and cheaper.
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::module::Initializer;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = NdArray<f32>;

    fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
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

    /// f32 round-off of the fast path against the reference, relative to
    /// the largest output (as the surrogate's test).
    const FAST_VS_REFERENCE_REL: f32 = 2e-5;

    #[test]
    fn film_conditioned_trunk_runs_alike_in_both_layouts() {
        let device = Default::default();
        let (c, width, modes, layers, e, n, batch) = (2, 5, 3, 3, 4, 11, 2);
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&device, 21);
        let lift = LinearConfig::new(c + 2, width).init::<B>(&device);
        let blocks = FnoBlocksConfig::new(width, modes, layers).init(&device);
        let film: Vec<Linear<B>> = (0..layers).map(|_| LinearConfig::new(e, 2 * width).init(&device)).collect();
        let proj_hidden = LinearConfig::new(width, 7).init(&device);
        let proj_out = LinearConfig::new(7, c).init(&device);
        let trunk =
            Trunk { lift: &lift, blocks: &blocks, proj_hidden: &proj_hidden, proj_out: &proj_out, pad_fraction: 0.25 };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..batch * c * n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(x, [batch, c, n, n]), &device);
        let emb: Vec<f32> = (0..batch * e).map(|_| rng.random_range(0.0..1.0)).collect();
        let film = Film { layers: &film, embedding: Tensor::from_data(TensorData::new(emb, [batch, e]), &device) };

        let fast = to_vec(trunk.forward_cf(x.clone(), None, Some(&film)));
        let mixing = blocks.mixing_matrices();
        let frozen = to_vec(trunk.forward_cf(x.clone(), Some(&mixing), Some(&film)));
        assert_eq!(frozen, fast, "mixing built beforehand or per layer: the same numbers");
        let mut stages = Vec::new();
        let padded = n + 2 * pad_len(0.25, n);
        let reference = trunk.trace_reference(x.clone().permute([0, 2, 3, 1]), Some(&film), |k, h| {
            assert_eq!(h.dims(), [batch, padded, padded, width], "stage {k}");
            stages.push(k);
        });
        assert_eq!(stages, (0..=layers).collect::<Vec<_>>(), "the lift, then every block");
        let reference = to_vec(reference.permute([0, 3, 1, 2]));
        let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (f, r)) in fast.iter().zip(&reference).enumerate() {
            assert!((f - r).abs() <= FAST_VS_REFERENCE_REL * scale, "output {i}: fast {f}, reference {r}");
        }
        // Zero FiLM layers (the denoiser's init) leave the plain FNO blocks.
        let zeros: Vec<Linear<B>> = (0..layers)
            .map(|_| LinearConfig::new(e, 2 * width).with_initializer(Initializer::Zeros).init(&device))
            .collect();
        let zero = Film { layers: &zeros, embedding: film.embedding };
        let plain = to_vec(trunk.forward_cf(x.clone(), None, None));
        assert_eq!(to_vec(trunk.forward_cf(x, None, Some(&zero))), plain, "a zero FiLM is the identity");
    }
}
