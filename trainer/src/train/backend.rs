//! Backend choice: burn-ndarray on the CPU by default, burn-cuda in a build
//! with the `cuda` feature. Each command is generic over the backend; this
//! module turns `--backend` into a concrete type and a device.

use anyhow::Result;

/// The compute backend of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-ndarray on the CPU (threads from `--threads`).
    Ndarray,
    /// burn-cuda on the first GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Tells glibc's allocator to keep freed memory for reuse instead of
/// returning it to the kernel (call first thing in `main`, before other
/// threads exist). burn-ndarray allocates a fresh buffer for every tensor;
/// with glibc's defaults a training step's large buffers were mapped and
/// unmapped each time, and the page faults of re-mapping them cost about a
/// fifth of a step (issue 16). Buffers up to 32 MiB (glibc's ceiling for
/// this knob) now come from the heap, and up to 1 GiB of free heap is kept;
/// the peak memory is unchanged. A no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// The CPU backend with gradients.
pub type CpuAutodiff = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
/// The CPU backend without gradients.
pub type Cpu = burn::backend::NdArray<f32>;

/// The CUDA backend with gradients.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;

/// Checks that a CUDA device answers before any real work: burn-cuda
/// panics on the first tensor operation when no driver or GPU is present,
/// and that must become an error, not a crash.
#[cfg(feature = "cuda")]
pub fn cuda_device() -> Result<burn::backend::cuda::CudaDevice> {
    use burn::tensor::Tensor;
    let device = burn::backend::cuda::CudaDevice::default();
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(move || {
        let t = Tensor::<burn::backend::Cuda<f32, i32>, 1>::ones([4], &probe);
        t.sum().into_scalar()
    });
    std::panic::set_hook(hook);
    match ok {
        Ok(v) if v == 4.0 => Ok(device),
        _ => anyhow::bail!("--backend cuda: no usable CUDA device (is the NVIDIA driver installed and a GPU visible?)"),
    }
}

/// Without the `cuda` feature, `--backend cuda` is an error that says how to
/// get it.
#[cfg(not(feature = "cuda"))]
pub fn cuda_unavailable() -> Result<()> {
    anyhow::bail!(
        "--backend cuda: this ddis was built without CUDA; rebuild with `cargo build --release -p ddis-trainer --features cuda`"
    )
}
