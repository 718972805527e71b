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
//! [`SpectralConv2d::forward_with`] is the plain reference it is tested
//! against: channels-last, real and imaginary parts as separate products.
//! Both compute the formulas above; they differ by f32 round-off only.

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

/// Cos/sin bases of the truncated DFT for one `H x W` grid, as tensors.
///
/// Built in f64 and rounded once to the backend's float type. Build one set
/// per grid size and share it across layers ([`SpectralConv2d::forward_with`]).
#[derive(Clone, Debug)]
pub struct SpectralBases<B: Backend> {
    /// Rows of the grid.
    pub h: usize,
    /// Columns of the grid.
    pub w: usize,
    /// Modes kept per axis (`m`).
    pub modes: usize,
    /// `[W, m]`: `cos(2π k2 w / W)`.
    fwd_w_cos: Tensor<B, 2>,
    /// `[W, m]`: `-sin(2π k2 w / W)`.
    fwd_w_nsin: Tensor<B, 2>,
    /// `[H, 2m]`: `cos(2π k1 h / H)`.
    fwd_h_cos: Tensor<B, 2>,
    /// `[H, 2m]`: `-sin(2π k1 h / H)`.
    fwd_h_nsin: Tensor<B, 2>,
    /// `[2m, H]`: `cos(2π k1 h / H)`.
    inv_h_cos: Tensor<B, 2>,
    /// `[2m, H]`: `sin(2π k1 h / H)`.
    inv_h_sin: Tensor<B, 2>,
    /// `[m, W]`: `c(k2) cos(2π k2 w / W) / (H W)`.
    inv_w_cos: Tensor<B, 2>,
    /// `[m, W]`: `-c(k2) sin(2π k2 w / W) / (H W)`.
    inv_w_nsin: Tensor<B, 2>,
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

impl<B: Backend> SpectralBases<B> {
    /// Bases for an `h x w` grid keeping `modes` modes per axis.
    ///
    /// # Panics
    /// If the grid cannot carry the modes ([`check_grid`]); validate sizes
    /// at the edge with [`check_grid`] or `FnoConfig::min_resolution`.
    pub fn new(h: usize, w: usize, modes: usize, device: &B::Device) -> Self {
        if let Err(e) = check_grid(h, w, modes) {
            panic!("SpectralBases::new({h}, {w}, {modes}): {e}");
        }
        let m = modes;
        let (phase_w, phase_h) = (phase_w(w), phase_h(h, m));
        let scale = 1.0 / (h * w) as f64;
        Self {
            h,
            w,
            modes,
            fwd_w_cos: table(w, m, device, |x, k| phase_w(x, k).cos()),
            fwd_w_nsin: table(w, m, device, |x, k| -phase_w(x, k).sin()),
            fwd_h_cos: table(h, 2 * m, device, |y, r| phase_h(y, r).cos()),
            fwd_h_nsin: table(h, 2 * m, device, |y, r| -phase_h(y, r).sin()),
            inv_h_cos: table(2 * m, h, device, |r, y| phase_h(y, r).cos()),
            inv_h_sin: table(2 * m, h, device, |r, y| phase_h(y, r).sin()),
            inv_w_cos: table(m, w, device, |k, x| column_weight(k, w) * scale * phase_w(x, k).cos()),
            inv_w_nsin: table(m, w, device, |k, x| -column_weight(k, w) * scale * phase_w(x, k).sin()),
        }
    }
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

/// Spectral convolution keeping `2m x m` modes (see the module docs).
///
/// Tensors are channels-last: `[batch, H, W, channels]`.
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

    /// Applies the layer to `x: [batch, H, W, in]`, building the bases for
    /// this grid size.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, h, w, _] = x.dims();
        let bases = SpectralBases::new(h, w, self.modes, &x.device());
        self.forward_with(&bases, x)
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

    /// Applies the layer with precomputed bases; returns `[batch, H, W, out]`.
    ///
    /// # Panics
    /// If the bases were built for another grid or mode count, or the
    /// channel count differs from the weights'.
    pub fn forward_with(&self, bases: &SpectralBases<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let m = self.modes;
        let k1 = 2 * m;
        let c_out = self.out_channels();
        assert_eq!((bases.h, bases.w, bases.modes), (h, w, m), "spectral bases built for another grid");
        assert_eq!(c, self.in_channels(), "input channels differ from the weights'");

        // 1. Real -> complex along w: [b, h, c, w] @ [w, m].
        let xt = x.swap_dims(2, 3).reshape([b * h * c, w]);
        let to_rows = |t: Tensor<B, 2>| {
            // [b*h*c, m] -> [b, c, m, h] -> [b*c*m, h]
            t.reshape([b, h, c, m]).permute([0, 2, 3, 1]).reshape([b * c * m, h])
        };
        let xr = to_rows(xt.clone().matmul(bases.fwd_w_cos.clone()));
        let xi = to_rows(xt.matmul(bases.fwd_w_nsin.clone()));

        // 2. Complex DFT along h: (xr + i xi)(cos - i sin) -> [b*c*m, 2m].
        let zr = xr.clone().matmul(bases.fwd_h_cos.clone()) - xi.clone().matmul(bases.fwd_h_nsin.clone());
        let zi = xi.matmul(bases.fwd_h_cos.clone()) + xr.matmul(bases.fwd_h_nsin.clone());

        // 3. Per-mode complex channel mixing as one batched real product:
        //    [zr | zi] @ [[Wr, Wi], [-Wi, Wr]] = [yr | yi].
        let modes_first = |t: Tensor<B, 2>| {
            // [b*c*m, 2m] -> [b, c, m, 2m] -> [2m, m, b, c] -> [2m*m, b, c]
            t.reshape([b, c, m, k1]).permute([3, 2, 0, 1]).reshape([k1 * m, b, c])
        };
        let z = Tensor::cat(vec![modes_first(zr), modes_first(zi)], 2);
        let weights_modes_first = |p: &Param<Tensor<B, 4>>| {
            // [c, o, 2m, m] -> [2m, m, c, o] -> [2m*m, c, o]
            p.val().permute([2, 3, 0, 1]).reshape([k1 * m, c, c_out])
        };
        let wr = weights_modes_first(&self.weight_re);
        let wi = weights_modes_first(&self.weight_im);
        let w_big =
            Tensor::cat(vec![Tensor::cat(vec![wr.clone(), wi.clone()], 2), Tensor::cat(vec![wi.neg(), wr], 2)], 1);
        let y = z.matmul(w_big); // [2m*m, b, 2*out]
        let back = |t: Tensor<B, 3>| {
            // [2m*m, b, o] -> [2m, m, b, o] -> [b, o, m, 2m] -> [b*o*m, 2m]
            t.reshape([k1, m, b, c_out]).permute([2, 3, 1, 0]).reshape([b * c_out * m, k1])
        };
        let yr = back(y.clone().narrow(2, 0, c_out));
        let yi = back(y.narrow(2, c_out, c_out));

        // 4. Inverse complex DFT along h: (yr + i yi)(cos + i sin) -> [b*o*m, h].
        let vr = yr.clone().matmul(bases.inv_h_cos.clone()) - yi.clone().matmul(bases.inv_h_sin.clone());
        let vi = yi.matmul(bases.inv_h_cos.clone()) + yr.matmul(bases.inv_h_sin.clone());

        // 5. Complex -> real along w, weighted by c(k2) / (H W).
        let to_cols = |t: Tensor<B, 2>| {
            // [b*o*m, h] -> [b, o, m, h] -> [b, h, o, m] -> [b*h*o, m]
            t.reshape([b, c_out, m, h]).permute([0, 3, 1, 2]).reshape([b * h * c_out, m])
        };
        let out = to_cols(vr).matmul(bases.inv_w_cos.clone()) + to_cols(vi).matmul(bases.inv_w_nsin.clone());
        out.reshape([b, h, c_out, w]).swap_dims(2, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = NdArray<f32>;

    /// f32 round-off over sums of a few hundred terms, relative to the
    /// largest reference value.
    const F32_REL_TOL: f64 = 1e-4;

    fn assert_close(got: &[f32], want: &[f64], rel_tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-30);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let err = (f64::from(*g) - w).abs();
            assert!(
                err <= rel_tol * scale,
                "{what}[{i}]: got {g}, expected {w} (|err| {err:.3e} > {rel_tol:.0e} * {scale:.3e})"
            );
        }
    }

    fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Plain f64 spectral convolution with hand-written complex arithmetic,
    /// straight from the formulas in the module docs. Layouts: x
    /// `[b, h, w, c]`, weights `[c, o, 2m, m]`, result `[b, h, w, o]`.
    #[allow(clippy::too_many_arguments)]
    fn naive_spectral_conv(
        x: &[f64],
        wr: &[f64],
        wi: &[f64],
        (b, h, w, c): (usize, usize, usize, usize),
        o: usize,
        m: usize,
    ) -> Vec<f64> {
        let tau = std::f64::consts::TAU;
        let mut out = vec![0.0; b * h * w * o];
        for bi in 0..b {
            for r in 0..2 * m {
                let k1 = row_frequency(r, m) as f64;
                for k2 in 0..m {
                    // X[i] for every input channel.
                    let mut xs = vec![(0.0, 0.0); c];
                    for (ci, xc) in xs.iter_mut().enumerate() {
                        for y in 0..h {
                            for xx in 0..w {
                                let th = tau * (k1 * y as f64 / h as f64 + k2 as f64 * xx as f64 / w as f64);
                                let v = x[((bi * h + y) * w + xx) * c + ci];
                                xc.0 += v * th.cos();
                                xc.1 -= v * th.sin();
                            }
                        }
                    }
                    for oi in 0..o {
                        let (mut yr, mut yi) = (0.0, 0.0);
                        for (ci, &(ar, ai)) in xs.iter().enumerate() {
                            let idx = ((ci * o + oi) * 2 * m + r) * m + k2;
                            yr += ar * wr[idx] - ai * wi[idx];
                            yi += ar * wi[idx] + ai * wr[idx];
                        }
                        let cw = column_weight(k2, w) / (h * w) as f64;
                        for y in 0..h {
                            for xx in 0..w {
                                let th = tau * (k1 * y as f64 / h as f64 + k2 as f64 * xx as f64 / w as f64);
                                out[((bi * h + y) * w + xx) * o + oi] += cw * (yr * th.cos() - yi * th.sin());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn check_against_naive(b: usize, h: usize, w: usize, c: usize, o: usize, m: usize, seed: u64) {
        let device = Default::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&mut rng, b * h * w * c);
        let wr = random(&mut rng, c * o * 2 * m * m);
        let wi = random(&mut rng, c * o * 2 * m * m);
        let f32s = |v: &[f64]| v.iter().map(|&e| e as f32).collect::<Vec<_>>();
        let layer = SpectralConv2d::<B>::from_weights(
            Tensor::from_data(TensorData::new(f32s(&wr), [c, o, 2 * m, m]), &device),
            Tensor::from_data(TensorData::new(f32s(&wi), [c, o, 2 * m, m]), &device),
        );
        let xt = Tensor::<B, 4>::from_data(TensorData::new(f32s(&x), [b, h, w, c]), &device);
        let got = layer.forward(xt.clone());
        assert_eq!(got.dims(), [b, h, w, o]);
        let got = got.into_data().to_vec::<f32>().unwrap();
        let want = naive_spectral_conv(&x, &wr, &wi, (b, h, w, c), o, m);
        assert_close(&got, &want, F32_REL_TOL, &format!("spectral conv b{b} {h}x{w} c{c}->{o} m{m}"));
        // The fast channels-first path on the same input.
        let blocks = SpectralBlocks::new(h, w, m, &device);
        let fast = layer.forward_cf(&blocks, xt.permute([0, 3, 1, 2]));
        assert_eq!(fast.dims(), [b, o, h, w]);
        let fast = fast.permute([0, 2, 3, 1]).into_data().to_vec::<f32>().unwrap();
        assert_close(&fast, &want, F32_REL_TOL, &format!("fast spectral conv b{b} {h}x{w} c{c}->{o} m{m}"));
    }

    #[test]
    fn cached_blocks_are_built_once_per_grid() {
        let device = Default::default();
        let a = SpectralBlocks::<B>::cached(12, 12, 3, &device);
        let b = SpectralBlocks::<B>::cached(12, 12, 3, &device);
        let fresh = SpectralBlocks::<B>::new(12, 12, 3, &device);
        // A hit returns the same tables as a fresh build.
        for (x, y) in [(a.fwd_w.clone(), fresh.fwd_w.clone()), (b.inv_h.clone(), fresh.inv_h.clone())] {
            assert_eq!(x.into_data().to_vec::<f32>().unwrap(), y.into_data().to_vec::<f32>().unwrap());
        }
        let other = SpectralBlocks::<B>::cached(16, 12, 3, &device);
        assert_eq!((other.h, other.w, other.modes), (16, 12, 3));
    }

    #[test]
    fn spectral_conv_matches_naive_dft() {
        // Non-square, odd width, channel counts that differ.
        check_against_naive(2, 10, 9, 3, 2, 3, 1);
    }

    #[test]
    fn spectral_conv_matches_naive_dft_at_the_limits() {
        // 2m == H (row blocks touch) and m == W/2 + 1 (Nyquist column kept).
        check_against_naive(1, 8, 6, 2, 3, 4, 2);
    }

    /// A band-limited periodic input sampled on two grids gives the same
    /// output at the shared nodes: the weights mean the same at any
    /// resolution.
    #[test]
    fn spectral_conv_is_resolution_independent_on_bandlimited_input() {
        let device = Default::default();
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        let layer = SpectralConvConfig::new(2, 3, 3).init::<B>(&device);
        let field = |n: usize| {
            let mut v = Vec::with_capacity(n * n * 2);
            for i in 0..n {
                for j in 0..n {
                    let (y, x) = (i as f64 / n as f64, j as f64 / n as f64);
                    let t = std::f64::consts::TAU;
                    v.push((0.3 + (t * x).cos() - 0.5 * (t * (2.0 * y - x)).sin()) as f32);
                    v.push(((t * y).sin() * (t * 2.0 * x).cos()) as f32);
                }
            }
            Tensor::<B, 4>::from_data(TensorData::new(v, [1, n, n, 2]), &device)
        };
        let coarse = layer.forward(field(12)).into_data().to_vec::<f32>().unwrap();
        let fine = layer.forward(field(24)).into_data().to_vec::<f32>().unwrap();
        let mut shared = Vec::new();
        for i in 0..12 {
            for j in 0..12 {
                for o in 0..3 {
                    shared.push(f64::from(fine[((2 * i) * 24 + 2 * j) * 3 + o]));
                }
            }
        }
        assert_close(&coarse, &shared, F32_REL_TOL, "coarse vs fine at shared nodes");
    }

    #[test]
    fn grid_checks_name_the_limit() {
        assert!(check_grid(8, 6, 4).is_ok());
        assert!(check_grid(7, 6, 4).unwrap_err().contains("rows"));
        assert!(check_grid(8, 5, 4).unwrap_err().contains("Nyquist"));
        assert!(check_grid(8, 8, 0).is_err());
    }
}
