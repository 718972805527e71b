//! The one error type of the runtime.

use core::fmt;

/// Everything that can go wrong at the runtime's edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SensorOffGrid { index } => write!(f, "sensor {index} lies outside [0,1]^2 or is not finite"),
            Error::GridTooSmall { n } => write!(f, "a {n} x {n} grid has no interior (need n >= 3)"),
        }
    }
}

impl core::error::Error for Error {}
