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
use serde::{Deserialize, Serialize};

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
    /// Opens `path` for a run described by `config`. A new run needs an
    /// empty or missing directory; `resume` needs the same config (the step
    /// count may grow).
    pub fn open(path: &Path, config: &serde_json::Value, resume: bool) -> Result<Self> {
        let config_path = path.join("config.json");
        if config_path.exists() {
            if !resume {
                bail!("{} already holds a run; pass --resume to continue it or choose another --out", path.display());
            }
            let old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path)?)
                .with_context(|| format!("{} is damaged", config_path.display()))?;
            let strip = |v: &serde_json::Value| {
                let mut v = v.clone();
                if let Some(t) = v.get_mut("train").and_then(|t| t.as_object_mut()) {
                    t.remove("steps");
                }
                v
            };
            if strip(&old) != strip(config) {
                bail!(
                    "--resume with other settings than {} (only --steps may change); old: {}",
                    config_path.display(),
                    old
                );
            }
        } else if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false) {
            bail!("{} exists and is not a ddis run; choose another --out", path.display());
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&config_path, serde_json::to_string_pretty(config)? + "\n")
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        Ok(Self { path: path.to_path_buf() })
    }

    /// Opens `path` for `config` (see [`RunDir::open`]) and records `split`.
    pub fn create<K: Serialize, M: Serialize>(
        path: &Path,
        config: &RunConfig<K, M>,
        split: &Split,
        resume: bool,
    ) -> Result<Self> {
        let run = Self::open(path, &serde_json::to_value(config)?, resume)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
