//! Paired comparisons of two methods evaluated on the same cases: the
//! difference and the ratio of their mean errors with percentile bootstrap
//! intervals that resample *cases* (both methods keep their pairing), as
//! a reviewer expects when every method shares the cases and sensors.
//!
//! Plain slices in, plain numbers out; no knowledge of samplers or files.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 4000;
/// Two-sided coverage of the intervals.
pub const COVERAGE: f64 = 0.95;

/// `mean(a) - mean(b)` and `mean(a) / mean(b)` over paired cases, each with
/// a percentile bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PairedComparison {
    /// Cases compared.
    pub cases: usize,
    /// `mean(a) - mean(b)`.
    pub diff: f64,
    /// Lower and upper bounds of its interval.
    pub diff_ci: (f64, f64),
    /// `mean(a) / mean(b)`.
    pub ratio: f64,
    /// Lower and upper bounds of its interval.
    pub ratio_ci: (f64, f64),
}

impl PairedComparison {
    /// True when the difference's interval excludes 0.
    pub fn significant(&self) -> bool {
        self.diff_ci.0 > 0.0 || self.diff_ci.1 < 0.0
    }
}

/// Compares `a[k]` with `b[k]` (the same case `k`). `None` when the slices
/// differ in length, hold fewer than two cases or a non-finite value, or
/// `b` has mean 0 (no ratio).
pub fn paired_bootstrap(a: &[f64], b: &[f64], seed: u64) -> Option<PairedComparison> {
    let n = a.len();
    if n < 2 || b.len() != n || !a.iter().chain(b).all(|v| v.is_finite()) {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    if mb == 0.0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut diffs = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut ratios = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let (mut sa, mut sb) = (0.0, 0.0);
        for _ in 0..n {
            let k = rng.random_range(0..n);
            sa += a[k];
            sb += b[k];
        }
        diffs.push((sa - sb) / n as f64);
        if sb != 0.0 {
            ratios.push(sa / sb);
        }
    }
    Some(PairedComparison {
        cases: n,
        diff: ma - mb,
        diff_ci: percentile_interval(&mut diffs),
        ratio: ma / mb,
        ratio_ci: percentile_interval(&mut ratios),
    })
}

/// The central [`COVERAGE`] interval of `v` (sorted in place).
fn percentile_interval(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - COVERAGE) / 2.0;
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    (at(tail), at(1.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn a_constant_shift_is_found_exactly_with_a_zero_width_interval() {
        // Case-to-case spread is shared: the paired difference has none.
        let b: Vec<f64> = (0..50).map(|k| 0.2 + 0.01 * (k % 7) as f64).collect();
        let a: Vec<f64> = b.iter().map(|v| v + 0.03).collect();
        let c = paired_bootstrap(&a, &b, 1).unwrap();
        assert!((c.diff - 0.03).abs() < 1e-12);
        assert!((c.diff_ci.0 - 0.03).abs() < 1e-12 && (c.diff_ci.1 - 0.03).abs() < 1e-12, "{c:?}");
        assert!(c.significant());
        assert!(c.ratio_ci.0 <= c.ratio && c.ratio <= c.ratio_ci.1);
    }

    /// Of 200 repeated experiments with a true difference of 0.01, the
    /// intervals must cover it about 95 % of the time; 0.85 leaves room for
    /// the bootstrap's known under-coverage at 40 cases.
    const MIN_OBSERVED_COVERAGE: f64 = 0.85;

    #[test]
    fn intervals_cover_the_true_difference_at_about_their_level() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let case = Normal::new(0.3, 0.1).unwrap();
        let noise = Normal::new(0.0, 0.02).unwrap();
        let trials = 200;
        let mut covered = 0;
        for t in 0..trials {
            let base: Vec<f64> = (0..40).map(|_| case.sample(&mut rng)).collect();
            let a: Vec<f64> = base.iter().map(|v| v + 0.01 + noise.sample(&mut rng)).collect();
            let b: Vec<f64> = base.iter().map(|v| v + noise.sample(&mut rng)).collect();
            let c = paired_bootstrap(&a, &b, t).unwrap();
            if c.diff_ci.0 <= 0.01 && 0.01 <= c.diff_ci.1 {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!(rate >= MIN_OBSERVED_COVERAGE, "coverage {rate}");
        assert!(rate < 1.0, "intervals that always cover are too wide: {rate}");
    }

    #[test]
    fn unusable_inputs_give_none() {
        assert!(paired_bootstrap(&[1.0], &[1.0], 0).is_none());
        assert!(paired_bootstrap(&[1.0, 2.0], &[1.0], 0).is_none());
        assert!(paired_bootstrap(&[1.0, f64::NAN], &[1.0, 2.0], 0).is_none());
        assert!(paired_bootstrap(&[1.0, 2.0], &[0.0, 0.0], 0).is_none());
    }
}
