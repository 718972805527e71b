//! ddis-runtime: the heap-free inference side of ddis.
//!
//! It will load an artifact written by `ddis-trainer` from a `&'static [u8]`
//! and run the reduced-step DAPS sampler in a caller-provided workspace. It
//! never allocates and never panics on input: every check happens once, at
//! the edge, and returns an [`Error`]. Today it holds the pieces the artifact
//! format builds on: the grid convention and the CRC-32 that seals a file.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod crc;
mod error;
pub mod grid;

pub use error::Error;
