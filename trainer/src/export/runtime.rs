//! The runtime's sampler on the host: the very code the device runs, on an
//! artifact's bytes, refusing what the device refuses.

use anyhow::{Context, Result, anyhow, ensure};
use ddis_runtime::sampler::{self, SampleStats};
use ddis_runtime::{Artifact, Error as RuntimeError, Grid, Sensors};

use crate::observe::Observations;

/// What [`runtime_posterior`] returns.
#[derive(Clone, Debug)]
pub struct RuntimePosterior {
    /// Pointwise posterior mean, physical units, `n * n`.
    pub mean: Vec<f32>,
    /// Pointwise posterior standard deviation (population), `n * n`.
    pub std: Vec<f32>,
    /// The sampler's counters, summed over the samples.
    pub stats: SampleStats,
}

/// Runs the runtime's reduced-step DAPS on the host: `samples` posterior
/// samples from `seed` for the readings `obs` (nodes and noise level as
/// given), reduced to mean and std. Bit-identical to the device run, and
/// refuses what the device refuses: a reading outside the artifact's range
/// (`DataParams::reading_range`) is an error naming the sensor as the
/// host's warnings do (1-based, with its position), the range and the rule.
pub fn runtime_posterior(bytes: &[u8], obs: &Observations, samples: usize, seed: u64) -> Result<RuntimePosterior> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact: {e}"))?;
    ensure!(obs.n == art.n(), "readings on a {0}x{0} grid, the artifact is for {1}x{1}", obs.n, art.n());
    let mut sensors = Sensors::new(Grid::new(art.n())?);
    for (k, (&node, &value)) in obs.nodes.iter().zip(&obs.values).enumerate() {
        sensors.push_node(node, value as f32).with_context(|| format!("sensor {k}"))?;
    }
    let need = art.workspace_len().ok_or_else(|| anyhow!("the artifact lacks a section the sampler needs"))?;
    let mut ws = vec![0.0f32; need];
    let n2 = art.n() * art.n();
    let (mut mean, mut std) = (vec![0.0f32; n2], vec![0.0f32; n2]);
    let stats = sampler::posterior(&art, &sensors, obs.noise_sigma as f32, seed, samples, &mut mean, &mut std, &mut ws)
        .map_err(|e| match e {
            RuntimeError::ReadingOutOfRange { index, value, min, max } if index < obs.len() => {
                let (x, y) = obs.xy(index);
                let d = art.data();
                anyhow!(
                    "sensor {} at x = {x:.3}, y = {y:.3} reads {value:.4e}, outside the range the artifact accepts, \
                     [{min:.4e}, {max:.4e}] (its training data's u in [{:.4e}, {:.4e}], widened by {} range-width \
                     and {} noise levels on each side): check the units and the problem",
                    index + 1,
                    d.u_min,
                    d.u_max,
                    ddis_runtime::artifact::READING_MARGIN,
                    ddis_runtime::artifact::NOISE_MARGIN
                )
            }
            e => anyhow!(e),
        })?;
    Ok(RuntimePosterior { mean, std, stats })
}

/// [`runtime_posterior`] without the counters: `(mean, std)`.
pub fn runtime_reconstruct(
    bytes: &[u8],
    obs: &Observations,
    samples: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let p = runtime_posterior(bytes, obs, samples, seed)?;
    Ok((p.mean, p.std))
}
