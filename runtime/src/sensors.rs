//! Sensor readings `y_k = u(node_k)` in a fixed-capacity container: built
//! from physical `(x, y, value)` or from node indices, checked on the way
//! in (finite values, on the grid, one sensor per node, at most
//! [`MAX_SENSORS`]). Against an artifact, [`Sensors::check_range`] also
//! bounds every reading by the training data's range; the sampler calls it
//! before it does any arithmetic on the readings.
//!
//! No overflow is reachable from a finite reading: [`Sensors::rms`], the
//! only sum over readings here, falls back to a sum scaled by the largest
//! reading when the plain one overflows (the plain one, and so every
//! result the sampler had before, is kept whenever it is finite). The test
//! `extreme_finite_readings_never_overflow` feeds it `f32::MAX`,
//! `-f32::MAX`, 3e19, the smallest subnormal and mixtures of them.

use heapless::Vec;

use crate::Error;
use crate::grid::Grid;

/// Most sensors one reconstruction takes on any target (the evaluations
/// use 31 and 100 on a 32 x 32 grid, and the published 500 at 64 x 64).
/// An artifact's own `max_sensors` caps its requests below this, and a
/// request over the wire carries at most `protocol::MAX_REQUEST_SENSORS`
/// (what one frame holds; the protocol sits above this module).
pub const MAX_SENSORS: usize = 512;

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

    /// Checks every reading lies in `[min, max]` (both ends included), e.g.
    /// `DataParams::reading_range` (the artifact module); the first one
    /// outside is the error.
    pub fn check_range(&self, min: f32, max: f32) -> Result<(), Error> {
        match self.items.iter().position(|s| !(min <= s.value && s.value <= max)) {
            Some(index) => Err(Error::ReadingOutOfRange { index, value: self.items[index].value, min, max }),
            None => Ok(()),
        }
    }

    /// RMS of the readings, the residual unit of the sampler (1 when it is
    /// below 1e-12, e.g. all-zero readings), as the host guide computes it.
    /// Finite for every set of finite readings: when the plain sum of
    /// squares overflows (a reading above ~1.2e18 in size), it is
    /// recomputed scaled by the largest `|reading|`, so every scaled square
    /// is at most 1 and the result at most that reading.
    pub fn rms(&self) -> f32 {
        let count = self.items.len().max(1) as f32;
        let ms = self.items.iter().fold(0.0f32, |acc, s| acc + s.value * s.value) / count;
        let rms = if ms.is_finite() {
            crate::math::sqrt(ms)
        } else {
            // Overflow needs a reading > 1, so `big` is finite and >= 1.
            let big = self.items.iter().fold(0.0f32, |acc, s| if s.value.abs() > acc { s.value.abs() } else { acc });
            let scaled = self.items.iter().fold(0.0f32, |acc, s| {
                let r = s.value / big;
                acc + r * r
            });
            big * crate::math::sqrt(scaled / count)
        };
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
    fn extreme_finite_readings_never_overflow() {
        let g = Grid::new(32).unwrap();
        let tiny = f32::from_bits(1); // 1.4e-45, the smallest subnormal
        let extremes = [f32::MAX, -f32::MAX, 3e19, -3e19, 1.2e18, f32::MIN_POSITIVE, tiny, -tiny, 0.0, -0.0, 1.0];
        let sets: [&[f32]; 8] = [
            &[f32::MAX],
            &[-f32::MAX, f32::MAX],
            &[f32::MAX; MAX_SENSORS],
            &[3e19],
            &[3e19, tiny, 1.0],
            &[tiny, tiny],
            &[1e-30, -1e-30],
            &extremes,
        ];
        for values in sets {
            let mut s = Sensors::new(g);
            for (k, &v) in values.iter().enumerate() {
                s.push_node(k, v).unwrap();
            }
            let rms = s.rms();
            let big = values.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            assert!(rms.is_finite() && rms > 0.0, "rms of {:?}: {rms}", &values[..values.len().min(4)]);
            // sqrt(mean of squares) lies between max/sqrt(count) and max.
            let floor = big / (values.len() as f32).sqrt();
            assert!(
                (rms == 1.0 && big < 1e-12) || (rms <= big * (1.0 + RMS_TOL) && rms >= floor * (1.0 - RMS_TOL)),
                "rms of {:?}: {rms}, max |v| {big}",
                &values[..values.len().min(4)]
            );
        }
        // The plain formula (bit for bit) whenever it does not overflow.
        let s = Sensors::from_xy(g, &[(0.0, 0.0, 1e18), (1.0, 1.0, -2.0)]).unwrap();
        assert_eq!(s.rms().to_bits(), crate::math::sqrt((1e18f32 * 1e18 + 4.0) / 2.0).to_bits());
    }

    /// Round-off of the scaled RMS (a few f32 operations per reading).
    const RMS_TOL: f32 = 1e-5;

    #[test]
    fn readings_outside_the_range_are_errors() {
        let g = Grid::new(8).unwrap();
        let s = Sensors::from_xy(g, &[(0.0, 0.0, 0.5), (0.5, 0.5, -1.0), (1.0, 1.0, 2.0), (0.5, 0.0, 3.0)]).unwrap();
        assert_eq!(s.check_range(-1.0, 3.0), Ok(()), "both ends are accepted");
        assert_eq!(
            s.check_range(-0.5, 3.0),
            Err(Error::ReadingOutOfRange { index: 1, value: -1.0, min: -0.5, max: 3.0 })
        );
        assert_eq!(
            s.check_range(-1.0, 2.5),
            Err(Error::ReadingOutOfRange { index: 3, value: 3.0, min: -1.0, max: 2.5 })
        );
        for v in [f32::MAX, -f32::MAX, 3e19] {
            let s = Sensors::from_xy(g, &[(0.5, 0.5, v)]).unwrap();
            assert!(matches!(s.check_range(-1.0, 1.0), Err(Error::ReadingOutOfRange { index: 0, .. })), "{v}");
        }
        let msg = std::format!("{}", Error::ReadingOutOfRange { index: 2, value: 5.0, min: -0.018, max: 0.036 });
        assert!(msg.contains("sensor 2") && msg.contains("5e0") && msg.contains("-1.8e-2"), "{msg}");
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
