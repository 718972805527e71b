//! Per-case figures: the point estimate (thresholded for Darcy), the
//! metrics of one case against its truth and its panel. Knows nothing about
//! samplers or files beyond the one PNG.

use std::path::Path;

use anyhow::Result;

use crate::metrics;
use crate::observe::Observations;
use crate::pde::{PdeConfig, PdeKind};

/// The point estimate of a case: the posterior mean, thresholded to the two
/// phases for Darcy (docs/science.md section 2: the better estimate for
/// two-phase fields).
pub fn point_estimate(pde: &PdeConfig, mean: &[f32]) -> Vec<f32> {
    if pde.kind != PdeKind::Darcy {
        return mean.to_vec();
    }
    let d = &pde.darcy;
    let mid = pde.darcy.phase_midpoint();
    mean.iter().map(|&v| if f64::from(v) >= mid { d.a_high as f32 } else { d.a_low as f32 }).collect()
}

/// Fraction of nodes where the truth lies within `mean +- 2 std`.
pub fn calibration(truth: &[f32], mean: &[f32], std: &[f32]) -> f64 {
    let inside = truth.iter().zip(mean).zip(std).filter(|((t, m), s)| (*t - *m).abs() <= 2.0 * **s).count();
    inside as f64 / truth.len().max(1) as f64
}

/// Metrics of one reconstructed case.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CaseMetrics {
    /// Relative L2 of the point estimate.
    pub rel_l2: f64,
    /// Spectral error, geometric mean over bins.
    pub spectral_geo: f64,
    /// Spectral error, arithmetic mean over bins.
    pub spectral_arith: f64,
    /// Darcy error rate (fraction of nodes in the wrong phase), if Darcy.
    pub error_rate: Option<f64>,
    /// Fraction of nodes with the truth inside mean +- 2 std.
    pub calibration: f64,
}

/// Metrics of one case from its posterior mean and std.
pub fn case_metrics(pde: &PdeConfig, truth: &[f32], mean: &[f32], std: &[f32], n: usize) -> Result<CaseMetrics> {
    let est = point_estimate(pde, mean);
    let (geo, arith) = metrics::spectral_error(&est, truth, n)?;
    Ok(CaseMetrics {
        rel_l2: metrics::rel_l2(&est, truth)?,
        spectral_geo: geo,
        spectral_arith: arith,
        error_rate: (pde.kind == PdeKind::Darcy)
            .then(|| metrics::darcy_error_rate(mean, truth, pde.darcy.phase_midpoint()))
            .transpose()?,
        calibration: calibration(truth, mean, std),
    })
}

/// Writes the panel of one case: truth (if known), sensor readings,
/// posterior mean, std and |error| (if the truth is known), titled, with
/// x/y axes and colour bars; truth and mean share one colour scale (see
/// [`crate::plot::posterior_panels`]).
pub fn write_panel(
    path: &Path,
    n: usize,
    truth: Option<&[f32]>,
    obs: &Observations,
    mean: &[f32],
    std: &[f32],
) -> Result<()> {
    let panels = crate::plot::posterior_panels(n, truth, obs, mean, std)?;
    crate::plot::PanelFigure::new(n, panels)?.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_and_point_estimate_hand_cases() {
        // |t - m| = 0, 1, 2.5, 4 against 2 std = 2: nodes 0, 1 inside (2 exactly counts).
        let truth = [0.0f32, 1.0, 2.5, 4.0];
        let mean = [0.0f32; 4];
        assert_eq!(calibration(&truth, &mean, &[1.0; 4]), 0.5);
        assert_eq!(calibration(&truth, &mean, &[2.0; 4]), 1.0);
        let darcy = PdeConfig::for_kind(PdeKind::Darcy);
        assert_eq!(darcy.darcy.phase_midpoint(), 7.5);
        assert_eq!(point_estimate(&darcy, &[7.49, 7.5, 20.0, -1.0]), vec![3.0, 12.0, 12.0, 3.0]);
        let poisson = PdeConfig::for_kind(PdeKind::Poisson);
        assert_eq!(point_estimate(&poisson, &[7.49, -1.0]), vec![7.49, -1.0]);
    }
}
