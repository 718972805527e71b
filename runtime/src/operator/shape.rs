//! The sizes of an operator network ([`OperatorShape`]): the workspace a
//! forward pass or a vector-Jacobian product needs, the parameter count
//! and the floating-point operations, all `const` so budgets can be
//! checked at compile time (`crate::presets`).

/// The sizes of an operator network on one grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OperatorShape {
    /// Grid nodes per side.
    pub n: usize,
    /// Hidden channels.
    pub width: usize,
    /// Modes kept per axis.
    pub modes: usize,
    /// Fourier layers.
    pub layers: usize,
    /// Reflection pad on each side, in nodes.
    pub pad: usize,
    /// Hidden channels of the projection.
    pub proj_width: usize,
}

/// f32 words that hold `bits` mask bits.
pub(super) const fn words(bits: usize) -> usize {
    bits.saturating_add(31) / 32
}

impl OperatorShape {
    /// Padded side `P = n + 2 pad`.
    pub const fn padded(&self) -> usize {
        self.n.saturating_add(self.pad.saturating_mul(2))
    }

    /// Values of the padded hidden state, `P^2 width`.
    pub(super) const fn hidden_len(&self) -> usize {
        let p = self.padded();
        p.saturating_mul(p).saturating_mul(self.width)
    }

    /// Kept modes per channel, `2m * m`.
    pub(super) const fn mode_count(&self) -> usize {
        self.modes.saturating_mul(self.modes).saturating_mul(2)
    }

    /// f32 values of work memory for one forward pass:
    ///
    /// * hidden state `P^2 width`;
    /// * kept modes, real and imaginary, `2 (2m m) width`;
    /// * one row of partial transforms `2 m width`;
    /// * node scratch `2 width`, the unpacked skip matrix `width^2` and
    ///   the projection's hidden node `proj_width`.
    ///
    /// Saturates instead of overflowing (the parser bounds every size).
    pub const fn forward_workspace_len(&self) -> usize {
        let w = self.width;
        self.hidden_len()
            .saturating_add(self.mode_count().saturating_mul(w).saturating_mul(2))
            .saturating_add(self.modes.saturating_mul(w).saturating_mul(2))
            .saturating_add(w.saturating_mul(2))
            .saturating_add(w.saturating_mul(w))
            .saturating_add(self.proj_width)
    }

    /// f32 values of work memory for the vector-Jacobian product with
    /// `sensors` sensors: the forward pass's, then `layers * ceil(P^2 width
    /// / 32)` words of ReLU bits, `sensors * ceil(proj_width / 32)` words of
    /// projection bits and `sensors` predictions. Sized from the request's
    /// count, not from [`crate::MAX_SENSORS`]: a caller that sizes for the cap
    /// (the firmware's static buffer) passes the cap.
    pub const fn vjp_workspace_len(&self, sensors: usize) -> usize {
        self.forward_workspace_len()
            .saturating_add(self.layers.saturating_mul(words(self.hidden_len())))
            .saturating_add(sensors.saturating_mul(words(self.proj_width)))
            .saturating_add(sensors)
    }

    /// Trainable scalars shipped for this shape (lift, spectral, skip and
    /// projection weights and biases; not the FiLM tables).
    pub const fn params(&self) -> usize {
        let (w, p) = (self.width, self.proj_width);
        let lift = 3 * w + w;
        let layer = 2 * w * w * self.mode_count() + w * w + w;
        lift + self.layers * layer + w * p + p + p + 1
    }

    /// Floating-point operations (a multiply-add counts 2) of the lift over
    /// the padded grid.
    pub const fn lift_flops(&self) -> u64 {
        let p = self.padded() as u64;
        p * p * (3 * self.width as u64 * 2)
    }

    /// Floating-point operations of all Fourier layers, as this module
    /// computes them (the adjoint costs the same).
    pub const fn layers_flops(&self) -> u64 {
        let (p, m, w) = (self.padded() as u64, self.modes as u64, self.width as u64);
        // Column DFT, row DFT, mixing (4 real products per complex one),
        // inverse row DFT, inverse column DFT; skip and FiLM/ReLU.
        let spectral = p * p * m * w * 4
            + p * 2 * m * m * w * 8
            + 2 * m * m * w * w * 8
            + p * 2 * m * m * w * 8
            + p * p * m * w * 4;
        let pointwise = p * p * (w * w * 2 + w * 4);
        self.layers as u64 * (spectral + pointwise)
    }

    /// Floating-point operations of the projection at one node.
    pub const fn proj_node_flops(&self) -> u64 {
        let (w, q) = (self.width as u64, self.proj_width as u64);
        w * q * 2 + q * 2 + q * 2
    }

    /// Floating-point operations of one forward pass over the whole grid.
    pub const fn forward_flops(&self) -> u64 {
        let n = self.n as u64;
        self.lift_flops() + self.layers_flops() + n * n * self.proj_node_flops()
    }

    /// Floating-point operations of one vector-Jacobian product with
    /// `sensors` sensors (forward with the projection at the sensors only,
    /// then the adjoint).
    pub const fn vjp_flops(&self, sensors: usize) -> u64 {
        2 * (self.lift_flops() + self.layers_flops() + sensors as u64 * self.proj_node_flops())
    }
}
