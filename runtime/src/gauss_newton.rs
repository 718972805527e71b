//! The Gauss–Newton conditional step of DAPS, in the K-dimensional sensor
//! space (host twin: none yet; the host runs it through this crate). At an
//! annealing level with prior estimate `a0`, prior spread `r` and the
//! prior's noise covariance `C`:
//!
//! ```text
//! a' = a0 + r C^(1/2) z,  e' ~ N(0, tau^2 I)          one prior draw, one noise draw
//! a  = a0
//! repeat G times:
//!     J  = dF~/dx at a                                 K x N, never formed for exact physics
//!     S  = r^2 J C J^T + tau^2 I                        K x K, L D L^T
//!     a  = a' + r^2 C J^T S^-1 (y~ - F~(a) - J (a' - a) - e')
//! ```
//!
//! For a linear forward map and a Gaussian prior `N(a0, r^2 C)` one
//! iteration is an exact draw from the posterior (Matheron's rule); for a
//! nonlinear map it is randomise-then-optimise around the linearisation.
//! There is no step size and no clamp: the sensor-space solve handles the
//! likelihood's curvature, however stiff.
//!
//! A prior whose fields vanish on the grid boundary (the Helmholtz source,
//! [`Setting::zero_boundary`]) has covariance `D C D`, `D` the interior
//! mask: the draw is `r D C^(1/2) z` and every `C` above becomes `D C D`.
//! Without the mask each level would add spread on the boundary that the
//! readings cannot take back (the solve ignores boundary sources); with it
//! the step leaves `a`'s boundary at `a0`'s (host twin:
//! `trainer::sample::daps::gauss_newton_update_with`).
//!
//! `S` is built column by column: `S e_k = r^2 J (C (J^T e_k))` — one
//! adjoint and one tangent solve per sensor with exact physics
//! ([`crate::physics`]), or dot products with the `K` Jacobian rows that
//! `K` surrogate vector-Jacobian products produced.

use crate::Error;
use crate::banded::{dense_factor, dense_solve};
use crate::fno::Fno;
use crate::grid::fill_boundary;
use crate::noise::{SmoothNoise, apply_cov};
use crate::physics::Physics;
use crate::rng::Rng;
use crate::sensors::Sensors;

/// f32 values of sensor-space memory for up to `k` sensors: `S` (`k^2`),
/// the right-hand side, the solution and one `J v` (`k` each).
pub const fn sensor_mem_len(k: usize) -> usize {
    k.saturating_mul(k).saturating_add(k.saturating_mul(3))
}

/// f32 values of memory of one step on an `n x n` grid for up to `k`
/// sensors after the model's and the Jacobian rows': the sensor-space
/// buffers and an f32 copy of the covariance factor `K1` (`n^2`; read from
/// RAM rather than unaligned from flash, it is applied `K + 1` times).
pub const fn step_mem_len(n: usize, k: usize) -> usize {
    sensor_mem_len(k).saturating_add(n.saturating_mul(n))
}

/// A forward model linearised at one point.
pub(crate) enum Linear<'b, 'a> {
    /// Exact physics; its factorisation and state live in `mem`.
    Physics(&'b Physics),
    /// The surrogate; `rows` (`K n^2`, in `mem` after the VJP memory) holds
    /// the Jacobian rows.
    Surrogate(&'b Fno<'a>),
}

/// The sensor-space buffers, each cut to the request's `K`.
pub(crate) struct SensorBufs<'w> {
    pub s: &'w mut [f32],
    pub d: &'w mut [f32],
    pub w: &'w mut [f32],
    pub jv: &'w mut [f32],
}

/// Splits `mem` (at least [`sensor_mem_len`]`(k)`) into the buffers.
pub(crate) fn sensor_bufs(mem: &mut [f32], k: usize) -> SensorBufs<'_> {
    let (s, rest) = mem.split_at_mut(k * k);
    let (d, rest) = rest.split_at_mut(k);
    let (w, rest) = rest.split_at_mut(k);
    SensorBufs { s, d, w, jv: &mut rest[..k] }
}

impl Linear<'_, '_> {
    /// Model memory before the Jacobian rows / sensor buffers, for `k`
    /// sensors.
    fn model_len(&self, k: usize) -> usize {
        match self {
            Linear::Physics(p) => p.mem_len(),
            Linear::Surrogate(f) => f.workspace_len(k),
        }
    }

    /// Splits the guide memory into model memory for `k` sensors and what
    /// follows it.
    pub(crate) fn split<'w>(&self, mem: &'w mut [f32], k: usize) -> (&'w mut [f32], &'w mut [f32]) {
        mem.split_at_mut(self.model_len(k))
    }

    /// Linearises at `x` and writes `F~(x)` into `pred`. `rows` is the
    /// surrogate's Jacobian-row memory (`K n^2`; empty for physics).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linearize(
        &self,
        x: &[f32],
        prior_norm: (f32, f32),
        sensors: &Sensors,
        scale: f32,
        model: &mut [f32],
        rows: &mut [f32],
        pred: &mut [f32],
    ) -> Result<(), Error> {
        match self {
            Linear::Physics(p) => {
                p.linearize(x, prior_norm, scale, model)?;
                p.predict(sensors, scale, model, pred);
            }
            Linear::Surrogate(f) => {
                let n2 = x.len();
                for (k, row) in rows.chunks_exact_mut(n2).take(sensors.len()).enumerate() {
                    let unit = |buf: &mut [f32]| {
                        if k == 0 {
                            pred.copy_from_slice(buf);
                        }
                        buf.fill(0.0);
                        buf[k] = 1.0;
                    };
                    f.sensor_vjp(x, prior_norm, sensors, scale, unit, row, model)?;
                }
            }
        }
        Ok(())
    }

    /// `J~ v` into `out` (`K`).
    pub(crate) fn j(&self, sensors: &Sensors, v: &[f32], model: &mut [f32], rows: &[f32], out: &mut [f32]) {
        match self {
            Linear::Physics(p) => p.j(sensors, v, model, out),
            Linear::Surrogate(_) => {
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(v.len())) {
                    *o = row.iter().zip(v).fold(0.0, |acc, (r, v)| acc + r * v);
                }
            }
        }
    }

    /// `J~^T w` into `out` (`n * n`).
    pub(crate) fn jt(&self, sensors: &Sensors, w: &[f32], model: &mut [f32], rows: &[f32], out: &mut [f32]) {
        match self {
            Linear::Physics(p) => p.jt(sensors, w, model, out),
            Linear::Surrogate(_) => {
                out.fill(0.0);
                for (&wk, row) in w.iter().zip(rows.chunks_exact(out.len())) {
                    for (o, &r) in out.iter_mut().zip(row) {
                        *o += wk * r;
                    }
                }
            }
        }
    }
}

/// The fields one step works on (`n * n` each).
pub(crate) struct Fields<'w> {
    /// The level's prior estimate `a0`.
    pub a0: &'w [f32],
    /// Out: the step's result.
    pub a: &'w mut [f32],
    /// Scratch: the prior draw `a'`.
    pub prop: &'w mut [f32],
    /// Scratch fields.
    pub z: &'w mut [f32],
    pub t: &'w mut [f32],
}

/// The step's settings at one level.
#[derive(Clone, Copy)]
pub(crate) struct Setting {
    /// Prior spread `r_i`.
    pub r: f32,
    /// Likelihood width in residual units.
    pub tau: f32,
    /// Gauss–Newton iterations (at least 1).
    pub iterations: usize,
    /// The readings' unit.
    pub scale: f32,
    /// The prior's normalisation `(mean, std)`.
    pub prior_norm: (f32, f32),
    /// The prior's fields vanish on the boundary: the spread is `r^2 D C D`.
    pub zero_boundary: bool,
}

/// One Gauss–Newton conditional step ([module docs](self)). `mem` is the
/// guide memory ([`Linear::split`], then `K n^2` Jacobian rows for the
/// surrogate, then [`step_mem_len`]`(n, K)`). Returns the number of
/// linearisations.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step(
    lin: &Linear<'_, '_>,
    noise: &SmoothNoise<'_>,
    sensors: &Sensors,
    set: Setting,
    rng: &mut Rng,
    f: Fields<'_>,
    mem: &mut [f32],
    rows_len: usize,
) -> Result<u32, Error> {
    let Fields { a0, a, prop, z, t } = f;
    let k = sensors.len();
    let (model, rest) = lin.split(mem, k);
    let (rows, rest) = rest.split_at_mut(rows_len);
    let n2 = a0.len();
    let n = noise.n();
    let (k1, rest) = rest.split_at_mut(n2);
    noise.kernel_into(k1);
    let SensorBufs { s, d, w, jv } = sensor_bufs(rest, k);
    let inv_scale = 1.0 / set.scale;
    let r2 = set.r * set.r;
    let tau2 = set.tau * set.tau;
    let mask = |v: &mut [f32]| {
        if set.zero_boundary {
            fill_boundary(v, n, 0.0);
        }
    };

    // a' = a0 + r C^(1/2) z.
    noise.sample(rng, z, t)?;
    mask(z);
    for ((p, &a0), &z) in prop.iter_mut().zip(a0.iter()).zip(z.iter()) {
        *p = a0 + z * set.r;
    }
    // e' is drawn into w, then folded into d at each iteration.
    rng.fill_normal(w);
    for e in w.iter_mut() {
        *e *= set.tau;
    }
    // The first linearisation point is a0.
    a.copy_from_slice(a0);
    let mut count = 0u32;
    for _ in 0..set.iterations.max(1) {
        lin.linearize(a, set.prior_norm, sensors, set.scale, model, rows, jv)?;
        count = count.saturating_add(1);
        // d = y~ - F~(a) - e' - J (a' - a).
        for ((d, &pred), (sn, &e)) in d.iter_mut().zip(jv.iter()).zip(sensors.iter().zip(w.iter())) {
            *d = sn.value * inv_scale - pred - e;
        }
        for ((z, &p), &a) in z.iter_mut().zip(prop.iter()).zip(a.iter()) {
            *z = p - a;
        }
        lin.j(sensors, z, model, rows, jv);
        for (d, &jv) in d.iter_mut().zip(jv.iter()) {
            *d -= jv;
        }
        // S = r^2 J C J^T + tau^2 I, column by column into s (row-major,
        // symmetric; the factorisation reads the lower triangle).
        for col in 0..k {
            jv.fill(0.0);
            jv[col] = 1.0;
            lin.jt(sensors, jv, model, rows, z);
            mask(z);
            apply_cov(k1, n, z, t);
            mask(z);
            lin.j(sensors, z, model, rows, jv);
            for (row, &v) in jv.iter().enumerate() {
                s[row * k + col] = r2 * v + if row == col { tau2 } else { 0.0 };
            }
        }
        dense_factor(s, k)?;
        // Solve into d (the right-hand side is not needed afterwards), then
        // a = a' + r^2 C J^T S^-1 d.
        dense_solve(s, k, d);
        lin.jt(sensors, d, model, rows, z);
        mask(z);
        apply_cov(k1, n, z, t);
        mask(z);
        for ((a, &p), &z) in a.iter_mut().zip(prop.iter()).zip(z.iter()) {
            *a = p + z * r2;
        }
    }
    Ok(count)
}
