//! Backend choice: burn-ndarray on the CPU by default, burn-cuda in a build
//! with the `cuda` feature. Each command is generic over the backend; this
//! module turns `--backend` and `--gpu` into a checked device, and says what
//! failed, library by library, when CUDA does not start.

use anyhow::Result;

/// The compute backend of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn-ndarray on the CPU (threads from `--threads`).
    #[value(alias = "ndarray")]
    Cpu,
    /// burn-cuda on a GPU, with kernel fusion and autotuning (needs a build
    /// with `--features cuda`, the NVIDIA driver and NVRTC).
    Cuda,
    /// burn-cuda without kernel fusion: the speed comparison of
    /// `scripts/gpu-check.sh`.
    #[value(hide = true)]
    CudaUnfused,
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

/// Whether `B` is burn-ndarray (with or without gradients).
pub fn is_cpu<B: burn::tensor::backend::Backend>() -> bool {
    use std::any::TypeId;
    TypeId::of::<B>() == TypeId::of::<Cpu>() || TypeId::of::<B>() == TypeId::of::<CpuAutodiff>()
}

/// The CUDA backend without gradients: burn-cuda with kernel fusion.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
/// The CUDA backend without kernel fusion (what [`Cuda`] fuses).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// A CUDA device (`CudaDevice::new(index)`).
#[cfg(feature = "cuda")]
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// A backend picked on the command line and checked: for CUDA, a device
/// that has run a kernel. `on_backend!` turns it into a type.
#[derive(Clone, Debug)]
pub enum Selected {
    /// burn-ndarray.
    Cpu,
    /// burn-cuda with fusion on this device.
    #[cfg(feature = "cuda")]
    Cuda(CudaDevice),
    /// burn-cuda without fusion on this device.
    #[cfg(feature = "cuda")]
    CudaUnfused(CudaDevice),
}

/// Checks `--backend` and `--gpu` and, for CUDA, starts the device.
pub fn select(kind: BackendKind, gpu: Option<usize>) -> Result<Selected> {
    match kind {
        BackendKind::Cpu => {
            anyhow::ensure!(gpu.is_none(), "--gpu picks a CUDA device: pass --backend cuda with it");
            Ok(Selected::Cpu)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(Selected::Cuda(cuda_device(gpu.unwrap_or(0))?)),
        #[cfg(feature = "cuda")]
        BackendKind::CudaUnfused => Ok(Selected::CudaUnfused(cuda_device(gpu.unwrap_or(0))?)),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda | BackendKind::CudaUnfused => Err(cuda_unavailable()),
    }
}

/// Runs `$body` with `$B` the backend (without gradients; wrap it in
/// `Autodiff<$B>` where gradients are needed) and `$device` its device, as
/// picked by `--backend` / `--gpu` (a generic function cannot be passed as
/// a value, so each command names its call once and this expands it per
/// backend).
macro_rules! on_backend {
    ($kind:expr, $gpu:expr, |$B:ident, $device:ident| $body:expr) => {
        match $crate::train::backend::select($kind, $gpu)? {
            $crate::train::backend::Selected::Cpu => {
                type $B = $crate::train::backend::Cpu;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::train::backend::Selected::Cuda(d) => {
                type $B = $crate::train::backend::Cuda;
                let $device = d;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::train::backend::Selected::CudaUnfused(d) => {
                type $B = $crate::train::backend::CudaUnfused;
                let $device = d;
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// Without the `cuda` feature, `--backend cuda` is an error that says how to
/// get it.
#[cfg(not(feature = "cuda"))]
pub fn cuda_unavailable() -> anyhow::Error {
    anyhow::anyhow!(
        "--backend cuda: this ddis was built without CUDA; rebuild it with `cargo build --release -p ddis-trainer --features cuda` (needs no GPU to build; the NVIDIA driver and NVRTC to run)"
    )
}

/// One shared library CUDA needs, as the dynamic loader found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryProbe {
    /// What the library is, for the message (`the NVIDIA driver (libcuda)`).
    pub what: &'static str,
    /// Where it comes from and how to get it, shown when it is missing.
    pub hint: &'static str,
    /// The name that loaded, if one did.
    pub loaded: Option<String>,
    /// Each name tried before (or instead of) that, with the loader's error.
    pub failures: Vec<(String, String)>,
}

/// The NVIDIA driver's library and NVRTC, each probed under every name
/// cudarc (which burn-cuda loads CUDA through) tries, in its order.
#[cfg(feature = "cuda")]
pub fn probe_cuda_libraries() -> Vec<LibraryProbe> {
    let probe = |what, hint, lib: &str| {
        let mut failures = Vec::new();
        for name in cudarc::get_lib_name_candidates(lib) {
            // SAFETY: loading runs the library's initialisers; these are
            // the libraries cubecl itself loads next, under the same names.
            match unsafe { libloading::Library::new(&name) } {
                Ok(_) => return LibraryProbe { what, hint, loaded: Some(name), failures },
                Err(e) => failures.push((name, e.to_string())),
            }
        }
        LibraryProbe { what, hint, loaded: None, failures }
    };
    vec![probe(DRIVER, DRIVER_HINT, "cuda"), probe(NVRTC, NVRTC_HINT, "nvrtc")]
}

/// [`LibraryProbe::what`] of the driver library.
pub const DRIVER: &str = "the NVIDIA driver (libcuda)";
/// [`LibraryProbe::hint`] of the driver library.
pub const DRIVER_HINT: &str = "it comes with the NVIDIA driver, not the CUDA toolkit: install the driver (`nvidia-smi` must list the GPU); in a container, start it with the GPU exposed (e.g. `docker run --gpus all`)";
/// [`LibraryProbe::what`] of NVRTC.
pub const NVRTC: &str = "NVRTC, CUDA's run-time compiler (libnvrtc)";
/// [`LibraryProbe::hint`] of NVRTC.
pub const NVRTC_HINT: &str = "the driver alone is not enough: burn compiles its kernels at run time with NVRTC, which comes with the CUDA toolkit (or the `nvidia-cuda-nvrtc` wheel); put the folder holding libnvrtc.so.* (e.g. /usr/local/cuda/lib64) on LD_LIBRARY_PATH";

/// Starts CUDA device `index` and runs one kernel on it (a sum, so NVRTC
/// compiles something): burn-cuda panics on the first operation when the
/// driver, NVRTC or the GPU is missing, and that must become an error that
/// says what failed, not a crash or a guess.
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> Result<CudaDevice> {
    use burn::tensor::Tensor;
    use std::sync::{Arc, Mutex};
    let libraries = probe_cuda_libraries();
    let ld_path = std::env::var("LD_LIBRARY_PATH").ok();
    if libraries.iter().any(|l| l.loaded.is_none()) {
        anyhow::bail!(cuda_start_error(index, &[], &libraries, ld_path.as_deref()));
    }
    let device = CudaDevice::new(index);
    let probe = device.clone();
    // Every panic message while the probe runs (cubecl may fail on another
    // thread and this one then sees only a closed channel), not printed.
    let panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = panics.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut v) = sink.lock() {
            v.push(format!("{}{at}", panic_text(info.payload())));
        }
    }));
    let result = std::panic::catch_unwind(move || {
        let t = Tensor::<CudaUnfused, 1>::ones([4], &probe);
        t.sum().into_scalar()
    });
    std::panic::set_hook(hook);
    let panics = panics.lock().map(|v| v.clone()).unwrap_or_default();
    match result {
        Ok(4.0) => Ok(device),
        Ok(v) => anyhow::bail!(
            "--backend cuda: GPU {index} started but summed four ones to {v}: the device or its driver is broken"
        ),
        Err(payload) => {
            let mut messages = panics;
            if messages.is_empty() {
                messages.push(panic_text(&*payload));
            }
            anyhow::bail!(cuda_start_error(index, &messages, &libraries, ld_path.as_deref()))
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The error of a CUDA device that did not start: what CUDA said (its panic
/// messages), then each library: the name it loaded from, or every name
/// tried with the loader's reason. Names the loader simply did not find are
/// listed together; any other reason (a wrong architecture, a missing
/// symbol, no permission) is shown in full, since it is the real cause.
pub fn cuda_start_error(index: usize, panics: &[String], libraries: &[LibraryProbe], ld_path: Option<&str>) -> String {
    let mut s = format!("--backend cuda: CUDA did not start on GPU {index}");
    match panics {
        [] => s.push_str(" (a library it needs does not load; nothing was run)"),
        [one] => s.push_str(&format!(": {one}")),
        many => {
            s.push(':');
            for m in many {
                s.push_str(&format!("\n  {m}"));
            }
        }
    }
    for lib in libraries {
        match &lib.loaded {
            Some(name) => s.push_str(&format!("\n  {}: loaded {name}", lib.what)),
            None => {
                s.push_str(&format!("\n  {}: does not load", lib.what));
                let (absent, other): (Vec<_>, Vec<_>) =
                    lib.failures.iter().partition(|(_, e)| e.contains("No such file or directory"));
                for (name, e) in &other {
                    s.push_str(&format!("\n    {name}: {e}"));
                }
                if !absent.is_empty() {
                    let names: Vec<&str> = absent.iter().map(|(n, _)| n.as_str()).collect();
                    s.push_str(&format!("\n    not found: {}", names.join(", ")));
                }
                s.push_str(&format!("\n    ({})", lib.hint));
            }
        }
    }
    if libraries.iter().any(|l| l.loaded.is_none()) {
        s.push_str(&format!("\n  LD_LIBRARY_PATH={}", ld_path.unwrap_or("(not set)")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(what: &'static str, hint: &'static str, names: &[&str]) -> LibraryProbe {
        LibraryProbe {
            what,
            hint,
            loaded: None,
            failures: names
                .iter()
                .map(|n| (n.to_string(), format!("{n}: cannot open shared object file: No such file or directory")))
                .collect(),
        }
    }

    #[test]
    fn a_missing_driver_is_named_with_every_name_tried() {
        let libs = [missing(DRIVER, DRIVER_HINT, &["libcuda.so", "libcuda.so.1"])];
        let got = cuda_start_error(0, &[], &libs, None);
        let want = format!(
            "--backend cuda: CUDA did not start on GPU 0 (a library it needs does not load; nothing was run)\n  \
             {DRIVER}: does not load\n    not found: libcuda.so, libcuda.so.1\n    ({DRIVER_HINT})\n  LD_LIBRARY_PATH=(not set)"
        );
        assert_eq!(got, want, "got:\n{got}\nwant:\n{want}");
    }

    #[test]
    fn a_loader_reason_other_than_absence_is_shown_in_full() {
        let mut nvrtc = missing(NVRTC, NVRTC_HINT, &["libnvrtc.so"]);
        let odd = "libnvrtc.so.12: wrong ELF class: ELFCLASS32".to_string();
        nvrtc.failures.push(("libnvrtc.so.12".into(), odd.clone()));
        let driver =
            LibraryProbe { what: DRIVER, hint: DRIVER_HINT, loaded: Some("libcuda.so.1".into()), failures: vec![] };
        let got = cuda_start_error(1, &[], &[driver, nvrtc], Some("/opt/cuda/lib64"));
        for part in [
            &format!("{DRIVER}: loaded libcuda.so.1"),
            &format!("{NVRTC}: does not load"),
            &format!("    libnvrtc.so.12: {odd}"),
            "    not found: libnvrtc.so\n",
            NVRTC_HINT,
            "LD_LIBRARY_PATH=/opt/cuda/lib64",
            "on GPU 1",
        ] {
            assert!(got.contains(part), "missing {part:?} in:\n{got}");
        }
        assert!(!got.contains(DRIVER_HINT), "the loaded driver needs no hint:\n{got}");
    }

    #[test]
    fn cudas_own_messages_come_first_and_a_loaded_set_shows_no_path() {
        let ok = |what, name: &str| LibraryProbe { what, hint: "", loaded: Some(name.into()), failures: vec![] };
        let libs = [ok(DRIVER, "libcuda.so.1"), ok(NVRTC, "libnvrtc.so.12")];
        let one = cuda_start_error(0, &["CUDA_ERROR_INVALID_DEVICE (at src/x.rs:3)".into()], &libs, None);
        assert!(one.starts_with("--backend cuda: CUDA did not start on GPU 0: CUDA_ERROR_INVALID_DEVICE"), "{one}");
        assert!(!one.contains("LD_LIBRARY_PATH"), "{one}");
        let two = cuda_start_error(0, &["first".into(), "second".into()], &libs, None);
        assert!(two.contains("GPU 0:\n  first\n  second\n"), "{two}");
    }

    #[test]
    fn panic_payloads_read_as_text() {
        let lit = std::panic::catch_unwind(|| panic!("literal")).unwrap_err();
        let fmt = std::panic::catch_unwind(|| panic!("formatted {}", 3)).unwrap_err();
        assert_eq!(panic_text(&*lit), "literal");
        assert_eq!(panic_text(&*fmt), "formatted 3");
    }

    #[test]
    fn gpu_without_cuda_and_cuda_without_the_feature_are_errors() {
        let e = select(BackendKind::Cpu, Some(1)).unwrap_err().to_string();
        assert!(e.contains("--backend cuda"), "{e}");
        assert!(matches!(select(BackendKind::Cpu, None), Ok(Selected::Cpu)));
        #[cfg(not(feature = "cuda"))]
        for kind in [BackendKind::Cuda, BackendKind::CudaUnfused] {
            let e = select(kind, None).unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
