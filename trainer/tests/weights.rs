//! Runs draw their initial weights on the CPU and move them to the run's
//! backend (`train::with_cpu_weights`), so a GPU run starts where the CPU
//! run does. On the CPU that must change nothing: the weights, bit for bit,
//! and the CPU generator's state afterwards are those of the training code
//! before the move existed (seed, build, count the parameters, which draws
//! them in visiting order: burn initialises parameters lazily).
//!
//! burn-ndarray's generator is global to the process, so this is the only
//! test in its binary: a test drawing on another thread would interleave.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use ddis_trainer::model::denoiser::{DenoiserConfig, EdmConfig};
use ddis_trainer::model::fno::FnoConfig;
use ddis_trainer::train::backend::{Cpu, CpuAutodiff};
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

/// The generator's next draws.
fn next() -> Vec<u32> {
    let t = Tensor::<CpuAutodiff, 1>::random([8], Distribution::Default, &Default::default());
    t.into_data().to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

#[test]
fn cpu_drawn_weights_are_the_cpu_backends_own_bit_for_bit() {
    let dev = Default::default();
    for (name, fno) in [("device", FnoConfig::device()), ("host", FnoConfig::host())] {
        // Before: seed, build, count (which draws the weights).
        CpuAutodiff::seed(&dev, 5);
        let before = fno.init::<CpuAutodiff>(&dev);
        let count = before.param_count();
        let after_before = next();
        // Now: seed, build, then draw on the CPU from the same seed and move.
        CpuAutodiff::seed(&dev, 5);
        let now = fno.init::<CpuAutodiff>(&dev);
        Cpu::seed(&dev, 5);
        let now = with_cpu_weights(now, fno.init::<Cpu>(&dev), &dev).unwrap();
        let after_now = next();
        assert_eq!(now.param_count(), count);
        assert!(param_bits(&before) == param_bits(&now), "surrogate ({name}) weights differ");
        assert_eq!(after_before, after_now, "the generator after the surrogate's ({name}) weights");
    }
    for (name, den) in [("device", DenoiserConfig::device(1)), ("host", DenoiserConfig::host(2))] {
        let edm = EdmConfig::new(den);
        CpuAutodiff::seed(&dev, 9);
        let before = edm.init::<CpuAutodiff>(&dev).unwrap();
        let count = before.denoiser.param_count();
        let after_before = next();
        CpuAutodiff::seed(&dev, 9);
        let now = edm.init::<CpuAutodiff>(&dev).unwrap();
        Cpu::seed(&dev, 9);
        let now = with_cpu_weights(now, edm.init::<Cpu>(&dev).unwrap(), &dev).unwrap();
        let after_now = next();
        assert_eq!(now.denoiser.param_count(), count);
        assert!(param_bits(&before) == param_bits(&now), "denoiser ({name}) weights differ");
        assert_eq!(after_before, after_now, "the generator after the denoiser's ({name}) weights");
    }
}
