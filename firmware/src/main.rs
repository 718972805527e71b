//! ddis firmware for Cortex-M4F (QEMU mps2-an386; the same ELF runs on the
//! Cortex-M7 mps2-an500). Today it boots, reports itself over semihosting and
//! exits; the artifact and the UART protocol come with the runtime issue.
#![no_std]
#![no_main]

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};

/// Exit code of a HardFault under QEMU: distinct from success and from panics.
const EXIT_HARDFAULT: u32 = 3;
/// Exit code of a panic under QEMU.
const EXIT_PANIC: u32 = 2;

#[entry]
fn main() -> ! {
    let grid = ddis_runtime::grid::Grid::new(32);
    hprintln!("ddis firmware {}: grid ok = {}", env!("CARGO_PKG_VERSION"), grid.is_ok());
    if cfg!(feature = "panic-at-boot") {
        panic!("panic-at-boot requested");
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    exit_with(EXIT_HARDFAULT)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    exit_with(EXIT_PANIC)
}

/// Ends the QEMU run with `code` (semihosting SYS_EXIT_EXTENDED), so a fault
/// is never a silent hang.
fn exit_with(code: u32) -> ! {
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
