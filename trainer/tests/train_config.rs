//! `ddis train` options that change a run's plan, through the binary:
//! `--resume --steps N` extends a run with a continuous learning rate (and
//! replays bit for bit when interrupted), other changed options are named,
//! and `--model-config` trains any network size, checked field by field.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::tensor::{Tensor, TensorData};
use common::{data_gen, loss_rows, ok, s};
use ddis_trainer::data::Dataset;
use ddis_trainer::model::fno::FnoConfig;
use ddis_trainer::train::backend::Cpu;
use ddis_trainer::train::operator::load_operator;

/// Largest relative change of the learning rate across a resume boundary.
/// The 100-step schedule below moves by at most ~3 % per step there; a
/// schedule rescaled to the new step count would jump by 20x or more.
const LR_JUMP_TOL: f64 = 0.05;

/// A network small enough that hundreds of steps take a few seconds.
const TINY_FNO: &str = r#"{"width": 4, "modes": 3, "layers": 1, "proj_width": 8}"#;

fn fails_with(o: Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure mentioning {needle:?}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
}

/// A 12x12 Darcy dataset of 40 samples and the tiny model config in `tmp`.
fn setup(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    data_gen(&data, "12", "40", &[]);
    let model = tmp.join("tiny.json");
    std::fs::write(&model, TINY_FNO).unwrap();
    (data, model)
}

/// `ddis train operator` with the tiny network, `steps` steps, a checkpoint
/// every 50 and a loss row every step.
fn train(data: &Path, model: &Path, out: &Path, steps: usize, extra: &[&str]) -> Output {
    let options = ["--model-config", s(model), "--checkpoint-every", "50"];
    common::train("operator", data, out, &steps.to_string(), &[&options[..], extra].concat())
}

/// `(step, lr)` of every row of `RUN/loss.csv`.
fn lr_rows(run: &Path) -> Vec<(usize, f64)> {
    let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let lr = header.iter().position(|h| *h == "lr").expect("an lr column");
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[lr].parse().unwrap())
        })
        .collect()
}

fn config(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

/// Relative change of the learning rate from the row of `step` to the next.
fn jump_after(rows: &[(usize, f64)], step: usize) -> f64 {
    let i = rows.iter().position(|r| r.0 == step).unwrap();
    (rows[i + 1].1 - rows[i].1).abs() / rows[i].1
}

/// What a trained surrogate computes on three samples, bit for bit.
fn outputs(run: &Path, data: &Path) -> Vec<u32> {
    let device = Default::default();
    let set = Dataset::load(data).unwrap();
    let a = Tensor::<Cpu, 3>::from_data(TensorData::new(set.gather(&set.a, &[0, 1, 2]), [3, 12, 12]), &device);
    let u: Vec<f32> = load_operator::<Cpu>(run, &device).unwrap().forward(a).into_data().to_vec().unwrap();
    u.iter().map(|v| v.to_bits()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn resume_with_more_steps_extends_the_run_continuously() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = setup(tmp.path());

    // A finished 100-step run, extended to 200 steps.
    let run = tmp.path().join("run");
    ok(train(&data, &model, &run, 100, &[]));
    let before = loss_rows(&run);
    let copy = tmp.path().join("copy");
    copy_dir(&run, &copy);
    ok(train(&data, &model, &run, 200, &["--resume"]));
    let rows = lr_rows(&run);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>(), "steps 1..=200, once each");
    assert_eq!(loss_rows(&run)[..before.len()], before[..], "the first 100 rows must be kept as they were");
    let jump = jump_after(&rows, 100);
    assert!(jump < LR_JUMP_TOL, "learning rate jumps by {:.1} % at the resume step", 100.0 * jump);
    let floor = 0.01 * 1e-3;
    assert!(rows[100..].iter().all(|r| (r.1 - floor).abs() <= 1e-3 * floor), "a finished run continues at the floor");
    let recorded = &config(&run)["train"];
    assert_eq!(recorded["steps"], 200);
    assert_eq!(recorded["extensions"], serde_json::json!([{"at": 100, "from_steps": 100}]));
    assert_eq!((recorded["warmup"].as_u64(), recorded["log_every"].as_u64()), (Some(5), Some(1)), "the run's schedule");

    // The same extension interrupted after a checkpoint and resumed at the
    // same --steps ends with exactly the same model and loss curve.
    fails_with(train(&data, &model, &copy, 200, &["--resume", "--halt-after", "150"]), "halted after step 150");
    ok(train(&data, &model, &copy, 200, &["--resume"]));
    assert_eq!(outputs(&copy, &data), outputs(&run, &data), "an interrupted extension must replay bit for bit");
    assert_eq!(loss_rows(&copy), loss_rows(&run));

    // A second extension stacks on the first.
    ok(train(&data, &model, &run, 250, &["--resume"]));
    assert_eq!(lr_rows(&run).last().unwrap().0, 250);
    assert_eq!(config(&run)["train"]["extensions"].as_array().unwrap().len(), 2);

    // Fewer steps than reached, or another option, are refused by name.
    fails_with(train(&data, &model, &run, 120, &["--resume"]), "--steps 120 is below step 250");
    fails_with(
        train(&data, &model, &run, 250, &["--resume", "--lr", "0.002"]),
        "--lr differs: run has 0.001, command line 0.002",
    );
    fails_with(
        train(&data, &model, &run, 250, &["--resume", "--seed", "1"]),
        "--seed differs: run has 0, command line 1",
    );
    assert_eq!(config(&run)["train"]["steps"], 250, "a refused resume must not touch the run");
}

#[test]
fn resume_mid_run_with_more_steps_keeps_the_rate_and_decays_to_the_new_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = setup(tmp.path());
    let run = tmp.path().join("run");
    fails_with(train(&data, &model, &run, 100, &["--halt-after", "50"]), "halted");
    ok(train(&data, &model, &run, 200, &["--resume"]));
    let rows = lr_rows(&run);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let jump = jump_after(&rows, 50);
    assert!(jump < LR_JUMP_TOL, "learning rate jumps by {:.1} % at the resume step", 100.0 * jump);
    assert!(rows[50..].windows(2).all(|w| w[1].1 <= w[0].1), "the rate must decay after the resume");
    let last = rows.last().unwrap().1;
    assert!((last - 0.01 * 1e-3).abs() <= 0.02 * 0.01 * 1e-3, "the decay ends at the floor, got {last}");
}

#[test]
fn model_config_sets_the_network_and_names_bad_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = setup(tmp.path());
    let run = tmp.path().join("op");
    ok(train(&data, &model, &run, 2, &[]));
    let m = &config(&run)["model"];
    assert_eq!((m["width"].as_u64(), m["modes"].as_u64(), m["layers"].as_u64()), (Some(4), Some(3), Some(1)));
    assert_eq!(
        (m["proj_width"].as_u64(), m["pad_fraction"].as_f64()),
        (Some(8), Some(0.25)),
        "the rest: --size device"
    );
    let params = FnoConfig::new(4, 3, 1, 0.25, 8).param_count();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["params"].as_u64(), Some(params as u64));
    // Resuming with another network is named.
    let o = common::train("operator", &data, &run, "2", &["--checkpoint-every", "50", "--resume"]);
    fails_with(o, "model.width (--size/--model-config) differs: run has 4, command line 16");

    // --size picks the preset the file's missing keys come from.
    let host = tmp.path().join("host");
    let one_layer = tmp.path().join("one-layer.json");
    std::fs::write(&one_layer, r#"{"layers": 1}"#).unwrap();
    ok(train(&data, &one_layer, &host, 1, &["--size", "host"]));
    let m = &config(&host)["model"];
    assert_eq!((m["width"].as_u64(), m["modes"].as_u64(), m["layers"].as_u64()), (Some(32), Some(12), Some(1)));

    // A prior takes the diffusion model's form.
    let prior_cfg = tmp.path().join("prior.json");
    std::fs::write(
        &prior_cfg,
        r#"{"denoiser": {"width": 4, "modes": 3, "layers": 1, "proj_width": 8, "embed_width": 8}}"#,
    )
    .unwrap();
    let prior = tmp.path().join("prior");
    ok(common::train("prior", &data, &prior, "2", &["--model-config", s(&prior_cfg), "--stat-samples", "2"]));
    let d = &config(&prior)["model"]["denoiser"];
    assert_eq!((d["width"].as_u64(), d["embed_width"].as_u64(), d["channels"].as_u64()), (Some(4), Some(8), Some(1)));

    // Bad files are refused before a run folder is made, naming the field.
    for (kind, text, needle) in [
        ("operator", r#"{"width": 0}"#, "invalid `width` = 0: must be >= 1"),
        ("operator", r#"{"modes": 20}"#, "`modes` = 20 does not fit the 12x12 grid"),
        ("operator", r#"{"pad_fraction": 1.5}"#, "invalid `pad_fraction` = 1.5"),
        ("operator", r#"{"widht": 4}"#, "unknown key `widht`"),
        ("operator", r#"{"width": "4"}"#, "`width` must be a whole number"),
        ("prior", r#"{"width": 4}"#, "unknown key `width`"),
        ("prior", r#"{"denoiser": {"layers": 0}}"#, "invalid `denoiser.layers` = 0"),
        ("prior", r#"{"denoiser": {"modes": 20}}"#, "`denoiser.modes` = 20 does not fit the 12x12 grid"),
        ("joint", r#"{"denoiser": {"channels": 1}}"#, "`denoiser.channels` = 1, but a joint model has 2"),
    ] {
        let file = tmp.path().join("bad.json");
        std::fs::write(&file, text).unwrap();
        let out = tmp.path().join("bad-run");
        fails_with(common::train(kind, &data, &out, "1", &["--model-config", s(&file)]), needle);
        assert!(!out.exists(), "{kind} {text}: no run folder for a bad config");
    }
    // --model-config names the file it read.
    fails_with(train(&data, &tmp.path().join("missing.json"), &tmp.path().join("x"), 1, &[]), "missing.json");
}
