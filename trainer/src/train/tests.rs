//! `--ema`, `--grad-clip` and `--augment` in the training loop, on a toy
//! task small enough to follow step by step, and the per-step streams.

use super::*;
use crate::data::DatasetMeta;
use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use std::cell::RefCell;

type Inner = NdArray<f32>;
type Ad = Autodiff<Inner>;

/// f32 round-off of a few hundred multiply-adds of values near 1.
const F32_REL: f64 = 1e-5;

#[derive(Module, Debug)]
struct Toy<B: Backend> {
    w: Param<Tensor<B, 1>>,
    v: Param<Tensor<B, 2>>,
}

impl<B: Backend> Toy<B> {
    fn new(w: [f32; 3], v: [[f32; 2]; 2], device: &B::Device) -> Self {
        Self {
            w: Param::from_tensor(Tensor::from_floats(w, device)),
            v: Param::from_tensor(Tensor::from_floats(v, device)),
        }
    }

    fn values(&self) -> Vec<f32> {
        let w: Vec<f32> = self.w.val().into_data().to_vec().unwrap();
        let v: Vec<f32> = self.v.val().into_data().to_vec().unwrap();
        [w, v].concat()
    }
}

/// `mean((params - target)^2)`, the target set by the samples' indices
/// and symmetries, so the weights keep moving and an average differs.
/// `validate` records the weights it was shown.
struct ToyTask {
    seen: RefCell<Vec<Vec<f32>>>,
}

impl Task<Ad> for ToyTask {
    type Model = Toy<Ad>;

    fn loss(&self, model: &Toy<Ad>, batch: &Batch, _rng: &mut ChaCha8Rng) -> Tensor<Ad, 1> {
        let k: usize =
            batch.indices.iter().sum::<usize>() + batch.symmetries.iter().map(|s| 3 * usize::from(s.0)).sum::<usize>();
        let t = (k % 7) as f32 / 7.0;
        let device = Default::default();
        let dw = model.w.val() - Tensor::from_floats([t, 1.0 - t, 0.5], &device);
        let dv = model.v.val() - Tensor::from_floats([[t, t], [0.0, 1.0]], &device);
        (dw.powf_scalar(2.0).sum() + dv.powf_scalar(2.0).sum()).div_scalar(7.0)
    }

    fn validate(&self, model: &Toy<Inner>) -> f64 {
        self.seen.borrow_mut().push(model.values());
        0.0
    }

    fn val_name(&self) -> &'static str {
        "val_toy"
    }
}

fn run_dir(root: &Path, train: &TrainConfig) -> RunDir {
    let meta = DatasetMeta {
        pde: crate::pde::PdeConfig::default(),
        res: 2,
        count: 20,
        seed: 0,
        shape: [20, 2, 2],
        input: "a".into(),
        ddis_version: "test".into(),
    };
    let split = Split::new(20, 0, 1.0).unwrap();
    let mut cfg = RunConfig {
        kind: "toy".to_string(),
        data: "none".into(),
        data_meta: meta,
        split_seed: 0,
        paired_fraction: 1.0,
        model: (),
        train: train.clone(),
    };
    RunDir::create(root, &mut cfg, &split, true).unwrap()
}

/// Trains the toy from fixed weights; returns the final weights and
/// every set of weights validation saw.
fn toy_run(root: &Path, cfg: &TrainConfig, session: &Session) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let device = Default::default();
    let task = ToyTask { seen: RefCell::new(Vec::new()) };
    let model = Toy::<Ad>::new([0.2, -0.3, 0.9], [[0.1, 0.0], [-1.0, 0.4]], &device);
    let pool: Vec<usize> = (0..17).collect();
    let trained = train(&task, model, cfg, &run_dir(root, cfg), &pool, session, &device)?;
    Ok((trained.model.values(), task.seen.into_inner()))
}

fn config() -> TrainConfig {
    TrainConfig {
        steps: 12,
        batch: 3,
        lr: 0.05,
        warmup: 2,
        checkpoint_every: 1,
        log_every: 0,
        ..TrainConfig::default()
    }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= F32_REL * w.abs().max(1.0), "{what}, parameter {k}: got {g}, expected {w}");
    }
}

#[test]
fn ema_is_validated_returned_and_equal_to_the_average_of_the_iterates() {
    let tmp = tempfile::tempdir().unwrap();
    // Without --ema, validation after every step sees the iterates.
    let plain = config();
    let (raw_final, iterates) = toy_run(&tmp.path().join("plain"), &plain, &Session::default()).unwrap();
    assert_eq!(iterates.len(), 12);
    assert_eq!(iterates.last().unwrap(), &raw_final, "without --ema the last iterate is returned");

    let ema = TrainConfig { ema: 0.9, ..config() };
    let (avg_final, validated) = toy_run(&tmp.path().join("ema"), &ema, &Session::default()).unwrap();
    // The average by hand: from the initial weights, decay ramped up.
    let mut avg: Vec<f64> = vec![0.2, -0.3, 0.9, 0.1, 0.0, -1.0, 0.4];
    for (t, (w, seen)) in iterates.iter().zip(&validated).enumerate() {
        let d = ema.ema_decay(t + 1);
        for (a, &x) in avg.iter_mut().zip(w) {
            *a = d * *a + (1.0 - d) * f64::from(x);
        }
        assert_close(seen, &avg, &format!("weights validated after step {}", t + 1));
    }
    assert_eq!(validated.last().unwrap(), &avg_final, "the validated average is the returned model");
    assert_close(&avg_final, &avg, "returned model");
    let moved = avg_final.iter().zip(&raw_final).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the average should differ from the last iterate, by {moved}");
    // The ramp: min(decay, (1 + t) / (10 + t)).
    assert_eq!((ema.ema_decay(1), ema.ema_decay(80), ema.ema_decay(10_000)), (2.0 / 11.0, 81.0 / 90.0, 0.9));
}

#[test]
fn killed_and_resumed_runs_with_every_option_match_uninterrupted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { ema: 0.95, grad_clip: 0.05, augment: Augment::D8, checkpoint_every: 5, ..config() };
    let (whole, _) = toy_run(&tmp.path().join("whole"), &cfg, &Session::default()).unwrap();
    let killed = tmp.path().join("killed");
    let halt = Session { halt_after: Some(7), ..Session::default() };
    assert!(toy_run(&killed, &cfg, &halt).is_err(), "halted runs report failure");
    let (resumed, _) = toy_run(&killed, &cfg, &Session { resume: true, ..Session::default() }).unwrap();
    assert_eq!(
        whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        resumed.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "resumed from step 5 after a kill at 7"
    );
    assert!(killed.join("checkpoint").join("ema.bin").exists(), "the average is checkpointed");
    // Each option changes the run (so each one is exercised above).
    for other in [
        TrainConfig { ema: 0.0, ..cfg.clone() },
        TrainConfig { grad_clip: 0.0, ..cfg.clone() },
        TrainConfig { augment: Augment::None, ..cfg.clone() },
    ] {
        let dir = tmp.path().join(format!("other{}{}{:?}", other.ema, other.grad_clip, other.augment));
        assert_ne!(toy_run(&dir, &other, &Session::default()).unwrap().0, whole, "{other:?}");
    }
}

#[test]
fn gradients_are_clipped_to_a_global_norm_keeping_their_direction() {
    let device = Default::default();
    let model = Toy::<Ad>::new([1.0, 2.0, 3.0], [[4.0, 5.0], [6.0, 7.0]], &device);
    // d/dp of sum(p^2 / 2) is p: the gradient is the weights, norm sqrt(140).
    let loss =
        model.w.val().powf_scalar(2.0).sum().div_scalar(2.0) + model.v.val().powf_scalar(2.0).sum().div_scalar(2.0);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let read = |g: &GradientsParams| -> Vec<f64> {
        let w: Vec<f32> = g.get::<Inner, 1>(model.w.id).unwrap().into_data().to_vec().unwrap();
        let v: Vec<f32> = g.get::<Inner, 2>(model.v.id).unwrap().into_data().to_vec().unwrap();
        w.into_iter().chain(v).map(f64::from).collect()
    };
    let full = read(&grads);
    let norm = 140f64.sqrt();
    // Below the limit: untouched, bit for bit.
    let mut g = GradientsParams::from_grads(
        (model.w.val().powf_scalar(2.0).sum().div_scalar(2.0) + model.v.val().powf_scalar(2.0).sum().div_scalar(2.0))
            .backward(),
        &model,
    );
    let measured = clip_global_norm(&model, &mut g, 20.0);
    assert!((measured - norm).abs() <= F32_REL * norm, "norm {measured}, expected {norm}");
    assert_eq!(read(&g), full);
    // Above it: one factor for every parameter, so the direction stays.
    let mut g = grads;
    clip_global_norm(&model, &mut g, 2.0);
    let want: Vec<f64> = full.iter().map(|x| x * 2.0 / norm).collect();
    let got = read(&g);
    assert_close(&got.iter().map(|&x| x as f32).collect::<Vec<_>>(), &want, "clipped gradient");
    let clipped_norm = got.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((clipped_norm - 2.0).abs() <= F32_REL * 2.0, "clipped norm {clipped_norm}");
}

#[test]
fn step_streams_are_reproducible_and_distinct() {
    let pool: Vec<usize> = (100..200).collect();
    let a = draw_batch(&pool, 16, &mut step_rng(5, 3));
    assert_eq!(a, draw_batch(&pool, 16, &mut step_rng(5, 3)));
    assert_ne!(a, draw_batch(&pool, 16, &mut step_rng(5, 4)));
    assert!(a.iter().all(|i| pool.contains(i)));
}
