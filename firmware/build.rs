//! Puts memory.x where cortex-m-rt's link.x looks for it, and sizes the
//! firmware's static buffers from the embedded artifact: it is parsed here
//! (CRC checked) with the same runtime crate, so the workspace is exactly
//! `Artifact::workspace_len` (the sampler's `const fn`) and a missing or
//! damaged artifact fails the build with a clear message.
use std::{env, fs, path::PathBuf};

const ARTIFACT: &str = "../models/darcy32.ddis";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed={ARTIFACT}");

    let bytes = fs::read(ARTIFACT).unwrap_or_else(|e| {
        panic!("the firmware embeds {ARTIFACT} but it cannot be read ({e}); write it with `ddis export` first")
    });
    let art =
        ddis_runtime::Artifact::parse(&bytes).unwrap_or_else(|e| panic!("{ARTIFACT} is not a valid artifact: {e}"));
    let ws = art.workspace_len().unwrap_or_else(|| panic!("{ARTIFACT} lacks a section the sampler needs"));
    let n = art.n();
    let consts = format!(
        "/// f32 values of the sampler workspace (`Artifact::workspace_len`).\n\
         pub const WORKSPACE_LEN: usize = {ws};\n\
         /// Nodes per side of the embedded artifact's grid.\n\
         pub const N: usize = {n};\n\
         /// Bytes of the embedded artifact.\n\
         pub const ARTIFACT_LEN: usize = {};\n",
        bytes.len()
    );
    fs::write(out.join("sizes.rs"), consts).expect("write sizes.rs");
}
