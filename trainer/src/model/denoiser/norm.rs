//! The per-channel data normalisation of a diffusion model.

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::Error;

/// Per-channel normalisation `(x - mean) / std`, stored in the model config
/// so that it is written next to every artifact (the runtime needs it).
///
/// Empty vectors mean the identity for any channel count.
#[derive(Config, Debug, PartialEq)]
pub struct ChannelNorm {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Standard deviation of each channel (> 0).
    pub std: Vec<f64>,
}

impl ChannelNorm {
    /// The identity mapping (mean 0, std 1) for any channel count.
    pub fn identity() -> Self {
        Self::new(Vec::new(), Vec::new())
    }

    /// Statistics of `data`, laid out `[samples, channels, n * n]` row-major,
    /// pooled over samples and nodes per channel, in f64. A constant channel
    /// gets std 1 rather than 0.
    pub fn fit(data: &[f32], channels: usize, n: usize) -> Result<Self, Error> {
        let field = n * n * channels;
        if field == 0 {
            return Err(Error::InvalidConfig {
                name: "normalization.fit",
                value: 0.0,
                reason: "channels and n must be >= 1",
            });
        }
        if data.is_empty() || !data.len().is_multiple_of(field) {
            return Err(Error::ShapeMismatch {
                field: "data",
                // The nearest whole number of samples (at least one).
                expected: field * (data.len() / field).max(1),
                got: data.len(),
            });
        }
        let (mut mean, mut std) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
        for c in 0..channels {
            let values = || data.chunks_exact(n * n).skip(c).step_by(channels).flatten().map(|&v| f64::from(v));
            let count = (data.len() / channels) as f64;
            let m = values().sum::<f64>() / count;
            let var = values().map(|v| (v - m) * (v - m)).sum::<f64>() / count;
            mean.push(m);
            std.push(if var.sqrt() > 1e-12 * m.abs().max(1.0) { var.sqrt() } else { 1.0 });
        }
        Ok(Self::new(mean, std))
    }

    /// Checks that both vectors are empty or have `channels` entries, and
    /// that every std is finite and positive.
    pub fn validate(&self, channels: usize) -> Result<(), Error> {
        for (name, len) in [("normalization.mean", self.mean.len()), ("normalization.std", self.std.len())] {
            if (len != 0 && len != channels) || self.mean.len() != self.std.len() {
                return Err(Error::ShapeMismatch { field: name, expected: channels, got: len });
            }
        }
        if let Some(&bad) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::InvalidConfig {
                name: "normalization.std",
                value: bad,
                reason: "must be finite and > 0",
            });
        }
        Ok(())
    }

    /// `(mean, std)` of channel `c` (identity when empty).
    pub fn channel(&self, c: usize) -> (f64, f64) {
        (self.mean.get(c).copied().unwrap_or(0.0), self.std.get(c).copied().unwrap_or(1.0))
    }

    /// Physical -> normalised, `[batch, C, n, n]`.
    pub fn normalize<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (mean, std) = self.broadcast::<B>(x.dims()[1], &x.device());
        (x - mean) / std
    }

    /// Normalised -> physical, `[batch, C, n, n]`.
    pub fn denormalize<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (mean, std) = self.broadcast::<B>(x.dims()[1], &x.device());
        x * std + mean
    }

    /// Physical -> normalised in place on host fields laid out
    /// `[samples, channels, field_len]`.
    pub fn normalize_slice(&self, data: &mut [f32], channels: usize, field_len: usize) {
        self.map_slice(data, channels, field_len, |v, m, s| (v - m) / s);
    }

    /// Normalised -> physical in place (inverse of
    /// [`normalize_slice`](Self::normalize_slice)).
    pub fn denormalize_slice(&self, data: &mut [f32], channels: usize, field_len: usize) {
        self.map_slice(data, channels, field_len, |v, m, s| v * s + m);
    }

    fn map_slice(&self, data: &mut [f32], channels: usize, field_len: usize, f: impl Fn(f64, f64, f64) -> f64) {
        for (k, field) in data.chunks_mut(field_len.max(1)).enumerate() {
            let (m, s) = self.channel(k % channels.max(1));
            for v in field {
                *v = f(f64::from(*v), m, s) as f32;
            }
        }
    }

    /// Mean and std as `[1, C, 1, 1]` tensors.
    fn broadcast<B: Backend>(&self, channels: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (mean, std): (Vec<f32>, Vec<f32>) =
            (0..channels).map(|c| self.channel(c)).map(|(m, s)| (m as f32, s as f32)).unzip();
        (
            Tensor::from_data(TensorData::new(mean, [1, channels, 1, 1]), device),
            Tensor::from_data(TensorData::new(std, [1, channels, 1, 1]), device),
        )
    }
}
