//! Exact physics on the device: the 5-point finite-difference forward map
//! of the trainer's solvers (`trainer::pde`, same stencil, same harmonic
//! face means), solved by a banded `L D L^T` (`banded.rs`), with its
//! Jacobian at the sensors applied both ways (tangent and adjoint solves
//! sharing one factorisation).
//!
//! The map acts on the prior's normalised field `x`:
//!
//! ```text
//! Darcy:      a = max(x std + mean, floor),  K(a) u = 1
//! Poisson:    f = x std + mean,              K u = -f        (Laplacian u = f)
//! Helmholtz:  f = x std + mean,              (K - k^2) u = -f
//! F~(x) = u[sensors] / scale
//! ```
//!
//! `K(a) = -div(a grad .)` on the `(n-2)^2` interior unknowns (row-major),
//! `u = 0` on the boundary; `floor > 0` keeps Darcy's operator definite
//! wherever a Gauss–Newton iterate leaves the physical range (the map is
//! flat there, so the Jacobian is zero on floored nodes). Poisson and
//! Helmholtz need `K - k^2` definite (`k^2` below the smallest eigenvalue,
//! about `2 pi^2`), which the factorisation checks.
//!
//! Work memory ([`Physics::mem_len`]): the band `N (m + 1)` with
//! `m = n - 2`, `N = m^2`, then eight `n x n` fields: `u`, the input
//! derivative `dF/dx` factor per node, the coefficient (scratch after the
//! linearisation), one scratch field for adjoint and tangent solves, and
//! Darcy's face coefficients `(u_p - u_q) df/da_{p,q} / h^2` of the
//! horizontal and vertical faces, computed once per linearisation so that
//! each Jacobian product is two multiply-adds per face.

use core::cmp::Ordering;

use crate::Error;
use crate::banded::{band_factor, band_solve};
use crate::sensors::Sensors;
use crate::wire::PhysicsParams;

/// [`PhysicsParams::pde`]: Darcy flow, the input is the coefficient.
pub const PDE_DARCY: u8 = 0;
/// [`PhysicsParams::pde`]: Poisson, the input is the source.
pub const PDE_POISSON: u8 = 1;
/// [`PhysicsParams::pde`]: Helmholtz, the input is the source.
pub const PDE_HELMHOLTZ: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pde {
    Darcy,
    Poisson,
    Helmholtz,
}

/// Validated exact physics for one grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Physics {
    n: usize,
    pde: Pde,
    /// `k^2` for Helmholtz, else 0.
    shift: f32,
    /// Darcy's coefficient floor.
    floor: f32,
    /// The readings' unit floor.
    u_floor: f32,
    inv_h2: f32,
}

/// Fields of work memory after the band.
const FIELDS: usize = 8;

impl Physics {
    pub(crate) fn from_params(p: &PhysicsParams, n: usize) -> Result<Self, Error> {
        let pde = match p.pde {
            PDE_DARCY => Pde::Darcy,
            PDE_POISSON => Pde::Poisson,
            PDE_HELMHOLTZ => Pde::Helmholtz,
            _ => return Err(Error::InvalidValue { field: "physics.pde" }),
        };
        let shift = match pde {
            Pde::Helmholtz if p.shift.is_finite() && p.shift >= 0.0 => p.shift,
            Pde::Helmholtz => return Err(Error::InvalidValue { field: "physics.shift" }),
            _ if p.shift == 0.0 => 0.0,
            _ => return Err(Error::InvalidValue { field: "physics.shift" }),
        };
        let floor = match pde {
            Pde::Darcy if p.coef_floor.is_finite() && p.coef_floor > 0.0 => p.coef_floor,
            Pde::Darcy => return Err(Error::InvalidValue { field: "physics.coef_floor" }),
            _ => 0.0,
        };
        if !(p.u_floor.is_finite() && p.u_floor > 0.0) {
            return Err(Error::InvalidValue { field: "physics.u_floor" });
        }
        let h = 1.0 / (n as f64 - 1.0);
        Ok(Self { n, pde, shift, floor, u_floor: p.u_floor, inv_h2: (1.0 / (h * h)) as f32 })
    }

    /// Floor of the readings' unit ([`PhysicsParams::u_floor`]).
    pub fn u_floor(&self) -> f32 {
        self.u_floor
    }

    /// Nodes per side.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Half-bandwidth `m = n - 2` and unknowns `N = m^2`.
    fn band_dims(&self) -> (usize, usize) {
        let m = self.n - 2;
        (m, m * m)
    }

    /// Is the map linear in `x` (its Jacobian independent of the iterate)?
    pub fn is_linear(&self) -> bool {
        self.pde != Pde::Darcy
    }

    /// f32 values of work memory ([module docs](self)).
    pub const fn mem_len_for(n: usize) -> usize {
        let m = n.saturating_sub(2);
        m.saturating_mul(m).saturating_mul(m + 1).saturating_add(n.saturating_mul(n).saturating_mul(FIELDS))
    }

    /// f32 values of work memory for this grid.
    pub fn mem_len(&self) -> usize {
        Self::mem_len_for(self.n)
    }

    /// Multiply-adds of one factorisation (`N m^2 / 2`) and of one solve
    /// (`2 N m`), for cost estimates.
    pub fn factor_solve_madds(&self) -> (u64, u64) {
        let (m, big) = self.band_dims();
        let (m, big) = (m as u64, big as u64);
        (big * m * m / 2, 2 * big * m)
    }

    fn split<'w>(&self, mem: &'w mut [f32]) -> Mem<'w> {
        let (m, big) = self.band_dims();
        let n2 = self.n * self.n;
        let (band, rest) = mem.split_at_mut(big * (m + 1));
        let (u, rest) = rest.split_at_mut(n2);
        let (dx, rest) = rest.split_at_mut(n2);
        let (coef, rest) = rest.split_at_mut(n2);
        let (tmp, rest) = rest.split_at_mut(n2);
        let (faces, _) = rest.split_at_mut(4 * n2);
        let (h, v) = faces.split_at_mut(2 * n2);
        let (hp, hq) = h.split_at_mut(n2);
        let (vp, vq) = v.split_at_mut(n2);
        Mem { band, u, dx, coef, tmp, hp, hq, vp, vq }
    }

    /// Harmonic face mean and its two partial derivatives.
    #[inline]
    fn face(ap: f32, aq: f32) -> (f32, f32, f32) {
        let s = ap + aq;
        let inv = 1.0 / s;
        let f = 2.0 * ap * aq * inv;
        let inv2 = inv * inv;
        (f, 2.0 * aq * aq * inv2, 2.0 * ap * ap * inv2)
    }

    /// Linearises at `x` (normalised, `n * n`): sets the coefficient, the
    /// input factor `dF~/dx` per node, factorises and solves the forward
    /// problem into `u` (`mem` has [`Self::mem_len`] values; lengths are the
    /// caller's checked invariants).
    pub(crate) fn linearize(
        &self,
        x: &[f32],
        (mean, std): (f32, f32),
        scale: f32,
        mem: &mut [f32],
    ) -> Result<(), Error> {
        let n = self.n;
        let (m, big) = self.band_dims();
        let w = m + 1;
        let inv_scale = 1.0 / scale;
        let Mem { band, u, dx, coef, tmp, hp, hq, vp, vq } = self.split(mem);
        for ((c, d), &x) in coef.iter_mut().zip(dx.iter_mut()).zip(x) {
            let a = x * std + mean;
            match self.pde {
                // Below the floor (or NaN, which compares as unordered):
                // flat, zero derivative.
                Pde::Darcy if !matches!(a.partial_cmp(&self.floor), Some(Ordering::Greater | Ordering::Equal)) => {
                    *c = self.floor;
                    *d = 0.0;
                }
                _ => {
                    *c = a;
                    *d = std * inv_scale;
                }
            }
        }
        // Assemble the band: row p = interior node (i, j).
        band.fill(0.0);
        for p in 0..big {
            let (i, j) = (p / m + 1, p % m + 1);
            let cnode = i * n + j;
            let row = &mut band[p * w..p * w + w];
            match self.pde {
                Pde::Darcy => {
                    let ac = coef[cnode];
                    let (fu, _, _) = Self::face(ac, coef[cnode - n]);
                    let (fl, _, _) = Self::face(ac, coef[cnode - 1]);
                    let (fr, _, _) = Self::face(ac, coef[cnode + 1]);
                    let (fd, _, _) = Self::face(ac, coef[cnode + n]);
                    row[m] = (fu + fl + fr + fd) * self.inv_h2;
                    if j > 1 {
                        row[m - 1] = -fl * self.inv_h2;
                    }
                    if i > 1 {
                        row[0] = -fu * self.inv_h2;
                    }
                }
                Pde::Poisson | Pde::Helmholtz => {
                    row[m] = 4.0 * self.inv_h2 - self.shift;
                    if j > 1 {
                        row[m - 1] = -self.inv_h2;
                    }
                    if i > 1 {
                        row[0] = -self.inv_h2;
                    }
                }
            }
        }
        band_factor(band, big, m)?;
        // Right-hand side on the interior, solved, scattered to u.
        for (p, t) in tmp[..big].iter_mut().enumerate() {
            let node = (p / m + 1) * n + p % m + 1;
            *t = match self.pde {
                Pde::Darcy => 1.0,
                Pde::Poisson | Pde::Helmholtz => -(x[node] * std + mean),
            };
        }
        band_solve(band, big, m, &mut tmp[..big]);
        scatter(n, m, &tmp[..big], u);
        if self.pde == Pde::Darcy {
            // Face (p, q), q = p + 1 or p + n: both partials times the jump.
            for p in 0..n * n {
                let (i, j) = (p / n, p % n);
                for (q, cp, cq) in [(p + 1, &mut hp[p], &mut hq[p]), (p + n, &mut vp[p], &mut vq[p])] {
                    let inside = if q == p + 1 { j + 1 < n } else { i + 1 < n };
                    if inside {
                        let (_, dp, dq) = Self::face(coef[p], coef[q]);
                        let jump = (u[p] - u[q]) * self.inv_h2;
                        *cp = jump * dp * dx[p];
                        *cq = jump * dq * dx[q];
                    } else {
                        *cp = 0.0;
                        *cq = 0.0;
                    }
                }
            }
        }
        Ok(())
    }

    /// `F~` at the linearisation point, one value per sensor, into `out`.
    pub(crate) fn predict(&self, sensors: &Sensors, scale: f32, mem: &mut [f32], out: &mut [f32]) {
        let Mem { u, .. } = self.split(mem);
        let inv_scale = 1.0 / scale;
        for (o, s) in out.iter_mut().zip(sensors.iter()) {
            *o = u[s.node as usize] * inv_scale;
        }
    }

    /// `J~^T w` (`w`: one weight per sensor) into `out` (`n * n`): one
    /// adjoint solve.
    pub(crate) fn jt(&self, sensors: &Sensors, w: &[f32], mem: &mut [f32], out: &mut [f32]) {
        let n = self.n;
        let (m, big) = self.band_dims();
        let Mem { band, dx, coef: lam, tmp, hp, hq, vp, vq, .. } = self.split(mem);
        // Adjoint right-hand side: the weights on the interior unknowns
        // (boundary sensors read u = 0 whatever the input: no term).
        tmp.fill(0.0);
        for (s, &wk) in sensors.iter().zip(w) {
            if let Some(p) = interior(n, s.node as usize) {
                tmp[p] += wk;
            }
        }
        band_solve(band, big, m, &mut tmp[..big]);
        match self.pde {
            Pde::Poisson | Pde::Helmholtz => {
                // u = -K^-1 f: J^T w = -lambda (zero on the boundary).
                scatter(n, m, &tmp[..big], out);
                for (o, &d) in out.iter_mut().zip(dx.iter()) {
                    *o = -*o * d;
                }
            }
            Pde::Darcy => {
                // J^T w = -sum_faces (l_p - l_q) (c_p e_p + c_q e_q), lambda
                // zero on the boundary; the face terms carry dF~/dx.
                scatter(n, m, &tmp[..big], lam);
                out.fill(0.0);
                for p in 0..n * n {
                    let lp = lam[p];
                    if let Some(&lq) = lam.get(p + 1) {
                        let t = lp - lq;
                        out[p] -= t * hp[p];
                        out[p + 1] -= t * hq[p];
                    }
                    if let Some(&lq) = lam.get(p + n) {
                        let t = lp - lq;
                        out[p] -= t * vp[p];
                        out[p + n] -= t * vq[p];
                    }
                }
            }
        }
    }

    /// `J~ v` (`v`: a normalised field, `n * n`) at the sensors into `out`:
    /// one tangent solve.
    pub(crate) fn j(&self, sensors: &Sensors, v: &[f32], mem: &mut [f32], out: &mut [f32]) {
        let n = self.n;
        let (m, big) = self.band_dims();
        let Mem { band, dx, coef: r, tmp, hp, hq, vp, vq, .. } = self.split(mem);
        match self.pde {
            // K du = -f'
            Pde::Poisson | Pde::Helmholtz => {
                for (p, t) in tmp[..big].iter_mut().enumerate() {
                    let c = (p / m + 1) * n + p % m + 1;
                    *t = -v[c] * dx[c];
                }
            }
            // K du = -(dK/da da) u: each face adds s to its first node's
            // row and subtracts it from the second's.
            Pde::Darcy => {
                r.fill(0.0);
                for p in 0..n * n {
                    if p + 1 < n * n {
                        let s = hp[p] * v[p] + hq[p] * v[p + 1];
                        r[p] += s;
                        r[p + 1] -= s;
                    }
                    if p + n < n * n {
                        let s = vp[p] * v[p] + vq[p] * v[p + n];
                        r[p] += s;
                        r[p + n] -= s;
                    }
                }
                for (p, t) in tmp[..big].iter_mut().enumerate() {
                    *t = -r[(p / m + 1) * n + p % m + 1];
                }
            }
        }
        band_solve(band, big, m, &mut tmp[..big]);
        for (o, s) in out.iter_mut().zip(sensors.iter()) {
            *o = interior(n, s.node as usize).map_or(0.0, |p| tmp[p]);
        }
    }

    /// The forward map alone: `u` (physical units, `n * n`, zero boundary)
    /// for the normalised input `x`, with `mem` of [`Self::mem_len`]
    /// values. For tests and host tools.
    pub fn solve(&self, x: &[f32], norm: (f32, f32), mem: &mut [f32], u_out: &mut [f32]) -> Result<(), Error> {
        let n2 = self.n * self.n;
        for (field, len, want) in [("x", x.len(), n2), ("u", u_out.len(), n2), ("mem", mem.len(), self.mem_len())] {
            if len != want {
                return Err(Error::BufferLength { field, expected: want, got: len });
            }
        }
        self.linearize(x, norm, 1.0, mem)?;
        u_out.copy_from_slice(self.split(mem).u);
        Ok(())
    }
}

struct Mem<'w> {
    band: &'w mut [f32],
    u: &'w mut [f32],
    dx: &'w mut [f32],
    coef: &'w mut [f32],
    tmp: &'w mut [f32],
    hp: &'w mut [f32],
    hq: &'w mut [f32],
    vp: &'w mut [f32],
    vq: &'w mut [f32],
}

/// The interior unknown of grid node `node`, if it is interior.
fn interior(n: usize, node: usize) -> Option<usize> {
    let (i, j) = (node / n, node % n);
    (i > 0 && j > 0 && i + 1 < n && j + 1 < n).then(|| (i - 1) * (n - 2) + (j - 1))
}

/// Interior unknowns to the full grid with a zero boundary.
fn scatter(n: usize, m: usize, x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (row, xs) in out.chunks_exact_mut(n).skip(1).zip(x.chunks_exact(m)) {
        row[1..=m].copy_from_slice(xs);
    }
}
