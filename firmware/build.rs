//! Puts memory.x where cortex-m-rt's link.x looks for it, copies the
//! artifact to embed into OUT_DIR, and sizes the firmware's static buffers
//! from it: it is parsed here (CRC checked) with the same runtime crate, so
//! the workspace is exactly `Artifact::workspace_len` (the sampler's `const
//! fn`) and a missing or damaged artifact fails the build with a clear
//! message.
//!
//! The artifact is `../models/darcy32.ddis` unless `DDIS_ARTIFACT` names
//! another (a path relative to `firmware/`, or absolute), e.g.
//! `DDIS_ARTIFACT=../models/poisson32.ddis cargo build --release`.
use std::{env, fs, path::PathBuf};

const DEFAULT_ARTIFACT: &str = "../models/darcy32.ddis";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=DDIS_ARTIFACT");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        // defmt's linker script places the interned format strings.
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
    let chosen = env::var("DDIS_ARTIFACT").unwrap_or_else(|_| DEFAULT_ARTIFACT.to_string());
    let artifact = chosen.as_str();
    println!("cargo:rerun-if-changed={artifact}");

    let bytes = fs::read(artifact).unwrap_or_else(|e| {
        panic!("the firmware embeds {artifact} but it cannot be read ({e}); write it with `ddis export` first")
    });
    let art =
        ddis_runtime::Artifact::parse(&bytes).unwrap_or_else(|e| panic!("{artifact} is not a valid artifact: {e}"));
    let ws = art.workspace_len().unwrap_or_else(|| panic!("{artifact} lacks a section the sampler needs"));
    let n = art.n();
    fs::write(out.join("artifact.ddis"), &bytes).expect("copy the artifact into OUT_DIR");
    let consts = format!(
        "/// f32 values of the sampler workspace (`Artifact::workspace_len`).\n\
         pub const WORKSPACE_LEN: usize = {ws};\n\
         /// Nodes per side of the embedded artifact's grid.\n\
         pub const N: usize = {n};\n\
         /// Bytes of the embedded artifact.\n\
         pub const ARTIFACT_LEN: usize = {};\n\
         /// Where the embedded artifact was read from at build time.\n\
         pub const ARTIFACT_SOURCE: &str = {:?};\n",
        bytes.len(),
        artifact
    );
    fs::write(out.join("sizes.rs"), consts).expect("write sizes.rs");
}
