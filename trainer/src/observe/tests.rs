//! Sensor readings: validation, files, warnings, noise.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::npy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Standard errors the sample std of the noise may stray from sigma.
const NOISE_STD_TOLERANCE_SE: f64 = 4.0;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn boundary_and_far_off_readings_are_warned_about() {
    // 5x5 grid: node 0 is a corner, 12 the centre, 13 interior.
    let obs = Observations::new(5, vec![12, 0, 13], vec![0.01, 0.0, 5.0], 0.0).unwrap();
    let w = obs.warnings(Some((0.0, 0.02)));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("1 of 3 readings sit on the boundary") && w[0].contains("sensor 2"), "{}", w[0]);
    assert!(w[1].contains("1 of 3 readings lie far outside") && w[1].contains("sensor 3"), "{}", w[1]);
    // Inside the range (or within one range-width of it): no warning.
    let fine = Observations::new(5, vec![12, 13], vec![0.01, 0.039], 0.0).unwrap();
    assert!(fine.warnings(Some((0.0, 0.02))).is_empty());
    assert!(fine.warnings(None).is_empty());
}

/// Loads `text` as CSV on a 5x5 grid and returns the error message.
fn csv_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "obs.csv", text);
    match Observations::from_csv(&path, 5, 0.0) {
        Ok(obs) => panic!("accepted {text:?} as {obs:?}"),
        Err(e) => e.to_string(),
    }
}

/// A float64 `[rows, cols]` `.npy` file, written as numpy does.
fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) {
    let mut bytes = npy::header_f32(shape);
    let pos = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[pos..pos + 3].copy_from_slice(b"<f8");
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}

fn npy_error(shape: &[usize], data: &[f64]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obs.npy");
    write_npy_f64(&path, shape, data);
    match Observations::from_npy(&path, 5, 0.0) {
        Ok(obs) => panic!("accepted {data:?} as {obs:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn csv_round_trip_is_bit_identical() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in [3, 7, 32] {
        let nodes = random_interior_nodes(n, (n - 2) * (n - 2), &mut rng).unwrap();
        // Awkward magnitudes: tiny, huge, negative zero, many digits.
        let mut values: Vec<f64> = nodes.iter().map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
        values[0] = -0.0;
        if values.len() > 3 {
            values[1] = 1e-300;
            values[2] = -1.2345678901234567e300;
            values[3] = 1.0 / 3.0;
        }
        let obs = Observations::new(n, nodes, values, 0.01).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.csv");
        obs.write_csv(&path).unwrap();
        let back = Observations::from_csv(&path, n, 0.01).unwrap();
        assert_eq!(back.nodes, obs.nodes, "n = {n}");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.values), bits(&obs.values), "n = {n}");
        // Only the final file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn snapping_follows_row_y_column_x_and_rounds_half_up() {
    let dir = tempfile::tempdir().unwrap();
    let text = "x,y,value\n0.25,0.75,1.5\n0.125,0.375,2\n0,0,3\n1,1,4\n0.1,0.2,5\n";
    let path = write(&dir, "obs.csv", text);
    let obs = Observations::from_csv(&path, 5, 0.0).unwrap();
    // (0.25, 0.75) -> column 1, row 3; (0.125, 0.375) is exactly half a
    // cell past column 0 and row 1, so it rounds up to [2, 1].
    assert_eq!(obs.nodes, vec![3 * 5 + 1, 2 * 5 + 1, 0, 24, 5]);
    assert_eq!(obs.values, vec![1.5, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(obs.xy(0), (0.25, 0.75));
    assert_eq!(obs.xy(1), (0.25, 0.5));
    assert_eq!(obs.len(), 5);
    assert!(!obs.is_empty());
}

#[test]
fn csv_tolerates_whitespace_comments_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}# sensors\r\n\r\n  x , y , value  \r\n# a comment\r\n 0.5 , 0.5 , -1e-3 \r\n\r\n0.75,0.25,2";
    let path = write(&dir, "obs.CSV", text);
    let obs = Observations::load(&path, 5, 0.1).unwrap();
    assert_eq!(obs, Observations::new(5, vec![12, 8], vec![-1e-3, 2.0], 0.1).unwrap());
}

#[test]
fn bad_csv_names_the_line_and_the_problem() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("missing header", "0.5,0.5,1\n", &[":1:", "header"]),
        ("wrong header", "# c\nx,y,u\n0.5,0.5,1\n", &[":2:", "header", "x,y,u"]),
        ("too many columns", "x,y,value\n0.5,0.5,1\n0.5,0.25,1,2\n", &[":3:", "3 columns", "found 4"]),
        ("too few columns", "x,y,value\n\n0.5,0.5\n", &[":3:", "found 2"]),
        ("unparsable", "x,y,value\n0.5,abc,1\n", &[":2:", "y", "`abc`"]),
        ("empty field", "x,y,value\n0.5,0.5,\n", &[":2:", "value", "``"]),
        ("NaN value", "x,y,value\n0.5,0.5,NaN\n", &[":2:", "value", "not finite"]),
        ("infinite x", "x,y,value\n\n\ninf,0.5,1\n", &[":4:", "x", "not finite"]),
        ("x off domain", "x,y,value\n1.01,0.5,1\n", &[":2:", "x = 1.01", "outside"]),
        ("y off domain", "x,y,value\n0.5,0.5,1\n0.5,-0.1,1\n", &[":3:", "y = -0.1", "outside"]),
        ("duplicate node", "x,y,value\n0.5,0.5,1\n# c\n0.25,0.25,1\n0.51,0.49,2\n", &[":5:", "line 2", "[2, 2]"]),
        ("empty file", "", &["empty file"]),
        ("comments only", "# nothing\n\n", &["empty file"]),
        ("header only", "x,y,value\n", &["no sensor rows"]),
    ];
    for (what, text, needles) in cases {
        let msg = csv_error(text);
        for needle in *needles {
            assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        }
    }
}

#[test]
fn too_many_sensors_is_an_error() {
    // 26 rows on a 5x5 grid: reported by count, not as one duplicate.
    let mut text = String::from("x,y,value\n");
    for k in 0..26 {
        text.push_str(&format!("{},{},1\n", (k % 5) as f64 / 4.0, (k / 5 % 5) as f64 / 4.0));
    }
    let msg = csv_error(&text);
    assert!(msg.contains("26 sensor rows") && msg.contains("25 nodes"), "{msg}");

    let err = Observations::new(3, (0..10).collect(), vec![0.0; 10], 0.0).unwrap_err();
    assert_eq!(err, Error::TooManySensors { count: 10, available: 9, places: "nodes on the 3x3 grid".into() });
}

#[test]
fn new_rejects_each_invalid_input() {
    let ok = |nodes: Vec<usize>, values: Vec<f64>, sigma| Observations::new(5, nodes, values, sigma);
    assert!(matches!(Observations::new(2, vec![0], vec![0.0], 0.0), Err(Error::GridTooSmall { n: 2, .. })));
    assert!(matches!(ok(vec![1, 2], vec![0.0], 0.0), Err(Error::ShapeMismatch { expected: 2, got: 1, .. })));
    assert_eq!(ok(vec![], vec![], 0.0), Err(Error::NoSensors));
    assert_eq!(ok(vec![3, 25], vec![0.0; 2], 0.0), Err(Error::SensorOffGrid { sensor: 1, node: 25, len: 25 }));
    let dup = ok(vec![3, 7, 9, 7], vec![0.0; 4], 0.0).unwrap_err();
    assert_eq!(dup, Error::DuplicateSensor { first: 1, second: 3, node: 7 });
    let msg = dup.to_string();
    assert!(msg.contains("sensors 1 and 3") && msg.contains("node 7"), "{msg}");
    assert!(matches!(ok(vec![3, 7], vec![0.0, f64::NAN], 0.0), Err(Error::NonFiniteObservation { sensor: 1, .. })));
    for sigma in [-0.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(ok(vec![3], vec![0.0], sigma), Err(Error::InvalidConfig { name: "noise_sigma", .. })));
    }
    assert!(ok(vec![24, 0], vec![1.0, -1.0], 0.0).is_ok(), "boundary sensors are allowed");
}

#[test]
fn npy_reads_f64_and_f32_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0.25, 0.75, 1.5, 1.0, 0.0, -2.0, 0.5, 0.5, 0.125];
    let path64 = dir.path().join("obs64.npy");
    write_npy_f64(&path64, &[3, 3], &data);
    let path32 = dir.path().join("obs32.npy");
    npy::write(&path32, &[3, 3], &data.map(|v| v as f32)).unwrap();
    let expected = Observations::new(5, vec![16, 4, 12], vec![1.5, -2.0, 0.125], 0.05).unwrap();
    for path in [&path64, &path32] {
        assert_eq!(Observations::load(path, 5, 0.05).unwrap(), expected, "{}", path.display());
    }
}

#[test]
fn bad_npy_names_the_row_and_the_problem() {
    // (what, shape, data, substrings the message must contain)
    type Case<'a> = (&'a str, &'a [usize], &'a [f64], &'a [&'a str]);
    let cases: &[Case] = &[
        ("shape [K, 2]", &[2, 2], &[0.5, 0.5, 0.25, 0.25], &["shape [2, 2]", "[K, 3]"]),
        ("1-D", &[3], &[0.5, 0.5, 1.0], &["shape [3]"]),
        ("no rows", &[0, 3], &[], &["no sensor rows"]),
        ("NaN value", &[2, 3], &[0.5, 0.5, 1.0, 0.25, 0.25, f64::NAN], &["row 1", "value", "not finite"]),
        ("NaN x", &[1, 3], &[f64::NAN, 0.5, 1.0], &["row 0", "x", "not finite"]),
        ("x off domain", &[2, 3], &[0.5, 0.5, 1.0, 1.01, 0.5, 1.0], &["row 1", "outside"]),
        ("y off domain", &[1, 3], &[0.5, -0.1, 1.0], &["row 0", "y = -0.1", "outside"]),
        ("duplicate", &[3, 3], &[0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.49, 0.51, 2.0], &["row 2", "row 0", "[2, 2]"]),
    ];
    for (what, shape, data, needles) in cases {
        let msg = npy_error(shape, data);
        for needle in *needles {
            assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(&dir, "obs.npy", "not an npy file");
    let msg = Observations::from_npy(&garbage, 5, 0.0).unwrap_err().to_string();
    assert!(msg.contains("not a valid .npy file"), "{msg}");
}

#[test]
fn load_dispatches_on_extension_and_reports_io() {
    let dir = tempfile::tempdir().unwrap();
    let txt = write(&dir, "obs.txt", "x,y,value\n0.5,0.5,1\n");
    assert!(matches!(Observations::load(&txt, 5, 0.0), Err(Error::ObservationFormat { .. })));
    let missing = dir.path().join("missing.csv");
    assert!(matches!(Observations::load(&missing, 5, 0.0), Err(Error::Io { .. })));
    let missing = dir.path().join("missing.npy");
    assert!(matches!(Observations::load(&missing, 5, 0.0), Err(Error::Io { .. })));
}

#[test]
fn random_interior_nodes_are_distinct_interior_and_seeded() {
    let draw = |seed, n, count| random_interior_nodes(n, count, &mut ChaCha8Rng::seed_from_u64(seed));
    for (n, count) in [(3, 1), (8, 36), (32, 31), (32, 100), (64, 500)] {
        let nodes = draw(1, n, count).unwrap();
        let grid = Grid::new(n).unwrap();
        assert_eq!(nodes.len(), count);
        let mut sorted = nodes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), count, "n = {n}: duplicates in {nodes:?}");
        assert!(nodes.iter().all(|&k| k < grid.len() && !grid.is_boundary(grid.ij(k).0, grid.ij(k).1)));
        assert_eq!(draw(1, n, count).unwrap(), nodes, "same seed, same nodes in the same order");
    }
    assert_ne!(draw(1, 32, 31).unwrap(), draw(2, 32, 31).unwrap());
    // Draw order is kept (a sorted result would be vanishingly unlikely).
    let nodes = draw(3, 32, 100).unwrap();
    assert!(nodes.windows(2).any(|w| w[0] > w[1]));
    assert_eq!(
        draw(1, 5, 10),
        Err(Error::TooManySensors { count: 10, available: 9, places: "interior nodes on the 5x5 grid".into() })
    );
    assert_eq!(draw(1, 5, 0), Err(Error::NoSensors));
    assert!(matches!(draw(1, 2, 1), Err(Error::GridTooSmall { .. })));
}

#[test]
fn measure_reads_u_and_adds_gaussian_noise() {
    let n = 66;
    let u: Vec<f32> = (0..n * n).map(|k| ((k as f32) * 0.37).sin()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let nodes = random_interior_nodes(n, 4000, &mut rng).unwrap();

    let exact = Observations::measure(n, nodes.clone(), &u, 0.0, &mut rng).unwrap();
    for (&node, &value) in exact.nodes.iter().zip(&exact.values) {
        assert_eq!(value, f64::from(u[node]));
    }

    let sigma = 0.05;
    let noisy = Observations::measure(n, nodes.clone(), &u, sigma, &mut rng).unwrap();
    assert_eq!(noisy.noise_sigma, sigma);
    let residuals: Vec<f64> = noisy.nodes.iter().zip(&noisy.values).map(|(&k, &v)| v - f64::from(u[k])).collect();
    let count = residuals.len() as f64;
    let mean = residuals.iter().sum::<f64>() / count;
    let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt();
    // Standard error of the mean sigma/sqrt(K), of the sample std about sigma/sqrt(2K).
    assert!(mean.abs() < NOISE_STD_TOLERANCE_SE * sigma / count.sqrt(), "mean {mean}");
    let se = sigma / (2.0 * count).sqrt();
    assert!((std - sigma).abs() < NOISE_STD_TOLERANCE_SE * se, "std {std} vs sigma {sigma} (se {se})");

    // Same rng state, same noise pattern, scaled by sigma.
    let a = Observations::measure(n, nodes.clone(), &u, 1.0, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let b = Observations::measure(n, nodes.clone(), &u, 2.0, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    for k in 0..a.len() {
        let base = f64::from(u[a.nodes[k]]);
        assert!(((b.values[k] - base) - 2.0 * (a.values[k] - base)).abs() < 1e-12);
    }

    let bad = Observations::measure(n, nodes.clone(), &u[1..], 0.0, &mut rng);
    assert!(matches!(bad, Err(Error::ShapeMismatch { field: "u", .. })));
    let mut u_nan = u.clone();
    u_nan[nodes[7]] = f32::NAN;
    let bad = Observations::measure(n, nodes.clone(), &u_nan, 0.0, &mut rng);
    assert_eq!(bad, Err(Error::NonFinite { field: "u", index: nodes[7] }));
    let bad = Observations::measure(n, vec![n * n], &u, 0.0, &mut rng);
    assert!(matches!(bad, Err(Error::SensorOffGrid { .. })));
}
