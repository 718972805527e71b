//! What `ddis eval` is asked ([`EvalOptions`]) and what it produces per
//! method ([`EvalRow`]): the types shared by the run and the report.

use std::path::PathBuf;

use crate::eval::case::CaseMetrics;
use crate::eval::method::{MethodSpec, Physics};
use crate::metrics;
use crate::pde::PdeKind;
use crate::sample::SampleStats;

/// The split seed `ddis eval` assumes when the exact method runs without a
/// prior run to read it from: the `ddis train --split-seed` default.
pub const DEFAULT_SPLIT_SEED: u64 = 0;

/// `ddis eval` settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// PDE.
    pub pde: PdeKind,
    /// Grid.
    pub res: usize,
    /// Test (or validation) cases, the first ones of the split.
    pub cases: usize,
    /// Sensors per case.
    pub sensors: usize,
    /// Reading noise standard deviation.
    pub noise: f64,
    /// Methods with their settings.
    pub methods: Vec<MethodSpec>,
    /// Paired fractions.
    pub paired: Vec<f64>,
    /// Physics for the decoupled methods.
    pub physics: Physics,
    /// Posterior samples per case.
    pub samples: usize,
    /// Cases per sampler batch.
    pub batch_cases: usize,
    /// Seed of sensors, noise and samplers.
    pub seed: u64,
    /// Use validation cases instead of test cases (for tuning).
    pub validation: bool,
    /// Runs folders, searched in order (the first with a matching run wins).
    pub runs: Vec<PathBuf>,
    /// Replace `out` even when ddis did not write it.
    pub force: bool,
    /// Dataset override.
    pub data: Option<PathBuf>,
    /// Cases with a PNG panel per method.
    pub panels: usize,
    /// Report folder.
    pub out: PathBuf,
    /// Artifact for the `device` method.
    pub artifact: Option<PathBuf>,
    /// Show progress.
    pub progress: bool,
}

/// One row of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalRow {
    /// Method name.
    pub method: String,
    /// Sampler settings.
    pub settings: String,
    /// Paired fraction of the surrogate / joint model.
    pub paired: f64,
    /// Per-case metrics.
    pub cases: Vec<CaseMetrics>,
    /// Sampler wall time per case, seconds.
    pub seconds_per_case: f64,
    /// Sampler counters.
    pub stats: SampleStats,
    /// Joint methods: `||u - solve(a)|| / ||u||` of every posterior sample
    /// (see [`u_channel_consistency`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub u_consistency: Vec<f64>,
}

impl EvalRow {
    pub(crate) fn summary(&self, f: impl Fn(&CaseMetrics) -> f64) -> (f64, f64) {
        metrics::mean_and_stderr(&self.cases.iter().map(f).collect::<Vec<_>>())
    }
}
