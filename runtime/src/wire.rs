//! The artifact's wire types: what the trainer serialises and the device
//! deserialises, field for field, plus the format's constants. A leaf of the
//! crate: plain data with serde derives and the checks that need nothing but
//! the data itself ([`DataParams::validate`]). Turning these into validated
//! views (shapes, sizes, the operators) is `validate.rs`'s job; the
//! parse and the framing are `artifact.rs`'s. docs/format.md describes
//! every field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The first four bytes of every artifact.
pub const MAGIC: [u8; 4] = *b"DDIS";

/// The format version this runtime writes and reads. Any change to the
/// layout of [`Body`] (a field added, removed, reordered or retyped) bumps
/// it; readers accept exactly their own version.
pub const FORMAT_VERSION: u16 = 5;

/// Bytes before the postcard body: magic and version.
pub const HEADER_LEN: usize = 6;

/// Bytes after the body: the CRC-32.
pub const TRAILER_LEN: usize = 4;

/// Largest grid side accepted.
pub const MAX_N: usize = 1024;

/// Largest [`ScheduleParams::noise_width`] accepted.
pub const MAX_NOISE_WIDTH: f32 = 16.0;

/// Longest [`Body::problem`] name accepted, in bytes.
pub const MAX_PROBLEM_LEN: usize = 32;

/// [`Body::kind`] flag: a forward surrogate (FNO) is present.
pub const KIND_SURROGATE: u8 = 1;
/// [`Body::kind`] flag: a diffusion prior is present.
pub const KIND_PRIOR: u8 = 2;
/// [`Body::kind`] flag: the smooth-noise square-root kernel is present.
pub const KIND_NOISE: u8 = 4;
/// [`Body::kind`] flag: a DAPS schedule is present.
pub const KIND_SCHEDULE: u8 = 8;
/// [`Body::kind`] flag: exact physics (a finite-difference solver) is
/// present.
pub const KIND_PHYSICS: u8 = 16;
/// Everything the reduced-step DAPS sampler needs with the surrogate as its
/// forward model (with exact physics, [`KIND_PHYSICS`] replaces
/// [`KIND_SURROGATE`]).
pub const KIND_SAMPLER: u8 = KIND_SURROGATE | KIND_PRIOR | KIND_NOISE | KIND_SCHEDULE;

/// [`ScheduleParams::step`]: Langevin steps on the likelihood gradient.
pub const STEP_LANGEVIN: u8 = 0;
/// [`ScheduleParams::step`]: the Gauss–Newton conditional step
/// (the Gauss–Newton step, `gauss_newton.rs`).
pub const STEP_GAUSS_NEWTON: u8 = 1;

/// A borrowed byte string, encoded as postcard bytes (varint length, then
/// the bytes). Arrays of f32 are stored as their little-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de [u8]>::deserialize(d).map(Bytes)
    }
}

/// The entries of one weight tensor, stored as a row-major matrix whose
/// rows are output channels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Weights<'a> {
    /// f32 entries, little-endian, `rows * cols` values.
    F32 {
        /// The entries.
        #[serde(borrow)]
        values: Bytes<'a>,
    },
    /// int8 entries with one f32 scale per row: `w = q * scale[row]`.
    I8 {
        /// `rows * cols` two's-complement bytes.
        #[serde(borrow)]
        q: Bytes<'a>,
        /// `rows` f32 scales, little-endian, each finite and `>= 0`.
        #[serde(borrow)]
        scales: Bytes<'a>,
    },
}

/// A pointwise linear layer `y = W x + b`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearParams<'a> {
    /// Input channels (columns of `W`).
    pub inputs: u32,
    /// Output channels (rows of `W`).
    pub outputs: u32,
    /// `W`, `outputs x inputs`.
    #[serde(borrow)]
    pub weight: Weights<'a>,
    /// `b`, `outputs` f32.
    #[serde(borrow)]
    pub bias: Bytes<'a>,
}

/// An FNO-type operator network on one grid: the surrogate and the prior's
/// denoiser share this layout (the prior's FiLM tables live in the
/// schedule). Data channels in and out: 1; the lift sees `[field, x, y]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorParams<'a> {
    /// Hidden channels of the Fourier layers.
    pub width: u32,
    /// Modes kept per axis (`2m x m` complex weights per channel pair).
    pub modes: u32,
    /// Fourier layers.
    pub layers: u32,
    /// Reflection pad in nodes on each side (`< n`).
    pub pad: u32,
    /// Hidden channels of the projection.
    pub proj_width: u32,
    /// `3 -> width`.
    #[serde(borrow)]
    pub lift: LinearParams<'a>,
    /// Spectral weights of every layer: rows `((l 2m + r) m + k2) width + o`
    /// (layer, row mode, column mode, output channel), columns
    /// `[re(i) for i < width] ++ [im(i) for i < width]`.
    #[serde(borrow)]
    pub spectral: Weights<'a>,
    /// Pointwise skips of every layer stacked: `width -> layers * width`,
    /// rows `l * width + o`.
    #[serde(borrow)]
    pub skip: LinearParams<'a>,
    /// `width -> proj_width`.
    #[serde(borrow)]
    pub proj_hidden: LinearParams<'a>,
    /// `proj_width -> 1`.
    #[serde(borrow)]
    pub proj_out: LinearParams<'a>,
    /// `2P` f32 with `P = n + 2 pad`: `cos(2 pi j / P)` for `j < P`, then
    /// `sin(2 pi j / P)`, computed in f64 on the host.
    #[serde(borrow)]
    pub twiddle: Bytes<'a>,
}

/// The forward surrogate with its normalisation: the network maps
/// `(a - a_mean) / a_std` to `(u - u_mean) / u_std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurrogateParams<'a> {
    /// The network.
    #[serde(borrow)]
    pub net: OperatorParams<'a>,
    /// Mean of `a`.
    pub a_mean: f32,
    /// Standard deviation of `a` (> 0).
    pub a_std: f32,
    /// Mean of `u`.
    pub u_mean: f32,
    /// Standard deviation of `u` (> 0).
    pub u_std: f32,
}

/// The diffusion prior's denoiser network (one data channel) with its
/// channel normalisation (the prior works on `(a - mean) / std`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorParams<'a> {
    /// The network without its noise embedding (folded into the schedule).
    #[serde(borrow)]
    pub net: OperatorParams<'a>,
    /// Mean of `a`.
    pub mean: f32,
    /// Standard deviation of `a` (> 0).
    pub std: f32,
    /// EDM `sigma_data` (> 0; informational, the `c_*` are in the table).
    pub sigma_data: f32,
}

/// Exact physics: which finite-difference forward map the sampler solves
/// instead of running the surrogate (`physics.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhysicsParams {
    /// `PDE_DARCY`, `PDE_POISSON` or `PDE_HELMHOLTZ` (`physics.rs`).
    pub pde: u8,
    /// Helmholtz `k^2` (0 for the other PDEs).
    pub shift: f32,
    /// Darcy: the coefficient floor that keeps the operator definite (> 0;
    /// ignored by the other PDEs).
    pub coef_floor: f32,
    /// Floor of the readings' unit (> 0): the spread of `u` over the
    /// training data, as the surrogate's `u_std` is.
    pub u_floor: f32,
}

/// What the models were trained on: the law of the input field and the
/// range of the solution over the training data. The sampler reads only
/// the range, to bound the readings and the noise level of a request
/// ([`DataParams::reading_range`]); hosts use the rest to draw demo truths
/// from the model's own law and to score Darcy phases.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataParams {
    /// Darcy: the coefficient below the threshold (0 for the other PDEs).
    pub phase_low: f32,
    /// Darcy: the coefficient at or above the threshold (0 otherwise).
    pub phase_high: f32,
    /// Darcy: the GRF level that separates the phases.
    pub threshold: f32,
    /// Smoothness `alpha` of the GRF the inputs were drawn from (> 0).
    pub grf_alpha: f32,
    /// Inverse length `tau` of that GRF (> 0).
    pub grf_tau: f32,
    /// Helmholtz wave number `k` (0 for the other PDEs).
    pub helmholtz_k: f32,
    /// Smallest solution value over the training data.
    pub u_min: f32,
    /// Largest solution value over the training data (`>= u_min`).
    pub u_max: f32,
}

/// Range widths a reading may lie outside the training data's solution
/// range (beyond the noise allowance [`NOISE_MARGIN`]) before it is
/// refused ([`DataParams::reading_range`]). One width is the threshold at
/// which the host already warned that a reading is "far outside"
/// (`Observations::warnings` in the trainer): room for solutions somewhat
/// beyond the training draws, while wrong units or another problem
/// (Darcy's u is about 0.01; a reading of 5 or -4 is neither) are refused.
pub const READING_MARGIN: f32 = 1.0;

/// Noise levels (`noise_sigma`) a reading may lie outside the widened
/// range: a Gaussian error exceeds 6 standard deviations with probability
/// 2e-9, so an honest noisy reading is refused about never. (The HIL test's
/// Darcy case with noise 0.01, over half the range width of u, has a
/// reading of -0.031: 3.1 noise levels below `u_min` = 0, and outside a
/// range without this term.)
pub const NOISE_MARGIN: f32 = 6.0;

/// Largest `|u_min|`, `|u_max|` an artifact may record. It keeps every
/// number derived from the reading range finite in f32 with room to
/// spare: the noise level is at most `(1 + 2 * READING_MARGIN) * w <= 6e16`
/// ([`DataParams::max_noise`]), so the range's ends are at most
/// `3e16 + NOISE_MARGIN * 6e16 = 3.9e17` in size, a squared reading at most
/// `1.6e35`, and a sum of [`crate::MAX_SENSORS`] squares at most `3.9e37 <
/// f32::MAX = 3.4e38`.
pub const MAX_ABS_U: f32 = 1e16;

impl DataParams {
    /// Whether the input fields vanish on the grid boundary by
    /// construction: Helmholtz (`helmholtz_k != 0`), whose source the
    /// trainer zeroes there. The sampler then keeps the Gauss–Newton
    /// step's spread off the boundary and returns 0 there
    /// (`gauss_newton.rs`). No other PDE sets `helmholtz_k`.
    pub fn input_vanishes_on_boundary(&self) -> bool {
        self.helmholtz_k != 0.0
    }

    /// Checks every value is finite, the GRF parameters positive and the
    /// range ordered and within [`MAX_ABS_U`].
    pub fn validate(&self) -> Result<(), Error> {
        let all = [
            (self.phase_low, "phase_low"),
            (self.phase_high, "phase_high"),
            (self.threshold, "threshold"),
            (self.helmholtz_k, "helmholtz_k"),
            (self.u_min, "u_min"),
            (self.u_max, "u_max"),
        ];
        for (v, field) in all {
            finite(v, field)?;
        }
        positive(self.grf_alpha, "grf_alpha")?;
        positive(self.grf_tau, "grf_tau")?;
        if self.u_min > self.u_max {
            return Err(Error::InvalidValue { field: "u_max" });
        }
        for (v, field) in [(self.u_min, "u_min"), (self.u_max, "u_max")] {
            if v.abs() > MAX_ABS_U {
                return Err(Error::InvalidValue { field });
            }
        }
        Ok(())
    }

    /// The largest noise level a reconstruction accepts: the width of the
    /// widened range, `(1 + 2 * READING_MARGIN) * (u_max - u_min)`. Readings
    /// noisier than that carry no information about `u`.
    pub fn max_noise(&self) -> f32 {
        (1.0 + 2.0 * READING_MARGIN) * (self.u_max - self.u_min)
    }

    /// The readings a reconstruction with noise level `noise_sigma` accepts:
    /// `[u_min - m w - k s, u_max + m w + k s]` with `w = u_max - u_min`,
    /// `m =` [`READING_MARGIN`], `k =` [`NOISE_MARGIN`] and `s =
    /// noise_sigma`. Finite for every validated artifact and every noise
    /// level up to [`Self::max_noise`] (see [`MAX_ABS_U`]); a single-valued
    /// training range (`w = 0`) with no noise accepts only that value.
    pub fn reading_range(&self, noise_sigma: f32) -> (f32, f32) {
        let pad = READING_MARGIN * (self.u_max - self.u_min) + NOISE_MARGIN * noise_sigma;
        (self.u_min - pad, self.u_max + pad)
    }
}

/// The prior's smooth training noise: `C = K1 (x) K1` with `K1` the 1-D
/// RBF kernel matrix and `L` its symmetric square root.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseParams<'a> {
    /// `L`, `n x n` f32 row-major: a noise field is `L Z L^T`.
    #[serde(borrow)]
    pub sqrt_kernel: Bytes<'a>,
    /// `K1 = L L^T`, `n x n` f32 row-major: `C v = K1 V K1` (the
    /// Gauss–Newton step applies the covariance).
    #[serde(borrow)]
    pub kernel: Bytes<'a>,
}

/// The reduced-step DAPS schedule, folded on the host in f64. One table row
/// per annealing level: [`LEVEL_SCALARS`] scalars (see the `LEVEL_*`
/// offsets), then for each prior layer `width` FiLM scales (`1 + scale`)
/// and `width` shifts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleParams<'a> {
    /// Annealing levels `N`.
    pub levels: u32,
    /// The inner step of each level: [`STEP_LANGEVIN`] or
    /// [`STEP_GAUSS_NEWTON`].
    pub step: u8,
    /// Inner iterations per level: Langevin steps, or Gauss–Newton
    /// iterations.
    pub langevin: u32,
    /// Most sensors a request may bring; sizes the sensor-space memory of
    /// the Gauss–Newton step and of exact physics (1 to
    /// [`crate::MAX_SENSORS`]; the surrogate's Langevin path ignores it).
    pub max_sensors: u32,
    /// Likelihood width in residual units (floored at run time by the
    /// readings' noise, see `noise_width`).
    pub tau: f32,
    /// How much of the readings' noise widens the likelihood: the width
    /// used is `max(tau, noise_width * noise_sigma / unit)`, so 1 is the
    /// noise's own width and 0 ignores the noise (0 to
    /// [`MAX_NOISE_WIDTH`]). Added in format version 5.
    pub noise_width: f32,
    /// Safety clamp on the normalised field.
    pub clamp: f32,
    /// `levels` rows, row-major f32.
    #[serde(borrow)]
    pub table: Bytes<'a>,
}

/// Offset of `sigma_i` in a schedule row.
pub const LEVEL_SIGMA: usize = 0;
/// Offset of EDM `c_in(sigma_i)`.
pub const LEVEL_C_IN: usize = 1;
/// Offset of EDM `c_skip(sigma_i)`.
pub const LEVEL_C_SKIP: usize = 2;
/// Offset of EDM `c_out(sigma_i)`.
pub const LEVEL_C_OUT: usize = 3;
/// Offset of the Langevin step `lr_i`.
pub const LEVEL_LR: usize = 4;
/// Offset of the Langevin noise scale `sqrt(2 lr_i)`.
pub const LEVEL_NOISE_STD: usize = 5;
/// Offset of `1 / sigma_i^2`.
pub const LEVEL_INV_SIGMA2: usize = 6;
/// Offset of the next level's `sigma_{i+1}` (0 after the last).
pub const LEVEL_SIGMA_NEXT: usize = 7;
/// Offset of the Gauss–Newton prior spread `r_i` (normalised units).
pub const LEVEL_R: usize = 8;
/// Scalars at the start of each schedule row.
pub const LEVEL_SCALARS: usize = 9;

/// The whole postcard-encoded body of an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body<'a> {
    /// `KIND_*` flags of the sections present (checked against them).
    pub kind: u8,
    /// The inverse problem the models were trained for, as the trainer
    /// names it (`"darcy"`, `"poisson"`, ...): 1 to [`MAX_PROBLEM_LEN`]
    /// bytes of `a-z 0-9 _ -`. Hosts use it to refuse readings of another
    /// problem; the sampler does not read it.
    pub problem: &'a str,
    /// Grid nodes per side.
    pub n: u32,
    /// The forward surrogate.
    #[serde(borrow)]
    pub surrogate: Option<SurrogateParams<'a>>,
    /// The diffusion prior.
    #[serde(borrow)]
    pub prior: Option<PriorParams<'a>>,
    /// The prior's smooth training noise.
    #[serde(borrow)]
    pub noise: Option<NoiseParams<'a>>,
    /// The DAPS schedule (needs the prior: FiLM tables).
    #[serde(borrow)]
    pub schedule: Option<ScheduleParams<'a>>,
    /// Exact physics, used by the sampler instead of the surrogate when
    /// present.
    pub physics: Option<PhysicsParams>,
    /// The training data's law and solution range (always present).
    pub data: DataParams,
}

impl Body<'_> {
    /// The `KIND_*` flags of the sections that are present.
    pub fn present(&self) -> u8 {
        (if self.surrogate.is_some() { KIND_SURROGATE } else { 0 })
            | (if self.prior.is_some() { KIND_PRIOR } else { 0 })
            | (if self.noise.is_some() { KIND_NOISE } else { 0 })
            | (if self.schedule.is_some() { KIND_SCHEDULE } else { 0 })
            | (if self.physics.is_some() { KIND_PHYSICS } else { 0 })
    }
}

/// A product of sizes, or [`Error::Overflow`] naming `field`.
pub(crate) fn checked_product(factors: &[usize], field: &'static str) -> Result<usize, Error> {
    factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f)).ok_or(Error::Overflow { field })
}

/// A finite positive value, or an error naming `field`.
pub(crate) fn positive(v: f32, field: &'static str) -> Result<f32, Error> {
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err(Error::InvalidValue { field }) }
}

/// A finite value, or an error naming `field`.
pub(crate) fn finite(v: f32, field: &'static str) -> Result<f32, Error> {
    if v.is_finite() { Ok(v) } else { Err(Error::NonFinite { field, index: 0 }) }
}
