//! Tests of `protocol` (split out to keep the module on one job).

use super::*;

fn wire<T: Serialize>(msg: &T) -> std::vec::Vec<u8> {
    let (mut scratch, mut out) = ([0u8; MAX_FRAME], [0u8; MAX_WIRE + 2]);
    let len = encode_frame(msg, &mut scratch, &mut out).unwrap();
    out[..len].to_vec()
}

/// Feeds `bytes` and returns, per completed block, the decoded request
/// or the error code.
fn feed(d: &mut Deframer, bytes: &[u8]) -> std::vec::Vec<Result<std::string::String, ErrorCode>> {
    let mut got = std::vec::Vec::new();
    for &b in bytes {
        match d.push(b) {
            Event::Pending => {}
            Event::Oversized(_) => got.push(Err(ErrorCode::Oversized)),
            Event::Frame(len) => {
                got.push(decode_frame::<Request<'_>>(d.block(len)).map(|r| std::format!("{r:?}")).map_err(|e| e.code()))
            }
        }
    }
    got
}

#[test]
fn cobs_blocks_round_trip_and_damage_is_bad_framing() {
    // Encoded blocks never hold a delimiter and decode to their source,
    // across the 254-byte runs where COBS adds an overhead byte.
    let cases: [&[u8]; 7] = [&[0], &[0, 0], &[1, 2, 3], &[0xFF; 253], &[0xFF; 254], &[0xFF; 255], &[0x11; 600]];
    for src in cases {
        let mut enc = [0u8; 1024];
        let n = cobs::try_encode(src, &mut enc).unwrap();
        assert!(!enc[..n].contains(&0), "encoding of {} bytes contains a zero", src.len());
        let mut buf = enc[..n].to_vec();
        let m = cobs::decode_in_place(&mut buf).unwrap();
        assert_eq!(&buf[..m], src);
    }
    // A message whose frame fills whole 254-byte runs round-trips.
    for len in [246, 250, 500, 504] {
        let data = std::vec![0x5Au8; len];
        let resp = Response::Field { which: FIELD_MEAN, offset: 0, data: &data };
        let mut w = wire(&resp);
        let end = w.len() - 1;
        assert_eq!(decode_frame::<Response<'_>>(&mut w[1..end]), Ok(resp), "{len} bytes");
    }
    // Damage: a delimiter inside, a code past the end, nothing at all.
    for (block, want) in [
        (&mut [2u8, 0, 1][..], FrameError::BadFraming),
        (&mut [5u8, 1, 2][..], FrameError::BadFraming),
        (&mut [][..], FrameError::Truncated),
    ] {
        assert_eq!(decode_frame::<Request<'_>>(block), Err(want));
    }
}

#[test]
fn requests_and_responses_round_trip() {
    let mut packed = [0u8; 36];
    let rows = [(0.0, 0.5, 1.0), (1.0, 1.0, -2.5), (0.25, 0.75, f32::NAN)];
    let used = pack_sensors(&rows, &mut packed).unwrap();
    let req = Request::Reconstruct(ReconstructRequest {
        seed: u64::MAX,
        samples: 3,
        want_std: true,
        noise_sigma: 0.01,
        sensors: &packed[..used],
    });
    let mut w = wire(&req);
    let end = w.len() - 1;
    let back: Request<'_> = decode_frame(&mut w[1..end]).unwrap();
    assert_eq!(back, req);
    let Request::Reconstruct(r) = back else { panic!("not a reconstruct") };
    let got: std::vec::Vec<_> = sensor_records(r.sensors).unwrap().collect();
    assert_eq!(got[0], rows[0]);
    assert!(got[2].2.is_nan());

    let data = [7u8; CHUNK_VALUES * 4];
    let resp = Response::Field { which: FIELD_STD, offset: 768, data: &data };
    let mut w = wire(&resp);
    assert!(w.len() <= MAX_WIRE + 2);
    let end = w.len() - 1;
    assert_eq!(decode_frame::<Response<'_>>(&mut w[1..end]).unwrap(), resp);
}

#[test]
fn hostile_streams_get_errors_and_resync() {
    let ping = wire(&Request::Ping { nonce: 9 });
    let pong = std::format!("{:?}", Request::Ping { nonce: 9 });
    let mut d = Deframer::new();

    // Garbage before a frame: closed off by the frame's leading delimiter.
    let mut s = b"\x13\x37garbage".to_vec();
    s.extend_from_slice(&ping);
    let got = feed(&mut d, &s);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(pong.clone()));

    // A bit flip.
    let mut bad = ping.clone();
    bad[2] ^= 0x40;
    assert!(feed(&mut d, &bad)[0].is_err());

    // Truncated: the first half of a frame, then a whole one.
    let mut s = ping[..ping.len() / 2].to_vec();
    s.extend_from_slice(&ping);
    let got = feed(&mut d, &s);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(pong.clone()));

    // Too short for a CRC.
    assert_eq!(feed(&mut d, &[0, 2, 5, 0]), [Err(ErrorCode::Truncated)]);

    // Oversized: dropped to its delimiter, then the next frame is served.
    let mut s = std::vec![0u8];
    s.extend(std::iter::repeat_n(0x55u8, MAX_WIRE + 100));
    s.extend_from_slice(&ping);
    assert_eq!(feed(&mut d, &s), [Err(ErrorCode::Oversized), Ok(pong.clone())]);

    // A valid CRC over bytes that are no message.
    let mut scratch = [0u8; 16];
    scratch[..3].copy_from_slice(&[0x7F, 1, 2]);
    let crc = crc32(&scratch[..3]).to_le_bytes();
    scratch[3..7].copy_from_slice(&crc);
    let mut enc = std::vec![0u8; 16];
    let n = cobs::try_encode(&scratch[..7], &mut enc).unwrap();
    let mut s = std::vec![0u8];
    s.extend_from_slice(&enc[..n]);
    s.push(0);
    assert_eq!(feed(&mut d, &s), [Err(ErrorCode::Malformed)]);
    assert_eq!(feed(&mut d, &ping), [Ok(pong)]);
}

#[test]
fn sensor_bytes_must_be_whole_records() {
    assert!(sensor_records(&[0; 13]).is_none());
    assert_eq!(sensor_records(&[]).unwrap().count(), 0);
    assert_eq!(ErrorCode::from_runtime(&Error::SensorValueNotFinite { index: 4 }), (ErrorCode::SensorNotFinite, 4));
    assert_eq!(ErrorCode::from_runtime(&Error::SensorOffGrid { index: 2 }), (ErrorCode::SensorOffGrid, 2));
    let far = Error::ReadingOutOfRange { index: 3, value: 5.0, min: -0.02, max: 0.04 };
    assert_eq!(ErrorCode::from_runtime(&far), (ErrorCode::ReadingOutOfRange, 3));
    let many = Error::TooManySamples { requested: 17, max: usize::from(MAX_SAMPLES) };
    assert_eq!(ErrorCode::from_runtime(&many), (ErrorCode::TooManySamples, 16));
    assert_eq!(
        ErrorCode::from_runtime(&Error::NoiseTooLarge { value: 1.0, max: 0.05 }),
        (ErrorCode::InvalidParameter, 1)
    );
}

#[test]
fn version_3_adds_cancel_and_its_codes_without_moving_the_old_ones() {
    // postcard tags variants by index: the v2 requests keep theirs.
    let mut scratch = [0u8; 64];
    assert_eq!(postcard::to_slice(&Request::Info, &mut scratch).unwrap(), &[1]);
    assert_eq!(postcard::to_slice(&Request::Cancel, &mut scratch).unwrap(), &[3]);
    let mut w = wire(&Request::Cancel);
    let end = w.len() - 1;
    assert_eq!(decode_frame::<Request<'_>>(&mut w[1..end]), Ok(Request::Cancel));
    assert_eq!(ErrorCode::from_runtime(&Error::Cancelled { levels: 7 }), (ErrorCode::Cancelled, 7));
    let codes = [(ErrorCode::TooManySamples, 16), (ErrorCode::Busy, 17), (ErrorCode::Cancelled, 18)];
    for (code, v) in codes.into_iter().chain([(ErrorCode::NotRunning, 19)]) {
        assert_eq!(code as u8, v);
        let resp = Response::Error { code, detail: 3 };
        let mut w = wire(&resp);
        let end = w.len() - 1;
        assert_eq!(decode_frame::<Response<'_>>(&mut w[1..end]), Ok(resp));
    }
}
