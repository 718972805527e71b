//! ddis firmware for Cortex-M4F (QEMU mps2-an386; the same ELF runs on the
//! Cortex-M7 mps2-an500). It embeds the shipped artifact, checks it at boot,
//! logs its identity and memory budget over semihosting, and then serves
//! requests of `ddis_runtime::protocol` on the CMSDK UART0 forever.
//!
//! Received bytes come from the UART's RX interrupt through a ring
//! ([`uart`]). One deframer reads that stream, idle or busy: while a
//! reconstruction runs, the sampler's poll hook drains the ring between
//! annealing levels, so a `Cancel` stops the run there, any other request
//! is answered `Busy` and a bad frame gets its error, and nothing that
//! arrives is lost (docs/protocol.md, Busy and Cancel).
//!
//! Logging (`log!`, `fmt.rs`) is plain semihosting text by default: it needs no
//! host decoder and QEMU prints it directly. A panic or HardFault ends the
//! run with its own exit code (semihosting extended exit), never a hang.
//! With the `defmt` feature (a real board: semihosting would fault without
//! a debugger) the same lines go out as defmt frames over RTT, and a panic
//! or HardFault logs its code and resets the chip. With `defmt-semihosting`
//! (QEMU) the defmt frames go out over semihosting instead and the run
//! exits like the default build; the test suite decodes them.
#![no_std]
#![no_main]

// First: its macros are visible to the modules below.
#[macro_use]
mod fmt;
mod uart;

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
// Exactly one defmt global logger: RTT on a board, unless
// `defmt-semihosting` (which implies `defmt`) replaces it.
#[cfg(all(feature = "defmt", not(feature = "defmt-semihosting")))]
use defmt_rtt as _;
#[cfg(feature = "defmt-semihosting")]
use defmt_semihosting as _;

use ddis_runtime::protocol::{
    self, CHUNK_VALUES, DeviceInfo, ErrorCode, Event, FIELD_MEAN, FIELD_STD, MAX_FRAME, MAX_WIRE, Request, Response,
    RunReport,
};
use ddis_runtime::sampler::Control;
use ddis_runtime::{Artifact, Sensors, sampler};

mod sizes {
    include!(concat!(env!("OUT_DIR"), "/sizes.rs"));
}

/// The embedded artifact, in flash: `models/darcy32.ddis`, or the one
/// `DDIS_ARTIFACT` named at build time (build.rs copies it into OUT_DIR and
/// fails first if it is missing or damaged).
static ARTIFACT: &[u8; sizes::ARTIFACT_LEN] = include_bytes!(concat!(env!("OUT_DIR"), "/artifact.ddis"));

/// Exit code of a HardFault under QEMU: distinct from success and from panics.
const EXIT_HARDFAULT: u32 = 3;
/// Exit code of a panic under QEMU.
const EXIT_PANIC: u32 = 2;
/// Exit code when the embedded artifact fails its check at boot.
const EXIT_BAD_ARTIFACT: u32 = 4;

/// SysTick ticks on the processor clock, which QEMU's MPS2 boards run at
/// 25 MHz; under `-icount shift=0` one instruction is one virtual
/// nanosecond, so one tick is 40 instructions.
const INSTRUCTIONS_PER_TICK: u64 = 40;
const SYSTICK_RELOAD: u32 = 0x00FF_FFFF;

const N2: usize = sizes::N * sizes::N;
const RAM_BYTES: usize = 256 * 1024;
const WORKSPACE_BYTES: usize = sizes::WORKSPACE_LEN * 4;
// The static buffers must leave room for a stack in the 256 KiB part.
const _: () =
    assert!(WORKSPACE_BYTES + 2 * N2 * 4 + 2 * MAX_WIRE + MAX_FRAME + uart::RING_BYTES + 16 * 1024 <= RAM_BYTES);

static mut WORKSPACE: [f32; sizes::WORKSPACE_LEN] = [0.0; sizes::WORKSPACE_LEN];
static mut MEAN: [f32; N2] = [0.0; N2];
static mut STD: [f32; N2] = [0.0; N2];
static mut DEFRAMER: protocol::Deframer = protocol::Deframer::new();

/// SysTick wraps since boot.
static WRAPS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// Instructions since boot (see [`INSTRUCTIONS_PER_TICK`]).
fn instructions() -> u64 {
    loop {
        let w = WRAPS.load(Ordering::Acquire);
        let cur = cortex_m::peripheral::SYST::get_current();
        if WRAPS.load(Ordering::Acquire) == w {
            let ticks = u64::from(w) * (u64::from(SYSTICK_RELOAD) + 1) + u64::from(SYSTICK_RELOAD - cur);
            return ticks * INSTRUCTIONS_PER_TICK;
        }
    }
}

/// The stack's region: from the end of the statics (`_stack_end`) to the
/// top of RAM (`_stack_start`). cortex-m-rt's `paint-stack` fills all of it
/// with [`cortex_m_rt::STACK_PAINT_VALUE`] in the reset handler, before
/// `main` and before `.data`/`.bss` are set up.
fn stack_region() -> (usize, usize) {
    // Linker symbols: only their addresses are used.
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Most stack bytes used since reset (the lowest address whose paint is gone).
fn stack_high_water() -> usize {
    let (lo, hi) = stack_region();
    let mut p = lo;
    // SAFETY: reads of the painted region only.
    while p < hi && unsafe { (p as *const u32).read_volatile() } == cortex_m_rt::STACK_PAINT_VALUE {
        p += 4;
    }
    hi - p
}

/// Output buffers of one frame.
struct Tx {
    scratch: [u8; MAX_FRAME],
    wire: [u8; MAX_WIRE + 2],
}

impl Tx {
    fn send(&mut self, msg: &Response<'_>) {
        match protocol::encode_frame(msg, &mut self.scratch, &mut self.wire) {
            Ok(len) => uart::write(&self.wire[..len]),
            // Every response fits MAX_FRAME by construction; say so if not.
            Err(_) => log!("encode failed for a response"),
        }
    }

    fn error(&mut self, code: ErrorCode, detail: usize) {
        self.send(&Response::Error { code, detail: u32::try_from(detail).unwrap_or(u32::MAX) });
    }
}

fn firmware_version() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + p(env!("CARGO_PKG_VERSION_PATCH"))
}

fn info(art: &Artifact<'_>) -> DeviceInfo {
    let (lo, hi) = stack_region();
    let sched = art.schedule();
    DeviceInfo {
        protocol: protocol::PROTOCOL_VERSION,
        firmware: firmware_version(),
        artifact_bytes: art.len_bytes() as u32,
        artifact_crc: art.crc(),
        n: art.n() as u16,
        levels: sched.map_or(0, |s| s.levels() as u16),
        langevin: sched.map_or(0, |s| s.langevin() as u16),
        workspace_bytes: WORKSPACE_BYTES as u32,
        stack_bytes: (hi - lo) as u32,
        stack_high_water: stack_high_water() as u32,
        max_sensors: art.max_sensors() as u16,
        rx_ring_bytes: uart::RING_BYTES as u32,
        rx_high_water: uart::high_water() as u32,
        rx_overruns: uart::overruns(),
    }
}

/// A checked reconstruction request, owning all it needs: the frame it
/// came in is free again, so the deframer can read on while it runs.
struct Job {
    sensors: Sensors,
    seed: u64,
    samples: u8,
    want_std: bool,
    noise_sigma: f32,
}

/// Feeds `byte` to the deframer and answers what completes, except a
/// request, which is returned for the caller to serve.
fn frame<'d>(deframer: &'d mut protocol::Deframer, byte: u8, tx: &mut Tx) -> Option<Request<'d>> {
    match deframer.push(byte) {
        Event::Pending => None,
        Event::Oversized(dropped) => {
            tx.error(ErrorCode::Oversized, dropped);
            None
        }
        Event::Frame(len) => match protocol::decode_frame::<Request<'_>>(deframer.block(len)) {
            Ok(req) => Some(req),
            Err(e) => {
                tx.error(e.code(), len);
                None
            }
        },
    }
}

/// Serves one reconstruction: fields in chunks, then the run report; or
/// one error (`Cancelled` when a `Cancel` arrived before a level). Between
/// levels it drains the receive ring into `deframer`: a `Cancel` stops the
/// run, every other request is answered `Busy`, and a bad frame its error.
fn reconstruct(art: &Artifact<'_>, job: &Job, ws: &mut [f32], tx: &mut Tx, deframer: &mut protocol::Deframer) {
    let r = job;
    let count = r.sensors.len();
    // SAFETY: the only references to MEAN and STD are these, made once per
    // request on the single thread; they end with this function.
    let (mean, std) = unsafe { (&mut *addr_of_mut!(MEAN), &mut *addr_of_mut!(STD)) };
    let mut poll = |done: u32| {
        while let Some(byte) = uart::try_read() {
            match frame(deframer, byte, tx) {
                None => {}
                Some(Request::Cancel) => return Control::Cancel,
                Some(_) => tx.error(ErrorCode::Busy, done as usize),
            }
        }
        Control::Continue
    };
    let t0 = instructions();
    let result = sampler::posterior_with(
        art,
        &r.sensors,
        r.noise_sigma,
        r.seed,
        usize::from(r.samples),
        mean,
        std,
        ws,
        &mut poll,
    );
    let spent = instructions() - t0;
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let (code, detail) = ErrorCode::from_runtime(&e);
            if code == ErrorCode::Cancelled {
                log!("reconstruct: cancelled after {} levels, {} instructions", detail, spent);
            }
            return tx.error(code, detail as usize);
        }
    };
    let fields: &[(u8, &[f32])] =
        if r.want_std { &[(FIELD_MEAN, mean), (FIELD_STD, std)] } else { &[(FIELD_MEAN, mean)] };
    let mut bytes = [0u8; CHUNK_VALUES * 4];
    for &(which, field) in fields {
        for (k, chunk) in field.chunks(CHUNK_VALUES).enumerate() {
            for (v, b) in chunk.iter().zip(bytes.chunks_exact_mut(4)) {
                b.copy_from_slice(&v.to_le_bytes());
            }
            let offset = (k * CHUNK_VALUES) as u32;
            tx.send(&Response::Field { which, offset, data: &bytes[..chunk.len() * 4] });
        }
    }
    tx.send(&Response::Done(RunReport {
        instructions: spent,
        denoiser_calls: stats.denoiser_calls,
        guide_calls: stats.guide_calls,
        clamped: stats.clamped,
        non_finite: stats.non_finite,
        last_loss: stats.last_loss,
    }));
    log!(
        "reconstruct: {} sensors, {} samples, seed {}: {} instructions (~{} ms at 168 MHz, 1 instr/cycle estimate)",
        count,
        r.samples,
        r.seed,
        spent,
        spent / 168_000
    );
}

#[entry]
fn main() -> ! {
    if cfg!(feature = "panic-at-boot") {
        panic!("panic-at-boot requested");
    }
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| exit_with(EXIT_PANIC));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSTICK_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // clear_current leaves 0 until the first reload: wait for it, so that
    // the first readings already count down from the reload value.
    while cortex_m::peripheral::SYST::get_current() == 0 {}

    if cfg!(feature = "calibrate") {
        for k in 0..4u32 {
            let a = instructions();
            let w = WRAPS.load(Ordering::Acquire);
            cortex_m::asm::delay(10_000_000 << k);
            log!(
                "calib: delay {} -> {} instr, wraps {} -> {}",
                10_000_000u32 << k,
                instructions().wrapping_sub(a),
                w,
                WRAPS.load(Ordering::Acquire)
            );
        }
    }
    let t0 = instructions();
    let art = match Artifact::parse(ARTIFACT) {
        Ok(a) => a,
        Err(e) => {
            log!("embedded artifact rejected: {}", e);
            exit_with(EXIT_BAD_ARTIFACT)
        }
    };
    let parse_instr = instructions() - t0;
    let (lo, hi) = stack_region();
    log!(
        "ddis firmware {}: {} artifact {} ({} bytes), crc32 {:#x} (checked, {} instructions), grid {}x{}",
        env!("CARGO_PKG_VERSION"),
        art.problem(),
        sizes::ARTIFACT_SOURCE,
        art.len_bytes(),
        art.crc(),
        parse_instr,
        art.n(),
        art.n()
    );
    log!(
        "memory: workspace {} B (static), fields 2x{} B, stack {} B ({:#x}..{:#x}), RAM budget {} B",
        WORKSPACE_BYTES,
        N2 * 4,
        hi - lo,
        lo,
        hi,
        RAM_BYTES
    );
    if cfg!(feature = "boot-only") {
        exit_with(0);
    }

    // SAFETY: main never returns and these are its only references.
    let ws: &mut [f32] = unsafe { &mut *addr_of_mut!(WORKSPACE) };
    let deframer = unsafe { &mut *addr_of_mut!(DEFRAMER) };
    let mut tx = Tx { scratch: [0; MAX_FRAME], wire: [0; MAX_WIRE + 2] };
    uart::init();
    log!("serving on UART0 (RX interrupt, {} B ring)", uart::RING_BYTES);
    loop {
        let job = match frame(deframer, uart::read(), &mut tx) {
            None => continue,
            Some(Request::Ping { nonce }) => {
                tx.send(&Response::Pong { nonce });
                continue;
            }
            Some(Request::Info) => {
                tx.send(&Response::Info(info(&art)));
                continue;
            }
            Some(Request::Cancel) => {
                tx.error(ErrorCode::NotRunning, 0);
                continue;
            }
            // Every check of the request, readings against the artifact's
            // range included, happens here at the edge (the same function
            // the host fuzzes).
            Some(Request::Reconstruct(r)) => match protocol::check_request(&art, &r) {
                Ok(sensors) => {
                    Job { sensors, seed: r.seed, samples: r.samples, want_std: r.want_std, noise_sigma: r.noise_sigma }
                }
                Err((code, detail)) => {
                    tx.error(code, detail as usize);
                    continue;
                }
            },
        };
        reconstruct(&art, &job, ws, &mut tx, deframer);
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == uart::RX_IRQ {
        uart::on_rx_interrupt();
    } else {
        // No other interrupt is unmasked: one firing is a fault.
        exit_with(EXIT_HARDFAULT)
    }
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::AcqRel);
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    exit_with(EXIT_HARDFAULT)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    exit_with(EXIT_PANIC)
}

/// Ends the run with `code`: under QEMU (the default build and
/// `defmt-semihosting`) through semihosting, on a board (`defmt`) by a
/// reset. A defmt build logs a non-zero code first.
fn exit_with(code: u32) -> ! {
    #[cfg(feature = "defmt")]
    log_fatal(code);
    #[cfg(any(not(feature = "defmt"), feature = "defmt-semihosting"))]
    semihosting_exit(code);
    #[cfg(all(feature = "defmt", not(feature = "defmt-semihosting")))]
    board_reset(code)
}

/// Logs a non-zero exit code, once: a fault inside a log call (the logger
/// still taken) or inside this one exits without logging again instead of
/// recursing.
#[cfg(feature = "defmt")]
fn log_fatal(code: u32) {
    static EXITING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if code == 0 || EXITING.swap(true, Ordering::AcqRel) {
        return;
    }
    #[cfg(feature = "defmt-semihosting")]
    defmt::error!("fatal: exit code {} (2 panic, 3 HardFault, 4 bad artifact)", code);
    #[cfg(not(feature = "defmt-semihosting"))]
    defmt::error!("fatal: exit code {} (2 panic, 3 HardFault, 4 bad artifact); resetting", code);
}

/// Ends the QEMU run with `code` (semihosting SYS_EXIT_EXTENDED), so a fault
/// is never a silent hang.
#[cfg(any(not(feature = "defmt"), feature = "defmt-semihosting"))]
fn semihosting_exit(code: u32) -> ! {
    // SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit (0x20026)
    // and the exit code as subcode; plain SYS_EXIT can only say 0 or 1.
    const SYS_EXIT_EXTENDED: usize = 0x20;
    let block = [0x20026u32, code];
    // SAFETY: the block outlives the call; the host only reads it.
    unsafe {
        cortex_m_semihosting::syscall1(SYS_EXIT_EXTENDED, block.as_ptr() as usize);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// On a board there is nothing to exit to: 0 only ends a `boot-only` check
/// (logged, then idle); any other code (logged by [`log_fatal`]) resets the
/// chip, so a fault restarts the node instead of hanging it.
#[cfg(all(feature = "defmt", not(feature = "defmt-semihosting")))]
fn board_reset(code: u32) -> ! {
    if code == 0 {
        defmt::info!("exit 0");
        loop {
            cortex_m::asm::wfi();
        }
    }
    cortex_m::peripheral::SCB::sys_reset()
}
