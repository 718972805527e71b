//! `ddis data gen | import | solve`: datasets and solves of fields you bring.

use anyhow::Result;

use crate::cli::{GenArgs, ImportArgs, PdeArgs, SolveArgs};
use crate::data::{self, GenOptions};
use crate::grf::GrfConfig;
use crate::pde::{DarcyConfig, PdeConfig, PdeKind};

impl PdeArgs {
    pub(crate) fn config(&self, grf: GrfConfig) -> PdeConfig {
        PdeConfig { kind: self.pde, darcy: DarcyConfig::default(), helmholtz_k: self.k, grf }
    }
}

/// `ddis data gen`.
pub(crate) fn data_gen(args: &GenArgs, progress: bool) -> Result<()> {
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
    Ok(())
}

/// `ddis data import`.
pub(crate) fn data_import(args: ImportArgs, progress: bool) -> Result<()> {
    let opts = data::ImportOptions {
        pde: args.pde.config(GrfConfig::default()),
        fields: args.fields,
        solutions: args.solutions,
        force: args.force,
        progress,
    };
    let meta = data::import_dataset(&opts, &args.out)?;
    let phases = if meta.pde.kind == PdeKind::Darcy {
        format!(" (phases a = {} / {})", meta.pde.darcy.a_low, meta.pde.darcy.a_high)
    } else {
        String::new()
    };
    eprintln!(
        "wrote {} {} samples at {}x{}{phases} to {}",
        meta.count,
        meta.pde.kind,
        meta.res,
        meta.res,
        args.out.display()
    );
    Ok(())
}

/// `ddis data solve`.
pub(crate) fn data_solve(args: &SolveArgs, progress: bool) -> Result<()> {
    let cfg = args.pde.config(GrfConfig::default());
    data::solve_file(&cfg, &args.field, &args.out, progress)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
