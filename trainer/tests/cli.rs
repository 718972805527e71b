//! The `ddis data` commands end to end, through the real binary: datasets
//! are reproducible byte for byte, `solve` agrees with `gen`, and every bad
//! input is answered with a one-line error, a non-zero exit and no output.

use std::path::Path;
use std::process::{Command, Output};

use ddis_trainer::npy;

fn ddis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddis")).args(args).output().expect("run ddis")
}

fn make_dataset(out: &Path, pde: &str, seed: &str, threads: &str) {
    let o = ddis(&[
        "--quiet",
        "--threads",
        threads,
        "data",
        "gen",
        "--pde",
        pde,
        "--res",
        "16",
        "--count",
        "300",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "gen failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn read_bytes(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn same_seed_gives_byte_identical_files_at_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two, other) = (tmp.path().join("one"), tmp.path().join("two"), tmp.path().join("other"));
    make_dataset(&one, "darcy", "7", "1");
    make_dataset(&two, "darcy", "7", "2");
    make_dataset(&other, "darcy", "8", "2");
    for f in ["a.npy", "u.npy", "meta.json"] {
        assert_eq!(read_bytes(&one, f), read_bytes(&two, f), "{f} differs between 1 and 2 threads");
    }
    assert_ne!(read_bytes(&one, "a.npy"), read_bytes(&other, "a.npy"), "seed 8 reproduced seed 7");

    let a = npy::read(&one.join("a.npy")).unwrap();
    assert_eq!(a.shape, vec![300, 16, 16]);
    assert!(a.data.iter().all(|&v| v == 3.0 || v == 12.0), "Darcy a must be two-phase {{3, 12}}");
    let meta: serde_json::Value = serde_json::from_slice(&read_bytes(&one, "meta.json")).unwrap();
    assert_eq!(meta["seed"], 7);
    assert_eq!(meta["pde"]["kind"], "darcy");
    // Nothing but the dataset is left behind (no staging directory).
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn solve_reproduces_the_generated_solutions() {
    let tmp = tempfile::tempdir().unwrap();
    for pde in ["darcy", "poisson", "helmholtz"] {
        let dir = tmp.path().join(pde);
        make_dataset(&dir, pde, "3", "2");
        let out = tmp.path().join(format!("{pde}-u.npy"));
        let o = ddis(&[
            "--quiet",
            "data",
            "solve",
            "--pde",
            pde,
            "--field",
            dir.join("a.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{pde}: {}", String::from_utf8_lossy(&o.stderr));
        let want = npy::read(&dir.join("u.npy")).unwrap();
        let got = npy::read(&out).unwrap();
        assert_eq!(got.shape, want.shape);
        // The f32 input of `solve` rounds the GRF input of Poisson and
        // Helmholtz; u is a smoothing map, so the rounding barely moves it.
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.data.iter().zip(&want.data).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
        assert!(worst <= 1e-5 * scale, "{pde}: max |solve - gen| = {worst}, scale {scale}");
    }
}

#[test]
fn solve_accepts_a_single_field_and_any_positive_coefficient() {
    let tmp = tempfile::tempdir().unwrap();
    let field = tmp.path().join("a.npy");
    let a: Vec<f32> = (0..17 * 17).map(|k| 0.5 + (k % 7) as f32).collect();
    npy::write(&field, &[17, 17], &a).unwrap();
    let out = tmp.path().join("u.npy");
    let o = ddis(&["data", "solve", "--field", field.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let u = npy::read(&out).unwrap();
    assert_eq!(u.shape, vec![17, 17]);
    assert!(u.data.iter().all(|v| v.is_finite() && *v >= 0.0), "Darcy with f = 1 gives u >= 0");
    assert!(u.data[8 * 17 + 8] > 0.0);
}

/// Runs a command that must fail: non-zero exit, a one-line `error:` message
/// that mentions `needle`, and no file at `out`.
fn assert_rejected(args: &[&str], needle: &str, out: &Path) {
    let o = ddis(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
    assert!(stderr.to_lowercase().contains(&needle.to_lowercase()), "{args:?}: '{needle}' not in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "{args:?} left {}", out.display());
}

#[test]
fn bad_input_is_a_one_line_error_with_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let out = p("out.npy");

    npy::write(&p("rank1.npy"), &[9], &[1.0; 9]).unwrap();
    npy::write(&p("rank4.npy"), &[1, 1, 3, 3], &[1.0; 9]).unwrap();
    npy::write(&p("rect.npy"), &[4, 5], &[1.0; 20]).unwrap();
    let mut nan = vec![1.0f32; 2 * 8 * 8];
    nan[64 + 3 * 8 + 5] = f32::NAN;
    npy::write(&p("nan.npy"), &[2, 8, 8], &nan).unwrap();
    let mut inf = vec![1.0f32; 8 * 8];
    inf[10] = f32::INFINITY;
    npy::write(&p("inf.npy"), &[8, 8], &inf).unwrap();
    let mut neg = vec![3.0f32; 8 * 8];
    neg[20] = 0.0;
    npy::write(&p("zero.npy"), &[8, 8], &neg).unwrap();
    npy::write(&p("ok.npy"), &[8, 8], &[1.0; 64]).unwrap();
    // An int64 array, as numpy writes np.zeros((8, 8), dtype=np.int64).
    let mut ints = npy::header_f32(&[8, 8]);
    let pos = ints.windows(3).position(|w| w == b"<f4").unwrap();
    ints[pos..pos + 3].copy_from_slice(b"<i8");
    ints.extend_from_slice(&[0u8; 8 * 64]);
    std::fs::write(p("ints.npy"), ints).unwrap();
    std::fs::write(p("garbage.npy"), b"not an npy file").unwrap();

    let solve = |field: &Path, pde: &str| -> Vec<String> {
        ["data", "solve", "--pde", pde, "--field", &s(field), "--out", &s(&out)].map(String::from).to_vec()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (solve(&p("rank1.npy"), "darcy"), "rank 1"),
        (solve(&p("rank4.npy"), "poisson"), "rank 4"),
        (solve(&p("rect.npy"), "darcy"), "square"),
        (solve(&p("nan.npy"), "poisson"), "non-finite value NaN in field 1 at [3, 5]"),
        (solve(&p("inf.npy"), "helmholtz"), "non-finite"),
        (solve(&p("zero.npy"), "darcy"), "must be positive"),
        (solve(&p("ints.npy"), "darcy"), "unsupported dtype '<i8'"),
        (solve(&p("garbage.npy"), "darcy"), "not a valid .npy"),
        (solve(&p("missing.npy"), "darcy"), "missing.npy"),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_rejected(&args, needle, &out);
    }
    // Usage errors are clap's own: they name the option, list the values
    // and keep the "did you mean" hint; exit code 2, no output.
    let usage = |args: &[&str]| {
        let o = ddis(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = usage(&["data", "solve", "--pde", "navier", "--field", &s(&p("ok.npy")), "--out", &s(&out)]);
    assert!(e.contains("navier") && e.contains("darcy") && e.contains("--pde"), "{e}");
    assert!(!out.exists());
    let e = usage(&["data", "gen", "--count", "2"]);
    assert!(e.contains("--out"), "the missing option is named: {e}");
    let e = usage(&["data", "gen", "--sed", "2", "--out", &s(&p("x"))]);
    assert!(e.contains("--sed") && e.contains("--seed"), "the hint is kept: {e}");
    // Unwritable output: a directory that does not exist.
    let bad_out = p("no/such/dir/u.npy");
    assert_rejected(&["data", "solve", "--field", &s(&p("ok.npy")), "--out", &s(&bad_out)], "no/such/dir", &bad_out);
    // gen: existing output is not overwritten without --force; nonsense sizes.
    std::fs::create_dir(p("taken")).unwrap();
    std::fs::write(p("taken/keep.txt"), "mine").unwrap();
    let o = ddis(&["data", "gen", "--res", "8", "--count", "2", "--out", &s(&p("taken"))]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(p("taken/keep.txt")).unwrap(), "mine");
    assert_rejected(&["data", "gen", "--res", "2", "--count", "2", "--out", &s(&p("tiny"))], "--res", &p("tiny"));
    assert_rejected(&["data", "gen", "--count", "0", "--out", &s(&p("none"))], "--count", &p("none"));
    assert_rejected(&["data", "gen", "--tau=-1", "--count", "2", "--out", &s(&p("neg_tau"))], "tau", &p("neg_tau"));
}

#[test]
fn import_turns_your_fields_into_a_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let gen_dir = p("gen");
    make_dataset(&gen_dir, "darcy", "5", "2");
    // Fields alone: ddis solves them, and gets the generator's solutions.
    let o = ddis(&["--quiet", "data", "import", "--fields", &s(&gen_dir.join("a.npy")), "--out", &s(&p("mine"))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_bytes(&p("mine"), "u.npy"), read_bytes(&gen_dir, "u.npy"), "solved u = generated u");
    let data = ddis_trainer::data::Dataset::load(&p("mine")).expect("train/eval read the imported dataset");
    assert_eq!((data.len(), data.res()), (300, 16));
    assert_eq!((data.meta.pde.darcy.a_low, data.meta.pde.darcy.a_high), (3.0, 12.0), "phases read from the fields");
    // Fields and solutions (here Poisson with made-up pairs): stored as given.
    let o = ddis(&[
        "--quiet",
        "data",
        "import",
        "--pde",
        "poisson",
        "--fields",
        &s(&gen_dir.join("u.npy")),
        "--solutions",
        &s(&gen_dir.join("a.npy")),
        "--out",
        &s(&p("pairs")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pairs = ddis_trainer::data::Dataset::load(&p("pairs")).unwrap();
    assert_eq!(pairs.meta.pde.kind.name(), "poisson");
    assert_eq!(pairs.u, data.a);

    // Bad input: one-line error, nothing written.
    let cont: Vec<f32> = (0..2 * 8 * 8).map(|k| 1.0 + (k % 5) as f32).collect();
    npy::write(&p("continuous.npy"), &[2, 8, 8], &cont).unwrap();
    npy::write(&p("flat.npy"), &[2, 8, 8], &[4.0; 128]).unwrap();
    npy::write(&p("short.npy"), &[1, 8, 8], &[4.0; 64]).unwrap();
    let mut nan = vec![0.5f32; 128];
    nan[70] = f32::NAN;
    npy::write(&p("nan.npy"), &[2, 8, 8], &nan).unwrap();
    let out = p("rejected");
    let import = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["data", "import", "--out", &s(&out)].map(String::from).to_vec();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (import(&["--fields", &s(&p("continuous.npy"))]), "third value 3"),
        (import(&["--fields", &s(&p("flat.npy"))]), "one phase"),
        (import(&["--pde", "poisson", "--fields", &s(&p("flat.npy")), "--solutions", &s(&p("short.npy"))]), "differs"),
        (import(&["--pde", "poisson", "--fields", &s(&p("flat.npy")), "--solutions", &s(&p("nan.npy"))]), "solution 1"),
        (import(&["--fields", &s(&p("nan.npy"))]), "non-finite"),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_rejected(&args, needle, &out);
    }
    // An existing dataset is kept without --force.
    let o = ddis(&["data", "import", "--fields", &s(&gen_dir.join("a.npy")), "--out", &s(&p("mine"))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"));
}
