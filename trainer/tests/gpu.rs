//! The GPU against the CPU, one quantity at a time, from the same weights
//! (drawn on the CPU and moved, as `ddis train` does on a GPU): the forward pass and
//! the loss of the surrogate and the denoiser, their weight gradients, one
//! guidance gradient through the surrogate, and one Adam step from the same
//! gradient. Each is checked on burn-cuda with and without kernel fusion.
//!
//! Needs an NVIDIA GPU, so every test is ignored unless asked for (as
//! `scripts/gpu-check.sh` does):
//!
//! ```text
//! cargo test --release -p ddis-trainer --features cuda --test gpu -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The tolerance is one relative L2 difference, `||gpu - cpu|| / ||cpu||`,
//! for every quantity: [`GPU_TOL`] (TF32 matrix products keep 10 mantissa
//! bits, about 1e-3 per product), or `DDIS_GPU_TOL`. `DDIS_GPU` picks the
//! device (default 0). Each comparison prints one `gpu-compare` line.
#![cfg(feature = "cuda")]

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use ddis_trainer::model::denoiser::{DenoiserConfig, EdmConfig};
use ddis_trainer::model::fno::{FnoConfig, rel_l2_loss};
use ddis_trainer::observe::Observations;
use ddis_trainer::sample::Guide;
use ddis_trainer::sample::guide::{ObservationBatch, SurrogateGuide};
use ddis_trainer::train::backend::{Cpu, Cuda, CudaDevice, CudaUnfused, cuda_device};
use ddis_trainer::train::with_cpu_weights;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The relative L2 difference allowed between GPU and CPU results.
const GPU_TOL: f64 = 2e-3;
const N: usize = 32;
const BATCH: usize = 8;
const SEED: u64 = 7;

fn tol() -> f64 {
    std::env::var("DDIS_GPU_TOL").ok().and_then(|v| v.parse().ok()).unwrap_or(GPU_TOL)
}

fn device() -> CudaDevice {
    let index = std::env::var("DDIS_GPU").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    cuda_device(index).unwrap_or_else(|e| panic!("{e}"))
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data")
}

/// `||got - want|| / ||want||`, and whether it is within the tolerance;
/// prints the `gpu-compare` line.
fn compare(what: &str, backend: &str, got: &[f32], want: &[f32]) -> bool {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        diff += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    let rel = diff.sqrt() / norm.sqrt().max(f64::MIN_POSITIVE);
    let ok = rel.is_finite() && rel <= tol() && got.iter().all(|v| v.is_finite());
    println!(
        "gpu-compare {:<4} {backend:<12} {what:<44} rel. L2 difference {rel:.2e} (tolerance {:.0e})",
        if ok { "PASS" } else { "FAIL" },
        tol()
    );
    ok
}

fn normal(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.sample::<f32, _>(StandardNormal)).collect()
}

/// A two-phase coefficient field per sample (3 or 12, as Darcy's), blocky
/// enough that the surrogate sees structure at every scale.
fn two_phase(rng: &mut ChaCha8Rng, batch: usize) -> Vec<f32> {
    let cells: Vec<bool> = (0..batch * 16).map(|_| rng.random()).collect();
    let mut a = Vec::with_capacity(batch * N * N);
    for b in 0..batch {
        for i in 0..N {
            for j in 0..N {
                a.push(if cells[b * 16 + (i * 4 / N) * 4 + j * 4 / N] { 12.0 } else { 3.0 });
            }
        }
    }
    a
}

fn tensor<B: Backend, const D: usize>(v: &[f32], shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Every float parameter of a module, flattened in visiting order.
fn params<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.extend(values(param.val()));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Every weight gradient of a module, flattened in visiting order.
fn grads<B: AutodiffBackend, M: Module<B>>(m: &M, grads: &GradientsParams) -> Vec<f32> {
    struct Collect<'a>(&'a GradientsParams, Vec<f32>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = self.0.get::<B::InnerBackend, D>(param.id).expect("every weight has a gradient");
            self.1.extend(values(g));
        }
    }
    let mut c = Collect(grads, Vec::new());
    m.visit(&mut c);
    c.1
}

/// The CPU's gradients, by parameter id, on the GPU module's backend.
fn moved_grads<B: AutodiffBackend, M: Module<B>>(m: &M, cpu: &GradientsParams, device: &B::Device) -> GradientsParams {
    struct Move<'a, D: Clone> {
        from: &'a GradientsParams,
        to: GradientsParams,
        device: D,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B>
        for Move<'_, <B::InnerBackend as burn::tensor::backend::BackendTypes>::Device>
    {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = self.from.get::<Cpu, D>(param.id).expect("the CPU module has the same ids");
            self.to.register::<B::InnerBackend, D>(param.id, Tensor::from_data(g.into_data(), &self.device));
        }
    }
    let mut v = Move { from: cpu, to: GradientsParams::new(), device: device.clone() };
    m.visit(&mut v);
    v.to
}

fn surrogate_forward_and_loss<B: Backend>(name: &str, device: &B::Device) -> bool {
    let cpu = Default::default();
    let cfg = FnoConfig::device();
    Cpu::seed(&cpu, SEED);
    let on_cpu = cfg.init::<Cpu>(&cpu);
    let on_gpu = with_cpu_weights(cfg.init::<B>(device), on_cpu.clone(), device).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let a = two_phase(&mut rng, BATCH);
    let u = normal(&mut rng, BATCH * N * N);
    let shape = [BATCH, N, N];
    let pc = on_cpu.forward(tensor::<Cpu, 3>(&a, shape, &cpu));
    let pg = on_gpu.forward(tensor::<B, 3>(&a, shape, device));
    let mut ok =
        compare("surrogate forward (device preset, 8 x 32 x 32)", name, &values(pg.clone()), &values(pc.clone()));
    let lc = rel_l2_loss(pc, tensor::<Cpu, 3>(&u, shape, &cpu));
    let lg = rel_l2_loss(pg, tensor::<B, 3>(&u, shape, device));
    ok &= compare("surrogate loss (relative L2)", name, &values(lg), &values(lc));
    ok
}

fn denoiser_forward_and_loss<B: Backend>(name: &str, device: &B::Device) -> bool {
    let cpu = Default::default();
    let cfg = EdmConfig::new(DenoiserConfig::device(1).into());
    Cpu::seed(&cpu, SEED);
    let on_cpu = cfg.init::<Cpu>(&cpu).unwrap();
    let on_gpu = with_cpu_weights(cfg.init::<B>(device).unwrap(), on_cpu.clone(), device).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let x = normal(&mut rng, BATCH * N * N);
    let sigma: Vec<f32> = (0..BATCH).map(|k| 0.02 * 4f32.powi(k as i32 % 5)).collect();
    let shape = [BATCH, 1, N, N];
    let dc = on_cpu.denoise(tensor::<Cpu, 4>(&x, shape, &cpu), tensor::<Cpu, 1>(&sigma, [BATCH], &cpu));
    let dg = on_gpu.denoise(tensor::<B, 4>(&x, shape, device), tensor::<B, 1>(&sigma, [BATCH], device));
    let mut ok = compare("denoiser D(x; sigma) (device preset)", name, &values(dg), &values(dc));
    let noise = cfg.smooth_noise(N).unwrap();
    let mut r1 = ChaCha8Rng::seed_from_u64(SEED + 1);
    let mut r2 = r1.clone();
    let (sc, nc) = on_cpu.draw_training_noise(&noise, BATCH, &mut r1, &cpu);
    let (sg, ng) = on_gpu.draw_training_noise(&noise, BATCH, &mut r2, device);
    let lc = on_cpu.loss(tensor::<Cpu, 4>(&x, shape, &cpu), sc, nc);
    let lg = on_gpu.loss(tensor::<B, 4>(&x, shape, device), sg, ng);
    ok &= compare("denoiser EDM loss", name, &values(lg), &values(lc));
    ok
}

fn weight_gradients_and_adam_step<B: Backend>(name: &str, device: &B::Device) -> bool {
    type CpuAd = Autodiff<Cpu>;
    let cpu = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let a = two_phase(&mut rng, BATCH);
    let u = normal(&mut rng, BATCH * N * N);
    let shape = [BATCH, N, N];

    let cfg = FnoConfig::device();
    Cpu::seed(&cpu, SEED);
    let base = cfg.init::<Cpu>(&cpu);
    let mc = with_cpu_weights(cfg.init::<CpuAd>(&cpu), base.clone(), &cpu).unwrap();
    let mg = with_cpu_weights(cfg.init::<Autodiff<B>>(device), base, device).unwrap();
    let lc = rel_l2_loss(mc.forward(tensor(&a, shape, &cpu)), tensor(&u, shape, &cpu));
    let lg = rel_l2_loss(mg.forward(tensor(&a, shape, device)), tensor(&u, shape, device));
    let gc = GradientsParams::from_grads(lc.backward(), &mc);
    let gg = GradientsParams::from_grads(lg.backward(), &mg);
    let mut ok = compare("surrogate weight gradient", name, &grads(&mg, &gg), &grads(&mc, &gc));

    // One Adam step from the CPU's gradient on both sides: the optimiser
    // alone (a first step moves each weight by about lr * sign(g), so GPU
    // gradients that differ in the sign of near-zero entries would hide it).
    let lr = 1e-3;
    let (before_c, before_g) = (params(&mc), params(&mg));
    let moved = moved_grads(&mg, &gc, device);
    let after_c = params(&AdamConfig::new().init::<CpuAd, _>().step(lr, mc, gc));
    let after_g = params(&AdamConfig::new().init::<Autodiff<B>, _>().step(lr, mg, moved));
    let step = |after: &[f32], before: &[f32]| after.iter().zip(before).map(|(x, y)| x - y).collect::<Vec<_>>();
    ok &=
        compare("one Adam step (lr 1e-3, same gradient)", name, &step(&after_g, &before_g), &step(&after_c, &before_c));

    let cfg = EdmConfig::new(DenoiserConfig::device(1).into());
    Cpu::seed(&cpu, SEED);
    let base = cfg.init::<Cpu>(&cpu).unwrap();
    let ec = with_cpu_weights(cfg.init::<CpuAd>(&cpu).unwrap(), base.clone(), &cpu).unwrap();
    let eg = with_cpu_weights(cfg.init::<Autodiff<B>>(device).unwrap(), base, device).unwrap();
    let x = normal(&mut rng, BATCH * N * N);
    let noise = cfg.smooth_noise(N).unwrap();
    let mut r1 = ChaCha8Rng::seed_from_u64(SEED + 2);
    let mut r2 = r1.clone();
    let (sc, nc) = ec.draw_training_noise(&noise, BATCH, &mut r1, &cpu);
    let (sg, ng) = eg.draw_training_noise(&noise, BATCH, &mut r2, device);
    let lc = ec.loss(tensor(&x, [BATCH, 1, N, N], &cpu), sc, nc);
    let lg = eg.loss(tensor(&x, [BATCH, 1, N, N], device), sg, ng);
    let gc = GradientsParams::from_grads(lc.backward(), &ec);
    let gg = GradientsParams::from_grads(lg.backward(), &eg);
    ok &= compare("denoiser weight gradient (EDM loss)", name, &grads(&eg, &gg), &grads(&ec, &gc));
    ok
}

fn guidance_gradient<B: Backend>(name: &str, device: &B::Device) -> bool {
    let cpu = Default::default();
    let cfg = FnoConfig::device();
    Cpu::seed(&cpu, SEED);
    let base = cfg.init::<Cpu>(&cpu);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    // 31 interior sensors reading the surrogate's own answer, perturbed.
    let a = two_phase(&mut rng, 1);
    let u = values(base.forward(tensor::<Cpu, 3>(&a, [1, N, N], &cpu)));
    let mut nodes: Vec<usize> = Vec::new();
    while nodes.len() < 31 {
        let (i, j) = (rng.random_range(1..N - 1), rng.random_range(1..N - 1));
        if !nodes.contains(&(i * N + j)) {
            nodes.push(i * N + j);
        }
    }
    let readings: Vec<f64> = nodes.iter().map(|&k| u[k] as f64 * 1.1 + 0.01).collect();
    let obs = ObservationBatch::new(&[Observations::new(N, nodes, readings, 0.0).unwrap()], 4).unwrap();
    let x0 = normal(&mut rng, 4 * N * N);
    let a_norm = (7.5, 4.5);
    let shape = [4, 1, N, N];

    let fc = with_cpu_weights(cfg.init::<Autodiff<Cpu>>(&cpu), base.clone(), &cpu).unwrap();
    let fg = with_cpu_weights(cfg.init::<Autodiff<B>>(device), base, device).unwrap();
    let mut gc = SurrogateGuide::<Autodiff<Cpu>>::new(fc, obs.clone(), a_norm, &cpu).unwrap();
    let mut gg = SurrogateGuide::<Autodiff<B>>::new(fg, obs, a_norm, device).unwrap();
    let (loss_c, grad_c) = gc.loss_grad(tensor::<Cpu, 4>(&x0, shape, &cpu)).unwrap();
    let (loss_g, grad_g) = gg.loss_grad(tensor::<B, 4>(&x0, shape, device)).unwrap();
    let as_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
    let mut ok = compare("guidance loss (surrogate, 31 readings)", name, &as_f32(loss_g), &as_f32(loss_c));
    ok &= compare("guidance gradient d loss / d x0", name, &values(grad_g), &values(grad_c));
    ok
}

/// Runs `$f` on burn-cuda with and without fusion; fails if either fails.
macro_rules! on_both_gpu_backends {
    ($f:ident) => {{
        let device = device();
        let fused = $f::<Cuda>("cuda", &device);
        let unfused = $f::<CudaUnfused>("cuda-unfused", &device);
        assert!(fused && unfused, "a GPU result is outside the tolerance {:.0e} (see the FAIL lines)", tol());
    }};
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh"]
fn the_forward_passes_and_losses_match_the_cpu() {
    on_both_gpu_backends!(surrogate_forward_and_loss);
    on_both_gpu_backends!(denoiser_forward_and_loss);
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh"]
fn the_weight_gradients_and_one_adam_step_match_the_cpu() {
    on_both_gpu_backends!(weight_gradients_and_adam_step);
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh"]
fn one_guidance_gradient_matches_the_cpu() {
    on_both_gpu_backends!(guidance_gradient);
}
