//! `ddis export` and `ddis inspect`: the device artifact, written and read.

use anyhow::{Context, Result};

use super::{read_artifact, shipped_run};
use crate::cli::{ExportArgs, InspectArgs};
use crate::eval::Physics;
use crate::train::backend::Cpu;

/// `ddis export`: the device artifact from a prior run and a forward model.
pub(crate) fn export_cmd(args: &ExportArgs) -> Result<()> {
    let (daps, _) = args.sampler_args.configs(true)?;
    anyhow::ensure!(args.force || !args.out.exists(), "{} exists; pass --force to replace it", args.out.display());
    let device = Default::default();
    let prior_dir = match &args.prior {
        Some(p) => p.clone(),
        None => shipped_run(args.pde, 32, "prior")?,
    };
    let (prior, cfg) = crate::train::diffusion::load_diffusion::<Cpu>(&prior_dir, &device)?;
    let prior = prior.into_fno().with_context(|| format!("cannot export {}", prior_dir.display()))?;
    let problem = cfg.data_meta.pde.kind;
    let operator_dir = match (&args.operator, args.physics) {
        (Some(o), _) => Some(o.clone()),
        (None, Physics::Surrogate) => {
            Some(shipped_run(problem, cfg.data_meta.res, "op-p100").context("--physics surrogate needs --operator")?)
        }
        (None, Physics::Solver) => None,
    };
    let operator = match &operator_dir {
        Some(dir) => {
            let (operator, op_cfg) = crate::train::operator::load_operator_run::<Cpu>(dir, &device)?;
            crate::eval::ensure_same_problem(
                ("the prior", &prior_dir, &cfg.data_meta),
                ("the surrogate", dir, &op_cfg.data_meta),
            )?;
            Some(operator)
        }
        None => None,
    };
    // The readings' range (and spread) over the training data, recorded in
    // the artifact so hosts and the device can check readings against it.
    let stats = match crate::data::solution_stats(std::path::Path::new(&cfg.data)) {
        Ok(s) => s,
        Err(e) => {
            let Some(op) = &operator else {
                return Err(e.context(format!(
                    "the prior's dataset {} is needed for the readings' range (or pass --operator)",
                    cfg.data
                )));
            };
            let nz = &op.normalization;
            crate::output::warn(format_args!(
                "cannot read the prior's dataset {} ({e:#}); the readings' range is taken as the surrogate's u mean +- 6 std",
                cfg.data
            ));
            crate::data::SolutionStats {
                spread: nz.u_std,
                min: nz.u_mean - 6.0 * nz.u_std,
                max: nz.u_mean + 6.0 * nz.u_std,
            }
        }
    };
    let forward = match (args.physics, &operator) {
        (Physics::Surrogate, Some(op)) => crate::export::ForwardModel::Surrogate(op),
        (Physics::Surrogate, None) => anyhow::bail!("--physics surrogate needs --operator"),
        (Physics::Solver, op) => {
            let u_floor = op.as_ref().map(|op| op.normalization.u_std).unwrap_or(stats.spread);
            crate::export::ForwardModel::Solver { pde: cfg.data_meta.pde, u_floor }
        }
    };
    let step = crate::export::DeviceStep {
        step: args.step,
        max_sensors: args.max_sensors,
        r_scale: args.r_scale,
        noise_width: args.noise_width,
    };
    let n = args.res.unwrap_or(cfg.data_meta.res);
    let about = crate::export::About {
        problem: problem.name(),
        data: crate::export::data_params(&cfg.data_meta.pde, (stats.min, stats.max)),
    };
    let bytes = crate::export::build_artifact_with(&prior, forward, &daps, &step, &about, n, args.quant)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::atomic::write(&args.out, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    print!("{}", crate::export::inspect(&bytes)?);
    for w in crate::export::budget_warnings(&bytes)? {
        crate::output::warn(w);
    }
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}

/// `ddis inspect`.
pub(crate) fn inspect(args: &InspectArgs) -> Result<()> {
    let bytes = read_artifact(&args.artifact)?;
    print!("{}", crate::export::inspect(&bytes)?);
    Ok(())
}
