//! What each `ddis` command does, one function per command: the glue
//! between the parsed arguments (`crate::cli`) and the library (data,
//! training, samplers, export, the board link). It owns the command-line
//! conventions the library does not know: the shipped models' defaults,
//! staged output folders with their `run.json`, warnings and the one-line
//! summaries on stdout. The functions live by subject (`data`, `train`
//! with `eval-operator`, `reconstruct` with `demo`, `eval` and `device`,
//! `artifact` for `export` and `inspect`), beside the settings they build
//! from the arguments (`SamplerArgs::configs`, `CommonTrainArgs::train_config`
//! and the like), so `cli` stays declarations; `run` dispatches.

mod artifact;
mod data;
mod reconstruct;
mod train;

use std::path::PathBuf;

use anyhow::Result;

use artifact::{export_cmd, inspect};
use data::{data_gen, data_import, data_solve};
use reconstruct::{demo, device_cmd, eval_cmd, reconstruct_artifact_cmd, reconstruct_cmd};
use train::{eval_operator, train_diffusion_cmd, train_operator_cmd};

use crate::cli::{Cli, Command, DataCommand, SamplerArgs, TrainCommand};
use crate::pde::PdeKind;
use crate::sample::{DapsConfig, DpsConfig};
use crate::train::diffusion::DiffusionKind;

/// The artifact at `path`, or an error saying where the shipped ones are.
pub(crate) fn read_artifact(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the artifact {}: {e} (the shipped ones are in models/; `ddis export` writes new ones)",
            path.display()
        )
    })
}

impl SamplerArgs {
    /// The DAPS and DPS settings after the overrides; `lite` starts from the
    /// reduced-step schedule.
    pub fn configs(&self, lite: bool) -> Result<(DapsConfig, DpsConfig)> {
        let mut daps = if lite { DapsConfig::reduced() } else { DapsConfig::full() };
        if let Some(s) = &self.schedule {
            daps = daps.with_steps(s)?;
        }
        if let Some(v) = self.tau {
            daps.tau = v;
        }
        if let Some(v) = self.lr {
            daps.lr = v;
        }
        let mut dps = DpsConfig::default_for_budget(self.dps_steps.unwrap_or(DpsConfig::DEFAULT_STEPS));
        if let Some(v) = self.sigma_max {
            daps.sigma_max = v;
            dps.sigma_max = v;
        }
        if let Some(v) = self.zeta {
            dps.zeta = v;
        }
        dps.heun = self.dps_heun;
        daps.validate()?;
        dps.validate()?;
        Ok((daps, dps))
    }
}

/// The shipped host run `models/host/<pde><res>-<name>` (e.g. `prior`,
/// `op-p100`), or an error saying how to get one.
pub(crate) fn shipped_run(pde: PdeKind, res: usize, name: &str) -> Result<PathBuf> {
    let dir = crate::output::shipped_runs().join(format!("{}{res}-{name}", pde.name()));
    anyhow::ensure!(
        dir.join("model.bin").is_file(),
        "no shipped {name} model for {pde} {res}x{res} at {}: pass a run you trained (`ddis train ...`)",
        dir.display()
    );
    Ok(dir)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        anyhow::ensure!(threads >= 1, "--threads must be at least 1");
        // burn-ndarray's matrix products run on matrixmultiply's own pool,
        // which ignores rayon and reads this variable once, at first use.
        // SAFETY: called before any other thread of ours exists or reads
        // the environment.
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", threads.to_string()) };
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    let progress = !cli.quiet;
    match cli.command {
        Command::Data(DataCommand::Gen(args)) => data_gen(&args, progress),
        Command::Data(DataCommand::Import(args)) => data_import(args, progress),
        Command::Data(DataCommand::Solve(args)) => data_solve(&args, progress),
        Command::Train(TrainCommand::Operator(args)) => train_operator_cmd(&args, progress),
        Command::Train(TrainCommand::Prior(args)) => {
            train_diffusion_cmd(DiffusionKind::Prior, &args.common, args.arch, 1.0, args.stat_samples, progress)
        }
        Command::Train(TrainCommand::Joint(args)) => {
            train_diffusion_cmd(DiffusionKind::Joint, &args.common, args.arch, args.paired_fraction, 64, progress)
        }
        Command::EvalOperator(args) => eval_operator(&args),
        Command::Reconstruct(args) if args.artifact.is_some() => reconstruct_artifact_cmd(&args),
        Command::Reconstruct(args) => reconstruct_cmd(args, progress),
        Command::Eval(args) => eval_cmd(args, progress),
        Command::Export(args) => export_cmd(&args),
        Command::Inspect(args) => inspect(&args),
        Command::Demo(args) => demo(&args, progress),
        Command::Device(args) => device_cmd(args, progress),
    }
}
