//! Evaluation metrics of docs/science.md section 5 on plain row-major slices.
//!
//! Inputs are f32 fields as the models produce them; all arithmetic is f64.
//! This module scores fields and aggregates scores; it knows nothing about
//! models, samplers or file formats.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use crate::error::Error;

/// Added to the ground-truth power of each bin in [`spectral_error`], as in
/// the published metric, so that empty high-frequency bins do not divide by 0.
pub const SPECTRAL_EPS: f64 = 1e-10;

/// Threshold between the two Darcy phases (`a` is 3 or 12; docs/science.md
/// section 4): the midpoint 7.5.
pub const DARCY_THRESHOLD: f64 = 7.5;

fn check_same_len(pred: &[f32], gt: &[f32]) -> Result<(), Error> {
    if pred.len() != gt.len() {
        return Err(Error::ShapeMismatch { field: "pred", expected: gt.len(), got: pred.len() });
    }
    Ok(())
}

fn check_square(field: &[f32], n: usize, name: &'static str) -> Result<(), Error> {
    let expected = n.saturating_mul(n);
    if field.len() != expected {
        return Err(Error::ShapeMismatch { field: name, expected, got: field.len() });
    }
    Ok(())
}

/// Relative L2 error `||pred - gt|| / ||gt||` of one sample.
///
/// A zero `gt` gives 0 when `pred` is zero too and `+inf` otherwise, so a
/// degenerate case is visible in an average instead of turning it into NaN.
pub fn rel_l2(pred: &[f32], gt: &[f32]) -> Result<f64, Error> {
    check_same_len(pred, gt)?;
    let (mut diff2, mut gt2) = (0.0f64, 0.0f64);
    for (&p, &g) in pred.iter().zip(gt) {
        let d = f64::from(p) - f64::from(g);
        diff2 += d * d;
        gt2 += f64::from(g) * f64::from(g);
    }
    Ok(match (diff2 == 0.0, gt2 == 0.0) {
        (true, _) => 0.0,
        (false, true) => f64::INFINITY,
        (false, false) => (diff2 / gt2).sqrt(),
    })
}

/// Radially averaged power spectrum of an `n x n` field, in `n/2` bins.
///
/// `P(k)` is the mean of `|FFT2(field)|^2` (unnormalised forward DFT, as
/// numpy's default) over the integer frequency pairs `(ky, kx)`, each in
/// `[-n/2, n/2)`, whose radius `|k| = sqrt(kx^2 + ky^2)` falls in bin
/// `floor(|k|)`. Bin 0 holds only the mean (DC) mode. Frequencies with
/// `|k| >= n/2` (the corners of the square) are outside every bin, and an
/// empty bin reports 0.
pub fn radial_power_spectrum(field: &[f32], n: usize) -> Result<Vec<f64>, Error> {
    check_square(field, n, "field")?;
    let nbins = n / 2;
    if nbins == 0 {
        return Ok(Vec::new());
    }
    let mut data: Vec<Complex<f64>> = field.iter().map(|&v| Complex::new(f64::from(v), 0.0)).collect();
    fft2_in_place(&mut data, n);

    let mut sum = vec![0.0f64; nbins];
    let mut count = vec![0usize; nbins];
    for i in 0..n {
        let ky = signed_freq(i, n);
        for j in 0..n {
            let kx = signed_freq(j, n);
            let radius = ((kx * kx + ky * ky) as f64).sqrt();
            // floor(radius) < nbins <=> radius < nbins; the cast truncates a
            // non-negative value, i.e. floors it.
            let bin = radius as usize;
            if bin < nbins {
                sum[bin] += data[i * n + j].norm_sqr();
                count[bin] += 1;
            }
        }
    }
    Ok(sum.iter().zip(&count).map(|(&s, &c)| if c == 0 { 0.0 } else { s / c as f64 }).collect())
}

/// The integer frequency of DFT index `i` of `n`, in `[-n/2, n/2)` (numpy's
/// `fftfreq(n) * n`).
fn signed_freq(i: usize, n: usize) -> i64 {
    let (i, n) = (i as i64, n as i64);
    if i < n - n / 2 { i } else { i - n }
}

/// Forward 2-D DFT of a row-major `n x n` array: rows, then columns.
fn fft2_in_place(data: &mut [Complex<f64>], n: usize) {
    let fft = FftPlanner::<f64>::new().plan_fft_forward(n);
    // Rows are contiguous; rustfft transforms every length-n chunk.
    fft.process(data);
    let mut column = vec![Complex::new(0.0, 0.0); n];
    for j in 0..n {
        for i in 0..n {
            column[i] = data[i * n + j];
        }
        fft.process(&mut column);
        for i in 0..n {
            data[i * n + j] = column[i];
        }
    }
}

/// Spectral error of `pred` against `gt` (both `n x n`): per-bin
/// `|P_pred(k) - P_gt(k)| / (P_gt(k) + 1e-10)` over the bins `k >= 1` of
/// [`radial_power_spectrum`], returned as `(geometric mean, arithmetic mean)`.
///
/// The published `Es` is believed to be the geometric mean (docs/science.md
/// section 5). A bin with zero error makes the geometric mean 0; with fewer
/// than 4 nodes per side there is no bin `k >= 1` and both means are NaN.
pub fn spectral_error(pred: &[f32], gt: &[f32], n: usize) -> Result<(f64, f64), Error> {
    check_same_len(pred, gt)?;
    Ok(spectrum_error(&radial_power_spectrum(pred, n)?, &radial_power_spectrum(gt, n)?))
}

/// The per-bin error of [`spectral_error`] on spectra already computed (or
/// averaged over samples): `(geometric mean, arithmetic mean)` over bins
/// `k >= 1`; NaN for both when there is no such bin.
pub fn spectrum_error(p_pred: &[f64], p_gt: &[f64]) -> (f64, f64) {
    let errors: Vec<f64> = p_pred.iter().zip(p_gt).skip(1).map(|(&p, &g)| (p - g).abs() / (g + SPECTRAL_EPS)).collect();
    if errors.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = errors.len() as f64;
    let geometric = (errors.iter().map(|e| e.ln()).sum::<f64>() / m).exp();
    let arithmetic = errors.iter().sum::<f64>() / m;
    (geometric, arithmetic)
}

/// Darcy error rate: the fraction of nodes whose phase differs after
/// thresholding both fields (`>= threshold` is the high phase; docs/science.md
/// uses [`DARCY_THRESHOLD`]). An empty field has rate 0.
pub fn darcy_error_rate(pred: &[f32], gt: &[f32], threshold: f64) -> Result<f64, Error> {
    check_same_len(pred, gt)?;
    if gt.is_empty() {
        return Ok(0.0);
    }
    let wrong =
        pred.iter().zip(gt).filter(|&(&p, &g)| (f64::from(p) >= threshold) != (f64::from(g) >= threshold)).count();
    Ok(wrong as f64 / gt.len() as f64)
}

/// Fraction of nodes at or above `threshold` (the high phase of a two-phase
/// field); 0 for an empty field. Used to check that generated Darcy
/// coefficients have the phase balance of the data.
pub fn two_phase_fraction(field: &[f32], threshold: f64) -> f64 {
    if field.is_empty() {
        return 0.0;
    }
    field.iter().filter(|&&v| f64::from(v) >= threshold).count() as f64 / field.len() as f64
}

/// Mean and standard error of the mean (`s / sqrt(m)`, `s` the sample
/// standard deviation with `m - 1` in the denominator) of per-sample scores.
///
/// Empty input gives `(NaN, NaN)`; one value gives a NaN standard error,
/// because a single sample says nothing about the spread.
pub fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let m = values.len();
    if m == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / m as f64;
    if m == 1 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (m - 1) as f64;
    (mean, (var / m as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cos(2 pi (kx x + ky y))` sampled on `n x n` periodic nodes `x = j/n`,
    /// `y = i/n`; a test helper whose power sits at `|(kx, ky)|` exactly.
    fn periodic_cosine(n: usize, kx: f64, ky: f64) -> Vec<f32> {
        let mut f = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                let phase = 2.0 * std::f64::consts::PI * (kx * j as f64 + ky * i as f64) / n as f64;
                f[i * n + j] = phase.cos() as f32;
            }
        }
        f
    }

    /// Relative + absolute tolerance check with a message that shows both.
    fn assert_close(got: f64, expected: f64, rel: f64, what: &str) {
        let tol = rel * expected.abs().max(1.0);
        assert!((got - expected).abs() <= tol, "{what}: got {got}, expected {expected} (tol {tol})");
    }

    #[test]
    fn rel_l2_hand_cases() {
        let gt = [1.0f32, -2.0, 3.0, 0.5];
        let twice: Vec<f32> = gt.iter().map(|v| 2.0 * v).collect();
        assert_close(rel_l2(&twice, &gt).unwrap(), 1.0, 1e-12, "rel_l2(2 gt, gt)");
        assert_eq!(rel_l2(&gt, &gt).unwrap(), 0.0);
        // ||(0, 0) - (3, 4)|| / ||(3, 4)|| = 1; ||(3, 0) - (3, 4)|| / 5 = 0.8.
        assert_close(rel_l2(&[3.0, 0.0], &[3.0, 4.0]).unwrap(), 0.8, 1e-12, "rel_l2 3-4-5");
        assert_eq!(rel_l2(&[1.0], &[0.0]).unwrap(), f64::INFINITY);
        assert!(matches!(rel_l2(&[1.0], &gt), Err(Error::ShapeMismatch { expected: 4, got: 1, .. })));
    }

    #[test]
    fn constant_field_has_all_power_in_bin_zero() {
        let n = 8;
        let p = radial_power_spectrum(&vec![2.0f32; n * n], n).unwrap();
        assert_eq!(p.len(), n / 2);
        // DC coefficient = sum = 2 * 64 = 128; power 128^2.
        assert_close(p[0], 128.0 * 128.0, 1e-12, "P(0)");
        for (k, &v) in p.iter().enumerate().skip(1) {
            assert!(v.abs() < 1e-9, "bin {k} should be empty, got {v}");
        }
    }

    #[test]
    fn cosine_puts_power_in_its_bin() {
        let n = 16;
        // cos(2 pi 3 x): DFT coefficients n^2/2 at (0, +-3), i.e. radius 3.
        // Bin 3 holds radii [3, 4): (0,+-3), (+-3,0), (+-1,+-3), (+-3,+-1),
        // (+-2,+-3), (+-3,+-2) -> 4 + 16 = 20 frequency pairs.
        let p = radial_power_spectrum(&periodic_cosine(n, 3.0, 0.0), n).unwrap();
        let amp = (n * n) as f64 / 2.0;
        let expected_bin3 = 2.0 * amp * amp / 20.0;
        for (k, &v) in p.iter().enumerate() {
            if k == 3 {
                // The field itself is f32: relative error ~1e-7.
                assert_close(v, expected_bin3, 1e-6, "P(3)");
            } else {
                assert!(v.abs() < 1e-6 * expected_bin3, "bin {k} should be empty, got {v}");
            }
        }
        // A diagonal wave (2, 2) has radius 2.83 -> bin 2.
        let p = radial_power_spectrum(&periodic_cosine(n, 2.0, 2.0), n).unwrap();
        let argmax = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
        assert_eq!(argmax, Some(2));
    }

    #[test]
    fn spectral_error_hand_cases() {
        let n = 8;
        let gt = periodic_cosine(n, 1.0, 0.0);
        let (geo, arith) = spectral_error(&gt, &gt, n).unwrap();
        assert_eq!((geo, arith), (0.0, 0.0));
        // Doubling the field quadruples every bin's power: error 3 in bins with
        // power, and ~0 in the empty ones (round-off power far below the
        // 1e-10 floor), which drags the geometric mean towards 0.
        let twice: Vec<f32> = gt.iter().map(|v| 2.0 * v).collect();
        let (geo, arith) = spectral_error(&twice, &gt, n).unwrap();
        assert!(geo < 1e-6, "geometric mean with empty bins: {geo}");
        // Only bin 1 of bins 1..3 has power: arithmetic mean 3 / 3 = 1, up to
        // the f32 round-off power (~1e-15) of the empty bins against 1e-10.
        assert_close(arith, 1.0, 1e-3, "arithmetic spectral error");
        // A field with power in every bin: doubling gives geometric mean 3.
        let rich: Vec<f32> = (0..n * n).map(|k| ((k * 7919) % 13) as f32 - 6.0).collect();
        let rich2: Vec<f32> = rich.iter().map(|v| 2.0 * v).collect();
        let (geo, arith) = spectral_error(&rich2, &rich, n).unwrap();
        assert_close(geo, 3.0, 1e-9, "geometric spectral error");
        assert_close(arith, 3.0, 1e-9, "arithmetic spectral error");
        assert!(spectral_error(&rich, &rich, n + 1).is_err());
    }

    #[test]
    fn darcy_error_rate_two_by_two() {
        let gt = [12.0f32, 3.0, 12.0, 3.0];
        // Node 1 (3 -> 8) and node 2 (12 -> 7) cross the threshold 7.5.
        let pred = [11.0f32, 8.0, 7.0, 3.5];
        assert_close(darcy_error_rate(&pred, &gt, DARCY_THRESHOLD).unwrap(), 0.5, 1e-12, "error rate");
        assert_eq!(darcy_error_rate(&gt, &gt, DARCY_THRESHOLD).unwrap(), 0.0);
        assert!(darcy_error_rate(&pred[..3], &gt, DARCY_THRESHOLD).is_err());
    }

    #[test]
    fn two_phase_fraction_counts_high_phase() {
        assert_close(two_phase_fraction(&[12.0, 3.0, 12.0, 7.5], DARCY_THRESHOLD), 0.75, 1e-12, "fraction");
        assert_eq!(two_phase_fraction(&[], DARCY_THRESHOLD), 0.0);
    }

    #[test]
    fn mean_and_stderr_hand_case() {
        // mean 2.5, sample variance 5/3, stderr sqrt(5/3 / 4).
        let (m, se) = mean_and_stderr(&[1.0, 2.0, 3.0, 4.0]);
        assert_close(m, 2.5, 1e-12, "mean");
        assert_close(se, (5.0f64 / 12.0).sqrt(), 1e-12, "stderr");
        let (m, se) = mean_and_stderr(&[7.0]);
        assert_eq!(m, 7.0);
        assert!(se.is_nan());
        assert!(mean_and_stderr(&[]).0.is_nan());
    }
}
