//! The two transcendental functions the device needs at run time (`sqrt` for
//! the readings' RMS, the posterior std and the Gaussian draws; `ln` for the
//! Gaussian draws), written with `+ - * /` and bit operations only. `core`
//! has neither; these give the same bits on every IEEE-754 target, so host
//! and microcontroller agree (docs/format.md). Everything costly and
//! accuracy-critical (schedule, FiLM tables, DFT tables) is folded on the
//! host instead.

/// Square root, to within about one ulp (Newton's method from a bit-level
/// first guess). `sqrt(0) = 0`, `sqrt(inf) = inf`; negative or NaN input
/// gives NaN.
pub fn sqrt(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    // Subnormals: scale into the normal range first (2^48, exact).
    let (x, post) = if x < f32::MIN_POSITIVE { (x * 281_474_976_710_656.0, 1.0 / 16_777_216.0) } else { (x, 1.0) };
    // Halving the exponent bits gives a guess within ~4 %; four Newton
    // steps take that below one ulp (relative error squares each step).
    let mut y = f32::from_bits((x.to_bits() >> 1) + 0x1FBD_1DF5);
    for _ in 0..4 {
        y = 0.5 * (y + x / y);
    }
    y * post
}

/// Natural logarithm of a positive finite `x`, to within a few ulp.
/// `ln(0) = -inf`; negative, NaN or infinite input gives NaN (infinite:
/// `inf`).
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    let (x, extra) = if x < f32::MIN_POSITIVE { (x * 8_388_608.0, -23) } else { (x, 0) };
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127 + extra;
    // Mantissa in [1, 2), then folded into [sqrt(1/2), sqrt(2)).
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    if m > core::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172: the odd series
    // to s^11 leaves < 1e-9.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0)))));
    let ln_m = 2.0 * s * poly;
    // e ln 2 in two parts so that the sum keeps f32 precision.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let ef = e as f32;
    ef * LN2_HI + (ln_m + ef * LN2_LO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative tolerance of both functions against f64 `std`.
    const ULP_TOL: f64 = 4.0 * f32::EPSILON as f64;

    #[test]
    fn sqrt_matches_std_over_many_magnitudes() {
        let mut x = 1e-44f32;
        while x < 1e38 {
            for k in [1.0f32, 1.37, 2.0, 3.9] {
                let v = x * k;
                let want = f64::from(v).sqrt();
                let got = f64::from(sqrt(v));
                assert!((got - want).abs() <= ULP_TOL * want, "sqrt({v:e}) = {got:e}, expected {want:e}");
            }
            x *= 7.3;
        }
        assert_eq!(sqrt(0.0), 0.0);
        assert_eq!(sqrt(f32::INFINITY), f32::INFINITY);
        assert!(sqrt(-1.0).is_nan() && sqrt(f32::NAN).is_nan());
    }

    #[test]
    fn ln_matches_std_over_many_magnitudes() {
        let mut x = 1e-44f32;
        while x < 1e38 {
            for k in [1.0f32, 1.3, 1.5, 1.9] {
                let v = x * k;
                let want = f64::from(v).ln();
                let got = f64::from(ln(v));
                // Absolute near ln = 0, relative elsewhere.
                assert!((got - want).abs() <= ULP_TOL * want.abs().max(1.0), "ln({v:e}) = {got:e}, expected {want:e}");
            }
            x *= 3.1;
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan());
    }
}
