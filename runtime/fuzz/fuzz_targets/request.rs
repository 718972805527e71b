//! Request decoding past the CRC: the input is a decoded frame body, given
//! a valid CRC and COBS-encoded here, so libFuzzer explores the postcard
//! decoder and request validation rather than CRC collisions. What decodes
//! must re-encode and decode to the same request.
#![no_main]

use ddis_runtime::crc::crc32;
use ddis_runtime::protocol::{self, MAX_FRAME, MAX_WIRE, Request};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() + 4 > MAX_FRAME {
        return;
    }
    let mut frame = data.to_vec();
    frame.extend_from_slice(&crc32(data).to_le_bytes());
    let mut block = vec![0u8; MAX_WIRE];
    let len = cobs::try_encode(&frame, &mut block).expect("fits MAX_WIRE");
    block.truncate(len);
    let Ok(req) = protocol::decode_frame::<Request<'_>>(&mut block) else { return };
    let (mut scratch, mut wire) = ([0u8; MAX_FRAME], [0u8; MAX_WIRE + 2]);
    let n = protocol::encode_frame(&req, &mut scratch, &mut wire).expect("a decoded request re-encodes");
    let again = protocol::decode_frame::<Request<'_>>(&mut wire[1..n - 1]).expect("and decodes");
    assert_eq!(format!("{again:?}"), format!("{req:?}"));
    if let Request::Reconstruct(r) = req {
        let art = ddis_runtime_fuzz::shipped_artifact();
        let _ = protocol::check_request(art, &r);
    }
});
