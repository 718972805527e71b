//! What the loop does to gradients and weights beside Adam: clipping to one
//! global norm (`--grad-clip`) and the exponential moving average of the
//! weights (`--ema`).

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::scalar;

/// Scales every gradient of `model` by `min(1, max_norm / ||g||)`, where
/// `||g||` is the L2 norm of all of them together, and returns `||g||`.
/// (burn's `GradientClippingConfig::Norm` clips each parameter tensor on its
/// own, which changes the gradient's direction; the field clips globally.)
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.sum += scalar(g.square().sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares { grads, sum: 0.0 };
    model.visit(&mut sum);
    let norm = sum.sum.sqrt();
    if norm > max_norm {
        model.visit(&mut Scale { grads, factor: max_norm / norm });
    }
    norm
}

/// `decay * average + (1 - decay) * current`, parameter by parameter (the
/// two modules share one structure; parameters are paired in visiting
/// order, not by id).
pub fn ema_update<B: Backend, M: Module<B>>(average: M, current: &M, decay: f64) -> M {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            let len = t.shape().num_elements();
            self.0.push(t.reshape([len]));
        }
    }
    struct Blend<B: Backend> {
        current: std::vec::IntoIter<Tensor<B, 1>>,
        decay: f64,
    }
    impl<B: Backend> ModuleMapper<B> for Blend<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, avg, mapper) = param.consume();
            let cur = self.current.next().expect("the average and the model share one structure");
            let cur = cur.reshape(avg.shape());
            Param::from_mapped_value(id, avg.mul_scalar(self.decay) + cur.mul_scalar(1.0 - self.decay), mapper)
        }
    }
    let mut collect = Collect(Vec::new());
    current.visit(&mut collect);
    let mut blend = Blend { current: collect.0.into_iter(), decay };
    let out = average.map(&mut blend);
    debug_assert!(blend.current.next().is_none(), "the model has more parameters than its average");
    out
}
