//! The plain f64 reference of the whole network, straight from the
//! formulas (padded arrays, complex DFT sums with `f64` `cos`/`sin`), with
//! a forward-mode tangent: the reference for the fast kernels, and the
//! Jacobian-vector product of the adjoint test.

use super::*;

/// Reference outputs.
pub(crate) struct RefOut {
    /// Network output at every grid node.
    pub(crate) out: Vec<f64>,
    /// Its tangent (`J v`).
    pub(crate) dout: Vec<f64>,
    /// Padded hidden state after the lift and after each layer.
    pub(crate) states: Vec<Vec<f64>>,
}

fn spectral(op: &Operator<'_>, l: usize, h: &[f64]) -> Vec<f64> {
    let s = op.shape;
    let (p, m, w) = (s.padded(), s.modes, s.width);
    let tau = std::f64::consts::TAU;
    let k1 = |r: usize| if r < m { r as f64 } else { r as f64 - 2.0 * m as f64 };
    let mut out = vec![0.0; p * p * w];
    for r in 0..2 * m {
        for k2 in 0..m {
            // X[i] = sum_{y,x} h e^{-i theta}
            let (mut xr, mut xi) = (vec![0.0; w], vec![0.0; w]);
            for y in 0..p {
                for x in 0..p {
                    let th = tau * (k1(r) * y as f64 / p as f64 + (k2 * x) as f64 / p as f64);
                    for i in 0..w {
                        let v = h[(y * p + x) * w + i];
                        xr[i] += v * th.cos();
                        xi[i] -= v * th.sin();
                    }
                }
            }
            let row0 = (l * 2 * m * m + r * m + k2) * w;
            let c = if k2 == 0 || 2 * k2 == p { 1.0 } else { 2.0 };
            for o in 0..w {
                let (mut yr, mut yi) = (0.0, 0.0);
                for i in 0..w {
                    let wr = f64::from(op.spectral.at(row0 + o, i));
                    let wi = f64::from(op.spectral.at(row0 + o, w + i));
                    yr += xr[i] * wr - xi[i] * wi;
                    yi += xr[i] * wi + xi[i] * wr;
                }
                for y in 0..p {
                    for x in 0..p {
                        let th = tau * (k1(r) * y as f64 / p as f64 + (k2 * x) as f64 / p as f64);
                        out[(y * p + x) * w + o] += c * (yr * th.cos() - yi * th.sin()) / (p * p) as f64;
                    }
                }
            }
        }
    }
    out
}

fn linear(l: &Linear<'_>, row0: usize, rows: usize, x: &[f64], bias: bool) -> Vec<f64> {
    (0..rows)
        .map(|o| {
            let b = if bias { f64::from(l.bias().at(row0 + o)) } else { 0.0 };
            b + (0..l.inputs()).map(|c| f64::from(l.weight().at(row0 + o, c)) * x[c]).sum::<f64>()
        })
        .collect()
}

/// The network on `field` (already mapped) with tangent `tangent`;
/// `film` is `layers * 2 width` values or empty.
pub(crate) fn forward(op: &Operator<'_>, field: &[f64], tangent: &[f64], film: &[f64]) -> RefOut {
    let s = op.shape;
    let (n, p, w) = (s.n, s.padded(), s.width);
    let (mut h, mut dh) = (vec![0.0; p * p * w], vec![0.0; p * p * w]);
    for y in 0..p {
        for x in 0..p {
            let (i, j) = (mirror(y, s.pad, n), mirror(x, s.pad, n));
            let f = [field[i * n + j], j as f64 / (n - 1) as f64, i as f64 / (n - 1) as f64];
            let df = [tangent[i * n + j], 0.0, 0.0];
            let at = (y * p + x) * w;
            h[at..at + w].copy_from_slice(&linear(&op.lift, 0, w, &f, true));
            dh[at..at + w].copy_from_slice(&linear(&op.lift, 0, w, &df, false));
        }
    }
    let mut states = vec![h.clone()];
    for l in 0..s.layers {
        let (sp, dsp) = (spectral(op, l, &h), spectral(op, l, &dh));
        for node in 0..p * p {
            let at = node * w;
            let k = linear(&op.skip, l * w, w, &h[at..at + w], true);
            let dk = linear(&op.skip, l * w, w, &dh[at..at + w], false);
            for o in 0..w {
                let (mut pre, mut dpre) = (sp[at + o] + k[o], dsp[at + o] + dk[o]);
                if !film.is_empty() {
                    let (sc, sh) = (film[l * 2 * w + o], film[l * 2 * w + w + o]);
                    pre = pre * sc + sh;
                    dpre *= sc;
                }
                let on = pre > 0.0;
                h[at + o] = if on { pre } else { 0.0 };
                dh[at + o] = if on { dpre } else { 0.0 };
            }
        }
        states.push(h.clone());
    }
    let (mut out, mut dout) = (vec![0.0; n * n], vec![0.0; n * n]);
    for i in 0..n {
        for j in 0..n {
            let at = ((i + s.pad) * p + j + s.pad) * w;
            let mut hid = linear(&op.proj_hidden, 0, s.proj_width, &h[at..at + w], true);
            let mut dhid = linear(&op.proj_hidden, 0, s.proj_width, &dh[at..at + w], false);
            for (v, dv) in hid.iter_mut().zip(dhid.iter_mut()) {
                if *v <= 0.0 {
                    *v = 0.0;
                    *dv = 0.0;
                }
            }
            out[i * n + j] = linear(&op.proj_out, 0, 1, &hid, true)[0];
            dout[i * n + j] = linear(&op.proj_out, 0, 1, &dhid, false)[0];
        }
    }
    RefOut { out, dout, states }
}
