//! A byte stream from the UART: the deframer splits it, every block is
//! decoded as a request, and a reconstruction request is validated against
//! the shipped Darcy artifact, as the firmware's main loop does (without
//! running the sampler).
#![no_main]

use ddis_runtime::protocol::{self, Deframer, Event, MAX_WIRE, Request};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let art = ddis_runtime_fuzz::shipped_artifact();
    let mut d = Deframer::new();
    for &b in data {
        match d.push(b) {
            Event::Pending => {}
            Event::Oversized(dropped) => assert!(dropped > MAX_WIRE),
            Event::Frame(len) => {
                assert!(len > 0 && len <= MAX_WIRE);
                if let Ok(Request::Reconstruct(r)) = protocol::decode_frame::<Request<'_>>(d.block(len)) {
                    let _ = protocol::check_request(art, &r);
                }
            }
        }
    }
});
