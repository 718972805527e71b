//! `ddis train` end to end through the binary: a run killed after a
//! checkpoint and resumed ends with exactly the weights of an uninterrupted
//! run of the same seed (burn-ndarray is deterministic on the CPU), and the
//! run directory holds what the docs promise.

use std::path::Path;
use std::process::{Command, Output};

use burn::tensor::{Tensor, TensorData};
use ddis_trainer::data::Dataset;
use ddis_trainer::train::backend::Cpu;
use ddis_trainer::train::operator::load_operator;

fn ddis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddis")).args(args).output().expect("run ddis")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn train_operator(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--quiet",
        "--threads",
        "1",
        "train",
        "operator",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "6",
        "--batch",
        "4",
        "--checkpoint-every",
        "3",
        "--paired-fraction",
        "0.5",
    ];
    args.extend_from_slice(extra);
    ddis(&args)
}

#[test]
fn resumed_operator_run_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(ddis(&["--quiet", "data", "gen", "--res", "12", "--count", "40", "--out", data.to_str().unwrap()]));

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
