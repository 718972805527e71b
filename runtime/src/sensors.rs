//! Sensor readings `y_k = u(node_k)` in a fixed-capacity container: built
//! from physical `(x, y, value)` or from node indices, checked on the way
//! in (finite values, on the grid, one sensor per node, at most
//! [`MAX_SENSORS`]).

use heapless::Vec;

use crate::Error;
use crate::grid::Grid;

/// Most sensors one reconstruction takes (the evaluations use
/// 31 and 100 on a 32 x 32 grid).
pub const MAX_SENSORS: usize = 256;

/// One reading.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sensor {
    /// Flat row-major node index `i * n + j`.
    pub node: u32,
    /// The reading (physical units of `u`).
    pub value: f32,
}

/// A checked set of sensors on one grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensors {
    grid: Grid,
    items: Vec<Sensor, MAX_SENSORS>,
}

impl Sensors {
    /// An empty set on `grid`.
    pub fn new(grid: Grid) -> Self {
        Self { grid, items: Vec::new() }
    }

    /// A set from physical `(x, y, value)` rows; errors name the row.
    pub fn from_xy(grid: Grid, rows: &[(f32, f32, f32)]) -> Result<Self, Error> {
        let mut out = Self::new(grid);
        for &(x, y, v) in rows {
            out.push_xy(x, y, v)?;
        }
        Ok(out)
    }

    /// Adds a reading at the node nearest to `(x, y)` (docs/science.md section 4).
    pub fn push_xy(&mut self, x: f32, y: f32, value: f32) -> Result<(), Error> {
        let index = self.items.len();
        let node = self.grid.nearest_node(x, y, index)?;
        self.push_node(node, value)
    }

    /// Adds a reading at flat node index `node`.
    pub fn push_node(&mut self, node: usize, value: f32) -> Result<(), Error> {
        let index = self.items.len();
        let len = self.grid.len();
        if node >= len {
            return Err(Error::SensorNodeOffGrid { index, node, len });
        }
        if !value.is_finite() {
            return Err(Error::SensorValueNotFinite { index });
        }
        if let Some(first) = self.items.iter().position(|s| s.node as usize == node) {
            return Err(Error::DuplicateSensor { first, second: index, node });
        }
        // node < n^2 <= Grid::MAX_N^2 < 2^32.
        self.items
            .push(Sensor { node: node as u32, value })
            .map_err(|_| Error::TooManySensors { capacity: MAX_SENSORS })
    }

    /// The grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Nodes per side of the grid.
    pub fn n(&self) -> usize {
        self.grid.n()
    }

    /// Number of sensors.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The readings in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Sensor> {
        self.items.iter()
    }

    /// The node indices in insertion order.
    pub fn nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.items.iter().map(|s| s.node as usize)
    }

    /// RMS of the readings, the residual unit of the sampler (1 when it is
    /// below 1e-12, e.g. all-zero readings), as the host guide computes it.
    pub fn rms(&self) -> f32 {
        let count = self.items.len().max(1) as f32;
        let ms = self.items.iter().fold(0.0f32, |acc, s| acc + s.value * s.value) / count;
        let rms = crate::math::sqrt(ms);
        if rms > 1e-12 { rms } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_sensor_sets_are_errors() {
        let g = Grid::new(8).unwrap();
        let mut s = Sensors::new(g);
        assert_eq!(s.push_xy(0.5, 0.5, f32::NAN), Err(Error::SensorValueNotFinite { index: 0 }));
        assert_eq!(s.push_xy(0.5, 0.5, f32::INFINITY), Err(Error::SensorValueNotFinite { index: 0 }));
        assert_eq!(s.push_xy(1.5, 0.5, 1.0), Err(Error::SensorOffGrid { index: 0 }));
        assert_eq!(s.push_xy(f32::NAN, 0.5, 1.0), Err(Error::SensorOffGrid { index: 0 }));
        assert_eq!(s.push_node(64, 1.0), Err(Error::SensorNodeOffGrid { index: 0, node: 64, len: 64 }));
        assert_eq!(s.push_node(usize::MAX, 1.0), Err(Error::SensorNodeOffGrid { index: 0, node: usize::MAX, len: 64 }));
        s.push_xy(0.5, 0.5, 1.0).unwrap();
        // 0.5 * 7 = 3.5 rounds up to node 4 on both axes: 4 * 8 + 4.
        assert_eq!(s.push_xy(0.52, 0.53, 2.0), Err(Error::DuplicateSensor { first: 0, second: 1, node: 36 }));
        assert_eq!(s.len(), 1, "failed pushes leave the set unchanged");

        let big = Grid::new(32).unwrap();
        let mut s = Sensors::new(big);
        for k in 0..MAX_SENSORS {
            s.push_node(k, 1.0).unwrap();
        }
        assert_eq!(s.push_node(MAX_SENSORS, 1.0), Err(Error::TooManySensors { capacity: MAX_SENSORS }));
        assert_eq!(s.len(), MAX_SENSORS);
    }

    #[test]
    fn rms_is_the_residual_unit() {
        let g = Grid::new(5).unwrap();
        let s = Sensors::from_xy(g, &[(0.0, 0.0, 3.0), (1.0, 1.0, -4.0)]).unwrap();
        assert!((s.rms() - (12.5f32).sqrt()).abs() < 1e-6);
        let z = Sensors::from_xy(g, &[(0.0, 0.0, 0.0)]).unwrap();
        assert_eq!(z.rms(), 1.0);
        assert_eq!(Sensors::new(g).rms(), 1.0);
    }
}
