//! Seeded random fuzz loops over everything the device reads from its UART,
//! in the shape of the artifact parser's loop in `tests.rs` (which takes
//! its case count from [`cases`] too): the deframer
//! (it must resynchronise on the next delimiter after any garbage), frame
//! and request decoding (mutated frames, with and without a fresh CRC) and
//! request validation ([`protocol::check_request`], against an independent
//! reference of its rules, on readings drawn from a pool of extreme floats).
//!
//! Each loop runs a few thousand cases by default (well under a second in
//! the dev profile); `DDIS_FUZZ_CASES=N` runs `N` cases of each instead
//! (scripts/fuzz.sh runs 1 M of each in release). Every loop prints its
//! counts.

use crate::Grid;
use crate::artifact::{Artifact, STEP_GAUSS_NEWTON};
use crate::crc::crc32;
use crate::physics::PDE_DARCY;
use crate::protocol::{
    self, DELIMITER, Deframer, ErrorCode, Event, MAX_FRAME, MAX_REQUEST_SENSORS, MAX_SAMPLES, MAX_WIRE,
    ReconstructRequest, Request, SENSOR_BYTES,
};
use crate::sampler;
use crate::testutil::{Fixture, Lcg, encode_body, fuzz_cases as cases, mutate};

/// Floats a hostile or broken client might send: the edges of f32, the
/// edges of the fixtures' reading range `[-0.4, 0.8]` and of the unit
/// square, and non-finite values.
const POOL: [f32; 24] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    0.4,
    0.8,
    -0.4,
    0.800_001,
    -0.400_001,
    1.000_000_1,
    -1e-7,
    f32::MAX,
    -f32::MAX,
    f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    3e19,
    -3e19,
    1.2e18,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.2,
];

/// A value from [`POOL`], uniform on `[lo, hi)`, or random bits.
fn any_f32(rng: &mut Lcg, lo: f32, hi: f32) -> f32 {
    match rng.below(3) {
        0 => POOL[rng.below(POOL.len())],
        1 => rng.uniform(lo, hi),
        _ => f32::from_bits(rng.next_u64() as u32),
    }
}

/// Sensor records `(x, y, value)` of a request the device should accept
/// (distinct nodes of an `n x n` grid, readings in the fixtures' range),
/// with `0..=2` entries then replaced by hostile values.
fn sensor_rows(rng: &mut Lcg, n: usize, count: usize) -> Vec<(f32, f32, f32)> {
    let last = (n - 1) as f32;
    let mut nodes: Vec<usize> = Vec::new();
    while nodes.len() < count.min(n * n) {
        let node = rng.below(n * n);
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    let mut rows: Vec<(f32, f32, f32)> =
        nodes.iter().map(|&k| ((k % n) as f32 / last, (k / n) as f32 / last, rng.uniform(-0.4, 0.8))).collect();
    for _ in 0..rng.below(3) {
        if rows.is_empty() {
            break;
        }
        let k = rng.below(rows.len());
        match rng.below(4) {
            0 => rows[k].0 = any_f32(rng, -0.1, 1.1),
            1 => rows[k].1 = any_f32(rng, -0.1, 1.1),
            2 => rows[k].2 = any_f32(rng, -1.0, 1.2),
            _ => rows[k] = rows[rng.below(rows.len())],
        }
    }
    rows
}

/// The packed sensor bytes of a random request, sometimes cut to a
/// partial record or padded past [`MAX_REQUEST_SENSORS`] records.
fn sensor_bytes(rng: &mut Lcg, n: usize) -> Vec<u8> {
    let count = match rng.below(16) {
        0 => MAX_REQUEST_SENSORS + 1 + rng.below(4),
        1 => 0,
        _ => 1 + rng.below(12),
    };
    let rows = sensor_rows(rng, n, count);
    let mut bytes = vec![0u8; rows.len() * SENSOR_BYTES];
    protocol::pack_sensors(&rows, &mut bytes).unwrap();
    if count > n * n {
        // More records than nodes: repeat the last ones.
        bytes.extend(std::iter::repeat_n(0x3Fu8, (count - rows.len()) * SENSOR_BYTES));
    }
    if rng.below(16) == 0 && !bytes.is_empty() {
        bytes.truncate(bytes.len() - 1 - rng.below(SENSOR_BYTES - 1));
    }
    bytes
}

/// A random request whose sensor bytes (if any) live in `bytes`.
fn request<'a>(rng: &mut Lcg, bytes: &'a [u8]) -> Request<'a> {
    match rng.below(9) {
        0 => Request::Ping { nonce: rng.next_u64() as u32 },
        1 => Request::Info,
        2 => Request::Cancel,
        _ => Request::Reconstruct(reconstruct_request(rng, bytes)),
    }
}

/// A random reconstruction request with the sensor bytes `bytes`.
fn reconstruct_request<'a>(rng: &mut Lcg, bytes: &'a [u8]) -> ReconstructRequest<'a> {
    ReconstructRequest {
        seed: rng.next_u64(),
        samples: match rng.below(8) {
            0 => rng.below(256) as u8,
            1 => 0,
            _ => 1 + rng.below(3) as u8,
        },
        want_std: rng.below(2) == 0,
        noise_sigma: if rng.below(4) == 0 { any_f32(rng, -0.1, 2.0) } else { rng.uniform(0.0, 0.05) },
        sensors: bytes,
    }
}

/// `msg` as wire bytes: leading delimiter, COBS block, trailing delimiter.
fn wire(msg: &Request<'_>) -> Vec<u8> {
    let (mut scratch, mut out) = ([0u8; MAX_FRAME], vec![0u8; MAX_WIRE + 2]);
    let len = protocol::encode_frame(msg, &mut scratch, &mut out).unwrap();
    out.truncate(len);
    out
}

/// The unencoded frame of `msg`: postcard bytes then the CRC.
fn raw_frame(msg: &Request<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let used = postcard::to_slice(msg, &mut buf).unwrap().len();
    buf.truncate(used);
    let crc = crc32(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

#[test]
fn fuzz_deframer_always_resynchronises() {
    let total = cases(3_000);
    let mut rng = Lcg::new(0xDEF);
    let mut d = Deframer::new();
    let (mut frames, mut oversized, mut refused, mut bytes_fed) = (0usize, 0usize, 0usize, 0usize);
    for case in 0..total {
        let sensors = sensor_bytes(&mut rng, 8);
        let want = request(&mut rng, &sensors);
        let good = wire(&want);
        // Garbage first: random bytes, a damaged or cut frame, delimiters,
        // or (rarely) a block longer than MAX_WIRE.
        let mut stream: Vec<u8> = match rng.below(6) {
            0 => (0..rng.below(64)).map(|_| rng.below(256) as u8).collect(),
            1 => good[..rng.below(good.len())].to_vec(),
            2 => {
                let mut b = good.clone();
                for _ in 0..1 + rng.below(3) {
                    if b.is_empty() {
                        break;
                    }
                    mutate(&mut b, &mut rng);
                }
                b
            }
            3 => vec![DELIMITER; rng.below(4)],
            4 if rng.below(8) == 0 => (0..MAX_WIRE + 1 + rng.below(64)).map(|_| 1 + rng.below(255) as u8).collect(),
            _ => Vec::new(),
        };
        stream.extend_from_slice(&good);
        bytes_fed += stream.len();
        let mut last = None;
        for &b in &stream {
            match d.push(b) {
                Event::Pending => {}
                Event::Oversized(dropped) => {
                    assert!(dropped > MAX_WIRE, "case {case}: oversized after {dropped} bytes");
                    oversized += 1;
                    last = None;
                }
                Event::Frame(len) => {
                    assert!(len > 0 && len <= MAX_WIRE, "case {case}: block of {len} bytes");
                    frames += 1;
                    let got = protocol::decode_frame::<Request<'_>>(d.block(len)).map(|r| format!("{r:?}"));
                    if got.is_err() {
                        refused += 1;
                    }
                    last = Some(got);
                }
            }
        }
        // Whatever came before, the good frame is the last block and decodes.
        assert_eq!(last, Some(Ok(format!("{want:?}"))), "case {case}: no resync after {} bytes", stream.len());
    }
    eprintln!(
        "deframer fuzz: {total} cases, {bytes_fed} bytes, {frames} blocks ({refused} refused), {oversized} oversized"
    );
}

#[test]
fn fuzz_request_decoding_never_panics() {
    let total = cases(5_000);
    let fx = Fixture::tiny(31, true);
    let bytes = fx.encode();
    let art = Artifact::parse(&bytes).unwrap();
    let mut rng = Lcg::new(0xC0DE);
    let (mut decoded, mut unchanged, mut resealed, mut undid) = (0usize, 0usize, 0usize, 0usize);
    let mut codes = [0usize; 17];
    for case in 0..total {
        let sensors = sensor_bytes(&mut rng, art.n());
        let req = request(&mut rng, &sensors);
        let clean = raw_frame(&req);
        let mut frame = clean.clone();
        for _ in 0..1 + rng.below(4) {
            if frame.is_empty() {
                break;
            }
            mutate(&mut frame, &mut rng);
        }
        if frame == clean {
            unchanged += 1;
            continue;
        }
        // Half the cases get a fresh CRC, so postcard sees the damage.
        let reseal = case % 2 == 0 && frame.len() >= 4;
        if reseal {
            let body = frame.len() - 4;
            let crc = crc32(&frame[..body]);
            frame[body..].copy_from_slice(&crc.to_le_bytes());
            resealed += 1;
        }
        let mut block = vec![0u8; frame.len() + frame.len() / 254 + 2];
        let len = cobs::try_encode(&frame, &mut block).unwrap();
        block.truncate(len);
        // Raw COBS damage too, now and then (zeros, bad codes, overruns).
        if rng.below(8) == 0 && !block.is_empty() {
            mutate(&mut block, &mut rng);
        }
        // The COBS damage may undo the frame damage (a bit flipped back):
        // then the clean frame arrives, rightly accepted.
        let mut plain = block.clone();
        let undone = !plain.contains(&0) && cobs::decode_in_place(&mut plain).is_ok_and(|n| plain[..n] == clean[..]);
        match protocol::decode_frame::<Request<'_>>(&mut block) {
            Err(e) => codes[e.code() as usize] += 1,
            Ok(got) => {
                decoded += 1;
                assert!(reseal || undone, "case {case}: damage without a fresh CRC went unseen: {got:?}");
                undid += usize::from(!reseal);
                // What decodes re-encodes to a frame that decodes the same.
                let mut again = wire(&got);
                let end = again.len() - 1;
                // (Compared as text: a NaN noise level is not equal to itself.)
                let back = protocol::decode_frame::<Request<'_>>(&mut again[1..end]).map(|r| format!("{r:?}"));
                assert_eq!(back, Ok(format!("{got:?}")), "case {case}");
                if let Request::Reconstruct(r) = got {
                    let _ = protocol::check_request(&art, &r);
                }
            }
        }
    }
    eprintln!(
        "request decoding fuzz: {total} cases ({resealed} resealed), {unchanged} left unchanged, {decoded} still \
         decoded ({undid} unsealed ones whose COBS damage undid the frame damage); refused: {} bad framing, {} \
         truncated, {} bad CRC, {} malformed",
        codes[ErrorCode::BadFraming as usize],
        codes[ErrorCode::Truncated as usize],
        codes[ErrorCode::BadCrc as usize],
        codes[ErrorCode::Malformed as usize],
    );
}

/// The rules of [`protocol::check_request`] written out again, one after
/// the other, as the device documents them (docs/protocol.md).
fn reference_check(art: &Artifact<'_>, r: &ReconstructRequest<'_>) -> Result<(), (ErrorCode, u32)> {
    if !r.sensors.len().is_multiple_of(SENSOR_BYTES) {
        return Err((ErrorCode::BadSensorBytes, r.sensors.len() as u32));
    }
    let count = r.sensors.len() / SENSOR_BYTES;
    if count > MAX_REQUEST_SENSORS {
        return Err((ErrorCode::TooManySensors, count as u32));
    }
    if r.samples == 0 {
        return Err((ErrorCode::InvalidParameter, 0));
    }
    if r.samples > MAX_SAMPLES {
        return Err((ErrorCode::TooManySamples, u32::from(MAX_SAMPLES)));
    }
    let n = art.n();
    let rows: Vec<(f32, f32, f32)> = protocol::sensor_records(r.sensors).unwrap().collect();
    let mut nodes = Vec::new();
    for (k, &(x, y, v)) in rows.iter().enumerate() {
        if !((0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y)) {
            return Err((ErrorCode::SensorOffGrid, k as u32));
        }
        if !v.is_finite() {
            return Err((ErrorCode::SensorNotFinite, k as u32));
        }
        let node = Grid::new(n).unwrap().nearest_node(x, y, k).unwrap();
        if nodes.contains(&node) {
            return Err((ErrorCode::DuplicateSensor, k as u32));
        }
        nodes.push(node);
    }
    if rows.is_empty() {
        return Err((ErrorCode::NoSensors, 0));
    }
    if count > art.max_sensors() {
        return Err((ErrorCode::TooManySensors, art.max_sensors() as u32));
    }
    // The fixtures' training range [0, 0.4]: noise up to its width widened
    // by one width each side, readings within it widened by one width and
    // six noise levels each side.
    if !(r.noise_sigma.is_finite() && (0.0..=1.2).contains(&r.noise_sigma)) {
        return Err((ErrorCode::InvalidParameter, 1));
    }
    let pad = 0.4 + 6.0 * r.noise_sigma;
    let (lo, hi) = (0.0 - pad, 0.4 + pad);
    if let Some(k) = rows.iter().position(|&(_, _, v)| !(lo <= v && v <= hi)) {
        return Err((ErrorCode::ReadingOutOfRange, k as u32));
    }
    Ok(())
}

#[test]
fn fuzz_request_validation_matches_its_rules() {
    let total = cases(4_000);
    let fx = Fixture::tiny(32, false);
    // Surrogate + Langevin (max_sensors = MAX_SENSORS) and exact physics +
    // Gauss-Newton (max_sensors = 40 of the 64 nodes).
    let artifacts = [fx.encode(), encode_body(&fx.physics_body(PDE_DARCY, STEP_GAUSS_NEWTON, 2))];
    let arts: Vec<Artifact<'_>> = artifacts.iter().map(|b| Artifact::parse(b).unwrap()).collect();
    let data = arts[0].data();
    assert_eq!((data.reading_range(0.0), data.max_noise()), ((-0.4, 0.8), 1.2), "the reference assumes these");
    let mut ws = vec![0.0f32; arts.iter().map(|a| a.workspace_len().unwrap()).max().unwrap()];
    let n2 = arts[0].n() * arts[0].n();
    let (mut mean, mut std) = (vec![0.0f32; n2], vec![0.0f32; n2]);
    let mut rng = Lcg::new(0x5E45);
    let (mut accepted, mut ran) = (0usize, 0usize);
    let mut codes = [0usize; 17];
    for case in 0..total {
        let art = &arts[case % 2];
        let mut sensors = sensor_bytes(&mut rng, art.n());
        if case % 2 == 1 && rng.below(8) == 0 {
            // Past the Gauss-Newton artifact's 40 sensors.
            let count = 41 + rng.below(8);
            let rows = sensor_rows(&mut rng, art.n(), count);
            sensors = vec![0u8; rows.len() * SENSOR_BYTES];
            protocol::pack_sensors(&rows, &mut sensors).unwrap();
        }
        let r = reconstruct_request(&mut rng, &sensors);
        let got = protocol::check_request(art, &r);
        let want = reference_check(art, &r);
        assert_eq!(got.as_ref().map(|_| ()).map_err(|&e| e), want, "case {case}: {r:?}");
        match got {
            Err((code, _)) => codes[code as usize] += 1,
            Ok(s) => {
                accepted += 1;
                assert_eq!(s.len(), r.sensors.len() / SENSOR_BYTES);
                assert!(s.rms().is_finite() && s.rms() > 0.0, "case {case}");
                // What passes the edge runs: a sampler call on every 16th.
                if accepted % 16 == 0 {
                    ran += 1;
                    let samples = usize::from(r.samples).min(2);
                    let stats =
                        sampler::posterior(art, &s, r.noise_sigma, r.seed, samples, &mut mean, &mut std, &mut ws);
                    assert!(stats.is_ok(), "case {case}: {stats:?} for {r:?}");
                }
            }
        }
    }
    let named = [
        ErrorCode::BadSensorBytes,
        ErrorCode::TooManySensors,
        ErrorCode::SensorOffGrid,
        ErrorCode::SensorNotFinite,
        ErrorCode::DuplicateSensor,
        ErrorCode::NoSensors,
        ErrorCode::InvalidParameter,
        ErrorCode::ReadingOutOfRange,
        ErrorCode::TooManySamples,
    ];
    let refused: Vec<String> = named.iter().map(|&c| format!("{} {c:?}", codes[c as usize])).collect();
    eprintln!(
        "request validation fuzz: {total} cases, {accepted} accepted ({ran} run), refused: {}",
        refused.join(", ")
    );
    for c in named {
        assert!(total < 2_000 || codes[c as usize] > 0, "no case met {c:?}: the generator misses a rule");
    }
}
