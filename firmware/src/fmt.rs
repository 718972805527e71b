//! The firmware's logging shim, in one place (the embassy `fmt.rs` pattern):
//! every log line goes through [`log!`], which is semihosting text under
//! QEMU and a defmt frame with the `defmt` feature (over RTT, or over
//! semihosting with `defmt-semihosting`). Format strings use only what both
//! accept (`{}`, `{:#x}`), so one call site serves both.

/// One log line; see the module docs.
macro_rules! log {
    ($($arg:tt)*) => {{
        #[cfg(not(feature = "defmt"))]
        cortex_m_semihosting::hprintln!($($arg)*);
        #[cfg(feature = "defmt")]
        defmt::info!($($arg)*);
    }};
}
