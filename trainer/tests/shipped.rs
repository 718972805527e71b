//! The shipped default artifact (`models/darcy32.ddis`) and the main job
//! (`ddis demo`) as a newcomer runs them: the artifact parses, fits the
//! device budget (<= 1 MiB flash, <= 256 KiB workspace), and the demo
//! reconstructs a fresh truth through the runtime and writes its panel.

use std::path::Path;
use std::process::Command;

/// The device budget of DESIGN.md section 7 / the firmware's linker script.
const FLASH_BUDGET: usize = 1024 * 1024;
const RAM_BUDGET: usize = 256 * 1024;

fn artifact() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/darcy32.ddis")
}

#[test]
fn shipped_artifact_fits_the_device() {
    let bytes = std::fs::read(artifact()).expect("models/darcy32.ddis is shipped in the repository");
    let art = ddis_runtime::Artifact::parse(&bytes).expect("the shipped artifact parses");
    assert_eq!(art.n(), 32);
    assert!(bytes.len() <= FLASH_BUDGET, "artifact {} bytes", bytes.len());
    let ws = art.workspace_bytes().expect("complete sampler artifact");
    assert!(ws <= RAM_BUDGET, "workspace {ws} bytes");
}

#[test]
fn demo_runs_out_of_the_box() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--samples", "1", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("relative L2 error") && stdout.contains("error rate"), "{stdout}");
    for f in ["panel.png", "mean.npy", "std.npy", "truth.npy", "readings.csv"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The user's own readings: the CSV the demo wrote reads back.
    let again = tmp.path().join("again");
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--samples", "1", "--obs"])
        .arg(out.join("readings.csv"))
        .args(["--out", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(again.join("panel.png").exists());
}
