//! Run directories and data splits.
//!
//! A run directory holds everything needed to understand and continue a
//! training run: `config.json` (model, training and data settings),
//! `split.json` (the exact sample indices), checkpoints, the final
//! `model.bin` and the loss curves.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Train / validation / test indices of a dataset, and the paired subset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Split {
    /// Seed of the permutation (independent of the training seed, so every
    /// model trained on one dataset shares one test set).
    pub split_seed: u64,
    /// Fraction of the dataset whose pairs the model may see.
    pub paired_fraction: f64,
    /// Training indices (all of them: the prior trains on every `a`).
    pub train: Vec<usize>,
    /// The paired subset: the first `round(paired_fraction * count)` training
    /// indices, so smaller fractions are nested in larger ones.
    pub paired: Vec<usize>,
    /// Validation indices (model selection and tuning).
    pub val: Vec<usize>,
    /// Test indices (reported figures only).
    pub test: Vec<usize>,
}

impl Split {
    /// Splits `count` samples: 10 % test, 5 % validation (at least one
    /// each), the rest training. `paired_fraction` is relative to `count`,
    /// as in the papers ("1 % of 10 000 samples" = 100 pairs).
    pub fn new(count: usize, split_seed: u64, paired_fraction: f64) -> Result<Self> {
        if !(paired_fraction > 0.0 && paired_fraction <= 1.0) {
            bail!("--paired-fraction must be in (0, 1], got {paired_fraction}");
        }
        if count < 3 {
            bail!("a dataset of {count} samples cannot be split into train, validation and test");
        }
        let mut order: Vec<usize> = (0..count).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(split_seed));
        let n_test = (count / 10).max(1);
        let n_val = (count / 20).max(1);
        let test = order[count - n_test..].to_vec();
        let val = order[count - n_test - n_val..count - n_test].to_vec();
        let train = order[..count - n_test - n_val].to_vec();
        let n_paired = ((paired_fraction * count as f64).round() as usize).clamp(1, train.len());
        let paired = train[..n_paired].to_vec();
        Ok(Self { split_seed, paired_fraction, train, paired, val, test })
    }
}

/// What `RUN/config.json` holds: the model kind `K` and settings `M`, the
/// data, the split and the optimisation knobs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig<K, M> {
    /// Which model (`"operator"`, `prior`, `joint`).
    pub kind: K,
    /// The dataset directory.
    pub data: String,
    /// The dataset's description.
    pub data_meta: crate::data::DatasetMeta,
    /// Seed of the split (shared by every model on the dataset).
    pub split_seed: u64,
    /// Fraction of the dataset's pairs the model may see.
    pub paired_fraction: f64,
    /// The model's hyper-parameters, normalisation included.
    pub model: M,
    /// The optimisation knobs.
    pub train: super::TrainConfig,
}

impl<K, M> RunConfig<K, M> {
    /// The record of a run of `kind`/`model` on the dataset in `data_dir`.
    pub fn new(
        kind: K,
        data_dir: &Path,
        data: &crate::data::Dataset,
        split: &Split,
        model: M,
        train: super::TrainConfig,
    ) -> Self {
        Self {
            kind,
            data: data_dir.display().to_string(),
            data_meta: data.meta.clone(),
            split_seed: split.split_seed,
            paired_fraction: split.paired_fraction,
            model,
            train,
        }
    }
}

/// A training run's directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Opens `path` for a run described by `config` and records `split`. A
    /// new run needs an empty or missing directory. `resume` needs the
    /// recorded settings; only the step count may change, and then
    /// `config.train` becomes the recorded schedule re-planned for the new
    /// count ([`TrainConfig::resumed`](super::TrainConfig::resumed)) and is
    /// recorded so.
    ///
    /// # Errors
    /// An existing run without `resume`, a folder that is not a run, or a
    /// setting that differs from the recorded one (named, with both values).
    pub fn create<K, M>(path: &Path, config: &mut RunConfig<K, M>, split: &Split, resume: bool) -> Result<Self>
    where
        K: Serialize + DeserializeOwned,
        M: Serialize + DeserializeOwned,
    {
        let config_path = path.join("config.json");
        if config_path.exists() {
            if !resume {
                bail!("{} already holds a run; pass --resume to continue it or choose another --out", path.display());
            }
            let text = std::fs::read_to_string(&config_path)?;
            // Read through the types, so keys added since the run was made
            // take their defaults instead of reading as differences.
            let old: RunConfig<K, M> = serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged or records another kind of run", config_path.display()))?;
            let differences = resume_differences(&serde_json::to_value(&old)?, &serde_json::to_value(&*config)?);
            if !differences.is_empty() {
                bail!(
                    "--resume with other settings than {} (only --steps may change): {}",
                    config_path.display(),
                    differences.join("; ")
                );
            }
            config.train = old.train.resumed(config.train.steps, super::checkpoint_step(path)?)?;
        } else if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false) {
            bail!("{} exists and is not a ddis run; choose another --out", path.display());
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        // Through a `Value`, whose keys are sorted, as every run has been written.
        std::fs::write(&config_path, serde_json::to_string_pretty(&serde_json::to_value(&*config)?)? + "\n")
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let run = Self { path: path.to_path_buf() };
        run.write_split(split)?;
        Ok(run)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the split as `split.json`.
    pub fn write_split(&self, split: &Split) -> Result<()> {
        std::fs::write(self.path.join("split.json"), serde_json::to_string(split)? + "\n")?;
        Ok(())
    }

    /// Reads a run's `config.json`.
    pub fn read_config(path: &Path) -> Result<serde_json::Value> {
        let p = path.join("config.json");
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{} is not a ddis run (no config.json)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", p.display()))
    }

    /// Reads a run's `split.json`.
    pub fn read_split(path: &Path) -> Result<Split> {
        let p = path.join("split.json");
        let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", p.display()))
    }
}

/// Keys of `config.json` that the training schedule owns: the step count
/// may change on resume, and warm-up, log interval and extensions are the
/// run's, whatever the command line would derive.
const SCHEDULE_KEYS: [&str; 4] = ["steps", "warmup", "log_every", "extensions"];

/// How a message names a key of `config.json`: by the option that sets it.
fn key_name(path: &str) -> String {
    let flag = match path {
        "data" => "--data",
        "split_seed" => "--split-seed",
        "paired_fraction" => "--paired-fraction",
        "train.batch" => "--batch",
        "train.lr" => "--lr",
        "train.seed" => "--seed",
        "train.checkpoint_every" => "--checkpoint-every",
        "train.ema" => "--ema",
        "train.grad_clip" => "--grad-clip",
        "train.augment" => "--augment",
        _ if path.starts_with("model.normalization") => return format!("{path} (fitted on the data)"),
        _ if path.starts_with("model.") => return format!("{path} (--size/--model-config)"),
        _ if path.starts_with("data_meta.") => return format!("the dataset's {path}"),
        _ => path,
    };
    flag.to_string()
}

/// How a message shows a key absent from one side: the default that
/// `config.json` leaves out, where there is one.
fn absent_value(path: &str) -> &'static str {
    match path {
        "train.ema" | "train.grad_clip" => "0 (off)",
        "train.augment" => "\"none\"",
        _ => "nothing",
    }
}

/// Every setting in which the recorded config `old` and the command line's
/// `new` differ, as `"--lr differs: run has 0.001, command line 0.002"`,
/// schedule keys aside.
fn resume_differences(old: &Value, new: &Value) -> Vec<String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(t) = v.get_mut("train").and_then(Value::as_object_mut) {
            for k in SCHEDULE_KEYS {
                t.remove(k);
            }
        }
        v
    };
    let mut out = Vec::new();
    collect_differences(&strip(old), &strip(new), "", &mut out);
    out.into_iter().map(|(path, a, b)| format!("{} differs: run has {a}, command line {b}", key_name(&path))).collect()
}

/// Appends `(path, old, new)` for each leaf where `old` and `new` differ;
/// objects are compared key by key, anything else as a whole.
fn collect_differences(old: &Value, new: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    let show = |v: Option<&Value>, at: &str| v.map_or_else(|| absent_value(at).to_string(), Value::to_string);
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => collect_differences(x, y, &sub, out),
                    (x, y) => {
                        let (x, y) = (show(x, &sub), show(y, &sub));
                        out.push((sub, x, y));
                    }
                }
            }
        }
        _ if old != new => out.push((path.to_string(), show(Some(old), path), show(Some(new), path))),
        _ => {}
    }
}

/// `preset` with the keys of the JSON object in `file` laid over it, at any
/// depth: the form of `config.json`'s `"model"`, every key optional. Keys
/// the preset lacks are errors (typos must not train the preset silently).
///
/// # Errors
/// An unreadable file, malformed JSON, an unknown key or a value of the
/// wrong type, each naming the file and the key.
pub fn model_config<T: Serialize + DeserializeOwned>(preset: &T, file: &Path) -> Result<T> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let overrides: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let mut merged = serde_json::to_value(preset)?;
    overlay(&mut merged, &overrides, "").with_context(|| format!("--model-config {}", file.display()))?;
    serde_json::from_value(merged).with_context(|| format!("--model-config {}", file.display()))
}

/// Lays `over` onto `base` key by key; each value must have the JSON type
/// of the one it replaces, so a wrong type is reported with its key.
fn overlay(base: &mut Value, over: &Value, path: &str) -> Result<()> {
    let what = if path.is_empty() { "the model config".to_string() } else { format!("`{path}`") };
    let expected = match &*base {
        Value::Object(_) if !over.is_object() => Some("an object of keys"),
        Value::Number(n) if n.is_u64() && !over.is_u64() => Some("a whole number >= 0"),
        Value::Number(_) if !over.is_number() => Some("a number"),
        Value::Bool(_) if !over.is_boolean() => Some("true or false"),
        Value::String(_) if !over.is_string() => Some("a string"),
        Value::Array(_) if !over.is_array() => Some("an array"),
        _ => None,
    };
    if let Some(expected) = expected {
        bail!("{what} must be {expected}, got {over}");
    }
    let (Value::Object(base), Value::Object(over)) = (&mut *base, over) else {
        *base = over.clone();
        return Ok(());
    };
    for (k, v) in over {
        let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        if !base.contains_key(k) {
            let known: Vec<&str> = base.keys().map(String::as_str).collect();
            bail!("unknown key `{sub}` (known here: {})", known.join(", "));
        }
        if let Some(slot) = base.get_mut(k) {
            overlay(slot, v, &sub)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_differences_name_the_option() {
        let old = serde_json::json!({
            "kind": "operator", "data": "d", "split_seed": 0,
            "model": {"width": 16, "normalization": {"a_mean": 1.0}},
            "train": {"steps": 100, "warmup": 5, "log_every": 1, "lr": 0.001, "batch": 4},
        });
        let mut new = old.clone();
        new["train"]["steps"] = 300.into();
        new["train"]["warmup"] = 15.into();
        new["train"]["log_every"] = 3.into();
        assert!(resume_differences(&old, &new).is_empty(), "the schedule may change");
        new["train"]["lr"] = 0.002.into();
        new["model"]["width"] = 8.into();
        new["model"]["normalization"]["a_mean"] = 2.0.into();
        let d = resume_differences(&old, &new);
        assert_eq!(
            d,
            [
                "model.normalization.a_mean (fitted on the data) differs: run has 1.0, command line 2.0",
                "model.width (--size/--model-config) differs: run has 16, command line 8",
                "--lr differs: run has 0.001, command line 0.002",
            ]
        );
    }

    #[test]
    fn options_left_out_of_old_configs_differ_from_their_default() {
        let old = serde_json::json!({"train": {"steps": 100, "lr": 0.001}});
        let mut new = old.clone();
        new["train"]["ema"] = 0.999.into();
        new["train"]["augment"] = "d8".into();
        assert_eq!(
            resume_differences(&old, &new),
            [
                "--augment differs: run has \"none\", command line \"d8\"",
                "--ema differs: run has 0 (off), command line 0.999",
            ]
        );
        assert_eq!(resume_differences(&new, &old)[1], "--ema differs: run has 0.999, command line 0 (off)");
    }

    #[test]
    fn model_config_overrides_preset_keys_and_names_bad_ones() {
        use crate::model::denoiser::{DenoiserConfig, EdmConfig};
        use crate::model::fno::FnoConfig;
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| {
            let p = dir.path().join("m.json");
            std::fs::write(&p, text).unwrap();
            p
        };
        let fno = model_config(&FnoConfig::device(), &file(r#"{"width": 8, "pad_fraction": 0.5}"#)).unwrap();
        let want = FnoConfig { width: 8, pad_fraction: 0.5, ..FnoConfig::device() };
        assert_eq!((fno.width, fno.modes, fno.layers, fno.pad_fraction), (want.width, want.modes, want.layers, 0.5));
        let edm = EdmConfig::new(DenoiserConfig::host(1).into());
        let got = model_config(&edm, &file(r#"{"denoiser": {"layers": 2}, "p_mean": -1}"#)).unwrap();
        assert_eq!(got.denoiser, DenoiserConfig { layers: 2, ..DenoiserConfig::host(1) }.into());
        assert_eq!(got.p_mean, -1.0);
        for (text, needle) in [
            (r#"{"widht": 8}"#, "unknown key `widht`"),
            (r#"{"width": 8.5}"#, "`width` must be a whole number"),
            (r#"{"width": "8"}"#, "`width` must be a whole number"),
            (r#"{"pad_fraction": "x"}"#, "`pad_fraction` must be a number"),
            (r#"[8]"#, "must be an object"),
            ("{", "is not JSON"),
        ] {
            let err = format!("{:#}", model_config(&FnoConfig::device(), &file(text)).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = format!("{:#}", model_config(&edm, &file(r#"{"denoiser": {"channel": 2}}"#)).unwrap_err());
        assert!(err.contains("unknown key `denoiser.channel`") && err.contains("channels"), "{err}");
    }

    #[test]
    fn split_is_a_reproducible_partition_with_nested_pairs() {
        let a = Split::new(1000, 3, 1.0).unwrap();
        let b = Split::new(1000, 3, 0.01).unwrap();
        assert_eq!(a.test, b.test);
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (850, 50, 100));
        assert_eq!(a.paired, a.train);
        assert_eq!(b.paired.len(), 10);
        assert_eq!(&a.train[..10], &b.paired[..]);
        let mut all: Vec<usize> = a.train.iter().chain(&a.val).chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_ne!(Split::new(1000, 4, 1.0).unwrap().test, a.test);
        assert!(Split::new(1000, 3, 0.0).is_err());
        assert!(Split::new(1000, 3, 1.5).is_err());
    }
}
