//! ddis-trainer: the host side of ddis.
//!
//! Generates PDE data, trains the models, runs the host samplers and writes
//! the artifacts that `ddis-runtime` reads. Everything expensive happens here
//! once, so the device only multiplies and rescales.

pub mod atomic;
pub mod board;
pub mod cli;
pub mod commands;
pub mod data;
pub mod error;
pub mod eval;
pub mod exact;
pub mod export;
pub mod grf;
pub mod grid;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod observe;
pub mod output;
pub mod pde;
pub mod plot;
pub mod sample;
pub mod stats;
pub mod train;
