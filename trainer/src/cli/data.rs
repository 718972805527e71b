//! The arguments of `ddis data gen | solve | import`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::pde::PdeKind;

/// `ddis data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset: DIR/a.npy, DIR/u.npy ([count, res, res] float32) and DIR/meta.json.
    Gen(GenArgs),
    /// Solve the PDE for fields you bring: IN.npy ([res, res] or [count, res, res]) -> OUT.npy.
    Solve(SolveArgs),
    /// Make a dataset of fields you bring (solving them unless you bring the solutions too).
    Import(ImportArgs),
}

/// Arguments of `ddis data import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub pde: PdeArgs,
    /// Input fields, [count, res, res] .npy (float32 or float64): a for Darcy (two values), f otherwise.
    #[arg(long)]
    pub fields: PathBuf,
    /// Their solutions u, same shape [default: solve them with ddis's finite-difference solver]
    #[arg(long)]
    pub solutions: Option<PathBuf>,
    /// Output dataset directory (a.npy, u.npy, meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing dataset at --out.
    #[arg(long)]
    pub force: bool,
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
    #[arg(long = "grf-alpha", alias = "alpha", default_value_t = 2.0)]
    pub alpha: f64,
    /// GRF inverse length scale tau of that covariance.
    #[arg(long = "grf-tau", alias = "tau", default_value_t = 3.0)]
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
