//! ddis patch: 2-D convolution and its two backward passes as im2col + one
//! matrix product per sample and group (issue 13: the joint U-Net).
//!
//! Upstream's `conv2d` is a direct loop (several times slower than a product
//! for the 16-64-channel 3x3 convolutions of a small U-Net on one thread), and
//! its backward passes go through `conv_transpose2d` and a permuted
//! convolution. Here, per sample `n` and group `g`:
//!
//! - forward: `cols = im2col(x[n, g])` (`[C_g kh kw, P]`, `P = h_out w_out`,
//!   zero where the window leaves the padded input), `y[n, g] = W_g cols + b`;
//! - `x` backward: `dcols = W_g^T dy[n, g]`, `dx[n, g] = col2im(dcols)` (the
//!   adjoint of im2col: each column entry added back to the input node it was
//!   read from);
//! - weight backward: `dW_g += dy[n, g] cols^T`.
//!
//! Any stride, padding, dilation and group count. The row order of `cols`,
//! `(c, i, j)`, is the weight's own `[O, C_g, kh, kw]` order, so `W_g` is the
//! weight's memory read as an `[O_g, C_g kh kw]` matrix. Upstream's direct
//! loop (`super::conv::conv2d`) stays in the crate, unused; the trainer's
//! `tests/backend_patch.rs` checks this path's output and both of its
//! gradients against a direct f64 loop over nine geometries.

use crate::{NdArrayElement, SharedArray};
use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ElementConversion;
use burn_backend::ops::ConvOptions;
use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul};

/// Sizes of one convolution, validated once.
#[derive(Clone, Copy)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    h_out: usize,
    w_out: usize,
    groups: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], options: &ConvOptions<2>) -> Self {
        let (batch, c_in, h, w) = (x[0], x[1], x[2], x[3]);
        let (c_out, kh, kw) = (weight[0], weight[2], weight[3]);
        let size = |len: usize, k: usize, axis: usize| {
            let span = options.dilation[axis] * (k - 1) + 1;
            (len + 2 * options.padding[axis]).saturating_sub(span) / options.stride[axis] + 1
        };
        Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            h_out: size(h, kh, 0),
            w_out: size(w, kw, 1),
            groups: options.groups,
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        }
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    fn og(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of `cols`: `C_g kh kw`.
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    /// Columns of `cols`: output nodes per channel.
    fn p(&self) -> usize {
        self.h_out * self.w_out
    }

    /// Output columns `[lo, hi)` whose tap `j` reads inside `0..w` along the
    /// second axis, with the input column of output column `lo`.
    fn valid(&self, tap: usize, out_len: usize, in_len: usize, axis: usize) -> (usize, usize) {
        let (s, d, p) = (self.stride[axis], self.dilation[axis], self.padding[axis]);
        let off = tap * d; // input index = o * s + off - p
        // o * s + off >= p  <=>  o >= ceil((p - off) / s)
        let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
        // o * s + off - p < in_len  <=>  o * s < in_len + p - off
        let hi = if in_len + p <= off { 0 } else { (in_len + p - off).div_ceil(s) };
        (lo.min(out_len), hi.min(out_len).max(lo.min(out_len)))
    }
}

/// `cols[(c, i, j), (y, x)] = x[c, y s + i d - p, x s + j d - p]` (0 outside)
/// for one sample and group: `x` is `[C_g, h, w]`, `cols` `[K, P]`.
fn im2col<E: NdArrayElement>(g: &Geometry, x: &[E], cols: &mut [E]) {
    let (p, zero) = (g.p(), 0.0.elem::<E>());
    for c in 0..g.cg() {
        for i in 0..g.kh {
            let (ylo, yhi) = g.valid(i, g.h_out, g.h, 0);
            for j in 0..g.kw {
                let (xlo, xhi) = g.valid(j, g.w_out, g.w, 1);
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * p..][..p];
                row.fill(zero);
                for y in ylo..yhi {
                    let sy = y * g.stride[0] + i * g.dilation[0] - g.padding[0];
                    let src = &x[(c * g.h + sy) * g.w..][..g.w];
                    let dst = &mut row[y * g.w_out..][..g.w_out];
                    if g.stride[1] == 1 {
                        let sx = xlo + j * g.dilation[1] - g.padding[1];
                        dst[xlo..xhi].copy_from_slice(&src[sx..sx + (xhi - xlo)]);
                    } else {
                        for xo in xlo..xhi {
                            dst[xo] = src[xo * g.stride[1] + j * g.dilation[1] - g.padding[1]];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c, sy, sx] += dcols[(c, i, j), (y, x)]`.
fn col2im<E: NdArrayElement>(g: &Geometry, dcols: &[E], dx: &mut [E]) {
    let p = g.p();
    for c in 0..g.cg() {
        for i in 0..g.kh {
            let (ylo, yhi) = g.valid(i, g.h_out, g.h, 0);
            for j in 0..g.kw {
                let (xlo, xhi) = g.valid(j, g.w_out, g.w, 1);
                let row = &dcols[((c * g.kh + i) * g.kw + j) * p..][..p];
                for y in ylo..yhi {
                    let sy = y * g.stride[0] + i * g.dilation[0] - g.padding[0];
                    let dst = &mut dx[(c * g.h + sy) * g.w..][..g.w];
                    let src = &row[y * g.w_out..][..g.w_out];
                    for xo in xlo..xhi {
                        let sx = xo * g.stride[1] + j * g.dilation[1] - g.padding[1];
                        dst[sx] = dst[sx] + src[xo];
                    }
                }
            }
        }
    }
}

/// The elements of `a` in standard (row-major) order.
fn standard<E: NdArrayElement>(a: &SharedArray<E>) -> Vec<E> {
    a.as_standard_layout().iter().copied().collect()
}

fn to_shared<E: NdArrayElement>(data: Vec<E>, shape: [usize; 4]) -> SharedArray<E> {
    ndarray::Array::from_shape_vec(ndarray::IxDyn(&shape), data)
        .expect("the size matches the shape")
        .into_shared()
}

/// The rows `[g og, (g + 1) og)` of the weight read as `[O, K]`.
fn weight_rows<'a, E: NdArrayElement>(g: &Geometry, weight: &'a [E], group: usize) -> ArrayView2<'a, E> {
    let (og, k) = (g.og(), g.k());
    ArrayView2::from_shape((og, k), &weight[group * og * k..][..og * k]).expect("weight block")
}

/// `y = conv2d(x, weight) + bias` (module docs).
pub(crate) fn conv2d<E: NdArrayElement>(
    x: SharedArray<E>,
    weight: SharedArray<E>,
    bias: Option<SharedArray<E>>,
    options: &ConvOptions<2>,
) -> SharedArray<E> {
    let g = Geometry::new(x.shape(), weight.shape(), options);
    let (xs, ws) = (standard(&x), standard(&weight));
    let bias = bias.map(|b| standard(&b));
    let (k, p, og, cg) = (g.k(), g.p(), g.og(), g.cg());
    let mut out = vec![0.0.elem::<E>(); g.batch * g.c_out * p];
    let mut cols = vec![0.0.elem::<E>(); k * p];
    let (one, zero) = (1.0.elem::<E>(), 0.0.elem::<E>());
    for n in 0..g.batch {
        for group in 0..g.groups {
            let x_ng = &xs[(n * g.c_in + group * cg) * g.h * g.w..][..cg * g.h * g.w];
            im2col(&g, x_ng, &mut cols);
            let out_ng = &mut out[(n * g.c_out + group * og) * p..][..og * p];
            let mut y = ArrayViewMut2::from_shape((og, p), out_ng).expect("output block");
            let c = ArrayView2::from_shape((k, p), &cols[..]).expect("cols");
            general_mat_mul(one, &weight_rows(&g, &ws, group), &c, zero, &mut y);
        }
        if let Some(b) = &bias {
            for (o, row) in out[n * g.c_out * p..][..g.c_out * p].chunks_exact_mut(p).enumerate() {
                row.iter_mut().for_each(|v| *v = *v + b[o]);
            }
        }
    }
    to_shared(out, [g.batch, g.c_out, g.h_out, g.w_out])
}

/// The gradient of `conv2d` with respect to `x` (module docs).
pub(crate) fn conv2d_x_backward<E: NdArrayElement>(
    x: SharedArray<E>,
    weight: SharedArray<E>,
    output_grad: SharedArray<E>,
    options: &ConvOptions<2>,
) -> SharedArray<E> {
    let g = Geometry::new(x.shape(), weight.shape(), options);
    let (ws, dy) = (standard(&weight), standard(&output_grad));
    let (k, p, og, cg) = (g.k(), g.p(), g.og(), g.cg());
    let mut dx = vec![0.0.elem::<E>(); g.batch * g.c_in * g.h * g.w];
    let mut dcols = vec![0.0.elem::<E>(); k * p];
    let (one, zero) = (1.0.elem::<E>(), 0.0.elem::<E>());
    for n in 0..g.batch {
        for group in 0..g.groups {
            let dy_ng = ArrayView2::from_shape((og, p), &dy[(n * g.c_out + group * og) * p..][..og * p])
                .expect("output-grad block");
            let mut dc = ArrayViewMut2::from_shape((k, p), &mut dcols[..]).expect("cols");
            general_mat_mul(one, &weight_rows(&g, &ws, group).t(), &dy_ng, zero, &mut dc);
            let dx_ng = &mut dx[(n * g.c_in + group * cg) * g.h * g.w..][..cg * g.h * g.w];
            col2im(&g, &dcols, dx_ng);
        }
    }
    to_shared(dx, [g.batch, g.c_in, g.h, g.w])
}

/// The gradient of `conv2d` with respect to the weight (module docs).
pub(crate) fn conv2d_weight_backward<E: NdArrayElement>(
    x: SharedArray<E>,
    weight: SharedArray<E>,
    output_grad: SharedArray<E>,
    options: &ConvOptions<2>,
) -> SharedArray<E> {
    let g = Geometry::new(x.shape(), weight.shape(), options);
    let (xs, dy) = (standard(&x), standard(&output_grad));
    let (k, p, og, cg) = (g.k(), g.p(), g.og(), g.cg());
    let mut dw = vec![0.0.elem::<E>(); g.c_out * k];
    let mut cols = vec![0.0.elem::<E>(); k * p];
    let one = 1.0.elem::<E>();
    for n in 0..g.batch {
        for group in 0..g.groups {
            let x_ng = &xs[(n * g.c_in + group * cg) * g.h * g.w..][..cg * g.h * g.w];
            im2col(&g, x_ng, &mut cols);
            let dy_ng = ArrayView2::from_shape((og, p), &dy[(n * g.c_out + group * og) * p..][..og * p])
                .expect("output-grad block");
            let c = ArrayView2::from_shape((k, p), &cols[..]).expect("cols");
            let mut dw_g = ArrayViewMut2::from_shape((og, k), &mut dw[group * og * k..][..og * k]).expect("grad block");
            general_mat_mul(one, &dy_ng, &c.t(), one, &mut dw_g);
        }
    }
    to_shared(dw, [g.c_out, g.cg(), g.kh, g.kw])
}
