//! Sensor observations `y = M(u) + e` for the inverse problem (docs/science.md section 1).
//!
//! This module places sensors on grid nodes, reads (noisy) values of a solution
//! there, and moves observations through CSV and `.npy` files. Files give
//! physical `x, y` (row = y, column = x, docs/science.md section 4) and are validated
//! here, once, with errors that name the line or row; past this edge every
//! [`Observations`] is valid. It knows nothing about PDEs or samplers.

mod files;

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Error;
use crate::grid::Grid;

/// K sensor readings of the solution u at grid nodes.
///
/// [`Observations::new`] and the loaders guarantee: `n >= 3`, at least one
/// sensor, `nodes` and `values` of equal length, every node on the grid and
/// distinct, every value finite, `noise_sigma` finite and `>= 0`. The fields
/// are public for reading; a value changed by hand is not re-checked until it
/// is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Observations {
    /// Nodes per side of the grid the sensors sit on.
    pub n: usize,
    /// Flat row-major node index of each sensor (`i*n + j`), in sensor order.
    pub nodes: Vec<usize>,
    /// Reading of each sensor, in the same order as `nodes`.
    pub values: Vec<f64>,
    /// Standard deviation of the Gaussian noise in `values` (0: noiseless).
    pub noise_sigma: f64,
}

impl Observations {
    /// Checks and bundles sensor readings.
    ///
    /// Errors: `n < 3` ([`Error::GridTooSmall`]), lengths that differ
    /// ([`Error::ShapeMismatch`]), no sensor ([`Error::NoSensors`]),
    /// more sensors than nodes ([`Error::TooManySensors`]), a node off the
    /// grid ([`Error::SensorOffGrid`]), two sensors on one node
    /// ([`Error::DuplicateSensor`], naming both), a non-finite value
    /// ([`Error::NonFiniteObservation`]) or a bad `noise_sigma`
    /// ([`Error::InvalidConfig`]).
    pub fn new(n: usize, nodes: Vec<usize>, values: Vec<f64>, noise_sigma: f64) -> Result<Self, Error> {
        validate(n, &nodes, &values, noise_sigma)?;
        Ok(Observations { n, nodes, values, noise_sigma })
    }

    /// Physical `(x, y)` of sensor `k`'s node.
    ///
    /// # Panics
    /// If `k >= self.len()`.
    pub fn xy(&self, k: usize) -> (f64, f64) {
        let grid = Grid { n: self.n };
        let (i, j) = grid.ij(self.nodes[k]);
        (grid.x(j), grid.y(i))
    }

    /// Number of sensors K.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Warnings about readings that are legal but suspect: sensors on the
    /// boundary (where every shipped PDE fixes `u = 0`, so they carry no
    /// information) and readings more than one range-width (plus six noise
    /// levels) outside `range`, the training data's solution range (wrong
    /// units, or another problem) — the rule the device runtime enforces.
    /// Empty when nothing is suspect.
    pub fn warnings(&self, range: Option<(f64, f64)>) -> Vec<String> {
        let grid = Grid { n: self.n };
        let mut out = vec![];
        let on_boundary: Vec<usize> = (0..self.len())
            .filter(|&k| {
                let (i, j) = grid.ij(self.nodes[k]);
                i == 0 || j == 0 || i + 1 == self.n || j + 1 == self.n
            })
            .collect();
        if let Some(&first) = on_boundary.first() {
            let (x, y) = self.xy(first);
            out.push(format!(
                "{} of {} readings sit on the boundary (the first: sensor {} at x = {x:.3}, y = {y:.3}), where the PDE fixes u = 0: they add no information",
                on_boundary.len(),
                self.len(),
                first + 1
            ));
        }
        if let Some((lo, hi)) = range.filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi >= lo) {
            let width = (hi - lo).max(f64::MIN_POSITIVE) + 6.0 * self.noise_sigma;
            let outside: Vec<usize> =
                (0..self.len()).filter(|&k| self.values[k] < lo - width || self.values[k] > hi + width).collect();
            if let Some(&first) = outside.first() {
                let (x, y) = self.xy(first);
                out.push(format!(
                    "{} of {} readings lie far outside the training data's range [{lo:.4e}, {hi:.4e}] (the first: sensor {} at x = {x:.3}, y = {y:.3} reads {:.4e}): check the units and the problem",
                    outside.len(),
                    self.len(),
                    first + 1,
                    self.values[first]
                ));
            }
        }
        out
    }

    /// True only for hand-built observations; validated ones have K >= 1.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Reads u at the nodes and adds N(0, noise_sigma^2) noise from rng.
    ///
    /// `u` is a row-major `n x n` field. One standard normal is drawn per
    /// sensor, in sensor order, even when `noise_sigma` is 0 (then the values
    /// equal u exactly): the same rng state gives the same noise pattern at
    /// every noise level. Errors as [`Observations::new`], plus a `u` of the
    /// wrong length ([`Error::ShapeMismatch`]) or non-finite at a sensor
    /// node ([`Error::NonFinite`]).
    pub fn measure<R: Rng + ?Sized>(
        n: usize,
        nodes: Vec<usize>,
        u: &[f32],
        noise_sigma: f64,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let grid = Grid::new(n)?;
        if u.len() != grid.len() {
            return Err(Error::ShapeMismatch { field: "u", expected: grid.len(), got: u.len() });
        }
        let k = nodes.len();
        let mut obs = Observations::new(n, nodes, vec![0.0; k], noise_sigma)?;
        if let Some(&node) = obs.nodes.iter().find(|&&node| !u[node].is_finite()) {
            return Err(Error::NonFinite { field: "u", index: node });
        }
        for (value, &node) in obs.values.iter_mut().zip(&obs.nodes) {
            let z: f64 = StandardNormal.sample(rng);
            *value = f64::from(u[node]) + noise_sigma * z;
        }
        Ok(obs)
    }
}

/// `count` distinct interior nodes (not on the boundary, where u = 0 is known), drawn uniformly without replacement
/// from rng; error if count > (n-2)^2 or count == 0.
///
/// The nodes come back in draw order (not sorted), as a deterministic function of the rng state.
pub fn random_interior_nodes<R: Rng + ?Sized>(n: usize, count: usize, rng: &mut R) -> Result<Vec<usize>, Error> {
    let grid = Grid::new(n)?;
    if count == 0 {
        return Err(Error::NoSensors);
    }
    let available = grid.interior_len();
    if count > available {
        return Err(Error::TooManySensors { count, available, places: format!("interior nodes on the {n}x{n} grid") });
    }
    let m = n - 2;
    Ok(rand::seq::index::sample(rng, available, count).into_iter().map(|p| grid.idx(1 + p / m, 1 + p % m)).collect())
}

/// The invariants of [`Observations`], checked in the order documented on
/// [`Observations::new`].
fn validate(n: usize, nodes: &[usize], values: &[f64], noise_sigma: f64) -> Result<(), Error> {
    let grid = Grid::new(n)?;
    if values.len() != nodes.len() {
        return Err(Error::ShapeMismatch { field: "values", expected: nodes.len(), got: values.len() });
    }
    if nodes.is_empty() {
        return Err(Error::NoSensors);
    }
    if nodes.len() > grid.len() {
        return Err(Error::TooManySensors {
            count: nodes.len(),
            available: grid.len(),
            places: format!("nodes on the {n}x{n} grid"),
        });
    }
    let mut first: HashMap<usize, usize> = HashMap::with_capacity(nodes.len());
    for (sensor, (&node, &value)) in nodes.iter().zip(values).enumerate() {
        if node >= grid.len() {
            return Err(Error::SensorOffGrid { sensor, node, len: grid.len() });
        }
        if let Some(&earlier) = first.get(&node) {
            return Err(Error::DuplicateSensor { first: earlier, second: sensor, node });
        }
        first.insert(node, sensor);
        if !value.is_finite() {
            return Err(Error::NonFiniteObservation { sensor, value });
        }
    }
    check_noise_sigma(noise_sigma)
}

fn check_noise_sigma(noise_sigma: f64) -> Result<(), Error> {
    if noise_sigma.is_finite() && noise_sigma >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidConfig { name: "noise_sigma", value: noise_sigma, reason: "must be finite and >= 0" })
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), message: e.to_string() }
}

#[cfg(test)]
mod tests;
