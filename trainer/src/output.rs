//! Where the CLI's files come from and go: the shipped models found from
//! any working directory, output folders written whole (staged beside the
//! target, then swapped in, so a folder never mixes two runs' files), the
//! `run.json` record every reconstruction leaves, and warnings on stderr.
//!
//! It knows nothing about models or samplers: callers hand it paths and
//! JSON.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Environment variable that points at a models folder (an installed
/// binary has no repository beside it).
pub const MODELS_ENV: &str = "DDIS_MODELS";

/// The file that marks a folder as written by ddis (and records how).
pub const RECORD: &str = "run.json";

/// Prints a warning line: the run goes on, but the user should look.
pub fn warn(msg: impl Display) {
    eprintln!("warning: {msg}");
}

/// The shipped models folder: `$DDIS_MODELS` if set, else the `models/`
/// of the repository this binary was built from, else `./models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODELS_ENV) {
        return PathBuf::from(dir);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("models");
    if built.is_dir() {
        return built.canonicalize().unwrap_or(built);
    }
    PathBuf::from("models")
}

/// The shipped device artifact for a problem and grid
/// (`models/<pde><res>.ddis`).
pub fn shipped_artifact(pde: &str, res: usize) -> PathBuf {
    models_dir().join(format!("{pde}{res}.ddis"))
}

/// The folder of shipped host weights (`models/host`): run folders with
/// `config.json` and `model.bin`, found by `ddis eval`, `reconstruct` and
/// `export` when no run is named.
pub fn shipped_runs() -> PathBuf {
    models_dir().join("host")
}

/// Refuses an `out` that is a file, or a non-empty folder ddis did not
/// write (no [`RECORD`]) unless `force`.
fn check_replaceable(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("--out {} is a file, not a folder", out.display());
    }
    let empty = std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?.next().is_none();
    if !(empty || force || out.join(RECORD).is_file()) {
        bail!(
            "--out {} exists and was not written by ddis (no {RECORD}); choose another folder or pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// An output folder being written: files go into a hidden staging folder
/// beside `out`; [`Staged::commit`] swaps it in whole. Dropped without a
/// commit, the staging folder is removed and `out` is untouched.
#[derive(Debug)]
pub struct Staged {
    out: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl Staged {
    /// Starts writing `out`. An existing `out` must be empty or a folder
    /// ddis wrote (it holds [`RECORD`]) unless `force` is set: a user's own
    /// folder is never replaced by accident.
    pub fn new(out: &Path, force: bool) -> Result<Self> {
        check_replaceable(out, force)?;
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self { out: out.to_path_buf(), tmp, committed: false })
    }

    /// Where to write the files now.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// A file in the staging folder.
    pub fn join(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// The folder the files will end up in.
    pub fn target(&self) -> &Path {
        &self.out
    }

    /// Writes `record` as [`RECORD`] and swaps the staging folder in for
    /// `out` (the old folder, if any, is removed whole).
    pub fn commit(mut self, record: &serde_json::Value) -> Result<PathBuf> {
        let text = serde_json::to_string_pretty(record)? + "\n";
        std::fs::write(self.tmp.join(RECORD), text).with_context(|| format!("cannot write {RECORD}"))?;
        if self.out.exists() {
            let old = self.tmp.with_file_name(format!(
                "{}.old",
                self.tmp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            std::fs::rename(&self.out, &old).with_context(|| format!("cannot move {} aside", self.out.display()))?;
            std::fs::rename(&self.tmp, &self.out).with_context(|| format!("cannot write {}", self.out.display()))?;
            std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        } else {
            std::fs::rename(&self.tmp, &self.out).with_context(|| format!("cannot write {}", self.out.display()))?;
        }
        self.committed = true;
        Ok(self.out.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Prepares `out` for a command that writes its files one by one (so a
/// long run shows partial results): an existing folder ddis wrote is
/// removed whole first, a foreign one is refused unless `force`; then
/// `record` is written as [`RECORD`].
pub fn fresh_dir(out: &Path, force: bool, record: &serde_json::Value) -> Result<()> {
    check_replaceable(out, force)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join(RECORD), serde_json::to_string_pretty(record)? + "\n")
        .with_context(|| format!("cannot write {}", out.join(RECORD).display()))?;
    Ok(())
}

/// A short content hash of a file (FNV-1a 64, hex): enough to tell which
/// weights a `run.json` was made with; not a security hash.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:016x}", fnv1a(&bytes)))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `{"path": ..., "hash": ...}` for a model file (an artifact, or a run
/// folder's `model.bin`).
pub fn model_entry(path: &Path) -> Result<serde_json::Value> {
    let file = if path.is_dir() { path.join("model.bin") } else { path.to_path_buf() };
    Ok(serde_json::json!({ "path": path.display().to_string(), "fnv1a64": file_hash(&file)? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_folder_replaces_the_old_one_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("rec");
        let s = Staged::new(&out, false).unwrap();
        std::fs::write(s.join("a.txt"), "1").unwrap();
        std::fs::write(s.join("old-only.txt"), "x").unwrap();
        assert!(!out.exists(), "nothing lands before the commit");
        s.commit(&serde_json::json!({"k": 1})).unwrap();
        assert!(out.join("a.txt").is_file() && out.join(RECORD).is_file());

        let s = Staged::new(&out, false).unwrap();
        std::fs::write(s.join("a.txt"), "2").unwrap();
        s.commit(&serde_json::json!({"k": 2})).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "2");
        assert!(!out.join("old-only.txt").exists(), "files of the old run are gone");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no staging folder left behind: {left:?}");
    }

    #[test]
    fn an_abandoned_stage_leaves_nothing_and_a_foreign_folder_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("rec");
        {
            let s = Staged::new(&out, false).unwrap();
            std::fs::write(s.join("a.txt"), "1").unwrap();
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

        let mine = tmp.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("notes.txt"), "keep").unwrap();
        let err = Staged::new(&mine, false).unwrap_err().to_string();
        assert!(err.contains("--force") && err.contains("not written by ddis"), "{err}");
        assert!(Staged::new(&mine, true).is_ok());
    }

    #[test]
    fn hashes_differ_for_different_bytes() {
        assert_ne!(fnv1a(b"ab"), fnv1a(b"ba"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
