//! Pointwise kernels over weights borrowed from the artifact: little-endian
//! f32 arrays read without copying ([`F32s`]), weight matrices with f32 or
//! int8 entries and one f32 scale per row ([`Matrix`]), and pointwise linear
//! layers ([`Linear`]). Values are built only by the artifact parser, which
//! checks every length once; the kernels then take slices and do not fail.
//!
//! Why the inner loops cannot panic: [`F32s::new`] proves `len * 4` bytes,
//! [`Matrix::f32`]/[`Matrix::i8`] prove `rows * cols` entries and `rows`
//! scales, [`Linear::new`] one bias per row, and `validate::operator` that
//! every matrix has the shape the network's `OperatorShape` implies. The
//! kernels cut exact slices from those sizes (a row of a
//! matrix is `[r * cols, (r + 1) * cols)` with `r < rows`) and walk them
//! with `zip` and `chunks_exact`, so every index a kernel forms is one the
//! parser proved in range. Nothing falls back to 0.0 or an empty slice: a
//! caller that broke the contract would panic (the firmware then exits
//! with its panic code) instead of computing with zeros.
//!
//! Every fast kernel has a plain reference in its tests (`kernels/tests.rs`:
//! f64, dequantised weights, straight from the formula).

use crate::Error;

/// A validated little-endian f32 array inside the artifact. The bytes need
/// no alignment: each value is read with `f32::from_le_bytes`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F32s<'a> {
    bytes: &'a [u8],
}

impl<'a> F32s<'a> {
    /// `bytes` as `len` f32 values; every value must be finite.
    pub(crate) fn new(bytes: &'a [u8], len: usize, field: &'static str) -> Result<Self, Error> {
        let expected = len.checked_mul(4).ok_or(Error::Overflow { field })?;
        if bytes.len() != expected {
            return Err(Error::ShapeMismatch { field, expected, got: bytes.len() });
        }
        let out = Self { bytes };
        if let Some(index) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { field, index });
        }
        Ok(out)
    }

    /// An empty array.
    pub(crate) const fn empty() -> Self {
        Self { bytes: &[] }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() < 4
    }

    /// Value `i`; `i < len()` (the parser proved the length, see the
    /// module docs).
    #[inline]
    pub fn at(&self, i: usize) -> f32 {
        let c = &self.bytes[4 * i..4 * i + 4];
        f32::from_le_bytes([c[0], c[1], c[2], c[3]])
    }

    /// The values in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Values `start..start + len`, inside the array.
    #[inline]
    pub fn slice(&self, start: usize, len: usize) -> F32s<'a> {
        F32s { bytes: &self.bytes[4 * start..4 * (start + len)] }
    }

    /// The first `mid` values and the rest; `mid <= len()`.
    #[inline]
    pub fn split_at(&self, mid: usize) -> (F32s<'a>, F32s<'a>) {
        let (a, b) = self.bytes.split_at(4 * mid);
        (F32s { bytes: a }, F32s { bytes: b })
    }

    /// Consecutive runs of `len` values (`len > 0`), the tail shorter than
    /// `len` left out.
    #[inline]
    pub fn chunks_exact(&self, len: usize) -> impl Iterator<Item = F32s<'a>> + 'a {
        self.bytes.chunks_exact(4 * len).map(|bytes| F32s { bytes })
    }
}

/// Storage of a [`Matrix`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Storage<'a> {
    F32(F32s<'a>),
    I8 { q: &'a [u8], scales: F32s<'a> },
}

/// A row-major `rows x cols` weight matrix, f32 or int8 with one f32 scale
/// per row (the row is the output channel: `w[r][c] = q[r][c] * scale[r]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matrix<'a> {
    rows: usize,
    cols: usize,
    storage: Storage<'a>,
}

impl<'a> Matrix<'a> {
    /// A checked f32 matrix.
    pub(crate) fn f32(bytes: &'a [u8], rows: usize, cols: usize, field: &'static str) -> Result<Self, Error> {
        let len = rows.checked_mul(cols).ok_or(Error::Overflow { field })?;
        Ok(Self { rows, cols, storage: Storage::F32(F32s::new(bytes, len, field)?) })
    }

    /// A checked int8 matrix; every scale finite and `>= 0`.
    pub(crate) fn i8(
        q: &'a [u8],
        scales: &'a [u8],
        rows: usize,
        cols: usize,
        field: &'static str,
    ) -> Result<Self, Error> {
        let len = rows.checked_mul(cols).ok_or(Error::Overflow { field })?;
        if q.len() != len {
            return Err(Error::ShapeMismatch { field, expected: len, got: q.len() });
        }
        let scales = F32s::new(scales, rows, field)?;
        if scales.iter().any(|s| s < 0.0) {
            return Err(Error::InvalidValue { field });
        }
        Ok(Self { rows, cols, storage: Storage::I8 { q, scales } })
    }

    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input channels).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the entries are int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.storage, Storage::I8 { .. })
    }

    /// Bytes of weights and scales.
    pub fn bytes(&self) -> usize {
        match self.storage {
            Storage::F32(v) => 4 * v.len(),
            Storage::I8 { q, scales } => q.len() + 4 * scales.len(),
        }
    }

    /// Entry `[r][c]` as f32 (dequantised), `r < rows`, `c < cols`. For
    /// references and tests.
    pub fn at(&self, r: usize, c: usize) -> f32 {
        let k = r * self.cols + c;
        match self.storage {
            Storage::F32(v) => v.at(k),
            Storage::I8 { q, scales } => f32::from(q[k] as i8) * scales.at(r),
        }
    }

    /// `sum_c w[r][c] x[c]` for the first `cols` values of `x` (the int8
    /// path multiplies the integer-weighted sum by the row's scale once).
    #[inline]
    pub fn dot_row(&self, r: usize, x: &[f32]) -> f32 {
        let start = r * self.cols;
        match self.storage {
            Storage::F32(v) => v.slice(start, self.cols).iter().zip(x).fold(0.0, |acc, (w, x)| acc + w * x),
            Storage::I8 { q, scales } => {
                let row = &q[start..start + self.cols];
                row.iter().zip(x).fold(0.0, |acc, (&w, x)| acc + f32::from(w as i8) * x) * scales.at(r)
            }
        }
    }

    /// The complex row product of a spectral mode: columns `0..k` are real
    /// parts, `k..2k` imaginary parts (`k = cols / 2`), and the result is
    /// `(sum_i zr wr - zi wi, sum_i zr wi + zi wr)` over `i < k`.
    #[inline]
    pub fn dot_row_complex(&self, r: usize, zr: &[f32], zi: &[f32]) -> (f32, f32) {
        let k = self.cols / 2;
        let start = r * self.cols;
        match self.storage {
            Storage::F32(v) => {
                let (wr, wi) = (v.slice(start, k), v.slice(start + k, k));
                let (mut yr, mut yi) = (0.0f32, 0.0f32);
                for (((wr, wi), &zr), &zi) in wr.iter().zip(wi.iter()).zip(zr).zip(zi) {
                    yr += zr * wr - zi * wi;
                    yi += zr * wi + zi * wr;
                }
                (yr, yi)
            }
            Storage::I8 { q, scales } => {
                let (qr, qi) = q[start..start + 2 * k].split_at(k);
                let (mut yr, mut yi) = (0.0f32, 0.0f32);
                for (((&wr, &wi), &zr), &zi) in qr.iter().zip(qi).zip(zr).zip(zi) {
                    let (wr, wi) = (f32::from(wr as i8), f32::from(wi as i8));
                    yr += zr * wr - zi * wi;
                    yi += zr * wi + zi * wr;
                }
                let s = scales.at(r);
                (yr * s, yi * s)
            }
        }
    }

    /// Adjoint of [`dot_row_complex`](Self::dot_row_complex) for one row,
    /// accumulated: `gzr[i] += wr gyr + wi gyi`, `gzi[i] += -wi gyr + wr gyi`.
    #[inline]
    pub fn dot_row_complex_adjoint(&self, r: usize, gyr: f32, gyi: f32, gzr: &mut [f32], gzi: &mut [f32]) {
        let k = self.cols / 2;
        let start = r * self.cols;
        match self.storage {
            Storage::F32(v) => {
                let (wr, wi) = (v.slice(start, k), v.slice(start + k, k));
                for (((wr, wi), gzr), gzi) in wr.iter().zip(wi.iter()).zip(gzr.iter_mut()).zip(gzi.iter_mut()) {
                    *gzr += wr * gyr + wi * gyi;
                    *gzi += wr * gyi - wi * gyr;
                }
            }
            Storage::I8 { q, scales } => {
                let s = scales.at(r);
                let (gyr, gyi) = (gyr * s, gyi * s);
                let (qr, qi) = q[start..start + 2 * k].split_at(k);
                for (((&wr, &wi), gzr), gzi) in qr.iter().zip(qi).zip(gzr.iter_mut()).zip(gzi.iter_mut()) {
                    let (wr, wi) = (f32::from(wr as i8), f32::from(wi as i8));
                    *gzr += wr * gyr + wi * gyi;
                    *gzi += wr * gyi - wi * gyr;
                }
            }
        }
    }

    /// Rows `row0..row0 + out.len() / cols` as f32, without their scales:
    /// `q` as f32 for int8 (exact), the values for f32. Kernels that reuse
    /// a small matrix at every grid node convert it once with this and run
    /// [`Linear::forward_rows_unpacked`] / [`Linear::transposed_rows_unpacked`],
    /// which apply the scales exactly where [`Self::dot_row`] and
    /// [`Self::transposed_acc`] do, so the results are the same bits.
    pub fn unpack_rows(&self, row0: usize, out: &mut [f32]) {
        let (start, len) = (row0 * self.cols, out.len());
        match self.storage {
            Storage::F32(v) => {
                for (o, w) in out.iter_mut().zip(v.slice(start, len).iter()) {
                    *o = w;
                }
            }
            Storage::I8 { q, .. } => {
                for (o, &b) in out.iter_mut().zip(&q[start..start + len]) {
                    *o = f32::from(b as i8);
                }
            }
        }
    }

    /// [`Self::unpack_rows`] transposed: `out[c * rows + k]` holds entry
    /// `[row0 + k][c]` for `k < rows` (`out.len() = rows * cols`), so that a
    /// kernel can run over the outputs of one input contiguously.
    pub fn unpack_rows_transposed(&self, row0: usize, rows: usize, out: &mut [f32]) {
        let cols = self.cols;
        for (c, col) in out.chunks_exact_mut(rows).enumerate().take(cols) {
            for (k, o) in col.iter_mut().enumerate() {
                let i = (row0 + k) * cols + c;
                *o = match self.storage {
                    Storage::F32(v) => v.at(i),
                    Storage::I8 { q, .. } => f32::from(q[i] as i8),
                };
            }
        }
    }

    /// The scale of row `r` for int8 storage, `None` for f32.
    #[inline]
    fn row_scale(&self, r: usize) -> Option<f32> {
        match self.storage {
            Storage::F32(_) => None,
            Storage::I8 { scales, .. } => Some(scales.at(r)),
        }
    }

    /// `out[c] += sum_r w[r][c] g[r]` over rows `row0..row0 + g.len()`.
    #[inline]
    pub fn transposed_acc(&self, row0: usize, g: &[f32], out: &mut [f32]) {
        for (k, &gr) in g.iter().enumerate() {
            let start = (row0 + k) * self.cols;
            match self.storage {
                Storage::F32(v) => {
                    for (o, w) in out.iter_mut().zip(v.slice(start, self.cols).iter()) {
                        *o += w * gr;
                    }
                }
                Storage::I8 { q, scales } => {
                    let gs = gr * scales.at(row0 + k);
                    for (o, &w) in out.iter_mut().zip(&q[start..start + self.cols]) {
                        *o += f32::from(w as i8) * gs;
                    }
                }
            }
        }
    }
}

/// Accumulators a register-blocked kernel keeps at once (8 complex pairs
/// use 16 of the Cortex-M4F's 32 single-precision registers).
pub(crate) const REG_BLOCK: usize = 8;

/// Walks `0..len` the way the register-blocked kernels do: `f(start, true)`
/// for each full block of [`REG_BLOCK`] in order, then `f(start, false)`
/// for each index left over (a block of one).
#[inline(always)]
pub(crate) fn for_blocks(len: usize, mut f: impl FnMut(usize, bool)) {
    let full = len - len % REG_BLOCK;
    for start in (0..full).step_by(REG_BLOCK) {
        f(start, true);
    }
    for start in full..len {
        f(start, false);
    }
}

/// Quantises one row of weights to int8 with a symmetric scale:
/// `scale = max |w| / 127`, `q = round(w / scale)` (half away from zero),
/// so that `|w - q scale| <= scale / 2`. Returns the scale (0 for an
/// all-zero row, whose `q` are all 0). `q` must be as long as `w`; extra
/// entries of either are ignored.
///
/// The host exporter calls this, so quantiser and kernel live side by side.
pub fn quantize_row(w: &[f32], q: &mut [u8]) -> f32 {
    let max = w.iter().fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let scale = max / 127.0;
    for (q, &w) in q.iter_mut().zip(w) {
        let v = if scale > 0.0 { w / scale } else { 0.0 };
        // `as` truncates toward zero and saturates: +-0.5 rounds half away.
        let r = if v >= 0.0 { (v + 0.5) as i32 } else { (v - 0.5) as i32 };
        *q = (r.clamp(-127, 127) as i8) as u8;
    }
    scale
}

/// A pointwise linear layer `y = W x + b`, `W` of `outputs x inputs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear<'a> {
    weight: Matrix<'a>,
    bias: F32s<'a>,
}

impl<'a> Linear<'a> {
    /// Checked: `bias` has one value per row of `weight`.
    pub(crate) fn new(weight: Matrix<'a>, bias: &'a [u8], field: &'static str) -> Result<Self, Error> {
        let bias = F32s::new(bias, weight.rows, field)?;
        Ok(Self { weight, bias })
    }

    /// Input channels.
    pub fn inputs(&self) -> usize {
        self.weight.cols
    }

    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.weight.rows
    }

    /// The weight matrix.
    pub fn weight(&self) -> &Matrix<'a> {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> F32s<'a> {
        self.bias
    }

    /// Bytes of weights, scales and bias.
    pub fn bytes(&self) -> usize {
        self.weight.bytes() + 4 * self.bias.len()
    }

    /// Scalars (weights and bias).
    pub fn params(&self) -> usize {
        self.weight.rows * self.weight.cols + self.bias.len()
    }

    /// `y[k] = (W x)[row0 + k] + b[row0 + k]` for `k < y.len()`: rows
    /// `row0..` of the layer (a stacked layer holds several blocks' rows).
    #[inline]
    pub fn forward_rows(&self, row0: usize, x: &[f32], y: &mut [f32]) {
        for (k, y) in y.iter_mut().enumerate() {
            *y = self.weight.dot_row(row0 + k, x) + self.bias.at(row0 + k);
        }
    }

    /// `y = W x + b` (`y` holds `outputs` values).
    #[inline]
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.forward_rows(0, x, y);
    }

    /// `out = W[row0..row0 + g.len()]^T g` (no bias): the adjoint.
    #[inline]
    pub fn transposed_rows(&self, row0: usize, g: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        self.weight.transposed_acc(row0, g, out);
    }

    /// [`Self::forward_rows`] with the rows already unpacked, transposed,
    /// into `wt` ([`Matrix::unpack_rows_transposed`] from `row0`,
    /// `inputs x y.len()`): every output's sum runs over the inputs in
    /// increasing order from 0.0 and is then scaled and biased as there, so
    /// the bits are the same; outputs go in register blocks of 8, each input
    /// loaded once per block.
    #[inline]
    pub fn forward_rows_unpacked(&self, row0: usize, wt: &[f32], x: &[f32], y: &mut [f32]) {
        for_blocks(y.len(), |k0, full| {
            if full {
                self.forward_block::<REG_BLOCK>(row0, wt, x, k0, y)
            } else {
                self.forward_block::<1>(row0, wt, x, k0, y)
            }
        });
    }

    #[inline(always)]
    fn forward_block<const B: usize>(&self, row0: usize, wt: &[f32], x: &[f32], k0: usize, y: &mut [f32]) {
        let rows = y.len();
        let mut acc = [0.0f32; B];
        for (&xi, col) in x.iter().zip(wt.chunks_exact(rows)) {
            let col = &col[k0..k0 + B];
            for b in 0..B {
                acc[b] += col[b] * xi;
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            let k = row0 + k0 + b;
            let v = match self.weight.row_scale(k) {
                Some(s) => acc * s,
                None => *acc,
            };
            y[k0 + b] = v + self.bias.at(k);
        }
    }

    /// [`Self::transposed_rows`] with the rows already unpacked into `wq`
    /// (`g.len() x inputs`): `out[c] = sum_k wq[k][c] (g[k] scale_k)`, summed
    /// over `k` in increasing order from 0.0 as there, in register blocks
    /// of 8 outputs.
    #[inline]
    pub fn transposed_rows_unpacked(&self, row0: usize, wq: &[f32], g: &[f32], out: &mut [f32]) {
        for_blocks(self.weight.cols, |c0, full| {
            if full {
                self.transposed_block::<REG_BLOCK>(row0, wq, g, c0, out)
            } else {
                self.transposed_block::<1>(row0, wq, g, c0, out)
            }
        });
    }

    #[inline(always)]
    fn transposed_block<const B: usize>(&self, row0: usize, wq: &[f32], g: &[f32], c0: usize, out: &mut [f32]) {
        let cols = self.weight.cols;
        let mut acc = [0.0f32; B];
        for ((k, &gr), row) in g.iter().enumerate().zip(wq.chunks_exact(cols)) {
            let gs = match self.weight.row_scale(row0 + k) {
                Some(s) => gr * s,
                None => gr,
            };
            let row = &row[c0..c0 + B];
            for b in 0..B {
                acc[b] += row[b] * gs;
            }
        }
        out[c0..c0 + B].copy_from_slice(&acc);
    }
}

#[cfg(test)]
pub(crate) mod tests;
