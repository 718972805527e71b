//! Smooth Gaussian noise on the device (float twin:
//! `trainer::model::noise`): a field is `L Z L^T` with `Z` white noise from
//! [`Rng`] and `L` the symmetric square root of the 1-D RBF kernel,
//! computed on the host and shipped in the artifact.

use crate::Error;
use crate::kernels::F32s;
use crate::rng::Rng;

/// The square-root kernel `L` and the kernel `K1 = L L^T`, `n x n` each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothNoise<'a> {
    n: usize,
    l: F32s<'a>,
    k: F32s<'a>,
}

impl<'a> SmoothNoise<'a> {
    /// Checked: `n * n` finite f32 each.
    pub(crate) fn new(sqrt_kernel: &'a [u8], kernel: &'a [u8], n: usize) -> Result<Self, Error> {
        Ok(Self {
            n,
            l: F32s::new(sqrt_kernel, n * n, "noise.sqrt_kernel")?,
            k: F32s::new(kernel, n * n, "noise.kernel")?,
        })
    }

    /// Nodes per side.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of `L` and `K1`.
    pub fn bytes(&self) -> usize {
        4 * (self.l.len() + self.k.len())
    }

    /// Draws `Z` (`n * n` normals from `rng`, row-major) into `out`, then
    /// overwrites `out` with `L Z L^T`, using `tmp` (`n * n`) as scratch.
    pub fn sample(&self, rng: &mut Rng, out: &mut [f32], tmp: &mut [f32]) -> Result<(), Error> {
        let n = self.n;
        for (field, len) in [("out", out.len()), ("tmp", tmp.len())] {
            if len != n * n {
                return Err(Error::BufferLength { field, expected: n * n, got: len });
            }
        }
        rng.fill_normal(out);
        self.color(out, tmp);
        Ok(())
    }

    /// `z <- L z L^T` in place (`tmp` scratch); lengths checked by callers.
    pub(crate) fn color(&self, z: &mut [f32], tmp: &mut [f32]) {
        sandwich(self.l, self.n, z, tmp);
    }

    /// Copies `K1` into `out` (`n * n` f32), for [`apply_cov`] from RAM.
    pub(crate) fn kernel_into(&self, out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(self.k.iter()) {
            *o = v;
        }
    }
}

/// `z <- C z = K1 z K1` in place with `K1` as f32 values ([`SmoothNoise::kernel_into`]):
/// the covariance of the noise applied to a field (`tmp` scratch; lengths
/// checked by callers). The same sums in the same order as [`sandwich`].
pub(crate) fn apply_cov(k1: &[f32], n: usize, z: &mut [f32], tmp: &mut [f32]) {
    for (trow, krow) in tmp.chunks_exact_mut(n).zip(k1.chunks_exact(n)) {
        trow.fill(0.0);
        for (&kia, zrow) in krow.iter().zip(z.chunks_exact(n)) {
            for (t, &zv) in trow.iter_mut().zip(zrow) {
                *t += kia * zv;
            }
        }
    }
    for (trow, zrow) in tmp.chunks_exact(n).zip(z.chunks_exact_mut(n)) {
        for (zv, krow) in zrow.iter_mut().zip(k1.chunks_exact(n)) {
            *zv = krow.iter().zip(trow).fold(0.0, |acc, (l, t)| acc + t * l);
        }
    }
}

/// `z <- M z M` for a symmetric `n x n` matrix `M`.
fn sandwich(mat: F32s<'_>, n: usize, z: &mut [f32], tmp: &mut [f32]) {
    // tmp = M Z, streaming rows of Z.
    for (i, trow) in tmp.chunks_exact_mut(n).enumerate() {
        trow.fill(0.0);
        for (a, zrow) in z.chunks_exact(n).enumerate() {
            let lia = mat.at(i * n + a);
            for (t, &zv) in trow.iter_mut().zip(zrow) {
                *t += lia * zv;
            }
        }
    }
    // z[i][j] = sum_b tmp[i][b] M[j][b] (rows of the symmetric M).
    for (trow, zrow) in tmp.chunks_exact(n).zip(z.chunks_exact_mut(n)) {
        for (zv, mrow) in zrow.iter_mut().zip(mat.chunks_exact(n)) {
            *zv = mrow.iter().zip(trow).fold(0.0, |acc, (l, t)| acc + t * l);
        }
    }
}
