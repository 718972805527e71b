//! Request validation on structured input: seed, samples, want_std, noise
//! level and the sensor bytes taken straight from the input, checked
//! against the shipped Darcy artifact. Whatever passes must be a sensor
//! set the sampler accepts, with finite readings inside the artifact's
//! range and a finite RMS.
#![no_main]

use ddis_runtime::protocol::{self, ReconstructRequest};
use ddis_runtime::sampler;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 14 {
        return;
    }
    let art = ddis_runtime_fuzz::shipped_artifact();
    let r = ReconstructRequest {
        seed: u64::from_le_bytes(data[0..8].try_into().unwrap()),
        samples: data[8],
        want_std: data[9] & 1 == 1,
        noise_sigma: f32::from_le_bytes(data[10..14].try_into().unwrap()),
        sensors: &data[14..],
    };
    if let Ok(s) = protocol::check_request(art, &r) {
        let (lo, hi) = art.data().reading_range(r.noise_sigma);
        assert!(s.iter().all(|x| lo <= x.value && x.value <= hi));
        assert!(s.rms().is_finite());
        assert_eq!(sampler::check_inputs(art, &s, r.noise_sigma), Ok(()));
    }
});
