//! Smooth function-space training noise for the diffusion prior (docs/science.md
//! section 2).
//!
//! The noise is a Gaussian field with a squared-exponential (RBF) covariance
//! of unit pointwise variance on the `n x n` node grid. The kernel is
//! separable, `K = K1 ⊗ K1`, so a sample is `L Z L^T` with `L` the symmetric
//! square root of the 1-D kernel matrix `K1` and `Z` white noise: two small
//! matrix products, which is also what the device runtime does with the `L`
//! shipped in its artifact. Everything random here is drawn on the host from
//! a caller-given RNG (a training step's `train::step_rng`); burn's global
//! generator is never used.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use faer::{Mat, Side};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::Error;

/// The papers' RBF length scale on the unit square.
pub const DEFAULT_LENGTH_SCALE: f64 = 0.05;

/// Sampler of smooth Gaussian noise fields with covariance
/// `exp(-|p - q|^2 / (2 l^2))` between nodes `p` and `q` of an `n x n` grid
/// on the unit square (nodes at `i/(n-1)`, docs/science.md section 4).
///
/// Build once per resolution (an `n x n` eigendecomposition) and share: it
/// is immutable, `Send` and `Sync`.
#[derive(Clone, Debug)]
pub struct SmoothNoise {
    n: usize,
    length_scale: f64,
    /// Symmetric square root of `K1`, row-major `n x n`.
    sqrt_k1: Vec<f64>,
    /// `sqrt_k1` rounded once to f32: the matrix the device artifact ships.
    sqrt_k1_f32: Vec<f32>,
}

impl SmoothNoise {
    /// The sampler for an `n x n` grid and RBF length scale `length_scale`
    /// (in unit-square lengths; the papers use [`DEFAULT_LENGTH_SCALE`]).
    ///
    /// `L` is computed in f64 from the dense self-adjoint eigendecomposition
    /// `K1 = U diag(λ) U^T` as `U diag(sqrt(max(λ, 0))) U^T`. `K1` is
    /// positive semi-definite but, for a length scale of several node
    /// spacings, numerically singular: round-off leaves eigenvalues of order
    /// `-1e-16`, which are clipped to 0. This changes the covariance by
    /// round-off only and, unlike a Cholesky jitter, needs no tuning.
    ///
    /// Errors: `n < 2` (no spacing to speak of) or a length scale that is not
    /// finite and positive.
    pub fn new(n: usize, length_scale: f64) -> Result<Self, Error> {
        if n < 2 {
            return Err(Error::GridTooSmall { n, min: 2 });
        }
        if !(length_scale.is_finite() && length_scale > 0.0) {
            return Err(Error::InvalidConfig {
                name: "noise.length_scale",
                value: length_scale,
                reason: "must be finite and > 0",
            });
        }
        let h = 1.0 / (n - 1) as f64;
        let k1 = Mat::<f64>::from_fn(n, n, |i, j| {
            let d = (i as f64 - j as f64) * h;
            (-d * d / (2.0 * length_scale * length_scale)).exp()
        });
        let eig = k1
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Factorisation(format!("RBF kernel eigendecomposition (n = {n}): {e:?}")))?;
        let (u, s) = (eig.U(), eig.S().column_vector());
        let root: Vec<f64> = (0..n).map(|k| s[k].max(0.0).sqrt()).collect();
        let mut sqrt_k1 = vec![0.0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let v: f64 = (0..n).map(|k| u[(i, k)] * root[k] * u[(j, k)]).sum();
                sqrt_k1[i * n + j] = v;
                sqrt_k1[j * n + i] = v;
            }
        }
        let sqrt_k1_f32 = sqrt_k1.iter().map(|&v| v as f32).collect();
        Ok(SmoothNoise { n, length_scale, sqrt_k1, sqrt_k1_f32 })
    }

    /// Nodes per side.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Values per sample, `n * n`.
    pub fn len(&self) -> usize {
        self.n * self.n
    }

    /// Always false (a sampler has at least a 2x2 grid); for clippy.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The RBF length scale.
    pub fn length_scale(&self) -> f64 {
        self.length_scale
    }

    /// `L`, the symmetric square root of the 1-D kernel matrix, row-major
    /// `n x n`, in f64.
    pub fn sqrt_kernel(&self) -> &[f64] {
        &self.sqrt_k1
    }

    /// `K1 = L L`, the 1-D kernel matrix itself (row-major `n x n`, f64):
    /// the fields' covariance is `K1 (x) K1`.
    pub fn kernel(&self) -> Vec<f64> {
        let (n, l) = (self.n, &self.sqrt_k1);
        (0..n * n).map(|ij| (0..n).map(|t| l[(ij / n) * n + t] * l[t * n + ij % n]).sum()).collect()
    }

    /// `L` rounded to f32, as the device artifact ships it.
    pub fn sqrt_kernel_f32(&self) -> &[f32] {
        &self.sqrt_k1_f32
    }

    /// Colours white noise: `out = L Z L^T` for row-major `Z` (`white`),
    /// in f64, rounded once to f32. The deterministic half of
    /// [`sample_into`](Self::sample_into), exposed so the device twin can be
    /// tested on the same `Z`.
    pub fn color_into(&self, white: &[f64], out: &mut [f32]) -> Result<(), Error> {
        let n = self.n;
        check_len("white", white.len(), n * n)?;
        check_len("out", out.len(), n * n)?;
        // tmp = L Z, then out[i][j] = sum_b tmp[i][b] L[j][b] (L^T, by rows
        // of the symmetric L so both products stream rows).
        let l = &self.sqrt_k1;
        let mut tmp = vec![0.0f64; n * n];
        for i in 0..n {
            let row = &mut tmp[i * n..(i + 1) * n];
            for a in 0..n {
                let lia = l[i * n + a];
                for (t, &z) in row.iter_mut().zip(&white[a * n..(a + 1) * n]) {
                    *t += lia * z;
                }
            }
        }
        for i in 0..n {
            let ti = &tmp[i * n..(i + 1) * n];
            for j in 0..n {
                let lj = &l[j * n..(j + 1) * n];
                out[i * n + j] = ti.iter().zip(lj).map(|(t, l)| t * l).sum::<f64>() as f32;
            }
        }
        Ok(())
    }

    /// Draws one noise field into `out` (`n * n`, row-major): `n * n`
    /// standard normals from `rng` in row-major order for `Z`, then
    /// [`color_into`](Self::color_into).
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f32]) -> Result<(), Error> {
        check_len("out", out.len(), self.len())?;
        let white: Vec<f64> = (0..self.len()).map(|_| rng.sample(StandardNormal)).collect();
        self.color_into(&white, out)
    }

    /// `count` fields drawn one after the other with
    /// [`sample_into`](Self::sample_into), concatenated.
    pub fn sample_batch<R: Rng + ?Sized>(&self, rng: &mut R, count: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; count * self.len()];
        for chunk in out.chunks_exact_mut(self.len()) {
            // Infallible: every chunk has exactly `len()` values.
            let _ = self.sample_into(rng, chunk);
        }
        out
    }

    /// A `[batch, channels, n, n]` tensor of independent noise fields: the
    /// white noise is drawn on the host from `rng` exactly as
    /// [`sample_batch`](Self::sample_batch) draws it (row-major order of
    /// `(sample, channel)`, then of the nodes), rounded to f32, uploaded, and
    /// coloured on the backend by [`color_tensor`](Self::color_tensor). The
    /// result equals `sample_batch`'s to f32 round-off
    /// ([`COLOR_F32_TOL`]), not bit for bit.
    pub fn sample_tensor<B: Backend, R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: usize,
        channels: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let white: Vec<f32> =
            (0..batch * channels * self.len()).map(|_| rng.sample::<f64, _>(StandardNormal) as f32).collect();
        let white = Tensor::from_data(TensorData::new(white, [batch, channels, self.n, self.n]), device);
        self.color_tensor(white)
    }

    /// Colours white noise on the backend: `L Z L` (`L` symmetric) on every
    /// `n x n` slice of `white: [batch, channels, n, n]`, two batched f32
    /// products. The fast twin of [`color_into`](Self::color_into) (f64 on
    /// the host), which stays the reference and the device runtime's twin.
    pub fn color_tensor<B: Backend>(&self, white: Tensor<B, 4>) -> Tensor<B, 4> {
        let l = self.sqrt_kernel_tensor::<B>(&white.device());
        l.clone().matmul(white).matmul(l)
    }

    /// `L` as a `[1, 1, n, n]` f32 tensor on `device`, uploaded once per
    /// `(backend, device, n, length scale)` on this thread.
    pub fn sqrt_kernel_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        let n = self.n;
        let key = [n, self.length_scale.to_bits() as usize, 0];
        crate::model::per_device::<B, Tensor<B, 4>>("smooth noise sqrt kernel", key, device, || {
            Tensor::from_data(TensorData::new(self.sqrt_k1_f32.clone(), [1, 1, n, n]), device)
        })
    }
}

/// f32 round-off of the backend colouring ([`SmoothNoise::color_tensor`])
/// against the f64 reference, absolute on unit-variance fields (sums of `n`
/// products of weights below 1, twice).
pub const COLOR_F32_TOL: f32 = 1e-5;

/// Turns host-generated fields (`batch * channels * n * n` values, row-major)
/// into a `[batch, channels, n, n]` tensor, checking the length.
pub fn host_batch_to_tensor<B: Backend>(
    data: Vec<f32>,
    [batch, channels, n]: [usize; 3],
    device: &B::Device,
) -> Result<Tensor<B, 4>, Error> {
    check_len("batch", data.len(), batch * channels * n * n)?;
    Ok(Tensor::from_data(TensorData::new(data, [batch, channels, n, n]), device))
}

fn check_len(field: &'static str, got: usize, expected: usize) -> Result<(), Error> {
    if got != expected {
        return Err(Error::ShapeMismatch { field, expected, got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::step_rng;
    use burn::backend::NdArray;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Sampling tolerance: 4 standard errors.
    const Z_SCORE: f64 = 4.0;

    #[test]
    fn square_root_reproduces_the_kernel() {
        for (n, l) in [(16, 0.05), (33, 0.05), (64, 0.05), (8, 0.5)] {
            let noise = SmoothNoise::new(n, l).unwrap();
            let sq = noise.sqrt_kernel();
            let h = 1.0 / (n - 1) as f64;
            // (L L^T)[i][j] = K1[i][j]; clipping and round-off leave ~eps * n.
            let tol = 1e-12 * n as f64;
            for i in 0..n {
                for j in 0..n {
                    let got: f64 = (0..n).map(|k| sq[i * n + k] * sq[j * n + k]).sum();
                    let d = (i as f64 - j as f64) * h;
                    let want = (-d * d / (2.0 * l * l)).exp();
                    assert!((got - want).abs() <= tol, "n {n} l {l}: (L L^T)[{i}][{j}] = {got}, K1 = {want}");
                    assert_eq!(sq[i * n + j], sq[j * n + i], "L symmetric at [{i}][{j}]");
                }
            }
        }
    }

    #[test]
    fn empirical_covariance_matches_rbf() {
        let (n, l, samples) = (16, 0.05, 4000);
        let noise = SmoothNoise::new(n, l).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let fields = noise.sample_batch(&mut rng, samples);
        let h = 1.0 / (n - 1) as f64;
        let base = (7, 5);
        // Offsets in nodes: same node, 1 and 2 along x, 1 along y, diagonal.
        for (di, dj) in [(0usize, 0usize), (0, 1), (0, 2), (1, 0), (1, 1)] {
            let p = base.0 * n + base.1;
            let q = (base.0 + di) * n + base.1 + dj;
            let cov =
                fields.chunks_exact(n * n).map(|f| f64::from(f[p]) * f64::from(f[q])).sum::<f64>() / samples as f64;
            let d2 = ((di * di + dj * dj) as f64) * h * h;
            let want = (-d2 / (2.0 * l * l)).exp();
            // Var(x y) = 1 + rho^2 for a standard bivariate normal pair.
            let se = ((1.0 + want * want) / samples as f64).sqrt();
            assert!(
                (cov - want).abs() <= Z_SCORE * se,
                "offset ({di}, {dj}): covariance {cov}, RBF {want}, tolerance {}",
                Z_SCORE * se
            );
        }
        // Unit variance at every node, pooled: per-node variance estimates
        // have standard error sqrt(2 / samples) each.
        let mut worst = 0.0f64;
        for k in 0..n * n {
            let var = fields.chunks_exact(n * n).map(|f| f64::from(f[k]).powi(2)).sum::<f64>() / samples as f64;
            worst = worst.max((var - 1.0).abs());
        }
        // 256 nodes: allow 5 standard errors for the worst one.
        assert!(worst <= 5.0 * (2.0 / samples as f64).sqrt(), "worst pointwise variance error {worst}");
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let noise = SmoothNoise::new(12, 0.05).unwrap();
        let a = noise.sample_batch(&mut step_rng(3, 17), 3);
        let b = noise.sample_batch(&mut step_rng(3, 17), 3);
        let c = noise.sample_batch(&mut step_rng(3, 18), 3);
        assert_eq!(a, b, "same (seed, step) must give identical noise");
        assert_ne!(a, c, "another step must give other noise");
        let t = noise.sample_tensor::<NdArray<f32>, _>(&mut step_rng(3, 17), 3, 1, &Default::default());
        assert_eq!(t.dims(), [3, 1, 12, 12]);
        // Same draws, coloured in f32 on the backend instead of f64 on the host.
        for (k, (g, w)) in t.into_data().to_vec::<f32>().unwrap().iter().zip(&a).enumerate() {
            assert!((g - w).abs() <= COLOR_F32_TOL, "tensor helper [{k}]: {g} vs the host reference {w}");
        }
    }

    #[test]
    fn backend_colouring_matches_the_f64_reference() {
        let n = 40;
        let noise = SmoothNoise::new(n, 0.05).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let white: Vec<f64> = (0..2 * n * n).map(|_| rng.sample(StandardNormal)).collect();
        let mut want = vec![0.0f32; 2 * n * n];
        for (w, o) in white.chunks_exact(n * n).zip(want.chunks_exact_mut(n * n)) {
            noise.color_into(w, o).unwrap();
        }
        let z: Vec<f32> = white.iter().map(|&v| v as f32).collect();
        let device = Default::default();
        let got = noise.color_tensor(Tensor::<NdArray<f32>, 4>::from_data(TensorData::new(z, [2, 1, n, n]), &device));
        for (k, (g, w)) in got.into_data().to_vec::<f32>().unwrap().iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= COLOR_F32_TOL, "[{k}]: backend {g}, reference {w}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(SmoothNoise::new(1, 0.05).is_err());
        assert!(SmoothNoise::new(8, 0.0).is_err());
        assert!(SmoothNoise::new(8, f64::NAN).is_err());
        let noise = SmoothNoise::new(8, 0.05).unwrap();
        let mut out = vec![0.0f32; 63];
        assert!(matches!(
            noise.sample_into(&mut step_rng(0, 0), &mut out),
            Err(Error::ShapeMismatch { expected: 64, got: 63, .. })
        ));
        assert!(host_batch_to_tensor::<NdArray<f32>>(vec![0.0; 10], [1, 1, 3], &Default::default()).is_err());
    }
}
