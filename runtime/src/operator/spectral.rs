//! The Fourier layer of [`Operator`] and its adjoint: the truncated DFT
//! done in place row by row (column pass in register blocks, row pass into
//! the `2m x m` kept modes), the per-mode channel mixing, and the inverse
//! with the pointwise skip, FiLM and ReLU (see the parent module's docs).

use super::{BitWriter, Operator, Ws, bit, words};
use crate::kernels::{F32s, REG_BLOCK, for_blocks};

impl Operator<'_> {
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
}
