//! The reduced-step DAPS sampler on the device (host twin:
//! `trainer::sample::daps` with one ODE step, i.e. Tweedie's estimate):
//!
//! ```text
//! x = s_0 * noise
//! for each level i:
//!     a0 = D(x; s_i)
//!     a  = inner step from a0 (below)
//!     x = a + s_{i+1} noise        (x = a after the last level)
//! ```
//!
//! The inner step is either
//!
//! * **Langevin** (the schedule's `langevin` steps):
//!   `a += lr_i (-grad L(a) / tau^2 - (a - a0) / s_i^2) + sqrt(2 lr_i) noise`,
//!   then a clamp to `+-clamp` (non-finite -> 0), counting every change; or
//! * **Gauss–Newton** ([`crate::gauss_newton`]): a draw from the prior
//!   `N(a0, r_i^2 C)` conditioned on the linearised readings, solved in the
//!   K-dimensional sensor space — no step size, no clamp.
//!
//! The forward model is the surrogate or, when the artifact carries it,
//! exact physics ([`crate::physics`]). `L` is the measurement loss in units
//! of the readings' RMS, floored at the surrogate's `u_std` (the spread of
//! `u` over its training pairs; exact physics records it too) so that a
//! case with unusually small readings does not get a much stiffer
//! likelihood than a typical one; `tau` is floored at
//! `noise_width * noise_sigma / unit` (the artifact's share of the
//! readings' noise). When the prior's fields vanish on the boundary (the
//! Helmholtz source) the Gauss–Newton spread is masked there and every
//! sample is 0 there. All state lives in the caller's workspace
//! ([`workspace_len`]): five `n x n` fields (`x`, which doubles as the
//! gradient, `a0`, `a`, the noise and its scratch), then the guide's or the
//! denoiser's work memory, whichever is larger (they never run at the same
//! time). The guide's part grows with the request's sensor count, so the
//! need is computed from that count, not from the cap.
//!
//! Before any arithmetic on the readings, every entry point checks the
//! noise level against the artifact's training range of u
//! ([`crate::artifact::DataParams::max_noise`]) and every reading against
//! the range that and the noise level allow
//! ([`crate::artifact::DataParams::reading_range`]): the residual unit is
//! then at most the range's largest end and `noise_sigma / unit` at most
//! the noise cap over the unit floor (about 14 for the shipped artifacts),
//! so nothing the sampler derives from a finite request can overflow.
//!
//! One file although it is past 500 lines: the workspace sizing, the
//! request checks, the level loop and its two inner steps share the
//! `State` split and read top to bottom as the algorithm above; the
//! Gauss–Newton step already lives in [`crate::gauss_newton`].

use crate::Error;
use crate::artifact::Artifact;
use crate::denoiser::Prior;
use crate::fno::Fno;
use crate::gauss_newton::{self, Linear, sensor_mem_len, step_mem_len};
use crate::grid::fill_boundary;
use crate::math;
use crate::noise::SmoothNoise;
use crate::operator::OperatorShape;
use crate::physics::Physics;
use crate::rng::Rng;
use crate::schedule::{Schedule, Step};
use crate::sensors::{MAX_SENSORS, Sensors};

/// `n x n` fields of sampler state in the workspace.
pub const STATE_FIELDS: usize = 5;

/// The forward model the sampler guides with.
#[derive(Clone, Copy, Debug)]
pub enum Forward<'b, 'a> {
    /// The FNO surrogate.
    Surrogate(&'b Fno<'a>),
    /// Exact finite-difference physics.
    Physics(&'b Physics),
}

/// f32 workspace of the Langevin sampler with the surrogate for a grid of
/// `n`, the two networks' shapes and `sensors` sensors: [`STATE_FIELDS`]
/// fields plus the larger of the surrogate's VJP memory and the denoiser's
/// forward memory. Saturates on absurd shapes.
pub const fn langevin_surrogate_workspace_len(
    n: usize,
    fno: OperatorShape,
    prior: OperatorShape,
    sensors: usize,
) -> usize {
    let (a, b) = (fno.vjp_workspace_len(sensors), prior.forward_workspace_len());
    let net = if a > b { a } else { b };
    n.saturating_mul(n).saturating_mul(STATE_FIELDS).saturating_add(net)
}

/// f32 values of the guide's memory for `k` sensors: the forward model's
/// (the surrogate's VJP memory for `k` sensors), then (surrogate with
/// Gauss–Newton) `k n^2` Jacobian rows, then the sensor-space buffers for
/// `k` (exact physics, or Gauss–Newton).
fn guide_len(n: usize, fwd: Forward<'_, '_>, step: Step, k: usize) -> usize {
    let k = k.min(MAX_SENSORS);
    match (fwd, step) {
        (Forward::Surrogate(f), Step::Langevin) => f.workspace_len(k),
        (Forward::Surrogate(f), Step::GaussNewton) => {
            f.workspace_len(k).saturating_add(k.saturating_mul(n).saturating_mul(n)).saturating_add(step_mem_len(n, k))
        }
        (Forward::Physics(p), Step::GaussNewton) => p.mem_len().saturating_add(step_mem_len(n, k)),
        (Forward::Physics(p), Step::Langevin) => p.mem_len().saturating_add(sensor_mem_len(k)),
    }
}

/// f32 workspace of the sampler for a request with `sensors` sensors
/// (capped at [`MAX_SENSORS`]): [`STATE_FIELDS`] fields plus the larger of
/// the guide's memory and the denoiser's forward memory. The need grows
/// with the count (the surrogate's projection masks and predictions, the
/// Jacobian rows and the `K x K` system), so a caller with few sensors may
/// bring less than the artifact's cap needs ([`Artifact::workspace_len`]).
pub fn workspace_len(n: usize, fwd: Forward<'_, '_>, prior: OperatorShape, step: Step, sensors: usize) -> usize {
    let guide = guide_len(n, fwd, step, sensors);
    let net = guide.max(prior.forward_workspace_len());
    n.saturating_mul(n).saturating_mul(STATE_FIELDS).saturating_add(net)
}

/// What a caller's poll hook tells the sampler before each annealing level
/// ([`posterior_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Control {
    /// Run the next level.
    Continue,
    /// Stop now: the call returns [`Error::Cancelled`].
    Cancel,
}

/// What one sampler call did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SampleStats {
    /// Denoiser evaluations.
    pub denoiser_calls: u32,
    /// Forward-model linearisations (a loss-and-gradient evaluation for
    /// Langevin, a Jacobian for Gauss–Newton).
    pub guide_calls: u32,
    /// Node values the clamp changed (should stay 0; Gauss–Newton never
    /// clamps).
    pub clamped: u32,
    /// Langevin steps that produced a non-finite value (reset to 0).
    pub non_finite: u32,
    /// Measurement loss `L` at the last guide evaluation of the last chain
    /// (Langevin only; 0 for Gauss–Newton).
    pub last_loss: f32,
}

/// Floating-point operations of one posterior sample for `sensors`
/// sensors, counted from the shapes (a multiply-add counts 2): denoiser
/// passes, guide work (surrogate VJPs, or banded factorisations and
/// solves), noise draws (`2 n^3` multiply-adds each) and the pointwise
/// updates.
pub fn flops(art: &Artifact<'_>, sensors: usize) -> Option<u64> {
    let (prior, sched, fwd) = (art.prior()?, art.schedule()?, art.forward_model()?);
    let n = art.n() as u64;
    let k = sensors.clamp(1, MAX_SENSORS) as u64;
    let (levels, inner) = (sched.levels() as u64, sched.langevin().max(1) as u64);
    let noise = 4 * n * n * n;
    let denoise = prior.shape().forward_flops() + 3 * n * n;
    let update = 9 * n * n;
    let per_level = match (fwd, sched.step()) {
        (Forward::Surrogate(f), Step::Langevin) => {
            inner * (f.shape().vjp_flops(k as usize) + 4 * n * n + noise + update)
        }
        (Forward::Physics(p), Step::Langevin) => {
            let (factor, solve) = p.factor_solve_madds();
            inner * (2 * (factor + 2 * solve) + 16 * n * n + noise + update)
        }
        (Forward::Surrogate(f), Step::GaussNewton) => {
            // K VJPs, then K columns: C (2 n^3 madds) and K dots of n^2.
            let gram = k * (f.shape().vjp_flops(1) + 4 * n * n * n + 2 * k * n * n);
            noise + inner * (gram + 4 * n * n * n + 6 * k * n * n + update)
        }
        (Forward::Physics(p), Step::GaussNewton) => {
            let (factor, solve) = p.factor_solve_madds();
            let gram = k * (2 * (2 * solve) + 4 * n * n * n + 16 * n * n) + k * k * k / 3;
            noise + inner * (2 * (factor + 3 * solve) + gram + 4 * n * n * n + update)
        }
    };
    Some(noise + levels * (denoise + per_level + noise + 2 * n * n))
}

struct Parts<'b, 'a> {
    fwd: Forward<'b, 'a>,
    prior: &'b Prior<'a>,
    noise: &'b SmoothNoise<'a>,
    schedule: &'b Schedule<'a>,
    /// The readings' unit floor (the surrogate's `u_std`, or for exact
    /// physics the one recorded at export).
    u_floor: f32,
    /// The prior's fields vanish on the boundary (Helmholtz,
    /// [`crate::artifact::DataParams::input_vanishes_on_boundary`]).
    zero_boundary: bool,
}

fn parts<'b, 'a>(art: &'b Artifact<'a>) -> Result<Parts<'b, 'a>, Error> {
    let fwd = art.forward_model().ok_or(Error::MissingPart { part: "surrogate" })?;
    let u_floor = match fwd {
        Forward::Surrogate(f) => f.normalization().3,
        Forward::Physics(p) => p.u_floor(),
    };
    Ok(Parts {
        fwd,
        prior: art.prior().ok_or(Error::MissingPart { part: "prior" })?,
        noise: art.noise().ok_or(Error::MissingPart { part: "noise" })?,
        schedule: art.schedule().ok_or(Error::MissingPart { part: "schedule" })?,
        u_floor,
        zero_boundary: art.data().input_vanishes_on_boundary(),
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
/// The checks of every entry point on the request itself: the sensors'
/// grid, their count (1 to the artifact's `max_sensors`), the noise level
/// (finite, `>= 0`, at most [`crate::artifact::DataParams::max_noise`]) and
/// every reading within [`crate::artifact::DataParams::reading_range`].
pub fn check_inputs(art: &Artifact<'_>, sensors: &Sensors, noise_sigma: f32) -> Result<(), Error> {
    let n = art.n();
    if sensors.n() != n {
        return Err(Error::GridMismatch { expected: n, got: sensors.n() });
    }
    if sensors.is_empty() {
        return Err(Error::NoSensors);
    }
    if sensors.len() > art.max_sensors() {
        return Err(Error::TooManySensors { capacity: art.max_sensors() });
    }
    if !(noise_sigma.is_finite() && noise_sigma >= 0.0) {
        return Err(Error::InvalidValue { field: "noise_sigma" });
    }
    // The noise level and then every reading are bounded by the artifact's
    // numbers before any arithmetic on them (see `artifact::MAX_ABS_U`).
    let data = art.data();
    if noise_sigma > data.max_noise() {
        return Err(Error::NoiseTooLarge { value: noise_sigma, max: data.max_noise() });
    }
    let (lo, hi) = data.reading_range(noise_sigma);
    sensors.check_range(lo, hi)
}

fn prepare<'w>(art: &Artifact<'_>, sensors: &Sensors, noise_sigma: f32, ws: &'w mut [f32]) -> Result<State<'w>, Error> {
    check_inputs(art, sensors, noise_sigma)?;
    let n = art.n();
    let needed = art.workspace_len_for(sensors.len()).ok_or(Error::MissingPart { part: "sampler sections" })?;
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

/// Langevin steps from `a0` into `a` (`x`, `z`, `t` scratch).
#[allow(clippy::too_many_arguments)]
fn langevin(
    p: &Parts<'_, '_>,
    sensors: &Sensors,
    scale: f32,
    inv_tau2: f32,
    lv: &crate::schedule::Level<'_>,
    rng: &mut Rng,
    st: &mut State<'_>,
    stats: &mut SampleStats,
) -> Result<(), Error> {
    let State { x, a0, a, z, t, net } = st;
    let clamp = p.schedule.clamp();
    let prior_norm = p.prior.normalization();
    a.copy_from_slice(a0);
    for _ in 0..p.schedule.langevin() {
        // x is free during the Langevin steps: it holds the gradient.
        stats.last_loss = match p.fwd {
            Forward::Surrogate(f) => f.loss_grad(a, prior_norm, sensors, scale, x, net)?,
            Forward::Physics(ph) => physics_loss_grad(ph, a, prior_norm, sensors, scale, x, net)?,
        };
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
    Ok(())
}

/// `L = 0.5 sum_k (F~(x)_k - y_k / scale)^2` and its gradient `J~^T r`
/// through exact physics.
fn physics_loss_grad(
    ph: &Physics,
    x: &[f32],
    prior_norm: (f32, f32),
    sensors: &Sensors,
    scale: f32,
    grad: &mut [f32],
    mem: &mut [f32],
) -> Result<f32, Error> {
    let k = sensors.len();
    let (model, rest) = mem.split_at_mut(ph.mem_len());
    let r = &mut rest[..k];
    ph.linearize(x, prior_norm, scale, model)?;
    ph.predict(sensors, scale, model, r);
    let inv_scale = 1.0 / scale;
    let mut loss = 0.0f32;
    for (r, s) in r.iter_mut().zip(sensors.iter()) {
        *r -= s.value * inv_scale;
        loss += 0.5 * *r * *r;
    }
    ph.jt(sensors, r, model, grad);
    Ok(loss)
}

/// One chain; the normalised result is left in `st.x`. `poll(done)` is
/// asked before each level, `done` counting the levels run so far in the
/// caller's call (every chain's); it never touches the numbers.
#[allow(clippy::too_many_arguments)]
fn chain(
    p: &Parts<'_, '_>,
    sensors: &Sensors,
    noise_sigma: f32,
    rng: &mut Rng,
    st: &mut State<'_>,
    stats: &mut SampleStats,
    poll: &mut impl FnMut(u32) -> Control,
    done: &mut u32,
) -> Result<(), Error> {
    let sched = p.schedule;
    let rms = sensors.rms();
    let scale = if p.u_floor > rms { p.u_floor } else { rms };
    let floor = sched.noise_width() * noise_sigma / scale;
    let tau = if floor > sched.tau() { floor } else { sched.tau() };
    let inv_tau2 = 1.0 / (tau * tau);
    let n2 = st.x.len();

    let s0 = sched.level(0)?.sigma;
    p.noise.sample(rng, st.z, st.t)?;
    for (x, &z) in st.x.iter_mut().zip(st.z.iter()) {
        *x = z * s0;
    }
    for i in 0..sched.levels() {
        if poll(*done) == Control::Cancel {
            return Err(Error::Cancelled { levels: *done });
        }
        let lv = sched.level(i)?;
        p.prior.denoise(&lv, st.x, st.a0, st.net)?;
        stats.denoiser_calls = stats.denoiser_calls.saturating_add(1);
        match sched.step() {
            Step::Langevin => langevin(p, sensors, scale, inv_tau2, &lv, rng, st, stats)?,
            Step::GaussNewton => {
                let (lin, rows_len) = match p.fwd {
                    Forward::Physics(ph) => (Linear::Physics(ph), 0),
                    Forward::Surrogate(f) => (Linear::Surrogate(f), sensors.len() * n2),
                };
                let set = gauss_newton::Setting {
                    r: lv.r,
                    tau,
                    iterations: sched.langevin(),
                    scale,
                    prior_norm: p.prior.normalization(),
                    zero_boundary: p.zero_boundary,
                };
                let fields = gauss_newton::Fields { a0: st.a0, a: st.a, prop: st.x, z: st.z, t: st.t };
                let calls = gauss_newton::step(&lin, p.noise, sensors, set, rng, fields, st.net, rows_len)?;
                stats.guide_calls = stats.guide_calls.saturating_add(calls);
            }
        }
        let State { x, a, z, t, .. } = st;
        if lv.sigma_next > 0.0 {
            p.noise.sample(rng, z, t)?;
            for ((x, &a), &z) in x.iter_mut().zip(a.iter()).zip(z.iter()) {
                *x = a + z * lv.sigma_next;
            }
        } else {
            x.copy_from_slice(a);
        }
        *done = done.saturating_add(1);
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
    chain(&p, sensors, noise_sigma, rng, &mut st, &mut stats, &mut |_| Control::Continue, &mut 0)?;
    for (o, &v) in out.iter_mut().zip(st.x.iter()) {
        *o = v * std + mean;
    }
    if p.zero_boundary {
        fill_boundary(out, art.n(), 0.0);
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
    posterior_with(art, sensors, noise_sigma, seed, samples, mean, std, ws, &mut |_| Control::Continue)
}

/// [`posterior`] with a poll hook: `poll(done)` runs before each annealing
/// level (`done`: levels finished so far, over all chains, `samples x
/// levels` in all) and may stop the call, which then returns
/// [`Error::Cancelled`] with `mean` and `std` holding partial sums. The
/// hook sees no sampler state, so a run it lets finish is bit-identical to
/// [`posterior`]'s. The firmware drains its UART there (docs/protocol.md,
/// Busy and Cancel); it should return quickly: it delays the next level.
#[allow(clippy::too_many_arguments)]
pub fn posterior_with(
    art: &Artifact<'_>,
    sensors: &Sensors,
    noise_sigma: f32,
    seed: u64,
    samples: usize,
    mean: &mut [f32],
    std: &mut [f32],
    ws: &mut [f32],
    poll: &mut impl FnMut(u32) -> Control,
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
    let mut done = 0u32;
    for s in 0..samples {
        let mut stats = SampleStats::default();
        chain(&p, sensors, noise_sigma, &mut rng, &mut st, &mut stats, poll, &mut done)?;
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
    if p.zero_boundary {
        // Every sample is 0 there: mean 0, spread 0.
        fill_boundary(mean, art.n(), 0.0);
        fill_boundary(std, art.n(), 0.0);
    }
    Ok(total)
}

/// What the sampler needs to know of an artifact before a run (kept here,
/// beside [`workspace_len`], so the artifact does not depend on the sampler).
impl<'a> Artifact<'a> {
    /// The forward model the sampler uses: exact physics when present,
    /// else the surrogate; `None` when neither is.
    pub fn forward_model(&self) -> Option<Forward<'_, 'a>> {
        match (self.physics(), self.surrogate()) {
            (Some(p), _) => Some(Forward::Physics(p)),
            (None, Some(f)) => Some(Forward::Surrogate(f)),
            (None, None) => None,
        }
    }

    /// f32 values of workspace the reduced-step DAPS sampler needs for the
    /// most sensors a request may bring ([`Artifact::max_sensors`]): what a
    /// static buffer that serves every request holds. `None` when a section
    /// it needs is missing.
    pub fn workspace_len(&self) -> Option<usize> {
        self.workspace_len_for(self.max_sensors())
    }

    /// f32 values of workspace for a request with `sensors` sensors
    /// ([`workspace_len()`]); at most [`workspace_len`](Self::workspace_len)
    /// for any count the artifact accepts. `None` when a section the
    /// sampler needs is missing.
    pub fn workspace_len_for(&self, sensors: usize) -> Option<usize> {
        let prior = self.prior()?;
        self.noise()?;
        let schedule = self.schedule()?;
        let shape = prior.net().shape();
        Some(workspace_len(self.n(), self.forward_model()?, shape, schedule.step(), sensors))
    }

    /// [`workspace_len`](Self::workspace_len) in bytes.
    pub fn workspace_bytes(&self) -> Option<usize> {
        self.workspace_len().map(|v| v * 4)
    }
}
