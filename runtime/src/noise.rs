//! Smooth Gaussian noise on the device (float twin:
//! `trainer::model::noise`): a field is `L Z L^T` with `Z` white noise from
//! [`Rng`] and `L` the symmetric square root of the 1-D RBF kernel,
//! computed on the host and shipped in the artifact.

use crate::Error;
use crate::kernels::F32s;
use crate::rng::Rng;

/// The square-root kernel `L`, `n x n`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothNoise<'a> {
    n: usize,
    l: F32s<'a>,
}

impl<'a> SmoothNoise<'a> {
    /// Checked: `n * n` finite f32.
    pub(crate) fn new(bytes: &'a [u8], n: usize) -> Result<Self, Error> {
        Ok(Self { n, l: F32s::new(bytes, n * n, "noise")? })
    }

    /// Nodes per side.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of `L`.
    pub fn bytes(&self) -> usize {
        4 * self.l.len()
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
        let n = self.n;
        // tmp = L Z, streaming rows of Z.
        for (i, trow) in tmp.chunks_exact_mut(n).enumerate() {
            trow.fill(0.0);
            for (a, zrow) in z.chunks_exact(n).enumerate() {
                let lia = self.l.get(i * n + a);
                for (t, &zv) in trow.iter_mut().zip(zrow) {
                    *t += lia * zv;
                }
            }
        }
        // z[i][j] = sum_b tmp[i][b] L[j][b] (rows of the symmetric L).
        for (trow, zrow) in tmp.chunks_exact(n).zip(z.chunks_exact_mut(n)) {
            for (j, zv) in zrow.iter_mut().enumerate() {
                *zv = self.l.slice(j * n, n).iter().zip(trow).fold(0.0, |acc, (l, t)| acc + t * l);
            }
        }
    }
}
