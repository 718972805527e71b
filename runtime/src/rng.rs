//! The runtime's one random number generator: xoshiro128++ (32-bit words,
//! cheap on a Cortex-M), seeded through SplitMix64, with standard normals by
//! Marsaglia's polar method on [`crate::math`]. Integer and `+ - * /` only,
//! so the same seed gives the same bits on the host and on the device.

use crate::math;

/// xoshiro128++ with a cached second normal deviate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rng {
    s: [u32; 4],
    spare: Option<f32>,
}

/// Rejection rounds of the polar method before giving up on a draw (each
/// round accepts with probability pi/4, so 64 rounds all fail with
/// probability below 1e-43); bounds the run time on every input.
const POLAR_MAX_ROUNDS: usize = 64;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole state derives from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let a = splitmix64(&mut sm);
        let b = splitmix64(&mut sm);
        let mut s = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if s == [0; 4] {
            // The all-zero state is a fixed point of xoshiro.
            s[0] = 1;
        }
        Self { s, spare: None }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(7).wrapping_add(s[0]);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// Uniform on `[0, 1)` with 24 random bits (every value exact in f32).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// A standard normal deviate (polar method; deviates come in pairs and
    /// the second is cached).
    pub fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        for _ in 0..POLAR_MAX_ROUNDS {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = math::sqrt(-2.0 * math::ln(s) / s);
                self.spare = Some(v * f);
                return u * f;
            }
        }
        0.0
    }

    /// Fills `out` with standard normals, in order.
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        for v in out {
            *v = self.normal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sampling tolerance in standard errors.
    const Z_SCORE: f64 = 5.0;

    #[test]
    fn reference_vector_of_xoshiro128pp() {
        // The reference implementation's output for state [1, 2, 3, 4].
        let mut r = Rng { s: [1, 2, 3, 4], spare: None };
        let got: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
        assert_eq!(got, [641, 1_573_767, 3_222_811_527, 3_517_856_514]);
    }

    #[test]
    fn same_seed_same_bits_other_seed_other_bits() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..1000).map(|_| r.normal().to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut r = Rng::new(42);
        let count = 200_000;
        let z: Vec<f64> = (0..count).map(|_| f64::from(r.normal())).collect();
        let mean = z.iter().sum::<f64>() / count as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count as f64;
        let kurt = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / count as f64 / (var * var);
        let n = count as f64;
        assert!(mean.abs() < Z_SCORE / n.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < Z_SCORE * (2.0 / n).sqrt(), "variance {var}");
        assert!((kurt - 3.0).abs() < Z_SCORE * (24.0 / n).sqrt(), "kurtosis {kurt}");
        // Tail mass beyond 3 sigma: 0.27 %.
        let tail = z.iter().filter(|v| v.abs() > 3.0).count() as f64 / n;
        assert!((tail - 0.0027).abs() < Z_SCORE * (0.0027 / n).sqrt(), "tail {tail}");
    }
}
