//! The PDE forward solvers and their data-side input sampling.
//!
//! Each PDE is a 5-point finite-difference operator on the interior nodes of
//! a [`Grid`] with zero Dirichlet boundary, solved by a sparse direct
//! factorisation (docs/science.md section 4). This module owns the configuration,
//! the error type and the dispatching [`Solver`]; the per-PDE files hold the
//! factorisation strategy and nothing about training or file formats.
//!
//! Adding a PDE: a variant in [`PdeKind`], a solver file beside `darcy.rs`,
//! and one arm in each `match` of [`Solver`].

mod adjoint;
mod assemble;
mod darcy;
mod helmholtz;
mod poisson;
mod sparse;

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::grf::{GrfConfig, GrfSampler};
use crate::grid::Grid;
pub(crate) use crate::grid::{check_len, validate_field};

pub use darcy::DarcySolver;
pub use helmholtz::HelmholtzSolver;
pub use poisson::PoissonSolver;

/// Which PDE a dataset, model or solver is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PdeKind {
    /// `-div(a grad u) = 1`; the input is the coefficient `a`.
    #[default]
    Darcy,
    /// `Laplacian(u) = f`; the input is the source `f`.
    Poisson,
    /// `Laplacian(u) + k^2 u = f`; the input is the source `f`.
    Helmholtz,
}

impl PdeKind {
    /// Every supported PDE, in a stable order.
    pub const ALL: [PdeKind; 3] = [PdeKind::Darcy, PdeKind::Poisson, PdeKind::Helmholtz];

    /// Lower-case name, as parsed by [`FromStr`] and written by serde.
    pub fn name(self) -> &'static str {
        match self {
            PdeKind::Darcy => "darcy",
            PdeKind::Poisson => "poisson",
            PdeKind::Helmholtz => "helmholtz",
        }
    }
}

impl fmt::Display for PdeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PdeKind {
    type Err = Error;

    /// Case-insensitive; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        PdeKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| Error::UnknownPde(s.to_owned()))
    }
}

/// The two-phase Darcy coefficient: `a_high` where the GRF is at or above
/// `threshold`, `a_low` elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DarcyConfig {
    /// Coefficient where the GRF >= threshold (published: 12).
    pub a_high: f64,
    /// Coefficient where the GRF < threshold (published: 3).
    pub a_low: f64,
    /// GRF level separating the phases (published: 0).
    pub threshold: f64,
}

impl Default for DarcyConfig {
    fn default() -> Self {
        DarcyConfig { a_high: 12.0, a_low: 3.0, threshold: 0.0 }
    }
}

impl DarcyConfig {
    /// Checks that both phases are positive and finite.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [("darcy.a_high", self.a_high), ("darcy.a_low", self.a_low)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidConfig { name, value, reason: "must be finite and > 0" });
            }
        }
        if !self.threshold.is_finite() {
            return Err(Error::InvalidConfig {
                name: "darcy.threshold",
                value: self.threshold,
                reason: "must be finite",
            });
        }
        Ok(())
    }

    /// The value of `a` that separates the two phases: the midpoint of
    /// `a_low` and `a_high` (7.5 for the published 3 / 12). (`threshold` is
    /// the GRF level, not a value of `a`.)
    pub fn phase_midpoint(&self) -> f64 {
        0.5 * (self.a_low + self.a_high)
    }

    /// Thresholds a GRF field in place into the two-phase coefficient.
    pub fn threshold_in_place(&self, field: &mut [f64]) {
        for v in field {
            *v = if *v >= self.threshold { self.a_high } else { self.a_low };
        }
    }
}

/// Which PDE to solve and every knob of its data generator; written next to
/// each dataset (`meta.json`) so the data can be regenerated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PdeConfig {
    /// The PDE.
    pub kind: PdeKind,
    /// Two-phase coefficient settings (used by Darcy only).
    pub darcy: DarcyConfig,
    /// Wave number `k` of Helmholtz (published: 1).
    pub helmholtz_k: f64,
    /// The GRF the inputs are drawn from.
    pub grf: GrfConfig,
}

impl Default for PdeConfig {
    fn default() -> Self {
        PdeConfig { kind: PdeKind::Darcy, darcy: DarcyConfig::default(), helmholtz_k: 1.0, grf: GrfConfig::default() }
    }
}

impl PdeConfig {
    /// The published settings for `kind`.
    pub fn for_kind(kind: PdeKind) -> Self {
        PdeConfig { kind, ..PdeConfig::default() }
    }

    /// Checks every field, including the ones the chosen PDE ignores, so a
    /// written `meta.json` never holds nonsense.
    pub fn validate(&self) -> Result<(), Error> {
        self.darcy.validate()?;
        self.grf.validate()?;
        if !self.helmholtz_k.is_finite() {
            return Err(Error::InvalidConfig {
                name: "helmholtz_k",
                value: self.helmholtz_k,
                reason: "must be finite",
            });
        }
        Ok(())
    }

    /// Builds a solver for an `n x n` grid. Factorises whatever does not
    /// depend on the input, so build one per thread and reuse it.
    pub fn solver(&self, n: usize) -> Result<Solver, Error> {
        self.validate()?;
        let grid = Grid::new(n)?;
        let inner = match self.kind {
            PdeKind::Darcy => Inner::Darcy(DarcySolver::new(grid)?),
            PdeKind::Poisson => Inner::Poisson(PoissonSolver::new(grid)?),
            PdeKind::Helmholtz => Inner::Helmholtz(HelmholtzSolver::new(grid, self.helmholtz_k)?),
        };
        Ok(Solver { config: *self, grid, inner })
    }

    /// A GRF sampler with this configuration's GRF settings.
    pub fn grf_sampler(&self, n: usize) -> Result<GrfSampler, Error> {
        GrfSampler::new(n, self.grf)
    }

    /// Whether this PDE's input is 0 on the boundary by construction
    /// (Helmholtz: [`input_from_grf`](Self::input_from_grf) zeroes it).
    pub fn input_vanishes_on_boundary(&self) -> bool {
        self.kind == PdeKind::Helmholtz
    }

    /// Turns a GRF draw on `grid` into this PDE's input, in place: Darcy
    /// thresholds it, Poisson keeps it, Helmholtz zeroes its boundary.
    pub fn input_from_grf(&self, grid: Grid, field: &mut [f64]) -> Result<(), Error> {
        check_len("grf field", field, grid.len())?;
        match self.kind {
            PdeKind::Darcy => self.darcy.threshold_in_place(field),
            PdeKind::Poisson => {}
            PdeKind::Helmholtz => {
                for (k, v) in field.iter_mut().enumerate() {
                    let (i, j) = grid.ij(k);
                    if grid.is_boundary(i, j) {
                        *v = 0.0;
                    }
                }
            }
        }
        Ok(())
    }
}

enum Inner {
    Darcy(DarcySolver),
    Poisson(PoissonSolver),
    Helmholtz(HelmholtzSolver),
}

/// A reusable forward solver for one PDE on one grid.
///
/// Holds the factorisation (or, for Darcy, its symbolic part) and the work
/// buffers; build one per thread with [`PdeConfig::solver`]. Every solve is
/// sequential, so results do not depend on how many threads run solvers.
pub struct Solver {
    config: PdeConfig,
    grid: Grid,
    inner: Inner,
}

// The data engine moves solvers into worker threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Solver>();
};

impl Solver {
    /// The PDE this solver solves.
    pub fn kind(&self) -> PdeKind {
        self.config.kind
    }

    /// The grid it solves on.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &PdeConfig {
        &self.config
    }

    /// Solves for `u` (n*n, zero boundary) given the PDE's input: the
    /// coefficient `a` for Darcy (with right-hand side 1), the source `f`
    /// for Poisson and Helmholtz (only its interior values are used).
    pub fn solve(&mut self, input: &[f64]) -> Result<Vec<f64>, Error> {
        let mut u = vec![0.0; self.grid.len()];
        self.solve_into(input, &mut u)?;
        Ok(u)
    }

    /// [`Solver::solve`] into a caller buffer of n*n values.
    pub fn solve_into(&mut self, input: &[f64], u: &mut [f64]) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Darcy(s) => s.solve_into(input, None, u),
            Inner::Poisson(s) => s.solve_into(input, u),
            Inner::Helmholtz(s) => s.solve_into(input, u),
        }
    }

    /// Solves the operator with a general right-hand side: Darcy needs
    /// `coefficient = Some(a)`, Poisson and Helmholtz need `None`. Used by
    /// manufactured-solution tests and anything that needs `A(a)^{-1} b`.
    pub fn solve_rhs(&mut self, coefficient: Option<&[f64]>, rhs: &[f64]) -> Result<Vec<f64>, Error> {
        let mut u = vec![0.0; self.grid.len()];
        let kind = self.kind();
        match (&mut self.inner, coefficient) {
            (Inner::Darcy(s), Some(a)) => s.solve_into(a, Some(rhs), &mut u)?,
            (Inner::Darcy(_), None) => return Err(Error::MissingCoefficient { pde: kind.name() }),
            (Inner::Poisson(s), None) => s.solve_into(rhs, &mut u)?,
            (Inner::Helmholtz(s), None) => s.solve_into(rhs, &mut u)?,
            (_, Some(_)) => return Err(Error::UnexpectedCoefficient { pde: kind.name() }),
        }
        Ok(u)
    }

    /// Relative discrete residual `||A u - b|| / ||b||` (2-norm over the
    /// interior nodes) of `u` for the data problem with this input; boundary
    /// values of `u` enter as Dirichlet data. The operator is applied by a
    /// matrix-free stencil, independently of the factorised matrix. Returns
    /// the absolute residual when `b = 0`.
    pub fn residual(&self, input: &[f64], u: &[f64]) -> Result<f64, Error> {
        match &self.inner {
            Inner::Darcy(s) => self.residual_of(Some(input), s.unit_rhs(), u),
            Inner::Poisson(_) | Inner::Helmholtz(_) => self.residual_of(None, input, u),
        }
    }

    /// [`Solver::residual`] for a general right-hand side, with the same
    /// `coefficient` rule as [`Solver::solve_rhs`].
    pub fn residual_rhs(&self, coefficient: Option<&[f64]>, rhs: &[f64], u: &[f64]) -> Result<f64, Error> {
        match (self.kind(), coefficient) {
            (PdeKind::Darcy, None) => Err(Error::MissingCoefficient { pde: self.kind().name() }),
            (PdeKind::Poisson | PdeKind::Helmholtz, Some(_)) => {
                Err(Error::UnexpectedCoefficient { pde: self.kind().name() })
            }
            _ => self.residual_of(coefficient, rhs, u),
        }
    }

    fn residual_of(&self, coefficient: Option<&[f64]>, rhs: &[f64], u: &[f64]) -> Result<f64, Error> {
        let n2 = self.grid.len();
        if let Some(a) = coefficient {
            validate_coefficient(a, n2)?;
        }
        validate_field("rhs", rhs, n2)?;
        validate_field("u", u, n2)?;
        // Everything is the symmetric diffusion operator K = -div(a grad)
        // up to sign and a diagonal shift; see `assemble::apply_diffusion`.
        let (sign, shift) = match self.kind() {
            PdeKind::Darcy => (1.0, 0.0),
            PdeKind::Poisson => (-1.0, 0.0),
            PdeKind::Helmholtz => (-1.0, self.config.helmholtz_k * self.config.helmholtz_k),
        };
        let mut ku = vec![0.0; self.grid.interior_len()];
        assemble::apply_diffusion(self.grid, coefficient, u, &mut ku);
        let (mut r2, mut b2) = (0.0, 0.0);
        for (p, &kup) in ku.iter().enumerate() {
            let node = assemble::node_of_unknown(self.grid, p);
            let au = sign * kup + shift * u[node];
            r2 += (au - rhs[node]).powi(2);
            b2 += rhs[node].powi(2);
        }
        Ok(if b2 > 0.0 { (r2 / b2).sqrt() } else { r2.sqrt() })
    }

    /// Draws one input for this PDE: a GRF sample mapped by
    /// [`PdeConfig::input_from_grf`]. The sampler's grid must match.
    pub fn sample_input<R: Rng + ?Sized>(&self, grf: &GrfSampler, rng: &mut R) -> Result<Vec<f64>, Error> {
        if grf.grid() != self.grid {
            return Err(Error::ShapeMismatch {
                field: "grf sampler grid",
                expected: self.grid.len(),
                got: grf.grid().len(),
            });
        }
        let mut field = grf.sample(rng);
        self.config.input_from_grf(self.grid, &mut field)?;
        Ok(field)
    }
}

/// [`validate_field`] plus strict positivity, which keeps the Darcy matrix
/// SPD and the harmonic means finite.
pub(crate) fn validate_coefficient(a: &[f64], expected: usize) -> Result<(), Error> {
    validate_field("a", a, expected)?;
    match a.iter().position(|&v| v <= 0.0) {
        Some(index) => Err(Error::NonPositiveCoefficient { index, value: a[index] }),
        None => Ok(()),
    }
}

/// Copies the interior of a solved unknown vector into `u`, zeroing the
/// boundary, and rejects a non-finite solution.
pub(crate) fn scatter_solution(grid: Grid, x: &[f64], u: &mut [f64]) -> Result<(), Error> {
    u.fill(0.0);
    for (p, &xp) in x.iter().enumerate() {
        let node = assemble::node_of_unknown(grid, p);
        if !xp.is_finite() {
            return Err(Error::NonFiniteSolution { index: node });
        }
        u[node] = xp;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pde_kind_parses_and_prints() {
        for kind in PdeKind::ALL {
            assert_eq!(kind.to_string().parse::<PdeKind>(), Ok(kind));
        }
        assert_eq!(" Darcy ".parse::<PdeKind>(), Ok(PdeKind::Darcy));
        let err = "navier".parse::<PdeKind>().unwrap_err();
        assert_eq!(err, Error::UnknownPde("navier".into()));
        let msg = err.to_string();
        assert!(msg.contains("navier") && msg.contains("darcy") && msg.contains("helmholtz"), "{msg}");
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = PdeConfig { helmholtz_k: 2.5, ..PdeConfig::for_kind(PdeKind::Helmholtz) };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"kind\":\"helmholtz\""), "{json}");
        let back: PdeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        // Missing fields fall back to the published defaults.
        let partial: PdeConfig = serde_json::from_str(r#"{"kind":"poisson"}"#).unwrap();
        assert_eq!(partial, PdeConfig::for_kind(PdeKind::Poisson));
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut cfg = PdeConfig::default();
        cfg.darcy.a_low = 0.0;
        assert!(matches!(cfg.solver(8), Err(Error::InvalidConfig { name: "darcy.a_low", .. })));
        let cfg = PdeConfig { helmholtz_k: f64::NAN, ..PdeConfig::default() };
        assert!(matches!(cfg.validate(), Err(Error::InvalidConfig { name: "helmholtz_k", .. })));
        assert!(matches!(PdeConfig::default().solver(2), Err(Error::GridTooSmall { n: 2, .. })));
    }

    #[test]
    fn coefficient_arity_is_checked() {
        let mut darcy = PdeConfig::for_kind(PdeKind::Darcy).solver(5).unwrap();
        let ones = vec![1.0; 25];
        assert_eq!(darcy.solve_rhs(None, &ones), Err(Error::MissingCoefficient { pde: "darcy" }));
        let mut poisson = PdeConfig::for_kind(PdeKind::Poisson).solver(5).unwrap();
        assert_eq!(poisson.solve_rhs(Some(&ones), &ones), Err(Error::UnexpectedCoefficient { pde: "poisson" }));
    }
}
