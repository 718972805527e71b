//! The board link (module `board`, so that "device" keeps meaning the burn
//! device and `--size device`): the host end of the serial link to a board,
//! a client of `ddis_runtime::protocol` over QEMU's UART socket ([`run_qemu`]) or a real serial port
//! ([`run_serial`]), and [`device_reconstruct`], the body of `ddis device`.
//! It frames, sends and waits; all numerics happen on the device. While it
//! waits for a reconstruction it watches a cancel flag (Ctrl-C sets it,
//! [`cancel_on_ctrl_c`]): it then sends `Cancel` and waits for the device's
//! `Cancelled` answer, so the device is free again when the command ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ddis_runtime::protocol::{
    self, DELIMITER, DeviceInfo, ErrorCode, FIELD_MEAN, FIELD_STD, MAX_FRAME, MAX_SAMPLES, MAX_WIRE, PROTOCOL_VERSION,
    ReconstructRequest, Request, Response, RunReport,
};

use crate::observe::Observations;

/// Default QEMU board: Cortex-M4F (the ELF also runs on `mps2-an500`).
pub const DEFAULT_MACHINE: &str = "mps2-an386";
/// Default firmware image, as `cargo build --release` in `firmware/` writes it.
pub const DEFAULT_ELF: &str = "firmware/target/thumbv7em-none-eabihf/release/ddis-firmware";

/// A byte stream with a read timeout.
pub trait Link: Read + Write + Send {
    /// Sets how long a read may wait for the first byte.
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl Link for TcpStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

struct Serial(Box<dyn serialport::SerialPort>);

impl Read for Serial {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Serial {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Link for Serial {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.0.set_timeout(t).map_err(std::io::Error::other)
    }
}

/// One decoded response, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// [`Response::Pong`].
    Pong(u32),
    /// [`Response::Info`].
    Info(DeviceInfo),
    /// [`Response::Field`] with its values decoded.
    Field {
        /// [`FIELD_MEAN`] or [`FIELD_STD`].
        which: u8,
        /// First index.
        offset: u32,
        /// The values (raw bits).
        values: Vec<f32>,
    },
    /// [`Response::Done`].
    Done(RunReport),
    /// [`Response::Error`].
    Error {
        /// What the device refused.
        code: ErrorCode,
        /// Where.
        detail: u32,
    },
}

/// What one reconstruction on the device returned.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRun {
    /// Pointwise posterior mean, row-major `n x n`.
    pub mean: Vec<f32>,
    /// Pointwise std (empty unless asked for).
    pub std: Vec<f32>,
    /// Counters and the instruction count.
    pub report: RunReport,
}

/// A connected device: the link, a receive buffer, and (under QEMU) the
/// emulator process and its semihosting log.
pub struct Device {
    link: Box<dyn Link>,
    rx: Vec<u8>,
    timeout: Duration,
    qemu: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(child) = &mut self.qemu {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How to reach QEMU's firmware.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    /// `qemu-system-arm` (or a path to it).
    pub qemu: PathBuf,
    /// Board, e.g. [`DEFAULT_MACHINE`].
    pub machine: String,
    /// The firmware ELF.
    pub elf: PathBuf,
    /// How long to wait for the firmware to connect.
    pub boot_timeout: Duration,
}

impl Default for QemuOptions {
    fn default() -> Self {
        Self {
            qemu: PathBuf::from("qemu-system-arm"),
            machine: DEFAULT_MACHINE.into(),
            elf: PathBuf::from(DEFAULT_ELF),
            boot_timeout: Duration::from_secs(60),
        }
    }
}

/// Boots the firmware in QEMU with its UART0 on a TCP socket this process
/// listens on first (no port race), `-icount shift=0` so the firmware's
/// SysTick counts instructions, and semihosting for its log and exit code.
pub fn run_qemu(opts: &QemuOptions, timeout: Duration) -> Result<Device> {
    ensure!(
        opts.elf.is_file(),
        "firmware image {} not found (build it in firmware/ with cargo build --release)",
        opts.elf.display()
    );
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a local port for QEMU's UART")?;
    let port = listener.local_addr()?.port();
    let mut child = Command::new(&opts.qemu)
        .args(["-machine", &opts.machine, "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(&opts.elf)
        .args(["-chardev", &format!("socket,id=u0,host=127.0.0.1,port={port}"), "-serial", "chardev:u0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", opts.qemu.display()))?;
    let log = Arc::new(Mutex::new(String::new()));
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as _),
    ]
    .into_iter()
    .flatten()
    {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
                    bail!("QEMU exited ({status}) before connecting: {text}");
                }
                if start.elapsed() > opts.boot_timeout {
                    let _ = child.kill();
                    bail!("QEMU did not connect within {:?}", opts.boot_timeout);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("accept QEMU's connection"),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let mut dev = Device { link: Box::new(stream), rx: Vec::new(), timeout, qemu: Some(child), log };
    dev.link.set_timeout(Duration::from_millis(200))?;
    Ok(dev)
}

/// Opens a real board on `port` (e.g. `/dev/ttyACM0`) at `baud`.
pub fn run_serial(port: &str, baud: u32, timeout: Duration) -> Result<Device> {
    let sp = serialport::new(port, baud)
        .timeout(Duration::from_millis(200))
        .open()
        .with_context(|| format!("open {port}"))?;
    Ok(Device { link: Box::new(Serial(sp)), rx: Vec::new(), timeout, qemu: None, log: Arc::default() })
}

impl Device {
    /// The firmware's semihosting log so far (QEMU only).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sets how long [`Self::recv`] waits for one response.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Writes raw bytes (for tests of hostile input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.link.write_all(bytes)?;
        self.link.flush()?;
        Ok(())
    }

    /// Sends one request frame.
    pub fn send(&mut self, req: &Request<'_>) -> Result<()> {
        let frame = encode(req)?;
        self.send_raw(&frame)
    }

    /// Waits for the next response frame.
    pub fn recv(&mut self) -> Result<Reply> {
        self.recv_watch(None)?.ok_or_else(|| anyhow!("no reply"))
    }

    /// [`Self::recv`], but returns `None` as soon as `cancel` is set (it
    /// is looked at before each read, at least every 200 ms).
    pub fn recv_watch(&mut self, cancel: Option<&AtomicBool>) -> Result<Option<Reply>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Ok(None);
            }
            if let Some(end) = self.rx.iter().position(|&b| b == DELIMITER) {
                let mut block: Vec<u8> = self.rx.drain(..=end).collect();
                block.pop();
                if block.is_empty() {
                    continue;
                }
                let resp: Response<'_> =
                    protocol::decode_frame(&mut block).map_err(|e| anyhow!("bad frame from the device: {e:?}"))?;
                return Ok(Some(owned(resp)));
            }
            if Instant::now() > deadline {
                let qemu = self.log();
                bail!(
                    "no response from the device within {:?}{}",
                    self.timeout,
                    if qemu.is_empty() { String::new() } else { format!("; its log: {qemu}") }
                );
            }
            if let Some(child) = &mut self.qemu
                && let Some(status) = child.try_wait()?
            {
                bail!("QEMU exited ({status}); its log: {}", self.log());
            }
            let mut buf = [0u8; 4096];
            match self.link.read(&mut buf) {
                Ok(0) => bail!("the device closed the link; log: {}", self.log()),
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(e).context("read from the device"),
            }
        }
    }

    /// Ping with `nonce`; errors unless the same nonce comes back.
    pub fn ping(&mut self, nonce: u32) -> Result<()> {
        self.send(&Request::Ping { nonce })?;
        match self.recv()? {
            Reply::Pong(n) if n == nonce => Ok(()),
            other => bail!("expected Pong({nonce}), got {other:?}"),
        }
    }

    /// The device's identity and budget.
    pub fn info(&mut self) -> Result<DeviceInfo> {
        self.send(&Request::Info)?;
        match self.recv()? {
            Reply::Info(i) => Ok(i),
            other => bail!("expected Info, got {other:?}"),
        }
    }

    /// One reconstruction from `(x, y, value)` rows; an error response from
    /// the device becomes an `Err` naming its code.
    pub fn reconstruct(
        &mut self,
        n: usize,
        rows: &[(f32, f32, f32)],
        noise_sigma: f32,
        seed: u64,
        samples: u8,
        want_std: bool,
    ) -> Result<DeviceRun> {
        self.reconstruct_cancellable(n, rows, noise_sigma, seed, samples, want_std, &AtomicBool::new(false))
    }

    /// [`Self::reconstruct`] that sends `Cancel` once `cancel` is set and
    /// then waits for the device's `Cancelled` answer (or, when the run had
    /// finished first, for its fields and the `NotRunning` answer to the
    /// cancel), so the device is idle when this returns. A cancelled run is
    /// an `Err` that says so.
    #[allow(clippy::too_many_arguments)]
    pub fn reconstruct_cancellable(
        &mut self,
        n: usize,
        rows: &[(f32, f32, f32)],
        noise_sigma: f32,
        seed: u64,
        samples: u8,
        want_std: bool,
        cancel: &AtomicBool,
    ) -> Result<DeviceRun> {
        let mut packed = vec![0u8; rows.len() * protocol::SENSOR_BYTES];
        protocol::pack_sensors(rows, &mut packed).ok_or_else(|| anyhow!("pack sensors"))?;
        let req = ReconstructRequest { seed, samples, want_std, noise_sigma, sensors: &packed };
        self.send(&Request::Reconstruct(req))?;
        let (mut mean, mut std) = (vec![f32::NAN; n * n], if want_std { vec![f32::NAN; n * n] } else { Vec::new() });
        let (mut got_mean, mut got_std) = (0usize, 0usize);
        let mut cancel_sent = false;
        loop {
            let reply = match self.recv_watch((!cancel_sent).then_some(cancel))? {
                Some(r) => r,
                None => {
                    self.send(&Request::Cancel)?;
                    cancel_sent = true;
                    continue;
                }
            };
            match reply {
                Reply::Field { which, offset, values } => {
                    let (field, got) = match which {
                        FIELD_MEAN => (&mut mean, &mut got_mean),
                        FIELD_STD if want_std => (&mut std, &mut got_std),
                        _ => bail!("unexpected field {which}"),
                    };
                    let o = offset as usize;
                    ensure!(o + values.len() <= field.len(), "chunk {o}+{} past the field", values.len());
                    field[o..o + values.len()].copy_from_slice(&values);
                    *got += values.len();
                }
                Reply::Done(report) => {
                    ensure!(got_mean == n * n && got_std == std.len(), "incomplete fields ({got_mean}, {got_std})");
                    if cancel_sent {
                        // The run ended before the device read the cancel,
                        // which gets its own answer.
                        match self.recv()? {
                            Reply::Error { code: ErrorCode::NotRunning, .. } => {}
                            other => bail!("expected NotRunning for the cancel, got {other:?}"),
                        }
                        bail!("cancelled: the device had already finished (its answer is discarded)");
                    }
                    return Ok(DeviceRun { mean, std, report });
                }
                Reply::Error { code: ErrorCode::Cancelled, detail } if cancel_sent => {
                    bail!("cancelled: the device stopped after {detail} annealing levels and is idle")
                }
                Reply::Error { code, detail } => {
                    if cancel_sent {
                        // Refused before it ran: the cancel found nothing
                        // running and has its own answer; read it too.
                        let _ = self.recv();
                    }
                    bail!("device refused the request: {code:?} (detail {detail}){}", hint(code, detail))
                }
                other => bail!("unexpected response {other:?}"),
            }
        }
    }
}

/// What an error code's detail means, for the message (docs/protocol.md).
fn hint(code: ErrorCode, detail: u32) -> String {
    match code {
        ErrorCode::ReadingOutOfRange => format!(
            ": sensor {} reads outside the range the device's artifact accepts (its training data's range of u, \
             `ddis inspect` shows it, widened by one range-width and six noise levels on each side): check the \
             units and the problem",
            u64::from(detail) + 1
        ),
        ErrorCode::TooManySamples => format!(": at most {detail} posterior samples per request"),
        ErrorCode::Busy => {
            format!(": another reconstruction is running on the device ({detail} annealing levels done); wait for it")
        }
        _ => String::new(),
    }
}

/// One request as wire bytes (leading and trailing delimiter).
pub fn encode(req: &Request<'_>) -> Result<Vec<u8>> {
    let (mut scratch, mut out) = (vec![0u8; MAX_FRAME], vec![0u8; MAX_WIRE + 2]);
    let len = protocol::encode_frame(req, &mut scratch, &mut out).map_err(|e| anyhow!("request too large: {e:?}"))?;
    out.truncate(len);
    Ok(out)
}

fn owned(r: Response<'_>) -> Reply {
    match r {
        Response::Pong { nonce } => Reply::Pong(nonce),
        Response::Info(i) => Reply::Info(i),
        Response::Field { which, offset, data } => Reply::Field {
            which,
            offset,
            values: data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        },
        Response::Done(d) => Reply::Done(d),
        Response::Error { code, detail } => Reply::Error { code, detail },
    }
}

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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use ddis_runtime::protocol::{Deframer, Event};

    use super::*;

    /// A scripted device: it decodes what the client writes and queues the
    /// frames `answer` returns for each request; reads time out when
    /// nothing is queued.
    struct Fake {
        deframer: Box<Deframer>,
        out: VecDeque<u8>,
        seen: Arc<Mutex<Vec<String>>>,
        answer: fn(&Request<'_>) -> Vec<Response<'static>>,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.out.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
                return Err(ErrorKind::TimedOut.into());
            }
            let n = buf.len().min(self.out.len());
            for b in buf.iter_mut().take(n) {
                *b = self.out.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for &b in buf {
                if let Event::Frame(len) = self.deframer.push(b) {
                    let req: Request<'_> = protocol::decode_frame(self.deframer.block(len)).expect("a valid request");
                    self.seen.lock().unwrap().push(format!("{req:?}").split([' ', '(']).next().unwrap().to_string());
                    for resp in (self.answer)(&req) {
                        let (mut scratch, mut wire) = (vec![0u8; MAX_FRAME], vec![0u8; MAX_WIRE + 2]);
                        let len = protocol::encode_frame(&resp, &mut scratch, &mut wire).unwrap();
                        self.out.extend(&wire[..len]);
                    }
                }
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Link for Fake {
        fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn fake(answer: fn(&Request<'_>) -> Vec<Response<'static>>) -> (Device, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let link = Fake { deframer: Box::new(Deframer::new()), out: VecDeque::new(), seen: Arc::clone(&seen), answer };
        let dev = Device {
            link: Box::new(link),
            rx: Vec::new(),
            timeout: Duration::from_secs(5),
            qemu: None,
            log: Arc::default(),
        };
        (dev, seen)
    }

    const ROWS: [(f32, f32, f32); 1] = [(0.5, 0.5, 0.01)];
    static ZEROS: [u8; 4 * 4] = [0; 16];

    #[test]
    fn device_cancel_sends_cancel_and_waits_for_cancelled() {
        // A device that runs until it reads the cancel.
        let (mut dev, seen) = fake(|req| match req {
            Request::Cancel => vec![Response::Error { code: ErrorCode::Cancelled, detail: 3 }],
            _ => vec![],
        });
        let err = dev.reconstruct_cancellable(2, &ROWS, 0.0, 1, 1, false, &AtomicBool::new(true)).unwrap_err();
        assert!(format!("{err}").contains("stopped after 3 annealing levels"), "{err}");
        assert_eq!(*seen.lock().unwrap(), ["Reconstruct", "Cancel"]);
    }

    #[test]
    fn device_cancel_after_the_run_finished_reads_both_answers() {
        // A device that had finished: the fields and Done, then NotRunning
        // for the cancel; nothing is left unread for the next request.
        let (mut dev, seen) = fake(|req| match req {
            Request::Reconstruct(_) => vec![
                Response::Field { which: FIELD_MEAN, offset: 0, data: &ZEROS },
                Response::Done(RunReport::default()),
            ],
            Request::Cancel => vec![Response::Error { code: ErrorCode::NotRunning, detail: 0 }],
            Request::Ping { nonce } => vec![Response::Pong { nonce: *nonce }],
            Request::Info => vec![],
        });
        let err = dev.reconstruct_cancellable(2, &ROWS, 0.0, 1, 1, false, &AtomicBool::new(true)).unwrap_err();
        assert!(format!("{err}").contains("already finished"), "{err}");
        dev.ping(4).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["Reconstruct", "Cancel", "Ping"]);
        // Without the flag the same device's answer is the run.
        let run = dev.reconstruct(2, &ROWS, 0.0, 1, 1, false).unwrap();
        assert_eq!(run.mean, [0.0; 4]);
    }

    #[test]
    fn device_cancel_of_a_refused_request_reads_the_cancels_answer_too() {
        let (mut dev, seen) = fake(|req| match req {
            Request::Reconstruct(_) => vec![Response::Error { code: ErrorCode::NoSensors, detail: 0 }],
            Request::Cancel => vec![Response::Error { code: ErrorCode::NotRunning, detail: 0 }],
            Request::Ping { nonce } => vec![Response::Pong { nonce: *nonce }],
            Request::Info => vec![],
        });
        let err = dev.reconstruct_cancellable(2, &ROWS, 0.0, 1, 1, false, &AtomicBool::new(true)).unwrap_err();
        assert!(format!("{err}").contains("NoSensors"), "{err}");
        dev.ping(5).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["Reconstruct", "Cancel", "Ping"]);
    }

    #[test]
    fn device_busy_names_the_running_request() {
        assert!(hint(ErrorCode::Busy, 4).contains("another reconstruction is running"));
    }
}
