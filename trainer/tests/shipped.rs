//! The shipped default artifacts (`models/darcy32.ddis`,
//! `models/poisson32.ddis`) and the main job (`ddis demo`) as a newcomer
//! runs them: each artifact parses, names its problem, fits the device
//! budget (<= 1 MiB flash, <= 256 KiB workspace) and has a model card
//! stating its size; the demo reconstructs a fresh truth through the
//! runtime and writes its panel, and refuses an artifact of another problem.

use std::path::Path;
use std::process::Command;

/// The device budget of docs/format.md / the firmware's linker script.
const FLASH_BUDGET: usize = 1024 * 1024;
const RAM_BUDGET: usize = 256 * 1024;

fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The shipped default artifacts and the problem each one is for.
const SHIPPED: [(&str, &str); 2] = [("darcy32.ddis", "darcy"), ("poisson32.ddis", "poisson")];

#[test]
fn shipped_artifacts_fit_the_device() {
    for (file, problem) in SHIPPED {
        let bytes = std::fs::read(models_dir().join(file)).expect("the default artifacts are shipped in models/");
        let art = ddis_runtime::Artifact::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((art.n(), art.problem()), (32, problem), "{file}");
        assert!(bytes.len() <= FLASH_BUDGET, "{file}: artifact {} bytes", bytes.len());
        let ws = art.workspace_bytes().expect("complete sampler artifact");
        assert!(ws <= RAM_BUDGET, "{file}: workspace {ws} bytes");
        let card = models_dir().join(file.replace(".ddis", ".md"));
        let card = std::fs::read_to_string(&card).unwrap_or_else(|_| panic!("{file} has no model card"));
        assert!(
            card.contains(&bytes.len().to_string()) || card.contains(&group_thousands(bytes.len())),
            "{file}: the model card does not state its {} bytes",
            bytes.len()
        );
    }
}

/// `611496` as the model cards write it: `611 496`.
fn group_thousands(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[test]
fn demo_runs_out_of_the_box() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    // From a folder with no models/ in it: the shipped models are found
    // beside the sources the binary was built from.
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(tmp.path())
        .env_remove("DDIS_MODELS")
        .args(["--quiet", "demo", "--samples", "1", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("relative L2 error") && stdout.contains("error rate"), "{stdout}");
    for f in ["panel.png", "mean.npy", "std.npy", "truth.npy", "readings.csv", "run.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The user's own readings: the CSV the demo wrote reads back.
    let again = tmp.path().join("again");
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--samples", "1", "--obs"])
        .arg(out.join("readings.csv"))
        .args(["--out", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(again.join("panel.png").exists());
    // A reading far outside the training range (Darcy's u is in [0, 0.018]):
    // the host warns, and the runtime refuses it as the device does.
    let far = tmp.path().join("far.csv");
    std::fs::write(&far, "x,y,value\n0.5,0.5,0.01\n0.25,0.75,5.0\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--samples", "1", "--obs"])
        .arg(&far)
        .args(["--out", tmp.path().join("far").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("lie far outside"), "the warning: {err}");
    assert!(err.contains("sensor 2 at x = ") && err.contains("outside the range the artifact accepts"), "{err}");
    assert!(!tmp.path().join("far").exists(), "nothing written");
    // The Poisson artifact through the same main job; a mismatched pair is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--pde", "poisson", "--samples", "1", "--out"])
        .arg(tmp.path().join("poisson"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("32x32 poisson"));
    let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--quiet", "demo", "--pde", "darcy", "--artifact", "models/poisson32.ddis", "--out"])
        .arg(tmp.path().join("mismatch"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is a poisson artifact"), "{err}");
    assert!(!tmp.path().join("mismatch").exists());
}

/// `models/` stays lean: the artifacts, the cards and the f32 host weights
/// together (six networks of about 1 MB today).
const MODELS_BUDGET_BYTES: u64 = 8 * 1024 * 1024;

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path).unwrap().flatten().map(|e| size_of(&e.path())).sum()
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

#[test]
fn shipped_host_weights_load_and_models_stay_lean() {
    use ddis_trainer::train::backend::Cpu;
    let host = models_dir().join("host");
    let card = std::fs::read_to_string(host.join("README.md")).expect("models/host has a card");
    let mut found = 0;
    for e in std::fs::read_dir(&host).unwrap().flatten().filter(|e| e.path().is_dir()) {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        assert!(card.contains(&name), "models/host/README.md does not describe {name}");
        assert!(dir.join("summary.json").is_file(), "{name}: no summary.json");
        assert!(!dir.join("checkpoint").exists(), "{name}: checkpoints are not shipped");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let device = Default::default();
        match cfg["kind"].as_str() {
            Some("operator") => {
                ddis_trainer::train::operator::load_operator::<Cpu>(&dir, &device).unwrap();
            }
            Some(_) => {
                ddis_trainer::train::diffusion::load_diffusion::<Cpu>(&dir, &device).unwrap();
            }
            None => panic!("{name}: config.json has no kind"),
        }
        found += 1;
    }
    assert!(found >= 2, "the shipped host models are missing ({found} found)");
    let total = size_of(&models_dir());
    assert!(total <= MODELS_BUDGET_BYTES, "models/ weighs {total} bytes, over {MODELS_BUDGET_BYTES}");
}

/// f32 round-off between the fast channels-first networks and their
/// channels-last references, relative to the largest output: the shipped
/// weights give the same fields to this tolerance whichever path runs.
const FAST_VS_REFERENCE_REL: f32 = 2e-5;

fn max_diff_and_scale(a: Vec<f32>, b: Vec<f32>) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    (diff, b.iter().fold(0.0f32, |m, y| m.max(y.abs())))
}

#[test]
fn shipped_host_weights_give_the_reference_outputs_on_the_fast_path() {
    use burn::tensor::{Distribution, Tensor};
    use ddis_trainer::train::backend::Cpu;
    let host = models_dir().join("host");
    let device = Default::default();
    let to_vec = |t: Tensor<Cpu, 4>| t.into_data().to_vec::<f32>().unwrap();
    let op = ddis_trainer::train::operator::load_operator::<Cpu>(&host.join("darcy32-op-p100"), &device).unwrap();
    let a = Tensor::<Cpu, 3>::random([4, 32, 32], Distribution::Uniform(-1.5, 1.5), &device);
    let fast = op.forward_normalized(a.clone()).unsqueeze::<4>();
    let reference = op.forward_normalized_reference(a).unsqueeze::<4>();
    let (diff, scale) = max_diff_and_scale(to_vec(fast), to_vec(reference));
    assert!(diff <= FAST_VS_REFERENCE_REL * scale, "surrogate: fast and reference differ by {diff} (scale {scale})");

    let (prior, _) =
        ddis_trainer::train::diffusion::load_diffusion::<Cpu>(&host.join("darcy32-prior"), &device).unwrap();
    let prior = prior.into_fno().unwrap();
    let x = Tensor::<Cpu, 4>::random([3, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let c_noise = Tensor::<Cpu, 1>::from_floats([-1.0, 0.0, 0.5], &device);
    let fast = prior.denoiser.forward(x.clone(), c_noise.clone());
    let reference = prior.denoiser.forward_reference(x, c_noise);
    let (diff, scale) = max_diff_and_scale(to_vec(fast), to_vec(reference));
    assert!(diff <= FAST_VS_REFERENCE_REL * scale, "prior: fast and reference differ by {diff} (scale {scale})");
}

#[test]
fn shipped_fno_prior_record_is_unchanged_by_the_generic_edm_model() {
    // `EdmModel` became generic over its network (`--arch unet`); the FNO
    // default must still read the shipped weights and write them back byte
    // for byte, so old runs, checkpoints and resumes are untouched.
    use burn::module::Module;
    use ddis_trainer::train::backend::Cpu;
    let run = models_dir().join("host").join("darcy32-prior");
    let device = Default::default();
    let (prior, _) = ddis_trainer::train::diffusion::load_diffusion::<Cpu>(&run, &device).unwrap();
    let prior = prior.into_fno().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rec = burn::record::BinFileRecorder::<burn::record::FullPrecisionSettings>::new();
    burn::record::Recorder::<Cpu>::record(&rec, prior.into_record(), tmp.path().join("model")).unwrap();
    let (old, new) =
        (std::fs::read(run.join("model.bin")).unwrap(), std::fs::read(tmp.path().join("model.bin")).unwrap());
    assert_eq!(old.len(), new.len(), "record length");
    assert!(old == new, "the re-saved record differs from the shipped one");
}
