//! The 5-point diffusion operator `K = -div(a grad .)` on interior nodes,
//! assembled as a sparse matrix (for factorisation) and applied matrix-free
//! (for residual checks, an independent code path).
//!
//! Unknowns are the interior nodes in row-major order. Every PDE here is
//! `sign * K + shift * I` with `a = 1` for the Laplacian, so one assembler
//! serves all of them; the solvers own the factorisations.

use faer::sparse::{SparseColMat, Triplet};

use crate::error::Error;
use crate::grid::Grid;

/// Grid node (flat index) of interior unknown `p`.
pub(crate) fn node_of_unknown(grid: Grid, p: usize) -> usize {
    let m = grid.n - 2;
    grid.idx(p / m + 1, p % m + 1)
}

/// Coefficient on the face between nodes `p` and `q`: the harmonic mean,
/// which is what keeps flux continuous across a jump in `a`. `2*a*b` is
/// formed as `(2a)*b`, exact in the factor 2, so the result is symmetric in
/// its arguments bit for bit.
#[inline]
fn face(a: Option<&[f64]>, p: usize, q: usize) -> f64 {
    match a {
        Some(a) => 2.0 * a[p] * a[q] / (a[p] + a[q]),
        None => 1.0,
    }
}

/// Which triangle of the symmetric operator a matrix stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Entries with row <= column, what the Cholesky factorisation reads.
    Upper,
    /// The whole matrix, for LU.
    Full,
}

/// The sparsity pattern of the operator plus, per stored value, the grid
/// nodes of its row and column, so numeric values can be refilled for a new
/// coefficient without touching the pattern.
pub(crate) struct StencilMatrix {
    grid: Grid,
    mat: SparseColMat<usize, f64>,
    /// `(row node, column node)` of each stored value, in CSC order.
    slots: Vec<(usize, usize)>,
}

impl StencilMatrix {
    /// Builds the pattern from triplets (values zero until [`Self::fill`]).
    pub(crate) fn new(grid: Grid, storage: Storage) -> Result<Self, Error> {
        let m = grid.n - 2;
        let unknowns = m * m;
        let mut triplets = Vec::with_capacity(5 * unknowns);
        for p in 0..unknowns {
            let (r, c) = (p / m, p % m);
            // Column p holds row q for every interior neighbour q of p.
            let mut neighbours = [None; 4];
            if r > 0 {
                neighbours[0] = Some(p - m);
            }
            if c > 0 {
                neighbours[1] = Some(p - 1);
            }
            if c + 1 < m {
                neighbours[2] = Some(p + 1);
            }
            if r + 1 < m {
                neighbours[3] = Some(p + m);
            }
            triplets.push(Triplet::new(p, p, 0.0));
            for q in neighbours.into_iter().flatten() {
                if storage == Storage::Full || q < p {
                    triplets.push(Triplet::new(q, p, 0.0));
                }
            }
        }
        let mat = SparseColMat::<usize, f64>::try_new_from_triplets(unknowns, unknowns, &triplets)
            .map_err(|e| Error::Factorisation(format!("building the {}x{} pattern: {e:?}", grid.n, grid.n)))?;

        let sym = mat.symbolic();
        let mut slots = Vec::with_capacity(sym.row_idx().len());
        for col in 0..unknowns {
            for &row in &sym.row_idx()[sym.col_ptr()[col]..sym.col_ptr()[col + 1]] {
                slots.push((node_of_unknown(grid, row), node_of_unknown(grid, col)));
            }
        }
        Ok(StencilMatrix { grid, mat, slots })
    }

    /// The matrix with its current values.
    pub(crate) fn matrix(&self) -> &SparseColMat<usize, f64> {
        &self.mat
    }

    /// Sets the values to `sign * K(a) + shift * I`, `a = None` meaning
    /// `a = 1`. The caller has validated `a` (length n*n, finite, > 0).
    pub(crate) fn fill(&mut self, a: Option<&[f64]>, sign: f64, shift: f64) {
        let n = self.grid.n;
        let inv_h2 = 1.0 / (self.grid.h() * self.grid.h());
        for (value, &(row, col)) in self.mat.val_mut().iter_mut().zip(&self.slots) {
            *value = if row == col {
                // Boundary neighbours contribute their face to the diagonal;
                // their u is the zero Dirichlet value.
                let sum = face(a, col, col - n) + face(a, col, col - 1) + face(a, col, col + 1) + face(a, col, col + n);
                sign * sum * inv_h2 + shift
            } else {
                -sign * face(a, row, col) * inv_h2
            };
        }
    }
}

/// `(K(a) u)_p` for every interior unknown `p`, with `u` given on all n*n
/// nodes (its boundary values act as Dirichlet data). Written as a plain
/// stencil loop on purpose: it checks the assembled matrix, so it must not
/// share its indexing. `a = None` means `a = 1`.
pub(crate) fn apply_diffusion(grid: Grid, a: Option<&[f64]>, u: &[f64], out: &mut [f64]) {
    let n = grid.n;
    let inv_h2 = 1.0 / (grid.h() * grid.h());
    let mut p = 0;
    for i in 1..n - 1 {
        for j in 1..n - 1 {
            let c = i * n + j;
            let mut acc = 0.0;
            for nb in [(i - 1) * n + j, i * n + j - 1, i * n + j + 1, (i + 1) * n + j] {
                acc += face(a, c, nb) * (u[c] - u[nb]);
            }
            out[p] = acc * inv_h2;
            p += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense `matrix * x` from the stored (possibly upper) triangle.
    fn dense_apply(sm: &StencilMatrix, storage: Storage, x: &[f64]) -> Vec<f64> {
        let sym = sm.matrix().symbolic();
        let val = sm.matrix().val();
        let mut y = vec![0.0; x.len()];
        for col in 0..x.len() {
            let range = sym.col_ptr()[col]..sym.col_ptr()[col + 1];
            for (&row, &v) in sym.row_idx()[range.clone()].iter().zip(&val[range]) {
                y[row] += v * x[col];
                if storage == Storage::Upper && row != col {
                    y[col] += v * x[row];
                }
            }
        }
        y
    }

    #[test]
    fn assembled_matrix_matches_stencil() {
        let grid = Grid::new(7).unwrap();
        let a: Vec<f64> = (0..grid.len()).map(|k| 1.0 + (k % 5) as f64).collect();
        // Interior values arbitrary, boundary zero: the matrix acts on
        // interior unknowns only.
        let mut u = vec![0.0; grid.len()];
        let mut x = vec![0.0; grid.interior_len()];
        for (p, xp) in x.iter_mut().enumerate() {
            *xp = ((p * 7 % 11) as f64 - 5.0) / 3.0;
            u[node_of_unknown(grid, p)] = *xp;
        }
        let mut expected = vec![0.0; x.len()];
        apply_diffusion(grid, Some(&a), &u, &mut expected);
        for storage in [Storage::Upper, Storage::Full] {
            let mut sm = StencilMatrix::new(grid, storage).unwrap();
            sm.fill(Some(&a), 1.0, 0.0);
            let got = dense_apply(&sm, storage, &x);
            for (p, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!((g - e).abs() <= 1e-12 * e.abs().max(1.0), "{storage:?} p={p}: got {g}, expected {e}");
            }
        }
    }
}
