//! Files written whole or not at all: every file the CLI writes goes to a
//! hidden sibling (`.NAME.partial-PID`) and is renamed into place once
//! complete and synced, so a killed run never leaves a half-written file
//! under the final name. A leaf module (std only): the sensor files, the
//! `.npy` writer, reports and artifacts all use it. Whole folders are staged
//! the same way by `output::Staged`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The hidden sibling `path` is written to before the rename.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes `bytes` to `path` through [`temp_sibling`]: create, write, sync,
/// rename. On failure the sibling is removed (best effort) and the error of
/// the failing step returned; an existing file at `path` is untouched.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_sibling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no partial file left");
        // A target that cannot be created: the error comes back, nothing is left.
        let bad = dir.path().join("missing").join("b.csv");
        assert!(write(&bad, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
