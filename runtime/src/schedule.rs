//! The reduced-step DAPS schedule as shipped: one row per annealing level
//! with every constant the host folded in f64 (noise level, EDM
//! coefficients, Langevin step and noise, the next level, the prior's FiLM
//! tables), plus `tau`, the noise's share of the width, the Langevin count
//! and the clamp.

use crate::Error;
use crate::kernels::F32s;
use crate::operator::OperatorShape;
use crate::sensors::MAX_SENSORS;
use crate::wire::{LEVEL_C_IN, LEVEL_C_OUT, LEVEL_C_SKIP, LEVEL_INV_SIGMA2, LEVEL_LR, LEVEL_NOISE_STD};
use crate::wire::{LEVEL_R, LEVEL_SCALARS, LEVEL_SIGMA, LEVEL_SIGMA_NEXT, ScheduleParams, checked_product, positive};
use crate::wire::{MAX_NOISE_WIDTH, STEP_GAUSS_NEWTON, STEP_LANGEVIN};

/// Most annealing levels accepted.
pub const MAX_LEVELS: usize = 4096;
/// Most Langevin steps per level accepted.
pub const MAX_LANGEVIN: usize = 10_000;

/// The inner step of each annealing level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// Langevin steps on the likelihood gradient with a prior pull to the
    /// level's estimate.
    Langevin,
    /// The Gauss–Newton conditional step (`gauss_newton.rs`).
    GaussNewton,
}

/// A validated schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule<'a> {
    levels: usize,
    step: Step,
    langevin: usize,
    max_sensors: usize,
    tau: f32,
    noise_width: f32,
    clamp: f32,
    row: usize,
    table: F32s<'a>,
}

/// One annealing level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level<'a> {
    /// Noise level `sigma_i`.
    pub sigma: f32,
    /// EDM `c_in(sigma_i)`.
    pub c_in: f32,
    /// EDM `c_skip(sigma_i)`.
    pub c_skip: f32,
    /// EDM `c_out(sigma_i)`.
    pub c_out: f32,
    /// Langevin step `lr_i`.
    pub lr: f32,
    /// Langevin noise scale `sqrt(2 lr_i)`.
    pub noise_std: f32,
    /// `1 / sigma_i^2`.
    pub inv_sigma2: f32,
    /// `sigma_{i+1}` (0 after the last level).
    pub sigma_next: f32,
    /// Gauss–Newton prior spread `r_i` (normalised units).
    pub r: f32,
    film: F32s<'a>,
}

impl<'a> Level<'a> {
    /// The prior's FiLM table at this level: per layer `width` values of
    /// `1 + scale`, then `width` shifts.
    pub fn film(&self) -> F32s<'a> {
        self.film
    }
}

impl<'a> Schedule<'a> {
    pub(crate) fn from_params(p: &ScheduleParams<'a>, prior: OperatorShape) -> Result<Self, Error> {
        let levels = p.levels as usize;
        if !(1..=MAX_LEVELS).contains(&levels) {
            return Err(Error::DimOutOfRange { field: "schedule.levels", value: levels, min: 1, max: MAX_LEVELS });
        }
        let langevin = p.langevin as usize;
        if langevin > MAX_LANGEVIN {
            return Err(Error::DimOutOfRange {
                field: "schedule.langevin",
                value: langevin,
                min: 0,
                max: MAX_LANGEVIN,
            });
        }
        let step = match p.step {
            STEP_LANGEVIN => Step::Langevin,
            STEP_GAUSS_NEWTON => Step::GaussNewton,
            _ => return Err(Error::InvalidValue { field: "schedule.step" }),
        };
        let max_sensors = p.max_sensors as usize;
        if !(1..=MAX_SENSORS).contains(&max_sensors) {
            return Err(Error::DimOutOfRange {
                field: "schedule.max_sensors",
                value: max_sensors,
                min: 1,
                max: MAX_SENSORS,
            });
        }
        let tau = positive(p.tau, "schedule.tau")?;
        if !(p.noise_width >= 0.0 && p.noise_width <= MAX_NOISE_WIDTH) {
            return Err(Error::InvalidValue { field: "schedule.noise_width" });
        }
        let noise_width = p.noise_width;
        let clamp = positive(p.clamp, "schedule.clamp")?;
        let film = checked_product(&[prior.layers, 2, prior.width], "schedule.table")?;
        let row = LEVEL_SCALARS.checked_add(film).ok_or(Error::Overflow { field: "schedule.table" })?;
        let table = F32s::new(p.table.0, checked_product(&[levels, row], "schedule.table")?, "schedule.table")?;
        let out = Self { levels, step, langevin, max_sensors, tau, noise_width, clamp, row, table };
        for i in 0..levels {
            let l = out.level(i)?;
            let ok = l.sigma > 0.0
                && l.inv_sigma2 > 0.0
                && l.lr >= 0.0
                && l.noise_std >= 0.0
                && l.sigma_next >= 0.0
                && l.r.is_finite()
                && l.r >= 0.0
                && (i + 1 < levels || l.sigma_next == 0.0);
            if !ok {
                return Err(Error::InvalidValue { field: "schedule.table" });
            }
        }
        Ok(out)
    }

    /// Annealing levels.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Inner iterations per level (Langevin steps or Gauss–Newton
    /// iterations).
    pub fn langevin(&self) -> usize {
        self.langevin
    }

    /// The inner step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Most sensors a request may bring to the sensor-space paths.
    pub fn max_sensors(&self) -> usize {
        self.max_sensors
    }

    /// Likelihood width in residual units (before the noise floor).
    pub fn tau(&self) -> f32 {
        self.tau
    }

    /// The share of the readings' noise that widens the likelihood: the
    /// width used is `max(tau, noise_width * noise_sigma / unit)`.
    pub fn noise_width(&self) -> f32 {
        self.noise_width
    }

    /// Clamp on the normalised field.
    pub fn clamp(&self) -> f32 {
        self.clamp
    }

    /// Bytes of the table.
    pub fn bytes(&self) -> usize {
        4 * self.table.len()
    }

    /// Level `i`.
    pub fn level(&self, i: usize) -> Result<Level<'a>, Error> {
        if i >= self.levels {
            return Err(Error::LevelOutOfRange { level: i, levels: self.levels });
        }
        // i < levels and the table holds levels * row values (parse).
        let r = self.table.slice(i * self.row, self.row);
        Ok(Level {
            sigma: r.at(LEVEL_SIGMA),
            c_in: r.at(LEVEL_C_IN),
            c_skip: r.at(LEVEL_C_SKIP),
            c_out: r.at(LEVEL_C_OUT),
            lr: r.at(LEVEL_LR),
            noise_std: r.at(LEVEL_NOISE_STD),
            inv_sigma2: r.at(LEVEL_INV_SIGMA2),
            sigma_next: r.at(LEVEL_SIGMA_NEXT),
            r: r.at(LEVEL_R),
            film: r.slice(LEVEL_SCALARS, self.row - LEVEL_SCALARS),
        })
    }
}
