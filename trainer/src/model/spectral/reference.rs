//! The reference spectral convolution: channels-last, real and imaginary
//! parts as separate products, the bases as plain cos/sin tables
//! ([`SpectralBases`]). Slower than the block layout of the parent module's
//! fast path; kept beside it because every fast path is tested against it.

use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{SpectralConv2d, check_grid, column_weight, phase_h, phase_w, table};

/// Cos/sin bases of the truncated DFT for one `H x W` grid, as tensors.
///
/// Built in f64 and rounded once to the backend's float type. Build one set
/// per grid size and share it across layers ([`SpectralConv2d::forward_with`]).
#[derive(Clone, Debug)]
pub struct SpectralBases<B: Backend> {
    /// Rows of the grid.
    pub h: usize,
    /// Columns of the grid.
    pub w: usize,
    /// Modes kept per axis (`m`).
    pub modes: usize,
    /// `[W, m]`: `cos(2π k2 w / W)`.
    fwd_w_cos: Tensor<B, 2>,
    /// `[W, m]`: `-sin(2π k2 w / W)`.
    fwd_w_nsin: Tensor<B, 2>,
    /// `[H, 2m]`: `cos(2π k1 h / H)`.
    fwd_h_cos: Tensor<B, 2>,
    /// `[H, 2m]`: `-sin(2π k1 h / H)`.
    fwd_h_nsin: Tensor<B, 2>,
    /// `[2m, H]`: `cos(2π k1 h / H)`.
    inv_h_cos: Tensor<B, 2>,
    /// `[2m, H]`: `sin(2π k1 h / H)`.
    inv_h_sin: Tensor<B, 2>,
    /// `[m, W]`: `c(k2) cos(2π k2 w / W) / (H W)`.
    inv_w_cos: Tensor<B, 2>,
    /// `[m, W]`: `-c(k2) sin(2π k2 w / W) / (H W)`.
    inv_w_nsin: Tensor<B, 2>,
}

impl<B: Backend> SpectralBases<B> {
    /// Bases for an `h x w` grid keeping `modes` modes per axis.
    ///
    /// # Panics
    /// If the grid cannot carry the modes ([`check_grid`]); validate sizes
    /// at the edge with [`check_grid`] or `FnoConfig::min_resolution`.
    pub fn new(h: usize, w: usize, modes: usize, device: &B::Device) -> Self {
        if let Err(e) = check_grid(h, w, modes) {
            panic!("SpectralBases::new({h}, {w}, {modes}): {e}");
        }
        let m = modes;
        let (phase_w, phase_h) = (phase_w(w), phase_h(h, m));
        let scale = 1.0 / (h * w) as f64;
        Self {
            h,
            w,
            modes,
            fwd_w_cos: table(w, m, device, |x, k| phase_w(x, k).cos()),
            fwd_w_nsin: table(w, m, device, |x, k| -phase_w(x, k).sin()),
            fwd_h_cos: table(h, 2 * m, device, |y, r| phase_h(y, r).cos()),
            fwd_h_nsin: table(h, 2 * m, device, |y, r| -phase_h(y, r).sin()),
            inv_h_cos: table(2 * m, h, device, |r, y| phase_h(y, r).cos()),
            inv_h_sin: table(2 * m, h, device, |r, y| phase_h(y, r).sin()),
            inv_w_cos: table(m, w, device, |k, x| column_weight(k, w) * scale * phase_w(x, k).cos()),
            inv_w_nsin: table(m, w, device, |k, x| -column_weight(k, w) * scale * phase_w(x, k).sin()),
        }
    }
}

impl<B: Backend> SpectralConv2d<B> {
    /// Applies the layer to `x: [batch, H, W, in]`, building the bases for
    /// this grid size.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, h, w, _] = x.dims();
        let bases = SpectralBases::new(h, w, self.modes, &x.device());
        self.forward_with(&bases, x)
    }

    /// Applies the layer with precomputed bases; returns `[batch, H, W, out]`.
    ///
    /// # Panics
    /// If the bases were built for another grid or mode count, or the
    /// channel count differs from the weights'.
    pub fn forward_with(&self, bases: &SpectralBases<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let m = self.modes;
        let k1 = 2 * m;
        let c_out = self.out_channels();
        assert_eq!((bases.h, bases.w, bases.modes), (h, w, m), "spectral bases built for another grid");
        assert_eq!(c, self.in_channels(), "input channels differ from the weights'");

        // 1. Real -> complex along w: [b, h, c, w] @ [w, m].
        let xt = x.swap_dims(2, 3).reshape([b * h * c, w]);
        let to_rows = |t: Tensor<B, 2>| {
            // [b*h*c, m] -> [b, c, m, h] -> [b*c*m, h]
            t.reshape([b, h, c, m]).permute([0, 2, 3, 1]).reshape([b * c * m, h])
        };
        let xr = to_rows(xt.clone().matmul(bases.fwd_w_cos.clone()));
        let xi = to_rows(xt.matmul(bases.fwd_w_nsin.clone()));

        // 2. Complex DFT along h: (xr + i xi)(cos - i sin) -> [b*c*m, 2m].
        let zr = xr.clone().matmul(bases.fwd_h_cos.clone()) - xi.clone().matmul(bases.fwd_h_nsin.clone());
        let zi = xi.matmul(bases.fwd_h_cos.clone()) + xr.matmul(bases.fwd_h_nsin.clone());

        // 3. Per-mode complex channel mixing as one batched real product:
        //    [zr | zi] @ [[Wr, Wi], [-Wi, Wr]] = [yr | yi].
        let modes_first = |t: Tensor<B, 2>| {
            // [b*c*m, 2m] -> [b, c, m, 2m] -> [2m, m, b, c] -> [2m*m, b, c]
            t.reshape([b, c, m, k1]).permute([3, 2, 0, 1]).reshape([k1 * m, b, c])
        };
        let z = Tensor::cat(vec![modes_first(zr), modes_first(zi)], 2);
        let weights_modes_first = |p: &Param<Tensor<B, 4>>| {
            // [c, o, 2m, m] -> [2m, m, c, o] -> [2m*m, c, o]
            p.val().permute([2, 3, 0, 1]).reshape([k1 * m, c, c_out])
        };
        let wr = weights_modes_first(&self.weight_re);
        let wi = weights_modes_first(&self.weight_im);
        let w_big =
            Tensor::cat(vec![Tensor::cat(vec![wr.clone(), wi.clone()], 2), Tensor::cat(vec![wi.neg(), wr], 2)], 1);
        let y = z.matmul(w_big); // [2m*m, b, 2*out]
        let back = |t: Tensor<B, 3>| {
            // [2m*m, b, o] -> [2m, m, b, o] -> [b, o, m, 2m] -> [b*o*m, 2m]
            t.reshape([k1, m, b, c_out]).permute([2, 3, 1, 0]).reshape([b * c_out * m, k1])
        };
        let yr = back(y.clone().narrow(2, 0, c_out));
        let yi = back(y.narrow(2, c_out, c_out));

        // 4. Inverse complex DFT along h: (yr + i yi)(cos + i sin) -> [b*o*m, h].
        let vr = yr.clone().matmul(bases.inv_h_cos.clone()) - yi.clone().matmul(bases.inv_h_sin.clone());
        let vi = yi.matmul(bases.inv_h_cos.clone()) + yr.matmul(bases.inv_h_sin.clone());

        // 5. Complex -> real along w, weighted by c(k2) / (H W).
        let to_cols = |t: Tensor<B, 2>| {
            // [b*o*m, h] -> [b, o, m, h] -> [b, h, o, m] -> [b*h*o, m]
            t.reshape([b, c_out, m, h]).permute([0, 3, 1, 2]).reshape([b * h * c_out, m])
        };
        let out = to_cols(vr).matmul(bases.inv_w_cos.clone()) + to_cols(vi).matmul(bases.inv_w_nsin.clone());
        out.reshape([b, h, c_out, w]).swap_dims(2, 3)
    }
}
