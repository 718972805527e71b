//! The training hyper-parameters (`TrainConfig`, written to `RUN/config.json`)
//! and the learning-rate schedule they define: linear warm-up, cosine decay
//! to a floor, and its re-planning when `--resume` changes `--steps`.
//!
//! Plain serde rather than burn's `#[derive(Config)]`: its serde twin drops
//! field attributes, so the options added later (`extensions`, `ema`,
//! `grad_clip`, `augment`) would become required keys, which every run
//! recorded before them lacks (`missing field`), and new runs would record
//! them even when off. Here they default when absent and stay out when off.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::train::augment::Augment;

/// The learning rate every decay ends at, as a fraction of the peak `--lr`.
pub const LR_FLOOR: f64 = 0.01;

/// Knobs of the optimisation loop, written to `RUN/config.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate (Adam).
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    /// Seed of the initial weights, the split, the batches and the noise.
    pub seed: u64,
    /// Steps between checkpoints (a final one is always written).
    pub checkpoint_every: usize,
    /// Steps between validation evaluations (0: only at checkpoints).
    pub log_every: usize,
    /// Every change of `--steps` on `--resume`, oldest first; empty for a run
    /// that kept its first step count (and absent from its `config.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    /// Decay of the exponential moving average of the weights (`--ema`; 0:
    /// off, and absent from `config.json`). With it, validation and the
    /// final `model.bin` use the average (see [`TrainConfig::ema_decay`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ema: f64,
    /// Largest global L2 norm of the gradient, all parameters together
    /// (`--grad-clip`; 0: no clipping, and absent from `config.json`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grad_clip: f64,
    /// Augmentation of the training samples (`--augment`; absent from
    /// `config.json` when none).
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A change of the step count on `--resume`: the cosine decay is re-planned
/// from step `at` on (see [`TrainConfig::lr_at`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extension {
    /// The step the run had reached (its checkpoint) when `--steps` changed.
    pub at: usize,
    /// The step count before the change.
    pub from_steps: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch: 16,
            lr: 1e-3,
            warmup: 50,
            seed: 0,
            checkpoint_every: 500,
            log_every: 50,
            extensions: Vec::new(),
            ema: 0.0,
            grad_clip: 0.0,
            augment: Augment::None,
        }
    }
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based): linear warm-up over
    /// `warmup` steps, then cosine decay from `lr` to the floor `0.01 lr` at
    /// the run's first step count. A pure function of the config, so resumed
    /// runs follow the same schedule.
    ///
    /// Each [`Extension`] re-plans the rest of the decay from its knot
    /// `k = max(at, warmup)` to the new end `N`:
    /// `lr(t) = floor + (lr_before(k) - floor) (1 + cos(pi (t - k) / (N - k))) / 2`
    /// for `t >= k`, where `lr_before` is the schedule before the extension.
    /// The curve is continuous at `k`, still ends at the floor, and the steps
    /// before `k` keep the rates they trained with.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        // The fraction (1 + cos(pi x)) / 2 still to go of a decay from
        // `knot` to `end`.
        let remaining = |knot: usize, end: usize, t: usize| {
            let span = (end.saturating_sub(knot)).max(1) as f64;
            let x = ((t - knot) as f64 / span).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * x).cos())
        };
        let floor = LR_FLOOR * self.lr;
        let ends: Vec<usize> = self.extensions.iter().map(|e| e.from_steps).chain([self.steps]).collect();
        // (knot, end, rate at the knot); `None` is the first decay, kept in
        // its original form so runs without extensions train bit for bit as
        // before.
        let mut segment = (self.warmup, ends[0], None);
        let rate = |(knot, end, start): (usize, usize, Option<f64>), t: usize| match start {
            None => self.lr * (LR_FLOOR + (1.0 - LR_FLOOR) * remaining(knot, end, t)),
            Some(start) => floor + (start - floor) * remaining(knot, end, t),
        };
        for (e, &end) in self.extensions.iter().zip(&ends[1..]) {
            let knot = e.at.max(self.warmup);
            if step < knot {
                break;
            }
            segment = (knot, end, Some(rate(segment, knot)));
        }
        rate(segment, step)
    }

    /// The training knobs of a run recorded as `self` that resumes from a
    /// checkpoint at step `reached` with `--steps steps`: the recorded
    /// schedule, with an [`Extension`] at `reached` if the step count
    /// changes. Extensions at or after `reached` have not trained a step yet
    /// (their session was killed before a checkpoint), so they are re-planned
    /// rather than stacked.
    ///
    /// # Errors
    /// `steps` below `reached`: those steps are already trained.
    pub fn resumed(&self, steps: usize, reached: usize) -> Result<Self> {
        anyhow::ensure!(
            steps >= reached,
            "--steps {steps} is below step {reached}, which the run has already reached; pass --steps {reached} or more"
        );
        let mut cfg = self.clone();
        while let Some(e) = cfg.extensions.last().copied().filter(|e| e.at >= reached) {
            cfg.steps = e.from_steps;
            cfg.extensions.pop();
        }
        if steps != cfg.steps {
            cfg.extensions.push(Extension { at: reached, from_steps: cfg.steps });
            cfg.steps = steps;
        }
        Ok(cfg)
    }

    /// The decay of the weight average after `updates` optimiser steps:
    /// `min(ema, (1 + updates) / (10 + updates))`. The ramp keeps the
    /// random initial weights from lingering in the average of a short run
    /// (at decay 0.999 they would still weigh 5 % after 3000 steps); it is a
    /// pure function of the step, so resumed runs average alike.
    pub fn ema_decay(&self, updates: usize) -> f64 {
        self.ema.min((1 + updates) as f64 / (10 + updates) as f64)
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.steps >= 1, "--steps must be at least 1");
        anyhow::ensure!(self.batch >= 1, "--batch must be at least 1");
        anyhow::ensure!(self.lr.is_finite() && self.lr > 0.0, "--lr must be positive, got {}", self.lr);
        anyhow::ensure!(self.checkpoint_every >= 1, "--checkpoint-every must be at least 1");
        anyhow::ensure!(
            (0.0..1.0).contains(&self.ema),
            "--ema must be in [0, 1) (0 turns it off; 0.999 is usual), got {}",
            self.ema
        );
        anyhow::ensure!(
            self.grad_clip.is_finite() && self.grad_clip >= 0.0,
            "--grad-clip must be >= 0 (0 turns it off), got {}",
            self.grad_clip
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_one_percent() {
        let cfg = TrainConfig { steps: 1000, warmup: 100, lr: 1e-3, ..TrainConfig::default() };
        assert!((cfg.lr_at(0) - 1e-5).abs() < 1e-12);
        assert!((cfg.lr_at(99) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(100) - 1e-3).abs() < 1e-12);
        assert!((cfg.lr_at(1000) - 1e-5).abs() < 1e-12);
        assert!(cfg.lr_at(400) > cfg.lr_at(800));
    }

    /// Relative plus absolute tolerance of schedule values computed two ways.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs() + 1e-18
    }

    #[test]
    fn schedule_without_extensions_is_bit_for_bit_the_original() {
        // The formula runs trained with before extensions existed: resuming
        // them must replay the same rates exactly.
        let original = |c: &TrainConfig, step: usize| {
            if step < c.warmup {
                return c.lr * (step + 1) as f64 / c.warmup as f64;
            }
            let span = (c.steps.saturating_sub(c.warmup)).max(1) as f64;
            let t = ((step - c.warmup) as f64 / span).min(1.0);
            c.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
        };
        for (steps, warmup, lr) in [(6, 1, 1e-3), (2000, 100, 1e-3), (12000, 200, 3e-4), (7, 50, 2e-3)] {
            let c = TrainConfig { steps, warmup, lr, ..TrainConfig::default() };
            for step in 0..steps + 5 {
                assert_eq!(c.lr_at(step).to_bits(), original(&c, step).to_bits(), "{steps}/{warmup} at step {step}");
            }
        }
    }

    #[test]
    fn extension_continues_the_decay_from_the_resume_step() {
        let c = TrainConfig { steps: 1000, warmup: 50, lr: 1e-3, ..TrainConfig::default() };
        let e = c.resumed(2000, 600).unwrap();
        assert_eq!(e.extensions, [Extension { at: 600, from_steps: 1000 }]);
        assert_eq!(e.steps, 2000);
        for step in 0..600 {
            assert_eq!(e.lr_at(step).to_bits(), c.lr_at(step).to_bits(), "trained step {step} changed its rate");
        }
        assert_eq!(e.lr_at(600).to_bits(), c.lr_at(600).to_bits(), "the knot must keep the old rate");
        // Cosine from lr(600) down to the floor at 2000.
        let floor = LR_FLOOR * c.lr;
        let mid = floor + (c.lr_at(600) - floor) * 0.5;
        assert!(close(e.lr_at(1300), mid), "{} vs {mid}", e.lr_at(1300));
        assert!(close(e.lr_at(2000), floor));
        assert!((600..2000).all(|t| e.lr_at(t + 1) <= e.lr_at(t)), "the decay must not rise");
        // The jump at the knot is no larger than the old schedule's own step.
        let jump = |f: &TrainConfig, t: usize| (f.lr_at(t) - f.lr_at(t - 1)).abs() / f.lr_at(t - 1);
        assert!(jump(&e, 600) <= jump(&c, 600) * (1.0 + 1e-12));
    }

    #[test]
    fn extensions_stack_replan_and_start_in_warm_up() {
        let c = TrainConfig { steps: 1000, warmup: 50, lr: 1e-3, ..TrainConfig::default() };
        let floor = LR_FLOOR * c.lr;
        // A second extension forks the first one's decay.
        let e1 = c.resumed(2000, 600).unwrap();
        let e2 = e1.resumed(3000, 1500).unwrap();
        assert_eq!(e2.extensions.len(), 2);
        assert!((0..=1500).all(|t| e2.lr_at(t).to_bits() == e1.lr_at(t).to_bits()));
        assert!(close(e2.lr_at(3000), floor));
        // Re-resuming at the same count changes nothing; an extension that
        // never trained a step is re-planned, not stacked.
        assert_eq!(e2.resumed(3000, 1700).unwrap(), e2);
        assert_eq!(e1.resumed(1000, 600).unwrap(), c);
        assert_eq!(e1.resumed(2500, 600).unwrap().extensions, [Extension { at: 600, from_steps: 1000 }]);
        // A finished run continues at the floor.
        let done = c.resumed(1500, 1000).unwrap();
        assert!((1000..1500).all(|t| close(done.lr_at(t), floor)));
        // Resumed in the warm-up: the warm-up ends as planned, then one cosine
        // to the new end.
        let early = c.resumed(2000, 10).unwrap();
        let fresh = TrainConfig { steps: 2000, ..c.clone() };
        assert!((0..=2000).all(|t| close(early.lr_at(t), fresh.lr_at(t))));
        // Shorter than the step reached: an error naming --steps.
        let err = c.resumed(500, 600).unwrap_err().to_string();
        assert!(err.contains("--steps 500") && err.contains("600"), "{err}");
    }

    #[test]
    fn old_train_configs_parse_and_new_ones_look_the_same() {
        let old =
            r#"{"batch":16,"checkpoint_every":1000,"log_every":60,"lr":0.001,"seed":0,"steps":6000,"warmup":200}"#;
        let c: TrainConfig = serde_json::from_str(old).unwrap();
        assert!(c.extensions.is_empty());
        assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::from_str::<serde_json::Value>(old).unwrap());
        let e = c.resumed(9000, 3000).unwrap();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    /// The runs shipped in models/host load, and write back the very keys
    /// and values they were recorded with.
    #[test]
    fn shipped_run_configs_load_and_write_back_the_same_keys() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/host");
        let mut runs = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join("config.json");
            if !path.is_file() {
                continue;
            }
            let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let cfg: TrainConfig = serde_json::from_value(run["train"].clone()).unwrap();
            assert_eq!(serde_json::to_value(&cfg).unwrap(), run["train"], "{}", path.display());
            runs += 1;
        }
        assert!(runs >= 1, "no shipped run in {dir}");
    }

    #[test]
    fn new_options_stay_out_of_old_configs_and_are_checked() {
        let c = TrainConfig::default();
        let v = serde_json::to_value(&c).unwrap();
        for key in ["ema", "grad_clip", "augment"] {
            assert!(v.get(key).is_none(), "{key} written for a run without it");
        }
        let on = TrainConfig { ema: 0.999, grad_clip: 1.0, augment: Augment::D8, ..c.clone() };
        let v = serde_json::to_value(&on).unwrap();
        assert_eq!(
            (v["ema"].as_f64(), v["grad_clip"].as_f64(), v["augment"].as_str()),
            (Some(0.999), Some(1.0), Some("d8"))
        );
        assert_eq!(serde_json::from_value::<TrainConfig>(v).unwrap(), on);
        for (bad, needle) in [
            (TrainConfig { ema: 1.0, ..c.clone() }, "--ema"),
            (TrainConfig { ema: -0.1, ..c.clone() }, "--ema"),
            (TrainConfig { grad_clip: -1.0, ..c.clone() }, "--grad-clip"),
            (TrainConfig { grad_clip: f64::NAN, ..c.clone() }, "--grad-clip"),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
