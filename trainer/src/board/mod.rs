//! The board link (module `board`, so that "device" keeps meaning the burn
//! device and `--size device`): the host end of the serial link to a board,
//! a client of `ddis_runtime::protocol` over QEMU's UART socket ([`run_qemu`]) or a real serial port
//! ([`run_serial`]), and [`device_reconstruct`], the body of `ddis device`.
//! It frames, sends and waits; all numerics happen on the device. While it
//! waits for a reconstruction it watches a cancel flag (Ctrl-C sets it,
//! [`cancel_on_ctrl_c`]): it then sends `Cancel` and waits for the device's
//! `Cancelled` answer, so the device is free again when the command ends.
//! Here: the protocol client ([`Device`]); in `link`: reaching the
//! firmware; in `command`: `ddis device` itself.

mod command;
mod link;

use std::io::{ErrorKind, Read, Write};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
pub use command::{DeviceOptions, DeviceResult, Transport, cancel_on_ctrl_c, device_reconstruct, sensor_rows};
use ddis_runtime::protocol::{
    self, DELIMITER, DeviceInfo, ErrorCode, FIELD_MEAN, FIELD_STD, MAX_FRAME, MAX_WIRE, ReconstructRequest, Request,
    Response, RunReport,
};
pub use link::{DEFAULT_ELF, DEFAULT_MACHINE, QemuOptions, run_qemu, run_serial};

/// A byte stream with a read timeout.
pub trait Link: Read + Write + Send {
    /// Sets how long a read may wait for the first byte.
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
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
