//! The reduced-step DAPS sampler on the device (host twin:
//! `trainer::sample::daps` with one ODE step, i.e. Tweedie's estimate):
//!
//! ```text
//! x = s_0 * noise
//! for each level i:
//!     a0 = D(x; s_i)
//!     a  = a0
//!     repeat langevin times:
//!         a += lr_i (-grad L(a) / tau^2 - (a - a0) / s_i^2) + sqrt(2 lr_i) noise
//!         clamp a to +-clamp (non-finite -> 0), counting every change
//!     x = a + s_{i+1} noise        (x = a after the last level)
//! ```
//!
//! `L` is the surrogate's measurement loss in units of the readings' RMS,
//! floored at the surrogate's `u_std` (the spread of `u` over its training
//! pairs) so that a case with unusually small readings does not get a much
//! stiffer likelihood than a typical one (`Fno::loss_grad`); `tau` is
//! floored at `noise_sigma / unit`. All state
//! lives in the caller's workspace ([`workspace_len`]): five `n x n` fields
//! (`x`, which doubles as the gradient, `a0`, `a`, the noise and its
//! scratch), then the network's work memory, shared by the denoiser and
//! the surrogate since they never run at the same time.

use crate::Error;
use crate::artifact::Artifact;
use crate::denoiser::Prior;
use crate::fno::Fno;
use crate::math;
use crate::noise::SmoothNoise;
use crate::operator::OperatorShape;
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::sensors::{MAX_SENSORS, Sensors};

/// `n x n` fields of sampler state in the workspace.
pub const STATE_FIELDS: usize = 5;

/// f32 workspace of the sampler for a grid of `n` and the two networks'
/// shapes: [`STATE_FIELDS`] fields plus the larger of the surrogate's VJP
/// memory and the denoiser's forward memory. Saturates on absurd shapes.
pub const fn workspace_len(n: usize, fno: OperatorShape, prior: OperatorShape) -> usize {
    let (a, b) = (fno.workspace_len(true), prior.workspace_len(false));
    let net = if a > b { a } else { b };
    n.saturating_mul(n).saturating_mul(STATE_FIELDS).saturating_add(net)
}

/// What one sampler call did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SampleStats {
    /// Denoiser evaluations.
    pub denoiser_calls: u32,
    /// Surrogate loss-and-gradient evaluations.
    pub guide_calls: u32,
    /// Node values the clamp changed (should stay 0).
    pub clamped: u32,
    /// Langevin steps that produced a non-finite value (reset to 0).
    pub non_finite: u32,
    /// Measurement loss `L` at the last Langevin step of the last chain.
    pub last_loss: f32,
}

/// Floating-point operations of one posterior sample for `sensors`
/// sensors, counted from the shapes (a multiply-add counts 2): denoiser
/// passes, surrogate VJPs, noise draws (`2 n^3` multiply-adds each) and the
/// pointwise updates.
pub fn flops(art: &Artifact<'_>, sensors: usize) -> Option<u64> {
    let (fno, prior, sched) = (art.surrogate()?, art.prior()?, art.schedule()?);
    let n = art.n() as u64;
    let (levels, langevin) = (sched.levels() as u64, sched.langevin() as u64);
    let noise = 4 * n * n * n;
    let denoise = prior.shape().forward_flops() + 3 * n * n;
    let guide = fno.shape().vjp_flops(sensors.min(MAX_SENSORS)) + 4 * n * n;
    let update = 9 * n * n;
    Some(noise + levels * (denoise + langevin * (guide + noise + update) + noise + 2 * n * n))
}

struct Parts<'b, 'a> {
    fno: &'b Fno<'a>,
    prior: &'b Prior<'a>,
    noise: &'b SmoothNoise<'a>,
    schedule: &'b Schedule<'a>,
}

fn parts<'b, 'a>(art: &'b Artifact<'a>) -> Result<Parts<'b, 'a>, Error> {
    Ok(Parts {
        fno: art.surrogate().ok_or(Error::MissingPart { part: "surrogate" })?,
        prior: art.prior().ok_or(Error::MissingPart { part: "prior" })?,
        noise: art.noise().ok_or(Error::MissingPart { part: "noise" })?,
        schedule: art.schedule().ok_or(Error::MissingPart { part: "schedule" })?,
    })
}

/// The workspace split into the sampler's fields and the network memory.
struct State<'w> {
    /// The annealed state; the gradient during the Langevin steps.
    x: &'w mut [f32],
    a0: &'w mut [f32],
    a: &'w mut [f32],
    /// A noise field.
    z: &'w mut [f32],
    /// Scratch of the noise colouring.
    t: &'w mut [f32],
    net: &'w mut [f32],
}

/// Checks the request and splits the workspace.
fn prepare<'w>(art: &Artifact<'_>, sensors: &Sensors, noise_sigma: f32, ws: &'w mut [f32]) -> Result<State<'w>, Error> {
    let n = art.n();
    if sensors.n() != n {
        return Err(Error::GridMismatch { expected: n, got: sensors.n() });
    }
    if sensors.is_empty() {
        return Err(Error::NoSensors);
    }
    if !(noise_sigma.is_finite() && noise_sigma >= 0.0) {
        return Err(Error::InvalidValue { field: "noise_sigma" });
    }
    let needed = art.workspace_len().ok_or(Error::MissingPart { part: "sampler sections" })?;
    if ws.len() < needed {
        return Err(Error::WorkspaceTooSmall { needed, got: ws.len() });
    }
    let n2 = n * n;
    let (x, rest) = ws.split_at_mut(n2);
    let (a0, rest) = rest.split_at_mut(n2);
    let (a, rest) = rest.split_at_mut(n2);
    let (z, rest) = rest.split_at_mut(n2);
    let (t, net) = rest.split_at_mut(n2);
    Ok(State { x, a0, a, z, t, net })
}

/// One chain; the normalised result is left in `st.x`.
fn chain(
    p: &Parts<'_, '_>,
    sensors: &Sensors,
    noise_sigma: f32,
    rng: &mut Rng,
    st: &mut State<'_>,
    stats: &mut SampleStats,
) -> Result<(), Error> {
    let State { x, a0, a, z, t, net } = st;
    let sched = p.schedule;
    let rms = sensors.rms();
    let u_std = p.fno.normalization().3;
    let scale = if u_std > rms { u_std } else { rms };
    let floor = noise_sigma / scale;
    let tau = if floor > sched.tau() { floor } else { sched.tau() };
    let inv_tau2 = 1.0 / (tau * tau);
    let clamp = sched.clamp();
    let prior_norm = p.prior.normalization();

    let s0 = sched.level(0)?.sigma;
    p.noise.sample(rng, z, t)?;
    for (x, &z) in x.iter_mut().zip(z.iter()) {
        *x = z * s0;
    }
    for i in 0..sched.levels() {
        let lv = sched.level(i)?;
        p.prior.denoise(&lv, x, a0, net)?;
        stats.denoiser_calls = stats.denoiser_calls.saturating_add(1);
        a.copy_from_slice(a0);
        for _ in 0..sched.langevin() {
            // x is free during the Langevin steps: it holds the gradient.
            stats.last_loss = p.fno.loss_grad(a, prior_norm, sensors, scale, x, net)?;
            stats.guide_calls = stats.guide_calls.saturating_add(1);
            p.noise.sample(rng, z, t)?;
            let mut bad = false;
            for (((a, &a0), &g), &z) in a.iter_mut().zip(a0.iter()).zip(x.iter()).zip(z.iter()) {
                let drift = g * -inv_tau2 - (*a - a0) * lv.inv_sigma2;
                let v = *a + drift * lv.lr + z * lv.noise_std;
                *a = if !v.is_finite() {
                    bad = true;
                    stats.clamped = stats.clamped.saturating_add(1);
                    0.0
                } else if v > clamp || v < -clamp {
                    stats.clamped = stats.clamped.saturating_add(1);
                    if v > 0.0 { clamp } else { -clamp }
                } else {
                    v
                };
            }
            stats.non_finite = stats.non_finite.saturating_add(u32::from(bad));
        }
        if lv.sigma_next > 0.0 {
            p.noise.sample(rng, z, t)?;
            for ((x, &a), &z) in x.iter_mut().zip(a.iter()).zip(z.iter()) {
                *x = a + z * lv.sigma_next;
            }
        } else {
            x.copy_from_slice(a);
        }
    }
    Ok(())
}

/// One posterior sample in physical units into `out` (`n * n`), from the
/// generator `rng` (chains drawn one after the other continue its stream).
pub fn sample(
    art: &Artifact<'_>,
    sensors: &Sensors,
    noise_sigma: f32,
    rng: &mut Rng,
    out: &mut [f32],
    ws: &mut [f32],
) -> Result<SampleStats, Error> {
    let p = parts(art)?;
    let n2 = art.n() * art.n();
    if out.len() != n2 {
        return Err(Error::BufferLength { field: "out", expected: n2, got: out.len() });
    }
    let bufs = prepare(art, sensors, noise_sigma, ws)?;
    let mut stats = SampleStats::default();
    let (mean, std) = p.prior.normalization();
    let mut st = bufs;
    chain(&p, sensors, noise_sigma, rng, &mut st, &mut stats)?;
    for (o, &v) in out.iter_mut().zip(st.x.iter()) {
        *o = v * std + mean;
    }
    Ok(stats)
}

/// One posterior sample from `seed` in physical units into `out`.
pub fn reconstruct(
    art: &Artifact<'_>,
    sensors: &Sensors,
    noise_sigma: f32,
    seed: u64,
    out: &mut [f32],
    ws: &mut [f32],
) -> Result<SampleStats, Error> {
    sample(art, sensors, noise_sigma, &mut Rng::new(seed), out, ws)
}

/// `samples` posterior samples from `seed` (one generator stream, chains in
/// turn), reduced on the fly to the pointwise mean and (population)
/// standard deviation in physical units, `n * n` each (Welford's update: no
/// buffer per sample). Stats are summed over the chains.
#[allow(clippy::too_many_arguments)]
pub fn posterior(
    art: &Artifact<'_>,
    sensors: &Sensors,
    noise_sigma: f32,
    seed: u64,
    samples: usize,
    mean: &mut [f32],
    std: &mut [f32],
    ws: &mut [f32],
) -> Result<SampleStats, Error> {
    let p = parts(art)?;
    let n2 = art.n() * art.n();
    for (field, len) in [("mean", mean.len()), ("std", std.len())] {
        if len != n2 {
            return Err(Error::BufferLength { field, expected: n2, got: len });
        }
    }
    if samples == 0 {
        return Err(Error::InvalidValue { field: "samples" });
    }
    let mut st = prepare(art, sensors, noise_sigma, ws)?;
    let (pm, ps) = p.prior.normalization();
    let mut rng = Rng::new(seed);
    let mut total = SampleStats::default();
    mean.fill(0.0);
    std.fill(0.0);
    for s in 0..samples {
        let mut stats = SampleStats::default();
        chain(&p, sensors, noise_sigma, &mut rng, &mut st, &mut stats)?;
        total.denoiser_calls = total.denoiser_calls.saturating_add(stats.denoiser_calls);
        total.guide_calls = total.guide_calls.saturating_add(stats.guide_calls);
        total.clamped = total.clamped.saturating_add(stats.clamped);
        total.non_finite = total.non_finite.saturating_add(stats.non_finite);
        total.last_loss = stats.last_loss;
        let k = (s + 1) as f32;
        for ((m, m2), &v) in mean.iter_mut().zip(std.iter_mut()).zip(st.x.iter()) {
            let v = v * ps + pm;
            let d = v - *m;
            *m += d / k;
            *m2 += d * (v - *m);
        }
    }
    let count = samples as f32;
    for m2 in std.iter_mut() {
        *m2 = math::sqrt(*m2 / count);
    }
    Ok(total)
}
