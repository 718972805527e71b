//! The crate's typed error: everything that can go wrong below the command
//! layer (grid, GRF, PDE solvers, observations, sensor files, configs).
//!
//! A leaf module: it imports nothing from the crate, so every layer can
//! return it without pulling in the layers above (the PDE code used to own
//! it, which made `grid -> pde -> grf -> grid` a circle). The commands wrap
//! it in `anyhow` with the context of what the user asked for.

/// Everything that can go wrong in the grid, GRF and PDE code.
///
/// Bad input is always reported through this type, never by a panic.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The grid has no interior node (or `n*n` overflows).
    #[error("grid of {n}x{n} nodes is too small: need n >= {min}")]
    GridTooSmall {
        /// Requested nodes per side.
        n: usize,
        /// Smallest allowed value.
        min: usize,
    },
    /// A model of one denoiser architecture where another is needed.
    #[error("the denoiser is {got}, but this needs {expected}")]
    ArchMismatch {
        /// The architecture the code path needs (`fno` or `unet`).
        expected: &'static str,
        /// The config's architecture.
        got: &'static str,
    },
    /// A multi-level network needs `n` divisible by `2^(levels - 1)`.
    #[error("grid of {n}x{n} nodes: a {levels}-level U-Net needs n a multiple of {factor}")]
    GridNotDivisible {
        /// Requested nodes per side.
        n: usize,
        /// The factor `n` must be a multiple of.
        factor: usize,
        /// Levels of the network.
        levels: usize,
    },
    /// A field or buffer has the wrong number of values.
    #[error("`{field}` has {got} values, expected {expected}")]
    ShapeMismatch {
        /// Which argument was wrong.
        field: &'static str,
        /// Length required by the grid.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A field holds NaN or an infinity.
    #[error("`{field}` is not finite at flat index {index}")]
    NonFinite {
        /// Which argument was wrong.
        field: &'static str,
        /// First offending flat (row-major) index.
        index: usize,
    },
    /// A Darcy coefficient is zero or negative, so the operator is not
    /// elliptic.
    #[error("Darcy coefficient must be > 0, got {value} at flat index {index}")]
    NonPositiveCoefficient {
        /// First offending flat (row-major) index.
        index: usize,
        /// The value found there.
        value: f64,
    },
    /// The PDE needs a coefficient field and none was given.
    #[error("{pde} needs a coefficient field")]
    MissingCoefficient {
        /// The PDE that was asked (`PdeKind::name`).
        pde: &'static str,
    },
    /// A coefficient field was given to a PDE that has none.
    #[error("{pde} takes no coefficient field")]
    UnexpectedCoefficient {
        /// The PDE that was asked (`PdeKind::name`).
        pde: &'static str,
    },
    /// A PDE name that is not one of `PdeKind::ALL`.
    #[error("unknown PDE `{0}` (valid: darcy, poisson, helmholtz)")]
    UnknownPde(String),
    /// A configuration value is out of its domain.
    #[error("invalid `{name}` = {value}: {reason}")]
    InvalidConfig {
        /// Name of the configuration field.
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// The sparse factorisation failed (e.g. a non-positive pivot or a
    /// structurally singular matrix).
    #[error("sparse factorisation failed: {0}")]
    Factorisation(String),
    /// Helmholtz `k^2` sits on (or within round-off of) an eigenvalue of the
    /// discrete `-Laplacian`, so the operator is numerically singular.
    #[error("helmholtz k = {k} is resonant on this grid: condition number {condition:e}")]
    ResonantHelmholtz {
        /// The rejected wave number.
        k: f64,
        /// 2-norm condition number of `Laplacian + k^2 I` (may be infinite).
        condition: f64,
    },
    /// The solve produced NaN or an infinity: the operator is numerically
    /// singular.
    #[error("solution is not finite at flat index {index}: operator is numerically singular")]
    NonFiniteSolution {
        /// First offending flat (row-major) index of the solution.
        index: usize,
    },
    /// A set of observations with no sensor in it.
    #[error("no sensors: at least one observation is needed")]
    NoSensors,
    /// More sensors were asked for than the grid has places for.
    #[error("{count} sensors, but only {available} {places}")]
    TooManySensors {
        /// Sensors requested.
        count: usize,
        /// Places available for them.
        available: usize,
        /// What the places are, e.g. "nodes on the 5x5 grid".
        places: String,
    },
    /// A sensor's flat node index lies outside the grid.
    #[error("sensor {sensor} is at node {node}, outside the grid of {len} nodes")]
    SensorOffGrid {
        /// 0-based sensor number.
        sensor: usize,
        /// The rejected flat (row-major) node index.
        node: usize,
        /// Number of nodes on the grid, `n*n`.
        len: usize,
    },
    /// Two sensors sit on the same grid node.
    #[error("sensors {first} and {second} are both at node {node}")]
    DuplicateSensor {
        /// 0-based number of the earlier sensor.
        first: usize,
        /// 0-based number of the later sensor.
        second: usize,
        /// The shared flat (row-major) node index.
        node: usize,
    },
    /// A sensor reading is NaN or an infinity.
    #[error("sensor {sensor} reads {value}, which is not finite")]
    NonFiniteObservation {
        /// 0-based sensor number.
        sensor: usize,
        /// The rejected reading.
        value: f64,
    },
    /// A line of a sensor CSV file is malformed.
    #[error("{path}:{line}: {reason}")]
    ObservationFile {
        /// The file involved.
        path: String,
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A row of a sensor `.npy` array is malformed.
    #[error("{path}: row {row}: {reason}")]
    ObservationRow {
        /// The file involved.
        path: String,
        /// 0-based row of the `[K, 3]` array.
        row: usize,
        /// What is wrong with the row.
        reason: String,
    },
    /// A sensor file is unusable as a whole (no rows, wrong shape, unknown
    /// extension, more rows than grid nodes).
    #[error("{path}: {reason}")]
    ObservationFormat {
        /// The file involved.
        path: String,
        /// What is wrong with the file.
        reason: String,
    },
    /// The file system refused; the message is kept as text so the error
    /// stays `Clone + PartialEq`.
    #[error("{path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying I/O error, as text.
        message: String,
    },
}
