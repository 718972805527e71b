//! Tests across modules on tiny random networks: fast kernels against the
//! f64 reference (layer by layer and end to end), the surrogate's VJP
//! against finite differences and the adjoint identity, damaged artifacts,
//! the parse fuzz loop, and the sampler's determinism and bookkeeping.
//! One file although it is past 500 lines: every test here builds on the
//! same tiny fixtures (`testutil`); the fuzz and Gauss–Newton tests, which
//! need their own, have their own files.

use crate::artifact::{
    self, Artifact, Body, Bytes, FORMAT_VERSION, KIND_PHYSICS, KIND_PRIOR, KIND_SURROGATE, PhysicsParams, reseal,
};
use crate::kernels::F32s;
use crate::operator::reference;
use crate::operator::{Operator, OperatorShape};
use crate::rng::Rng;
use crate::sampler;
use crate::testutil::{
    FNO_NORM, Fixture, Lcg, PRIOR_NORM, TINY_FNO, TINY_PRIOR, assert_close, encode_body, f32_bytes, max_rel_err, mutate,
};
use crate::{Error, Grid, MAX_SENSORS, Sensors};

/// f32 round-off of the whole network (DFT sums over a padded grid of
/// ~100 nodes, a few layers) against the f64 reference, relative to the
/// largest reference value.
const NET_TOL: f64 = 2e-5;
/// Adjoint identity `<J v, w> = <v, J^T w>`: f32 VJP against the f64 JVP,
/// relative to `sum |v_k (J^T w)_k|`.
const ADJOINT_TOL: f64 = 2e-5;
/// Central finite differences of the f64 reference loss (step 1e-4, so
/// truncation and kink crossings stay far below) against the f32 gradient.
const FD_TOL: f64 = 1e-3;

fn random_field(rng: &mut Lcg, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(lo, hi)).collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Shapes that exercise the edge cases of the spectral layer: an even
/// padded grid with the column Nyquist mode kept (P = 6, m = 3), an odd
/// padded grid (P = 9) and the tiny default.
fn shapes() -> [(OperatorShape, OperatorShape); 3] {
    let nyquist = OperatorShape { n: 6, width: 3, modes: 3, layers: 2, pad: 0, proj_width: 4 };
    let odd = OperatorShape { n: 7, width: 5, modes: 2, layers: 3, pad: 1, proj_width: 3 };
    [(TINY_FNO, TINY_PRIOR), (nyquist, OperatorShape { pad: 1, ..nyquist }), (odd, OperatorShape { pad: 2, ..odd })]
}

fn sensors_for(n: usize, rng: &mut Lcg, count: usize, values: impl Fn(usize) -> f32) -> Sensors {
    let mut s = Sensors::new(Grid::new(n).unwrap());
    while s.len() < count {
        let node = rng.below(n * n);
        let _ = s.push_node(node, values(node));
    }
    s
}

#[test]
fn operator_layer_by_layer_and_end_to_end_match_reference() {
    let mut rng = Lcg::new(11);
    for (seed, (fs, ps)) in shapes().into_iter().enumerate() {
        for int8 in [false, true] {
            let fx = Fixture::new(seed as u64, fs, ps, int8);
            let bytes = fx.encode();
            let art = Artifact::parse(&bytes).unwrap();
            let op: &Operator = art.surrogate().unwrap().net();
            let n = fs.n;
            let a = random_field(&mut rng, n * n, -2.0, 2.0);
            let r = reference::forward(op, &to_f64(&a), &vec![0.0; n * n], &[]);
            let mut ws = vec![0.0f32; op.shape().forward_workspace_len()];
            let mut w = op.split(&mut ws, None).unwrap();
            op.lift(&a, |v| v, &mut w);
            let what = format!("{fs:?} int8 {int8}");
            assert_close(w.h, &r.states[0], NET_TOL, &format!("{what}: lift"));
            for l in 0..fs.layers {
                op.layer(l, &mut w, F32s::empty(), false);
                assert_close(w.h, &r.states[l + 1], NET_TOL, &format!("{what}: layer {l}"));
            }
            let mut u = vec![0.0f32; n * n];
            op.project_all(&mut w, &mut u, |_, v| v);
            assert_close(&u, &r.out, NET_TOL, &format!("{what}: projection"));

            // The public forward (normalised and physical) gives the same.
            let fno = art.surrogate().unwrap();
            let mut ws = vec![0.0f32; fno.forward_workspace_len()];
            let mut u2 = vec![0.0f32; n * n];
            fno.forward_normalized(&a, &mut u2, &mut ws).unwrap();
            assert_eq!(u, u2, "{what}: forward_normalized");
            let (am, asd, um, usd) = FNO_NORM;
            let phys: Vec<f32> = a.iter().map(|v| v * asd + am).collect();
            fno.forward(&phys, &mut u2, &mut ws).unwrap();
            let want: Vec<f64> = r.out.iter().map(|v| v * f64::from(usd) + f64::from(um)).collect();
            assert_close(&u2, &want, NET_TOL, &format!("{what}: physical forward"));
        }
    }
}

#[test]
fn denoiser_matches_reference_at_every_level() {
    let mut rng = Lcg::new(12);
    for (seed, (fs, ps)) in shapes().into_iter().enumerate() {
        for int8 in [false, true] {
            let fx = Fixture::new(100 + seed as u64, fs, ps, int8);
            let bytes = fx.encode();
            let art = Artifact::parse(&bytes).unwrap();
            let (prior, sched) = (art.prior().unwrap(), art.schedule().unwrap());
            let n = ps.n;
            let x = random_field(&mut rng, n * n, -3.0, 3.0);
            let mut ws = vec![0.0f32; prior.workspace_len()];
            let mut out = vec![0.0f32; n * n];
            for i in 0..sched.levels() {
                let lv = sched.level(i).unwrap();
                prior.denoise(&lv, &x, &mut out, &mut ws).unwrap();
                let field: Vec<f64> = x.iter().map(|&v| f64::from(v * lv.c_in)).collect();
                let film: Vec<f64> = lv.film().iter().map(f64::from).collect();
                let r = reference::forward(prior.net(), &field, &vec![0.0; n * n], &film);
                let want: Vec<f64> = r
                    .out
                    .iter()
                    .zip(&x)
                    .map(|(net, &x)| f64::from(x) * f64::from(lv.c_skip) + net * f64::from(lv.c_out))
                    .collect();
                assert_close(&out, &want, NET_TOL, &format!("{ps:?} int8 {int8} level {i}"));
            }
        }
    }
}

#[test]
fn vjp_satisfies_the_adjoint_identity() {
    let mut rng = Lcg::new(13);
    for (seed, (fs, ps)) in shapes().into_iter().enumerate() {
        for int8 in [false, true] {
            let fx = Fixture::new(200 + seed as u64, fs, ps, int8);
            let bytes = fx.encode();
            let art = Artifact::parse(&bytes).unwrap();
            let fno = art.surrogate().unwrap();
            let n = fs.n;
            let a = random_field(&mut rng, n * n, -2.0, 2.0);
            let v = random_field(&mut rng, n * n, -1.0, 1.0);
            let sensors = sensors_for(n, &mut rng, 5, |_| 0.0);
            let w: Vec<f32> = random_field(&mut rng, sensors.len(), -1.0, 1.0);
            let mut ws = vec![0.0f32; fno.workspace_len(sensors.len())];
            let mut grad = vec![0.0f32; n * n];
            let mut seen = Vec::new();
            fno.vjp_normalized(
                &a,
                &sensors,
                |u| {
                    seen.extend_from_slice(u);
                    u.copy_from_slice(&w);
                },
                &mut grad,
                &mut ws,
            )
            .unwrap();
            let r = reference::forward(fno.net(), &to_f64(&a), &to_f64(&v), &[]);
            // The forward half handed over the predictions at the sensors.
            let at: Vec<f64> = sensors.nodes().map(|k| r.out[k]).collect();
            assert_close(&seen, &at, NET_TOL, "predictions at the sensors");
            let jv_w: f64 = sensors.nodes().zip(&w).map(|(k, &w)| r.dout[k] * f64::from(w)).sum();
            let v_jtw: f64 = v.iter().zip(&grad).map(|(&v, &g)| f64::from(v) * f64::from(g)).sum();
            let size: f64 = v.iter().zip(&grad).map(|(&v, &g)| (f64::from(v) * f64::from(g)).abs()).sum();
            let err = (jv_w - v_jtw).abs() / size.max(1e-30);
            assert!(err <= ADJOINT_TOL, "{fs:?} int8 {int8}: <Jv,w> = {jv_w:e}, <v,J^T w> = {v_jtw:e}, rel {err:e}");
        }
    }
}

#[test]
fn loss_gradient_matches_central_differences() {
    let mut rng = Lcg::new(14);
    for (seed, (fs, ps)) in shapes().into_iter().enumerate() {
        let fx = Fixture::new(300 + seed as u64, fs, ps, false);
        let bytes = fx.encode();
        let art = Artifact::parse(&bytes).unwrap();
        let fno = art.surrogate().unwrap();
        let n = fs.n;
        let (am, asd, um, usd) = FNO_NORM;
        let (pm, ps_) = PRIOR_NORM;
        // Readings from another field, so the residuals are O(1).
        let other = random_field(&mut rng, n * n, -1.0, 1.0);
        let r_other = reference::forward(fno.net(), &to_f64(&other), &vec![0.0; n * n], &[]);
        let sensors = sensors_for(n, &mut rng, 6, |k| (r_other.out[k] * f64::from(usd) + f64::from(um)) as f32);
        let scale = sensors.rms();
        let loss = |x: &[f64]| -> f64 {
            let a: Vec<f64> =
                x.iter().map(|&v| ((v * f64::from(ps_) + f64::from(pm)) - f64::from(am)) / f64::from(asd)).collect();
            let r = reference::forward(fno.net(), &a, &vec![0.0; n * n], &[]);
            sensors
                .iter()
                .map(|s| {
                    let u = r.out[s.node as usize] * f64::from(usd) + f64::from(um);
                    let d = (u - f64::from(s.value)) / f64::from(scale);
                    0.5 * d * d
                })
                .sum()
        };
        let x = random_field(&mut rng, n * n, -1.5, 1.5);
        let mut ws = vec![0.0f32; fno.workspace_len(sensors.len())];
        let mut grad = vec![0.0f32; n * n];
        let l = fno.loss_grad(&x, PRIOR_NORM, &sensors, scale, &mut grad, &mut ws).unwrap();
        let x64 = to_f64(&x);
        let l_ref = loss(&x64);
        assert!((f64::from(l) - l_ref).abs() <= NET_TOL * (1.0 + l_ref), "loss {l} vs reference {l_ref}");
        for trial in 0..3 {
            let v = random_field(&mut rng, n * n, -1.0, 1.0);
            let h = 1e-4;
            let plus: Vec<f64> = x64.iter().zip(&v).map(|(x, &v)| x + h * f64::from(v)).collect();
            let minus: Vec<f64> = x64.iter().zip(&v).map(|(x, &v)| x - h * f64::from(v)).collect();
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
            let an: f64 = grad.iter().zip(&v).map(|(&g, &v)| f64::from(g) * f64::from(v)).sum();
            let err = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-12);
            assert!(err <= FD_TOL, "{fs:?} trial {trial}: finite difference {fd:e}, gradient {an:e} (rel {err:e})");
        }
    }
}

#[test]
fn smooth_noise_matches_the_plain_product() {
    let fx = Fixture::tiny(5, false);
    let bytes = fx.encode();
    let art = Artifact::parse(&bytes).unwrap();
    let noise = art.noise().unwrap();
    let n = art.n();
    let l: Vec<f64> = F32s::new(&fx.noise, n * n, "l").unwrap().iter().map(f64::from).collect();
    let mut rng = Rng::new(3);
    let (mut out, mut tmp) = (vec![0.0f32; n * n], vec![0.0f32; n * n]);
    let mut copy = rng.clone();
    noise.sample(&mut rng, &mut out, &mut tmp).unwrap();
    let z: Vec<f64> = (0..n * n).map(|_| f64::from(copy.normal())).collect();
    let mut want = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            want[i * n + j] = (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .map(|(a, b)| l[i * n + a] * z[a * n + b] * l[j * n + b])
                .sum();
        }
    }
    assert_close(&out, &want, 1e-5, "L Z L^T");
    assert!(matches!(noise.sample(&mut rng, &mut out[1..], &mut tmp), Err(Error::BufferLength { .. })));
}

#[test]
fn artifact_round_trips() {
    let fx = Fixture::tiny(1, true);
    let body = fx.body();
    let bytes = encode_body(&body);
    assert_eq!(&bytes[..4], b"DDIS");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), FORMAT_VERSION);
    let decoded: Body = postcard::from_bytes(&bytes[6..bytes.len() - 4]).unwrap();
    assert_eq!(decoded, body, "postcard round trip");
    let art = Artifact::parse(&bytes).unwrap();
    assert_eq!(art.n(), 8);
    assert_eq!(art.problem(), "test");
    assert_eq!(art.kind(), artifact::KIND_SAMPLER);
    assert_eq!(art.len_bytes(), bytes.len());
    assert_eq!(art.surrogate().unwrap().normalization(), FNO_NORM);
    assert_eq!(art.prior().unwrap().normalization(), PRIOR_NORM);
    assert_eq!(art.surrogate().unwrap().shape(), TINY_FNO);
    assert_eq!(art.prior().unwrap().shape(), TINY_PRIOR);
    assert!(art.surrogate().unwrap().net().is_int8());
    let sched = art.schedule().unwrap();
    assert_eq!((sched.levels(), sched.langevin()), (3, 2));
    assert_eq!(sched.level(3), Err(Error::LevelOutOfRange { level: 3, levels: 3 }));
    assert_eq!(
        art.workspace_len(),
        Some(sampler::langevin_surrogate_workspace_len(8, TINY_FNO, TINY_PRIOR, MAX_SENSORS))
    );
}

#[test]
fn every_truncation_and_many_bit_flips_are_errors() {
    let bytes = Fixture::tiny(2, true).encode();
    for len in 0..bytes.len() {
        assert!(Artifact::parse(&bytes[..len]).is_err(), "truncated to {len} bytes parsed");
    }
    let mut damaged = bytes.clone();
    let mut flips = 0;
    for pos in 0..bytes.len() {
        for bit in [pos % 8, (pos * 5 + 3) % 8] {
            damaged[pos] ^= 1 << bit;
            assert!(Artifact::parse(&damaged).is_err(), "flip of bit {bit} in byte {pos} parsed");
            damaged[pos] ^= 1 << bit;
            flips += 1;
        }
    }
    assert!(flips >= 2 * bytes.len());
    assert!(Artifact::parse(&damaged).is_ok());
}

#[test]
fn wrong_magic_version_and_trailing_bytes_are_errors() {
    let bytes = Fixture::tiny(3, false).encode();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(Artifact::parse(&b).unwrap_err(), Error::BadMagic);
    let mut b = bytes.clone();
    b[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        Artifact::parse(&b).unwrap_err(),
        Error::UnsupportedVersion { found: FORMAT_VERSION + 1, supported: FORMAT_VERSION }
    );
    let mut b = bytes.clone();
    b.insert(b.len() - 4, 0);
    reseal(&mut b);
    assert_eq!(Artifact::parse(&b).unwrap_err(), Error::TrailingBytes { count: 1 });
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0xFF;
    assert!(matches!(Artifact::parse(&b).unwrap_err(), Error::CrcMismatch { .. }));
    assert!(matches!(Artifact::parse(&bytes[..7]).unwrap_err(), Error::Truncated { len: 7, min: 10 }));
}

#[test]
fn absurd_shapes_with_a_valid_crc_are_errors() {
    // Declared before the fixture: edited bodies borrow them.
    let nan = f32_bytes(&[f32::NAN; 4]);
    let mut table = Fixture::tiny(4, true).table;
    table[0..4].copy_from_slice(&(-1.0f32).to_le_bytes());
    let fx = Fixture::tiny(4, true);
    macro_rules! check {
        ($b:ident => $edit:expr, $what:expr, $ok:expr $(,)?) => {{
            let mut $b = fx.body();
            $edit;
            let bytes = encode_body(&$b);
            let err = Artifact::parse(&bytes).expect_err($what);
            let ok: &dyn Fn(&Error) -> bool = $ok;
            assert!(ok(&err), "{}: unexpected {err:?}", $what);
        }};
    }
    let dim = |e: &Error| matches!(e, Error::DimOutOfRange { .. });
    let shape = |e: &Error| matches!(e, Error::ShapeMismatch { .. });
    check!(b => b.problem = "", "empty problem", &dim);
    check!(b => b.problem = "a-problem-name-longer-than-32-bytes", "long problem", &dim);
    check!(b => b.problem = "Darcy", "upper case in problem", &|e| matches!(e, Error::InvalidValue { field: "problem" }));
    check!(b => b.problem = "dar\ncy", "control byte in problem", &|e| matches!(e, Error::InvalidValue { .. }));
    check!(b => b.n = 2, "n = 2", &|e| matches!(e, Error::GridTooSmall { n: 2 }));
    check!(b => b.n = u32::MAX, "n = u32::MAX", &dim);
    check!(b => b.n = 9, "n differs from the weights", &|e| shape(e) || dim(e));
    check!(b => b.kind = KIND_SURROGATE, "kind flags", &|e| matches!(e, Error::KindMismatch { .. }));
    check!(b => b.kind |= 0x80, "unknown kind flag", &|e| matches!(e, Error::KindMismatch { .. }));
    check!(b => b.surrogate.as_mut().unwrap().net.width = 0, "width 0", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.width = u32::MAX, "width huge", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.width = 5, "width off by one", &shape);
    check!(b => b.surrogate.as_mut().unwrap().net.modes = 7, "modes past the padded grid", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.modes = 2, "modes differ from the weights", &shape);
    check!(b => b.surrogate.as_mut().unwrap().net.layers = 0, "no layers", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.layers = 3, "layers differ", &shape);
    check!(b => b.surrogate.as_mut().unwrap().net.pad = 8, "pad >= n", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.pad = 1, "pad differs from the twiddles", &shape);
    check!(b => b.surrogate.as_mut().unwrap().net.proj_width = 100_000, "proj width huge", &dim);
    check!(b => b.surrogate.as_mut().unwrap().net.lift.inputs = 4, "lift inputs", &shape);
    check!(b => b.surrogate.as_mut().unwrap().net.proj_out.outputs = 2, "two output channels", &shape);
    check!(b => b.surrogate.as_mut().unwrap().a_std = 0.0, "zero std", &|e| matches!(e, Error::InvalidValue { .. }));
    check!(b => b.surrogate.as_mut().unwrap().u_mean = f32::NAN, "NaN mean", &|e| matches!(e, Error::NonFinite { .. }));
    check!(b => b.prior.as_mut().unwrap().sigma_data = -1.0, "negative sigma_data", &|e| {
        matches!(e, Error::InvalidValue { .. })
    });
    check!(b => b.noise.as_mut().unwrap().sqrt_kernel = Bytes(&[0; 12]), "short noise kernel", &shape);
    check!(b => b.noise.as_mut().unwrap().kernel = Bytes(&[0; 12]), "short covariance kernel", &shape);
    check!(b => b.schedule.as_mut().unwrap().step = 2, "unknown step", &|e| matches!(e, Error::InvalidValue { .. }));
    check!(b => b.schedule.as_mut().unwrap().max_sensors = 0, "no sensors allowed", &dim);
    check!(b => b.schedule.as_mut().unwrap().max_sensors = crate::MAX_SENSORS as u32 + 1, "sensor cap above the runtime's", &dim);
    check!(
        b => {
            b.physics = Some(PhysicsParams { pde: 7, shift: 0.0, coef_floor: 1.0, u_floor: 1.0 });
            b.kind |= KIND_PHYSICS;
        },
        "unknown PDE",
        &|e| matches!(e, Error::InvalidValue { .. })
    );
    check!(
        b => {
            b.physics = Some(PhysicsParams { pde: 0, shift: 0.0, coef_floor: 0.0, u_floor: 1.0 });
            b.kind |= KIND_PHYSICS;
        },
        "Darcy floor 0",
        &|e| matches!(e, Error::InvalidValue { .. })
    );
    check!(
        b => {
            b.physics = Some(PhysicsParams { pde: 1, shift: 0.0, coef_floor: 1.0, u_floor: f32::NAN });
            b.kind |= KIND_PHYSICS;
        },
        "NaN unit floor",
        &|e| matches!(e, Error::InvalidValue { .. })
    );
    check!(b => b.physics = Some(PhysicsParams { pde: 1, shift: 0.0, coef_floor: 1.0, u_floor: 1.0 }), "physics without its flag", &|e| matches!(e, Error::KindMismatch { .. }));
    check!(b => b.data.u_min = f32::NAN, "NaN solution range", &|e| matches!(e, Error::NonFinite { field: "u_min", .. }));
    check!(b => b.data.u_max = -1.0, "range upside down", &|e| matches!(e, Error::InvalidValue { field: "u_max" }));
    check!(b => b.data.u_max = 1e18, "range past MAX_ABS_U", &|e| matches!(e, Error::InvalidValue { field: "u_max" }));
    check!(b => b.data.u_min = -f32::MAX, "range past MAX_ABS_U", &|e| matches!(e, Error::InvalidValue { field: "u_min" }));
    check!(b => b.data.grf_tau = 0.0, "zero GRF tau", &|e| matches!(e, Error::InvalidValue { field: "grf_tau" }));
    check!(b => b.schedule.as_mut().unwrap().levels = 0, "no levels", &dim);
    check!(b => b.schedule.as_mut().unwrap().levels = u32::MAX, "levels huge", &dim);
    check!(b => b.schedule.as_mut().unwrap().levels = 2, "levels differ from the table", &shape);
    check!(b => b.schedule.as_mut().unwrap().tau = 0.0, "tau 0", &|e| matches!(e, Error::InvalidValue { .. }));
    for w in [f32::NAN, -0.5, f32::INFINITY, 16.5] {
        check!(b => b.schedule.as_mut().unwrap().noise_width = w, "noise width out of [0, 16]", &|e| {
            matches!(e, Error::InvalidValue { field: "schedule.noise_width" })
        });
    }
    check!(b => b.schedule.as_mut().unwrap().langevin = u32::MAX, "Langevin huge", &dim);
    check!(
        b => {
            b.prior = None;
            b.kind &= !KIND_PRIOR;
        },
        "schedule without prior",
        &|e| matches!(e, Error::MissingPart { part: "prior" }),
    );
    // Non-finite weights and negative scales.
    check!(b => b.surrogate.as_mut().unwrap().net.lift.bias = Bytes(&nan), "NaN bias", &|e| {
        matches!(e, Error::NonFinite { .. })
    });
    check!(b => b.schedule.as_mut().unwrap().table = Bytes(&table), "negative sigma", &|e| {
        matches!(e, Error::InvalidValue { .. })
    });
}

/// Cases of the parse fuzz loop: random damage then a fresh CRC (so the
/// postcard decoder and the validation see the damage), and random damage
/// alone (the CRC must catch it). `DDIS_FUZZ_CASES=N` runs `N` in the same
/// 4 : 1 proportion (scripts/fuzz.sh).
const FUZZ_RESEALED: usize = 20_000;
const FUZZ_RAW: usize = 5_000;

#[test]
fn fuzz_parse_never_panics() {
    let fixtures = [Fixture::tiny(6, true).encode(), Fixture::tiny(7, false).encode()];
    let mut rng = Lcg::new(99);
    let (mut parsed, mut ran, mut unchanged) = (0, 0, 0);
    let total = crate::testutil::fuzz_cases(FUZZ_RESEALED + FUZZ_RAW);
    let resealed = total / 5 * 4;
    for case in 0..total {
        let mut b = fixtures[case % 2].clone();
        for _ in 0..1 + rng.below(4) {
            if b.is_empty() {
                break;
            }
            mutate(&mut b, &mut rng);
        }
        if b == fixtures[case % 2] {
            // The damage undid itself (e.g. a byte set to its own value).
            unchanged += 1;
            continue;
        }
        if case < resealed {
            reseal(&mut b);
        }
        let Ok(art) = Artifact::parse(&b) else { continue };
        parsed += 1;
        if case >= resealed {
            panic!("case {case}: damage without a fresh CRC went unseen");
        }
        // Whatever parses must also run: forward passes of both networks.
        if parsed % 8 == 0 {
            ran += 1;
            let n = art.n();
            let fno = art.surrogate().unwrap();
            let mut ws = vec![0.0; fno.forward_workspace_len()];
            let mut u = vec![0.0; n * n];
            fno.forward(&vec![1.0; n * n], &mut u, &mut ws).unwrap();
            let (prior, sched) = (art.prior().unwrap(), art.schedule().unwrap());
            let mut ws = vec![0.0; prior.workspace_len()];
            prior.denoise(&sched.level(0).unwrap(), &vec![0.5; n * n], &mut u, &mut ws).unwrap();
        }
    }
    eprintln!(
        "parse fuzz: {total} cases ({resealed} resealed, {} raw), {unchanged} left the bytes unchanged, \
         {parsed} still valid, {ran} of those run",
        total - resealed
    );
}

fn sampler_setup(seed: u64) -> (Vec<u8>, Sensors) {
    let fx = Fixture::tiny(seed, true);
    let bytes = fx.encode();
    let mut rng = Lcg::new(seed);
    let sensors = sensors_for(8, &mut rng, 7, |k| 0.2 + 0.01 * (k % 5) as f32);
    (bytes, sensors)
}

#[test]
fn same_seed_same_bits_and_call_counts() {
    let (bytes, sensors) = sampler_setup(21);
    let art = Artifact::parse(&bytes).unwrap();
    let n2 = art.n() * art.n();
    let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
    let run = |seed: u64, ws: &mut [f32]| {
        let mut out = vec![0.0f32; n2];
        let stats = sampler::reconstruct(&art, &sensors, 0.0, seed, &mut out, ws).unwrap();
        (out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), stats)
    };
    let (a, stats) = run(5, &mut ws);
    // A dirty workspace must not matter.
    ws.iter_mut().for_each(|v| *v = f32::NAN);
    let (b, _) = run(5, &mut ws);
    let (c, _) = run(6, &mut ws);
    assert_eq!(a, b, "same seed, same bits");
    assert_ne!(a, c, "another seed, other bits");
    assert!(a.iter().all(|&v| f32::from_bits(v).is_finite()));
    assert_eq!(stats.denoiser_calls, 3);
    assert_eq!(stats.guide_calls, 6);
}

/// The artifact's `noise_width` is the share of the readings' noise that
/// widens the likelihood: the width is `max(tau, noise_width * noise /
/// unit)`, so a width that keeps the floor below `tau` gives the noiseless
/// run's bits, and only the product `noise_width * noise` matters.
#[test]
fn noise_width_sets_the_noise_share_of_the_likelihood_width() {
    let fx = Fixture::tiny(23, true);
    let mut rng = Lcg::new(23);
    let sensors = sensors_for(8, &mut rng, 7, |k| 0.2 + 0.01 * (k % 5) as f32);
    let tau = fx.body().schedule.unwrap().tau;
    // At width 1 this noise floors the width at 2 tau.
    let noise = 2.0 * tau * sensors.rms();
    let run = |width: f32, noise: f32| {
        let mut body = fx.body();
        body.schedule.as_mut().unwrap().noise_width = width;
        let bytes = encode_body(&body);
        let art = Artifact::parse(&bytes).unwrap();
        let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
        let mut out = vec![0.0f32; art.n() * art.n()];
        sampler::reconstruct(&art, &sensors, noise, 5, &mut out, &mut ws).unwrap();
        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let noiseless = run(1.0, 0.0);
    assert_eq!(run(0.0, noise), noiseless, "width 0 ignores the noise");
    assert_eq!(run(0.4, noise), noiseless, "a floor below tau leaves tau");
    assert_ne!(run(1.0, noise), noiseless, "width 1 widens the likelihood to the noise");
    assert_eq!(run(0.5, 2.0 * noise), run(1.0, noise), "only noise_width * noise counts");
}

#[test]
fn the_workspace_is_sized_from_the_sensor_count() {
    let (bytes, sensors) = sampler_setup(25);
    let art = Artifact::parse(&bytes).unwrap();
    let n2 = art.n() * art.n();
    let cap = art.workspace_len().unwrap();
    let need = art.workspace_len_for(sensors.len()).unwrap();
    // 7 sensors need less than the cap's 256: projection masks and
    // predictions for 249 sensors fewer.
    let words = TINY_FNO.proj_width.div_ceil(32);
    assert_eq!(cap - need, (MAX_SENSORS - sensors.len()) * (words + 1));
    assert_eq!(art.workspace_len_for(MAX_SENSORS), Some(cap));
    assert!(art.workspace_len_for(1).unwrap() < need);
    // Exactly that much runs, bit for bit as in the cap-sized workspace.
    let run = |ws: &mut [f32]| {
        let mut out = vec![0.0f32; n2];
        sampler::reconstruct(&art, &sensors, 0.0, 3, &mut out, ws).unwrap();
        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(&mut vec![f32::NAN; need]), run(&mut vec![0.0; cap]));
    let mut out = vec![0.0f32; n2];
    assert_eq!(
        sampler::reconstruct(&art, &sensors, 0.0, 3, &mut out, &mut vec![0.0; need - 1]),
        Err(Error::WorkspaceTooSmall { needed: need, got: need - 1 })
    );
}

#[test]
fn posterior_mean_and_std_match_the_samples() {
    let (bytes, sensors) = sampler_setup(22);
    let art = Artifact::parse(&bytes).unwrap();
    let n2 = art.n() * art.n();
    let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
    let m = 4;
    let (mut mean, mut std) = (vec![0.0; n2], vec![0.0; n2]);
    let stats = sampler::posterior(&art, &sensors, 0.01, 9, m, &mut mean, &mut std, &mut ws).unwrap();
    assert_eq!(stats.denoiser_calls, 3 * m as u32);
    let mut rng = Rng::new(9);
    let samples: Vec<Vec<f32>> = (0..m)
        .map(|_| {
            let mut out = vec![0.0f32; n2];
            sampler::sample(&art, &sensors, 0.01, &mut rng, &mut out, &mut ws).unwrap();
            out
        })
        .collect();
    let want_mean: Vec<f64> =
        (0..n2).map(|k| samples.iter().map(|s| f64::from(s[k])).sum::<f64>() / m as f64).collect();
    let want_std: Vec<f64> = (0..n2)
        .map(|k| (samples.iter().map(|s| (f64::from(s[k]) - want_mean[k]).powi(2)).sum::<f64>() / m as f64).sqrt())
        .collect();
    assert_close(&mean, &want_mean, 1e-5, "posterior mean");
    let err = max_rel_err(&std, &want_std);
    assert!(err < 1e-4, "posterior std: {err:e}");
    assert!(std.iter().any(|&s| s > 0.0), "samples differ");
}

#[test]
fn poll_hook_cancels_between_levels_and_never_changes_a_finished_run() {
    let (bytes, sensors) = sampler_setup(24);
    let art = Artifact::parse(&bytes).unwrap();
    let n2 = art.n() * art.n();
    let levels = art.schedule().unwrap().levels() as u32;
    let samples = 2;
    let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (mut m0, mut s0) = (vec![0.0; n2], vec![0.0; n2]);
    let plain = sampler::posterior(&art, &sensors, 0.01, 9, samples, &mut m0, &mut s0, &mut ws).unwrap();

    // A hook that lets the run finish: asked once per level, counting up,
    // and the same bits as the plain call.
    let (mut m1, mut s1) = (vec![0.0; n2], vec![0.0; n2]);
    let mut asked = Vec::new();
    let hooked = sampler::posterior_with(&art, &sensors, 0.01, 9, samples, &mut m1, &mut s1, &mut ws, &mut |done| {
        asked.push(done);
        sampler::Control::Continue
    })
    .unwrap();
    assert_eq!(asked, (0..levels * samples as u32).collect::<Vec<_>>());
    assert_eq!((bits(&m1), bits(&s1), hooked), (bits(&m0), bits(&s0), plain));

    // Cancelled before level k (the second chain's too): a typed error
    // naming k, and the next full run on the same workspace is unchanged.
    for k in [0, 1, levels, levels * samples as u32 - 1] {
        let got = sampler::posterior_with(&art, &sensors, 0.01, 9, samples, &mut m1, &mut s1, &mut ws, &mut |done| {
            if done == k { sampler::Control::Cancel } else { sampler::Control::Continue }
        });
        assert_eq!(got, Err(Error::Cancelled { levels: k }));
        sampler::posterior(&art, &sensors, 0.01, 9, samples, &mut m1, &mut s1, &mut ws).unwrap();
        assert_eq!((bits(&m1), bits(&s1)), (bits(&m0), bits(&s0)), "after a cancel before level {k}");
    }
}

#[test]
fn bad_requests_are_errors() {
    let (bytes, sensors) = sampler_setup(23);
    let art = Artifact::parse(&bytes).unwrap();
    let n2 = art.n() * art.n();
    let need = art.workspace_len_for(sensors.len()).unwrap();
    let mut ws = vec![0.0f32; art.workspace_len().unwrap()];
    let mut out = vec![0.0f32; n2];
    let short = &mut vec![0.0f32; need - 1];
    assert_eq!(
        sampler::reconstruct(&art, &sensors, 0.0, 1, &mut out, short),
        Err(Error::WorkspaceTooSmall { needed: need, got: need - 1 })
    );
    assert!(matches!(
        sampler::reconstruct(&art, &sensors, 0.0, 1, &mut out[1..], &mut ws),
        Err(Error::BufferLength { .. })
    ));
    assert_eq!(sampler::reconstruct(&art, &Sensors::new(art.grid()), 0.0, 1, &mut out, &mut ws), Err(Error::NoSensors));
    let other = Sensors::from_xy(Grid::new(9).unwrap(), &[(0.5, 0.5, 1.0)]).unwrap();
    assert_eq!(
        sampler::reconstruct(&art, &other, 0.0, 1, &mut out, &mut ws),
        Err(Error::GridMismatch { expected: 8, got: 9 })
    );
    for sigma in [f32::NAN, -1.0, f32::INFINITY] {
        assert_eq!(
            sampler::reconstruct(&art, &sensors, sigma, 1, &mut out, &mut ws),
            Err(Error::InvalidValue { field: "noise_sigma" })
        );
    }
    let (mut m, mut s) = (vec![0.0; n2], vec![0.0; n2]);
    assert!(sampler::posterior(&art, &sensors, 0.0, 1, 0, &mut m, &mut s, &mut ws).is_err());
    // Readings and noise against the artifact's range: the fixtures' u in
    // [0, 0.4] accepts noise up to 1.2 and, without noise, readings in
    // [-0.4, 0.8]; each noise level widens that by 6 levels on each side.
    assert_eq!(art.data().reading_range(0.0), (-0.4, 0.8));
    assert_eq!(art.data().reading_range(0.1), (-1.0, 1.4));
    let mut noisy = sensors.clone();
    noisy.push_node(noisy.nodes().max().unwrap() + 1, 1.39).unwrap();
    assert!(sampler::reconstruct(&art, &noisy, 0.1, 1, &mut out, &mut ws).is_ok(), "within 6 noise levels");
    assert!(matches!(
        sampler::reconstruct(&art, &noisy, 0.01, 1, &mut out, &mut ws),
        Err(Error::ReadingOutOfRange { value: 1.39, .. })
    ));
    for (v, ok) in
        [(-0.4, true), (0.8, true), (0.81, false), (-0.41, false), (5.0, false), (3e19, false), (f32::MAX, false)]
    {
        let mut far = sensors.clone();
        far.push_node(far.nodes().max().unwrap() + 1, v).unwrap();
        let got = sampler::reconstruct(&art, &far, 0.0, 1, &mut out, &mut ws);
        if ok {
            assert!(got.is_ok(), "reading {v}: {got:?}");
        } else {
            assert_eq!(
                got,
                Err(Error::ReadingOutOfRange { index: sensors.len(), value: v, min: -0.4, max: 0.8 }),
                "{v}"
            );
        }
    }
    assert!(sampler::reconstruct(&art, &sensors, 1.2, 1, &mut out, &mut ws).is_ok());
    for sigma in [1.21, 3e19, f32::MAX] {
        assert_eq!(
            sampler::reconstruct(&art, &sensors, sigma, 1, &mut out, &mut ws),
            Err(Error::NoiseTooLarge { value: sigma, max: 1.2 })
        );
    }
    // Kernels check their buffers too.
    let fno = art.surrogate().unwrap();
    let mut small = vec![0.0f32; fno.net().shape().forward_workspace_len() - 1];
    assert!(matches!(fno.forward(&out, &mut m, &mut small), Err(Error::WorkspaceTooSmall { .. })));
    assert!(matches!(fno.forward(&out[1..], &mut m, &mut ws), Err(Error::BufferLength { .. })));
    let mut g = vec![0.0f32; n2];
    assert!(matches!(fno.loss_grad(&out, PRIOR_NORM, &other, 1.0, &mut g, &mut ws), Err(Error::GridMismatch { .. })));
    // An artifact without the sampler's sections.
    let fx = Fixture::tiny(24, false);
    let mut body = fx.body();
    body.schedule = None;
    body.kind &= !artifact::KIND_SCHEDULE;
    let partial = encode_body(&body);
    let art = Artifact::parse(&partial).unwrap();
    assert_eq!(art.workspace_len(), None);
    assert_eq!(
        sampler::reconstruct(&art, &sensors, 0.0, 1, &mut out, &mut ws),
        Err(Error::MissingPart { part: "schedule" })
    );
}

#[test]
fn device_presets_fit_the_budget() {
    use crate::presets::*;
    let bytes = DARCY32_WORKSPACE_LEN * 4;
    eprintln!("32x32 device workspace: {bytes} bytes ({:.1} KiB)", bytes as f64 / 1024.0);
    assert!(bytes <= WORKSPACE_BUDGET_BYTES);
    assert_eq!(DARCY32_FNO.params(), 264_449, "trainer FnoConfig::device() count");
}
