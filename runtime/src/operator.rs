//! The FNO-type operator network both device models use (float twin:
//! `trainer::model::fno` and `trainer::model::denoiser`): reflect-pad,
//! lift `[field, x, y] -> width`, Fourier layers
//! `h = relu((S h + K h + b) * film_scale + film_shift)`, crop, project
//! `width -> proj_width -> relu -> 1`. Channels-last, one node's channels
//! contiguous.
//!
//! The spectral convolution `S` is the truncated DFT of
//! `trainer::model::spectral` (row modes `k1 = 0..m-1, -m..-1`, column
//! modes `k2 = 0..m-1`, inverse weighted by `c(k2) / P^2`), done in place:
//! the forward transform streams rows into the `2m x m` kept modes, the
//! modes are mixed per mode, and the inverse streams rows back, adding the
//! pointwise skip node by node. Work memory is therefore the hidden state,
//! the kept modes and one row of partial transforms; see
//! [`OperatorShape::forward_workspace_len`] and
//! [`OperatorShape::vjp_workspace_len`].
//!
//! The vector-Jacobian product needs only the ReLU sign masks of the
//! forward pass (one bit per hidden value); every other operation is linear
//! and is transposed in the backward pass.
//!
//! The loops index exact slices and never fall back to zeros, and they
//! cannot go out of range because every size was proven before them:
//! `validate::operator` proves the shape (twiddles `2P`, `pad < n` so
//! [`mirror`] stays below `n`, the matrices' rows and columns), the
//! callers check the fields they pass (`n^2` values: `fno::check_len`, the
//! denoiser's buffer check) and that sensors lie on this grid, and
//! [`Operator::split`] cuts the workspace into parts of exactly the sizes
//! the loops walk (checked once against its length), the projection masks
//! and predictions for exactly the request's sensors.

use crate::Error;
use crate::kernels::{F32s, Linear, Matrix, REG_BLOCK, for_blocks};

/// The sizes of an operator network on one grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OperatorShape {
    /// Grid nodes per side.
    pub n: usize,
    /// Hidden channels.
    pub width: usize,
    /// Modes kept per axis.
    pub modes: usize,
    /// Fourier layers.
    pub layers: usize,
    /// Reflection pad on each side, in nodes.
    pub pad: usize,
    /// Hidden channels of the projection.
    pub proj_width: usize,
}

/// f32 words that hold `bits` mask bits.
const fn words(bits: usize) -> usize {
    bits.saturating_add(31) / 32
}

impl OperatorShape {
    /// Padded side `P = n + 2 pad`.
    pub const fn padded(&self) -> usize {
        self.n.saturating_add(self.pad.saturating_mul(2))
    }

    /// Values of the padded hidden state, `P^2 width`.
    const fn hidden_len(&self) -> usize {
        let p = self.padded();
        p.saturating_mul(p).saturating_mul(self.width)
    }

    /// Kept modes per channel, `2m * m`.
    const fn mode_count(&self) -> usize {
        self.modes.saturating_mul(self.modes).saturating_mul(2)
    }

    /// f32 values of work memory for one forward pass:
    ///
    /// * hidden state `P^2 width`;
    /// * kept modes, real and imaginary, `2 (2m m) width`;
    /// * one row of partial transforms `2 m width`;
    /// * node scratch `2 width`, the unpacked skip matrix `width^2` and
    ///   the projection's hidden node `proj_width`.
    ///
    /// Saturates instead of overflowing (the parser bounds every size).
    pub const fn forward_workspace_len(&self) -> usize {
        let w = self.width;
        self.hidden_len()
            .saturating_add(self.mode_count().saturating_mul(w).saturating_mul(2))
            .saturating_add(self.modes.saturating_mul(w).saturating_mul(2))
            .saturating_add(w.saturating_mul(2))
            .saturating_add(w.saturating_mul(w))
            .saturating_add(self.proj_width)
    }

    /// f32 values of work memory for the vector-Jacobian product with
    /// `sensors` sensors: the forward pass's, then `layers * ceil(P^2 width
    /// / 32)` words of ReLU bits, `sensors * ceil(proj_width / 32)` words of
    /// projection bits and `sensors` predictions. Sized from the request's
    /// count, not from [`crate::MAX_SENSORS`]: a caller that sizes for the cap
    /// (the firmware's static buffer) passes the cap.
    pub const fn vjp_workspace_len(&self, sensors: usize) -> usize {
        self.forward_workspace_len()
            .saturating_add(self.layers.saturating_mul(words(self.hidden_len())))
            .saturating_add(sensors.saturating_mul(words(self.proj_width)))
            .saturating_add(sensors)
    }

    /// Trainable scalars shipped for this shape (lift, spectral, skip and
    /// projection weights and biases; not the FiLM tables).
    pub const fn params(&self) -> usize {
        let (w, p) = (self.width, self.proj_width);
        let lift = 3 * w + w;
        let layer = 2 * w * w * self.mode_count() + w * w + w;
        lift + self.layers * layer + w * p + p + p + 1
    }

    /// Floating-point operations (a multiply-add counts 2) of the lift over
    /// the padded grid.
    pub const fn lift_flops(&self) -> u64 {
        let p = self.padded() as u64;
        p * p * (3 * self.width as u64 * 2)
    }

    /// Floating-point operations of all Fourier layers, as this module
    /// computes them (the adjoint costs the same).
    pub const fn layers_flops(&self) -> u64 {
        let (p, m, w) = (self.padded() as u64, self.modes as u64, self.width as u64);
        // Column DFT, row DFT, mixing (4 real products per complex one),
        // inverse row DFT, inverse column DFT; skip and FiLM/ReLU.
        let spectral = p * p * m * w * 4
            + p * 2 * m * m * w * 8
            + 2 * m * m * w * w * 8
            + p * 2 * m * m * w * 8
            + p * p * m * w * 4;
        let pointwise = p * p * (w * w * 2 + w * 4);
        self.layers as u64 * (spectral + pointwise)
    }

    /// Floating-point operations of the projection at one node.
    pub const fn proj_node_flops(&self) -> u64 {
        let (w, q) = (self.width as u64, self.proj_width as u64);
        w * q * 2 + q * 2 + q * 2
    }

    /// Floating-point operations of one forward pass over the whole grid.
    pub const fn forward_flops(&self) -> u64 {
        let n = self.n as u64;
        self.lift_flops() + self.layers_flops() + n * n * self.proj_node_flops()
    }

    /// Floating-point operations of one vector-Jacobian product with
    /// `sensors` sensors (forward with the projection at the sensors only,
    /// then the adjoint).
    pub const fn vjp_flops(&self, sensors: usize) -> u64 {
        2 * (self.lift_flops() + self.layers_flops() + sensors as u64 * self.proj_node_flops())
    }
}

/// A validated operator network (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operator<'a> {
    shape: OperatorShape,
    lift: Linear<'a>,
    spectral: Matrix<'a>,
    skip: Linear<'a>,
    proj_hidden: Linear<'a>,
    proj_out: Linear<'a>,
    twiddle: F32s<'a>,
}

/// The workspace split into its parts.
pub(crate) struct Ws<'w> {
    pub(crate) h: &'w mut [f32],
    zr: &'w mut [f32],
    zi: &'w mut [f32],
    xr: &'w mut [f32],
    xi: &'w mut [f32],
    t1: &'w mut [f32],
    t2: &'w mut [f32],
    /// The current layer's skip matrix, unpacked: transposed for the
    /// forward pass ([`Matrix::unpack_rows_transposed`]), as stored for the
    /// adjoint ([`Matrix::unpack_rows`]).
    wq: &'w mut [f32],
    hid: &'w mut [f32],
    masks: &'w mut [f32],
    smasks: &'w mut [f32],
    pub(crate) su: &'w mut [f32],
}

/// Writes bits in order into f32 words (the bit pattern of each word is
/// the mask; `f32::from_bits`/`to_bits` keep it exactly).
struct BitWriter<'w> {
    words: &'w mut [f32],
    bit: usize,
    cur: u32,
}

impl<'w> BitWriter<'w> {
    fn new(words: &'w mut [f32]) -> Self {
        Self { words, bit: 0, cur: 0 }
    }

    #[inline]
    fn push(&mut self, b: bool) {
        self.cur |= u32::from(b) << (self.bit % 32);
        self.bit += 1;
        if self.bit.is_multiple_of(32) {
            self.words[self.bit / 32 - 1] = f32::from_bits(self.cur);
            self.cur = 0;
        }
    }

    fn finish(self) {
        if !self.bit.is_multiple_of(32) {
            self.words[self.bit / 32] = f32::from_bits(self.cur);
        }
    }
}

/// Bit `i` of a mask written by [`BitWriter`] (`i` below the bits pushed).
#[inline]
fn bit(words: &[f32], i: usize) -> bool {
    (words[i / 32].to_bits() >> (i % 32)) & 1 == 1
}

/// Index along one axis of the unpadded grid that padded index `q` mirrors
/// (numpy's `"reflect"`: the edge is not repeated). Needs `pad < n`.
#[inline]
pub(crate) fn mirror(q: usize, pad: usize, n: usize) -> usize {
    if q < pad {
        pad - q
    } else if q - pad >= n {
        // q - pad = n - 1 + k  ->  n - 1 - k
        (2 * (n - 1)).saturating_sub(q - pad)
    } else {
        q - pad
    }
}

fn take<'w>(ws: &mut &'w mut [f32], len: usize) -> &'w mut [f32] {
    let (head, tail) = core::mem::take(ws).split_at_mut(len);
    *ws = tail;
    head
}

impl<'a> Operator<'a> {
    pub(crate) fn new(
        shape: OperatorShape,
        lift: Linear<'a>,
        spectral: Matrix<'a>,
        skip: Linear<'a>,
        proj_hidden: Linear<'a>,
        proj_out: Linear<'a>,
        twiddle: F32s<'a>,
    ) -> Self {
        Self { shape, lift, spectral, skip, proj_hidden, proj_out, twiddle }
    }

    /// The sizes.
    pub fn shape(&self) -> OperatorShape {
        self.shape
    }

    /// Whether the weights are int8.
    pub fn is_int8(&self) -> bool {
        self.spectral.is_int8()
    }

    /// Bytes of weights, scales, biases and twiddles in the artifact.
    pub fn bytes(&self) -> usize {
        self.lift.bytes()
            + self.spectral.bytes()
            + self.skip.bytes()
            + self.proj_hidden.bytes()
            + self.proj_out.bytes()
            + 4 * self.twiddle.len()
    }

    /// Splits `ws`, checking its length once: forward memory for
    /// `vjp = None`, the vector-Jacobian product's for `Some(sensors)`
    /// (`sensors <= crate::MAX_SENSORS`).
    pub(crate) fn split<'w>(&self, ws: &'w mut [f32], vjp: Option<usize>) -> Result<Ws<'w>, Error> {
        let s = self.shape;
        let needed = match vjp {
            None => s.forward_workspace_len(),
            Some(k) => s.vjp_workspace_len(k),
        };
        if ws.len() < needed {
            return Err(Error::WorkspaceTooSmall { needed, got: ws.len() });
        }
        let mut rest = ws;
        let (w, modes) = (s.width, s.mode_count());
        let h = take(&mut rest, s.hidden_len());
        let zr = take(&mut rest, modes * w);
        let zi = take(&mut rest, modes * w);
        let xr = take(&mut rest, s.modes * w);
        let xi = take(&mut rest, s.modes * w);
        let t1 = take(&mut rest, w);
        let t2 = take(&mut rest, w);
        let wq = take(&mut rest, w * w);
        let hid = take(&mut rest, s.proj_width);
        let k = vjp.unwrap_or(0);
        let masks = take(&mut rest, if vjp.is_some() { s.layers * words(s.hidden_len()) } else { 0 });
        let smasks = take(&mut rest, k * words(s.proj_width));
        let su = take(&mut rest, k);
        Ok(Ws { h, zr, zi, xr, xi, t1, t2, wq, hid, masks, smasks, su })
    }

    #[inline]
    fn cos(&self, j: usize) -> f32 {
        self.twiddle.at(j)
    }

    #[inline]
    fn sin(&self, j: usize) -> f32 {
        self.twiddle.at(self.shape.padded() + j)
    }

    /// Column pass of the truncated DFT of one padded row `row` (`P` nodes
    /// x `W` channels): `xr[k2][c] = sum_x row[x][c] cos(2 pi k2 x / P)` and
    /// `xi[k2][c] = sum_x row[x][c] (-sin(...))` for `k2 < m`, every sum taken
    /// over `x` in increasing order from 0.0 (so bit-identical to a loop
    /// over `x` outside). Channels go in blocks of [`REG_BLOCK`] whose
    /// accumulators stay in registers: on the Cortex-M4F this is most of a
    /// layer's work, and the block form loads each input once per mode
    /// instead of loading and storing both accumulators per product.
    fn dft_columns(&self, row: &[f32], xr: &mut [f32], xi: &mut [f32]) {
        for_blocks(self.shape.width, |c0, full| {
            if full {
                self.dft_columns_block::<REG_BLOCK>(row, c0, xr, xi)
            } else {
                self.dft_columns_block::<1>(row, c0, xr, xi)
            }
        });
    }

    #[inline(always)]
    fn dft_columns_block<const B: usize>(&self, row: &[f32], c0: usize, xr: &mut [f32], xi: &mut [f32]) {
        let (p, m, w) = (self.shape.padded(), self.shape.modes, self.shape.width);
        for k2 in 0..m {
            let (mut ar, mut ai) = ([0.0f32; B], [0.0f32; B]);
            // j = (k2 x) mod P, stepped without a division (k2 < P).
            let mut j = 0;
            for hv in row.chunks_exact(w) {
                let (c, ns) = (self.cos(j), -self.sin(j));
                j += k2;
                if j >= p {
                    j -= p;
                }
                let hv = &hv[c0..c0 + B];
                for b in 0..B {
                    ar[b] += hv[b] * c;
                    ai[b] += hv[b] * ns;
                }
            }
            xr[k2 * w + c0..k2 * w + c0 + B].copy_from_slice(&ar);
            xi[k2 * w + c0..k2 * w + c0 + B].copy_from_slice(&ai);
        }
    }

    /// Column pass of the inverse DFT at node `x` of a row, from the
    /// row-transformed modes `xr`, `xi` (`m x W`):
    /// `out[c] = sum_k2 (xr[k2][c] cos(2 pi k2 x / P) - xi[k2][c] sin(...))`,
    /// summed over `k2` in increasing order from 0.0, channels in register
    /// blocks as in [`Self::dft_columns`].
    fn idft_node(&self, xr: &[f32], xi: &[f32], x: usize, out: &mut [f32]) {
        for_blocks(self.shape.width, |c0, full| {
            if full {
                self.idft_node_block::<REG_BLOCK>(xr, xi, x, c0, out)
            } else {
                self.idft_node_block::<1>(xr, xi, x, c0, out)
            }
        });
    }

    #[inline(always)]
    fn idft_node_block<const B: usize>(&self, xr: &[f32], xi: &[f32], x: usize, c0: usize, out: &mut [f32]) {
        let (p, m, w) = (self.shape.padded(), self.shape.modes, self.shape.width);
        let mut acc = [0.0f32; B];
        // j = (k2 x) mod P, stepped without a division (x < P).
        let mut j = 0;
        for k2 in 0..m {
            let (c, sn) = (self.cos(j), self.sin(j));
            j += x;
            if j >= p {
                j -= p;
            }
            let vr = &xr[k2 * w + c0..k2 * w + c0 + B];
            let vi = &xi[k2 * w + c0..k2 * w + c0 + B];
            for b in 0..B {
                acc[b] += vr[b] * c - vi[b] * sn;
            }
        }
        out[c0..c0 + B].copy_from_slice(&acc);
    }

    /// Frequency of row mode `r`, reduced modulo `P`.
    #[inline]
    fn row_freq(&self, r: usize) -> usize {
        let (m, p) = (self.shape.modes, self.shape.padded());
        if r < m { r } else { p + r - 2 * m }
    }

    /// Lift of the reflect-padded `[map(field), x, y]` into `ws.h`.
    /// `field` holds `n * n` values (checked by the caller).
    pub(crate) fn lift(&self, field: &[f32], map: impl Fn(f32) -> f32, ws: &mut Ws<'_>) {
        let s = self.shape;
        let (n, p, w) = (s.n, s.padded(), s.width);
        let last = (n - 1) as f32;
        for (y, row) in ws.h.chunks_exact_mut(p * w).enumerate() {
            let i = mirror(y, s.pad, n);
            for (x, node) in row.chunks_exact_mut(w).enumerate() {
                let j = mirror(x, s.pad, n);
                let v = field[i * n + j];
                let features = [map(v), j as f32 / last, i as f32 / last];
                self.lift.forward(&features, node);
            }
        }
    }

    /// Fourier layer `l` in place on `ws.h`. `film` holds `2 width` values
    /// (`1 + scale`, then shift) or is empty for none; `record` stores the
    /// ReLU mask of the layer.
    pub(crate) fn layer(&self, l: usize, ws: &mut Ws<'_>, film: F32s<'_>, record: bool) {
        let s = self.shape;
        let (p, m, w) = (s.padded(), s.modes, s.width);
        let Ws { h, zr, zi, xr, xi, t1, t2, wq, masks, .. } = ws;
        self.skip.weight().unpack_rows_transposed(l * w, w, wq);

        // 1. Forward truncated DFT, one row at a time: columns, then rows.
        zr.fill(0.0);
        zi.fill(0.0);
        for (y, row) in h.chunks_exact(p * w).enumerate() {
            self.dft_columns(row, xr, xi);
            for r in 0..2 * m {
                let j = (self.row_freq(r) * y) % p;
                let (c, ns) = (self.cos(j), -self.sin(j));
                let zr = &mut zr[r * m * w..(r + 1) * m * w];
                let zi = &mut zi[r * m * w..(r + 1) * m * w];
                for (((zr, zi), &xr), &xi) in zr.iter_mut().zip(zi.iter_mut()).zip(xr.iter()).zip(xi.iter()) {
                    *zr += xr * c - xi * ns;
                    *zi += xi * c + xr * ns;
                }
            }
        }

        // 2. Channel mixing per kept mode.
        for (q, (zr, zi)) in zr.chunks_exact_mut(w).zip(zi.chunks_exact_mut(w)).enumerate() {
            let base = (l * 2 * m * m + q) * w;
            for o in 0..w {
                let (yr, yi) = self.spectral.dot_row_complex(base + o, zr, zi);
                t1[o] = yr;
                t2[o] = yi;
            }
            zr.copy_from_slice(t1);
            zi.copy_from_slice(t2);
        }

        // 3. Inverse DFT row by row, plus skip, FiLM and ReLU, in place.
        let inv = 1.0 / (p * p) as f32;
        let mask_words = words(s.hidden_len());
        // Only a vector-Jacobian product records, and its split holds the
        // masks of every layer.
        let mut bits = BitWriter::new(if record { &mut masks[l * mask_words..(l + 1) * mask_words] } else { &mut [] });
        for (y, row) in h.chunks_exact_mut(p * w).enumerate() {
            xr.fill(0.0);
            xi.fill(0.0);
            for r in 0..2 * m {
                let j = (self.row_freq(r) * y) % p;
                let (c, sn) = (self.cos(j), self.sin(j));
                let yr = &zr[r * m * w..(r + 1) * m * w];
                let yi = &zi[r * m * w..(r + 1) * m * w];
                for (((vr, vi), &yr), &yi) in xr.iter_mut().zip(xi.iter_mut()).zip(yr).zip(yi) {
                    *vr += yr * c - yi * sn;
                    *vi += yi * c + yr * sn;
                }
            }
            for (k2, (vr, vi)) in xr.chunks_exact_mut(w).zip(xi.chunks_exact_mut(w)).enumerate() {
                let f = if k2 == 0 || 2 * k2 == p { inv } else { 2.0 * inv };
                vr.iter_mut().chain(vi.iter_mut()).for_each(|v| *v *= f);
            }
            for (x, node) in row.chunks_exact_mut(w).enumerate() {
                self.idft_node(xr, xi, x, t1);
                self.skip.forward_rows_unpacked(l * w, wq, node, t2);
                for (o, v) in node.iter_mut().enumerate() {
                    let mut pre = t1[o] + t2[o];
                    if !film.is_empty() {
                        pre = pre * film.at(o) + film.at(w + o);
                    }
                    let on = pre > 0.0;
                    *v = if on { pre } else { 0.0 };
                    if record {
                        bits.push(on);
                    }
                }
            }
        }
        bits.finish();
    }

    /// Adjoint of layer `l` (without FiLM) in place: `ws.h` holds the
    /// gradient w.r.t. the layer's output and receives the gradient w.r.t.
    /// its input. Needs the mask recorded by [`layer`](Self::layer).
    pub(crate) fn layer_adjoint(&self, l: usize, ws: &mut Ws<'_>) {
        let s = self.shape;
        let (p, m, w) = (s.padded(), s.modes, s.width);
        let Ws { h, zr, zi, xr, xi, t1, t2, wq, masks, .. } = ws;
        self.skip.weight().unpack_rows(l * w, wq);
        let mask_words = words(s.hidden_len());
        let mask = &masks[l * mask_words..(l + 1) * mask_words];
        let inv = 1.0 / (p * p) as f32;

        // A. Mask (ReLU adjoint, kept in place: the skip adjoint needs it
        //    again), then the adjoint of the inverse DFT into the modes.
        zr.fill(0.0);
        zi.fill(0.0);
        for (y, row) in h.chunks_exact_mut(p * w).enumerate() {
            for (x, node) in row.chunks_exact_mut(w).enumerate() {
                let base = (y * p + x) * w;
                for (o, g) in node.iter_mut().enumerate() {
                    if !bit(mask, base + o) {
                        *g = 0.0;
                    }
                }
            }
            // `vi -= g sin` is `vi += g (-sin)` bit for bit: the forward pass.
            self.dft_columns(row, xr, xi);
            for (k2, (vr, vi)) in xr.chunks_exact_mut(w).zip(xi.chunks_exact_mut(w)).enumerate() {
                let f = if k2 == 0 || 2 * k2 == p { inv } else { 2.0 * inv };
                vr.iter_mut().chain(vi.iter_mut()).for_each(|v| *v *= f);
            }
            for r in 0..2 * m {
                let j = (self.row_freq(r) * y) % p;
                let (c, sn) = (self.cos(j), self.sin(j));
                let gyr = &mut zr[r * m * w..(r + 1) * m * w];
                let gyi = &mut zi[r * m * w..(r + 1) * m * w];
                for (((gyr, gyi), &vr), &vi) in gyr.iter_mut().zip(gyi.iter_mut()).zip(xr.iter()).zip(xi.iter()) {
                    *gyr += vr * c + vi * sn;
                    *gyi += vi * c - vr * sn;
                }
            }
        }

        // B. Adjoint of the channel mixing per mode.
        for (q, (zr, zi)) in zr.chunks_exact_mut(w).zip(zi.chunks_exact_mut(w)).enumerate() {
            let base = (l * 2 * m * m + q) * w;
            t1.fill(0.0);
            t2.fill(0.0);
            for o in 0..w {
                self.spectral.dot_row_complex_adjoint(base + o, zr[o], zi[o], t1, t2);
            }
            zr.copy_from_slice(t1);
            zi.copy_from_slice(t2);
        }

        // C. Adjoint of the forward DFT row by row, plus the skip adjoint.
        for (y, row) in h.chunks_exact_mut(p * w).enumerate() {
            xr.fill(0.0);
            xi.fill(0.0);
            for r in 0..2 * m {
                let j = (self.row_freq(r) * y) % p;
                let (c, ns) = (self.cos(j), -self.sin(j));
                let gzr = &zr[r * m * w..(r + 1) * m * w];
                let gzi = &zi[r * m * w..(r + 1) * m * w];
                for (((gxr, gxi), &gzr), &gzi) in xr.iter_mut().zip(xi.iter_mut()).zip(gzr).zip(gzi) {
                    *gxr += gzr * c + gzi * ns;
                    *gxi += gzi * c - gzr * ns;
                }
            }
            for (x, node) in row.chunks_exact_mut(w).enumerate() {
                // `gxr c + gxi (-sin)` is `gxr c - gxi sin` bit for bit.
                self.idft_node(xr, xi, x, t1);
                self.skip.transposed_rows_unpacked(l * w, wq, node, t2);
                for ((g, &a), &b) in node.iter_mut().zip(t1.iter()).zip(t2.iter()) {
                    *g = a + b;
                }
            }
        }
    }

    /// Offset in `ws.h` of the first channel of grid node `node` (crop).
    #[inline]
    fn interior(&self, node: usize) -> usize {
        let s = self.shape;
        let (i, j) = (node / s.n, node % s.n);
        ((i + s.pad) * s.padded() + j + s.pad) * s.width
    }

    /// Crop and project every node: `out[k] = post(k, net_k)`.
    pub(crate) fn project_all(&self, ws: &mut Ws<'_>, out: &mut [f32], post: impl Fn(usize, f32) -> f32) {
        let w = self.shape.width;
        for (k, o) in out.iter_mut().enumerate() {
            let at = self.interior(k);
            self.proj_hidden.forward(&ws.h[at..at + w], ws.hid);
            ws.hid.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.0 });
            let mut u = [0.0f32];
            self.proj_out.forward(ws.hid, &mut u);
            *o = post(k, u[0]);
        }
    }

    /// Crop and project at the listed nodes only, recording the projection
    /// masks; predictions go to `ws.su[k]` for the `k`-th node. The split
    /// sized `su` and the masks for exactly the request's sensors.
    pub(crate) fn project_nodes(&self, ws: &mut Ws<'_>, nodes: impl Iterator<Item = usize>) {
        let w = self.shape.width;
        let per = words(self.shape.proj_width);
        let Ws { h, hid, smasks, su, .. } = ws;
        for ((node, mask), s) in nodes.zip(smasks.chunks_exact_mut(per)).zip(su.iter_mut()) {
            let at = self.interior(node);
            self.proj_hidden.forward(&h[at..at + w], hid);
            let mut bits = BitWriter::new(mask);
            for v in hid.iter_mut() {
                bits.push(*v > 0.0);
                *v = if *v > 0.0 { *v } else { 0.0 };
            }
            bits.finish();
            let mut u = [0.0f32];
            self.proj_out.forward(hid, &mut u);
            *s = u[0];
        }
    }

    /// Adjoint of [`project_nodes`](Self::project_nodes) and the crop: sets
    /// `ws.h` to the gradient w.r.t. the last layer's output for the
    /// cotangents `ws.su[k]` at the listed nodes.
    pub(crate) fn project_nodes_adjoint(&self, ws: &mut Ws<'_>, nodes: impl Iterator<Item = usize>) {
        let w = self.shape.width;
        let per = words(self.shape.proj_width);
        let Ws { h, hid, smasks, su, .. } = ws;
        h.fill(0.0);
        for ((node, mask), &cot) in nodes.zip(smasks.chunks_exact(per)).zip(su.iter()) {
            self.proj_out.transposed_rows(0, &[cot], hid);
            for (c, v) in hid.iter_mut().enumerate() {
                if !bit(mask, c) {
                    *v = 0.0;
                }
            }
            let at = self.interior(node);
            self.proj_hidden.weight().transposed_acc(0, hid, &mut h[at..at + w]);
        }
    }

    /// Adjoint of the lift and the reflection padding: the gradient w.r.t.
    /// the (mapped) field channel, summed over mirror images into `grad`
    /// (`n * n`).
    pub(crate) fn lift_adjoint(&self, ws: &mut Ws<'_>, grad: &mut [f32]) {
        let s = self.shape;
        let (n, p, w) = (s.n, s.padded(), s.width);
        grad.fill(0.0);
        for (y, row) in ws.h.chunks_exact(p * w).enumerate() {
            let i = mirror(y, s.pad, n);
            for (x, g) in row.chunks_exact(w).enumerate() {
                let j = mirror(x, s.pad, n);
                let mut features = [0.0f32; 3];
                self.lift.weight().transposed_acc(0, g, &mut features);
                grad[i * n + j] += features[0];
            }
        }
    }
}

/// The plain f64 reference of the whole network, straight from the
/// formulas (padded arrays, complex DFT sums with `f64` `cos`/`sin`), with
/// a forward-mode tangent: the reference for the fast kernels, and the
/// Jacobian-vector product of the adjoint test.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;

    /// Reference outputs.
    pub(crate) struct RefOut {
        /// Network output at every grid node.
        pub(crate) out: Vec<f64>,
        /// Its tangent (`J v`).
        pub(crate) dout: Vec<f64>,
        /// Padded hidden state after the lift and after each layer.
        pub(crate) states: Vec<Vec<f64>>,
    }

    fn spectral(op: &Operator<'_>, l: usize, h: &[f64]) -> Vec<f64> {
        let s = op.shape;
        let (p, m, w) = (s.padded(), s.modes, s.width);
        let tau = std::f64::consts::TAU;
        let k1 = |r: usize| if r < m { r as f64 } else { r as f64 - 2.0 * m as f64 };
        let mut out = vec![0.0; p * p * w];
        for r in 0..2 * m {
            for k2 in 0..m {
                // X[i] = sum_{y,x} h e^{-i theta}
                let (mut xr, mut xi) = (vec![0.0; w], vec![0.0; w]);
                for y in 0..p {
                    for x in 0..p {
                        let th = tau * (k1(r) * y as f64 / p as f64 + (k2 * x) as f64 / p as f64);
                        for i in 0..w {
                            let v = h[(y * p + x) * w + i];
                            xr[i] += v * th.cos();
                            xi[i] -= v * th.sin();
                        }
                    }
                }
                let row0 = (l * 2 * m * m + r * m + k2) * w;
                let c = if k2 == 0 || 2 * k2 == p { 1.0 } else { 2.0 };
                for o in 0..w {
                    let (mut yr, mut yi) = (0.0, 0.0);
                    for i in 0..w {
                        let wr = f64::from(op.spectral.at(row0 + o, i));
                        let wi = f64::from(op.spectral.at(row0 + o, w + i));
                        yr += xr[i] * wr - xi[i] * wi;
                        yi += xr[i] * wi + xi[i] * wr;
                    }
                    for y in 0..p {
                        for x in 0..p {
                            let th = tau * (k1(r) * y as f64 / p as f64 + (k2 * x) as f64 / p as f64);
                            out[(y * p + x) * w + o] += c * (yr * th.cos() - yi * th.sin()) / (p * p) as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn linear(l: &Linear<'_>, row0: usize, rows: usize, x: &[f64], bias: bool) -> Vec<f64> {
        (0..rows)
            .map(|o| {
                let b = if bias { f64::from(l.bias().at(row0 + o)) } else { 0.0 };
                b + (0..l.inputs()).map(|c| f64::from(l.weight().at(row0 + o, c)) * x[c]).sum::<f64>()
            })
            .collect()
    }

    /// The network on `field` (already mapped) with tangent `tangent`;
    /// `film` is `layers * 2 width` values or empty.
    pub(crate) fn forward(op: &Operator<'_>, field: &[f64], tangent: &[f64], film: &[f64]) -> RefOut {
        let s = op.shape;
        let (n, p, w) = (s.n, s.padded(), s.width);
        let (mut h, mut dh) = (vec![0.0; p * p * w], vec![0.0; p * p * w]);
        for y in 0..p {
            for x in 0..p {
                let (i, j) = (mirror(y, s.pad, n), mirror(x, s.pad, n));
                let f = [field[i * n + j], j as f64 / (n - 1) as f64, i as f64 / (n - 1) as f64];
                let df = [tangent[i * n + j], 0.0, 0.0];
                let at = (y * p + x) * w;
                h[at..at + w].copy_from_slice(&linear(&op.lift, 0, w, &f, true));
                dh[at..at + w].copy_from_slice(&linear(&op.lift, 0, w, &df, false));
            }
        }
        let mut states = vec![h.clone()];
        for l in 0..s.layers {
            let (sp, dsp) = (spectral(op, l, &h), spectral(op, l, &dh));
            for node in 0..p * p {
                let at = node * w;
                let k = linear(&op.skip, l * w, w, &h[at..at + w], true);
                let dk = linear(&op.skip, l * w, w, &dh[at..at + w], false);
                for o in 0..w {
                    let (mut pre, mut dpre) = (sp[at + o] + k[o], dsp[at + o] + dk[o]);
                    if !film.is_empty() {
                        let (sc, sh) = (film[l * 2 * w + o], film[l * 2 * w + w + o]);
                        pre = pre * sc + sh;
                        dpre *= sc;
                    }
                    let on = pre > 0.0;
                    h[at + o] = if on { pre } else { 0.0 };
                    dh[at + o] = if on { dpre } else { 0.0 };
                }
            }
            states.push(h.clone());
        }
        let (mut out, mut dout) = (vec![0.0; n * n], vec![0.0; n * n]);
        for i in 0..n {
            for j in 0..n {
                let at = ((i + s.pad) * p + j + s.pad) * w;
                let mut hid = linear(&op.proj_hidden, 0, s.proj_width, &h[at..at + w], true);
                let mut dhid = linear(&op.proj_hidden, 0, s.proj_width, &dh[at..at + w], false);
                for (v, dv) in hid.iter_mut().zip(dhid.iter_mut()) {
                    if *v <= 0.0 {
                        *v = 0.0;
                        *dv = 0.0;
                    }
                }
                out[i * n + j] = linear(&op.proj_out, 0, 1, &hid, true)[0];
                dout[i * n + j] = linear(&op.proj_out, 0, 1, &dhid, false)[0];
            }
        }
        RefOut { out, dout, states }
    }
}
