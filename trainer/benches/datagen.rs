//! Darcy data generation throughput (samples/s) at 32, 64 and 128 nodes per
//! side, on one thread and on all threads. Run with
//! `cargo bench -p ddis-trainer --bench datagen`.

use std::time::Instant;

use ddis_trainer::data::generate_range;
use ddis_trainer::pde::PdeConfig;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let pde = PdeConfig::default();
    let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("Darcy generation (GRF + assembly + sparse Cholesky), median of 5 runs");
    println!(
        "{:>5} {:>8} {:>14} {:>14} {:>8}",
        "res",
        "samples",
        "1 thread /s",
        format!("{all} threads /s"),
        "speedup"
    );
    for (res, count) in [(32, 400), (64, 100), (128, 24)] {
        let mut rates = Vec::new();
        for threads in [1, all] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            // One warm-up run, then five timed ones.
            pool.install(|| generate_range(&pde, res, 0, 0..count.min(8))).unwrap();
            let times: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    pool.install(|| generate_range(&pde, res, 0, 0..count)).unwrap();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            rates.push(count as f64 / median(times));
        }
        println!("{res:>5} {count:>8} {:>14.1} {:>14.1} {:>7.2}x", rates[0], rates[1], rates[1] / rates[0]);
    }
}
