//! Data augmentation by the symmetries of the square (`--augment d8`).
//!
//! The data laws (a GRF with an isotropic kernel on the square, thresholded
//! or not) and the PDEs (isotropic operators with zero Dirichlet boundary)
//! are invariant under the 8 flips and transposes of the node grid, so a
//! transformed pair `(T a, T u)` is as likely as `(a, u)` and still solves
//! the PDE. The augmentation acts on the data only; the networks' coordinate
//! channels are not symmetric, and need not be.

use anyhow::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::DatasetMeta;
use crate::pde::PdeKind;

/// Which augmentation a training run applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// The samples as they are.
    #[default]
    None,
    /// Each sample under one of the 8 symmetries of the square, drawn per
    /// sample and step (both channels of a joint sample alike).
    D8,
}

impl Augment {
    /// Whether this is [`Augment::None`] (`config.json` leaves it out then).
    pub fn is_none(&self) -> bool {
        *self == Augment::None
    }

    /// The symmetry of each of `batch` samples, drawn from the step's random
    /// stream; empty (all identities) without augmentation, which draws
    /// nothing, so runs without it keep their random streams.
    pub fn draw(self, batch: usize, rng: &mut ChaCha8Rng) -> Vec<Symmetry> {
        match self {
            Augment::None => Vec::new(),
            Augment::D8 => (0..batch).map(|_| Symmetry(rng.random_range(0..8))).collect(),
        }
    }

    /// Refuses an augmentation the data's law or PDE is not invariant under.
    ///
    /// # Errors
    /// D8 on data without that symmetry (none exists today: every dataset is
    /// an `n x n` grid of an isotropic GRF and an isotropic PDE).
    pub fn check(self, meta: &DatasetMeta) -> Result<()> {
        if self == Augment::None {
            return Ok(());
        }
        // Grids are square by construction (`res` nodes per side) and the GRF
        // kernel depends on |k| only. A new PDE kind must decide here whether
        // its operator and boundary are invariant under flips and transposes.
        match meta.pde.kind {
            PdeKind::Darcy | PdeKind::Poisson | PdeKind::Helmholtz => Ok(()),
        }
    }
}

/// One of the 8 symmetries of the square: bit 0 transposes, bit 1 flips the
/// rows, bit 2 flips the columns (of the source, in that order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symmetry(pub u8);

impl Symmetry {
    /// The identity.
    pub const IDENTITY: Symmetry = Symmetry(0);

    /// All 8, identity first.
    pub fn all() -> impl Iterator<Item = Symmetry> {
        (0..8).map(Symmetry)
    }

    /// The node of the source grid that lands on node `(i, j)`.
    fn source(self, n: usize, i: usize, j: usize) -> usize {
        let (mut r, mut c) = (i, j);
        if self.0 & 1 != 0 {
            (r, c) = (c, r);
        }
        if self.0 & 2 != 0 {
            r = n - 1 - r;
        }
        if self.0 & 4 != 0 {
            c = n - 1 - c;
        }
        r * n + c
    }

    /// Transforms every `n x n` field (C order) in `fields` in place.
    pub fn apply<T: Copy>(self, fields: &mut [T], n: usize) {
        if self == Self::IDENTITY {
            return;
        }
        let per = n * n;
        let mut tmp = Vec::with_capacity(per);
        for field in fields.chunks_exact_mut(per) {
            tmp.clear();
            tmp.extend((0..per).map(|k| field[self.source(n, k / n, k % n)]));
            field.copy_from_slice(&tmp);
        }
    }
}

/// Applies symmetry `symmetries[k]` to sample `k` of `samples`, each
/// `channels` consecutive `n x n` fields; missing entries are identities.
pub fn apply_batch<T: Copy>(samples: &mut [T], channels: usize, n: usize, symmetries: &[Symmetry]) {
    for (sample, s) in samples.chunks_exact_mut(channels * n * n).zip(symmetries) {
        s.apply(sample, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn image(s: Symmetry, field: &[f64], n: usize) -> Vec<f64> {
        let mut f = field.to_vec();
        s.apply(&mut f, n);
        f
    }

    #[test]
    fn the_eight_symmetries_are_distinct_and_form_a_group() {
        let n = 5;
        let field: Vec<f64> = (0..n * n).map(|k| k as f64).collect();
        let images: Vec<Vec<f64>> = Symmetry::all().map(|s| image(s, &field, n)).collect();
        for (a, x) in images.iter().enumerate() {
            for (b, y) in images.iter().enumerate().skip(a + 1) {
                assert_ne!(x, y, "symmetries {a} and {b} coincide");
            }
            // A permutation of the nodes that keeps the boundary on the boundary.
            let mut sorted = x.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(sorted, field, "symmetry {a} is not a permutation");
            let edge = |k: usize| [k / n, k % n].iter().any(|&t| t == 0 || t == n - 1);
            for (k, &src) in x.iter().enumerate() {
                assert_eq!(edge(k), edge(src as usize), "symmetry {a} moves node {src} off the boundary");
            }
        }
        // Closed under composition, and each has an inverse in the set.
        for s in Symmetry::all() {
            for t in Symmetry::all() {
                let st = image(t, &image(s, &field, n), n);
                assert!(images.contains(&st), "{s:?} then {t:?} leaves the group");
            }
            assert!(Symmetry::all().any(|t| image(t, &image(s, &field, n), n) == field), "{s:?} has no inverse");
        }
    }

    #[test]
    fn batches_transform_each_sample_and_both_channels_alike() {
        let n = 3;
        let a: Vec<f32> = (0..9).map(|k| k as f32).collect();
        let u: Vec<f32> = (0..9).map(|k| 100.0 + k as f32).collect();
        let mut batch: Vec<f32> = [a.clone(), u.clone(), a.clone(), u.clone()].concat();
        let (s0, s1) = (Symmetry(1), Symmetry(6));
        apply_batch(&mut batch, 2, n, &[s0, s1]);
        let t = |s: Symmetry, f: &[f32]| {
            let mut f = f.to_vec();
            s.apply(&mut f, n);
            f
        };
        assert_eq!(batch, [t(s0, &a), t(s0, &u), t(s1, &a), t(s1, &u)].concat());
        assert_eq!(t(s0, &a), [0.0, 3.0, 6.0, 1.0, 4.0, 7.0, 2.0, 5.0, 8.0], "bit 0 transposes");
        assert_eq!(t(s1, &a), [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0], "bits 1 and 2 rotate by 180 degrees");
    }

    #[test]
    fn draws_come_from_the_stream_only_when_augmenting() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(Augment::None.draw(16, &mut rng).is_empty());
        assert_eq!(rng.random::<u64>(), ChaCha8Rng::seed_from_u64(1).random::<u64>(), "no draw without augmentation");
        let d = Augment::D8.draw(4000, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(d, Augment::D8.draw(4000, &mut ChaCha8Rng::seed_from_u64(2)));
        // Each of the 8 about 500 times (binomial sd ~21: 6 sd either way).
        for s in Symmetry::all() {
            let count = d.iter().filter(|&&x| x == s).count();
            assert!((375..=625).contains(&count), "{s:?} drawn {count} times of 4000");
        }
    }

    /// Relative tolerance of two solves of one linear system whose unknowns
    /// are permuted (round-off of a sparse direct solve at 12 x 12).
    const SOLVE_REL: f64 = 1e-10;

    #[test]
    fn every_pde_commutes_with_every_symmetry() {
        // solve(T a) = T solve(a): the PDE and its discretisation are invariant,
        // so an augmented pair is a true pair.
        let n = 12;
        for kind in PdeKind::ALL {
            let cfg = crate::pde::PdeConfig::for_kind(kind);
            let mut solver = cfg.solver(n).unwrap();
            let grf = cfg.grf_sampler(n).unwrap();
            let input = solver.sample_input(&grf, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
            let u = solver.solve(&input).unwrap();
            let scale = u.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for s in Symmetry::all() {
                let u_of_image = solver.solve(&image(s, &input, n)).unwrap();
                let image_of_u = image(s, &u, n);
                let worst = u_of_image.iter().zip(&image_of_u).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(worst <= SOLVE_REL * scale, "{kind} under {s:?}: differs by {worst:e} (scale {scale:e})");
            }
        }
    }
}
