//! The evaluation report: `results.md` (the table, the joint models' u-channel
//! consistency, DDIS against the best joint baseline, paired bootstrap
//! comparisons), `results.csv` and `results.json`, each written atomically.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::eval::case::CaseMetrics;
use crate::eval::method::{CONSISTENCY_A_FLOOR, Method};
use crate::eval::options::{EvalOptions, EvalRow};
use crate::metrics;
use crate::pde::PdeKind;

pub(super) fn write_report(opts: &EvalOptions, rows: &[EvalRow], prior: &str, data: &Path) -> Result<()> {
    let darcy = opts.pde == PdeKind::Darcy;
    let mut md = String::new();
    let _ = writeln!(md, "# ddis eval: {} {}x{}\n", opts.pde.name(), opts.res, opts.res);
    let _ = writeln!(
        md,
        "{} {} cases of `{}`, {} sensors, reading noise {}, {} posterior samples per case, physics {}, seed {}; {}.\n",
        opts.cases,
        if opts.validation { "validation" } else { "test" },
        data.display(),
        opts.sensors,
        opts.noise,
        opts.samples,
        format!("{:?}", opts.physics).to_lowercase(),
        opts.seed,
        prior
    );
    let _ = writeln!(
        md,
        "Mean +- standard error over cases. Point estimate: the posterior mean{}. Calibration: fraction of nodes with the truth inside mean +- 2 std.\n",
        if darcy { ", thresholded at 7.5 to the two phases" } else { "" }
    );
    let _ = writeln!(
        md,
        "| method | paired | settings | rel. L2 (%) | spectral err. geo | spectral err. arith |{} calibration | s / case | clamped |",
        if darcy { " error rate (%) |" } else { "" }
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|{}---|---|---|", if darcy { "---|" } else { "" });
    let mut csv = String::from(
        "method,paired,settings,rel_l2,rel_l2_se,spectral_geo,spectral_geo_se,spectral_arith,spectral_arith_se,error_rate,error_rate_se,calibration,seconds_per_case,clamped\n",
    );
    for r in rows {
        let (l2, l2s) = r.summary(|c| c.rel_l2);
        let (g, gs) = r.summary(|c| c.spectral_geo);
        let (a, as_) = r.summary(|c| c.spectral_arith);
        let (e, es) = r.summary(|c| c.error_rate.unwrap_or(f64::NAN));
        let (cal, _) = r.summary(|c| c.calibration);
        let er = if darcy { format!(" {:.2} +- {:.2} |", 100.0 * e, 100.0 * es) } else { String::new() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} +- {:.2} | {:.3} +- {:.3} | {:.3} +- {:.3} |{er} {:.3} | {:.3} | {} |",
            r.method,
            r.paired,
            r.settings,
            100.0 * l2,
            100.0 * l2s,
            g,
            gs,
            a,
            as_,
            cal,
            r.seconds_per_case,
            r.stats.clamped
        );
        let _ = writeln!(
            csv,
            "{},{},\"{}\",{l2},{l2s},{g},{gs},{a},{as_},{},{},{cal},{},{}",
            r.method,
            r.paired,
            r.settings,
            if darcy { e.to_string() } else { String::new() },
            if darcy { es.to_string() } else { String::new() },
            r.seconds_per_case,
            r.stats.clamped
        );
    }
    // DDIS against the best joint baseline, per paired fraction.
    let mut ratios = String::new();
    for &p in &opts.paired {
        let best = |joint: bool, f: &dyn Fn(&EvalRow) -> f64| {
            rows.iter()
                // The device row runs the artifact's own surrogate whatever
                // the paired fraction: it is not a DDIS-at-`p` figure; the
                // exact rows are the reference, not a sampler.
                .filter(|r| {
                    r.paired == p
                        && r.method != Method::Device.name()
                        && !r.method.starts_with(Method::Exact.name())
                        && r.method != Method::Prior.name()
                        && r.method.starts_with("joint") == joint
                })
                .map(f)
                .fold(f64::INFINITY, f64::min)
        };
        let l2 = |r: &EvalRow| r.summary(|c| c.rel_l2).0;
        let es = |r: &EvalRow| r.summary(|c| c.spectral_geo).0;
        let (d_l2, j_l2, d_es, j_es) = (best(false, &l2), best(true, &l2), best(false, &es), best(true, &es));
        if d_l2.is_finite() && j_l2.is_finite() {
            let _ = writeln!(
                ratios,
                "- paired {p}: best DDIS host sampler rel. L2 {:.2} % vs best joint {:.2} % ({:+.0} %); spectral error {:.3} vs {:.3} ({:+.0} %)",
                100.0 * d_l2,
                100.0 * j_l2,
                100.0 * (d_l2 / j_l2 - 1.0),
                d_es,
                j_es,
                100.0 * (d_es / j_es - 1.0)
            );
        }
    }
    if rows.iter().any(|r| r.method.starts_with(Method::Exact.name())) {
        let _ = writeln!(
            md,
            "\n`exact`: the mean of {} draws of the exact Gaussian posterior, the floor a sampler with as many draws can reach; `exact-mean`: the exact posterior mean itself (infinitely many draws).",
            opts.samples
        );
    }
    let consistency: String = rows
        .iter()
        .filter(|r| !r.u_consistency.is_empty())
        .map(|r| {
            let (m, se) = metrics::mean_and_stderr(&r.u_consistency);
            format!("| {} | {} | {} | {:.2} +- {:.2} |\n", r.method, r.paired, r.settings, 100.0 * m, 100.0 * se)
        })
        .collect();
    if !consistency.is_empty() {
        let _ = writeln!(
            md,
            "\n## Joint models: consistency of the sampled `u` channel\n\n`||u - solve(a)|| / ||u||` over every posterior sample, `a` and `u` both the joint model's own (Darcy: `a` floored at {CONSISTENCY_A_FLOOR} x the low phase before the solve). The decoupled methods have no such error: their `u` is the physics of their `a`.\n\n| method | paired | settings | u-channel residual (%) |\n|---|---|---|---|\n{consistency}"
        );
    }
    if !ratios.is_empty() {
        let _ = writeln!(md, "\n## DDIS against the best joint baseline\n\n{ratios}");
    }
    md.push_str(&paired_comparisons(rows, darcy, opts.seed));
    write_atomic(&opts.out.join("results.md"), md.as_bytes())?;
    write_atomic(&opts.out.join("results.csv"), csv.as_bytes())?;
    write_atomic(&opts.out.join("results.json"), serde_json::to_string_pretty(rows)?.as_bytes())?;
    Ok(())
}

/// One per-case figure of a [`CaseMetrics`].
type CaseMetric = fn(&CaseMetrics) -> f64;

/// Every decoupled method against every joint baseline of the same paired
/// fraction (the device and exact rows against the joint rows of every
/// fraction): paired bootstrap intervals over the shared cases for the
/// difference and the ratio of the mean errors (`crate::stats`). Empty
/// when there is nothing to pair.
fn paired_comparisons(rows: &[EvalRow], darcy: bool, seed: u64) -> String {
    let is_joint = |r: &EvalRow| r.method.starts_with("joint");
    let fraction_free = |r: &EvalRow| r.method == Method::Device.name() || r.method.starts_with(Method::Exact.name());
    let mut metrics: Vec<(&str, CaseMetric)> = vec![("rel. L2", |c| c.rel_l2)];
    if darcy {
        metrics.push(("error rate", |c| c.error_rate.unwrap_or(f64::NAN)));
    }
    let mut out = String::new();
    for d in rows.iter().filter(|r| !is_joint(r)) {
        for j in rows.iter().filter(|r| is_joint(r) && (fraction_free(d) || r.paired == d.paired)) {
            for (name, f) in &metrics {
                let a: Vec<f64> = d.cases.iter().map(f).collect();
                let b: Vec<f64> = j.cases.iter().map(f).collect();
                let Some(c) = crate::stats::paired_bootstrap(&a, &b, seed) else { continue };
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {name} | {:.2} | {:.2} | {:+.2} [{:+.2}, {:+.2}]{} | {:.3} [{:.3}, {:.3}] |",
                    j.paired,
                    d.method,
                    j.method,
                    100.0 * mean(&a),
                    100.0 * mean(&b),
                    100.0 * c.diff,
                    100.0 * c.diff_ci.0,
                    100.0 * c.diff_ci.1,
                    if c.significant() { " *" } else { "" },
                    c.ratio,
                    c.ratio_ci.0,
                    c.ratio_ci.1
                );
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "\n## Paired comparisons\n\nEach decoupled method against each joint baseline on the same cases and sensors: the difference of the mean errors (percentage points) and their ratio, with {:.0} % percentile bootstrap intervals over cases ({} resamples, seed {seed}); `*`: the difference's interval excludes 0.\n\n| paired | method | baseline | metric | method (%) | baseline (%) | difference [95 % CI] | ratio [95 % CI] |\n|---|---|---|---|---|---|---|---|\n{out}",
        100.0 * crate::stats::COVERAGE,
        crate::stats::BOOTSTRAP_RESAMPLES
    )
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
