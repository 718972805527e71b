//! End to end through the library: a dataset written in chunks holds exactly
//! the samples that `generate_range` gives for any sub-range, so sample `k`
//! depends on `(seed, k)` alone — not on chunking or on thread count.

use ddis_trainer::data::{self, DatasetMeta, GenOptions};
use ddis_trainer::npy;
use ddis_trainer::pde::{PdeConfig, PdeKind};

#[test]
fn samples_depend_on_seed_and_index_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    let pde = PdeConfig { kind: PdeKind::Poisson, ..PdeConfig::default() };
    // 300 samples cross the 256-sample chunk boundary of the writer.
    let opts = GenOptions { pde, res: 12, count: 300, seed: 11, force: false, progress: false };
    let meta = data::generate_dataset(&opts, &out).unwrap();
    assert_eq!(DatasetMeta::load(&out).unwrap(), meta);

    let f = npy::read(&out.join("a.npy")).unwrap();
    let u = npy::read(&out.join("u.npy")).unwrap();
    let per = 12 * 12;
    let (f_mid, u_mid) = data::generate_range(&pde, 12, 11, 250..262).unwrap();
    assert_eq!(&f.data[250 * per..262 * per], &f_mid[..]);
    assert_eq!(&u.data[250 * per..262 * per], &u_mid[..]);
    // The range streamed from u.npy is the one of the whole array.
    let stats = data::solution_stats(&out).unwrap();
    let range = data::solution_range(&out).unwrap();
    assert_eq!((range.0.to_bits(), range.1.to_bits()), (stats.min.to_bits(), stats.max.to_bits()));
}
