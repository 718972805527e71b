//! The forward surrogate `F ~ G` on the device (float twin:
//! `trainer::model::fno`): forward pass and the vector-Jacobian product of
//! the measurement loss that guides the sampler.

use crate::Error;
use crate::operator::{Operator, OperatorShape};
use crate::sensors::Sensors;
use crate::validate::{finite, operator, positive};
use crate::wire::SurrogateParams;

/// The surrogate network and its normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fno<'a> {
    net: Operator<'a>,
    a_mean: f32,
    a_std: f32,
    u_mean: f32,
    u_std: f32,
}

fn check_len(field: &'static str, got: usize, expected: usize) -> Result<(), Error> {
    if got != expected { Err(Error::BufferLength { field, expected, got }) } else { Ok(()) }
}

impl<'a> Fno<'a> {
    pub(crate) fn from_params(p: &SurrogateParams<'a>, n: usize) -> Result<Self, Error> {
        Ok(Self {
            net: operator(&p.net, n)?,
            a_mean: finite(p.a_mean, "surrogate.a_mean")?,
            a_std: positive(p.a_std, "surrogate.a_std")?,
            u_mean: finite(p.u_mean, "surrogate.u_mean")?,
            u_std: positive(p.u_std, "surrogate.u_std")?,
        })
    }

    /// The network.
    pub fn net(&self) -> &Operator<'a> {
        &self.net
    }

    /// `(a_mean, a_std, u_mean, u_std)`.
    pub fn normalization(&self) -> (f32, f32, f32, f32) {
        (self.a_mean, self.a_std, self.u_mean, self.u_std)
    }

    /// f32 workspace of [`forward`](Self::forward) (and its normalised
    /// and traced forms).
    pub fn forward_workspace_len(&self) -> usize {
        self.net.shape().forward_workspace_len()
    }

    /// f32 workspace of the vector-Jacobian product (and so of
    /// [`loss_grad`](Self::loss_grad)) for `sensors` sensors; it covers the
    /// forward pass too.
    pub fn workspace_len(&self, sensors: usize) -> usize {
        self.net.shape().vjp_workspace_len(sensors)
    }

    fn n2(&self) -> usize {
        self.net.shape().n * self.net.shape().n
    }

    /// The network between the normalisations: normalised `a` in,
    /// normalised `u` out, `n * n` each (burn's `forward_normalized`).
    pub fn forward_normalized(&self, a: &[f32], u: &mut [f32], ws: &mut [f32]) -> Result<(), Error> {
        self.forward_mapped(a, |v| v, u, |_, v| v, ws, |_, _| {})
    }

    /// [`forward_normalized`](Self::forward_normalized) that also hands
    /// `stage(k, h)` the padded hidden state (`P x P x width`,
    /// channels-last) after the lift (`k = 0`) and after each layer
    /// (`k = l + 1`): the hook of the layer-by-layer parity checks.
    pub fn trace_normalized(
        &self,
        a: &[f32],
        u: &mut [f32],
        ws: &mut [f32],
        stage: impl FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        self.forward_mapped(a, |v| v, u, |_, v| v, ws, stage)
    }

    /// Physical `a` to physical `u`, `n * n` each (burn's `forward`).
    pub fn forward(&self, a: &[f32], u: &mut [f32], ws: &mut [f32]) -> Result<(), Error> {
        let (am, asd, um, usd) = (self.a_mean, self.a_std, self.u_mean, self.u_std);
        self.forward_mapped(a, |v| (v - am) / asd, u, |_, v| v * usd + um, ws, |_, _| {})
    }

    fn forward_mapped(
        &self,
        a: &[f32],
        map: impl Fn(f32) -> f32,
        u: &mut [f32],
        post: impl Fn(usize, f32) -> f32,
        ws: &mut [f32],
        mut stage: impl FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        check_len("a", a.len(), self.n2())?;
        check_len("u", u.len(), self.n2())?;
        let mut ws = self.net.split(ws, None)?;
        self.net.lift(a, map, &mut ws);
        stage(0, ws.h);
        for l in 0..self.net.shape().layers {
            self.net.layer(l, &mut ws, crate::kernels::F32s::empty(), false);
            stage(l + 1, ws.h);
        }
        self.net.project_all(&mut ws, u, post);
        Ok(())
    }

    /// Vector-Jacobian product on normalised fields: runs the forward pass
    /// on `a` (normalised, `n * n`), hands the normalised predictions at
    /// the sensor nodes (in sensor order) to `cotangent`, which overwrites
    /// them with `dL/du_norm`, and writes `dL/da_norm` into `grad`.
    pub fn vjp_normalized(
        &self,
        a: &[f32],
        sensors: &Sensors,
        cotangent: impl FnOnce(&mut [f32]),
        grad: &mut [f32],
        ws: &mut [f32],
    ) -> Result<(), Error> {
        self.vjp_mapped(a, |v| v, sensors, cotangent, grad, ws)
    }

    fn vjp_mapped(
        &self,
        x: &[f32],
        map: impl Fn(f32) -> f32,
        sensors: &Sensors,
        cotangent: impl FnOnce(&mut [f32]),
        grad: &mut [f32],
        ws: &mut [f32],
    ) -> Result<(), Error> {
        let shape = self.net.shape();
        if sensors.n() != shape.n {
            return Err(Error::GridMismatch { expected: shape.n, got: sensors.n() });
        }
        check_len("x", x.len(), self.n2())?;
        check_len("grad", grad.len(), self.n2())?;
        let mut ws = self.net.split(ws, Some(sensors.len()))?;
        self.net.lift(x, map, &mut ws);
        for l in 0..shape.layers {
            self.net.layer(l, &mut ws, crate::kernels::F32s::empty(), true);
        }
        // The split sized `su` for exactly these sensors.
        self.net.project_nodes(&mut ws, sensors.nodes());
        cotangent(ws.su);
        self.net.project_nodes_adjoint(&mut ws, sensors.nodes());
        for l in (0..shape.layers).rev() {
            self.net.layer_adjoint(l, &mut ws);
        }
        self.net.lift_adjoint(&mut ws, grad);
        Ok(())
    }

    /// The measurement loss of the sampler and its gradient w.r.t. the
    /// prior's normalised field `x` (trainer's `SurrogateGuide`):
    ///
    /// ```text
    /// a = x * prior_std + prior_mean,   u = F(a),
    /// L = 0.5 sum_k ((u[node_k] - y_k) / scale)^2
    /// ```
    ///
    /// Returns `L` and writes `dL/dx` into `grad` (`n * n`). `scale` must be
    /// finite and positive ([`Sensors::rms`] is).
    pub fn loss_grad(
        &self,
        x: &[f32],
        (prior_mean, prior_std): (f32, f32),
        sensors: &Sensors,
        scale: f32,
        grad: &mut [f32],
        ws: &mut [f32],
    ) -> Result<f32, Error> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidValue { field: "scale" });
        }
        let (am, asd, um, usd) = (self.a_mean, self.a_std, self.u_mean, self.u_std);
        let inv_scale = 1.0 / scale;
        let mut loss = 0.0f32;
        self.vjp_mapped(
            x,
            |v| ((v * prior_std + prior_mean) - am) / asd,
            sensors,
            |u| {
                for (u, s) in u.iter_mut().zip(sensors.iter()) {
                    let r = ((*u * usd + um) - s.value) * inv_scale;
                    loss += 0.5 * r * r;
                    // d/du_norm of 0.5 r^2 = r * usd / scale.
                    *u = r * inv_scale * usd;
                }
            },
            grad,
            ws,
        )?;
        for g in grad.iter_mut() {
            *g = *g / asd * prior_std;
        }
        Ok(loss)
    }

    /// Vector-Jacobian product at the sensors in the sampler's units:
    /// with `F~(x) = F(x * prior_std + prior_mean)[sensors] / scale`,
    /// `weights` receives `F~(x)` in its buffer and overwrites it with the
    /// cotangent `w`; `grad` gets `J~^T w` (`n * n`). `scale` must be
    /// finite and positive.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sensor_vjp(
        &self,
        x: &[f32],
        (prior_mean, prior_std): (f32, f32),
        sensors: &Sensors,
        scale: f32,
        weights: impl FnOnce(&mut [f32]),
        grad: &mut [f32],
        ws: &mut [f32],
    ) -> Result<(), Error> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidValue { field: "scale" });
        }
        let (am, asd, um, usd) = (self.a_mean, self.a_std, self.u_mean, self.u_std);
        let inv_scale = 1.0 / scale;
        self.vjp_mapped(
            x,
            |v| ((v * prior_std + prior_mean) - am) / asd,
            sensors,
            |u| {
                for u in u.iter_mut() {
                    *u = (*u * usd + um) * inv_scale;
                }
                weights(u);
                for u in u.iter_mut() {
                    *u = *u * inv_scale * usd;
                }
            },
            grad,
            ws,
        )?;
        for g in grad.iter_mut() {
            *g = *g / asd * prior_std;
        }
        Ok(())
    }

    /// The shape of the network.
    pub fn shape(&self) -> OperatorShape {
        self.net.shape()
    }
}
