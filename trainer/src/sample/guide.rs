//! The measurement-loss guides: the learned surrogate (gradient by burn's
//! autodiff), the exact finite-difference solver (gradient by the adjoint
//! method, `pde::adjoint`) and the `u` channel of the joint baseline.
//!
//! Each maps clean estimates in the prior's normalised coordinates to
//! physical fields, predicts the readings and returns
//! `L = 0.5 sum_k ((M(u)_k - y_k) / y_scale)^2` with its gradient. `y_scale`
//! is the RMS of the case's readings, so `tau` means the same for every PDE,
//! floored by the guide at the standard deviation of `u` over the model's
//! training pairs ([`ObservationBatch::floor_scale`]): a case whose readings
//! are unusually small would otherwise get a likelihood many times stiffer
//! than a typical case, and its Langevin chain diverges at a step size that
//! suits the others (Poisson: the 4 smallest-signal of 100 test cases).

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{Guide, Linearization};
use crate::model::fno::Fno;
use crate::observe::Observations;
use crate::pde::{PdeConfig, PdeKind, Solver};

/// Smallest Darcy coefficient the exact-solver guide passes to the solver;
/// a sample below it is clamped there (with zero gradient) and counted.
pub const DARCY_COEFFICIENT_FLOOR: f64 = 0.3;

/// The readings of every batch element: element `b` belongs to case
/// `b / repeat` (one case, `repeat` posterior samples).
#[derive(Clone, Debug)]
pub struct ObservationBatch {
    /// Nodes per side.
    pub n: usize,
    /// Sensor nodes per element.
    pub nodes: Vec<Vec<usize>>,
    /// Readings per element.
    pub values: Vec<Vec<f64>>,
    /// Residual unit per element: the RMS of its readings.
    pub scale: Vec<f64>,
    /// The readings' noise standard deviation (physical units).
    pub noise_sigma: f64,
}

impl ObservationBatch {
    /// Expands `cases` to `repeat` elements each. All cases share the grid
    /// and the noise level.
    pub fn new(cases: &[Observations], repeat: usize) -> Result<Self> {
        ensure!(!cases.is_empty() && repeat >= 1, "need at least one case and one sample per case");
        let n = cases[0].n;
        let noise_sigma = cases[0].noise_sigma;
        let mut out = Self { n, nodes: vec![], values: vec![], scale: vec![], noise_sigma };
        for (k, c) in cases.iter().enumerate() {
            ensure!(c.n == n, "case {k} is on a {}x{} grid, case 0 on {n}x{n}", c.n, c.n);
            let rms = (c.values.iter().map(|v| v * v).sum::<f64>() / c.values.len().max(1) as f64).sqrt();
            // All-zero readings (possible for Poisson): fall back to unit scale.
            let scale = if rms > 1e-12 { rms } else { 1.0 };
            for _ in 0..repeat {
                out.nodes.push(c.nodes.clone());
                out.values.push(c.values.clone());
                out.scale.push(scale);
            }
        }
        Ok(out)
    }

    /// Batch elements.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the batch is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Raises every element's residual unit to at least `floor` (the
    /// standard deviation of `u` over the guide model's training pairs; the
    /// device runtime floors at the surrogate's `u_std` the same way).
    pub fn floor_scale(&mut self, floor: f64) {
        if floor.is_finite() && floor > 0.0 {
            for s in &mut self.scale {
                *s = s.max(floor);
            }
        }
    }

    /// Largest noise level in residual units over the elements.
    pub fn noise_floor(&self) -> f64 {
        self.scale.iter().map(|s| self.noise_sigma / s).fold(0.0, f64::max)
    }

    /// Loss of element `b` for predicted readings `pred`, and `dL/dpred`.
    fn residual_loss(&self, b: usize, pred: impl Iterator<Item = f64>) -> (f64, Vec<f64>) {
        let s2 = self.scale[b] * self.scale[b];
        let mut loss = 0.0;
        let grad = pred
            .zip(&self.values[b])
            .map(|(p, y)| {
                let d = p - y;
                loss += 0.5 * d * d / s2;
                d / s2
            })
            .collect();
        (loss, grad)
    }
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("tensor data: {e:?}"))
}

/// Guidance through the learned FNO surrogate (gradient by autodiff).
pub struct SurrogateGuide<AB: AutodiffBackend> {
    fno: Fno<AB>,
    /// The frozen surrogate's mixing matrices, built once.
    mixing: Vec<Tensor<AB, 3>>,
    obs: ObservationBatch,
    /// `(mean, std)` of the prior's `a` channel.
    a_norm: (f64, f64),
    idx: Tensor<AB, 2, Int>,
    y: Tensor<AB, 2>,
    inv_scale: Tensor<AB, 2>,
}

impl<AB: AutodiffBackend> SurrogateGuide<AB> {
    /// `a_norm` is the prior's `(mean, std)` of `a`. Every case must have
    /// the same number of sensors.
    /// The residual unit is floored at the surrogate's `u_std`.
    pub fn new(fno: Fno<AB>, mut obs: ObservationBatch, a_norm: (f64, f64), device: &AB::Device) -> Result<Self> {
        obs.floor_scale(fno.normalization.u_std);
        let k = obs.nodes[0].len();
        ensure!(
            obs.nodes.iter().all(|v| v.len() == k),
            "the surrogate guide needs the same sensor count in every case"
        );
        let b = obs.len();
        let idx: Vec<i64> = obs.nodes.iter().flatten().map(|&v| v as i64).collect();
        let y: Vec<f32> = obs.values.iter().flatten().map(|&v| v as f32).collect();
        let inv: Vec<f32> = obs.scale.iter().flat_map(|&s| std::iter::repeat_n((1.0 / s) as f32, k)).collect();
        // Gradients w.r.t. the input only: no weight gradients.
        let fno = fno.no_grad();
        Ok(Self {
            mixing: fno.mixing_matrices(),
            fno,
            a_norm,
            idx: Tensor::from_data(TensorData::new(idx, [b, k]), device),
            y: Tensor::from_data(TensorData::new(y, [b, k]), device),
            inv_scale: Tensor::from_data(TensorData::new(inv, [b, k]), device),
            obs,
        })
    }
}

/// Per-element losses `[b]` and their gradient `[b, C, n, n]`, on the device.
type LossAndGrad<B> = (Tensor<B, 1>, Tensor<B, 4>);

impl<AB: AutodiffBackend> SurrogateGuide<AB> {
    /// Per-element losses `[b]` and their gradient, both on the device.
    fn loss_and_grad(&self, x0: Tensor<AB::InnerBackend, 4>) -> Result<LossAndGrad<AB::InnerBackend>> {
        let [b, _, n, _] = x0.dims();
        let x = Tensor::<AB, 4>::from_inner(x0).require_grad();
        let a = x.clone().mul_scalar(self.a_norm.1).add_scalar(self.a_norm.0).reshape([b, n, n]);
        let u = self.fno.forward_mixing(a, &self.mixing).reshape([b, n * n]);
        let r = (u.gather(1, self.idx.clone()) - self.y.clone()) * self.inv_scale.clone();
        let loss = r.square().sum_dim(1).mul_scalar(0.5);
        let grads = loss.clone().sum().backward();
        let g = x.grad(&grads).context("no gradient reached the surrogate's input")?;
        Ok((loss.inner().reshape([b]), g))
    }
}

impl<AB: AutodiffBackend> Guide<AB::InnerBackend> for SurrogateGuide<AB> {
    fn loss_grad(&mut self, x0: Tensor<AB::InnerBackend, 4>) -> Result<(Vec<f64>, Tensor<AB::InnerBackend, 4>)> {
        let (loss, g) = self.loss_and_grad(x0)?;
        let per: Vec<f64> = to_vec(loss)?.into_iter().map(f64::from).collect();
        Ok((per, g))
    }

    /// No read-back: the loss stays on the device, unused.
    fn grad(&mut self, x0: Tensor<AB::InnerBackend, 4>) -> Result<Tensor<AB::InnerBackend, 4>> {
        self.loss_and_grad(x0).map(|(_, g)| g)
    }

    fn noise_floor(&self) -> f64 {
        self.obs.noise_floor()
    }

    /// `K` vector-Jacobian products per element in one backward pass: each
    /// element is copied `K` times, copy `k` backpropagates its residual
    /// `k` only. Elements go through in chunks of about
    /// [`JACOBIAN_NODES`] input values.
    fn linearize(&mut self, x0: Tensor<AB::InnerBackend, 4>) -> Result<Linearization<AB::InnerBackend>> {
        let [b, c, n, _] = x0.dims();
        ensure!(c == 1, "the surrogate guide linearises one-channel fields, got {c} channels");
        let k = self.obs.nodes[0].len();
        let device = x0.device();
        let chunk = (JACOBIAN_NODES / (k * n * n).max(1)).max(1);
        // Copy k of an element keeps residual k: the K x K identity, tiled.
        let eye: Vec<f32> = (0..k * k).map(|i| f32::from(u8::from(i / k == i % k))).collect();
        let eye = Tensor::<AB, 2>::from_data(TensorData::new(eye, [k, k]), &device);
        let (mut residuals, mut rows) = (Vec::new(), Vec::new());
        for start in (0..b).step_by(chunk) {
            let m = chunk.min(b - start);
            let part = x0.clone().narrow(0, start, m);
            let copies = part.unsqueeze_dim::<5>(1).expand([m, k, 1, n, n]).reshape([m * k, 1, n, n]);
            let x = Tensor::<AB, 4>::from_inner(copies).require_grad();
            let a = x.clone().mul_scalar(self.a_norm.1).add_scalar(self.a_norm.0).reshape([m * k, n, n]);
            let u = self.fno.forward_mixing(a, &self.mixing).reshape([m * k, n * n]);
            let per_copy =
                |t: Tensor<AB, 2>| t.narrow(0, start, m).unsqueeze_dim::<3>(1).expand([m, k, k]).reshape([m * k, k]);
            let idx = self.idx.clone().narrow(0, start, m).unsqueeze_dim::<3>(1).expand([m, k, k]).reshape([m * k, k]);
            let r = (u.gather(1, idx) - per_copy(self.y.clone())) * per_copy(self.inv_scale.clone());
            let picked = r.clone() * eye.clone().unsqueeze_dim::<3>(0).expand([m, k, k]).reshape([m * k, k]);
            let grads = picked.sum().backward();
            let j = x.grad(&grads).context("no gradient reached the surrogate's input")?;
            rows.push(j.reshape([m, k, n * n]));
            residuals.push(r.inner().reshape([m, k, k]).slice([0..m, 0..1, 0..k]).reshape([m, k]));
        }
        Ok(Linearization { residual: Tensor::cat(residuals, 0), jacobian: Tensor::cat(rows, 0) })
    }
}

/// Input values per backward pass of [`SurrogateGuide`]'s Jacobian (copies
/// x nodes): bounds its memory to a few hundred MB at the device preset.
pub const JACOBIAN_NODES: usize = 1 << 18;

/// Guidance through the exact finite-difference solver (gradient by the
/// adjoint method), one solve and one adjoint solve per element, in
/// parallel over elements.
pub struct SolverGuide {
    pde: PdeConfig,
    obs: ObservationBatch,
    a_norm: (f64, f64),
    /// Node values raised to [`DARCY_COEFFICIENT_FLOOR`] so far.
    pub floored: usize,
}

impl SolverGuide {
    /// `a_norm` is the prior's `(mean, std)` of the PDE's input.
    pub fn new(pde: PdeConfig, obs: ObservationBatch, a_norm: (f64, f64)) -> Result<Self> {
        pde.validate()?;
        pde.solver(obs.n)?;
        Ok(Self { pde, obs, a_norm, floored: 0 })
    }
}

impl SolverGuide {
    /// Runs `per_element(solver, obs, b, input, mask)` on every batch
    /// element in parallel, with the element's physical input (Darcy
    /// coefficients below [`DARCY_COEFFICIENT_FLOOR`] raised to it, `mask`
    /// false there) and one solver per thread; counts the floored values.
    fn map_elements<T: Send>(
        &mut self,
        x: &[f32],
        per: usize,
        per_element: impl Fn(&mut Solver, &ObservationBatch, usize, &[f64], &[bool]) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let (mean, std) = self.a_norm;
        let darcy = self.pde.kind == PdeKind::Darcy;
        let (n, pde, obs) = (self.obs.n, &self.pde, &self.obs);
        let results: Vec<Result<(T, usize)>> = x
            .par_chunks(per)
            .enumerate()
            .map_init(
                || pde.solver(n),
                |solver, (b, field)| {
                    let solver = solver.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut floored = 0;
                    let mut mask = vec![true; per];
                    let input: Vec<f64> = field
                        .iter()
                        .zip(mask.iter_mut())
                        .map(|(&v, m)| {
                            let a = f64::from(v) * std + mean;
                            if darcy && a < DARCY_COEFFICIENT_FLOOR {
                                floored += 1;
                                *m = false;
                                DARCY_COEFFICIENT_FLOOR
                            } else {
                                a
                            }
                        })
                        .collect();
                    Ok((per_element(solver, obs, b, &input, &mask)?, floored))
                },
            )
            .collect();
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            let (t, f) = r?;
            out.push(t);
            self.floored += f;
        }
        Ok(out)
    }
}

impl<B: Backend> Guide<B> for SolverGuide {
    fn loss_grad(&mut self, x0: Tensor<B, 4>) -> Result<(Vec<f64>, Tensor<B, 4>)> {
        let dims = x0.dims();
        let device = x0.device();
        let per = dims[2] * dims[3];
        let x = to_vec(x0)?;
        let std = self.a_norm.1;
        let results = self.map_elements(&x, per, |solver, obs, b, input, mask| {
            let w = 1.0 / (obs.scale[b] * obs.scale[b]);
            let (loss, grad, _) = solver.observation_loss_grad(input, &obs.nodes[b], &obs.values[b], w)?;
            let g: Vec<f32> = grad.iter().zip(mask).map(|(&g, &m)| if m { (g * std) as f32 } else { 0.0 }).collect();
            Ok((loss, g))
        })?;
        let mut losses = Vec::with_capacity(results.len());
        let mut grad = Vec::with_capacity(x.len());
        for (l, g) in results {
            losses.push(l);
            grad.extend(g);
        }
        Ok((losses, Tensor::from_data(TensorData::new(grad, dims), &device)))
    }

    fn noise_floor(&self) -> f64 {
        self.obs.noise_floor()
    }

    /// One solve and one adjoint solve per sensor (`J^T e_k`), per element.
    fn linearize(&mut self, x0: Tensor<B, 4>) -> Result<Linearization<B>> {
        let dims = x0.dims();
        ensure!(dims[1] == 1, "the solver guide linearises one-channel fields, got {} channels", dims[1]);
        let device = x0.device();
        let per = dims[2] * dims[3];
        let x = to_vec(x0)?;
        let k = self.obs.nodes.first().map_or(0, Vec::len);
        ensure!(
            self.obs.nodes.iter().all(|v| v.len() == k),
            "the solver guide's Jacobian needs the same sensor count in every case"
        );
        let std = self.a_norm.1;
        let results = self.map_elements(&x, per, |solver, obs, b, input, mask| {
            let u = solver.solve(input)?;
            let scale = obs.scale[b];
            let mut res = Vec::with_capacity(k);
            let mut rows = Vec::with_capacity(k * per);
            let mut w = vec![0.0; per];
            for (&node, &y) in obs.nodes[b].iter().zip(&obs.values[b]) {
                res.push(((u[node] - y) / scale) as f32);
                w[node] = 1.0;
                let row = solver.vjp(input, &u, &w)?;
                w[node] = 0.0;
                rows.extend(row.iter().zip(mask).map(|(&g, &m)| if m { (g * std / scale) as f32 } else { 0.0 }));
            }
            Ok((res, rows))
        })?;
        let (mut res, mut jac) = (Vec::with_capacity(dims[0] * k), Vec::with_capacity(dims[0] * k * per));
        for (r, j) in results {
            res.extend(r);
            jac.extend(j);
        }
        Ok(Linearization {
            residual: Tensor::from_data(TensorData::new(res, [dims[0], k]), &device),
            jacobian: Tensor::from_data(TensorData::new(jac, [dims[0], k, per]), &device),
        })
    }
}

/// Guidance on the `u` channel of the joint `(a, u)` model
/// (DiffusionPDE/FunDPS): the gradient reaches `a` only through the prior.
pub struct JointGuide {
    obs: ObservationBatch,
    /// `(mean, std)` of the joint model's `u` channel.
    u_norm: (f64, f64),
}

impl JointGuide {
    /// `u_norm` is the joint model's `(mean, std)` of channel 1.
    /// `u_norm` is the joint model's `(mean, std)` of its `u` channel; the
    /// residual unit is floored at that std.
    pub fn new(mut obs: ObservationBatch, u_norm: (f64, f64)) -> Self {
        obs.floor_scale(u_norm.1);
        Self { obs, u_norm }
    }
}

/// The shape and values of a joint `(a, u)` batch; other channel counts are
/// refused.
fn two_channels<B: Backend>(x0: Tensor<B, 4>) -> Result<([usize; 4], Vec<f32>)> {
    let dims = x0.dims();
    ensure!(dims[1] == 2, "the joint guide needs two channels (a, u), got {}", dims[1]);
    Ok((dims, to_vec(x0)?))
}

impl<B: Backend> Guide<B> for JointGuide {
    fn loss_grad(&mut self, x0: Tensor<B, 4>) -> Result<(Vec<f64>, Tensor<B, 4>)> {
        let device = x0.device();
        let (dims, x) = two_channels(x0)?;
        let per = dims[2] * dims[3];
        let (mean, std) = self.u_norm;
        let mut grad = vec![0.0f32; x.len()];
        let mut losses = Vec::with_capacity(dims[0]);
        for b in 0..dims[0] {
            let u = &x[(2 * b + 1) * per..(2 * b + 2) * per];
            let nodes = &self.obs.nodes[b];
            let (loss, g) = self.obs.residual_loss(b, nodes.iter().map(|&k| f64::from(u[k]) * std + mean));
            losses.push(loss);
            let gu = &mut grad[(2 * b + 1) * per..(2 * b + 2) * per];
            for (&k, gk) in nodes.iter().zip(g) {
                gu[k] += (gk * std) as f32;
            }
        }
        Ok((losses, Tensor::from_data(TensorData::new(grad, dims), &device)))
    }

    fn noise_floor(&self) -> f64 {
        self.obs.noise_floor()
    }

    /// The readings are the `u` channel at the sensors: the map is linear,
    /// each Jacobian row one value (`u_std / y_scale`) at its sensor.
    fn linearize(&mut self, x0: Tensor<B, 4>) -> Result<Linearization<B>> {
        let device = x0.device();
        let (dims, x) = two_channels(x0)?;
        let per = dims[2] * dims[3];
        let (mean, std) = self.u_norm;
        let k = self.obs.nodes.first().map_or(0, Vec::len);
        ensure!(
            self.obs.nodes.iter().all(|v| v.len() == k),
            "the joint guide's Jacobian needs the same sensor count in every case"
        );
        let mut res = Vec::with_capacity(dims[0] * k);
        let mut jac = vec![0.0f32; dims[0] * k * 2 * per];
        for b in 0..dims[0] {
            let u = &x[(2 * b + 1) * per..(2 * b + 2) * per];
            let scale = self.obs.scale[b];
            for (s, (&node, &y)) in self.obs.nodes[b].iter().zip(&self.obs.values[b]).enumerate() {
                res.push(((f64::from(u[node]) * std + mean - y) / scale) as f32);
                jac[(b * k + s) * 2 * per + per + node] = (std / scale) as f32;
            }
        }
        Ok(Linearization {
            residual: Tensor::from_data(TensorData::new(res, [dims[0], k]), &device),
            jacobian: Tensor::from_data(TensorData::new(jac, [dims[0], k, 2 * per]), &device),
        })
    }
}
