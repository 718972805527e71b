//! Parity of the device runtime (`ddis-runtime`, reading an artifact
//! written by `ddis_trainer::export`) with the burn models: the surrogate
//! and the prior's denoiser at every schedule level, layer by layer and end
//! to end, for f32 artifacts (round-off only) and int8 artifacts (against
//! the f32 artifact, a quantisation budget). Runs on tiny random models
//! always, and on the trained device models in `runs/` when they exist
//! (skipped otherwise: CI has no runs).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use ddis_runtime::Artifact;
use ddis_trainer::export::{Quant, build_artifact, inspect, runtime_posterior};
use ddis_trainer::model::denoiser::{ChannelNorm, DenoiserConfig, EdmConfig, EdmModel};
use ddis_trainer::model::fno::{Fno, FnoConfig, Normalization};
use ddis_trainer::observe::Observations;
use ddis_trainer::sample::DapsConfig;
use ddis_trainer::train::backend::Cpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Cpu;

/// f32 runtime against the f32 burn model, relative to the largest
/// reference value of each stage: both sum the same terms in another
/// order.
const PARITY_TOL: f64 = 1e-4;
/// int8 runtime against the f32 runtime, end to end, as a relative L2
/// error (`||int8 - f32|| / ||f32||`): per-row int8 steps (1/254 of each
/// row's range) through every layer. Observed on the trained device models:
/// up to ~1e-2 for the surrogate and ~2.5e-2 for the denoiser.
const INT8_L2_TOL: f64 = 5e-2;

/// burn-ndarray's initialisers share one process-wide RNG that `seed`
/// resets; tests that seed and build hold this lock.
static SEEDED_INIT: Mutex<()> = Mutex::new(());

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest `|got - want|` over the largest `|want|`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs())).max(1e-30);
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - f64::from(w)).abs())) / scale
}

/// `||got - want|| / ||want||`.
fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2)).sum();
    let den: f64 = want.iter().map(|&w| f64::from(w).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Max-norm check (f32 parity): returns the error.
fn check(what: &str, got: &[f32], want: &[f32], tol: f64) -> f64 {
    let err = rel_err(got, want);
    eprintln!("{what}: max rel error {err:.2e}, rel L2 {:.2e}", rel_l2(got, want));
    assert!(err <= tol, "{what}: max relative error {err:e} above {tol:e}");
    err
}

/// Relative-L2 check (int8 against f32): returns the error.
fn check_l2(what: &str, got: &[f32], want: &[f32], tol: f64) -> f64 {
    let err = rel_l2(got, want);
    eprintln!("{what}: rel L2 {err:.2e}, max rel error {:.2e}", rel_err(got, want));
    assert!(err <= tol, "{what}: relative L2 error {err:e} above {tol:e}");
    err
}

/// The burn surrogate's hidden states after the lift and each layer (its
/// reference path's trace), and its normalised output (the fast path).
fn fno_stages(model: &Fno<B>, a_norm: &[f32], n: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
    let a = Tensor::<B, 3>::from_data(TensorData::new(a_norm.to_vec(), [1, n, n]), &Default::default());
    let mut stages = Vec::new();
    model.trace_normalized(a.clone(), |_, h| stages.push(to_vec(h.clone())));
    (stages, to_vec(model.forward_normalized(a)))
}

/// The burn denoiser's hidden states inside `EdmModel::denoise` (the
/// network's reference trace on the input scaled by `c_in`), and
/// `D(x; sigma)`.
fn denoiser_stages(model: &EdmModel<B>, x: &[f32], n: usize, sigma: f64) -> (Vec<Vec<f32>>, Vec<f32>) {
    let device = Default::default();
    let sd = model.config.sigma_data;
    let xt = Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), [1, 1, n, n]), &device);
    let s = Tensor::<B, 1>::full([1], sigma, &device);
    let c_in = s.clone().square().add_scalar(sd * sd).sqrt().recip().reshape([1, 1, 1, 1]);
    let c_noise = s.log().div_scalar(4.0);
    let mut stages = Vec::new();
    model.denoiser.trace(xt.clone() * c_in, c_noise, |_, h| stages.push(to_vec(h.clone())));
    (stages, to_vec(model.denoise_at(xt, sigma)))
}

/// A two-phase field like the Darcy data: smooth noise thresholded at 0,
/// `a = 12` above, `3` below.
fn two_phase(model: &EdmModel<B>, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let noise = model.config.smooth_noise(n).unwrap();
    let mut f = vec![0.0f32; n * n];
    noise.sample_into(rng, &mut f).unwrap();
    f.iter().map(|&v| if v >= 0.0 { 12.0 } else { 3.0 }).collect()
}

/// Worst errors of one model pair, for the report: f32 parity as max
/// relative error per stage, int8 as relative L2.
#[derive(Debug, Default)]
struct Report {
    fno_layers: f64,
    fno_out: f64,
    den_layers: f64,
    den_out: f64,
    fno_int8_l2: f64,
    den_int8_l2: f64,
}

/// Compares both networks of `f32_art` with burn on `cases` inputs, and
/// the int8 artifact with the f32 one.
fn compare(
    what: &str,
    prior: &EdmModel<B>,
    fno: &Fno<B>,
    n: usize,
    f32_art: &[u8],
    int8_art: &[u8],
    cases: usize,
) -> Report {
    let art = Artifact::parse(f32_art).unwrap();
    let art8 = Artifact::parse(int8_art).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut rep = Report::default();
    let rfno = art.surrogate().unwrap();
    let rfno8 = art8.surrogate().unwrap();
    let nz = &fno.normalization;
    let mut ws = vec![0.0f32; rfno.forward_workspace_len()];
    for case in 0..cases {
        let a = two_phase(prior, n, &mut rng);
        let a_norm: Vec<f32> = a.iter().map(|&v| ((f64::from(v) - nz.a_mean) / nz.a_std) as f32).collect();
        let (stages, want) = fno_stages(fno, &a_norm, n);
        let mut got = vec![0.0f32; n * n];
        let mut got_stages = Vec::new();
        rfno.trace_normalized(&a_norm, &mut got, &mut ws, |_, h| got_stages.push(h.to_vec())).unwrap();
        for (l, (g, w)) in got_stages.iter().zip(&stages).enumerate() {
            let e = check(&format!("{what} surrogate case {case} stage {l}"), g, w, PARITY_TOL);
            rep.fno_layers = rep.fno_layers.max(e);
        }
        rep.fno_out = rep.fno_out.max(check(&format!("{what} surrogate case {case} output"), &got, &want, PARITY_TOL));
        // Physical in, physical out.
        let device = Default::default();
        let phys = to_vec(fno.forward(Tensor::<B, 3>::from_data(TensorData::new(a.clone(), [1, n, n]), &device)));
        let mut got_phys = vec![0.0f32; n * n];
        rfno.forward(&a, &mut got_phys, &mut ws).unwrap();
        check(&format!("{what} surrogate case {case} physical"), &got_phys, &phys, PARITY_TOL);
        let mut got8 = vec![0.0f32; n * n];
        rfno8.forward_normalized(&a_norm, &mut got8, &mut ws).unwrap();
        let e = check_l2(&format!("{what} surrogate int8 case {case}"), &got8, &got, INT8_L2_TOL);
        rep.fno_int8_l2 = rep.fno_int8_l2.max(e);
    }

    let (rprior, rprior8, sched) = (art.prior().unwrap(), art8.prior().unwrap(), art.schedule().unwrap());
    let (pm, ps) = prior.config.normalization.channel(0);
    let noise = prior.config.smooth_noise(n).unwrap();
    let mut ws = vec![0.0f32; rprior.workspace_len()];
    for case in 0..cases {
        let a = two_phase(prior, n, &mut rng);
        for i in 0..sched.levels() {
            let lv = sched.level(i).unwrap();
            let sigma = f64::from(lv.sigma);
            let mut z = vec![0.0f32; n * n];
            noise.sample_into(&mut rng, &mut z).unwrap();
            // A noisy input as the sampler sees it at this level.
            let x: Vec<f32> =
                a.iter().zip(&z).map(|(&v, &z)| ((f64::from(v) - pm) / ps + sigma * f64::from(z)) as f32).collect();
            let (stages, want) = denoiser_stages(prior, &x, n, sigma);
            let mut got = vec![0.0f32; n * n];
            let mut got_stages = Vec::new();
            rprior.trace(&lv, &x, &mut got, &mut ws, |_, h| got_stages.push(h.to_vec())).unwrap();
            for (l, (g, w)) in got_stages.iter().zip(&stages).enumerate() {
                let e = check(&format!("{what} denoiser case {case} level {i} stage {l}"), g, w, PARITY_TOL);
                rep.den_layers = rep.den_layers.max(e);
            }
            let e =
                check(&format!("{what} denoiser case {case} level {i} (sigma {sigma:.3e})"), &got, &want, PARITY_TOL);
            rep.den_out = rep.den_out.max(e);
            let lv8 = art8.schedule().unwrap().level(i).unwrap();
            let mut got8 = vec![0.0f32; n * n];
            rprior8.denoise(&lv8, &x, &mut got8, &mut ws).unwrap();
            let e = check_l2(&format!("{what} denoiser int8 level {i}"), &got8, &got, INT8_L2_TOL);
            rep.den_int8_l2 = rep.den_int8_l2.max(e);
        }
    }
    eprintln!("{what}: {rep:?}");
    rep
}

fn tiny_models(seed: u64) -> (EdmModel<B>, Fno<B>) {
    let device = Default::default();
    let _guard = SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(&device, seed);
    let fno = FnoConfig::new(6, 3, 2, 0.25, 10)
        .with_normalization(Normalization::new(7.5, 4.5, 0.005, 0.004))
        .init::<B>(&device);
    let cfg =
        EdmConfig::new(DenoiserConfig::new(1, 5, 3, 2, 0.125, 7).with_embed_frequencies(4).with_embed_width(8).into())
            .with_normalization(ChannelNorm::new(vec![7.4], vec![4.4]));
    let mut prior = cfg.init::<B>(&device).unwrap();
    // The FiLM layers start at zero; give them weights so the tables matter.
    let (e, w) = (8, 5);
    prior.denoiser.film = (0..2).map(|_| LinearConfig::new(e, 2 * w).init(&device)).collect();
    (prior, fno)
}

#[test]
fn tiny_random_models_match_burn() {
    let (prior, fno) = tiny_models(3);
    let n = 12;
    let daps = DapsConfig::reduced().with_steps("4x1x2").unwrap();
    let f32_art = build_artifact(&prior, &fno, &daps, "darcy", n, Quant::F32).unwrap();
    let int8_art = build_artifact(&prior, &fno, &daps, "darcy", n, Quant::Int8).unwrap();
    eprintln!("{}", inspect(&int8_art).unwrap());
    compare("tiny", &prior, &fno, n, &f32_art, &int8_art, 2);
}

#[test]
fn device_preset_shapes_match_burn() {
    // Random weights in the device presets' shapes at n = 32: the exact
    // layouts the trained models use, without needing `runs/`.
    let device = Default::default();
    let (prior, fno) = {
        let _guard = SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&device, 5);
        let fno = FnoConfig::device().with_normalization(Normalization::new(7.5, 4.5, 0.005, 0.004)).init::<B>(&device);
        let cfg =
            EdmConfig::new(DenoiserConfig::device(1).into()).with_normalization(ChannelNorm::new(vec![7.5], vec![4.5]));
        let mut prior = cfg.init::<B>(&device).unwrap();
        prior.denoiser.film = (0..4).map(|_| LinearConfig::new(32, 32).init(&device)).collect();
        (prior, fno)
    };
    let daps = DapsConfig::reduced().with_steps("3x1x2").unwrap();
    let f32_art = build_artifact(&prior, &fno, &daps, "darcy", 32, Quant::F32).unwrap();
    let int8_art = build_artifact(&prior, &fno, &daps, "darcy", 32, Quant::Int8).unwrap();
    compare("device preset", &prior, &fno, 32, &f32_art, &int8_art, 1);
}

#[test]
fn export_rejects_what_the_device_cannot_run() {
    let (prior, fno) = tiny_models(4);
    let full = DapsConfig::full();
    let err = build_artifact(&prior, &fno, &full, "darcy", 12, Quant::F32).unwrap_err().to_string();
    assert!(err.contains("one ODE step"), "{err}");
    let pre = DapsConfig { precondition: true, ..DapsConfig::reduced() };
    assert!(build_artifact(&prior, &fno, &pre, "darcy", 12, Quant::F32).is_err(), "preconditioned Langevin");
    assert!(build_artifact(&prior, &fno, &DapsConfig::reduced(), "darcy", 3, Quant::F32).is_err(), "grid too small");
    let bytes = build_artifact(&prior, &fno, &DapsConfig::reduced(), "darcy", 12, Quant::Int8).unwrap();
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 4;
    let msg = inspect(&bad).unwrap_err().to_string();
    assert!(msg.contains("CRC"), "{msg}");
    assert!(inspect(&bytes[..5]).is_err());
}

#[test]
fn runtime_reconstruct_is_deterministic_and_finite() {
    let (prior, fno) = tiny_models(6);
    let n = 12;
    let daps = DapsConfig::reduced().with_steps("4x1x3").unwrap();
    let bytes = build_artifact(&prior, &fno, &daps, "darcy", n, Quant::Int8).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let nodes: Vec<usize> = (0..10).map(|k| 13 + 11 * k).collect();
    let values: Vec<f64> = nodes.iter().map(|_| rng.random_range(0.002..0.008)).collect();
    let obs = Observations::new(n, nodes, values, 0.0).unwrap();
    let a = runtime_posterior(&bytes, &obs, 3, 7).unwrap();
    let b = runtime_posterior(&bytes, &obs, 3, 7).unwrap();
    assert_eq!(a.mean, b.mean);
    assert_eq!(a.std, b.std);
    assert!(a.mean.iter().chain(&a.std).all(|v| v.is_finite()));
    assert_eq!(a.stats.denoiser_calls, 12);
    assert_eq!(a.stats.guide_calls, 36);
    let wrong = Observations::new(10, vec![3], vec![0.1], 0.0).unwrap();
    assert!(runtime_posterior(&bytes, &wrong, 1, 0).is_err());
}

fn run_dir(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("runs").join(name);
    dir.join("model.bin").exists().then_some(dir)
}

#[test]
fn trained_device_models_match_burn() {
    let (Some(op_dir), Some(prior_dir)) = (run_dir("op-device-p100"), run_dir("prior-device")) else {
        eprintln!("runs/op-device-p100 or runs/prior-device missing: skipped");
        return;
    };
    let device = Default::default();
    let fno = ddis_trainer::train::operator::load_operator::<B>(&op_dir, &device).unwrap();
    let (prior, _) = ddis_trainer::train::diffusion::load_diffusion::<B>(&prior_dir, &device).unwrap();
    let prior = prior.into_fno().unwrap();
    let daps = DapsConfig::reduced();
    let n = 32;
    let f32_art = build_artifact(&prior, &fno, &daps, "darcy", n, Quant::F32).unwrap();
    let int8_art = build_artifact(&prior, &fno, &daps, "darcy", n, Quant::Int8).unwrap();
    for (name, bytes) in [("f32", &f32_art), ("int8", &int8_art)] {
        let art = Artifact::parse(bytes).unwrap();
        eprintln!(
            "trained 32x32 {name}: artifact {} bytes, workspace {} bytes; params surrogate {} prior {}",
            bytes.len(),
            art.workspace_bytes().unwrap(),
            fno.num_params(),
            prior.num_params()
        );
    }
    eprintln!("{}", inspect(&int8_art).unwrap());
    let int8 = Artifact::parse(&int8_art).unwrap();
    assert!(int8.len_bytes() <= 1 << 20, "int8 artifact above 1 MiB");
    assert!(int8.workspace_bytes().unwrap() <= 256 << 10, "workspace above 256 KiB");
    compare("trained", &prior, &fno, n, &f32_art, &int8_art, 2);
}

/// Reconstruction quality of the int8 artifact against the f32 artifact on
/// Darcy test cases (31 noiseless interior sensors, the same seed for
/// both): the criterion is int8 at most 10 % above f32. Slow in the
/// dev profile; run with
/// `DDIS_PARITY_CASES=100 cargo test --release -p ddis-trainer --test parity -- --ignored --nocapture`.
#[test]
#[ignore]
fn int8_reconstruction_error_vs_f32() {
    let (Some(op_dir), Some(prior_dir)) = (run_dir("op-device-p100"), run_dir("prior-device")) else {
        eprintln!("runs missing: skipped");
        return;
    };
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/darcy32");
    let Ok(data) = ddis_trainer::data::Dataset::load(&data_dir) else {
        eprintln!("data/darcy32 missing: skipped");
        return;
    };
    let cases: usize = std::env::var("DDIS_PARITY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let samples: usize = std::env::var("DDIS_PARITY_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(op_dir.join("split.json")).unwrap()).unwrap();
    let test: Vec<usize> =
        split["test"].as_array().unwrap().iter().take(cases).map(|v| v.as_u64().unwrap() as usize).collect();
    let device = Default::default();
    let fno = ddis_trainer::train::operator::load_operator::<B>(&op_dir, &device).unwrap();
    let (prior, _) = ddis_trainer::train::diffusion::load_diffusion::<B>(&prior_dir, &device).unwrap();
    let prior = prior.into_fno().unwrap();
    let daps = DapsConfig::reduced();
    let n = data.res();
    let arts = [
        ("f32", build_artifact(&prior, &fno, &daps, "darcy", n, Quant::F32).unwrap()),
        ("int8", build_artifact(&prior, &fno, &daps, "darcy", n, Quant::Int8).unwrap()),
    ];
    let per = n * n;
    let mut rows = vec![(0.0f64, 0.0f64, 0u32); 2];
    let start = std::time::Instant::now();
    for (c, &k) in test.iter().enumerate() {
        let (a, u) = (&data.a[k * per..(k + 1) * per], &data.u[k * per..(k + 1) * per]);
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + k as u64);
        let nodes = ddis_trainer::observe::random_interior_nodes(n, 31, &mut rng).unwrap();
        let obs = Observations::measure(n, nodes, u, 0.0, &mut rng).unwrap();
        for (row, (name, bytes)) in rows.iter_mut().zip(&arts) {
            let post = runtime_posterior(bytes, &obs, samples, 7 + c as u64).unwrap();
            let l2 = rel_l2(&post.mean, a);
            let wrong = post.mean.iter().zip(a).filter(|&(&m, &t)| (m >= 7.5) != (t >= 7.5)).count();
            let rate = wrong as f64 / per as f64;
            eprintln!("case {k} {name}: rel L2 {l2:.4}, error rate {rate:.4}, clamped {}", post.stats.clamped);
            row.0 += l2 / cases as f64;
            row.1 += rate / cases as f64;
            row.2 += post.stats.clamped;
        }
    }
    for ((name, _), (l2, rate, clamped)) in arts.iter().zip(&rows) {
        eprintln!(
            "{name}: mean rel L2 {l2:.4}, mean error rate {rate:.4}, clamped {clamped} ({cases} cases, {samples} samples)"
        );
    }
    eprintln!(
        "int8 / f32: rel L2 x{:.3}, error rate x{:.3}; {:.1} s",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1,
        start.elapsed().as_secs_f64()
    );
}
