//! The artifact parser on arbitrary bytes, and on the same bytes with a
//! fresh CRC trailer so that the postcard body and every section check
//! are reached, not only the CRC.
#![no_main]

use ddis_runtime::Artifact;
use ddis_runtime::artifact::reseal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Artifact::parse(data);
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    if let Ok(art) = Artifact::parse(&sealed) {
        let _ = (art.workspace_len(), art.max_sensors(), art.data().reading_range(0.0), art.data().max_noise());
    }
});
