//! Sensor files: `x,y,value` CSV and `[K, 3]` `.npy`, read and checked
//! once with errors that name the line or row, each point snapped to its
//! grid node by the runtime's rule; and CSV written back bit for bit.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::{Observations, check_noise_sigma, io_error, validate};
use crate::error::Error;
use crate::grid::Grid;
use crate::npy::{self, NpyError};

/// The CSV header, the only one accepted.
const CSV_HEADER: [&str; 3] = ["x", "y", "value"];

impl Observations {
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
