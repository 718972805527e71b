//! `ddis train` end to end through the binary: a run killed after a
//! checkpoint and resumed ends with exactly the weights of an uninterrupted
//! run of the same seed (burn-ndarray is deterministic on the CPU), with and
//! without the weight average, clipping and augmentation, and the run
//! directory holds what the docs promise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::tensor::{Tensor, TensorData};
use common::{data_gen, loss_rows, ok, s, train};
use ddis_trainer::data::Dataset;
use ddis_trainer::model::denoiser::DiffusionModel;
use ddis_trainer::train::backend::Cpu;
use ddis_trainer::train::diffusion::load_diffusion;
use ddis_trainer::train::operator::load_operator;

/// Six steps of the surrogate on half the pairs, a checkpoint every three.
fn train_operator(data: &Path, out: &Path, extra: &[&str]) -> Output {
    train("operator", data, out, "6", &[&["--checkpoint-every", "3", "--paired-fraction", "0.5"][..], extra].concat())
}

#[test]
fn resumed_operator_run_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    data_gen(&data, "12", "40", &[]);

    let whole = tmp.path().join("whole");
    ok(train_operator(&data, &whole, &[]));

    let killed = tmp.path().join("killed");
    let o = train_operator(&data, &killed, &["--halt-after", "4"]);
    assert!(!o.status.success(), "the halted run must report failure");
    assert!(!killed.join("model.bin").exists(), "a killed run has no final model");
    // A second plain start must refuse to clobber the run.
    let o = train_operator(&data, &killed, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&o.stderr));
    ok(train_operator(&data, &killed, &["--resume"]));

    // The weight files embed random parameter ids, so compare what the
    // models compute: bit for bit on the same inputs.
    let device = Default::default();
    let set = Dataset::load(&data).unwrap();
    let a = Tensor::<Cpu, 3>::from_data(TensorData::new(set.gather(&set.a, &[0, 1, 2]), [3, 12, 12]), &device);
    let run = |dir: &Path| -> Vec<f32> {
        load_operator::<Cpu>(dir, &device).unwrap().forward(a.clone()).into_data().to_vec().unwrap()
    };
    let (u_whole, u_resumed) = (run(&whole), run(&killed));
    let differing = u_whole.iter().zip(&u_resumed).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differing, 0, "resumed model differs from the uninterrupted one at {differing} nodes");
    let summary = |dir: &Path| std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let field = |s: String| s.lines().find(|l| l.contains("test_rel_l2\"")).unwrap().to_string();
    assert_eq!(field(summary(&whole)), field(summary(&killed)));
    for f in ["config.json", "split.json", "loss.csv", "loss.png", "summary.json"] {
        assert!(whole.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(killed.join("loss.csv")).unwrap();
    let steps: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(steps, ["1", "2", "3", "4", "5", "6"], "loss.csv must not repeat or skip steps after resume");
}

/// A joint denoiser small enough for a few steps in about a second.
const TINY_JOINT: &str = r#"{"denoiser": {"width": 4, "modes": 3, "layers": 1, "proj_width": 8, "embed_width": 8}}"#;

/// Six steps of the joint model `model`, a checkpoint every three, with the
/// weight average, clipping and augmentation.
fn train_joint(data: &Path, model: &Path, out: &Path, extra: &[&str]) -> Output {
    let options = ["--checkpoint-every", "3", "--ema", "0.99", "--grad-clip", "0.5", "--augment", "d8"];
    train("joint", data, out, "6", &[&["--model-config", s(model)][..], &options, extra].concat())
}

/// What the final model of the diffusion run in `dir` makes of a fixed
/// input at noise level 0.7, bit for bit.
fn denoised(dir: &Path) -> Vec<u32> {
    let device = Default::default();
    let x: Vec<f32> = (0..2 * 2 * 144).map(|k| ((k as f32) * 0.37).sin()).collect();
    let x = Tensor::<Cpu, 4>::from_data(TensorData::new(x, [2, 2, 12, 12]), &device);
    let (m, _) = load_diffusion::<Cpu>(dir, &device).unwrap();
    let d: Vec<f32> = m.denoise_at(x, 0.7).into_data().to_vec().unwrap();
    d.iter().map(|v| v.to_bits()).collect()
}

/// The killed and resumed run ends as the uninterrupted one: the same
/// denoiser (its weight average) bit for bit, and the same losses,
/// validation and rates (all but the wall time).
fn assert_resumed_matches(whole: &Path, killed: &Path) {
    let (a, b) = (denoised(whole), denoised(killed));
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 0, "resumed average differs from the uninterrupted one at {differing} of {} values", a.len());
    assert_eq!(loss_rows(whole), loss_rows(killed));
}

/// A fresh folder with a 12x12 Darcy dataset of 40 samples and the model
/// settings `json`: `(folder, dataset, settings file)`.
fn dataset_and_model(json: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    data_gen(&data, "12", "40", &[]);
    let model = tmp.path().join("tiny.json");
    std::fs::write(&model, json).unwrap();
    (tmp, data, model)
}

#[test]
fn resumed_joint_run_with_ema_clipping_and_d8_matches_uninterrupted_run() {
    let (tmp, data, model) = dataset_and_model(TINY_JOINT);

    let whole = tmp.path().join("whole");
    ok(train_joint(&data, &model, &whole, &[]));
    let killed = tmp.path().join("killed");
    assert!(!train_joint(&data, &model, &killed, &["--halt-after", "4"]).status.success());
    assert!(killed.join("checkpoint").join("ema.bin").exists(), "the checkpoint holds the weight average");
    // The options are the run's: a resume without them is refused, naming them.
    let o = train("joint", &data, &killed, "6", &["--model-config", s(&model), "--checkpoint-every", "3", "--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--ema differs: run has 0.99, command line 0 (off)"), "{err}");
    assert!(err.contains("--grad-clip differs") && err.contains("--augment differs"), "{err}");
    ok(train_joint(&data, &model, &killed, &["--resume"]));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    let t = &config["train"];
    assert_eq!(
        (t["ema"].as_f64(), t["grad_clip"].as_f64(), t["augment"].as_str()),
        (Some(0.99), Some(0.5), Some("d8"))
    );

    // model.bin holds the average; both runs' averages denoise alike, bit for
    // bit, and their losses, validation (of the average) and rates agree.
    assert_resumed_matches(&whole, &killed);
    // (summary.json's sample statistics are left out: they differ in the
    // eighth digit even between two uninterrupted runs of the same weights.)
}

/// A U-Net joint denoiser small enough for a few steps in about a second.
const TINY_UNET: &str = r#"{"denoiser": {"width": 4, "mults": [1, 2], "groups": 2, "embed_width": 8}}"#;

#[test]
fn resumed_unet_joint_run_matches_uninterrupted_run_and_records_its_arch() {
    let (tmp, data, model) = dataset_and_model(TINY_UNET);

    let whole = tmp.path().join("whole");
    ok(train_joint(&data, &model, &whole, &["--arch", "unet"]));
    let killed = tmp.path().join("killed");
    assert!(!train_joint(&data, &model, &killed, &["--arch", "unet", "--halt-after", "4"]).status.success());
    // Resuming with the other network is refused, naming the setting.
    let o = train_joint(&data, &model, &killed, &["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("unknown key `denoiser."), "{err}");
    ok(train_joint(&data, &model, &killed, &["--arch", "unet", "--resume"]));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["denoiser"]["arch"], "unet");
    assert_eq!(config["model"]["denoiser"]["mults"], serde_json::json!([1, 2]));

    for dir in [&whole, &killed] {
        let (m, _) = load_diffusion::<Cpu>(dir, &Default::default()).unwrap();
        assert!(matches!(m, DiffusionModel::Unet(_)), "the run's config names the network");
    }
    assert_resumed_matches(&whole, &killed);
}
