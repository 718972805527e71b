//! Numerical checks of the grid, GRF and PDE solvers: convergence order on
//! manufactured solutions, residuals of generated samples, the GRF spectrum,
//! determinism and input validation. Kept fast (a few seconds in the dev
//! profile); the timing benchmark is `#[ignore]`d.

use std::f64::consts::PI;
use std::time::Instant;

use ddis_trainer::error::Error;
use ddis_trainer::grf::{GrfConfig, GrfSampler, project_reference, synthesize_reference};
use ddis_trainer::grid::Grid;
use ddis_trainer::pde::{PdeConfig, PdeKind, Solver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A named tolerance: `|got - expected| <= abs + rel * |expected|`.
#[derive(Clone, Copy, Debug)]
struct Tol {
    abs: f64,
    rel: f64,
}

impl Tol {
    /// Round-off level for O(n^3) sums of O(1) terms on grids up to ~100.
    const ROUNDOFF: Tol = Tol { abs: 1e-12, rel: 1e-12 };

    fn check(self, what: &str, got: f64, expected: f64) {
        let bound = self.abs + self.rel * expected.abs();
        assert!(
            (got - expected).abs() <= bound,
            "{what}: got {got:e}, expected {expected:e} (|diff| {:e} > {bound:e})",
            (got - expected).abs()
        );
    }

    /// Element-wise check relative to the largest magnitude in `expected`,
    /// which is what matters for a field (pointwise relative error is
    /// meaningless at its zeros).
    fn check_field(self, what: &str, got: &[f64], expected: &[f64]) {
        assert_eq!(got.len(), expected.len(), "{what}: length");
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            let bound = self.abs + self.rel * scale;
            assert!((g - e).abs() <= bound, "{what}[{k}]: got {g:e}, expected {e:e} (scale {scale:e})");
        }
    }
}

fn field(grid: Grid, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    (0..grid.len())
        .map(|k| {
            let (i, j) = grid.ij(k);
            f(grid.x(j), grid.y(i))
        })
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

// Manufactured solution u* = e^x sin(pi x) sin(2 pi y): zero on the boundary,
// and neither symmetric in x <-> y nor in x <-> 1-x, so an index or sign slip
// in either direction shows up.
fn u_star(x: f64, y: f64) -> f64 {
    x.exp() * (PI * x).sin() * (2.0 * PI * y).sin()
}
fn u_star_x(x: f64, y: f64) -> f64 {
    x.exp() * ((PI * x).sin() + PI * (PI * x).cos()) * (2.0 * PI * y).sin()
}
fn u_star_y(x: f64, y: f64) -> f64 {
    x.exp() * (PI * x).sin() * 2.0 * PI * (2.0 * PI * y).cos()
}
fn lap_u_star(x: f64, y: f64) -> f64 {
    let sxx = x.exp() * ((1.0 - PI * PI) * (PI * x).sin() + 2.0 * PI * (PI * x).cos());
    sxx * (2.0 * PI * y).sin() - 4.0 * PI * PI * u_star(x, y)
}
// Smooth, positive, varying in both directions.
fn darcy_a(x: f64, y: f64) -> f64 {
    1.0 + x * x + 0.5 * (PI * y).sin()
}
fn darcy_f(x: f64, y: f64) -> f64 {
    let (ax, ay) = (2.0 * x, 0.5 * PI * (PI * y).cos());
    -(darcy_a(x, y) * lap_u_star(x, y) + ax * u_star_x(x, y) + ay * u_star_y(x, y))
}

/// Solves the manufactured problem of `cfg` at n-1 = 16, 32, 64 and checks
/// that the max-norm nodal error falls at order 2 (within 0.2).
fn check_second_order(cfg: PdeConfig) {
    let mut errors = Vec::new();
    for cells in [16usize, 32, 64] {
        let n = cells + 1;
        let grid = Grid::new(n).unwrap();
        let mut solver = cfg.solver(n).unwrap();
        let k2 = cfg.helmholtz_k * cfg.helmholtz_k;
        let u = match cfg.kind {
            PdeKind::Darcy => {
                let a = field(grid, darcy_a);
                solver.solve_rhs(Some(&a), &field(grid, darcy_f)).unwrap()
            }
            PdeKind::Poisson => solver.solve(&field(grid, lap_u_star)).unwrap(),
            PdeKind::Helmholtz => solver.solve(&field(grid, |x, y| lap_u_star(x, y) + k2 * u_star(x, y))).unwrap(),
        };
        errors.push((cells, max_abs_diff(&u, &field(grid, u_star))));
    }
    match cfg.kind {
        PdeKind::Helmholtz => println!("{} (k = {}):", cfg.kind, cfg.helmholtz_k),
        kind => println!("{kind}:"),
    }
    for w in errors.windows(2) {
        let order = (w[0].1 / w[1].1).log2();
        println!("  n-1 = {:>2} -> {:>2}: error {:.3e} -> {:.3e}, order {order:.3}", w[0].0, w[1].0, w[0].1, w[1].1);
        assert!(
            (order - 2.0).abs() <= 0.2,
            "{}: observed order {order} between n-1 = {} and {}",
            cfg.kind,
            w[0].0,
            w[1].0
        );
    }
}

#[test]
fn darcy_converges_at_second_order() {
    check_second_order(PdeConfig::for_kind(PdeKind::Darcy));
}

#[test]
fn poisson_converges_at_second_order() {
    check_second_order(PdeConfig::for_kind(PdeKind::Poisson));
}

#[test]
fn helmholtz_converges_at_second_order() {
    check_second_order(PdeConfig::for_kind(PdeKind::Helmholtz));
    // k^2 = 36 lies between the first two eigenvalues of -Laplacian
    // (2 pi^2, 5 pi^2): the operator is indefinite, which LU must handle.
    check_second_order(PdeConfig { helmholtz_k: 6.0, ..PdeConfig::for_kind(PdeKind::Helmholtz) });
}

#[test]
fn generated_samples_have_small_residuals() {
    const MAX_RESIDUAL: f64 = 1e-8;
    let n = 32;
    for kind in PdeKind::ALL {
        let cfg = PdeConfig::for_kind(kind);
        let grf = cfg.grf_sampler(n).unwrap();
        let mut solver = cfg.solver(n).unwrap();
        let grid = solver.grid();
        for seed in 0..4 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let input = solver.sample_input(&grf, &mut rng).unwrap();
            let u = solver.solve(&input).unwrap();
            let r = solver.residual(&input, &u).unwrap();
            println!("{kind} seed {seed}: relative residual {r:.2e}");
            assert!(r < MAX_RESIDUAL, "{kind} seed {seed}: residual {r:e}");
            for k in 0..grid.len() {
                let (i, j) = grid.ij(k);
                if grid.is_boundary(i, j) {
                    assert_eq!(u[k], 0.0, "{kind}: u not zero at boundary node [{i}, {j}]");
                    if kind == PdeKind::Helmholtz {
                        assert_eq!(input[k], 0.0, "helmholtz: f not zero at boundary node [{i}, {j}]");
                    }
                }
            }
            if kind == PdeKind::Darcy {
                assert!(input.iter().all(|&a| a == 12.0 || a == 3.0), "darcy input is not two-phase");
            }
            // A solution that is not one must show a large residual.
            let mut wrong = u.clone();
            wrong[grid.idx(n / 2, n / 3)] += 1e-3;
            assert!(solver.residual(&input, &wrong).unwrap() > 1e3 * MAX_RESIDUAL, "{kind}: residual blind to errors");
        }
    }
}

#[test]
fn grf_fast_path_matches_direct_reference() {
    for n in [32, 64] {
        let grid = Grid::new(n).unwrap();
        let sampler = GrfSampler::new(n, GrfConfig::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let coeffs: Vec<f64> = (0..grid.len()).map(|_| rng.sample(StandardNormal)).collect();
        let fast = sampler.synthesize(&coeffs).unwrap();
        let slow = synthesize_reference(grid, &coeffs).unwrap();
        Tol::ROUNDOFF.check_field(&format!("synthesis n={n}"), &fast, &slow);
        // A real sample round-trips through the reference projection.
        let sample = sampler.sample(&mut rng);
        let c = project_reference(grid, &sample).unwrap();
        Tol::ROUNDOFF.check("constant mode of a sample", c[0], 0.0);
        Tol::ROUNDOFF.check_field(&format!("round trip n={n}"), &synthesize_reference(grid, &c).unwrap(), &sample);
    }
}

#[test]
fn grf_spectrum_matches_target() {
    const SAMPLES: usize = 400;
    const MAX_BIN: usize = 10;
    // Allowed deviation in standard errors: 11 bins tested, so a 5-sigma
    // bound keeps false alarms far below one in a million runs.
    const Z_MAX: f64 = 5.0;
    let n = 32;
    let grid = Grid::new(n).unwrap();
    let sampler = GrfSampler::new(n, GrfConfig::default()).unwrap();
    // Per radial bin of |k| (width 1, centred on integers): sum over modes
    // and samples of c^2 / target variance, which is chi^2_1 (mean 1,
    // variance 2) when the sampler is right; plus raw powers to print.
    let mut ratio_sum = [0.0; MAX_BIN + 1];
    let mut count = [0usize; MAX_BIN + 1];
    let mut power = [0.0; MAX_BIN + 1];
    let mut target = [0.0; MAX_BIN + 1];
    for seed in 0..SAMPLES as u64 {
        let sample = sampler.sample(&mut ChaCha8Rng::seed_from_u64(seed));
        let c = project_reference(grid, &sample).unwrap();
        for k1 in 0..n {
            for k2 in 0..n {
                let bin = ((k1 * k1 + k2 * k2) as f64).sqrt().round() as usize;
                if (k1, k2) == (0, 0) || bin > MAX_BIN {
                    continue;
                }
                let var = sampler.mode_variance(k1, k2);
                let c2 = c[k1 * n + k2].powi(2);
                ratio_sum[bin] += c2 / var;
                count[bin] += 1;
                power[bin] += c2;
                target[bin] += var;
            }
        }
    }
    println!("|k|  modes  empirical     target        ratio   z");
    for bin in 1..=MAX_BIN {
        let m = count[bin] as f64;
        let ratio = ratio_sum[bin] / m;
        let z = (ratio - 1.0) / (2.0 / m).sqrt();
        println!(
            "{bin:>3} {:>6}  {:.4e}  {:.4e}  {ratio:.4}  {z:+.2}",
            count[bin] / SAMPLES,
            power[bin] / m,
            target[bin] / m
        );
        assert!(z.abs() <= Z_MAX, "bin |k| = {bin}: mean c^2/var = {ratio:.4}, {z:+.2} standard errors off");
    }
}

#[test]
fn same_seed_same_sample_and_solution() {
    let n = 16;
    for kind in PdeKind::ALL {
        let cfg = PdeConfig::for_kind(kind);
        let grf = cfg.grf_sampler(n).unwrap();
        let mut solver = cfg.solver(n).unwrap();
        let draw = |seed| solver.sample_input(&grf, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let (a1, a2, b) = (draw(11), draw(11), draw(12));
        assert_eq!(a1, a2, "{kind}: same seed gave different inputs");
        assert_ne!(a1, b, "{kind}: different seeds gave the same input");
        // Refactorising for another input must leave no trace: solving a1
        // again, and with a fresh solver, gives the same bits.
        let u1 = solver.solve(&a1).unwrap();
        let _ = solver.solve(&b).unwrap();
        assert_eq!(solver.solve(&a1).unwrap(), u1, "{kind}: solver state leaked between solves");
        assert_eq!(cfg.solver(n).unwrap().solve(&a1).unwrap(), u1, "{kind}: fresh solver differs");
    }
    // The raw GRF too, and on another thread.
    let grf = GrfSampler::new(n, GrfConfig::default()).unwrap();
    let here = grf.sample(&mut ChaCha8Rng::seed_from_u64(5));
    let there = std::thread::scope(|s| s.spawn(|| grf.sample(&mut ChaCha8Rng::seed_from_u64(5))).join().unwrap());
    assert_eq!(here, there);
}

fn darcy(n: usize) -> Solver {
    PdeConfig::for_kind(PdeKind::Darcy).solver(n).unwrap()
}

#[test]
fn bad_input_gives_typed_errors() {
    let n = 8;
    let mut solver = darcy(n);
    let good = vec![3.0; n * n];

    let mut a = good.clone();
    a[10] = f64::NAN;
    assert_eq!(solver.solve(&a), Err(Error::NonFinite { field: "a", index: 10 }));
    a[10] = f64::INFINITY;
    assert_eq!(solver.solve(&a), Err(Error::NonFinite { field: "a", index: 10 }));

    let mut a = good.clone();
    a[5] = 0.0;
    a[7] = -1.0;
    assert_eq!(solver.solve(&a), Err(Error::NonPositiveCoefficient { index: 5, value: 0.0 }));

    assert_eq!(
        solver.solve(&good[..n * n - 1]),
        Err(Error::ShapeMismatch { field: "a", expected: n * n, got: n * n - 1 })
    );
    let mut rhs = vec![1.0; n * n];
    rhs[3] = f64::NAN;
    assert_eq!(solver.solve_rhs(Some(&good), &rhs), Err(Error::NonFinite { field: "rhs", index: 3 }));
    assert!(matches!(solver.residual(&good, &[0.0; 3]), Err(Error::ShapeMismatch { field: "u", .. })));
    // The solver still works after rejecting input.
    assert!(solver.solve(&good).is_ok());

    for kind in [PdeKind::Poisson, PdeKind::Helmholtz] {
        let mut s = PdeConfig::for_kind(kind).solver(n).unwrap();
        let mut f = vec![0.5; n * n];
        f[20] = f64::NEG_INFINITY;
        assert_eq!(s.solve(&f), Err(Error::NonFinite { field: "f", index: 20 }), "{kind}");
        assert!(matches!(s.solve(&[]), Err(Error::ShapeMismatch { got: 0, .. })), "{kind}");
    }

    match "burgers".parse::<PdeKind>() {
        Err(Error::UnknownPde(name)) => assert_eq!(name, "burgers"),
        other => panic!("expected UnknownPde, got {other:?}"),
    }
    let grf = GrfSampler::new(n + 1, GrfConfig::default()).unwrap();
    assert!(matches!(solver.sample_input(&grf, &mut ChaCha8Rng::seed_from_u64(0)), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn helmholtz_rejects_resonant_wave_numbers() {
    // k^2 at the smallest eigenvalue of the discrete -Laplacian makes the
    // matrix singular up to round-off; LU would return a huge, meaningless u.
    let n = 17;
    let h = 1.0 / (n - 1) as f64;
    let lambda = 8.0 / (h * h) * (PI * h / 2.0).sin().powi(2);
    let cfg = PdeConfig { helmholtz_k: lambda.sqrt(), ..PdeConfig::for_kind(PdeKind::Helmholtz) };
    assert!(matches!(cfg.solver(n), Err(Error::ResonantHelmholtz { .. })));
    // Close to, but resolvably off, an eigenvalue is a legitimate problem.
    let cfg = PdeConfig { helmholtz_k: (lambda * (1.0 + 1e-6)).sqrt(), ..cfg };
    let mut solver = cfg.solver(n).unwrap();
    let f = field(Grid::new(n).unwrap(), |x, y| (PI * x).sin() * (PI * y).sin());
    let u = solver.solve(&f).unwrap();
    let r = solver.residual(&f, &u).unwrap();
    assert!(r < 1e-6, "near-resonant residual {r:e}");
}

/// `cargo test --release -p ddis-trainer --test numerics -- --ignored --nocapture`
#[test]
#[ignore = "timing benchmark; run in release"]
fn darcy_solve_timing() {
    for n in [32, 64, 128] {
        let cfg = PdeConfig::for_kind(PdeKind::Darcy);
        let t = Instant::now();
        let mut solver = cfg.solver(n).unwrap();
        let setup = t.elapsed();
        let grf = cfg.grf_sampler(n).unwrap();
        let inputs: Vec<_> =
            (0..20).map(|s| solver.sample_input(&grf, &mut ChaCha8Rng::seed_from_u64(s)).unwrap()).collect();
        let t = Instant::now();
        for a in &inputs {
            std::hint::black_box(solver.solve(a).unwrap());
        }
        let per_solve = t.elapsed() / inputs.len() as u32;
        let t = Instant::now();
        for s in 0..20 {
            std::hint::black_box(grf.sample(&mut ChaCha8Rng::seed_from_u64(s)));
        }
        let per_grf = t.elapsed() / 20;
        println!("n = {n:>3}: setup {setup:?}, Darcy solve {per_solve:?}, GRF sample {per_grf:?}");
    }
}
