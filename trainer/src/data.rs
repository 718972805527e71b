//! The data engine: datasets of (input field, solution) pairs, and solves of
//! fields that users bring.
//!
//! Sample `k` of a dataset depends only on `(seed, k)` — each has its own
//! ChaCha8 stream — so files are byte-identical whatever the thread count.
//! Datasets are staged in a hidden sibling directory and renamed into place
//! when complete, so an interrupted run never leaves something that looks
//! finished.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::grf::GrfSampler;
use crate::npy::{self, NpyWriter};
use crate::pde::{PdeConfig, PdeKind};

/// Samples generated (in parallel) between two writes to disk; bounds memory
/// at large resolutions while keeping every core busy.
const CHUNK: usize = 256;

/// What `meta.json` records beside a dataset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetMeta {
    /// The PDE and every parameter of it and of its random input field.
    pub pde: PdeConfig,
    /// Grid nodes per side (boundary included).
    pub res: usize,
    /// Number of samples.
    pub count: usize,
    /// Master seed; sample `k` uses ChaCha8 stream `k` of this seed.
    pub seed: u64,
    /// Shape of `a.npy` and `u.npy`: `[count, res, res]`, float32, C order.
    pub shape: [usize; 3],
    /// What `a.npy` holds for this PDE (`a` for Darcy, the source `f` otherwise).
    pub input: String,
    /// Version of ddis that wrote the dataset.
    pub ddis_version: String,
}

impl DatasetMeta {
    /// Reads `DIR/meta.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("meta.json");
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a ddis dataset description", path.display()))
    }
}

/// The population standard deviation of every value of `u` in the dataset
/// at `dir` (the readings' unit floor of exact-physics artifacts, as the
/// surrogate's `u_std` is for the surrogate).
pub fn solution_spread(dir: &Path) -> Result<f64> {
    Ok(solution_stats(dir)?.spread)
}

/// Summary of every value of `u` in a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolutionStats {
    /// Population standard deviation.
    pub spread: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// The spread and range of every value of `u` in the dataset at `dir`.
pub fn solution_stats(dir: &Path) -> Result<SolutionStats> {
    let u = npy::read(&dir.join("u.npy")).with_context(|| format!("cannot read the solutions of {}", dir.display()))?;
    let count = u.data.len().max(1) as f64;
    let mean = u.data.iter().map(|&v| v as f64).sum::<f64>() / count;
    let var = u.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
    let (min, max) =
        u.data.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v as f64), hi.max(v as f64)));
    Ok(SolutionStats { spread: var.sqrt(), min, max })
}

/// The range of every value of `u` in the dataset at `dir` (as
/// [`solution_stats`] gives it), streamed from the file: the array is never
/// held.
pub fn solution_range(dir: &Path) -> Result<(f64, f64)> {
    let context = || format!("cannot read the solutions of {}", dir.display());
    let values = npy::NpyReader::open(&dir.join("u.npy")).with_context(context)?;
    let mut range = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        let v = f64::from(v.with_context(context)?);
        range = (range.0.min(v), range.1.max(v));
    }
    Ok(range)
}

/// The random stream of sample `index` of a dataset with `seed`.
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Generates samples `range` of the dataset `(pde, res, seed)` in parallel on
/// the current rayon pool. Returns the inputs and solutions, each
/// `range.len() * res * res` values in C order.
pub fn generate_range(
    pde: &PdeConfig,
    res: usize,
    seed: u64,
    range: std::ops::Range<usize>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let grf = GrfSampler::new(res, pde.grf)?;
    // Each worker builds its solver (factorisation workspace) once.
    let pairs: Vec<(Vec<f64>, Vec<f64>)> = range
        .into_par_iter()
        .map_init(
            || pde.solver(res),
            |solver, k| -> Result<(Vec<f64>, Vec<f64>)> {
                let solver = solver.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut rng = sample_rng(seed, k as u64);
                let input = solver.sample_input(&grf, &mut rng)?;
                let u = solver.solve(&input).with_context(|| format!("sample {k}"))?;
                Ok((input, u))
            },
        )
        .collect::<Result<_>>()?;
    let mut a = Vec::with_capacity(pairs.len() * res * res);
    let mut u = Vec::with_capacity(pairs.len() * res * res);
    for (x, y) in pairs {
        a.extend(x.iter().map(|&v| v as f32));
        u.extend(y.iter().map(|&v| v as f32));
    }
    Ok((a, u))
}

/// Options of `ddis data gen`.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The PDE and its parameters.
    pub pde: PdeConfig,
    /// Grid nodes per side.
    pub res: usize,
    /// Number of samples.
    pub count: usize,
    /// Master seed.
    pub seed: u64,
    /// Replace an existing dataset at the output path.
    pub force: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Generates a dataset into `out` (`a.npy`, `u.npy`, `meta.json`).
pub fn generate_dataset(opts: &GenOptions, out: &Path) -> Result<DatasetMeta> {
    if opts.count == 0 {
        bail!("--count must be at least 1");
    }
    if opts.res < 3 {
        bail!("--res must be at least 3 (the grid includes its boundary nodes)");
    }
    if out.exists() && !opts.force {
        bail!("{} already exists; pass --force to replace it", out.display());
    }
    // Fail on a bad configuration before touching the disk.
    GrfSampler::new(opts.res, opts.pde.grf)?;
    opts.pde.solver(opts.res)?;
    write_staged(out, |staging| write_dataset(opts, staging))
}

/// Runs `write` on a fresh staging directory beside `out` and, if it
/// succeeds, moves the directory into place (replacing `out`); on failure
/// the staging directory is removed and `out` is left as it was.
fn write_staged<T>(out: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let staging = staging_dir(out)?;
    let value = match write(&staging) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    fs::rename(&staging, out).with_context(|| format!("cannot move the dataset into {}", out.display()))?;
    Ok(value)
}

/// Writes `DIR/meta.json`.
fn write_meta(dir: &Path, meta: &DatasetMeta) -> Result<()> {
    let text = serde_json::to_string_pretty(meta)? + "\n";
    fs::write(dir.join("meta.json"), text).with_context(|| format!("cannot write {}", dir.display()))
}

/// Generates and writes every file of the dataset into `staging`.
fn write_dataset(opts: &GenOptions, staging: &Path) -> Result<DatasetMeta> {
    let shape = [opts.count, opts.res, opts.res];
    let mut a_file = NpyWriter::create(&staging.join("a.npy"), &shape)?;
    let mut u_file = NpyWriter::create(&staging.join("u.npy"), &shape)?;
    let bar = progress_bar(opts.count as u64, opts.progress, "solving");
    let mut start = 0;
    while start < opts.count {
        let end = (start + CHUNK).min(opts.count);
        let (a, u) = generate_range(&opts.pde, opts.res, opts.seed, start..end)?;
        a_file.write(&a)?;
        u_file.write(&u)?;
        bar.inc((end - start) as u64);
        start = end;
    }
    a_file.finish()?;
    u_file.finish()?;
    bar.finish_and_clear();

    let meta = DatasetMeta {
        pde: opts.pde,
        res: opts.res,
        count: opts.count,
        seed: opts.seed,
        shape,
        input: input_name(opts.pde.kind).to_string(),
        ddis_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_meta(staging, &meta)?;
    Ok(meta)
}

/// What the input field of `kind` is called in files and messages.
pub fn input_name(kind: PdeKind) -> &'static str {
    match kind {
        PdeKind::Darcy => "a",
        _ => "f",
    }
}

/// A fresh hidden sibling `.NAME.partial` of `out`; a stale one from an
/// interrupted run is removed first.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    let name = out.file_name().with_context(|| format!("{} is not a directory name", out.display()))?.to_string_lossy();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(".{name}.partial"));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("cannot remove stale {}", staging.display()))?;
    }
    fs::create_dir(&staging).with_context(|| format!("cannot write to {}", parent.display()))?;
    Ok(staging)
}

/// A progress bar on stderr with rate and ETA, or a hidden one.
pub fn progress_bar(len: u64, visible: bool, what: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
        .expect("static template");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Solves the PDE for the fields in `input` (`[res, res]` or
/// `[count, res, res]`, float32/float64) and writes the solutions to
/// `output` with the same shape. Everything is validated before anything is
/// written.
pub fn solve_file(pde: &PdeConfig, input: &Path, output: &Path, progress: bool) -> Result<()> {
    let arr = npy::read(input)?;
    let (_, res) = check_fields(pde, input, &arr)?;
    let fields = solve_fields(pde, res, &arr.data, progress)?;
    npy::write(output, &arr.shape, &fields)?;
    Ok(())
}

/// `(count, res)` of input fields read from `input`, after checking the
/// shape (`[res, res]` or `[count, res, res]`, `res >= 3`), that every value
/// is finite and, for Darcy, positive. Errors name the field and node.
fn check_fields(pde: &PdeConfig, input: &Path, arr: &npy::NpyArray) -> Result<(usize, usize)> {
    let (count, res) = match arr.shape[..] {
        [r1, r2] if r1 == r2 => (1, r1),
        [c, r1, r2] if r1 == r2 => (c, r1),
        [_, _] | [_, _, _] => bail!("{}: fields must be square, got shape {:?}", input.display(), arr.shape),
        _ => bail!(
            "{}: expected shape [res, res] or [count, res, res], got {:?} (rank {})",
            input.display(),
            arr.shape,
            arr.shape.len()
        ),
    };
    if res < 3 {
        bail!("{}: fields must be at least 3 x 3, got {res} x {res}", input.display());
    }
    if let Some(k) = arr.data.iter().position(|v| !v.is_finite()) {
        let (s, i, j) = (k / (res * res), (k / res) % res, k % res);
        bail!("{}: non-finite value {} in field {s} at [{i}, {j}]", input.display(), arr.data[k]);
    }
    if pde.kind == PdeKind::Darcy
        && let Some(k) = arr.data.iter().position(|&v| v <= 0.0)
    {
        let (s, i, j) = (k / (res * res), (k / res) % res, k % res);
        bail!(
            "{}: Darcy coefficient must be positive, got {} in field {s} at [{i}, {j}]",
            input.display(),
            arr.data[k]
        );
    }
    pde.solver(res)?;
    Ok((count, res))
}

/// Solves the PDE for each `res x res` field of `data` (in parallel).
fn solve_fields(pde: &PdeConfig, res: usize, data: &[f32], progress: bool) -> Result<Vec<f32>> {
    let bar = progress_bar((data.len() / (res * res)) as u64, progress, "solving");
    let fields: Vec<Vec<f32>> = data
        .par_chunks(res * res)
        .enumerate()
        .map_init(
            || pde.solver(res),
            |solver, (s, field)| -> Result<Vec<f32>> {
                let solver = solver.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                let x: Vec<f64> = field.iter().map(|&v| v as f64).collect();
                let u = solver.solve(&x).with_context(|| format!("field {s}"))?;
                bar.inc(1);
                Ok(u.iter().map(|&v| v as f32).collect())
            },
        )
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    Ok(fields.concat())
}

/// Options of `ddis data import`.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The PDE the fields are inputs of (Darcy's phases are read from the
    /// fields).
    pub pde: PdeConfig,
    /// Input fields, `[count, res, res]` .npy (float32 or float64).
    pub fields: PathBuf,
    /// Their solutions, same shape; solved with ddis's solver when absent.
    pub solutions: Option<PathBuf>,
    /// Replace an existing dataset at the output path.
    pub force: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Turns fields you bring into a dataset (`a.npy`, `u.npy`, `meta.json`)
/// that `ddis train` and `ddis eval` read like a generated one. Darcy
/// fields must be two-phase (exactly two positive values, recorded as
/// `a_low` / `a_high`); solutions, when given, must match the fields'
/// shape and be finite. Everything is checked before anything is written,
/// and the dataset appears at `out` only when complete.
pub fn import_dataset(opts: &ImportOptions, out: &Path) -> Result<DatasetMeta> {
    if out.exists() && !opts.force {
        bail!("{} already exists; pass --force to replace it", out.display());
    }
    let fields = npy::read(&opts.fields)?;
    let mut pde = opts.pde;
    let (count, res) = check_fields(&pde, &opts.fields, &fields)?;
    if pde.kind == PdeKind::Darcy {
        let (lo, hi) = two_phases(&fields.data).with_context(|| {
            format!(
                "{}: ddis models Darcy coefficients with two phases, so the fields must take exactly two values",
                opts.fields.display()
            )
        })?;
        pde.darcy = crate::pde::DarcyConfig { a_low: f64::from(lo), a_high: f64::from(hi), threshold: 0.0 };
        pde.validate()?;
    }
    let u = match &opts.solutions {
        Some(path) => {
            let u = npy::read(path)?;
            if u.shape[..] != fields.shape[..] {
                bail!(
                    "{}: shape {:?} differs from the fields' {:?} ({})",
                    path.display(),
                    u.shape,
                    fields.shape,
                    opts.fields.display()
                );
            }
            if let Some(k) = u.data.iter().position(|v| !v.is_finite()) {
                let (s, i, j) = (k / (res * res), (k / res) % res, k % res);
                bail!("{}: non-finite value {} in solution {s} at [{i}, {j}]", path.display(), u.data[k]);
            }
            u.data
        }
        None => solve_fields(&pde, res, &fields.data, opts.progress)?,
    };
    let shape = [count, res, res];
    let meta = DatasetMeta {
        pde,
        res,
        count,
        seed: 0,
        shape,
        input: input_name(pde.kind).to_string(),
        ddis_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_staged(out, |staging| {
        npy::write(&staging.join("a.npy"), &shape, &fields.data)?;
        npy::write(&staging.join("u.npy"), &shape, &u)?;
        write_meta(staging, &meta)?;
        Ok(meta)
    })
}

/// The two values `(low, high)` of a two-phase field, or an error naming
/// a third value (or the lone value).
fn two_phases(data: &[f32]) -> Result<(f32, f32)> {
    let first = *data.first().context("no values")?;
    let mut other: Option<f32> = None;
    for (k, &v) in data.iter().enumerate() {
        if v == first || other == Some(v) {
            continue;
        }
        match other {
            None => other = Some(v),
            Some(o) => bail!("found a third value {v} at flat index {k} besides {first} and {o}"),
        }
    }
    let o = other.with_context(|| format!("every value is {first}: one phase only"))?;
    Ok((first.min(o), first.max(o)))
}

/// A dataset loaded into memory: inputs and solutions, `[count, res, res]`.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// What `meta.json` says.
    pub meta: DatasetMeta,
    /// Input fields (`a` or `f`), C order.
    pub a: Vec<f32>,
    /// Solutions `u`, C order.
    pub u: Vec<f32>,
}

impl Dataset {
    /// Loads `DIR/{meta.json, a.npy, u.npy}` and checks that they agree.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta = DatasetMeta::load(dir)?;
        let a = npy::read(&dir.join("a.npy"))?;
        let u = npy::read(&dir.join("u.npy"))?;
        for (name, arr) in [("a.npy", &a), ("u.npy", &u)] {
            if arr.shape[..] != meta.shape[..] {
                bail!(
                    "{}: shape {:?} does not match meta.json's {:?}",
                    dir.join(name).display(),
                    arr.shape,
                    meta.shape
                );
            }
        }
        Ok(Self { meta, a: a.data, u: u.data })
    }

    /// Nodes per side.
    pub fn res(&self) -> usize {
        self.meta.res
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.meta.count
    }

    /// Whether the dataset holds no samples.
    pub fn is_empty(&self) -> bool {
        self.meta.count == 0
    }

    /// The samples `idx` of `field` (`&self.a` or `&self.u`), concatenated.
    pub fn gather(&self, field: &[f32], idx: &[usize]) -> Vec<f32> {
        let per = self.res() * self.res();
        let mut out = Vec::with_capacity(idx.len() * per);
        for &k in idx {
            out.extend_from_slice(&field[k * per..(k + 1) * per]);
        }
        out
    }
}
