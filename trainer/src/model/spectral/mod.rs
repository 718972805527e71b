//! Spectral convolution as a truncated DFT done with real matrix products.
//!
//! burn 0.21 has no complex dtype and its `rfft` has no gradient, so the FNO's
//! spectral convolution is written as small dense products with cos/sin
//! bases. That runs and differentiates on every burn backend and is exactly
//! what `runtime::fno` computes on the device (its adjoint is the transposed
//! products). The bases depend only on the grid size, so one set of weights
//! applies at every resolution.
//!
//! # Kept modes and conventions
//!
//! The input is a real field `x[h, w]` on an `H x W` grid (already padded;
//! periodic as far as this layer is concerned). Frequencies kept:
//!
//! * along the column axis (`w`, the "rfft" axis): `k2 = 0, 1, .., m-1`;
//! * along the row axis (`h`): `2m` frequencies, row-mode index `r` maps to
//!   `k1 = r` for `r < m` and `k1 = r - 2m` (i.e. `-m..-1`) for `r >= m`
//!   ([`row_frequency`]); the same set as the reference FNO's
//!   `[0..m) ∪ [H-m..H)` with its two weight blocks stacked.
//!
//! With `θ = 2π (k1 h / H + k2 w / W)`:
//!
//! ```text
//! X[i, k1, k2] = Σ_{h,w} x[i, h, w] e^{-iθ}                    (unnormalised)
//! Y[o, k1, k2] = Σ_i X[i, k1, k2] (Wr + i Wi)[i, o, k1, k2]
//! y[o, h, w]   = Re Σ_{k1,k2} c(k2) Y[o, k1, k2] e^{+iθ} / (H W)
//! ```
//!
//! with `c(0) = 1`, `c(W/2) = 1` (Nyquist, even `W`) and `c(k2) = 2`
//! otherwise: the inverse real FFT (`irfft2`) of the zero-filled spectrum.
//! Because the forward sum is unnormalised and the inverse divides by `H W`,
//! `Y / (H W)` approximates Fourier coefficients of the underlying function
//! and the layer is (up to aliasing) independent of the grid resolution.
//!
//! Requirements: `2m <= H` (the two row blocks must not overlap) and
//! `m <= W/2 + 1` (no column frequency past Nyquist); checked by
//! [`SpectralBases::new`].
//!
//! # Two implementations
//!
//! [`SpectralConv2d::forward_cf`] is the one the models run: channels-first
//! (`[batch, channels, H, W]`), each complex step one real product with a
//! block basis ([`SpectralBlocks`]: `[cos | -sin]`, `[[C, -S], [S, C]]`, ...),
//! so a layer is five matrix products and four layout copies, every
//! intermediate contiguous. The bases are built once per `(backend, device,
//! H, W, m)` and kept for the thread ([`SpectralBlocks::cached`]).
//! [`SpectralConv2d::forward_with`] (in `reference`, with its plain
//! cos/sin tables [`SpectralBases`]) is the reference it is tested
//! against: channels-last, real and imaginary parts as separate products.
//! Both compute the formulas above; they differ by f32 round-off only.

mod reference;

pub use reference::SpectralBases;

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The frequency `k1` of row-mode index `r` (`0 <= r < 2 * modes`).
///
/// `r < modes` gives `k1 = r`, the rest the negative frequencies
/// `-modes..-1` in increasing order.
pub fn row_frequency(r: usize, modes: usize) -> isize {
    debug_assert!(r < 2 * modes);
    if r < modes { r as isize } else { r as isize - 2 * modes as isize }
}

/// Weight of column frequency `k2` in the inverse real transform: 1 for the
/// DC term and the Nyquist term of an even `w`, 2 for the others (they stand
/// for their conjugate twin too).
pub fn column_weight(k2: usize, w: usize) -> f64 {
    if k2 == 0 || 2 * k2 == w { 1.0 } else { 2.0 }
}

/// Nodes of reflection padding on each side of an `n x n` grid for a
/// padding fraction (`round(pad_fraction * n)`, at most `n - 1` so the
/// reflection stays inside the grid). One rule for the surrogate and the
/// denoiser, so the padded domain, and with it the meaning of each Fourier
/// mode, is the same at every resolution.
pub fn pad_len(pad_fraction: f64, n: usize) -> usize {
    ((pad_fraction * n as f64).round() as usize).min(n.saturating_sub(1))
}

/// Checks that an `h x w` grid can carry `modes` modes per axis.
///
/// # Errors
/// A message naming the limit: `2 * modes <= h`, `modes <= w/2 + 1`,
/// `modes >= 1`.
pub fn check_grid(h: usize, w: usize, modes: usize) -> Result<(), String> {
    if modes == 0 {
        return Err("spectral convolution needs at least one mode".into());
    }
    if 2 * modes > h {
        return Err(format!("{modes} modes need at least {} rows, the grid has {h}", 2 * modes));
    }
    if modes > w / 2 + 1 {
        return Err(format!("{modes} modes exceed the Nyquist limit of {w} columns ({} modes)", w / 2 + 1));
    }
    Ok(())
}

fn table<B: Backend>(rows: usize, cols: usize, device: &B::Device, f: impl Fn(usize, usize) -> f64) -> Tensor<B, 2> {
    let mut v = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            v.push(f(r, c) as f32);
        }
    }
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// The truncated-DFT bases of one `H x W` grid in the block layouts of
/// [`SpectralConv2d::forward_cf`] (same tables as [`SpectralBases`], same
/// f64 construction rounded once to f32):
///
/// * `fwd_w` `[W, 2m]`: `[cos | -sin](2π k2 w / W)`;
/// * `fwd_h` `[2H, 4m]`: `[[C, N], [-N, C]]` with `C = cos(2π k1 h / H)` and
///   `N = -sin(2π k1 h / H)`, which maps `[Re | Im]` of the column transform
///   to `[Re | Im]` of `X` (a complex product as one real one);
/// * `inv_h` `[4m, 2H]`: `[[C', S'], [-S', C']]`, `C' = cos`, `S' = sin` (the
///   `e^{+iθ}` of the inverse);
/// * `inv_w` `[2m, W]`: `[c(k2) cos; -c(k2) sin] / (H W)` (the `irfft`
///   weights).
#[derive(Clone, Debug)]
pub struct SpectralBlocks<B: Backend> {
    /// Rows of the grid.
    pub h: usize,
    /// Columns of the grid.
    pub w: usize,
    /// Modes kept per axis (`m`).
    pub modes: usize,
    fwd_w: Tensor<B, 2>,
    fwd_h: Tensor<B, 2>,
    inv_h: Tensor<B, 2>,
    inv_w: Tensor<B, 2>,
}

impl<B: Backend> SpectralBlocks<B> {
    /// Bases for an `h x w` grid keeping `modes` modes per axis.
    ///
    /// # Panics
    /// If the grid cannot carry the modes ([`check_grid`]).
    pub fn new(h: usize, w: usize, modes: usize, device: &B::Device) -> Self {
        if let Err(e) = check_grid(h, w, modes) {
            panic!("SpectralBlocks::new({h}, {w}, {modes}): {e}");
        }
        let m = modes;
        let (pw, ph) = (phase_w(w), phase_h(h, m));
        let scale = 1.0 / (h * w) as f64;
        let fwd_w = table(w, 2 * m, device, |x, k| if k < m { pw(x, k).cos() } else { -pw(x, k - m).sin() });
        // Row y of [Re | Im] (y < h: Re at row y; else Im at row y - h),
        // column k of [Re X | Im X] (k < 2m: Re at mode k; else Im).
        let fwd_h = table(2 * h, 4 * m, device, |y, k| {
            let (yy, kk) = (y % h, k % (2 * m));
            let (c, ns) = (ph(yy, kk).cos(), -ph(yy, kk).sin());
            match (y < h, k < 2 * m) {
                (true, true) => c,
                (true, false) => ns,
                (false, true) => -ns,
                (false, false) => c,
            }
        });
        let inv_h = table(4 * m, 2 * h, device, |k, y| {
            let (kk, yy) = (k % (2 * m), y % h);
            let (c, s) = (ph(yy, kk).cos(), ph(yy, kk).sin());
            match (k < 2 * m, y < h) {
                (true, true) => c,
                (true, false) => s,
                (false, true) => -s,
                (false, false) => c,
            }
        });
        let inv_w = table(2 * m, w, device, |k, x| {
            let weight = |k2: usize| column_weight(k2, w) * scale;
            if k < m { weight(k) * pw(x, k).cos() } else { -weight(k - m) * pw(x, k - m).sin() }
        });
        Self { h, w, modes, fwd_w, fwd_h, inv_h, inv_w }
    }

    /// [`new`](Self::new), built once per `(backend, device, h, w, modes)`
    /// on this thread and cloned afterwards (a clone shares the tensors).
    pub fn cached(h: usize, w: usize, modes: usize, device: &B::Device) -> Self {
        super::per_device::<B, Self>("spectral blocks", [h, w, modes], device, || Self::new(h, w, modes, device))
    }
}

/// `2π ((w k2) mod W) / W`: the column phase, reduced modulo the period
/// before scaling (small f64 arguments, exactly periodic tables).
fn phase_w(w: usize) -> impl Fn(usize, usize) -> f64 {
    move |w_idx, k2| std::f64::consts::TAU * ((w_idx * k2) % w) as f64 / w as f64
}

/// The row phase of row `h_idx` and row-mode index `r` ([`row_frequency`]).
fn phase_h(h: usize, m: usize) -> impl Fn(usize, usize) -> f64 {
    move |h_idx, r| {
        let k1 = row_frequency(r, m).rem_euclid(h as isize) as usize;
        std::f64::consts::TAU * ((h_idx * k1) % h) as f64 / h as f64
    }
}

/// Configuration of a [`SpectralConv2d`].
#[derive(Config, Debug)]
pub struct SpectralConvConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Modes kept per axis (`m`; `2m x m` complex weights per channel pair).
    pub modes: usize,
}

impl SpectralConvConfig {
    /// A layer with real and imaginary weights drawn from
    /// `N(0, 1 / (in + out))` each, so that `E|W|^2 = 2 / (in + out)` and the
    /// layer roughly preserves the energy of its low modes at init (the
    /// choice of neuraloperator's `SpectralConv`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpectralConv2d<B> {
        let std = (1.0 / (self.in_channels + self.out_channels) as f64).sqrt();
        let init = Initializer::Normal { mean: 0.0, std };
        let shape = [self.in_channels, self.out_channels, 2 * self.modes, self.modes];
        SpectralConv2d { weight_re: init.init(shape, device), weight_im: init.init(shape, device), modes: self.modes }
    }
}

/// Spectral convolution keeping `2m x m` modes (see the module docs):
/// channels-first `[batch, channels, H, W]` on the fast path
/// ([`forward_cf`](Self::forward_cf)), channels-last `[batch, H, W,
/// channels]` on the reference ([`forward_with`](Self::forward_with)).
#[derive(Module, Debug)]
pub struct SpectralConv2d<B: Backend> {
    /// Real parts of the mode weights, `[in, out, 2m, m]` (row mode, column
    /// mode); row mode `r` is frequency [`row_frequency`]`(r, m)`.
    pub weight_re: Param<Tensor<B, 4>>,
    /// Imaginary parts, same layout as `weight_re`.
    pub weight_im: Param<Tensor<B, 4>>,
    /// Modes kept per axis (`m`).
    pub modes: usize,
}

impl<B: Backend> SpectralConv2d<B> {
    /// A layer with the given weights, `[in, out, 2m, m]` each.
    ///
    /// # Panics
    /// If the shapes differ or are not of the form `[_, _, 2m, m]`.
    pub fn from_weights(weight_re: Tensor<B, 4>, weight_im: Tensor<B, 4>) -> Self {
        let dims = weight_re.dims();
        assert_eq!(dims, weight_im.dims(), "real and imaginary weights differ in shape");
        assert_eq!(dims[2], 2 * dims[3], "weights must be [in, out, 2m, m], got {dims:?}");
        Self { weight_re: Param::from_tensor(weight_re), weight_im: Param::from_tensor(weight_im), modes: dims[3] }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight_re.dims()[0]
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight_re.dims()[1]
    }

    /// The layer on channels-first `x: [batch, in, H, W]` with the block
    /// bases of its grid; returns `[batch, out, H, W]`. The fast path of the
    /// module docs: five products, four layout copies.
    ///
    /// # Panics
    /// If the bases were built for another grid or mode count, or the
    /// channel count differs from the weights'.
    pub fn forward_cf(&self, blocks: &SpectralBlocks<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_cf_mixing(blocks, self.mixing_matrix(), x)
    }

    /// [`forward_cf`](Self::forward_cf) with the layer's
    /// [`mixing_matrix`](Self::mixing_matrix) built beforehand: a caller
    /// that runs frozen weights many times (a sampler's guide) builds it
    /// once.
    pub fn forward_cf_mixing(&self, blocks: &SpectralBlocks<B>, mixing: Tensor<B, 3>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let m = self.modes;
        let (k1, modes) = (2 * m, 2 * m * m);
        let o = self.out_channels();
        assert_eq!((blocks.h, blocks.w, blocks.modes), (h, w, m), "spectral bases built for another grid");
        assert_eq!(c, self.in_channels(), "input channels differ from the weights'");

        // 1. Along w: [b c h, w] @ [w, 2m] -> [b, c, h, (re|im), k2].
        let a = x.reshape([b * c * h, w]).matmul(blocks.fwd_w.clone());
        // 2. Along h, complex: [b c k2, (re|im) h] @ [2h, 4m] -> [b, c, k2, (re|im), k1].
        let a = a.reshape([b, c, h, 2, m]).permute([0, 1, 4, 3, 2]).reshape([b * c * m, 2 * h]);
        let z = a.matmul(blocks.fwd_h.clone());
        // 3. Channel mixing per mode: [mode, b, (re|im) c] @ [mode, 2c, 2o].
        let z = z.reshape([b, c, m, 2, k1]).permute([4, 2, 0, 3, 1]).reshape([modes, b, 2 * c]);
        let y = z.matmul(mixing);
        // 4. Inverse along h: [b o k2, (re|im) k1] @ [4m, 2h] -> [b, o, k2, (re|im), h].
        let y = y.reshape([k1, m, b, 2, o]).permute([2, 4, 1, 3, 0]).reshape([b * o * m, 2 * k1]);
        let v = y.matmul(blocks.inv_h.clone());
        // 5. Back to real along w: [b o h, (re|im) k2] @ [2m, w].
        let v = v.reshape([b, o, m, 2, h]).permute([0, 1, 4, 3, 2]).reshape([b * o * h, 2 * m]);
        v.matmul(blocks.inv_w.clone()).reshape([b, o, h, w])
    }

    /// The per-mode complex weights as real blocks, `[2m m, 2 in, 2 out]`:
    /// `[[Wr, Wi], [-Wi, Wr]]` for mode `(r, k2)` at index `r m + k2`, so
    /// that `[Re z | Im z] @ it = [Re (z W) | Im (z W)]`. Built from the
    /// stored `[in, out, 2m, m]` weights (the record's layout) with one
    /// concatenation and one layout copy.
    pub fn mixing_matrix(&self) -> Tensor<B, 3> {
        let [c, o, k1, m] = self.weight_re.dims();
        let (wr, wi) = (self.weight_re.val(), self.weight_im.val());
        // [(in re|im), (out re|im), c, o, k1, m] -> [k1, m, (in re|im), c, (out re|im), o]
        let blocks = Tensor::cat(vec![wr.clone(), wi.clone(), wi.neg(), wr], 0);
        blocks.reshape([2, 2, c, o, k1, m]).permute([4, 5, 0, 2, 1, 3]).reshape([k1 * m, 2 * c, 2 * o])
    }
}

#[cfg(test)]
mod tests;
