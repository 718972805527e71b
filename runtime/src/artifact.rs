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

use crate::Error;
use crate::crc::crc32;
use crate::denoiser::Prior;
use crate::fno::Fno;
use crate::grid::Grid;
use crate::noise::SmoothNoise;
use crate::physics::Physics;
use crate::schedule::Schedule;

// The wire types are part of this module's API (the trainer builds a
// `Body` through `ddis_runtime::artifact`).
pub use crate::validate::{MAX_LAYERS, MAX_MODES, MAX_PROJ_WIDTH, MAX_WIDTH};
pub use crate::wire::*;

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

/// Checks the framing of `bytes` (length, magic, version, CRC) and decodes
/// the body without validating it: for tools that edit an artifact's
/// fields and [`encode`] it again. [`Artifact::parse`] is this plus the
/// validation.
pub fn decode(bytes: &[u8]) -> Result<Body<'_>, Error> {
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
    let (body, rest) = postcard::take_from_bytes::<Body<'_>>(&bytes[HEADER_LEN..end]).map_err(|_| Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes { count: rest.len() });
    }
    Ok(body)
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
        let body = decode(bytes)?;
        // `decode` checked the length, so the trailer is there.
        let end = bytes.len() - TRAILER_LEN;
        let crc = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        Self::from_body(&body, bytes.len(), crc)
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

    /// Most sensors one reconstruction may bring: the schedule's cap when
    /// the sampler works in sensor space (Gauss–Newton or exact physics),
    /// else [`crate::MAX_SENSORS`].
    pub fn max_sensors(&self) -> usize {
        match &self.schedule {
            Some(s) if self.physics.is_some() || s.step() == crate::schedule::Step::GaussNewton => s.max_sensors(),
            _ => crate::MAX_SENSORS,
        }
    }
}
