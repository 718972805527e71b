//! The U-Net's sizes, shapes, zero start, record round trip and a tiny
//! training run.

use super::*;
use crate::model::denoiser::{DiffusionModel, EdmConfig, NetworkConfig};
use crate::model::noise::{SmoothNoise, host_batch_to_tensor};
use crate::train::step_rng;
use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::Distribution;

type B = NdArray<f32>;
type AB = Autodiff<B>;

/// f32 round-off of a sum of `terms` products of O(1) values.
fn f32_tol(terms: usize) -> f32 {
    4.0 * f32::EPSILON * terms as f32
}

fn to_vec<const D: usize, BB: Backend>(t: Tensor<BB, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn tiny(channels: usize) -> UnetConfig {
    UnetConfig::new(channels, 4, vec![1, 2]).with_groups(2).with_embed_frequencies(4).with_embed_width(8)
}

#[test]
fn presets_and_tiny_match_closed_form_parameter_count() {
    let device = Default::default();
    for (name, cfg) in [("device", UnetConfig::device(2)), ("host", UnetConfig::host(2)), ("tiny", tiny(1))] {
        cfg.validate().unwrap();
        let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(cfg.init::<B>(&device).param_count(), cfg.param_count(), "{name}");
    }
    // The joint device preset, as docs/results.md states it.
    assert_eq!(UnetConfig::device(2).param_count(), 168_722);
    assert!(UnetConfig::device(2).with_groups(3).validate().is_err(), "3 groups do not divide 16");
    assert!(UnetConfig::new(1, 4, vec![]).validate().is_err());
}

#[test]
fn output_shape_at_32_and_64_and_clear_error_otherwise() {
    let device = Default::default();
    let cfg = UnetConfig { mults: vec![1, 2, 2], ..tiny(2) };
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let net = cfg.init::<B>(&device);
    for n in [32, 64] {
        cfg.check_resolution(n).unwrap();
        let x = Tensor::<B, 4>::random([2, 2, n, n], Distribution::Normal(0.0, 1.0), &device);
        let y = net.forward(x, Tensor::from_floats([-1.0, 0.5], &device));
        assert_eq!(y.dims(), [2, 2, n, n]);
        assert!(to_vec(y).iter().all(|v| v.is_finite()));
    }
    let err = cfg.check_resolution(30).unwrap_err().to_string();
    assert!(err.contains("multiple of 4"), "{err}");
    assert!(matches!(cfg.check_resolution(6), Err(Error::GridTooSmall { n: 6, min: 8 })));
}

#[test]
fn matmul_convolution_matches_burns_conv2d() {
    let device = Default::default();
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(&device, 5);
    let x = Tensor::<B, 4>::random([2, 3, 8, 6], Distribution::Normal(0.0, 1.0), &device);
    for (k, c) in [(3, conv3::<B>(3, 5, &device)), (1, Conv2dConfig::new([3, 5], [1, 1]).init(&device))] {
        let (fast, reference) = (to_vec(conv(&c, x.clone())), to_vec(c.forward(x.clone())));
        assert_eq!(fast.len(), reference.len());
        let tol = f32_tol(3 * k * k);
        for (i, (f, r)) in fast.iter().zip(&reference).enumerate() {
            assert!((f - r).abs() <= tol * (1.0 + r.abs()), "{k}x{k} conv, value {i}: got {f}, burn {r}");
        }
    }
    let pooled = to_vec(pool2(Tensor::<B, 4>::from_floats([[[[1.0, 2.0], [3.0, 6.0]]]], &device)));
    assert_eq!(pooled, vec![3.0]);
    let up = to_vec(upsample2(Tensor::<B, 4>::from_floats([[[[1.0, 2.0]]]], &device)));
    assert_eq!(up, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn gradient_reaches_the_input_and_is_finite() {
    // DPS differentiates the denoiser with respect to its input.
    let device = Default::default();
    let cfg = EdmConfig::new(tiny(2).into());
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    AB::seed(&device, 3);
    let mut model = cfg.init_network::<AB, Unet<AB>>(&device).unwrap();
    // Give the zero-initialised output conv weights so that N depends on x.
    model.denoiser.conv_out = conv3(4, 2, &device);
    let x = Tensor::<AB, 4>::random([2, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let d = model.denoise_at(x.clone(), 0.8);
    let grads = d.square().sum().backward();
    let g = to_vec(x.grad(&grads).expect("a gradient reaches x"));
    assert!(g.iter().all(|v| v.is_finite()), "finite gradient");
    assert!(g.iter().any(|v| v.abs() > 1e-6), "non-zero gradient");
}

#[test]
fn record_round_trip_gives_identical_outputs() {
    let device = Default::default();
    let cfg = EdmConfig::new(tiny(2).into());
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(&device, 9);
    let mut model = cfg.init_network::<B, Unet<B>>(&device).unwrap();
    model.denoiser.conv_out = conv3(4, 2, &device);
    let x = Tensor::<B, 4>::random([2, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let bits = |m: &crate::model::denoiser::EdmModel<B, Unet<B>>| -> Vec<u32> {
        to_vec(m.denoise_at(x.clone(), 0.5)).iter().map(|v| v.to_bits()).collect()
    };
    // Before any clone: burn initialises parameters lazily, and a clone
    // taken before the first use would draw its own weights.
    let want = bits(&model);
    let dir = tempfile::tempdir().unwrap();
    let rec = BinFileRecorder::<FullPrecisionSettings>::new();
    rec.record(model.clone().into_record(), dir.path().join("model")).unwrap();
    // A fresh init of the same config (other weights), then the record.
    let loaded = match cfg.init_any::<B>(&device).unwrap() {
        DiffusionModel::Unet(m) => m.load_record(rec.load(dir.path().join("model"), &device).unwrap()),
        DiffusionModel::Fno(_) => panic!("a unet config builds a unet"),
    };
    assert_eq!(want, bits(&loaded));
    // An fno model cannot be built from a unet config and vice versa.
    assert!(cfg.init::<B>(&device).is_err());
}

#[test]
fn config_json_is_tagged_for_unet_and_unchanged_for_fno() {
    let unet = EdmConfig::new(UnetConfig::device(2).into());
    let json = serde_json::to_value(&unet).unwrap();
    assert_eq!(json["denoiser"]["arch"], "unet");
    assert_eq!(serde_json::from_value::<EdmConfig>(json).unwrap(), unet);
    let fno = EdmConfig::new(crate::model::denoiser::DenoiserConfig::device(2).into());
    let json = serde_json::to_value(&fno).unwrap();
    assert!(json["denoiser"].get("arch").is_none(), "fno configs keep their old form: {json}");
    assert_eq!(serde_json::from_value::<EdmConfig>(json.clone()).unwrap(), fno);
    let mut bad = json;
    bad["denoiser"]["arch"] = "transformer".into();
    let err = serde_json::from_value::<EdmConfig>(bad).unwrap_err().to_string();
    assert!(err.contains("unknown denoiser arch"), "{err}");
    assert!(matches!(unet.denoiser, NetworkConfig::Unet(_)));
}

#[test]
fn edm_loss_falls_on_two_phase_fields() {
    let device = Default::default();
    let (n, batch, steps, seed) = (16, 8, 40, 7);
    let data_noise = SmoothNoise::new(n, 0.15).unwrap();
    let cfg = EdmConfig::new(UnetConfig::new(1, 8, vec![1, 2]).with_embed_width(16).into());
    let _guard = crate::model::SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    AB::seed(&device, 11);
    let mut model = cfg.init_network::<AB, Unet<AB>>(&device).unwrap();
    let train_noise = cfg.smooth_noise(n).unwrap();
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let mut rng = step_rng(seed, step);
        let x: Vec<f32> =
            data_noise.sample_batch(&mut rng, batch).into_iter().map(|v| if v >= 0.0 { 1.0 } else { -1.0 }).collect();
        let x = host_batch_to_tensor::<AB>(x, [batch, 1, n], &device).unwrap();
        let (sigma, noise) = model.draw_training_noise(&train_noise, batch, &mut rng, &device);
        let loss = model.loss(x, sigma, noise);
        losses.push(f64::from(loss.clone().into_scalar()));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let first = losses[..8].iter().sum::<f64>() / 8.0;
    let last = losses[steps - 8..].iter().sum::<f64>() / 8.0;
    // Seed 11: ratio 0.85 (0.89 at lr 3e-3). Slower than the FNO-type
    // denoiser's test (0.45-0.55): the output conv starts at zero, so
    // the first steps only grow it.
    assert!(
        last < 0.9 * first,
        "EDM loss should fall clearly: first-8 mean {first}, last-8 mean {last}, all {losses:?}"
    );
}
