//! The one error type of the runtime: every check at the edge (artifact,
//! sensors, caller buffers) ends in one of these values, never in a panic.
//!
//! It is `PartialEq` but not `Eq`: some variants carry the `f32` that was
//! refused (a reading, a noise level) so that the message can name it.

use core::fmt;

/// Everything that can go wrong at the runtime's edge.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A sensor position outside the unit square, or not finite.
    SensorOffGrid {
        /// Index of the offending sensor in the caller's list.
        index: usize,
    },
    /// A grid too small to have an interior.
    GridTooSmall {
        /// Nodes per side that were asked for.
        n: usize,
    },
    /// A grid whose node indices would not fit in `u32`.
    GridTooLarge {
        /// Nodes per side that were asked for.
        n: usize,
        /// The largest side accepted.
        max: usize,
    },
    /// A sensor reading that is NaN or infinite.
    SensorValueNotFinite {
        /// Index of the offending sensor in the caller's list.
        index: usize,
    },
    /// A finite reading outside the range the artifact accepts
    /// (`DataParams::reading_range`: the training data's
    /// solution range widened by `READING_MARGIN` range
    /// widths and `NOISE_MARGIN` noise levels on each
    /// side).
    ReadingOutOfRange {
        /// Index of the offending sensor in the caller's list.
        index: usize,
        /// Its reading.
        value: f32,
        /// Smallest reading accepted.
        min: f32,
        /// Largest reading accepted.
        max: f32,
    },
    /// A noise level above `DataParams::max_noise`, the
    /// width of the widened training range (readings that noisy carry no
    /// information, and the reading range would not be bounded).
    NoiseTooLarge {
        /// The noise level asked for.
        value: f32,
        /// The largest accepted.
        max: f32,
    },
    /// More posterior samples than one request may ask for.
    TooManySamples {
        /// Samples asked for.
        requested: usize,
        /// The cap (`protocol::MAX_SAMPLES` on the device).
        max: usize,
    },
    /// A flat node index past the end of the grid.
    SensorNodeOffGrid {
        /// Index of the offending sensor in the caller's list.
        index: usize,
        /// The node asked for.
        node: usize,
        /// Nodes on the grid (`n * n`).
        len: usize,
    },
    /// Two sensors on one node.
    DuplicateSensor {
        /// Index of the earlier sensor.
        first: usize,
        /// Index of the later sensor.
        second: usize,
        /// The node both snap to.
        node: usize,
    },
    /// More sensors than the fixed capacity.
    TooManySensors {
        /// The capacity ([`crate::sensors::MAX_SENSORS`]).
        capacity: usize,
    },
    /// A reconstruction asked for with no sensor at all.
    NoSensors,
    /// Sensors placed on another grid than the artifact's.
    GridMismatch {
        /// Nodes per side of the artifact.
        expected: usize,
        /// Nodes per side of the sensor set.
        got: usize,
    },
    /// Fewer bytes than the fixed header and trailer need.
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed at least.
        min: usize,
    },
    /// The first four bytes are not `DDIS`.
    BadMagic,
    /// A format version this runtime does not read.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// The only version this runtime reads.
        supported: u16,
    },
    /// The CRC-32 trailer does not match the bytes before it.
    CrcMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The body is not a valid postcard encoding of the format.
    Malformed,
    /// Bytes left between the body and the CRC trailer.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The kind flags disagree with the sections present.
    KindMismatch {
        /// Flags stored in the file.
        flags: u8,
        /// Flags of the sections found.
        present: u8,
    },
    /// A required section is absent.
    MissingPart {
        /// The section (`"surrogate"`, `"prior"`, `"noise"`, `"schedule"`).
        part: &'static str,
    },
    /// A size or length that differs from what the other sizes imply.
    ShapeMismatch {
        /// The field.
        field: &'static str,
        /// What the other sizes imply.
        expected: usize,
        /// What was found.
        got: usize,
    },
    /// A dimension outside the range this runtime accepts.
    DimOutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: usize,
        /// Smallest value accepted.
        min: usize,
        /// Largest value accepted.
        max: usize,
    },
    /// Sizes whose product does not fit in `usize`.
    Overflow {
        /// The field whose size overflowed.
        field: &'static str,
    },
    /// A stored number that is NaN or infinite.
    NonFinite {
        /// The field.
        field: &'static str,
        /// Index of the value in the field.
        index: usize,
    },
    /// A stored number outside its domain (a non-positive standard
    /// deviation, a negative scale, ...).
    InvalidValue {
        /// The field.
        field: &'static str,
    },
    /// A caller buffer of the wrong length.
    BufferLength {
        /// The buffer.
        field: &'static str,
        /// Length needed.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The caller's workspace is too short.
    WorkspaceTooSmall {
        /// f32 values needed.
        needed: usize,
        /// f32 values given.
        got: usize,
    },
    /// A schedule level index past the last level.
    LevelOutOfRange {
        /// Level asked for.
        level: usize,
        /// Levels in the schedule.
        levels: usize,
    },
    /// The output buffer of an encoder is too short, or postcard failed.
    EncodeFailed,
    /// The caller's poll hook stopped the sampler between annealing levels
    /// (`sampler::posterior_with`).
    Cancelled {
        /// Annealing levels run before it stopped (over all chains).
        levels: u32,
    },
    /// A linear system that should be symmetric positive definite had a
    /// pivot that is not finite and positive (an indefinite or singular PDE
    /// operator, or a sensor-space system broken by non-finite values).
    NotPositiveDefinite {
        /// The row whose pivot failed.
        row: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::SensorOffGrid { index } => write!(f, "sensor {index} lies outside the unit square or is not finite"),
            Error::GridTooSmall { n } => write!(f, "a {n} x {n} grid has no interior (need n >= 3)"),
            Error::GridTooLarge { n, max } => write!(f, "a {n} x {n} grid is too large (n <= {max})"),
            Error::SensorValueNotFinite { index } => write!(f, "sensor {index} has a reading that is not finite"),
            Error::ReadingOutOfRange { index, value, min, max } => write!(
                f,
                "sensor {index} reads {value:e}, outside [{min:e}, {max:e}] (the training data's range of u, \
                 widened by one range-width and six noise levels on each side): check the units and the problem"
            ),
            Error::NoiseTooLarge { value, max } => {
                write!(
                    f,
                    "noise level {value:e} is above {max:e}, the width of the training range of u widened by one width on each side"
                )
            }
            Error::TooManySamples { requested, max } => {
                write!(f, "{requested} posterior samples asked for, at most {max} per request")
            }
            Error::SensorNodeOffGrid { index, node, len } => {
                write!(f, "sensor {index} names node {node}, the grid has {len} nodes")
            }
            Error::DuplicateSensor { first, second, node } => {
                write!(f, "sensors {first} and {second} both sit on node {node}")
            }
            Error::TooManySensors { capacity } => write!(f, "more than {capacity} sensors"),
            Error::NoSensors => write!(f, "no sensors"),
            Error::GridMismatch { expected, got } => {
                write!(f, "sensors on a {got} x {got} grid, the artifact is for {expected} x {expected}")
            }
            Error::Truncated { len, min } => write!(f, "artifact of {len} bytes is truncated (need at least {min})"),
            Error::BadMagic => write!(f, "not a ddis artifact (magic is not `DDIS`)"),
            Error::UnsupportedVersion { found, supported } => {
                write!(f, "artifact format version {found}, this runtime reads version {supported}")
            }
            Error::CrcMismatch { stored, computed } => {
                write!(f, "artifact damaged: CRC-32 {computed:#010x}, trailer says {stored:#010x}")
            }
            Error::Malformed => write!(f, "artifact body is not a valid encoding"),
            Error::TrailingBytes { count } => write!(f, "{count} unexpected bytes after the artifact body"),
            Error::KindMismatch { flags, present } => {
                write!(f, "kind flags {flags:#04x} disagree with the sections present ({present:#04x})")
            }
            Error::MissingPart { part } => write!(f, "the artifact has no {part} section"),
            Error::ShapeMismatch { field, expected, got } => write!(f, "{field}: expected {expected}, got {got}"),
            Error::DimOutOfRange { field, value, min, max } => {
                write!(f, "{field} = {value} is outside [{min}, {max}]")
            }
            Error::Overflow { field } => write!(f, "{field}: size overflows"),
            Error::NonFinite { field, index } => write!(f, "{field}[{index}] is not finite"),
            Error::InvalidValue { field } => write!(f, "{field} is outside its domain"),
            Error::BufferLength { field, expected, got } => {
                write!(f, "buffer {field} has {got} values, expected {expected}")
            }
            Error::WorkspaceTooSmall { needed, got } => {
                write!(f, "workspace of {got} f32 values, need {needed}")
            }
            Error::LevelOutOfRange { level, levels } => write!(f, "level {level} of a {levels}-level schedule"),
            Error::EncodeFailed => write!(f, "artifact encoding failed (output buffer too short?)"),
            Error::Cancelled { levels } => write!(f, "cancelled after {levels} annealing levels"),
            Error::NotPositiveDefinite { row } => {
                write!(f, "linear system is not positive definite (pivot {row} failed)")
            }
        }
    }
}

impl core::error::Error for Error {}
