//! `ddis device`: one reconstruction on the firmware from a readings file,
//! written as `ddis reconstruct` writes its own, with Ctrl-C cancelling the
//! request on the device.

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ddis_runtime::protocol::{DeviceInfo, MAX_SAMPLES, PROTOCOL_VERSION};

use super::DeviceRun;
use crate::board::link::{QemuOptions, run_qemu, run_serial};
use crate::observe::Observations;

/// Sensor rows `(x, y, value)` of observations, as the device receives them.
pub fn sensor_rows(obs: &Observations) -> Vec<(f32, f32, f32)> {
    (0..obs.len())
        .map(|k| {
            let (x, y) = obs.xy(k);
            (x as f32, y as f32, obs.values[k] as f32)
        })
        .collect()
}

/// Where `ddis device` finds the device.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Boot the firmware in QEMU.
    Qemu(QemuOptions),
    /// A real board on a serial port.
    Serial {
        /// e.g. `/dev/ttyACM0`.
        port: String,
        /// Baud rate (the firmware's UART divider assumes 115200).
        baud: u32,
    },
}

/// The inputs of `ddis device`.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// How to reach the device.
    pub transport: Transport,
    /// Readings (CSV `x,y,value` or npy), as `ddis reconstruct --obs`.
    pub obs: PathBuf,
    /// Noise level of the readings.
    pub noise: f64,
    /// Output directory (mean.npy, std.npy, readings.csv, panel.png,
    /// run.json), replaced whole.
    pub out: PathBuf,
    /// Replace `out` even if ddis did not write it.
    pub force: bool,
    /// Sampler seed.
    pub seed: u64,
    /// Posterior samples (1 to [`MAX_SAMPLES`]).
    pub samples: u8,
    /// Longest wait for one reconstruction.
    pub timeout: Duration,
}

/// What `ddis device` did.
#[derive(Clone, Debug)]
pub struct DeviceResult {
    /// The device's identity and budget (after the run: the stack high-water
    /// mark includes it).
    pub info: DeviceInfo,
    /// The fields and counters.
    pub run: DeviceRun,
    /// Wall-clock seconds of the reconstruction on the host side.
    pub seconds: f64,
    /// The firmware's log (QEMU only).
    pub log: String,
}

/// Set by the first Ctrl-C after [`cancel_on_ctrl_c`].
static CTRL_C: AtomicBool = AtomicBool::new(false);

/// Arms a Ctrl-C handler (once per process) and returns the flag it sets:
/// the first press asks the running request to stop (the client sends
/// `Cancel` and waits for `Cancelled`), a second press ends the process
/// at once (exit code 130).
pub fn cancel_on_ctrl_c() -> Result<&'static AtomicBool> {
    static ARM: Once = Once::new();
    let mut armed = Ok(());
    ARM.call_once(|| {
        armed = ctrlc::set_handler(|| {
            if CTRL_C.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
            eprintln!("Ctrl-C: cancelling the request on the device (press again to quit at once)");
        });
    });
    armed.context("install the Ctrl-C handler")?;
    Ok(&CTRL_C)
}

/// `ddis device`: reads the readings, runs one reconstruction on the device
/// and writes the same files as `ddis reconstruct` into `opts.out`. Ctrl-C
/// during the run cancels it on the device ([`cancel_on_ctrl_c`]).
pub fn device_reconstruct(opts: &DeviceOptions) -> Result<DeviceResult> {
    ensure!(
        (1..=MAX_SAMPLES).contains(&opts.samples),
        "--samples must be 1 to {MAX_SAMPLES} on the device (the per-request cap of protocol version \
         {PROTOCOL_VERSION}; `ddis reconstruct --artifact` runs the same sampler on the host without it)"
    );
    let mut dev = match &opts.transport {
        Transport::Qemu(q) => run_qemu(q, opts.timeout)?,
        Transport::Serial { port, baud } => run_serial(port, *baud, opts.timeout)?,
    };
    dev.ping(0xDD15)?;
    let info = dev.info()?;
    ensure!(
        info.protocol == PROTOCOL_VERSION,
        "the device speaks protocol version {}, this host version {PROTOCOL_VERSION} (each version adds answers \
         the other cannot decode, docs/protocol.md): flash a firmware built from this ddis, or use the ddis it was \
         built with",
        info.protocol
    );
    let n = usize::from(info.n);
    let obs = Observations::load(&opts.obs, n, opts.noise).with_context(|| format!("read {}", opts.obs.display()))?;
    for w in obs.warnings(None) {
        crate::output::warn(w);
    }
    let out = crate::output::Staged::new(&opts.out, opts.force)?;
    let t0 = Instant::now();
    let cancel = cancel_on_ctrl_c()?;
    let rows = sensor_rows(&obs);
    let run = dev.reconstruct_cancellable(n, &rows, opts.noise as f32, opts.seed, opts.samples, true, cancel)?;
    let seconds = t0.elapsed().as_secs_f64();
    let info = dev.info()?;
    crate::npy::write(&out.join("mean.npy"), &[n, n], &run.mean)?;
    crate::npy::write(&out.join("std.npy"), &[n, n], &run.std)?;
    obs.write_csv(&out.join("readings.csv"))?;
    crate::eval::write_panel(&out.join("panel.png"), n, None, &obs, &run.mean, &run.std)?;
    let record = serde_json::json!({
        "command": "device",
        "ddis_version": env!("CARGO_PKG_VERSION"),
        "device": { "n": info.n, "max_sensors": info.max_sensors, "artifact_crc32": format!("{:#010x}", info.artifact_crc) },
        "readings": { "file": opts.obs.display().to_string(), "count": obs.len(), "noise_std": opts.noise },
        "samples": opts.samples,
        "seed": opts.seed,
        "seconds": { "wall": seconds },
        "instructions": run.report.instructions,
        "stack_high_water": info.stack_high_water,
    });
    out.commit(&record)?;
    Ok(DeviceResult { info, run, seconds, log: dev.log() })
}
