//! Reading and writing NumPy `.npy` files (format versions 1-3).
//!
//! Datasets and user fields cross this boundary, so reading validates the
//! header fully and names what is wrong; writing is atomic (a temporary file
//! in the same directory, renamed into place), so an interrupted write never
//! leaves a file that looks complete.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why an `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes are not a valid `.npy` file.
    #[error("{path}: not a valid .npy file: {reason}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A valid `.npy` file, but of an element type we cannot use.
    #[error("{path}: unsupported dtype '{descr}' (expected float32 '<f4' or float64 '<f8')")]
    Dtype {
        /// The file involved.
        path: PathBuf,
        /// The dtype descriptor found in the header.
        descr: String,
    },
}

/// A float array read from or written to an `.npy` file, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements in C (row-major) order.
    pub data: Vec<f32>,
}

/// The element types we read. Float64 is accepted and narrowed, since users
/// bring fields from numpy whose default dtype is float64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
}

/// Reads a float32 or float64 `.npy` file into f32, C order.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let io_err = |source| NpyError::Io { path: path.to_path_buf(), source };
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err)?;
    parse(&bytes).map_err(|e| match e {
        ParseError::Format(reason) => NpyError::Format { path: path.to_path_buf(), reason },
        ParseError::Dtype(descr) => NpyError::Dtype { path: path.to_path_buf(), descr },
    })
}

enum ParseError {
    Format(String),
    Dtype(String),
}

fn parse(bytes: &[u8]) -> Result<NpyArray, ParseError> {
    let fmt = |s: &str| ParseError::Format(s.to_string());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(fmt("missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(fmt("truncated header"));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => return Err(ParseError::Format(format!("unknown format version {v}"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| fmt("truncated header"))?;
    let header = std::str::from_utf8(&bytes[header_start..data_start]).map_err(|_| fmt("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| fmt("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let dtype = match descr.as_str() {
        "<f4" | "=f4" => Dtype::F32,
        "<f8" | "=f8" => Dtype::F64,
        _ => return Err(ParseError::Dtype(descr)),
    };
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| fmt("header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(fmt("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)"));
    }
    let shape_text = dict_value(header, "shape").ok_or_else(|| fmt("header has no 'shape'"))?;
    let shape = parse_shape(shape_text).ok_or_else(|| ParseError::Format(format!("bad shape {shape_text}")))?;
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| fmt("shape overflows"))?;
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    };
    let payload = &bytes[data_start..];
    let expected = count.checked_mul(width).ok_or_else(|| fmt("shape overflows"))?;
    if payload.len() != expected {
        return Err(ParseError::Format(format!(
            "shape {shape:?} needs {expected} data bytes, file has {}",
            payload.len()
        )));
    }
    let data = match dtype {
        Dtype::F32 => payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => {
            payload.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32).collect()
        }
    };
    Ok(NpyArray { shape, data })
}

/// Finds `'key': value` in a numpy header dict; the value runs to the next
/// top-level comma (shapes are parenthesised, so their commas are skipped).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}':");
    let pat_double = format!("\"{key}\":");
    let start = header
        .find(&pat_single)
        .map(|p| p + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|p| p + pat_double.len()))?;
    let rest = &header[start..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.trim_end_matches('L').parse().ok()).collect()
}

/// The header bytes of a float32 C-order array of `shape` (version 1.0,
/// padded so the data starts on a 64-byte boundary, as numpy writes it).
pub fn header_f32(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes a float32 `.npy` file atomically.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let mut w = NpyWriter::create(path, shape)?;
    w.write(data)?;
    w.finish()
}

/// Streams a float32 `.npy` file of known shape to disk in chunks; the file
/// appears under its final name only when [`NpyWriter::finish`] succeeds.
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    remaining: usize,
}

impl NpyWriter {
    /// Starts a file of `shape`; nothing is visible at `path` until `finish`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self, NpyError> {
        let tmp = crate::atomic::temp_sibling(path);
        let io_err = |source| NpyError::Io { path: path.to_path_buf(), source };
        let file = File::create(&tmp).map_err(io_err)?;
        let mut out = BufWriter::new(file);
        out.write_all(&header_f32(shape)).map_err(io_err)?;
        Ok(Self { path: path.to_path_buf(), tmp, out, remaining: shape.iter().product() })
    }

    /// Appends elements in C order.
    pub fn write(&mut self, data: &[f32]) -> Result<(), NpyError> {
        if data.len() > self.remaining {
            return Err(self.format_err(format!("{} elements more than the shape holds", data.len() - self.remaining)));
        }
        self.remaining -= data.len();
        let mut bytes = Vec::with_capacity(data.len() * 4);
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&bytes).map_err(|source| NpyError::Io { path: self.path.clone(), source })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<(), NpyError> {
        if self.remaining != 0 {
            return Err(self.format_err(format!("{} elements missing", self.remaining)));
        }
        let io_err = |source| NpyError::Io { path: self.path.clone(), source };
        self.out.flush().map_err(io_err)?;
        self.out.get_ref().sync_all().map_err(io_err)?;
        fs::rename(&self.tmp, &self.path).map_err(io_err)?;
        Ok(())
    }

    fn format_err(&self, reason: String) -> NpyError {
        NpyError::Format { path: self.path.clone(), reason }
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        // After a successful `finish` the temporary is gone and this fails
        // harmlessly; after an error it removes the partial file.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[2, 3, 4], &data).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert_eq!(back.data, data);
        // Header padded to 64 bytes, as numpy does.
        assert_eq!(header_f32(&[2, 3, 4]).len() % 64, 0);
    }

    #[test]
    fn reads_numpy_written_float64() {
        // np.save(f, np.array([[1.5, -2.0]])) — a float64 file as numpy writes it.
        let mut bytes = Vec::from(&MAGIC[..]);
        bytes.extend_from_slice(&[1, 0]);
        let mut dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        while !(10 + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        let arr = parse(&bytes).ok().unwrap();
        assert_eq!(arr.shape, vec![1, 2]);
        assert_eq!(arr.data, vec![1.5, -2.0]);
    }

    #[test]
    fn rejects_integer_truncated_and_garbage() {
        let mut int_file = header_f32(&[2]);
        let pos = int_file.windows(3).position(|w| w == b"<f4").unwrap();
        int_file[pos..pos + 3].copy_from_slice(b"<i8");
        int_file.extend_from_slice(&[0; 16]);
        assert!(matches!(parse(&int_file), Err(ParseError::Dtype(d)) if d == "<i8"));

        let mut short = header_f32(&[4]);
        short.extend_from_slice(&[0; 8]);
        assert!(matches!(parse(&short), Err(ParseError::Format(_))));

        assert!(matches!(parse(b"hello world, not npy"), Err(ParseError::Format(_))));
    }

    #[test]
    fn unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        {
            let mut w = NpyWriter::create(&path, &[4]).unwrap();
            w.write(&[1.0, 2.0]).unwrap();
            // Dropped without finish: an interrupted run.
        }
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
