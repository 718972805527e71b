//! The artifact format, defined here once: the trainer builds a [`Body`]
//! and calls [`encode`]; the device calls [`Artifact::parse`] on the bytes
//! in flash. docs/format.md describes every field.
//!
//! ```text
//! offset 0       4            6                     len - 4
//!        "DDIS"  version u16  postcard(Body)        CRC-32 u32
//!                (LE)                               (LE, over bytes 0..len-4)
//! ```
//!
//! Parsing checks, in order: length, magic, version, CRC, the postcard body
//! (which must fill the space exactly), then every section's shapes and
//! values. Weight arrays stay borrowed from the input (`&'a [u8]`, read with
//! `f32::from_le_bytes`, no alignment needed); nothing is copied. Past
//! [`Artifact::parse`] the kernels cannot fail.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
use crate::crc::crc32;
use crate::denoiser::Prior;
use crate::fno::Fno;
use crate::grid::Grid;
use crate::kernels::{F32s, Linear, Matrix};
use crate::noise::SmoothNoise;
use crate::operator::{Operator, OperatorShape};
use crate::physics::Physics;
use crate::schedule::Schedule;

/// The first four bytes of every artifact.
pub const MAGIC: [u8; 4] = *b"DDIS";

/// The format version this runtime writes and reads. Any change to the
/// layout of [`Body`] (a field added, removed, reordered or retyped) bumps
/// it; readers accept exactly their own version.
pub const FORMAT_VERSION: u16 = 4;

/// Bytes before the postcard body: magic and version.
pub const HEADER_LEN: usize = 6;

/// Bytes after the body: the CRC-32.
pub const TRAILER_LEN: usize = 4;

/// Largest grid side accepted.
pub const MAX_N: usize = 1024;

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
/// ([`crate::gauss_newton`]).
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
/// instead of running the surrogate ([`crate::physics`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhysicsParams {
    /// `PDE_DARCY`, `PDE_POISSON` or `PDE_HELMHOLTZ` ([`crate::physics`]).
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
    /// readings' noise).
    pub tau: f32,
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

/// Bytes of the artifact [`encode`] writes for `body`.
pub fn encoded_len(body: &Body<'_>) -> Result<usize, Error> {
    let inner = postcard::serialize_with_flavor::<_, postcard::ser_flavors::Size, usize>(body, Default::default())
        .map_err(|_| Error::EncodeFailed)?;
    inner.checked_add(HEADER_LEN + TRAILER_LEN).ok_or(Error::EncodeFailed)
}

/// Writes the artifact for `body` into the start of `out` and returns its
/// length. Does not validate `body`: parse the result to check it.
pub fn encode(body: &Body<'_>, out: &mut [u8]) -> Result<usize, Error> {
    if out.len() < HEADER_LEN + TRAILER_LEN {
        return Err(Error::EncodeFailed);
    }
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let room = out.len() - TRAILER_LEN;
    let used = postcard::to_slice(body, &mut out[HEADER_LEN..room]).map_err(|_| Error::EncodeFailed)?.len();
    let end = HEADER_LEN + used;
    let crc = crc32(&out[..end]);
    out[end..end + TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(end + TRAILER_LEN)
}

/// Recomputes the CRC trailer of `bytes` in place (for tools and tests that
/// edit an artifact on purpose). Does nothing to a too-short slice.
pub fn reseal(bytes: &mut [u8]) {
    if let Some(end) = bytes.len().checked_sub(TRAILER_LEN) {
        let crc = crc32(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A parsed and fully validated artifact, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Artifact<'a> {
    grid: Grid,
    kind: u8,
    problem: &'a str,
    len: usize,
    crc: u32,
    surrogate: Option<Fno<'a>>,
    prior: Option<Prior<'a>>,
    noise: Option<SmoothNoise<'a>>,
    schedule: Option<Schedule<'a>>,
    physics: Option<Physics>,
    data: DataParams,
}

impl<'a> Artifact<'a> {
    /// Parses and validates `bytes` (see the module docs for the order of
    /// the checks). Never panics; every problem is an [`Error`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let min = HEADER_LEN + TRAILER_LEN;
        if bytes.len() < min {
            return Err(Error::Truncated { len: bytes.len(), min });
        }
        if bytes[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let end = bytes.len() - TRAILER_LEN;
        let stored = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        let computed = crc32(&bytes[..end]);
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        let (body, rest) =
            postcard::take_from_bytes::<Body<'a>>(&bytes[HEADER_LEN..end]).map_err(|_| Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes { count: rest.len() });
        }
        Self::from_body(&body, bytes.len(), stored)
    }

    /// Validates a decoded body.
    fn from_body(body: &Body<'a>, len: usize, crc: u32) -> Result<Self, Error> {
        let present = body.present();
        if body.kind != present {
            return Err(Error::KindMismatch { flags: body.kind, present });
        }
        let problem = body.problem;
        if problem.is_empty() || problem.len() > MAX_PROBLEM_LEN {
            return Err(Error::DimOutOfRange { field: "problem", value: problem.len(), min: 1, max: MAX_PROBLEM_LEN });
        }
        if !problem.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            return Err(Error::InvalidValue { field: "problem" });
        }
        let n = body.n as usize;
        if n > MAX_N {
            return Err(Error::DimOutOfRange { field: "n", value: n, min: 3, max: MAX_N });
        }
        let grid = Grid::new(n)?;
        body.data.validate()?;
        let surrogate = match &body.surrogate {
            Some(s) => Some(Fno::from_params(s, n)?),
            None => None,
        };
        let prior = match &body.prior {
            Some(p) => Some(Prior::from_params(p, n)?),
            None => None,
        };
        let noise = match body.noise {
            Some(l) => Some(SmoothNoise::new(l.sqrt_kernel.0, l.kernel.0, n)?),
            None => None,
        };
        let physics = match &body.physics {
            Some(p) => Some(Physics::from_params(p, n)?),
            None => None,
        };
        let schedule = match (&body.schedule, &prior) {
            (Some(s), Some(p)) => Some(Schedule::from_params(s, p.shape())?),
            (Some(_), None) => return Err(Error::MissingPart { part: "prior" }),
            (None, _) => None,
        };
        Ok(Self { grid, kind: present, problem, len, crc, surrogate, prior, noise, schedule, physics, data: body.data })
    }

    /// The grid every field lives on.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Nodes per side.
    pub fn n(&self) -> usize {
        self.grid.n()
    }

    /// The inverse problem the models were trained for ([`Body::problem`]).
    pub fn problem(&self) -> &'a str {
        self.problem
    }

    /// `KIND_*` flags of the sections present.
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// Bytes of the whole artifact.
    pub fn len_bytes(&self) -> usize {
        self.len
    }

    /// The CRC-32 stored in (and verified against) the trailer.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The forward surrogate, if present.
    pub fn surrogate(&self) -> Option<&Fno<'a>> {
        self.surrogate.as_ref()
    }

    /// The diffusion prior, if present.
    pub fn prior(&self) -> Option<&Prior<'a>> {
        self.prior.as_ref()
    }

    /// The smooth noise, if present.
    pub fn noise(&self) -> Option<&SmoothNoise<'a>> {
        self.noise.as_ref()
    }

    /// The DAPS schedule, if present.
    pub fn schedule(&self) -> Option<&Schedule<'a>> {
        self.schedule.as_ref()
    }

    /// The training data's law and solution range.
    pub fn data(&self) -> DataParams {
        self.data
    }

    /// Exact physics, if present.
    pub fn physics(&self) -> Option<&Physics> {
        self.physics.as_ref()
    }

    /// The forward model the sampler uses: exact physics when present,
    /// else the surrogate; `None` when neither is.
    pub fn forward_model(&self) -> Option<crate::sampler::Forward<'_, 'a>> {
        match (&self.physics, &self.surrogate) {
            (Some(p), _) => Some(crate::sampler::Forward::Physics(p)),
            (None, Some(f)) => Some(crate::sampler::Forward::Surrogate(f)),
            (None, None) => None,
        }
    }

    /// Most sensors one reconstruction may bring: the schedule's cap when
    /// the sampler works in sensor space (Gauss–Newton or exact physics),
    /// else [`crate::MAX_SENSORS`].
    pub fn max_sensors(&self) -> usize {
        match &self.schedule {
            Some(s) if self.physics.is_some() || s.step() == crate::schedule::Step::GaussNewton => s.max_sensors(),
            _ => crate::MAX_SENSORS,
        }
    }

    /// f32 values of workspace the reduced-step DAPS sampler needs
    /// ([`crate::sampler::workspace_len`]); `None` when a section it needs
    /// is missing.
    pub fn workspace_len(&self) -> Option<usize> {
        let prior = self.prior?;
        self.noise?;
        let schedule = self.schedule?;
        Some(crate::sampler::workspace_len(self.n(), self.forward_model()?, prior.net().shape(), &schedule))
    }

    /// [`workspace_len`](Self::workspace_len) in bytes.
    pub fn workspace_bytes(&self) -> Option<usize> {
        self.workspace_len().map(|v| v * 4)
    }
}

/// Largest hidden width accepted.
pub const MAX_WIDTH: usize = 256;
/// Largest projection width accepted.
pub const MAX_PROJ_WIDTH: usize = 1024;
/// Largest number of Fourier layers accepted.
pub const MAX_LAYERS: usize = 32;
/// Largest mode count accepted.
pub const MAX_MODES: usize = 128;

fn dim(field: &'static str, value: u32, min: usize, max: usize) -> Result<usize, Error> {
    let v = value as usize;
    if v < min || v > max {
        return Err(Error::DimOutOfRange { field, value: v, min, max });
    }
    Ok(v)
}

pub(crate) fn matrix<'a>(w: &Weights<'a>, rows: usize, cols: usize, field: &'static str) -> Result<Matrix<'a>, Error> {
    match *w {
        Weights::F32 { values } => Matrix::f32(values.0, rows, cols, field),
        Weights::I8 { q, scales } => Matrix::i8(q.0, scales.0, rows, cols, field),
    }
}

pub(crate) fn linear<'a>(
    p: &LinearParams<'a>,
    inputs: usize,
    outputs: usize,
    field: &'static str,
) -> Result<Linear<'a>, Error> {
    if p.inputs as usize != inputs {
        return Err(Error::ShapeMismatch { field, expected: inputs, got: p.inputs as usize });
    }
    if p.outputs as usize != outputs {
        return Err(Error::ShapeMismatch { field, expected: outputs, got: p.outputs as usize });
    }
    Linear::new(matrix(&p.weight, outputs, inputs, field)?, p.bias.0, field)
}

/// Validates an operator network for an `n x n` grid.
pub(crate) fn operator<'a>(p: &OperatorParams<'a>, n: usize) -> Result<Operator<'a>, Error> {
    let width = dim("width", p.width, 1, MAX_WIDTH)?;
    let modes = dim("modes", p.modes, 1, MAX_MODES)?;
    let layers = dim("layers", p.layers, 1, MAX_LAYERS)?;
    let proj_width = dim("proj_width", p.proj_width, 1, MAX_PROJ_WIDTH)?;
    let pad = dim("pad", p.pad, 0, n.saturating_sub(1))?;
    let big = n + 2 * pad;
    // Both row blocks of modes must fit and no column mode pass Nyquist.
    if 2 * modes > big || modes > big / 2 + 1 {
        return Err(Error::DimOutOfRange { field: "modes", value: modes, min: 1, max: (big / 2).min(big / 2 + 1) });
    }
    let shape = OperatorShape { n, width, modes, layers, pad, proj_width };
    let lift = linear(&p.lift, 3, width, "lift")?;
    let spectral_rows = checked_product(&[layers, 2 * modes, modes, width], "spectral")?;
    let spectral = matrix(&p.spectral, spectral_rows, 2 * width, "spectral")?;
    let skip = linear(&p.skip, width, layers * width, "skip")?;
    let proj_hidden = linear(&p.proj_hidden, width, proj_width, "proj_hidden")?;
    let proj_out = linear(&p.proj_out, proj_width, 1, "proj_out")?;
    let twiddle = F32s::new(p.twiddle.0, 2 * big, "twiddle")?;
    Ok(Operator::new(shape, lift, spectral, skip, proj_hidden, proj_out, twiddle))
}

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
