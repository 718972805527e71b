//! Reading and writing NumPy `.npy` files (format versions 1-3).
//!
//! Datasets and user fields cross this boundary, so reading checks the
//! header fully and names what is wrong before any value is read; writing is
//! atomic (a temporary file in the same directory, renamed into place), so an
//! interrupted write never leaves a file that looks complete.
//!
//! Headers are read by `npyz`; the values stream from the file, so a reader
//! holds one copy of the array ([`read`]) or none ([`NpyReader`]). Headers
//! are written here, in numpy's own form (`'shape': (2, 3, 4)`), where
//! `npyz` would write `(2, 3, 4, )`: every file ddis writes stays byte for
//! byte what `np.save` and earlier versions of ddis write.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, Order};

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

/// Reads a float32 or float64 `.npy` file into f32, C order.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let reader = NpyReader::open(path)?;
    let shape = reader.shape().to_vec();
    let data = reader.collect::<Result<Vec<f32>, NpyError>>()?;
    Ok(NpyArray { shape, data })
}

/// An `.npy` file opened for reading: the header is checked (a float dtype,
/// C order, and exactly the data bytes the shape needs) and the values
/// stream from the file in C order, narrowed to f32, one `Result` each.
pub struct NpyReader {
    path: PathBuf,
    shape: Vec<usize>,
    values: Values,
}

/// The element types we read. Float64 is accepted and narrowed, since users
/// bring fields from numpy whose default dtype is float64.
enum Values {
    F32(npyz::NpyReader<f32, BufReader<File>>),
    F64(npyz::NpyReader<f64, BufReader<File>>),
}

impl NpyReader {
    /// Opens `path` and checks its header against the file's length; no
    /// value is read yet.
    pub fn open(path: &Path) -> Result<Self, NpyError> {
        let io_err = |source| NpyError::Io { path: path.to_path_buf(), source };
        let format = |reason: String| NpyError::Format { path: path.to_path_buf(), reason };
        let file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut input = BufReader::new(file);
        let header = npyz::NpyHeader::from_reader(&mut input).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => format("truncated header".into()),
            io::ErrorKind::InvalidData => format(e.to_string()),
            _ => io_err(e),
        })?;
        let data_start = input.stream_position().map_err(io_err)?;
        let width = match header.dtype() {
            DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && matches!(t.size_field(), 4 | 8) => {
                t.size_field()
            }
            DType::Plain(t) => return Err(NpyError::Dtype { path: path.to_path_buf(), descr: t.to_string() }),
            other => return Err(NpyError::Dtype { path: path.to_path_buf(), descr: other.descr() }),
        };
        if header.order() != Order::C {
            return Err(format("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)".into()));
        }
        let shape = header
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format("shape overflows".into()))?;
        let payload = file_len.saturating_sub(data_start);
        let expected = shape
            .iter()
            .try_fold(width, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| format("shape overflows".into()))?;
        if payload != expected {
            return Err(format(format!("shape {shape:?} needs {expected} data bytes, file has {payload}")));
        }
        let file = NpyFile::with_header(header, input);
        let dtype_err = |e: npyz::DTypeError| format(e.to_string());
        let values = if width == 4 {
            Values::F32(file.data().map_err(dtype_err)?)
        } else {
            Values::F64(file.data().map_err(dtype_err)?)
        };
        Ok(Self { path: path.to_path_buf(), shape, values })
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Iterator for NpyReader {
    type Item = Result<f32, NpyError>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = match &mut self.values {
            Values::F32(r) => r.next()?,
            Values::F64(r) => r.next()?.map(|v| v as f32),
        };
        Some(value.map_err(|source| NpyError::Io { path: self.path.clone(), source }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.values {
            Values::F32(r) => r.size_hint(),
            Values::F64(r) => r.size_hint(),
        }
    }
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

    /// `bytes` as a file in `dir`, read back.
    fn read_bytes(dir: &tempfile::TempDir, bytes: &[u8]) -> Result<NpyArray, NpyError> {
        let path = dir.path().join("x.npy");
        fs::write(&path, bytes).unwrap();
        read(&path)
    }

    /// A header as numpy writes one for `descr`, `fortran` and `shape`.
    fn numpy_header(descr: &str, fortran: bool, shape: &str) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while !(10 + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        let mut bytes = Vec::from(&MAGIC[..]);
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes
    }

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[2, 3, 4], &data).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert_eq!(back.data, data);
        let streamed = NpyReader::open(&path).unwrap();
        assert_eq!(streamed.shape(), [2, 3, 4]);
        assert_eq!(streamed.map(Result::unwrap).collect::<Vec<_>>(), data);
    }

    #[test]
    fn headers_are_written_as_numpy_writes_them() {
        // np.save of float32 arrays of these shapes: the same header bytes.
        for (shape, text) in [(&[2usize, 3, 4][..], "(2, 3, 4)"), (&[7], "(7,)"), (&[32, 32], "(32, 32)"), (&[], "()")]
        {
            assert_eq!(header_f32(shape), numpy_header("<f4", false, text), "{shape:?}");
            assert_eq!(header_f32(shape).len() % 64, 0);
        }
    }

    #[test]
    fn reads_numpy_written_float64_and_big_endian() {
        let dir = tempfile::tempdir().unwrap();
        // np.save(f, np.array([[1.5, -2.0]])): float64, as numpy writes it.
        let mut bytes = numpy_header("<f8", false, "(1, 2)");
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        let arr = read_bytes(&dir, &bytes).unwrap();
        assert_eq!((arr.shape, arr.data), (vec![1, 2], vec![1.5, -2.0]));
        // np.save(f, np.array([0.25, 3.0], dtype='>f4')).
        let mut bytes = numpy_header(">f4", false, "(2,)");
        bytes.extend_from_slice(&0.25f32.to_be_bytes());
        bytes.extend_from_slice(&3.0f32.to_be_bytes());
        assert_eq!(read_bytes(&dir, &bytes).unwrap().data, vec![0.25, 3.0]);
    }

    #[test]
    fn rejects_integer_truncated_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let mut ints = numpy_header("<i8", false, "(2,)");
        ints.extend_from_slice(&[0; 16]);
        assert!(matches!(read_bytes(&dir, &ints), Err(NpyError::Dtype { descr, .. }) if descr == "<i8"));

        let mut short = header_f32(&[4]);
        short.extend_from_slice(&[0; 8]);
        let err = read_bytes(&dir, &short).unwrap_err().to_string();
        assert!(err.contains("shape [4] needs 16 data bytes, file has 8"), "{err}");
        let mut long = header_f32(&[1]);
        long.extend_from_slice(&[0; 8]);
        let err = read_bytes(&dir, &long).unwrap_err().to_string();
        assert!(err.contains("needs 4 data bytes, file has 8"), "{err}");

        let head = header_f32(&[4]);
        let err = read_bytes(&dir, &head[..40]).unwrap_err().to_string();
        assert!(err.contains("not a valid .npy file: truncated header"), "{err}");

        for garbage in [&b"hello world, not npy"[..], b"", b"\x93NUMPY\x09\x00\x10\x00"] {
            let err = read_bytes(&dir, garbage).unwrap_err();
            assert!(matches!(err, NpyError::Format { .. }), "{garbage:?}: {err}");
        }
    }

    #[test]
    fn rejects_fortran_order_and_absurd_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let mut fortran = numpy_header("<f4", true, "(1, 1)");
        fortran.extend_from_slice(&[0; 4]);
        let err = read_bytes(&dir, &fortran).unwrap_err().to_string();
        assert!(err.contains("Fortran-ordered"), "{err}");
        // A damaged shape whose element count overflows 64 bits: an error
        // before anything is allocated, never a panic.
        let mut huge = numpy_header("<f4", false, "(4294967296, 4294967296, 16)");
        huge.extend_from_slice(&[0; 4]);
        let err = read_bytes(&dir, &huge).unwrap_err().to_string();
        assert!(err.contains("not a valid .npy file"), "{err}");
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
