//! The diffusion prior's EDM denoiser on the device (float twin:
//! `trainer::model::denoiser`): `D(x; s) = c_skip x + c_out N(c_in x)` at
//! one of the schedule's levels, whose `c_*` and FiLM tables the host
//! folded into the artifact (the device never evaluates the noise
//! embedding, so it needs no `sin`, `cos` or `ln`).

use crate::Error;
use crate::operator::{Operator, OperatorShape};
use crate::schedule::Level;
use crate::validate::{finite, operator, positive};
use crate::wire::PriorParams;

/// The prior's network, normalisation and `sigma_data`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prior<'a> {
    net: Operator<'a>,
    mean: f32,
    std: f32,
    sigma_data: f32,
}

impl<'a> Prior<'a> {
    pub(crate) fn from_params(p: &PriorParams<'a>, n: usize) -> Result<Self, Error> {
        Ok(Self {
            net: operator(&p.net, n)?,
            mean: finite(p.mean, "prior.mean")?,
            std: positive(p.std, "prior.std")?,
            sigma_data: positive(p.sigma_data, "prior.sigma_data")?,
        })
    }

    /// The network.
    pub fn net(&self) -> &Operator<'a> {
        &self.net
    }

    /// The shape of the network.
    pub fn shape(&self) -> OperatorShape {
        self.net.shape()
    }

    /// `(mean, std)` of the field: physical `a = x * std + mean`.
    pub fn normalization(&self) -> (f32, f32) {
        (self.mean, self.std)
    }

    /// EDM `sigma_data`.
    pub fn sigma_data(&self) -> f32 {
        self.sigma_data
    }

    /// f32 workspace of [`denoise`](Self::denoise).
    pub fn workspace_len(&self) -> usize {
        self.net.shape().forward_workspace_len()
    }

    /// `out = D(x; sigma_level)` for a normalised field `x` (`n * n` each).
    pub fn denoise(&self, level: &Level<'_>, x: &[f32], out: &mut [f32], ws: &mut [f32]) -> Result<(), Error> {
        self.trace(level, x, out, ws, |_, _| {})
    }

    /// [`denoise`](Self::denoise) that also hands `stage(k, h)` the padded
    /// hidden state (`P x P x width`, channels-last) after the lift
    /// (`k = 0`) and after each layer (`k = l + 1`).
    pub fn trace(
        &self,
        level: &Level<'_>,
        x: &[f32],
        out: &mut [f32],
        ws: &mut [f32],
        mut stage: impl FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        let s = self.net.shape();
        let n2 = s.n * s.n;
        for (field, len) in [("x", x.len()), ("out", out.len())] {
            if len != n2 {
                return Err(Error::BufferLength { field, expected: n2, got: len });
            }
        }
        let film = level.film();
        if film.len() != s.layers * 2 * s.width {
            return Err(Error::ShapeMismatch { field: "film", expected: s.layers * 2 * s.width, got: film.len() });
        }
        let mut ws = self.net.split(ws, None)?;
        let (c_in, c_skip, c_out) = (level.c_in, level.c_skip, level.c_out);
        self.net.lift(x, |v| v * c_in, &mut ws);
        stage(0, ws.h);
        for l in 0..s.layers {
            self.net.layer(l, &mut ws, film.slice(l * 2 * s.width, 2 * s.width), false);
            stage(l + 1, ws.h);
        }
        self.net.project_all(&mut ws, out, |k, net| x[k] * c_skip + net * c_out);
        Ok(())
    }
}
