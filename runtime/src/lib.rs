//! ddis-runtime: the heap-free inference side of ddis.
//!
//! It parses an artifact written by `ddis-trainer` from a `&[u8]` (flash on
//! the device) without copying ([`artifact`]), and runs the reduced-step
//! DAPS sampler ([`sampler`]) in one caller-provided workspace whose size is
//! known before the run from the request's sensor count
//! ([`Artifact::workspace_len_for`], [`sampler::workspace_len`];
//! [`Artifact::workspace_len`] for the artifact's cap, what a static buffer
//! holds). It never allocates and never panics on
//! input: every check happens once, at the edge, and returns an [`Error`].
//!
//! Module map: [`wire`] (the artifact's serialised types and constants, a
//! leaf), [`validate`] (wire types to checked views), [`artifact`] (parse,
//! encode, the validated [`Artifact`] on top), [`kernels`] (weights
//! and pointwise layers), [`operator`] (the FNO-type network with its
//! in-place truncated-DFT spectral layers and their adjoints), [`fno`] (the
//! surrogate and its vector-Jacobian product), [`denoiser`] (the EDM prior
//! at a schedule level), [`schedule`], [`noise`] (smooth GRF noise),
//! [`rng`], [`math`], [`sensors`], [`physics`] (exact finite-difference
//! forward maps with banded solves), [`gauss_newton`] (the sensor-space
//! conditional step), [`sampler`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod artifact;
mod banded;
pub mod crc;
pub mod denoiser;
mod error;
pub mod fno;
pub mod gauss_newton;
pub mod grid;
pub mod kernels;
pub mod math;
pub mod noise;
pub mod operator;
pub mod physics;
pub mod presets;
pub mod protocol;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod sensors;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_gn;
#[cfg(test)]
mod testutil;
pub mod validate;
pub mod wire;

pub use artifact::Artifact;
pub use error::Error;
pub use grid::Grid;
pub use sensors::{MAX_SENSORS, Sensor, Sensors};
