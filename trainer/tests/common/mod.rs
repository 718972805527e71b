//! What the end-to-end tests share: running the `ddis` binary, and the
//! argument vectors of the datasets and tiny training runs they start from.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `ddis` binary built for these tests.
pub fn ddis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddis")).args(args).output().expect("run ddis")
}

/// `o`, after checking that it succeeded (else its stderr is the message).
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ddis --quiet data gen --res RES --count COUNT --out OUT`, then `extra`:
/// a Darcy dataset (the default problem), which must succeed.
pub fn data_gen(out: &Path, res: &str, count: &str, extra: &[&str]) {
    let args = ["--quiet", "data", "gen", "--res", res, "--count", count, "--out", s(out)];
    ok(ddis(&[&args[..], extra].concat()));
}

/// `ddis --quiet --threads 1 train KIND --data DATA --out OUT --steps STEPS
/// --batch 4`, then `extra`: a few steps of a tiny run.
pub fn train(kind: &str, data: &Path, out: &Path, steps: &str, extra: &[&str]) -> Output {
    let command = ["--quiet", "--threads", "1", "train", kind];
    let run = ["--data", s(data), "--out", s(out), "--steps", steps, "--batch", "4"];
    ddis(&[&command[..], &run, extra].concat())
}

/// `RUN/loss.csv` without the wall-time column (the one thing that may
/// differ between an interrupted and an uninterrupted run).
pub fn loss_rows(run: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    csv.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
}
