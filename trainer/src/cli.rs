//! The `ddis` command line: argument parsing and dispatch.
//!
//! Each subcommand is a thin shell over a library function, so everything the
//! CLI does is also reachable (and tested) from Rust.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::data::{self, GenOptions};
use crate::grf::GrfConfig;
use crate::pde::{DarcyConfig, PdeConfig, PdeKind};

/// ddis — Decoupled Diffusion Inverse Solver.
///
/// Reconstructs a physical field from a few sensor readings with a diffusion
/// prior and a neural-operator model of the PDE.
#[derive(Debug, Parser)]
#[command(name = "ddis", version, about, long_about = None)]
pub struct Cli {
    /// Hide progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate PDE datasets and solve user fields.
    #[command(subcommand)]
    Data(DataCommand),
}

/// `ddis data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset: DIR/a.npy, DIR/u.npy ([count, res, res] float32) and DIR/meta.json.
    Gen(GenArgs),
    /// Solve the PDE for fields you bring: IN.npy ([res, res] or [count, res, res]) -> OUT.npy.
    Solve(SolveArgs),
}

/// The PDE and its parameters, shared by `gen` and `solve`.
#[derive(Debug, Args)]
pub struct PdeArgs {
    /// darcy (-div(a grad u) = 1), poisson (Laplacian u = f) or helmholtz (Laplacian u + k^2 u = f).
    #[arg(long, default_value = "darcy")]
    pub pde: PdeKind,
    /// Helmholtz wavenumber k.
    #[arg(long, default_value_t = 1.0)]
    pub k: f64,
}

/// Arguments of `ddis data gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Grid nodes per side, boundary included.
    #[arg(long, default_value_t = 32)]
    pub res: usize,
    /// Number of samples.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Master seed (sample k uses stream k of it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// GRF smoothness alpha of the covariance (-Laplacian + tau^2)^(-alpha).
    #[arg(long, default_value_t = 2.0)]
    pub alpha: f64,
    /// GRF inverse length scale tau.
    #[arg(long, default_value_t = 3.0)]
    pub tau: f64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing dataset at --out.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `ddis data solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Input fields (.npy, float32 or float64): a for Darcy (any positive values), f otherwise.
    #[arg(long)]
    pub field: PathBuf,
    /// Output .npy for the solutions u (same shape as the input).
    #[arg(long)]
    pub out: PathBuf,
}

impl PdeArgs {
    fn config(&self, grf: GrfConfig) -> PdeConfig {
        PdeConfig { kind: self.pde, darcy: DarcyConfig::default(), helmholtz_k: self.k, grf }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        anyhow::ensure!(threads >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    let progress = !cli.quiet;
    match cli.command {
        Command::Data(DataCommand::Gen(args)) => {
            let grf = GrfConfig { alpha: args.alpha, tau: args.tau };
            let opts = GenOptions {
                pde: args.pde.config(grf),
                res: args.res,
                count: args.count,
                seed: args.seed,
                force: args.force,
                progress,
            };
            let t0 = std::time::Instant::now();
            let meta = data::generate_dataset(&opts, &args.out)?;
            eprintln!(
                "wrote {} {} samples at {}x{} to {} in {:.1} s",
                meta.count,
                meta.pde.kind,
                meta.res,
                meta.res,
                args.out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Data(DataCommand::Solve(args)) => {
            let cfg = args.pde.config(GrfConfig::default());
            data::solve_file(&cfg, &args.field, &args.out, progress)?;
            eprintln!("wrote {}", args.out.display());
        }
    }
    Ok(())
}
