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
//! Split by job: this file holds the network, its workspace split, the
//! lift, the projection and their adjoints; `operator/shape.rs` the sizes
//! (workspace, parameters, flops, all `const`), `operator/spectral.rs` the
//! Fourier layer and its adjoint, `operator/reference.rs` (tests only) the
//! plain f64 reference.
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
use crate::kernels::{F32s, Linear, Matrix};

#[cfg(test)]
pub(crate) mod reference;
mod shape;
mod spectral;

pub use shape::OperatorShape;
use shape::words;
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
