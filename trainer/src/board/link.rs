//! The two ways to reach the firmware: QEMU booting the ELF with its UART
//! on a local TCP socket, or a real board on a serial port. Each yields a
//! [`Device`]; what is said over the link is `super`'s business.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::{Device, Link};

/// Default QEMU board: Cortex-M4F (the ELF also runs on `mps2-an500`).
pub const DEFAULT_MACHINE: &str = "mps2-an386";
/// Default firmware image, as `cargo build --release` in `firmware/` writes it.
pub const DEFAULT_ELF: &str = "firmware/target/thumbv7em-none-eabihf/release/ddis-firmware";

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
