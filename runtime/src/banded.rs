//! Direct solves of symmetric positive definite systems without a square
//! root: a banded `L D L^T` factorisation for the PDE operators
//! (`physics.rs`) and a dense one for the small sensor-space systems
//! of the Gauss–Newton step (`gauss_newton.rs`).
//!
//! Band storage: row `p` of an `N x N` matrix with half-bandwidth `m`
//! holds the `m + 1` entries `(p, p - m) .. (p, p)` at `band[p (m + 1) ..]`
//! (entries left of column 0 are ignored and left as they are). The
//! factorisation overwrites the strict lower band with `L` and the diagonal
//! with `D`. A pivot that is not finite and positive is an error, so an
//! indefinite or singular operator (a negative coefficient that slipped
//! through, a resonant shift) can never produce a silent garbage solve.
//!
//! Cost: about `N m^2 / 2` multiply-adds to factor, `2 N m` per solve. Every
//! sum runs in a fixed order, so host and device give the same bits.

use crate::Error;

/// Factorises the band in place (`band.len() == n (m + 1)`, checked by the
/// caller). Row-oriented: for row `p`, `t_q = A_pq - sum_{r<q} t_r L_qr`
/// holds `L_pq D_q` until the row ends.
pub(crate) fn band_factor(band: &mut [f32], n: usize, m: usize) -> Result<(), Error> {
    let w = m + 1;
    for p in 0..n {
        let lo = p.saturating_sub(m);
        // Row p before p's own entries: rows lo..p are final.
        let (done, row) = band.split_at_mut(p * w);
        let row = &mut row[..w];
        for q in lo..p {
            // t_q = A_pq - sum_{r = lo..q} t_r L_qr, both rows in band form
            // (row p from column lo at offset lo + m - p, row q at lo + m - q).
            let rq = &done[q * w + lo + m - q..q * w + m];
            let (ts, tail) = row.split_at_mut(q + m - p);
            let acc = ts[lo + m - p..].iter().zip(rq).fold(tail[0], |acc, (&t, &l)| acc - t * l);
            tail[0] = acc;
        }
        let mut d = row[m];
        for q in lo..p {
            let t = row[q + m - p];
            let l = t / done[q * w + m];
            d -= t * l;
            row[q + m - p] = l;
        }
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::NotPositiveDefinite { row: p });
        }
        row[m] = d;
    }
    Ok(())
}

/// Solves `A x = b` in place with the factor of [`band_factor`].
pub(crate) fn band_solve(band: &[f32], n: usize, m: usize, x: &mut [f32]) {
    let w = m + 1;
    let x = &mut x[..n];
    // L z = b: each row's band against the solved prefix (slices, no
    // per-element bounds checks).
    for (p, row) in band.chunks_exact(w).take(n).enumerate() {
        let lo = p.saturating_sub(m);
        let (done, rest) = x.split_at_mut(p);
        let acc = row[lo + m - p..m].iter().zip(&done[lo..]).fold(rest[0], |acc, (&l, &xq)| acc - l * xq);
        rest[0] = acc;
    }
    // z /= D.
    for (v, row) in x.iter_mut().zip(band.chunks_exact(w)) {
        *v /= row[m];
    }
    // L^T x = z: column sweep from the bottom.
    for p in (0..n).rev() {
        let lo = p.saturating_sub(m);
        let (head, rest) = x.split_at_mut(p);
        let xp = rest[0];
        for (xq, &l) in head[lo..].iter_mut().zip(&band[p * w + lo + m - p..p * w + m]) {
            *xq -= l * xp;
        }
    }
}

/// Factorises a dense symmetric `k x k` matrix (row-major, lower triangle
/// read) in place as `L D L^T`.
pub(crate) fn dense_factor(a: &mut [f32], k: usize) -> Result<(), Error> {
    band_factor_dense(a, k)
}

/// Dense storage is a band with `m = k - 1` laid out row-major with stride
/// `k`; kept separate so the index arithmetic stays obvious.
fn band_factor_dense(a: &mut [f32], k: usize) -> Result<(), Error> {
    for p in 0..k {
        let (done, row) = a.split_at_mut(p * k);
        let row = &mut row[..k];
        for q in 0..p {
            let rq = &done[q * k..q * k + k];
            let mut acc = row[q];
            for r in 0..q {
                acc -= row[r] * rq[r];
            }
            row[q] = acc;
        }
        let mut d = row[p];
        for q in 0..p {
            let t = row[q];
            let l = t / done[q * k + q];
            d -= t * l;
            row[q] = l;
        }
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::NotPositiveDefinite { row: p });
        }
        row[p] = d;
    }
    Ok(())
}

/// Solves with the factor of [`dense_factor`] in place.
pub(crate) fn dense_solve(a: &[f32], k: usize, x: &mut [f32]) {
    for p in 0..k {
        let row = &a[p * k..p * k + p];
        let mut acc = x[p];
        for (l, &xq) in row.iter().zip(x.iter()) {
            acc -= l * xq;
        }
        x[p] = acc;
    }
    for (p, v) in x.iter_mut().enumerate().take(k) {
        *v /= a[p * k + p];
    }
    for p in (0..k).rev() {
        let xp = x[p];
        for (q, &l) in a[p * k..p * k + p].iter().enumerate() {
            x[q] -= l * xp;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reproducible SPD band matrix: a shifted 1-D/2-D-like stencil with
    /// irregular weights.
    fn spd_band(n: usize, m: usize) -> (Vec<f32>, Vec<f64>) {
        let w = m + 1;
        let mut band = vec![0.0f32; n * w];
        let mut dense = vec![0.0f64; n * n];
        for p in 0..n {
            for q in p.saturating_sub(m)..p {
                if (p - q) == 1 || (p - q) == m {
                    let v = -(1.0 + ((p * 7 + q * 3) % 5) as f64 * 0.25);
                    band[p * w + q + m - p] = v as f32;
                    dense[p * n + q] = v as f32 as f64;
                    dense[q * n + p] = v as f32 as f64;
                }
            }
        }
        for p in 0..n {
            let off: f64 = (0..n).filter(|&q| q != p).map(|q| dense[p * n + q].abs()).sum();
            let d = (off + 0.5) as f32;
            band[p * w + m] = d;
            dense[p * n + p] = d as f64;
        }
        (band, dense)
    }

    /// Dense Gaussian elimination in f64 (no pivoting: SPD), the plain
    /// reference of every direct solve in the runtime's tests.
    pub(crate) fn dense_reference(a: &[f64], b: &[f64]) -> Vec<f64> {
        let n = b.len();
        let mut a = a.to_vec();
        let mut x = b.to_vec();
        for c in 0..n {
            for r in c + 1..n {
                let f = a[r * n + c] / a[c * n + c];
                for k in c..n {
                    a[r * n + k] -= f * a[c * n + k];
                }
                x[r] -= f * x[c];
            }
        }
        for c in (0..n).rev() {
            let mut acc = x[c];
            for k in c + 1..n {
                acc -= a[c * n + k] * x[k];
            }
            x[c] = acc / a[c * n + c];
        }
        x
    }

    /// f32 solve against the f64 reference: relative error well below the
    /// f32 condition-number bound for these well-conditioned matrices.
    const SOLVE_TOL: f64 = 1e-5;

    #[test]
    fn band_solve_matches_dense_reference() {
        for (n, m) in [(1, 0), (5, 1), (25, 5), (64, 8)] {
            let (mut band, dense) = spd_band(n, m);
            let b: Vec<f64> = (0..n).map(|i| ((i * 13 % 7) as f64 - 3.0) / 2.0).collect();
            let want = dense_reference(&dense, &b);
            band_factor(&mut band, n, m).unwrap();
            let mut x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            band_solve(&band, n, m, &mut x);
            let err = x.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
            let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
            assert!(err <= SOLVE_TOL * norm, "n={n} m={m}: error {err:e} of {norm:e}");
        }
    }

    #[test]
    fn dense_solve_matches_reference() {
        let k = 12;
        let (band, dense) = spd_band(k, k - 1);
        let mut a = vec![0.0f32; k * k];
        for p in 0..k {
            for q in 0..=p {
                a[p * k + q] = band[p * k + q + (k - 1) - p];
            }
        }
        let b: Vec<f64> = (0..k).map(|i| i as f64 - 4.0).collect();
        let want = dense_reference(&dense, &b);
        dense_factor(&mut a, k).unwrap();
        let mut x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        dense_solve(&a, k, &mut x);
        for (g, w) in x.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= SOLVE_TOL * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    /// A smooth Gram matrix (Gaussian kernel of length `ell` on `k`
    /// scattered points of the unit square, unit diagonal) plus `ridge`,
    /// rounded to f32: the shape of a sensor-space system `r^2 J C J^T +
    /// tau^2 I` with many readings, whose eigenvalues fall to `ridge`.
    fn smooth_gram(k: usize, ell: f64, ridge: f64) -> Vec<f32> {
        let h = |i: usize, m: u64| ((i as u64 + 1).wrapping_mul(m) % 10_007) as f64 / 10_007.0;
        let pts: Vec<(f64, f64)> = (0..k).map(|i| (h(i, 7_919), h(i, 104_729))).collect();
        let mut g = vec![0.0f32; k * k];
        for p in 0..k {
            for q in 0..k {
                let (dx, dy) = (pts[p].0 - pts[q].0, pts[p].1 - pts[q].1);
                let v = (-(dx * dx + dy * dy) / (2.0 * ell * ell)).exp() + if p == q { ridge } else { 0.0 };
                g[p * k + q] = v as f32;
            }
        }
        g
    }

    /// A measurement, not a check: how far the f32 `L D L^T` solve of a
    /// nearly singular sensor-space system is from the f64 solve of the
    /// same (f32-rounded) matrix, by the ridge relative to the unit
    /// diagonal (`tau^2 / (r^2 max diag J C J^T)` in the Gauss–Newton
    /// step). Figures in docs/results.md ("Helmholtz at 64 x 64"); run with
    /// `cargo test -p ddis-runtime --release sensor_space_precision -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sensor_space_precision() {
        for k in [31usize, 100, 500] {
            for ridge in [1e-4, 1e-5, 1e-6, 3e-7, 1e-7] {
                let a = smooth_gram(k, 0.3, ridge);
                let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                let b: Vec<f64> = (0..k).map(|i| ((i * 37 % 11) as f64 - 5.0) / 5.0).collect();
                let want = dense_reference(&a64, &b);
                let mut f = a.clone();
                let outcome = match dense_factor(&mut f, k) {
                    Err(e) => std::format!("{e:?}"),
                    Ok(()) => {
                        let mut x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                        dense_solve(&f, k, &mut x);
                        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|t| t * t).sum::<f64>().sqrt();
                        let res =
                            norm(&mut (0..k).map(|p| (0..k).map(|q| a64[p * k + q] * x[q] as f64).sum::<f64>() - b[p]));
                        let err = norm(&mut x.iter().zip(&want).map(|(&g, &w)| g as f64 - w));
                        std::format!(
                            "relative residual {:.1e}, relative error {:.1e}",
                            res / norm(&mut b.iter().copied()),
                            err / norm(&mut want.iter().copied())
                        )
                    }
                };
                std::println!("K {k:3}, ridge {ridge:.0e}: {outcome}");
            }
        }
    }

    #[test]
    fn indefinite_and_non_finite_are_errors() {
        let mut band = vec![0.0, 1.0, -2.0, 1.0];
        // [[1, -2], [-2, 1]] is indefinite: the second pivot is 1 - 4 < 0.
        assert_eq!(band_factor(&mut band, 2, 1), Err(Error::NotPositiveDefinite { row: 1 }));
        let mut a = vec![f32::NAN];
        assert_eq!(dense_factor(&mut a, 1), Err(Error::NotPositiveDefinite { row: 0 }));
        let mut zero = vec![0.0f32; 4];
        assert_eq!(dense_factor(&mut zero, 2), Err(Error::NotPositiveDefinite { row: 0 }));
    }
}
