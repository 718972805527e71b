//! The CMSDK APB UART0 of the MPS2 boards: transmit polled, receive
//! interrupt-driven. The RX interrupt (IRQ 0 on `mps2-an385/386/500`)
//! moves each received byte into a fixed single-producer, single-consumer
//! ring ([`RING_BYTES`]); the main loop pops from it, between requests and,
//! during a reconstruction, between annealing levels. So bytes that arrive
//! while the device computes wait in the ring instead of being overrun in
//! the UART's one-byte holding register.
//!
//! Boundary: this module owns the UART registers, the ring and the RX
//! interrupt's body ([`on_rx_interrupt`]; `main.rs` routes IRQ 0 to it). It
//! knows nothing of frames. A real board's driver has the same shape: only
//! the register block, the IRQ number and the clock divider change.
//!
//! When the ring is full the interrupt leaves the byte in the UART and
//! marks the ring stalled; the next [`try_read`] that makes room takes the
//! byte over. Under QEMU this is lossless flow control (its UART takes the
//! next byte from the socket only once the holding register is read); on a
//! board a byte that arrives meanwhile overruns, and the UART's overrun
//! flag is counted ([`overruns`], reported in `Info`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use cortex_m::peripheral::NVIC;

/// Bytes of the receive ring (a power of two). At 115200 baud it holds
/// 0.71 s of uninterrupted input: more than one annealing level of the
/// shipped Darcy image with 31 sensors (0.95e8 instructions, about 0.57 s
/// at 168 MHz), and 2.5 maximal request frames.
pub const RING_BYTES: usize = 8192;
const MASK: usize = RING_BYTES - 1;
const _: () = assert!(RING_BYTES.is_power_of_two());

const BASE: usize = 0x4000_4000;
const DATA: *mut u32 = BASE as *mut u32;
const STATE: *mut u32 = (BASE + 0x04) as *mut u32;
const CTRL: *mut u32 = (BASE + 0x08) as *mut u32;
const INTCLEAR: *mut u32 = (BASE + 0x0C) as *mut u32;
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// The UART0 receive interrupt of the MPS2 boards.
#[derive(Clone, Copy)]
struct Uart0Rx;

// SAFETY: 0 is UART0's RX interrupt line on the MPS2 boards (QEMU's
// `mps2.c`: UART n raises IRQ 2n on receive, 2n + 1 on transmit).
unsafe impl cortex_m::interrupt::InterruptNumber for Uart0Rx {
    fn number(self) -> u16 {
        0
    }
}

/// The IRQ number [`on_rx_interrupt`] serves.
pub const RX_IRQ: i16 = 0;

/// A single-producer (the RX interrupt), single-consumer (the main loop)
/// byte ring: free-running indices, each written by one side only.
struct Ring {
    buf: UnsafeCell<[u8; RING_BYTES]>,
    /// Bytes ever pushed (written by the interrupt).
    head: AtomicUsize,
    /// Bytes ever popped (written by the main loop).
    tail: AtomicUsize,
    /// Most bytes ever waiting (written by the interrupt).
    high_water: AtomicUsize,
}

// SAFETY: slot `head & MASK` is written only by the producer before it
// publishes `head`, and read only by the consumer after it sees that
// `head`; a slot is reused only after the consumer published its `tail`.
unsafe impl Sync for Ring {}

impl Ring {
    const fn new() -> Self {
        Self {
            buf: UnsafeCell::new([0; RING_BYTES]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
        }
    }

    fn is_full(&self) -> bool {
        self.head.load(Ordering::Relaxed).wrapping_sub(self.tail.load(Ordering::Acquire)) >= RING_BYTES
    }

    /// Producer side; the caller has checked [`Self::is_full`].
    fn push(&self, byte: u8) {
        let head = self.head.load(Ordering::Relaxed);
        // SAFETY: the slot is free (not full) and only the producer writes it.
        unsafe { (*self.buf.get())[head & MASK] = byte };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        let waiting = head.wrapping_add(1).wrapping_sub(self.tail.load(Ordering::Acquire));
        if waiting > self.high_water.load(Ordering::Relaxed) {
            self.high_water.store(waiting, Ordering::Relaxed);
        }
    }

    /// Consumer side.
    fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if self.head.load(Ordering::Acquire) == tail {
            return None;
        }
        // SAFETY: the producer published this slot and will not reuse it
        // before `tail` moves past it.
        let byte = unsafe { (*self.buf.get())[tail & MASK] };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(byte)
    }

    fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Relaxed)
    }
}

static RING: Ring = Ring::new();
/// The interrupt found the ring full and left a byte in the UART.
static STALLED: AtomicBool = AtomicBool::new(false);
static OVERRUNS: AtomicU32 = AtomicU32::new(0);

fn reg_read(r: *mut u32) -> u32 {
    // SAFETY: a fixed MMIO register of the board; only this module drives it.
    unsafe { r.read_volatile() }
}

fn reg_write(r: *mut u32, v: u32) {
    // SAFETY: see `reg_read`.
    unsafe { r.write_volatile(v) }
}

/// Counts and clears a receive overrun the UART flagged.
fn note_overrun() {
    if reg_read(STATE) & STATE_RX_OVERRUN != 0 {
        reg_write(STATE, STATE_RX_OVERRUN); // write-one-to-clear
        OVERRUNS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Moves what the UART holds into the ring (or marks the ring stalled).
fn drain_uart() {
    while reg_read(STATE) & STATE_RX_FULL != 0 {
        if RING.is_full() {
            STALLED.store(true, Ordering::Release);
            break;
        }
        RING.push(reg_read(DATA) as u8);
    }
    note_overrun();
}

/// Sets up 115200 8N1 (divider 217 at 25 MHz; QEMU ignores the rate) with
/// the RX interrupt on and unmasked.
pub fn init() {
    reg_write(BAUDDIV, 217);
    reg_write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
    cortex_m::interrupt::free(|_| {
        // Read the data register once: QEMU offers the socket's first byte
        // only after a read (without it the first request stalls ~0.7 s,
        // docs/results.md); a byte already there goes to the ring.
        if reg_read(STATE) & STATE_RX_FULL == 0 {
            let _ = reg_read(DATA);
        } else {
            drain_uart();
        }
        // SAFETY: the handler (`on_rx_interrupt`) and the ring are ready,
        // and no critical section of this firmware relies on IRQ 0 masked.
        unsafe { NVIC::unmask(Uart0Rx) };
    });
}

/// The RX interrupt's body: acknowledge, then move the byte(s) to the ring.
pub fn on_rx_interrupt() {
    // Clear first: a byte that lands while we read raises it again.
    reg_write(INTCLEAR, INT_RX);
    drain_uart();
}

/// The next received byte, if any (never blocks).
pub fn try_read() -> Option<u8> {
    let byte = RING.pop();
    if byte.is_some() && STALLED.load(Ordering::Acquire) {
        // There is room again: take over the byte the interrupt left.
        cortex_m::interrupt::free(|_| {
            STALLED.store(false, Ordering::Relaxed);
            drain_uart();
        });
    }
    byte
}

/// The next received byte, sleeping (WFI) while there is none.
pub fn read() -> u8 {
    loop {
        if let Some(b) = try_read() {
            return b;
        }
        // Check and sleep with interrupts masked: a byte that arrives in
        // between still wakes the WFI (a pending interrupt does), and its
        // handler runs when the mask lifts.
        cortex_m::interrupt::free(|_| {
            if RING.is_empty() && !STALLED.load(Ordering::Relaxed) {
                cortex_m::asm::wfi();
            }
        });
    }
}

/// Writes `bytes`, polling for room in the transmitter.
pub fn write(bytes: &[u8]) {
    for &b in bytes {
        while reg_read(STATE) & STATE_TX_FULL != 0 {}
        reg_write(DATA, u32::from(b));
    }
}

/// Most bytes ever waiting in the ring since boot.
pub fn high_water() -> usize {
    RING.high_water.load(Ordering::Relaxed)
}

/// Receive overruns the UART flagged since boot.
pub fn overruns() -> u32 {
    OVERRUNS.load(Ordering::Relaxed)
}
