//! The patched burn-ndarray (vendor/burn-ndarray, vendor/README.md) against
//! plain references: the im2col convolution and its two backward passes
//! against a direct seven-fold loop (any stride, padding, dilation, groups,
//! bias, non-square fields), the one-pass sigmoid against its formula in
//! f64, and the fixed-rank slice, slice-assign and concatenate on strided
//! (permuted) inputs against element-wise index arithmetic.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, TensorData, activation};

type B = NdArray<f32>;
type AB = Autodiff<B>;

/// f32 round-off of a sum of `terms` products of O(1) values, relative to
/// the largest magnitude involved.
fn f32_tol(terms: usize) -> f32 {
    4.0 * f32::EPSILON * terms as f32
}

fn values<const D: usize, BB: burn::tensor::backend::Backend>(t: Tensor<BB, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// One convolution's sizes.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
}

impl Case {
    fn out(&self) -> [usize; 2] {
        let o = |len: usize, a: usize| {
            (len + 2 * self.padding[a] - self.dilation[a] * (self.k[a] - 1) - 1) / self.stride[a] + 1
        };
        [o(self.h, 0), o(self.w, 1)]
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(self.stride, self.padding, self.dilation, self.groups)
    }
}

/// The direct loop: `y = conv(x, w) + b`, and for an output gradient `dy`
/// the two adjoints `dx`, `dw` from the same visit of every (output,
/// input, tap) triple, in f64. Indices, not iterators: the loop is the
/// reference and reads as the formula.
#[allow(clippy::needless_range_loop)]
fn direct(case: &Case, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [ho, wo] = case.out();
    let (cg, og) = (case.c_in / case.groups, case.c_out / case.groups);
    let [kh, kw] = case.k;
    let mut y = vec![0.0; case.batch * case.c_out * ho * wo];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..case.batch {
        for o in 0..case.c_out {
            let g = o / og;
            for yo in 0..ho {
                for xo in 0..wo {
                    let yi = ((n * case.c_out + o) * ho + yo) * wo + xo;
                    let mut acc = if case.bias { b[o] as f64 } else { 0.0 };
                    for c in 0..cg {
                        let ci = g * cg + c;
                        for i in 0..kh {
                            for j in 0..kw {
                                let sy =
                                    (yo * case.stride[0] + i * case.dilation[0]) as isize - case.padding[0] as isize;
                                let sx =
                                    (xo * case.stride[1] + j * case.dilation[1]) as isize - case.padding[1] as isize;
                                if sy < 0 || sx < 0 || sy >= case.h as isize || sx >= case.w as isize {
                                    continue;
                                }
                                let xi = ((n * case.c_in + ci) * case.h + sy as usize) * case.w + sx as usize;
                                let wi = ((o * cg + c) * kh + i) * kw + j;
                                acc += w[wi] as f64 * x[xi] as f64;
                                dx[xi] += w[wi] as f64 * dy[yi] as f64;
                                dw[wi] += x[xi] as f64 * dy[yi] as f64;
                            }
                        }
                    }
                    y[yi] = acc;
                }
            }
        }
    }
    (y, dx, dw)
}

fn assert_close(name: &str, case: &Case, got: &[f32], want: &[f64], terms: usize) {
    assert_eq!(got.len(), want.len(), "{name} {case:?}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(worst <= f32_tol(terms) as f64 * scale, "{name} {case:?}: max error {worst:e} (scale {scale:e})");
}

#[test]
fn convolution_and_its_gradients_match_the_direct_loop() {
    let base = Case {
        batch: 2,
        c_in: 4,
        c_out: 6,
        h: 9,
        w: 7,
        k: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    };
    let cases = [
        base,
        Case { bias: false, ..base },
        Case { k: [1, 1], padding: [0, 0], ..base },
        Case { stride: [2, 1], ..base },
        Case { stride: [2, 3], padding: [2, 0], ..base },
        Case { dilation: [2, 1], padding: [2, 1], ..base },
        Case { groups: 2, ..base },
        Case { k: [3, 2], padding: [0, 1], h: 5, w: 11, ..base },
        Case { padding: [3, 3], ..base },
    ];
    let device = Default::default();
    for case in cases {
        let [ho, wo] = case.out();
        let x =
            Tensor::<AB, 4>::random([case.batch, case.c_in, case.h, case.w], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let cg = case.c_in / case.groups;
        let w =
            Tensor::<AB, 4>::random([case.c_out, cg, case.k[0], case.k[1]], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let b = Tensor::<AB, 1>::random([case.c_out], Distribution::Normal(0.0, 1.0), &device);
        let dy = Tensor::<AB, 4>::random([case.batch, case.c_out, ho, wo], Distribution::Normal(0.0, 1.0), &device);
        let y = conv2d(x.clone(), w.clone(), case.bias.then(|| b.clone()), case.options());
        assert_eq!(y.dims(), [case.batch, case.c_out, ho, wo], "{case:?}");
        let grads = (y.clone() * dy.clone()).sum().backward();
        let (gx, gw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());

        let (yr, dxr, dwr) =
            direct(&case, &values(x.inner()), &values(w.inner()), &values(b.inner()), &values(dy.inner()));
        let taps = cg * case.k[0] * case.k[1];
        assert_close("forward", &case, &values(y.inner()), &yr, taps + 1);
        assert_close("x backward", &case, &values(gx), &dxr, case.c_out * case.k[0] * case.k[1]);
        assert_close("weight backward", &case, &values(gw), &dwr, case.batch * ho * wo);
    }
}

#[test]
fn sigmoid_is_the_logistic_function_and_saturates_without_nan() {
    let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.25).chain([f32::MAX, f32::MIN, 1e-30, -1e-30]).collect();
    let device = Default::default();
    let got = values(activation::sigmoid(Tensor::<B, 1>::from_floats(xs.as_slice(), &device)));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / (1.0 + (-(*x as f64)).exp());
        assert!((*g as f64 - want).abs() <= 2.0 * f32::EPSILON as f64, "sigmoid({x}) = {g}, want {want}");
    }
    let silu = values(activation::silu(Tensor::<B, 1>::from_floats([-1e4f32, 0.0, 1e4], &device)));
    assert_eq!(silu, vec![-0.0, 0.0, 1e4]);
}

#[test]
fn fixed_rank_slice_assign_and_concatenate_follow_the_indices() {
    let device = Default::default();
    let dims = [2usize, 3, 4, 5];
    let data: Vec<f32> = (0..120).map(|v| v as f32).collect();
    // A permuted (strided) input: t[a, b, c, d] = base[a, c, b, d].
    let base = Tensor::<B, 4>::from_data(TensorData::new(data.clone(), [2, 4, 3, 5]), &device);
    let t = base.swap_dims(1, 2);
    assert_eq!(t.dims(), dims);
    let at = |a: usize, b: usize, c: usize, d: usize| data[((a * 4 + c) * 3 + b) * 5 + d];

    // slice (narrow on two axes)
    let s = t.clone().narrow(2, 1, 2).narrow(3, 2, 3);
    let sv = values(s.clone());
    let mut k = 0;
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..2 {
                for d in 0..3 {
                    assert_eq!(sv[k], at(a, b, c + 1, d + 2), "slice at {a} {b} {c} {d}");
                    k += 1;
                }
            }
        }
    }

    // concatenate along axis 1 of a strided and a contiguous tensor
    let other = Tensor::<B, 4>::from_data(TensorData::new(vec![-1.0f32; 2 * 2 * 4 * 5], [2, 2, 4, 5]), &device);
    let cat = values(Tensor::cat(vec![t.clone(), other], 1));
    let mut k = 0;
    for a in 0..2 {
        for b in 0..5 {
            for c in 0..4 {
                for d in 0..5 {
                    let want = if b < 3 { at(a, b, c, d) } else { -1.0 };
                    assert_eq!(cat[k], want, "cat at {a} {b} {c} {d}");
                    k += 1;
                }
            }
        }
    }

    // slice_assign of the strided block back into zeros
    let zeros = Tensor::<B, 4>::zeros(dims, &device);
    let assigned = values(zeros.slice_assign([0..2, 0..3, 1..3, 2..5], s));
    let mut k = 0;
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                for d in 0..5 {
                    let inside = (1..3).contains(&c) && (2..5).contains(&d);
                    assert_eq!(assigned[k], if inside { at(a, b, c, d) } else { 0.0 }, "assign at {a} {b} {c} {d}");
                    k += 1;
                }
            }
        }
    }
}
