//! Sensor observations `y = M(u) + e` for the inverse problem (docs/science.md section 1).
//!
//! This module places sensors on grid nodes, reads (noisy) values of a solution
//! there, and moves observations through CSV and `.npy` files. Files give
//! physical `x, y` (row = y, column = x, docs/science.md section 4) and are validated
//! here, once, with errors that name the line or row; past this edge every
//! [`Observations`] is valid. It knows nothing about PDEs or samplers.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Error;
use crate::grid::Grid;
use crate::npy::{self, NpyError};

/// The CSV header, the only one accepted.
const CSV_HEADER: [&str; 3] = ["x", "y", "value"];

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

    /// Reads a CSV file with header `x,y,value` and one sensor per row.
    ///
    /// Whitespace around lines and fields is ignored, blank lines and lines
    /// starting with `#` are skipped, and each `(x, y)` in `[0,1]^2` snaps to
    /// the nearest node (half a cell rounds up, as the runtime does). Errors
    /// name the 1-based line ([`Error::ObservationFile`]); two rows on one
    /// node name both lines.
    pub fn from_csv(path: &Path, n: usize, noise_sigma: f64) -> Result<Self, Error> {
        let grid = Grid::new(n)?;
        check_noise_sigma(noise_sigma)?;
        let text = fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        let name = path.display().to_string();
        let line_err = |line: usize, reason: String| Error::ObservationFile { path: name.clone(), line, reason };

        // (line, node, value) per sensor row, in file order.
        let mut rows: Vec<(usize, usize, f64)> = Vec::new();
        let mut header_seen = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim_start_matches('\u{feff}').trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = content.split(',').map(str::trim).collect();
            if !header_seen {
                if fields != CSV_HEADER {
                    return Err(line_err(line, format!("expected the header `x,y,value`, found `{content}`")));
                }
                header_seen = true;
                continue;
            }
            if fields.len() != 3 {
                return Err(line_err(line, format!("expected 3 columns (x,y,value), found {}", fields.len())));
            }
            let mut parsed = [0.0f64; 3];
            for ((slot, text), column) in parsed.iter_mut().zip(&fields).zip(CSV_HEADER) {
                *slot = text
                    .parse::<f64>()
                    .map_err(|_| line_err(line, format!("cannot parse {column} `{text}` as a number")))?;
            }
            let [x, y, value] = parsed;
            let node = snap_checked(grid, x, y, value).map_err(|reason| line_err(line, reason))?;
            rows.push((line, node, value));
        }
        if !header_seen {
            return Err(Error::ObservationFormat { path: name, reason: "empty file: no `x,y,value` header".into() });
        }
        if rows.is_empty() {
            return Err(Error::ObservationFormat { path: name, reason: "no sensor rows after the header".into() });
        }
        check_row_count(&name, grid, rows.len())?;
        let mut first_line: HashMap<usize, usize> = HashMap::with_capacity(rows.len());
        for &(line, node, _) in &rows {
            if let Some(&first) = first_line.get(&node) {
                return Err(line_err(
                    line,
                    format!("snaps to node {} ({}), the same node as line {first}", node, ij(grid, node)),
                ));
            }
            first_line.insert(node, line);
        }
        let (nodes, values) = rows.into_iter().map(|(_, node, value)| (node, value)).unzip();
        Observations::new(n, nodes, values, noise_sigma)
    }

    /// Reads a `[K, 3]` float32 or float64 `.npy` array whose columns are
    /// `x, y, value`.
    ///
    /// Points snap as in [`Observations::from_csv`]. Float64 files are
    /// narrowed to float32 by [`crate::npy::read`], so values keep f32
    /// precision. Row errors name the 0-based row
    /// ([`Error::ObservationRow`]); a wrong shape or dtype is
    /// [`Error::ObservationFormat`].
    pub fn from_npy(path: &Path, n: usize, noise_sigma: f64) -> Result<Self, Error> {
        let grid = Grid::new(n)?;
        check_noise_sigma(noise_sigma)?;
        let name = path.display().to_string();
        let array = npy::read(path).map_err(|e| match e {
            NpyError::Io { source, .. } => Error::Io { path: name.clone(), message: source.to_string() },
            NpyError::Format { reason, .. } => {
                Error::ObservationFormat { path: name.clone(), reason: format!("not a valid .npy file: {reason}") }
            }
            NpyError::Dtype { descr, .. } => Error::ObservationFormat {
                path: name.clone(),
                reason: format!("unsupported dtype '{descr}' (expected float32 '<f4' or float64 '<f8')"),
            },
        })?;
        let k = match array.shape[..] {
            [k, 3] => k,
            _ => {
                return Err(Error::ObservationFormat {
                    path: name,
                    reason: format!("array has shape {:?}, expected [K, 3] with columns x, y, value", array.shape),
                });
            }
        };
        if k == 0 {
            return Err(Error::ObservationFormat { path: name, reason: "no sensor rows (shape [0, 3])".into() });
        }
        check_row_count(&name, grid, k)?;
        let row_err = |row: usize, reason: String| Error::ObservationRow { path: name.clone(), row, reason };
        let mut nodes = Vec::with_capacity(k);
        let mut values = Vec::with_capacity(k);
        let mut first_row: HashMap<usize, usize> = HashMap::with_capacity(k);
        for (row, xyv) in array.data.chunks_exact(3).enumerate() {
            let (x, y, value) = (f64::from(xyv[0]), f64::from(xyv[1]), f64::from(xyv[2]));
            let node = snap_checked(grid, x, y, value).map_err(|reason| row_err(row, reason))?;
            if let Some(&first) = first_row.get(&node) {
                return Err(row_err(
                    row,
                    format!("snaps to node {} ({}), the same node as row {first}", node, ij(grid, node)),
                ));
            }
            first_row.insert(node, row);
            nodes.push(node);
            values.push(value);
        }
        Observations::new(n, nodes, values, noise_sigma)
    }

    /// Reads a sensor file, choosing the format by extension: `.csv` through
    /// [`Observations::from_csv`], `.npy` through [`Observations::from_npy`]
    /// (case-insensitive); any other extension is an error.
    pub fn load(path: &Path, n: usize, noise_sigma: f64) -> Result<Self, Error> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Self::from_csv(path, n, noise_sigma),
            Some("npy") => Self::from_npy(path, n, noise_sigma),
            _ => Err(Error::ObservationFormat {
                path: path.display().to_string(),
                reason: "unknown sensor file type: expected a .csv or .npy extension".into(),
            }),
        }
    }

    /// Writes `x,y,value` rows (node coordinates, shortest round-trip decimal
    /// of every f64) atomically: a temporary sibling is renamed into place,
    /// so an interrupted write never leaves a complete-looking file.
    ///
    /// [`Observations::from_csv`] on the result gives back the same nodes
    /// and bit-identical values. The observations are re-validated first.
    pub fn write_csv(&self, path: &Path) -> Result<(), Error> {
        validate(self.n, &self.nodes, &self.values, self.noise_sigma)?;
        let mut text = String::with_capacity(16 + 48 * self.len());
        text.push_str("x,y,value\n");
        for (k, value) in self.values.iter().enumerate() {
            let (x, y) = self.xy(k);
            // `{:?}` is Rust's shortest representation that parses back to
            // the same bits (`{}` would spell 1e300 with 300 digits).
            text.push_str(&format!("{x:?},{y:?},{value:?}\n"));
        }
        crate::atomic::write(path, text.as_bytes()).map_err(|e| io_error(path, e))
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

/// A file with more sensor rows than grid nodes must hold duplicates; saying
/// so by count is clearer than naming one colliding pair.
fn check_row_count(name: &str, grid: Grid, rows: usize) -> Result<(), Error> {
    if rows > grid.len() {
        let n = grid.n;
        return Err(Error::ObservationFormat {
            path: name.to_string(),
            reason: format!("{rows} sensor rows, but the {n}x{n} grid has only {} nodes", grid.len()),
        });
    }
    Ok(())
}

/// Checks one `(x, y, value)` row and snaps it to its node; the error is the
/// reason only, the caller adds the line or row.
fn snap_checked(grid: Grid, x: f64, y: f64, value: f64) -> Result<usize, String> {
    for (name, t) in [("x", x), ("y", y)] {
        if !t.is_finite() {
            return Err(format!("{name} = {t} is not finite"));
        }
        if !(0.0..=1.0).contains(&t) {
            return Err(format!("{name} = {t} is outside the domain [0, 1]"));
        }
    }
    if !value.is_finite() {
        return Err(format!("value = {value} is not finite"));
    }
    Ok(grid.idx(snap(grid.n, y), snap(grid.n, x)))
}

/// Index of the node nearest to coordinate `t` in `[0, 1]`, half a cell
/// rounding up: the same rule as the runtime's `Grid::nearest_node` (which
/// does it in f32), so host and device put a sensor on the same node.
fn snap(n: usize, t: f64) -> usize {
    let last = (n - 1) as f64;
    // t * last lies in [0, n-1], so the cast cannot truncate.
    ((t * last + 0.5).floor() as usize).min(n - 1)
}

/// `[i, j]` of a flat index, for messages.
fn ij(grid: Grid, node: usize) -> String {
    let (i, j) = grid.ij(node);
    format!("[{i}, {j}]")
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), message: e.to_string() }
}

/// `dir/.name.partial-PID`: same directory (so the rename is atomic), hidden,
/// and unmistakably incomplete (the convention of `crate::npy`).
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Standard errors the sample std of the noise may stray from sigma.
    const NOISE_STD_TOLERANCE_SE: f64 = 4.0;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn boundary_and_far_off_readings_are_warned_about() {
        // 5x5 grid: node 0 is a corner, 12 the centre, 13 interior.
        let obs = Observations::new(5, vec![12, 0, 13], vec![0.01, 0.0, 5.0], 0.0).unwrap();
        let w = obs.warnings(Some((0.0, 0.02)));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("1 of 3 readings sit on the boundary") && w[0].contains("sensor 2"), "{}", w[0]);
        assert!(w[1].contains("1 of 3 readings lie far outside") && w[1].contains("sensor 3"), "{}", w[1]);
        // Inside the range (or within one range-width of it): no warning.
        let fine = Observations::new(5, vec![12, 13], vec![0.01, 0.039], 0.0).unwrap();
        assert!(fine.warnings(Some((0.0, 0.02))).is_empty());
        assert!(fine.warnings(None).is_empty());
    }

    /// Loads `text` as CSV on a 5x5 grid and returns the error message.
    fn csv_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "obs.csv", text);
        match Observations::from_csv(&path, 5, 0.0) {
            Ok(obs) => panic!("accepted {text:?} as {obs:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A float64 `[rows, cols]` `.npy` file, written as numpy does.
    fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) {
        let mut bytes = npy::header_f32(shape);
        let pos = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[pos..pos + 3].copy_from_slice(b"<f8");
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        fs::write(path, bytes).unwrap();
    }

    fn npy_error(shape: &[usize], data: &[f64]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.npy");
        write_npy_f64(&path, shape, data);
        match Observations::from_npy(&path, 5, 0.0) {
            Ok(obs) => panic!("accepted {data:?} as {obs:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn csv_round_trip_is_bit_identical() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [3, 7, 32] {
            let nodes = random_interior_nodes(n, (n - 2) * (n - 2), &mut rng).unwrap();
            // Awkward magnitudes: tiny, huge, negative zero, many digits.
            let mut values: Vec<f64> = nodes.iter().map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
            values[0] = -0.0;
            if values.len() > 3 {
                values[1] = 1e-300;
                values[2] = -1.2345678901234567e300;
                values[3] = 1.0 / 3.0;
            }
            let obs = Observations::new(n, nodes, values, 0.01).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("obs.csv");
            obs.write_csv(&path).unwrap();
            let back = Observations::from_csv(&path, n, 0.01).unwrap();
            assert_eq!(back.nodes, obs.nodes, "n = {n}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back.values), bits(&obs.values), "n = {n}");
            // Only the final file is left behind.
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn snapping_follows_row_y_column_x_and_rounds_half_up() {
        let dir = tempfile::tempdir().unwrap();
        let text = "x,y,value\n0.25,0.75,1.5\n0.125,0.375,2\n0,0,3\n1,1,4\n0.1,0.2,5\n";
        let path = write(&dir, "obs.csv", text);
        let obs = Observations::from_csv(&path, 5, 0.0).unwrap();
        // (0.25, 0.75) -> column 1, row 3; (0.125, 0.375) is exactly half a
        // cell past column 0 and row 1, so it rounds up to [2, 1].
        assert_eq!(obs.nodes, vec![3 * 5 + 1, 2 * 5 + 1, 0, 24, 5]);
        assert_eq!(obs.values, vec![1.5, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(obs.xy(0), (0.25, 0.75));
        assert_eq!(obs.xy(1), (0.25, 0.5));
        assert_eq!(obs.len(), 5);
        assert!(!obs.is_empty());
    }

    #[test]
    fn csv_tolerates_whitespace_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "\u{feff}# sensors\r\n\r\n  x , y , value  \r\n# a comment\r\n 0.5 , 0.5 , -1e-3 \r\n\r\n0.75,0.25,2";
        let path = write(&dir, "obs.CSV", text);
        let obs = Observations::load(&path, 5, 0.1).unwrap();
        assert_eq!(obs, Observations::new(5, vec![12, 8], vec![-1e-3, 2.0], 0.1).unwrap());
    }

    #[test]
    fn bad_csv_names_the_line_and_the_problem() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("missing header", "0.5,0.5,1\n", &[":1:", "header"]),
            ("wrong header", "# c\nx,y,u\n0.5,0.5,1\n", &[":2:", "header", "x,y,u"]),
            ("too many columns", "x,y,value\n0.5,0.5,1\n0.5,0.25,1,2\n", &[":3:", "3 columns", "found 4"]),
            ("too few columns", "x,y,value\n\n0.5,0.5\n", &[":3:", "found 2"]),
            ("unparsable", "x,y,value\n0.5,abc,1\n", &[":2:", "y", "`abc`"]),
            ("empty field", "x,y,value\n0.5,0.5,\n", &[":2:", "value", "``"]),
            ("NaN value", "x,y,value\n0.5,0.5,NaN\n", &[":2:", "value", "not finite"]),
            ("infinite x", "x,y,value\n\n\ninf,0.5,1\n", &[":4:", "x", "not finite"]),
            ("x off domain", "x,y,value\n1.01,0.5,1\n", &[":2:", "x = 1.01", "outside"]),
            ("y off domain", "x,y,value\n0.5,0.5,1\n0.5,-0.1,1\n", &[":3:", "y = -0.1", "outside"]),
            ("duplicate node", "x,y,value\n0.5,0.5,1\n# c\n0.25,0.25,1\n0.51,0.49,2\n", &[":5:", "line 2", "[2, 2]"]),
            ("empty file", "", &["empty file"]),
            ("comments only", "# nothing\n\n", &["empty file"]),
            ("header only", "x,y,value\n", &["no sensor rows"]),
        ];
        for (what, text, needles) in cases {
            let msg = csv_error(text);
            for needle in *needles {
                assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn too_many_sensors_is_an_error() {
        // 26 rows on a 5x5 grid: reported by count, not as one duplicate.
        let mut text = String::from("x,y,value\n");
        for k in 0..26 {
            text.push_str(&format!("{},{},1\n", (k % 5) as f64 / 4.0, (k / 5 % 5) as f64 / 4.0));
        }
        let msg = csv_error(&text);
        assert!(msg.contains("26 sensor rows") && msg.contains("25 nodes"), "{msg}");

        let err = Observations::new(3, (0..10).collect(), vec![0.0; 10], 0.0).unwrap_err();
        assert_eq!(err, Error::TooManySensors { count: 10, available: 9, places: "nodes on the 3x3 grid".into() });
    }

    #[test]
    fn new_rejects_each_invalid_input() {
        let ok = |nodes: Vec<usize>, values: Vec<f64>, sigma| Observations::new(5, nodes, values, sigma);
        assert!(matches!(Observations::new(2, vec![0], vec![0.0], 0.0), Err(Error::GridTooSmall { n: 2, .. })));
        assert!(matches!(ok(vec![1, 2], vec![0.0], 0.0), Err(Error::ShapeMismatch { expected: 2, got: 1, .. })));
        assert_eq!(ok(vec![], vec![], 0.0), Err(Error::NoSensors));
        assert_eq!(ok(vec![3, 25], vec![0.0; 2], 0.0), Err(Error::SensorOffGrid { sensor: 1, node: 25, len: 25 }));
        let dup = ok(vec![3, 7, 9, 7], vec![0.0; 4], 0.0).unwrap_err();
        assert_eq!(dup, Error::DuplicateSensor { first: 1, second: 3, node: 7 });
        let msg = dup.to_string();
        assert!(msg.contains("sensors 1 and 3") && msg.contains("node 7"), "{msg}");
        assert!(matches!(ok(vec![3, 7], vec![0.0, f64::NAN], 0.0), Err(Error::NonFiniteObservation { sensor: 1, .. })));
        for sigma in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(ok(vec![3], vec![0.0], sigma), Err(Error::InvalidConfig { name: "noise_sigma", .. })));
        }
        assert!(ok(vec![24, 0], vec![1.0, -1.0], 0.0).is_ok(), "boundary sensors are allowed");
    }

    #[test]
    fn npy_reads_f64_and_f32_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = [0.25, 0.75, 1.5, 1.0, 0.0, -2.0, 0.5, 0.5, 0.125];
        let path64 = dir.path().join("obs64.npy");
        write_npy_f64(&path64, &[3, 3], &data);
        let path32 = dir.path().join("obs32.npy");
        npy::write(&path32, &[3, 3], &data.map(|v| v as f32)).unwrap();
        let expected = Observations::new(5, vec![16, 4, 12], vec![1.5, -2.0, 0.125], 0.05).unwrap();
        for path in [&path64, &path32] {
            assert_eq!(Observations::load(path, 5, 0.05).unwrap(), expected, "{}", path.display());
        }
    }

    #[test]
    fn bad_npy_names_the_row_and_the_problem() {
        // (what, shape, data, substrings the message must contain)
        type Case<'a> = (&'a str, &'a [usize], &'a [f64], &'a [&'a str]);
        let cases: &[Case] = &[
            ("shape [K, 2]", &[2, 2], &[0.5, 0.5, 0.25, 0.25], &["shape [2, 2]", "[K, 3]"]),
            ("1-D", &[3], &[0.5, 0.5, 1.0], &["shape [3]"]),
            ("no rows", &[0, 3], &[], &["no sensor rows"]),
            ("NaN value", &[2, 3], &[0.5, 0.5, 1.0, 0.25, 0.25, f64::NAN], &["row 1", "value", "not finite"]),
            ("NaN x", &[1, 3], &[f64::NAN, 0.5, 1.0], &["row 0", "x", "not finite"]),
            ("x off domain", &[2, 3], &[0.5, 0.5, 1.0, 1.01, 0.5, 1.0], &["row 1", "outside"]),
            ("y off domain", &[1, 3], &[0.5, -0.1, 1.0], &["row 0", "y = -0.1", "outside"]),
            ("duplicate", &[3, 3], &[0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.49, 0.51, 2.0], &["row 2", "row 0", "[2, 2]"]),
        ];
        for (what, shape, data, needles) in cases {
            let msg = npy_error(shape, data);
            for needle in *needles {
                assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let garbage = write(&dir, "obs.npy", "not an npy file");
        let msg = Observations::from_npy(&garbage, 5, 0.0).unwrap_err().to_string();
        assert!(msg.contains("not a valid .npy file"), "{msg}");
    }

    #[test]
    fn load_dispatches_on_extension_and_reports_io() {
        let dir = tempfile::tempdir().unwrap();
        let txt = write(&dir, "obs.txt", "x,y,value\n0.5,0.5,1\n");
        assert!(matches!(Observations::load(&txt, 5, 0.0), Err(Error::ObservationFormat { .. })));
        let missing = dir.path().join("missing.csv");
        assert!(matches!(Observations::load(&missing, 5, 0.0), Err(Error::Io { .. })));
        let missing = dir.path().join("missing.npy");
        assert!(matches!(Observations::load(&missing, 5, 0.0), Err(Error::Io { .. })));
    }

    #[test]
    fn random_interior_nodes_are_distinct_interior_and_seeded() {
        let draw = |seed, n, count| random_interior_nodes(n, count, &mut ChaCha8Rng::seed_from_u64(seed));
        for (n, count) in [(3, 1), (8, 36), (32, 31), (32, 100), (64, 500)] {
            let nodes = draw(1, n, count).unwrap();
            let grid = Grid::new(n).unwrap();
            assert_eq!(nodes.len(), count);
            let mut sorted = nodes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), count, "n = {n}: duplicates in {nodes:?}");
            assert!(nodes.iter().all(|&k| k < grid.len() && !grid.is_boundary(grid.ij(k).0, grid.ij(k).1)));
            assert_eq!(draw(1, n, count).unwrap(), nodes, "same seed, same nodes in the same order");
        }
        assert_ne!(draw(1, 32, 31).unwrap(), draw(2, 32, 31).unwrap());
        // Draw order is kept (a sorted result would be vanishingly unlikely).
        let nodes = draw(3, 32, 100).unwrap();
        assert!(nodes.windows(2).any(|w| w[0] > w[1]));
        assert_eq!(
            draw(1, 5, 10),
            Err(Error::TooManySensors { count: 10, available: 9, places: "interior nodes on the 5x5 grid".into() })
        );
        assert_eq!(draw(1, 5, 0), Err(Error::NoSensors));
        assert!(matches!(draw(1, 2, 1), Err(Error::GridTooSmall { .. })));
    }

    #[test]
    fn measure_reads_u_and_adds_gaussian_noise() {
        let n = 66;
        let u: Vec<f32> = (0..n * n).map(|k| ((k as f32) * 0.37).sin()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let nodes = random_interior_nodes(n, 4000, &mut rng).unwrap();

        let exact = Observations::measure(n, nodes.clone(), &u, 0.0, &mut rng).unwrap();
        for (&node, &value) in exact.nodes.iter().zip(&exact.values) {
            assert_eq!(value, f64::from(u[node]));
        }

        let sigma = 0.05;
        let noisy = Observations::measure(n, nodes.clone(), &u, sigma, &mut rng).unwrap();
        assert_eq!(noisy.noise_sigma, sigma);
        let residuals: Vec<f64> = noisy.nodes.iter().zip(&noisy.values).map(|(&k, &v)| v - f64::from(u[k])).collect();
        let count = residuals.len() as f64;
        let mean = residuals.iter().sum::<f64>() / count;
        let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt();
        // Standard error of the mean sigma/sqrt(K), of the sample std about sigma/sqrt(2K).
        assert!(mean.abs() < NOISE_STD_TOLERANCE_SE * sigma / count.sqrt(), "mean {mean}");
        let se = sigma / (2.0 * count).sqrt();
        assert!((std - sigma).abs() < NOISE_STD_TOLERANCE_SE * se, "std {std} vs sigma {sigma} (se {se})");

        // Same rng state, same noise pattern, scaled by sigma.
        let a = Observations::measure(n, nodes.clone(), &u, 1.0, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let b = Observations::measure(n, nodes.clone(), &u, 2.0, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        for k in 0..a.len() {
            let base = f64::from(u[a.nodes[k]]);
            assert!(((b.values[k] - base) - 2.0 * (a.values[k] - base)).abs() < 1e-12);
        }

        let bad = Observations::measure(n, nodes.clone(), &u[1..], 0.0, &mut rng);
        assert!(matches!(bad, Err(Error::ShapeMismatch { field: "u", .. })));
        let mut u_nan = u.clone();
        u_nan[nodes[7]] = f32::NAN;
        let bad = Observations::measure(n, nodes.clone(), &u_nan, 0.0, &mut rng);
        assert_eq!(bad, Err(Error::NonFinite { field: "u", index: nodes[7] }));
        let bad = Observations::measure(n, vec![n * n], &u, 0.0, &mut rng);
        assert!(matches!(bad, Err(Error::SensorOffGrid { .. })));
    }
}
