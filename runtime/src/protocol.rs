//! The UART protocol between a host and the firmware, shared by both sides:
//! frames, messages and error codes (docs/protocol.md). It owns no I/O and
//! no heap; the firmware feeds it bytes and the host writes what it encodes.
//!
//! A frame on the wire is `COBS(postcard(message) ++ crc32_le) 0x00`. The
//! host also sends a `0x00` *before* each frame, so whatever garbage or
//! truncated frame came earlier is closed off (and answered with an error)
//! instead of swallowing the next request. Empty frames are ignored.
//!
//! COBS itself is the `cobs` crate (the version postcard already pulls in,
//! without its `std` feature); this module keeps the [`Deframer`], which
//! splits the byte stream at delimiters into a fixed buffer and drops an
//! oversized frame up to its delimiter: the resynchronisation after
//! garbage, a lost byte or a reset is its job, not the codec's.

use serde::{Deserialize, Serialize};

use crate::crc::crc32;
use crate::{Artifact, Error, Sensors};

/// Protocol version, reported by [`Response::Info`]. Version 2 added the
/// error codes [`ErrorCode::ReadingOutOfRange`] and
/// [`ErrorCode::TooManySamples`] and the cap [`MAX_SAMPLES`]; version 3
/// added [`Request::Cancel`], the codes [`ErrorCode::Busy`],
/// [`ErrorCode::Cancelled`] and [`ErrorCode::NotRunning`], and the receive
/// ring's figures in [`DeviceInfo`] (a version-2 host can decode neither).
pub const PROTOCOL_VERSION: u16 = 3;
/// Most posterior samples one request may ask for: the only request field
/// that scales the work besides the sensor count (capped by the artifact's
/// `max_sensors`). One sample of the shipped Darcy artifact takes about
/// 0.95e9 instructions with 31 sensors and 1.9e9 with 100 (about 5.7 s and
/// 11 s at 168 MHz), so 16 samples hold the device for at most about
/// three minutes; more is for a host, where `ddis reconstruct --artifact`
/// has no cap.
pub const MAX_SAMPLES: u8 = 16;
/// Frame delimiter.
pub const DELIMITER: u8 = 0;
/// Largest decoded frame (message + CRC) either side accepts: a request with
/// [`MAX_REQUEST_SENSORS`] sensors (12 bytes each) fits, and so does one
/// [`Response::Field`] chunk.
pub const MAX_FRAME: usize = 3200;
/// Most sensors one request over the wire may carry: what fits
/// [`MAX_FRAME`] (a board's frame buffers bound it, not the sampler, whose
/// cap [`crate::MAX_SENSORS`] is larger for host use).
pub const MAX_REQUEST_SENSORS: usize = 256;
// A full request fits one frame, with room for its header and CRC.
const _: () = assert!(MAX_REQUEST_SENSORS * SENSOR_BYTES + 64 <= MAX_FRAME);
const _: () = assert!(MAX_REQUEST_SENSORS <= crate::MAX_SENSORS);
/// Largest COBS-encoded frame (one overhead byte per 254 bytes, plus one).
pub const MAX_WIRE: usize = MAX_FRAME + MAX_FRAME / 254 + 2;
/// f32 values per [`Response::Field`] chunk.
pub const CHUNK_VALUES: usize = 256;
/// Bytes of one sensor record in [`ReconstructRequest::sensors`]:
/// `x`, `y`, `value` as little-endian f32.
pub const SENSOR_BYTES: usize = 12;

/// A request from the host.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Liveness check; answered with [`Response::Pong`] and the same nonce.
    Ping {
        /// Echoed back.
        nonce: u32,
    },
    /// Answered with [`Response::Info`].
    Info,
    /// One reconstruction: [`Response::Field`] chunks of the mean (then of
    /// the std when asked), then [`Response::Done`]; or one [`Response::Error`].
    Reconstruct(#[serde(borrow)] ReconstructRequest<'a>),
    /// Stops the running reconstruction before its next annealing level: it
    /// then ends with [`ErrorCode::Cancelled`] instead of its fields (the
    /// one answer to both requests). With nothing running the answer is
    /// [`ErrorCode::NotRunning`].
    Cancel,
}

/// The inputs of one reconstruction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconstructRequest<'a> {
    /// Seed of the sampler's generator.
    pub seed: u64,
    /// Posterior samples (1 to [`MAX_SAMPLES`]).
    pub samples: u8,
    /// Whether to send the pointwise std after the mean.
    pub want_std: bool,
    /// Noise level of the readings (>= 0).
    pub noise_sigma: f32,
    /// Sensors as packed `(x, y, value)` little-endian f32 records
    /// ([`SENSOR_BYTES`] each): raw bits, so a NaN arrives as sent and is
    /// rejected by the device, not by the codec.
    #[serde(borrow)]
    pub sensors: &'a [u8],
}

/// Identity and budget of the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// Firmware version as `major * 10000 + minor * 100 + patch`.
    pub firmware: u32,
    /// Bytes of the embedded artifact.
    pub artifact_bytes: u32,
    /// Its CRC-32 (the trailer).
    pub artifact_crc: u32,
    /// Nodes per side of the grid.
    pub n: u16,
    /// Annealing levels of the device schedule.
    pub levels: u16,
    /// Langevin steps per level.
    pub langevin: u16,
    /// Bytes of the sampler workspace (a static buffer).
    pub workspace_bytes: u32,
    /// Bytes reserved for the stack.
    pub stack_bytes: u32,
    /// Most stack bytes ever used since boot (stack painting).
    pub stack_high_water: u32,
    /// Most sensors per request.
    pub max_sensors: u16,
    /// Bytes of the UART receive ring the RX interrupt fills.
    pub rx_ring_bytes: u32,
    /// Most bytes ever waiting in it since boot.
    pub rx_high_water: u32,
    /// Receive overruns the UART flagged since boot (bytes lost; 0 unless
    /// the host outran the ring by more than a frame at line rate).
    pub rx_overruns: u32,
}

/// What one reconstruction did, sent after its fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Instructions the sampler call took, from SysTick under `-icount
    /// shift=0` (0 when the firmware cannot count).
    pub instructions: u64,
    /// Denoiser evaluations.
    pub denoiser_calls: u32,
    /// Surrogate gradient evaluations.
    pub guide_calls: u32,
    /// Values the clamp changed.
    pub clamped: u32,
    /// Langevin steps with a non-finite value.
    pub non_finite: u32,
    /// Last measurement loss.
    pub last_loss: f32,
}

/// Which field a [`Response::Field`] chunk belongs to.
pub const FIELD_MEAN: u8 = 0;
/// See [`FIELD_MEAN`].
pub const FIELD_STD: u8 = 1;

/// A response from the device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The request's nonce.
        nonce: u32,
    },
    /// Answer to [`Request::Info`].
    Info(DeviceInfo),
    /// Values `offset..offset + len/4` of a row-major `n x n` field, as
    /// little-endian f32 (raw bits).
    Field {
        /// [`FIELD_MEAN`] or [`FIELD_STD`].
        which: u8,
        /// Index of the first value.
        offset: u32,
        /// At most [`CHUNK_VALUES`] values.
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// End of a reconstruction.
    Done(RunReport),
    /// The request (or frame) was refused; the device keeps serving.
    Error {
        /// What was wrong.
        code: ErrorCode,
        /// A number that says where (sensor index, byte count, ...).
        detail: u32,
    },
}

/// Why a frame or request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ErrorCode {
    /// Not valid COBS (detail: frame length).
    BadFraming = 1,
    /// Shorter than the CRC trailer (detail: length).
    Truncated = 2,
    /// CRC-32 mismatch (detail: the CRC computed).
    BadCrc = 3,
    /// Longer than [`MAX_FRAME`] (detail: bytes dropped).
    Oversized = 4,
    /// Not a valid message (detail: length).
    Malformed = 5,
    /// The sensor bytes are not whole records (detail: byte length).
    BadSensorBytes = 6,
    /// More than [`crate::MAX_SENSORS`] sensors (detail: count).
    TooManySensors = 7,
    /// A sensor outside the unit square or not finite (detail: index).
    SensorOffGrid = 8,
    /// A reading that is NaN or infinite (detail: index).
    SensorNotFinite = 9,
    /// Two sensors on one node (detail: second index).
    DuplicateSensor = 10,
    /// No sensor.
    NoSensors = 11,
    /// `samples == 0` (detail 0) or a bad `noise_sigma` (detail 1: not
    /// finite, negative, or wider than the range of accepted readings).
    InvalidParameter = 12,
    /// Any other runtime error.
    Runtime = 13,
    /// A response was requested in a message only the device sends.
    Unexpected = 14,
    /// A finite reading outside the range the artifact accepts (detail:
    /// index; [`crate::artifact::DataParams::reading_range`]).
    ReadingOutOfRange = 15,
    /// More than [`MAX_SAMPLES`] samples (detail: the cap).
    TooManySamples = 16,
    /// A request other than [`Request::Cancel`] arrived while a
    /// reconstruction ran; it was dropped (detail: annealing levels the
    /// running reconstruction had done).
    Busy = 17,
    /// The reconstruction was stopped by [`Request::Cancel`]; its answer
    /// (detail: annealing levels it had done, over all samples).
    Cancelled = 18,
    /// [`Request::Cancel`] with nothing running (a reconstruction that
    /// finished before the cancel was read has already sent its answer).
    NotRunning = 19,
}

impl ErrorCode {
    /// The code and detail of a runtime error met while serving a request.
    pub fn from_runtime(e: &Error) -> (Self, u32) {
        let d = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        match *e {
            Error::SensorOffGrid { index } | Error::SensorNodeOffGrid { index, .. } => (Self::SensorOffGrid, d(index)),
            Error::SensorValueNotFinite { index } => (Self::SensorNotFinite, d(index)),
            Error::ReadingOutOfRange { index, .. } => (Self::ReadingOutOfRange, d(index)),
            Error::TooManySamples { max, .. } => (Self::TooManySamples, d(max)),
            Error::Cancelled { levels } => (Self::Cancelled, levels),
            Error::NoiseTooLarge { .. } => (Self::InvalidParameter, 1),
            Error::DuplicateSensor { second, .. } => (Self::DuplicateSensor, d(second)),
            Error::TooManySensors { capacity } => (Self::TooManySensors, d(capacity)),
            Error::NoSensors => (Self::NoSensors, 0),
            Error::InvalidValue { field: "samples" } => (Self::InvalidParameter, 0),
            Error::InvalidValue { field: "noise_sigma" } => (Self::InvalidParameter, 1),
            _ => (Self::Runtime, 0),
        }
    }
}

/// Why a frame could not be produced or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The output buffer is too small, or postcard failed to encode.
    Encode,
    /// See [`ErrorCode::BadFraming`].
    BadFraming,
    /// See [`ErrorCode::Truncated`].
    Truncated,
    /// See [`ErrorCode::BadCrc`].
    BadCrc,
    /// See [`ErrorCode::Malformed`].
    Malformed,
}

impl FrameError {
    /// The error code a device answers with.
    pub fn code(self) -> ErrorCode {
        match self {
            FrameError::Encode | FrameError::Malformed => ErrorCode::Malformed,
            FrameError::BadFraming => ErrorCode::BadFraming,
            FrameError::Truncated => ErrorCode::Truncated,
            FrameError::BadCrc => ErrorCode::BadCrc,
        }
    }
}

/// Encodes `msg` as one wire frame into `out`: a leading delimiter, the COBS
/// block and the trailing delimiter. `scratch` holds the unencoded frame
/// ([`MAX_FRAME`] bytes suffice). Returns the bytes written.
pub fn encode_frame<T: Serialize>(msg: &T, scratch: &mut [u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let used = postcard::to_slice(msg, scratch).map_err(|_| FrameError::Encode)?.len();
    let crc = crc32(&scratch[..used]);
    let end = used + 4;
    scratch.get_mut(used..end).ok_or(FrameError::Encode)?.copy_from_slice(&crc.to_le_bytes());
    *out.first_mut().ok_or(FrameError::Encode)? = DELIMITER;
    let len = cobs::try_encode(&scratch[..end], out.get_mut(1..).ok_or(FrameError::Encode)?)
        .map_err(|_| FrameError::Encode)?;
    *out.get_mut(1 + len).ok_or(FrameError::Encode)? = DELIMITER;
    Ok(len + 2)
}

/// Decodes one COBS block (the bytes between two delimiters) in place,
/// checks its CRC and parses the message, borrowing from `block`.
///
/// A block holding a delimiter is [`FrameError::BadFraming`] (the `cobs`
/// crate would decode up to it; [`Deframer`] never hands one over) and an
/// empty one [`FrameError::Truncated`], as before the crate decoded.
pub fn decode_frame<'a, T: Deserialize<'a>>(block: &'a mut [u8]) -> Result<T, FrameError> {
    if block.contains(&DELIMITER) {
        return Err(FrameError::BadFraming);
    }
    let len = if block.is_empty() { 0 } else { cobs::decode_in_place(block).map_err(|_| FrameError::BadFraming)? };
    if len < 4 {
        return Err(FrameError::Truncated);
    }
    let body = len - 4;
    let stored = u32::from_le_bytes([block[body], block[body + 1], block[body + 2], block[body + 3]]);
    let block: &'a [u8] = block;
    if crc32(&block[..body]) != stored {
        return Err(FrameError::BadCrc);
    }
    let (msg, rest) = postcard::take_from_bytes(&block[..body]).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(msg)
}

/// What [`Deframer::push`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing complete yet.
    Pending,
    /// A complete block of this many bytes waits in [`Deframer::block`].
    Frame(usize),
    /// A frame longer than [`MAX_WIRE`] ended; this many bytes were dropped.
    Oversized(usize),
}

/// Splits a byte stream into COBS blocks at delimiters, with a fixed buffer:
/// an oversized frame is dropped up to its delimiter and reported once.
pub struct Deframer {
    buf: [u8; MAX_WIRE],
    len: usize,
    dropped: usize,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    /// An empty deframer.
    pub const fn new() -> Self {
        Self { buf: [0; MAX_WIRE], len: 0, dropped: 0 }
    }

    /// Feeds one byte. After [`Event::Frame`], [`Self::block`] holds the
    /// block until the next push.
    pub fn push(&mut self, byte: u8) -> Event {
        if byte == DELIMITER {
            let (len, dropped) = (self.len, self.dropped);
            self.len = 0;
            self.dropped = 0;
            if dropped > 0 {
                return Event::Oversized(dropped + len);
            }
            return if len == 0 { Event::Pending } else { Event::Frame(len) };
        }
        if self.dropped > 0 || self.len == MAX_WIRE {
            self.dropped += 1;
            return Event::Pending;
        }
        self.buf[self.len] = byte;
        self.len += 1;
        Event::Pending
    }

    /// The block of the last [`Event::Frame`] (`len` bytes), to decode in place.
    pub fn block(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[..len.min(MAX_WIRE)]
    }
}

/// Checks a reconstruction request against the artifact, as the device
/// answers it: whole sensor records, at most [`MAX_REQUEST_SENSORS`] of
/// them, `1..=`[`MAX_SAMPLES`] samples, each position on the unit square
/// and each reading finite (snapped to its node, no two on one node), then
/// what the sampler checks ([`crate::sampler::check_inputs`]: at least one
/// and at most the artifact's `max_sensors` sensors, the noise level, and
/// every reading within the artifact's range). The first failure is the
/// code and detail of the device's [`Response::Error`]; past this edge the
/// request runs.
pub fn check_request(art: &Artifact<'_>, r: &ReconstructRequest<'_>) -> Result<Sensors, (ErrorCode, u32)> {
    let d = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let rows = sensor_records(r.sensors).ok_or((ErrorCode::BadSensorBytes, d(r.sensors.len())))?;
    let count = r.sensors.len() / SENSOR_BYTES;
    if count > MAX_REQUEST_SENSORS {
        return Err((ErrorCode::TooManySensors, d(count)));
    }
    if r.samples == 0 {
        return Err((ErrorCode::InvalidParameter, 0));
    }
    let runtime = |e: Error| ErrorCode::from_runtime(&e);
    if r.samples > MAX_SAMPLES {
        return Err(runtime(Error::TooManySamples {
            requested: usize::from(r.samples),
            max: usize::from(MAX_SAMPLES),
        }));
    }
    let mut sensors = Sensors::new(art.grid());
    for (x, y, v) in rows {
        sensors.push_xy(x, y, v).map_err(runtime)?;
    }
    crate::sampler::check_inputs(art, &sensors, r.noise_sigma).map_err(runtime)?;
    Ok(sensors)
}

/// Sensor records `(x, y, value)` from packed bytes, `None` if the length
/// is not a whole number of records.
pub fn sensor_records(bytes: &[u8]) -> Option<impl Iterator<Item = (f32, f32, f32)> + '_> {
    if !bytes.len().is_multiple_of(SENSOR_BYTES) {
        return None;
    }
    let f = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    Some(bytes.chunks_exact(SENSOR_BYTES).map(move |r| (f(&r[0..4]), f(&r[4..8]), f(&r[8..12]))))
}

/// Packs sensor records into `out` (12 bytes each); returns the bytes used.
pub fn pack_sensors(rows: &[(f32, f32, f32)], out: &mut [u8]) -> Option<usize> {
    let need = rows.len().checked_mul(SENSOR_BYTES)?;
    let out = out.get_mut(..need)?;
    for (r, c) in rows.iter().zip(out.chunks_exact_mut(SENSOR_BYTES)) {
        c[0..4].copy_from_slice(&r.0.to_le_bytes());
        c[4..8].copy_from_slice(&r.1.to_le_bytes());
        c[8..12].copy_from_slice(&r.2.to_le_bytes());
    }
    Some(need)
}

#[cfg(test)]
mod tests;
