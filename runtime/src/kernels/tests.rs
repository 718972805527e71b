//! Tests of `kernels` (split out to keep the module on one job).

use super::*;
use crate::testutil::{Lcg, assert_close, f32_bytes, quantize_rows};

/// f32 round-off of dot products of a few dozen O(1) terms, relative to
/// the largest reference value.
pub(crate) const DOT_TOL: f64 = 1e-5;

fn reference_matvec(w: &Matrix, x: &[f32]) -> Vec<f64> {
    (0..w.rows()).map(|r| (0..w.cols()).map(|c| f64::from(w.at(r, c)) * f64::from(x[c])).sum()).collect()
}

fn matrices(rng: &mut Lcg, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let (q, s) = quantize_rows(&w, rows, cols);
    (f32_bytes(&w), q, f32_bytes(&s))
}

#[test]
fn matvec_fast_matches_reference_f32_and_int8() {
    let mut rng = Lcg::new(1);
    for (rows, cols) in [(1, 1), (16, 3), (7, 33), (64, 16)] {
        let (wf, q, s) = matrices(&mut rng, rows, cols);
        let x: Vec<f32> = (0..cols).map(|_| rng.uniform(-2.0, 2.0)).collect();
        for m in [Matrix::f32(&wf, rows, cols, "w").unwrap(), Matrix::i8(&q, &s, rows, cols, "w").unwrap()] {
            let got: Vec<f32> = (0..rows).map(|r| m.dot_row(r, &x)).collect();
            assert_close(&got, &reference_matvec(&m, &x), DOT_TOL, "matvec");
            // Adjoint: <W x, g> = <x, W^T g>.
            let g: Vec<f32> = (0..rows).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let mut wtg = vec![0.0; cols];
            m.transposed_acc(0, &g, &mut wtg);
            let want: Vec<f64> =
                (0..cols).map(|c| (0..rows).map(|r| f64::from(m.at(r, c)) * f64::from(g[r])).sum()).collect();
            assert_close(&wtg, &want, DOT_TOL, "transposed");
        }
    }
}

/// The unpacked kernels are the packed ones reordered for registers:
/// same sums in the same order, so the same bits (the device's results
/// did not change when the layers switched to them).
#[test]
fn unpacked_kernels_give_the_same_bits() {
    let mut rng = Lcg::new(4);
    // Two stacked blocks of `rows` rows; widths with and without a tail
    // past the 8-wide register blocks.
    for (rows, cols) in [(16, 16), (11, 11), (3, 9), (1, 1)] {
        let (wf, q, s) = matrices(&mut rng, 2 * rows, cols);
        let bias: Vec<f32> = (0..2 * rows).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let bias = f32_bytes(&bias);
        let x: Vec<f32> = (0..cols).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let g: Vec<f32> = (0..rows).map(|_| rng.uniform(-2.0, 2.0)).collect();
        for m in [Matrix::f32(&wf, 2 * rows, cols, "w").unwrap(), Matrix::i8(&q, &s, 2 * rows, cols, "w").unwrap()] {
            let lin = Linear::new(m, &bias, "b").unwrap();
            let (mut wq, mut wt) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
            lin.weight().unpack_rows(rows, &mut wq);
            lin.weight().unpack_rows_transposed(rows, rows, &mut wt);
            let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
            lin.forward_rows(rows, &x, &mut a);
            lin.forward_rows_unpacked(rows, &wt, &x, &mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let (mut a, mut b) = (vec![0.0; cols], vec![7.0; cols]);
            lin.transposed_rows(rows, &g, &mut a);
            lin.transposed_rows_unpacked(rows, &wq, &g, &mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn int8_is_within_half_a_step_of_f32() {
    let mut rng = Lcg::new(2);
    let (rows, cols) = (8, 20);
    let (wf, q, s) = matrices(&mut rng, rows, cols);
    let (mf, mq) = (Matrix::f32(&wf, rows, cols, "w").unwrap(), Matrix::i8(&q, &s, rows, cols, "w").unwrap());
    let scales = F32s::new(&s, rows, "s").unwrap();
    for r in 0..rows {
        for c in 0..cols {
            let step = scales.at(r);
            assert!((mf.at(r, c) - mq.at(r, c)).abs() <= 0.5 * step * 1.0001, "[{r}][{c}]");
        }
    }
}

#[test]
fn complex_rows_match_reference() {
    let mut rng = Lcg::new(3);
    let (rows, k) = (5, 6);
    let (wf, q, s) = matrices(&mut rng, rows, 2 * k);
    let zr: Vec<f32> = (0..k).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let zi: Vec<f32> = (0..k).map(|_| rng.uniform(-1.0, 1.0)).collect();
    for m in [Matrix::f32(&wf, rows, 2 * k, "w").unwrap(), Matrix::i8(&q, &s, rows, 2 * k, "w").unwrap()] {
        for r in 0..rows {
            let (mut wr, mut wi) = (0.0f64, 0.0f64);
            for i in 0..k {
                let (a, b) = (f64::from(m.at(r, i)), f64::from(m.at(r, k + i)));
                wr += f64::from(zr[i]) * a - f64::from(zi[i]) * b;
                wi += f64::from(zr[i]) * b + f64::from(zi[i]) * a;
            }
            let (yr, yi) = m.dot_row_complex(r, &zr, &zi);
            assert_close(&[yr, yi], &[wr, wi], DOT_TOL, "complex row");
            // Adjoint: Re<y, gy> = Re<z, W^H gy> in the real pairing.
            let (gyr, gyi) = (rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0));
            let (mut gzr, mut gzi) = (vec![0.0; k], vec![0.0; k]);
            m.dot_row_complex_adjoint(r, gyr, gyi, &mut gzr, &mut gzi);
            let lhs = f64::from(yr) * f64::from(gyr) + f64::from(yi) * f64::from(gyi);
            let rhs: f64 = (0..k).map(|i| f64::from(zr[i] * gzr[i]) + f64::from(zi[i] * gzi[i])).sum();
            assert!((lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()), "adjoint {lhs} vs {rhs}");
        }
    }
}

#[test]
fn bad_lengths_and_values_are_errors() {
    let w = f32_bytes(&[1.0, 2.0, 3.0]);
    assert!(matches!(Matrix::f32(&w, 2, 2, "w"), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(Matrix::f32(&w, usize::MAX, 2, "w"), Err(Error::Overflow { .. })));
    let nan = f32_bytes(&[1.0, f32::NAN]);
    assert_eq!(Matrix::f32(&nan, 1, 2, "w"), Err(Error::NonFinite { field: "w", index: 1 }));
    let neg = f32_bytes(&[-1.0]);
    assert_eq!(Matrix::i8(&[1, 2], &neg, 1, 2, "w"), Err(Error::InvalidValue { field: "w" }));
}
