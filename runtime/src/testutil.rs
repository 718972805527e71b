//! Test helpers shared by the runtime's unit tests: a tiny seeded
//! generator, a named-tolerance comparison and builders of artifact bytes.

use crate::kernels::quantize_row;

/// A 64-bit LCG: deterministic test data without a dependency.
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// Uniform on `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// Uniform integer in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 33) % n as u64) as usize
    }
}

/// `|got - want| <= rel_tol * max |want|` element-wise (plus a tiny
/// absolute floor for all-zero references).
pub(crate) fn assert_close(got: &[f32], want: &[f64], rel_tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(*g) - w).abs();
        assert!(
            err <= rel_tol * scale,
            "{what}[{i}]: got {g}, expected {w} (|err| {err:.3e} > {rel_tol:.0e} * {scale:.3e})"
        );
    }
}

/// Largest `|got - want|` relative to the largest `|want|`.
pub(crate) fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs())) / scale
}

/// Little-endian bytes of f32 values.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Row-wise int8 quantisation of a row-major matrix: `(q, scales)`.
pub(crate) fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let mut q = vec![0u8; rows * cols];
    let scales =
        (0..rows).map(|r| quantize_row(&w[r * cols..(r + 1) * cols], &mut q[r * cols..(r + 1) * cols])).collect();
    (q, scales)
}

use crate::artifact::{
    Body, Bytes, DataParams, KIND_NOISE, KIND_PHYSICS, KIND_PRIOR, KIND_SCHEDULE, KIND_SURROGATE, LEVEL_SCALARS,
    LinearParams, NoiseParams, OperatorParams, PhysicsParams, PriorParams, STEP_LANGEVIN, ScheduleParams,
    SurrogateParams, Weights, encode, encoded_len,
};
use crate::operator::OperatorShape;
use crate::sensors::MAX_SENSORS;

/// Owned bytes of one weight tensor.
pub(crate) struct WeightBytes {
    values: Vec<u8>,
    q: Vec<u8>,
    scales: Vec<u8>,
    int8: bool,
}

impl WeightBytes {
    pub(crate) fn new(w: &[f32], rows: usize, cols: usize, int8: bool) -> Self {
        let (q, s) = quantize_rows(w, rows, cols);
        Self { values: f32_bytes(w), q, scales: f32_bytes(&s), int8 }
    }

    pub(crate) fn weights(&self) -> Weights<'_> {
        if self.int8 {
            Weights::I8 { q: Bytes(&self.q), scales: Bytes(&self.scales) }
        } else {
            Weights::F32 { values: Bytes(&self.values) }
        }
    }
}

/// Owned bytes of a linear layer.
pub(crate) struct LinearBytes {
    inputs: usize,
    outputs: usize,
    w: WeightBytes,
    bias: Vec<u8>,
}

impl LinearBytes {
    fn random(rng: &mut Lcg, inputs: usize, outputs: usize, int8: bool) -> Self {
        let a = 1.0 / (inputs as f32).sqrt();
        let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.uniform(-a, a)).collect();
        let b: Vec<f32> = (0..outputs).map(|_| rng.uniform(-0.2, 0.2)).collect();
        Self { inputs, outputs, w: WeightBytes::new(&w, outputs, inputs, int8), bias: f32_bytes(&b) }
    }

    fn params(&self) -> LinearParams<'_> {
        LinearParams {
            inputs: self.inputs as u32,
            outputs: self.outputs as u32,
            weight: self.w.weights(),
            bias: Bytes(&self.bias),
        }
    }
}

/// Owned bytes of an operator network with random weights.
pub(crate) struct NetBytes {
    pub(crate) shape: OperatorShape,
    lift: LinearBytes,
    spectral: WeightBytes,
    skip: LinearBytes,
    proj_hidden: LinearBytes,
    proj_out: LinearBytes,
    twiddle: Vec<u8>,
}

/// `cos(2 pi j / p)` for `j < p`, then the sines, from f64.
pub(crate) fn twiddle(p: usize) -> Vec<f32> {
    let tau = std::f64::consts::TAU;
    let cos = (0..p).map(|j| (tau * j as f64 / p as f64).cos() as f32);
    let sin = (0..p).map(|j| (tau * j as f64 / p as f64).sin() as f32);
    cos.chain(sin).collect()
}

impl NetBytes {
    pub(crate) fn random(rng: &mut Lcg, shape: OperatorShape, int8: bool) -> Self {
        let (w, m) = (shape.width, shape.modes);
        let rows = shape.layers * 2 * m * m * w;
        // Spectral weights ~ U(-a, a) with E|W|^2 about 2 / (2 w): keeps
        // activations O(1) through the layers.
        let a = (3.0 / (2.0 * w as f32)).sqrt();
        let spec: Vec<f32> = (0..rows * 2 * w).map(|_| rng.uniform(-a, a)).collect();
        Self {
            shape,
            lift: LinearBytes::random(rng, 3, w, int8),
            spectral: WeightBytes::new(&spec, rows, 2 * w, int8),
            skip: LinearBytes::random(rng, w, shape.layers * w, int8),
            proj_hidden: LinearBytes::random(rng, w, shape.proj_width, int8),
            proj_out: LinearBytes::random(rng, shape.proj_width, 1, int8),
            twiddle: f32_bytes(&twiddle(shape.padded())),
        }
    }

    pub(crate) fn params(&self) -> OperatorParams<'_> {
        let s = self.shape;
        OperatorParams {
            width: s.width as u32,
            modes: s.modes as u32,
            layers: s.layers as u32,
            pad: s.pad as u32,
            proj_width: s.proj_width as u32,
            lift: self.lift.params(),
            spectral: self.spectral.weights(),
            skip: self.skip.params(),
            proj_hidden: self.proj_hidden.params(),
            proj_out: self.proj_out.params(),
            twiddle: Bytes(&self.twiddle),
        }
    }
}

/// A complete small artifact with random networks.
pub(crate) struct Fixture {
    pub(crate) n: usize,
    pub(crate) fno: NetBytes,
    pub(crate) prior: NetBytes,
    pub(crate) noise: Vec<u8>,
    /// `K1 = L L`, the covariance factor.
    pub(crate) kernel: Vec<u8>,
    pub(crate) table: Vec<u8>,
    pub(crate) levels: usize,
    pub(crate) langevin: usize,
}

/// The tiny surrogate and prior shapes of the unit tests (n = 8).
pub(crate) const TINY_FNO: OperatorShape = OperatorShape { n: 8, width: 4, modes: 3, layers: 2, pad: 2, proj_width: 6 };
pub(crate) const TINY_PRIOR: OperatorShape =
    OperatorShape { n: 8, width: 4, modes: 3, layers: 2, pad: 1, proj_width: 5 };

/// Surrogate normalisation of the fixtures: `(a_mean, a_std, u_mean, u_std)`.
pub(crate) const FNO_NORM: (f32, f32, f32, f32) = (7.5, 4.5, 0.2, 0.1);
/// Prior normalisation of the fixtures.
pub(crate) const PRIOR_NORM: (f32, f32) = (7.4, 4.4);
/// The data section of the test artifacts (Darcy phases 3 / 12).
pub(crate) const TEST_DATA: DataParams = DataParams {
    phase_low: 3.0,
    phase_high: 12.0,
    threshold: 0.0,
    grf_alpha: 2.0,
    grf_tau: 3.0,
    helmholtz_k: 0.0,
    u_min: 0.0,
    u_max: 0.4,
};

impl Fixture {
    pub(crate) fn new(seed: u64, fno: OperatorShape, prior: OperatorShape, int8: bool) -> Self {
        let mut rng = Lcg::new(seed);
        let n = fno.n;
        let fno = NetBytes::random(&mut rng, fno, int8);
        let prior = NetBytes::random(&mut rng, prior, int8);
        // A symmetric smoothing matrix for L.
        let l: Vec<f32> = (0..n * n)
            .map(|k| {
                let d = (k / n) as f32 - (k % n) as f32;
                (-0.5 * d * d).exp() * 0.6
            })
            .collect();
        let (levels, langevin) = (3, 2);
        let sd = 1.0f64;
        let sigmas = [4.0f64, 0.8, 0.05];
        let w = prior.shape.width;
        let mut table = Vec::new();
        for (i, &s) in sigmas.iter().enumerate() {
            let lr = (1e-2f64).min(0.5 * s * s);
            let next = sigmas.get(i + 1).copied().unwrap_or(0.0);
            let row = [
                s,
                1.0 / (s * s + sd * sd).sqrt(),
                sd * sd / (s * s + sd * sd),
                s * sd / (s * s + sd * sd).sqrt(),
                lr,
                (2.0 * lr).sqrt(),
                1.0 / (s * s),
                next,
                s * sd / (s * s + sd * sd).sqrt(),
            ];
            assert_eq!(row.len(), LEVEL_SCALARS);
            table.extend(row.iter().map(|&v| v as f32));
            for _ in 0..prior.shape.layers {
                table.extend((0..w).map(|_| 1.0 + rng.uniform(-0.3, 0.3)));
                table.extend((0..w).map(|_| rng.uniform(-0.2, 0.2)));
            }
        }
        let kernel: Vec<f32> = (0..n * n)
            .map(|k| (0..n).map(|c| l[(k / n) * n + c] as f64 * l[c * n + k % n] as f64).sum::<f64>() as f32)
            .collect();
        Self {
            n,
            fno,
            prior,
            noise: f32_bytes(&l),
            kernel: f32_bytes(&kernel),
            table: f32_bytes(&table),
            levels,
            langevin,
        }
    }

    pub(crate) fn tiny(seed: u64, int8: bool) -> Self {
        Self::new(seed, TINY_FNO, TINY_PRIOR, int8)
    }

    pub(crate) fn body(&self) -> Body<'_> {
        Body {
            kind: KIND_SURROGATE | KIND_PRIOR | KIND_NOISE | KIND_SCHEDULE,
            problem: "test",
            n: self.n as u32,
            surrogate: Some(SurrogateParams {
                net: self.fno.params(),
                a_mean: FNO_NORM.0,
                a_std: FNO_NORM.1,
                u_mean: FNO_NORM.2,
                u_std: FNO_NORM.3,
            }),
            prior: Some(PriorParams {
                net: self.prior.params(),
                mean: PRIOR_NORM.0,
                std: PRIOR_NORM.1,
                sigma_data: 1.0,
            }),
            noise: Some(NoiseParams { sqrt_kernel: Bytes(&self.noise), kernel: Bytes(&self.kernel) }),
            schedule: Some(ScheduleParams {
                levels: self.levels as u32,
                step: STEP_LANGEVIN,
                langevin: self.langevin as u32,
                max_sensors: MAX_SENSORS as u32,
                tau: 0.05,
                noise_width: 1.0,
                clamp: 10.0,
                table: Bytes(&self.table),
            }),
            physics: None,
            data: TEST_DATA,
        }
    }

    /// [`Self::body`] with exact physics for `pde` in place of the
    /// surrogate and the given inner step.
    pub(crate) fn physics_body(&self, pde: u8, step: u8, iterations: u32) -> Body<'_> {
        let mut b = self.body();
        b.surrogate = None;
        b.physics = Some(PhysicsParams { pde, shift: 0.0, coef_floor: 1.0, u_floor: FNO_NORM.3 });
        b.kind = KIND_PRIOR | KIND_NOISE | KIND_SCHEDULE | KIND_PHYSICS;
        let sched = b.schedule.as_mut().unwrap();
        sched.step = step;
        sched.langevin = iterations;
        sched.max_sensors = 40;
        b
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_body(&self.body())
    }
}

/// The artifact bytes of `body`.
pub(crate) fn encode_body(body: &Body<'_>) -> Vec<u8> {
    let mut out = vec![0u8; encoded_len(body).unwrap()];
    let len = encode(body, &mut out).unwrap();
    assert_eq!(len, out.len());
    out
}

/// Cases per loop: `DDIS_FUZZ_CASES` if set, else `default`.
pub(crate) fn fuzz_cases(default: usize) -> usize {
    std::env::var("DDIS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Applies one random damage to `b` (the fuzz loops of `tests` and `tests_fuzz`).
pub(crate) fn mutate(b: &mut Vec<u8>, rng: &mut Lcg) {
    match rng.below(6) {
        0 => {
            let p = rng.below(b.len());
            b[p] ^= 1 << rng.below(8);
        }
        1 => {
            let p = rng.below(b.len());
            b[p] = rng.below(256) as u8;
        }
        2 => {
            let p = rng.below(b.len());
            b[p] = [0x00, 0x7F, 0x80, 0xFF][rng.below(4)];
        }
        3 => {
            let keep = rng.below(b.len());
            b.truncate(keep);
        }
        4 => {
            let p = rng.below(b.len() + 1);
            b.insert(p, rng.below(256) as u8);
        }
        _ => {
            let p = rng.below(b.len());
            b.remove(p);
        }
    }
}
