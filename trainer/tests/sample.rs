//! `ddis eval` and `ddis reconstruct` end to end through the binary, on
//! tiny models trained for a few steps: every method runs, the reports and
//! outputs are written, the same seed gives the same table, and bad input
//! is a one-line error that names the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{data_gen, ddis, ok, s, train};
use ddis_trainer::data::Dataset;
use ddis_trainer::npy;

/// A 16x16 Darcy dataset and a prior, a surrogate and a joint model trained
/// for a handful of steps under `root/runs`.
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    data_gen(&data, "16", "60", &["--seed", "3"]);
    let runs = root.join("runs");
    ok(train("prior", &data, &runs.join("prior"), "3", &["--stat-samples", "2"]));
    ok(train("operator", &data, &runs.join("op"), "3", &["--paired-fraction", "1.0"]));
    ok(train("joint", &data, &runs.join("joint"), "3", &["--paired-fraction", "1.0"]));
    (data, runs)
}

/// `ddis eval` of `methods` on two 16x16 Darcy cases with eight sensors,
/// `samples` posterior samples and `panels` panels, over the runs in
/// `runs`, into `out`; then `extra`.
fn eval(runs: &Path, out: &Path, methods: &str, samples: &str, panels: &str, extra: &[&str]) -> Output {
    let command =
        ["--quiet", "--threads", "1", "eval", "--pde", "darcy", "--res", "16", "--cases", "2", "--sensors", "8"];
    let what = ["--samples", samples, "--methods", methods, "--runs", s(runs), "--panels", panels, "--out", s(out)];
    ddis(&[&command[..], &what, extra].concat())
}

/// `ddis reconstruct` of the readings in `obs` into `out`: 3 samples of a
/// short schedule (the models follow).
fn reconstruct_args<'a>(obs: &'a Path, out: &'a Path) -> [&'a str; 10] {
    ["--quiet", "reconstruct", "--obs", s(obs), "--out", s(out), "--samples", "3", "--schedule", "3x1x2"]
}

/// The metric columns of results.csv (wall time dropped).
fn metric_columns(csv: &str) -> Vec<String> {
    csv.lines().map(|l| l.rsplitn(3, ',').nth(2).unwrap_or_default().to_string()).collect()
}

#[test]
fn eval_and_reconstruct_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = setup(tmp.path());
    let methods = "ddis-daps+schedule=3x1x2,ddis-dps+steps=3,joint-daps+schedule=3x1x2,joint-dps+steps=3";
    let eval_with = |out: &Path, methods: &str, extra: &[&str]| eval(&runs, out, methods, "2", "1", extra);
    let eval = |out: &Path, extra: &[&str]| eval_with(out, methods, extra);
    let (r1, r2) = (tmp.path().join("r1"), tmp.path().join("r2"));
    ok(eval(&r1, &[]));
    ok(eval(&r2, &[]));
    let md = std::fs::read_to_string(r1.join("results.md")).unwrap();
    for m in ["ddis-daps", "ddis-dps", "joint-daps", "joint-dps", "error rate", "calibration", "best joint"] {
        assert!(md.contains(m), "results.md lacks `{m}`:\n{md}");
    }
    // Paired bootstrap intervals: 2 decoupled x 2 joint methods x 2 metrics.
    let paired_rows = md.lines().filter(|l| l.starts_with("| 1 | ddis-") && l.contains(" | joint-")).count();
    assert_eq!(paired_rows, 8, "paired comparisons:\n{md}");
    assert!(md.contains("difference [95 % CI]"), "{md}");
    let csv1 = std::fs::read_to_string(r1.join("results.csv")).unwrap();
    let csv2 = std::fs::read_to_string(r2.join("results.csv")).unwrap();
    assert_eq!(csv1.lines().count(), 5, "header + one row per method:\n{csv1}");
    assert_eq!(metric_columns(&csv1), metric_columns(&csv2), "same seed, same table");
    for m in 0..4 {
        let any = std::fs::read_dir(&r1)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&format!("m{m}-")));
        assert!(any, "no panel for method {m}");
    }
    // A different seed changes the sensors, hence the table.
    let r3 = tmp.path().join("r3");
    ok(eval(&r3, &["--seed", "1"]));
    assert_ne!(metric_columns(&csv1), metric_columns(&std::fs::read_to_string(r3.join("results.csv")).unwrap()));
    // Exact physics instead of the surrogate.
    let r4 = tmp.path().join("r4");
    ok(eval_with(&r4, "ddis-daps+schedule=3x1x2", &["--physics", "solver"]));
    // The no-guidance ablation, and the joint model's u-channel consistency.
    let r5 = tmp.path().join("r5");
    ok(eval_with(&r5, "prior+steps=3,joint-dps+steps=3+heun=1", &[]));
    let md = std::fs::read_to_string(r5.join("results.md")).unwrap();
    assert!(md.contains("| prior | 1 | no guidance: prior samples, 3 Heun steps |"), "{md}");
    let consistency = md
        .lines()
        .find(|l| l.starts_with("| joint-dps | 1 | DPS 3 Heun steps"))
        .and_then(|_| md.split("u-channel residual (%) |").nth(1)?.lines().find(|l| l.starts_with("| joint-dps")));
    let residual: f64 = consistency
        .and_then(|l| l.split('|').nth(4)?.split("+-").next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no u-channel consistency row:\n{md}"));
    assert!(residual.is_finite() && residual > 0.0, "{residual}");

    // The exact Gaussian prior exists only for the linear-Gaussian PDEs.
    let e = eval_with(&tmp.path().join("exact-prior"), "ddis-daps+schedule=3x1x1+step=gn+prior=exact", &[]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("prior=exact") && msg.contains("Poisson"), "{msg}");

    // reconstruct from a CSV of readings taken from the data.
    let set = Dataset::load(&data).unwrap();
    let n = 16;
    let mut csv = String::from("x,y,value\n");
    for (i, j) in [(3, 4), (8, 8), (12, 5), (5, 12), (10, 2)] {
        let v = set.u[i * n + j];
        csv += &format!("{},{},{v}\n", j as f64 / 15.0, i as f64 / 15.0);
    }
    let obs = tmp.path().join("obs.csv");
    std::fs::write(&obs, &csv).unwrap();
    let rec = tmp.path().join("rec");
    let prior = runs.join("prior");
    let op = runs.join("op");
    let base = reconstruct_args(&obs, &rec);
    ok(ddis(&[&base[..], &["--prior", s(&prior), "--operator", s(&op)]].concat()));
    let mean = npy::read(&rec.join("mean.npy")).unwrap();
    assert_eq!(mean.shape, vec![n, n]);
    assert!(mean.data.iter().all(|v| v.is_finite()));
    let std = npy::read(&rec.join("std.npy")).unwrap();
    assert!(std.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert_eq!(npy::read(&rec.join("samples.npy")).unwrap().shape, vec![3, n, n]);
    assert!(rec.join("panel.png").exists());
    // run.json records the models with their hashes, the settings and the counters.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["samples"], 3);
    assert_eq!(record["models"]["prior"]["fnv1a64"].as_str().unwrap().len(), 16, "{record}");
    assert!(record["models"]["operator"]["path"].as_str().unwrap().ends_with("op"), "{record}");
    assert!(record["sampler"]["denoiser_calls"].as_u64().unwrap() > 0, "{record}");
    // A surrogate trained for another problem is refused, naming both.
    let poisson_op = tmp.path().join("poisson-op");
    std::fs::create_dir(&poisson_op).unwrap();
    std::fs::copy(op.join("model.bin"), poisson_op.join("model.bin")).unwrap();
    let cfg = std::fs::read_to_string(op.join("config.json")).unwrap().replace("\"darcy\"", "\"poisson\"");
    std::fs::write(poisson_op.join("config.json"), cfg).unwrap();
    let refused = tmp.path().join("refused");
    let e =
        ddis(&[&reconstruct_args(&obs, &refused)[..], &["--prior", s(&prior), "--operator", s(&poisson_op)]].concat());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("different problems") && msg.contains("poisson"), "{msg}");
    assert!(!refused.exists(), "nothing written");
    let e = ddis(&["eval-operator", "--operator", s(&poisson_op), "--data", s(&data)]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("different problems"), "{msg}");
    // --test-split recomputes the figure training reported, to the digit.
    let o = ok(ddis(&["eval-operator", "--operator", s(&op), "--data", s(&data), "--test-split"]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(op.join("summary.json")).unwrap()).unwrap();
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    let want = format!("relative L2 {:.4} +- ", summary["test_rel_l2"].as_f64().unwrap());
    assert!(printed.starts_with(&want) && printed.contains(" test samples of "), "{printed} (want {want}...)");
    // --gpu needs --backend cuda; --backend cuda needs the `cuda` feature
    // (a one-line error saying how to build it), and --artifact runs on the CPU.
    let e = ddis(&["eval-operator", "--operator", s(&op), "--data", s(&data), "--gpu", "1"]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("--backend cuda"), "{msg}");
    #[cfg(not(feature = "cuda"))]
    for cmd in [
        &["eval-operator", "--operator", s(&op), "--data", s(&data)][..],
        &[&base[..], &["--prior", s(&prior), "--operator", s(&op)]].concat(),
    ] {
        let e = ddis(&[cmd, &["--backend", "cuda"]].concat());
        let msg = String::from_utf8_lossy(&e.stderr);
        assert!(!e.status.success() && msg.contains("--features cuda"), "{msg}");
        assert_eq!(msg.trim_end().lines().count(), 1, "{msg}");
    }
    let e = ddis(&["reconstruct", "--artifact", "x.ddis", "--obs", s(&obs), "--out", s(&rec), "--backend", "cuda"]);
    assert_eq!(e.status.code(), Some(2), "{}", String::from_utf8_lossy(&e.stderr));
    // A reading on the boundary and one far outside the training range are
    // warned about (the run goes on); a folder ddis did not write is kept.
    std::fs::write(&obs, format!("{csv}0,0.5,0.0\n0.4,0.6,7.5\n")).unwrap();
    let o = ok(ddis(&[&base[..], &["--prior", s(&prior), "--operator", s(&op)]].concat()));
    let warn = String::from_utf8_lossy(&o.stderr);
    assert!(warn.contains("warning: 1 of 7 readings sit on the boundary"), "{warn}");
    assert!(warn.contains("warning: 1 of 7 readings lie far outside"), "{warn}");
    std::fs::write(&obs, &csv).unwrap();
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let e = ddis(&[&reconstruct_args(&obs, &mine)[..], &["--prior", s(&prior), "--operator", s(&op)]].concat());
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(mine.join("notes.txt")).unwrap(), "keep");
    for sampler in ["daps-lite", "dps"] {
        ok(ddis(&[&base[..], &["--prior", s(&prior), "--operator", s(&op), "--sampler", sampler]].concat()));
    }
    ok(ddis(&[&base[..], &["--joint", s(&runs.join("joint"))]].concat()));
    ok(ddis(&[&base[..], &["--prior", s(&prior), "--physics", "solver"]].concat()));

    // The device artifact: export, inspect, reconstruct through the runtime.
    let art = tmp.path().join("tiny.ddis");
    let o = ok(ddis(&[
        "--quiet",
        "export",
        "--prior",
        s(&prior),
        "--operator",
        s(&op),
        "--out",
        s(&art),
        "--schedule",
        "3x1x2",
    ]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("workspace"));
    let e = ddis(&["--quiet", "export", "--prior", s(&prior), "--operator", s(&op), "--out", s(&art)]);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--force"));
    let o = ok(ddis(&["inspect", s(&art)]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("crc32"), "{text}");
    // The artifact records the training data's law and range (v4) and the
    // noise's share of the likelihood width (v5, default 0.1).
    assert!(text.contains("(noise width 0.1)"), "{text}");
    assert!(text.contains("phases: a = 3 below the GRF level 0, 12 above"), "{text}");
    assert!(text.contains("training data: GRF alpha 2, tau 3; u in [0.0000e0, "), "{text}");
    let dev = tmp.path().join("dev");
    ok(ddis(&["--quiet", "reconstruct", "--artifact", s(&art), "--obs", s(&obs), "--out", s(&dev), "--samples", "2"]));
    assert_eq!(npy::read(&dev.join("mean.npy")).unwrap().shape, vec![n, n]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("problem: darcy"), "the artifact names its problem");
    // eval runs the artifact as the `device` method, and refuses one for another grid.
    let rd = tmp.path().join("rd");
    ok(eval_with(&rd, "device", &["--artifact", s(&art)]));
    assert!(std::fs::read_to_string(rd.join("results.md")).unwrap().contains("| device |"));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/darcy32.ddis");
    let e = eval_with(&tmp.path().join("rx"), "device", &["--artifact", s(&shipped)]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("32x32 darcy artifact"), "{msg}");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&art, &bytes).unwrap();
    let e = ddis(&["inspect", s(&art)]);
    assert!(!e.status.success(), "a damaged artifact is an error");

    // Bad input: one-line errors that say what is wrong.
    let err = |o: Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = err(ddis(&[&base[..], &["--prior", s(&prior)]].concat()));
    assert!(e.contains("--operator"), "{e}");
    std::fs::write(&obs, "x,y,value\n0.5,0.5,0.1\n0.2,NaN,0.3\n").unwrap();
    let e = err(ddis(&[&base[..], &["--prior", s(&prior), "--operator", s(&op)]].concat()));
    assert!(e.contains(":3"), "the error names line 3: {e}");
    std::fs::write(&obs, "x,y,value\n0.5,1.5,0.1\n").unwrap();
    let e = err(ddis(&[&base[..], &["--prior", s(&prior), "--operator", s(&op)]].concat()));
    assert!(e.contains(":2"), "the error names line 2: {e}");
    let e = err(eval_with(&tmp.path().join("r5"), "ddis-magic", &[]));
    assert!(e.contains("unknown method"), "{e}");
    let e = err(eval_with(&tmp.path().join("r6"), "ddis-daps+schedule=3x1", &[]));
    assert!(e.contains("ANNEALINGxODExLANGEVIN"), "{e}");
    let e = err(eval(&tmp.path().join("r7"), &["--paired", "0.5"]));
    assert!(e.contains("paired fraction 0.5"), "{e}");
}

#[test]
fn unet_joint_run_evaluates_through_the_cli() {
    // `--arch unet` is recorded in the run's config, and `ddis eval` builds
    // the U-Net from it (DPS differentiates through it).
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    data_gen(&data, "16", "40", &["--seed", "3"]);
    let runs = tmp.path().join("runs");
    let model = tmp.path().join("tiny.json");
    std::fs::write(&model, r#"{"denoiser": {"width": 4, "mults": [1, 2], "groups": 2, "embed_width": 8}}"#).unwrap();
    let unet = ["--arch", "unet", "--model-config", s(&model), "--paired-fraction", "1.0"];
    ok(train("joint", &data, &runs.join("joint"), "3", &unet));
    // `eval` loads a prior with every method; a 3-step FNO one will do.
    ok(train("prior", &data, &runs.join("prior"), "3", &["--stat-samples", "2"]));
    let config = std::fs::read_to_string(runs.join("joint").join("config.json")).unwrap();
    assert!(config.contains(r#""arch": "unet""#), "{config}");
    let out = tmp.path().join("report");
    ok(eval(&runs, &out, "joint-dps+steps=3+heun=1", "1", "0", &[]));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("joint-dps"), "results.md lacks the method:\n{md}");
}
