//! Finding trained runs: under `./runs`, then the shipped `models/host`
//! ([`find_runs_in`]), one per (kind, PDE, grid, paired fraction)
//! ([`pick_run`]), and refusing two models made for different problems
//! ([`ensure_same_problem`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::pde::PdeKind;
use crate::train::run::RunDir;

/// Refuses two models (or a model and a dataset) made for different
/// problems: another PDE, other Darcy phases or another Helmholtz `k`.
/// Each side is `(what, path, its dataset description)`; the error names
/// both and what differs.
pub fn ensure_same_problem(
    a: (&str, &Path, &crate::data::DatasetMeta),
    b: (&str, &Path, &crate::data::DatasetMeta),
) -> Result<()> {
    let (pa, pb) = (&a.2.pde, &b.2.pde);
    let differs = if pa.kind != pb.kind {
        Some(format!("{} fields vs {} fields", pa.kind, pb.kind))
    } else if pa.kind == PdeKind::Darcy && pa.darcy != pb.darcy {
        Some(format!(
            "Darcy phases {}/{} (threshold {}) vs {}/{} (threshold {})",
            pa.darcy.a_low, pa.darcy.a_high, pa.darcy.threshold, pb.darcy.a_low, pb.darcy.a_high, pb.darcy.threshold
        ))
    } else if pa.kind == PdeKind::Helmholtz && pa.helmholtz_k != pb.helmholtz_k {
        Some(format!("Helmholtz k = {} vs k = {}", pa.helmholtz_k, pb.helmholtz_k))
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some(what) => bail!(
            "{} ({}) and {} ({}) were made for different problems: {what}; use models trained for one problem",
            a.0,
            a.1.display(),
            b.0,
            b.1.display()
        ),
    }
}

/// A run found under `--runs`.
#[derive(Clone, Debug)]
pub struct FoundRun {
    /// Its directory.
    pub path: PathBuf,
    /// `prior`, `joint` or `operator`.
    pub kind: String,
    /// PDE name.
    pub pde: String,
    /// Grid.
    pub res: usize,
    /// Paired fraction it was trained with.
    pub paired_fraction: f64,
    /// Its dataset directory.
    pub data: String,
    /// Index of the runs folder it was found in (earlier folders win).
    pub rank: usize,
}

/// The runs of every folder in `roots` that exists, in order; a folder
/// named first wins when two hold a run for the same slot. None of them
/// existing is an error naming them.
pub fn find_runs_in(roots: &[PathBuf]) -> Result<Vec<FoundRun>> {
    let mut out = vec![];
    for (rank, root) in roots.iter().enumerate().filter(|(_, r)| r.is_dir()) {
        out.extend(find_runs(root)?.into_iter().map(|r| FoundRun { rank, ..r }));
    }
    if out.is_empty() && !roots.iter().any(|r| r.is_dir()) {
        bail!(
            "none of the runs folders exists: {}",
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(out)
}

/// Every run directory directly under `root` with a readable config and a
/// trained model.
pub fn find_runs(root: &Path) -> Result<Vec<FoundRun>> {
    let mut out = vec![];
    let entries = std::fs::read_dir(root).with_context(|| format!("cannot read the runs folder {}", root.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        if !path.join("model.bin").is_file() {
            continue;
        }
        let Ok(cfg) = RunDir::read_config(&path) else { continue };
        let get = |k: &str| cfg.get(k).cloned().unwrap_or_default();
        out.push(FoundRun {
            kind: get("kind").as_str().unwrap_or_default().to_string(),
            pde: cfg.pointer("/data_meta/pde/kind").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            res: cfg.pointer("/data_meta/res").and_then(|v| v.as_u64()).unwrap_or_default() as usize,
            paired_fraction: get("paired_fraction").as_f64().unwrap_or(f64::NAN),
            data: get("data").as_str().unwrap_or_default().to_string(),
            rank: 0,
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The one run of `kind` for this PDE and grid (and paired fraction, for
/// operator and joint runs); an error lists the candidates otherwise.
pub fn pick_run(runs: &[FoundRun], kind: &str, pde: &str, res: usize, paired: Option<f64>) -> Result<PathBuf> {
    let mut hits: Vec<&FoundRun> = runs
        .iter()
        .filter(|r| r.kind == kind && r.pde == pde && r.res == res)
        .filter(|r| paired.is_none_or(|p| (r.paired_fraction - p).abs() < 1e-9))
        .collect();
    if let Some(first) = hits.iter().map(|r| r.rank).min() {
        hits.retain(|r| r.rank == first);
    }
    let what = match paired {
        Some(p) => format!("{kind} run for {pde} {res}x{res} with paired fraction {p}"),
        None => format!("{kind} run for {pde} {res}x{res}"),
    };
    match hits.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => bail!("no {what} under the runs folder; train one (`ddis train {kind} ...`) or pass its directory"),
        many => bail!(
            "several {what}: {}; pass --runs with a folder that holds only the runs to evaluate",
            many.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lookup_is_unambiguous_or_an_error() {
        let run = |path: &str, kind: &str, paired: f64| FoundRun {
            path: PathBuf::from(path),
            kind: kind.into(),
            pde: "darcy".into(),
            res: 32,
            paired_fraction: paired,
            data: String::new(),
            rank: 0,
        };
        let runs = vec![run("p", "prior", 1.0), run("o1", "operator", 1.0), run("o2", "operator", 0.01)];
        // A run in an earlier folder shadows one for the same slot in a
        // later folder (your runs/ before the shipped models).
        let shipped = FoundRun { rank: 1, ..run("shipped-p", "prior", 1.0) };
        let both = vec![shipped.clone(), runs[0].clone()];
        assert_eq!(pick_run(&both, "prior", "darcy", 32, None).unwrap(), PathBuf::from("p"));
        assert_eq!(pick_run(&[shipped], "prior", "darcy", 32, None).unwrap(), PathBuf::from("shipped-p"));
        assert_eq!(pick_run(&runs, "operator", "darcy", 32, Some(0.01)).unwrap(), PathBuf::from("o2"));
        assert_eq!(pick_run(&runs, "prior", "darcy", 32, None).unwrap(), PathBuf::from("p"));
        let e = pick_run(&runs, "operator", "darcy", 32, None).unwrap_err().to_string();
        assert!(e.contains("several") && e.contains("o1") && e.contains("o2"), "{e}");
        let e = pick_run(&runs, "joint", "darcy", 32, Some(1.0)).unwrap_err().to_string();
        assert!(e.contains("no joint run"), "{e}");
        assert!(pick_run(&runs, "prior", "poisson", 32, None).is_err());
    }
}
