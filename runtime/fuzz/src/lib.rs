//! What the fuzz targets share: the shipped Darcy artifact, parsed once.

use std::sync::OnceLock;

use ddis_runtime::Artifact;

static ARTIFACT: &[u8] = include_bytes!("../../../models/darcy32.ddis");

/// The shipped Darcy artifact, parsed once: its CRC check over 300 KB would
/// dominate every run.
pub fn shipped_artifact() -> &'static Artifact<'static> {
    static ART: OnceLock<Artifact<'static>> = OnceLock::new();
    ART.get_or_init(|| Artifact::parse(ARTIFACT).expect("the shipped artifact parses"))
}
