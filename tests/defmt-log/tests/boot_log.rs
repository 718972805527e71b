//! The defmt build under QEMU: the `defmt-semihosting` firmware sends its
//! log as defmt frames over semihosting and exits through semihosting like
//! the default build. Two images (scripts/test.sh builds them and copies
//! them to [`BOOT_ELF`] and [`PANIC_ELF`]) run on an emulated Cortex-M4F:
//! with `boot-only` it logs its boot lines and exits 0; with
//! `panic-at-boot` it logs its exit code and exits 2 instead of resetting as
//! on a board. The frames, decoded against the same ELF, must read as the
//! snapshot in `tests/snapshots/` once the figures that change from run to
//! run are normalised (`ddis_defmt_log::normalise`): proof that the defmt
//! build logs what the semihosting build does, interned strings and
//! arguments included.
//!
//! `DDIS_BLESS=1` rewrites the snapshots from this run instead of comparing
//! (review their diff before committing). `DDIS_SKIP_HIL=1` skips, as in
//! `tests/tests/hil.rs`, where QEMU cannot be installed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ddis_defmt_log::{decode, diff, normalise};

/// The `defmt-semihosting,boot-only` image, relative to the repository
/// root (scripts/test.sh).
const BOOT_ELF: &str = "firmware/target/ddis-firmware-defmt-boot";
/// The `defmt-semihosting,panic-at-boot` image.
const PANIC_ELF: &str = "firmware/target/ddis-firmware-defmt-panic";
/// Either run takes well under a second.
const QEMU_TIMEOUT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// Runs `elf` under QEMU to its semihosting exit: its exit code and the
/// bytes it wrote to semihosting stdout (the UART goes nowhere).
fn run_qemu(elf: &Path) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null"])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-arm (scripts/setup.sh installs it)");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = vec![];
        stdout.read_to_end(&mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for QEMU") {
            break status;
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            panic!("QEMU still running after {QEMU_TIMEOUT:?}: the firmware did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), out.join().unwrap().expect("QEMU's stdout"), err.join().unwrap().unwrap_or_default())
}

/// Runs `elf` (relative to the repository root), which must exit with
/// `code`, and compares its decoded, normalised log with `snapshot` (or
/// rewrites it under `DDIS_BLESS`).
fn check(elf: &str, code: i32, snapshot: &str) {
    if std::env::var_os("DDIS_SKIP_HIL").is_some() {
        eprintln!("DDIS_SKIP_HIL set: skipping the QEMU test");
        return;
    }
    let path = root().join(elf);
    assert!(path.is_file(), "{} missing: run scripts/test.sh (it builds the firmware first)", path.display());
    let (got_code, stream, stderr) = run_qemu(&path);
    let bytes = std::fs::read(&path).unwrap();
    let lines = decode(&bytes, &stream)
        .unwrap_or_else(|e| panic!("{elf}: decode the defmt stream ({} bytes): {e}", stream.len()));
    assert_eq!(got_code, Some(code), "{elf}: exit code; its log: {lines:#?}; QEMU's stderr: {stderr}");
    let got: Vec<String> = lines.iter().map(|l| normalise(l)).collect();

    let file = root().join(snapshot);
    if std::env::var_os("DDIS_BLESS").is_some() {
        std::fs::write(&file, got.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        eprintln!("DDIS_BLESS set: wrote {} ({} lines)", file.display(), got.len());
        return;
    }
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("read {} ({e}); write it with DDIS_BLESS=1", file.display()));
    let expected: Vec<String> = text.lines().map(String::from).collect();
    assert!(
        got == expected,
        "{elf}: the decoded defmt log differs from {snapshot} (- expected, + got):\n{}\n\
         If the change is intended, re-bless: DDIS_BLESS=1 cargo test --manifest-path tests/defmt-log/Cargo.toml",
        diff(&expected, &got)
    );
}

#[test]
fn defmt_boot_log_matches_snapshot() {
    check(BOOT_ELF, 0, "tests/snapshots/defmt-boot.log");
}

#[test]
fn defmt_panic_logs_its_code_and_exits_2() {
    check(PANIC_ELF, 2, "tests/snapshots/defmt-panic.log");
}
