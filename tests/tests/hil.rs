//! Hardware in the loop under QEMU: the firmware (built by scripts/test.sh,
//! `cargo build --release` in firmware/) boots on an emulated Cortex-M4F,
//! and every field it returns must equal the host runtime's bit for bit
//! (two NaNs count as equal) for the same artifact, readings and seed.
//! Hostile frames each get an error and the device keeps serving. The
//! Poisson image (`DDIS_ARTIFACT=../models/poisson32.ddis`, copied to
//! [`POISSON_ELF`] by scripts/test.sh) is checked the same way.
//!
//! Set `DDIS_SKIP_HIL=1` to skip where QEMU cannot be installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ddis_runtime::protocol::{self, ErrorCode, ReconstructRequest, Request};
use ddis_trainer::device::{self, Device, QemuOptions, Reply};
use ddis_trainer::pde::{PdeConfig, PdeKind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Instructions per posterior sample measured with the shipped artifacts
/// (Gauss-Newton step, exact physics, 10 levels; docs/results.md), by
/// sensor count. The test fails 5 % above them: a slower device is a
/// regression to explain, not noise (`-icount` counts are exact).
const MEASURED_INSTRUCTIONS: [(usize, u64); 2] = [(31, 953_978_400), (100, 1_857_357_200)];
/// The Poisson image with 31 sensors.
const MEASURED_POISSON_INSTRUCTIONS: u64 = 907_200_480;
/// Allowed growth over the measured counts.
const INSTRUCTION_SLACK: f64 = 1.05;

fn under_ceiling(what: &str, got: u64, measured: u64) {
    let ceiling = (measured as f64 * INSTRUCTION_SLACK) as u64;
    assert!(
        got <= ceiling,
        "{what}: {got} instructions per posterior sample, ceiling {ceiling} (measured {measured} + 5 %)"
    );
}

/// The firmware image embedding `models/poisson32.ddis` (scripts/test.sh).
const POISSON_ELF: &str = "firmware/target/ddis-firmware-poisson";

/// Boots the default firmware image, or `None` when HIL tests are off.
fn boot() -> Option<Device> {
    boot_elf(device::DEFAULT_ELF)
}

/// Boots the firmware image at `elf` (relative to the repository root).
fn boot_elf(elf: &str) -> Option<Device> {
    if std::env::var_os("DDIS_SKIP_HIL").is_some() {
        eprintln!("DDIS_SKIP_HIL set: skipping the QEMU test");
        return None;
    }
    let elf = root().join(elf);
    assert!(elf.is_file(), "{} missing: run scripts/test.sh (it builds the firmware first)", elf.display());
    let opts = QemuOptions { elf, ..QemuOptions::default() };
    Some(device::run_qemu(&opts, Duration::from_secs(300)).expect("boot the firmware in QEMU"))
}

fn same_bits(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).position(|(x, y)| !(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())))
}

fn expect_error(dev: &mut Device, what: &str, want: Option<ErrorCode>) {
    match dev.recv().unwrap_or_else(|e| panic!("{what}: no answer: {e:#}")) {
        Reply::Error { code, detail } => {
            if let Some(w) = want {
                assert_eq!(code, w, "{what}: code (detail {detail})");
            }
            eprintln!("{what}: {code:?} (detail {detail})");
        }
        other => panic!("{what}: expected an error, got {other:?}"),
    }
}

#[test]
fn device_matches_host_runtime_bit_for_bit_and_survives_hostile_frames() {
    let Some(mut dev) = boot() else { return };
    let bytes = std::fs::read(root().join("models/darcy32.ddis")).expect("models/darcy32.ddis");
    dev.ping(1).unwrap();
    let info = dev.info().unwrap();
    eprintln!("device: {info:?}");
    assert_eq!(info.protocol, protocol::PROTOCOL_VERSION);
    assert_eq!(info.artifact_bytes as usize, bytes.len());
    assert_eq!(info.artifact_crc, ddis_runtime::Artifact::parse(&bytes).unwrap().crc());
    let n = usize::from(info.n);

    // Cases: (sensors, noise, case seed, sampler seed, samples).
    let pde = PdeConfig::for_kind(PdeKind::Darcy);
    let cases = [(31usize, 0.0, 3u64, 7u64, 1u8), (100, 0.01, 4, 12345, 1)];
    for (k, &(count, noise, case_seed, seed, samples)) in cases.iter().enumerate() {
        let (_, obs) = ddis_trainer::eval::synthetic_case(&pde, n, count, noise, case_seed).unwrap();
        let host = ddis_trainer::export::runtime_posterior(&bytes, &obs, usize::from(samples), seed).unwrap();
        let t0 = Instant::now();
        let run = dev.reconstruct(n, &device::sensor_rows(&obs), noise as f32, seed, samples, true).unwrap();
        eprintln!(
            "case {k}: {count} sensors, seed {seed}: {} instructions (~{:.1} ms at 168 MHz, estimate from instructions), {:.1} s under QEMU",
            run.report.instructions,
            run.report.instructions as f64 / 168e3,
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(same_bits(&run.mean, &host.mean), None, "case {k}: mean differs from the host runtime");
        assert_eq!(same_bits(&run.std, &host.std), None, "case {k}: std differs from the host runtime");
        assert_eq!(run.report.denoiser_calls, host.stats.denoiser_calls);
        assert_eq!(run.report.clamped, host.stats.clamped);
        assert!(run.report.instructions > 0);
        let measured = MEASURED_INSTRUCTIONS.iter().find(|(k, _)| *k == count).map(|&(_, m)| m).unwrap();
        under_ceiling(&format!("case {k}"), run.report.instructions / u64::from(samples), measured);
        assert_eq!(run.report.clamped, 0, "the Gauss-Newton step never clamps");
    }

    // Hostile frames: each answered with an error, then a ping still works.
    let ping = device::encode(&Request::Ping { nonce: 2 }).unwrap();
    let mut flipped = ping.clone();
    flipped[2] ^= 0x10;
    dev.send_raw(&flipped).unwrap();
    expect_error(&mut dev, "bad CRC", None);
    dev.ping(3).unwrap();

    dev.send_raw(&ping[..ping.len() / 2]).unwrap();
    dev.send_raw(&ping).unwrap();
    expect_error(&mut dev, "truncated", None);
    match dev.recv().unwrap() {
        Reply::Pong(2) => {}
        other => panic!("after a truncated frame: {other:?}"),
    }

    dev.send_raw(b"\x01garbage\xff\xfe between frames").unwrap();
    dev.ping(4).unwrap_err(); // the garbage's own error comes first ...
    match dev.recv().unwrap() {
        Reply::Pong(4) => {}
        other => panic!("after garbage: {other:?}"),
    }

    let mut big = vec![0u8];
    big.extend(std::iter::repeat_n(0x42u8, protocol::MAX_WIRE + 500));
    big.push(0);
    dev.send_raw(&big).unwrap();
    expect_error(&mut dev, "oversized", Some(ErrorCode::Oversized));
    dev.ping(5).unwrap();

    type Case = (&'static str, Vec<(f32, f32, f32)>, ErrorCode);
    let hostile_sensors: [Case; 7] = [
        ("NaN value", vec![(0.5, 0.5, 1.0), (0.25, 0.25, f32::NAN)], ErrorCode::SensorNotFinite),
        // Darcy's u lies in [0, 0.018]: the device accepts [-0.018, 0.036].
        ("reading of 5", vec![(0.5, 0.5, 0.01), (0.25, 0.25, 5.0)], ErrorCode::ReadingOutOfRange),
        ("reading of 3e19", vec![(0.5, 0.5, 3e19)], ErrorCode::ReadingOutOfRange),
        ("off the grid", vec![(1.5, 0.5, 1.0)], ErrorCode::SensorOffGrid),
        ("NaN position", vec![(f32::NAN, 0.5, 1.0)], ErrorCode::SensorOffGrid),
        ("no sensors", vec![], ErrorCode::NoSensors),
        ("duplicate", vec![(0.5, 0.5, 1.0), (0.5, 0.5, 2.0)], ErrorCode::DuplicateSensor),
    ];
    for (what, rows, code) in hostile_sensors {
        let err = dev.reconstruct(n, &rows, 0.0, 1, 1, false).unwrap_err();
        assert!(format!("{err}").contains(&format!("{code:?}")), "{what}: {err}");
        dev.ping(6).unwrap();
    }
    // Too many sensors: 257 records (one over MAX_SENSORS) still fit one frame.
    let rows: Vec<_> =
        (0..ddis_runtime::MAX_SENSORS + 1).map(|k| ((k % 32) as f32 / 31.0, (k / 32) as f32 / 31.0, 1.0)).collect();
    let err = dev.reconstruct(n, &rows, 0.0, 1, 1, false).unwrap_err();
    assert!(format!("{err}").contains("TooManySensors"), "{err}");
    let err = dev.reconstruct(n, &[(0.5, 0.5, 1.0)], f32::NAN, 1, 1, false).unwrap_err();
    assert!(format!("{err}").contains("InvalidParameter"), "{err}");
    let err = dev.reconstruct(n, &[(0.5, 0.5, 1.0)], 0.0, 1, 0, false).unwrap_err();
    assert!(format!("{err}").contains("InvalidParameter"), "{err}");
    let over = protocol::MAX_SAMPLES + 1;
    let err = dev.reconstruct(n, &[(0.5, 0.5, 0.01)], 0.0, 1, over, false).unwrap_err();
    assert!(format!("{err}").contains("TooManySamples"), "{err}");
    let err = dev.reconstruct(n, &[(0.5, 0.5, 0.01)], 1.0, 1, 1, false).unwrap_err();
    assert!(format!("{err}").contains("InvalidParameter (detail 1)"), "noise wider than the reading range: {err}");
    dev.ping(8).unwrap();
    let packed = [0u8; 13];
    let req = Request::Reconstruct(ReconstructRequest {
        seed: 1,
        samples: 1,
        want_std: false,
        noise_sigma: 0.0,
        sensors: &packed,
    });
    dev.send(&req).unwrap();
    expect_error(&mut dev, "partial sensor record", Some(ErrorCode::BadSensorBytes));
    dev.ping(7).unwrap();

    let info = dev.info().unwrap();
    eprintln!(
        "stack high-water {} of {} B; workspace {} B (static)",
        info.stack_high_water, info.stack_bytes, info.workspace_bytes
    );
    assert!(info.stack_high_water > 0 && info.stack_high_water < info.stack_bytes);
}

#[test]
fn poisson_image_matches_host_runtime_bit_for_bit() {
    let Some(mut dev) = boot_elf(POISSON_ELF) else { return };
    let bytes = std::fs::read(root().join("models/poisson32.ddis")).expect("models/poisson32.ddis");
    let info = dev.info().unwrap();
    assert_eq!(info.artifact_crc, ddis_runtime::Artifact::parse(&bytes).unwrap().crc(), "the image embeds poisson32");
    let n = usize::from(info.n);
    let pde = PdeConfig::for_kind(PdeKind::Poisson);
    let (_, obs) = ddis_trainer::eval::synthetic_case(&pde, n, 31, 0.0, 5).unwrap();
    let host = ddis_trainer::export::runtime_posterior(&bytes, &obs, 1, 9).unwrap();
    let run = dev.reconstruct(n, &device::sensor_rows(&obs), 0.0, 9, 1, true).unwrap();
    eprintln!("poisson: {} instructions", run.report.instructions);
    under_ceiling("poisson", run.report.instructions, MEASURED_POISSON_INSTRUCTIONS);
    assert_eq!(same_bits(&run.mean, &host.mean), None, "mean differs from the host runtime");
    assert_eq!(same_bits(&run.std, &host.std), None, "std differs from the host runtime");
    assert_eq!((run.report.guide_calls, run.report.clamped), (host.stats.guide_calls, host.stats.clamped));
}
