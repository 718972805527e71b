//! The networks' weights in the runtime's layout (`ddis_runtime::operator`
//! reads what this writes): transposed to one row per output channel, the
//! spectral weights regrouped per mode, int8 rows quantised with the
//! runtime's own `quantize_row`, and the DFT twiddles folded in f64.

use anyhow::{Result, ensure};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use ddis_runtime::artifact::{Bytes, LinearParams, OperatorParams, Weights};
use ddis_runtime::kernels::quantize_row;
use ddis_runtime::operator::OperatorShape;

use super::{Quant, le_bytes, values};
use crate::model::trunk::FnoBlocks;

/// Owned bytes of one weight matrix (row-major, rows = output channels).
struct OwnedWeights {
    values: Vec<u8>,
    q: Vec<u8>,
    scales: Vec<u8>,
    quant: Quant,
}

impl OwnedWeights {
    fn new(w: &[f32], rows: usize, cols: usize, quant: Quant) -> Self {
        debug_assert_eq!(w.len(), rows * cols);
        match quant {
            Quant::F32 => Self { values: le_bytes(w), q: vec![], scales: vec![], quant },
            Quant::Int8 => {
                let mut q = vec![0u8; rows * cols];
                let scales: Vec<f32> = w
                    .chunks_exact(cols.max(1))
                    .zip(q.chunks_exact_mut(cols.max(1)))
                    .map(|(row, q)| quantize_row(row, q))
                    .collect();
                Self { values: vec![], q, scales: le_bytes(&scales), quant }
            }
        }
    }

    fn weights(&self) -> Weights<'_> {
        match self.quant {
            Quant::F32 => Weights::F32 { values: Bytes(&self.values) },
            Quant::Int8 => Weights::I8 { q: Bytes(&self.q), scales: Bytes(&self.scales) },
        }
    }
}

/// Owned bytes of a (possibly stacked) linear layer.
struct OwnedLinear {
    inputs: usize,
    outputs: usize,
    w: OwnedWeights,
    bias: Vec<u8>,
}

impl OwnedLinear {
    /// Stacks `layers` (each `inputs -> outputs_each`) into one layer whose
    /// rows are `layer * outputs_each + o`.
    fn stack<B: Backend>(layers: &[&Linear<B>], inputs: usize, quant: Quant, what: &str) -> Result<Self> {
        let (mut w, mut bias) = (Vec::new(), Vec::new());
        let mut outputs = 0;
        for l in layers {
            let [din, dout] = l.weight.dims();
            ensure!(din == inputs, "{what}: expected {inputs} inputs, the layer has {din}");
            let wt = values(l.weight.val())?; // [in, out] row-major
            for o in 0..dout {
                w.extend((0..din).map(|i| wt[i * dout + o]));
            }
            match &l.bias {
                Some(b) => bias.extend(values(b.val())?),
                None => bias.extend(std::iter::repeat_n(0.0, dout)),
            }
            outputs += dout;
        }
        Ok(Self { inputs, outputs, w: OwnedWeights::new(&w, outputs, inputs, quant), bias: le_bytes(&bias) })
    }

    fn params(&self) -> LinearParams<'_> {
        LinearParams {
            inputs: self.inputs as u32,
            outputs: self.outputs as u32,
            weight: self.w.weights(),
            bias: Bytes(&self.bias),
        }
    }
}

/// Owned bytes of one operator network.
pub(super) struct OwnedNet {
    shape: OperatorShape,
    lift: OwnedLinear,
    spectral: OwnedWeights,
    skip: OwnedLinear,
    proj_hidden: OwnedLinear,
    proj_out: OwnedLinear,
    twiddle: Vec<u8>,
}

/// The parts of an FNO-type network that the runtime's operator ships.
pub(super) struct NetParts<'m, B: Backend> {
    pub(super) lift: &'m Linear<B>,
    /// The trunk: spectral convolutions and skips, one pair per block.
    pub(super) blocks: &'m FnoBlocks<B>,
    pub(super) proj_hidden: &'m Linear<B>,
    pub(super) proj_out: &'m Linear<B>,
    pub(super) modes: usize,
    pub(super) pad: usize,
}

/// `cos(2 pi j / p)` for `j < p`, then `sin(2 pi j / p)`, in f64 rounded
/// once. The phase index is exact, as in `model::spectral`.
fn twiddle(p: usize) -> Vec<f32> {
    let tau = std::f64::consts::TAU;
    let cos = (0..p).map(|j| (tau * j as f64 / p as f64).cos() as f32);
    let sin = (0..p).map(|j| (tau * j as f64 / p as f64).sin() as f32);
    cos.chain(sin).collect()
}

impl OwnedNet {
    pub(super) fn new<B: Backend>(parts: NetParts<'_, B>, n: usize, quant: Quant, what: &str) -> Result<Self> {
        let layers = parts.blocks.spectral.len();
        ensure!(
            layers >= 1 && parts.blocks.skip.len() == layers,
            "{what}: {layers} spectral layers, {} skips",
            parts.blocks.skip.len()
        );
        let width = parts.lift.weight.dims()[1];
        let m = parts.modes;
        let proj_width = parts.proj_hidden.weight.dims()[1];
        ensure!(parts.proj_out.weight.dims()[1] == 1, "{what}: the device networks have one output channel");
        let lift = OwnedLinear::stack(&[parts.lift], 3, quant, what)?;
        ensure!(lift.outputs == width, "{what}: lift shape");
        // Spectral weights [in, out, 2m, m] -> rows ((l 2m + r) m + k2) width + o,
        // columns re(i) for i < width, then im(i).
        let mut spec = Vec::with_capacity(layers * 2 * m * m * width * 2 * width);
        for (l, sc) in parts.blocks.spectral.iter().enumerate() {
            let dims = sc.weight_re.dims();
            ensure!(
                dims == [width, width, 2 * m, m],
                "{what}: spectral layer {l} has weights {dims:?}, expected [{width}, {width}, {}, {m}]",
                2 * m
            );
            let (wr, wi) = (values(sc.weight_re.val())?, values(sc.weight_im.val())?);
            let at = |i: usize, o: usize, r: usize, k2: usize| ((i * width + o) * 2 * m + r) * m + k2;
            for r in 0..2 * m {
                for k2 in 0..m {
                    for o in 0..width {
                        spec.extend((0..width).map(|i| wr[at(i, o, r, k2)]));
                        spec.extend((0..width).map(|i| wi[at(i, o, r, k2)]));
                    }
                }
            }
        }
        let skip_refs: Vec<&Linear<B>> = parts.blocks.skip.iter().collect();
        let shape = OperatorShape { n, width, modes: m, layers, pad: parts.pad, proj_width };
        Ok(Self {
            shape,
            lift,
            spectral: OwnedWeights::new(&spec, layers * 2 * m * m * width, 2 * width, quant),
            skip: OwnedLinear::stack(&skip_refs, width, quant, what)?,
            proj_hidden: OwnedLinear::stack(&[parts.proj_hidden], width, quant, what)?,
            proj_out: OwnedLinear::stack(&[parts.proj_out], proj_width, quant, what)?,
            twiddle: le_bytes(&twiddle(shape.padded())),
        })
    }

    pub(super) fn params(&self) -> OperatorParams<'_> {
        let s = self.shape;
        OperatorParams {
            width: s.width as u32,
            modes: s.modes as u32,
            layers: s.layers as u32,
            pad: s.pad as u32,
            proj_width: s.proj_width as u32,
            lift: self.lift.params(),
            spectral: self.spectral.weights(),
            skip: self.skip.params(),
            proj_hidden: self.proj_hidden.params(),
            proj_out: self.proj_out.params(),
            twiddle: Bytes(&self.twiddle),
        }
    }
}
