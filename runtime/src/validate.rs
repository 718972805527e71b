//! From wire types to validated views: every shape, size and value check
//! the kernels rely on, done once at parse time. The network code
//! (`fno.rs`, `denoiser.rs`) calls these from its own
//! `from_params`; past them the inner loops cannot fail.

use crate::Error;
use crate::kernels::{F32s, Linear, Matrix};
use crate::operator::{Operator, OperatorShape};
use crate::wire::{LinearParams, OperatorParams, Weights};
pub(crate) use crate::wire::{checked_product, finite, positive};

/// Largest hidden width accepted.
pub const MAX_WIDTH: usize = 256;
/// Largest projection width accepted.
pub const MAX_PROJ_WIDTH: usize = 1024;
/// Largest number of Fourier layers accepted.
pub const MAX_LAYERS: usize = 32;
/// Largest mode count accepted.
pub const MAX_MODES: usize = 128;

fn dim(field: &'static str, value: u32, min: usize, max: usize) -> Result<usize, Error> {
    let v = value as usize;
    if v < min || v > max {
        return Err(Error::DimOutOfRange { field, value: v, min, max });
    }
    Ok(v)
}

pub(crate) fn matrix<'a>(w: &Weights<'a>, rows: usize, cols: usize, field: &'static str) -> Result<Matrix<'a>, Error> {
    match *w {
        Weights::F32 { values } => Matrix::f32(values.0, rows, cols, field),
        Weights::I8 { q, scales } => Matrix::i8(q.0, scales.0, rows, cols, field),
    }
}

pub(crate) fn linear<'a>(
    p: &LinearParams<'a>,
    inputs: usize,
    outputs: usize,
    field: &'static str,
) -> Result<Linear<'a>, Error> {
    if p.inputs as usize != inputs {
        return Err(Error::ShapeMismatch { field, expected: inputs, got: p.inputs as usize });
    }
    if p.outputs as usize != outputs {
        return Err(Error::ShapeMismatch { field, expected: outputs, got: p.outputs as usize });
    }
    Linear::new(matrix(&p.weight, outputs, inputs, field)?, p.bias.0, field)
}

/// Validates an operator network for an `n x n` grid.
pub(crate) fn operator<'a>(p: &OperatorParams<'a>, n: usize) -> Result<Operator<'a>, Error> {
    let width = dim("width", p.width, 1, MAX_WIDTH)?;
    let modes = dim("modes", p.modes, 1, MAX_MODES)?;
    let layers = dim("layers", p.layers, 1, MAX_LAYERS)?;
    let proj_width = dim("proj_width", p.proj_width, 1, MAX_PROJ_WIDTH)?;
    let pad = dim("pad", p.pad, 0, n.saturating_sub(1))?;
    let big = n + 2 * pad;
    // Both row blocks of modes must fit and no column mode pass Nyquist.
    if 2 * modes > big || modes > big / 2 + 1 {
        return Err(Error::DimOutOfRange { field: "modes", value: modes, min: 1, max: (big / 2).min(big / 2 + 1) });
    }
    let shape = OperatorShape { n, width, modes, layers, pad, proj_width };
    let lift = linear(&p.lift, 3, width, "lift")?;
    let spectral_rows = checked_product(&[layers, 2 * modes, modes, width], "spectral")?;
    let spectral = matrix(&p.spectral, spectral_rows, 2 * width, "spectral")?;
    let skip = linear(&p.skip, width, layers * width, "skip")?;
    let proj_hidden = linear(&p.proj_hidden, width, proj_width, "proj_hidden")?;
    let proj_out = linear(&p.proj_out, proj_width, 1, "proj_out")?;
    let twiddle = F32s::new(p.twiddle.0, 2 * big, "twiddle")?;
    Ok(Operator::new(shape, lift, spectral, skip, proj_hidden, proj_out, twiddle))
}
