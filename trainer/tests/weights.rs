//! Runs on another backend than the CPU start from weights drawn on the CPU
//! and moved (`train::with_cpu_weights`): the move is exact, and leaves
//! nothing of the weights the target module was built with.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ddis_trainer::model::denoiser::{DenoiserConfig, EdmConfig};
use ddis_trainer::model::fno::FnoConfig;
use ddis_trainer::train::backend::{Cpu, CpuAutodiff, is_cpu};
use ddis_trainer::train::with_cpu_weights;

/// Every float parameter of `m`, in visiting order, as raw bits.
fn param_bits<B: Backend, M: Module<B>>(m: &M) -> Vec<u32> {
    struct Collect(Vec<u32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let v = param.val().into_data().convert::<f32>().to_vec::<f32>().unwrap();
            self.0.extend(v.into_iter().map(f32::to_bits));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn cpu_drawn_weights_move_exactly() {
    let dev = Default::default();
    assert!(is_cpu::<Cpu>() && is_cpu::<CpuAutodiff>());
    let fno = FnoConfig::device();
    Cpu::seed(&dev, 5);
    let drawn = fno.init::<Cpu>(&dev);
    let want = param_bits(&drawn);
    CpuAutodiff::seed(&dev, 6);
    let moved = with_cpu_weights(fno.init::<CpuAutodiff>(&dev), drawn, &dev).unwrap();
    assert!(param_bits(&moved) == want, "surrogate weights changed in the move");
    let edm = EdmConfig::new(DenoiserConfig::device(1).into());
    Cpu::seed(&dev, 9);
    let drawn = edm.init::<Cpu>(&dev).unwrap();
    let want = param_bits(&drawn);
    let moved = with_cpu_weights(edm.init::<CpuAutodiff>(&dev).unwrap(), drawn, &dev).unwrap();
    assert!(param_bits(&moved) == want, "denoiser weights changed in the move");
}
