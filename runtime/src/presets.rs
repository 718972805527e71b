//! The shapes of the 32 x 32 Darcy device models (trainer presets
//! `FnoConfig::device()` and `DenoiserConfig::device(1)` at n = 32) and the
//! compile-time check that their sampler fits the RAM budget.

use crate::operator::OperatorShape;
use crate::sampler;

/// The device surrogate at n = 32: width 16, 8 modes, 4 layers, pad
/// `round(0.25 n) = 8`, projection 64.
pub const DARCY32_FNO: OperatorShape = OperatorShape { n: 32, width: 16, modes: 8, layers: 4, pad: 8, proj_width: 64 };

/// The device prior's denoiser at n = 32: width 16, 8 modes, 4 layers,
/// pad `round(0.125 n) = 4`, projection 32.
pub const DARCY32_PRIOR: OperatorShape =
    OperatorShape { n: 32, width: 16, modes: 8, layers: 4, pad: 4, proj_width: 32 };

/// f32 workspace of the reduced-step DAPS sampler for these models at the
/// sensor cap.
pub const DARCY32_WORKSPACE_LEN: usize =
    sampler::langevin_surrogate_workspace_len(32, DARCY32_FNO, DARCY32_PRIOR, crate::MAX_SENSORS);

/// The device RAM budget for the workspace (256 KiB, `firmware/memory.x`).
pub const WORKSPACE_BUDGET_BYTES: usize = 256 * 1024;

const _: () = assert!(DARCY32_WORKSPACE_LEN * 4 <= WORKSPACE_BUDGET_BYTES);
