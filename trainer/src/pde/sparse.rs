//! Thin owners of faer's sparse factorisations with their work memory.
//!
//! They use faer's low-level API so that the symbolic analysis (fill-reducing
//! ordering, elimination tree) is done once per pattern and numeric
//! refactorisations reuse both it and every buffer. Everything runs with
//! `Par::Seq`: the data engine parallelises over samples, and a sequential
//! solve gives the same bits whatever the thread count.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::sparse::SparseColMatRef;
use faer::sparse::linalg::cholesky::{self, LltRef, SymbolicCholesky, SymmetricOrdering};
use faer::sparse::linalg::lu::{self, LuRef, NumericLu, SymbolicLu};
use faer::{Conj, MatMut, Par, Side};

use crate::error::Error;

fn out_of_memory(what: &str) -> Error {
    Error::Factorisation(format!("out of memory allocating {what} workspace"))
}

/// Sparse `L L^T` of an SPD matrix given by its upper triangle, with a
/// reusable symbolic factorisation.
pub(crate) struct Cholesky {
    symbolic: SymbolicCholesky<usize>,
    l_values: Vec<f64>,
    factor_mem: MemBuffer,
    solve_mem: MemBuffer,
    factored: bool,
}

impl Cholesky {
    /// Symbolic analysis (AMD ordering) of the upper triangle `pattern`.
    pub(crate) fn new(pattern: SparseColMatRef<'_, usize, f64>) -> Result<Self, Error> {
        let symbolic = cholesky::factorize_symbolic_cholesky(
            pattern.symbolic(),
            Side::Upper,
            SymmetricOrdering::Amd,
            Default::default(),
        )
        .map_err(|e| Error::Factorisation(format!("symbolic Cholesky: {e:?}")))?;
        let factor_req = symbolic.factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default());
        let solve_req: StackReq = symbolic.solve_in_place_scratch::<f64>(1, Par::Seq);
        Ok(Cholesky {
            l_values: vec![0.0; symbolic.len_val()],
            factor_mem: MemBuffer::try_new(factor_req).map_err(|_| out_of_memory("Cholesky"))?,
            solve_mem: MemBuffer::try_new(solve_req).map_err(|_| out_of_memory("Cholesky solve"))?,
            symbolic,
            factored: false,
        })
    }

    /// Numeric factorisation of `mat`, which must have the pattern given to
    /// [`Cholesky::new`].
    pub(crate) fn factor(&mut self, mat: SparseColMatRef<'_, usize, f64>) -> Result<(), Error> {
        self.factored = false;
        self.symbolic
            .factorize_numeric_llt(
                &mut self.l_values,
                mat,
                Side::Upper,
                // No regularisation: a non-positive pivot is an error, not
                // something to paper over.
                LltRegularization::default(),
                Par::Seq,
                MemStack::new(&mut self.factor_mem),
                Default::default(),
            )
            .map_err(|e| Error::Factorisation(format!("numeric Cholesky: {e:?}")))?;
        self.factored = true;
        Ok(())
    }

    /// Overwrites `rhs` with `A^{-1} rhs`.
    pub(crate) fn solve_in_place(&mut self, rhs: &mut [f64]) -> Result<(), Error> {
        if !self.factored {
            return Err(Error::Factorisation("Cholesky solve before a successful factorisation".into()));
        }
        let n = rhs.len();
        LltRef::new(&self.symbolic, &self.l_values).solve_in_place_with_conj(
            Conj::No,
            MatMut::from_column_major_slice_mut(rhs, n, 1),
            Par::Seq,
            MemStack::new(&mut self.solve_mem),
        );
        Ok(())
    }
}

/// Sparse LU with partial pivoting of a general (here: symmetric
/// indefinite) matrix given in full; factorised once.
pub(crate) struct Lu {
    symbolic: SymbolicLu<usize>,
    numeric: NumericLu<usize, f64>,
    solve_mem: MemBuffer,
}

impl Lu {
    /// Symbolic (COLAMD) and numeric factorisation of `mat`.
    pub(crate) fn new(mat: SparseColMatRef<'_, usize, f64>) -> Result<Self, Error> {
        let symbolic = lu::factorize_symbolic_lu(mat.symbolic(), Default::default())
            .map_err(|e| Error::Factorisation(format!("symbolic LU: {e:?}")))?;
        let mut numeric = NumericLu::new();
        let mut factor_mem =
            MemBuffer::try_new(symbolic.factorize_numeric_lu_scratch::<f64>(Par::Seq, Default::default()))
                .map_err(|_| out_of_memory("LU"))?;
        symbolic
            .factorize_numeric_lu(&mut numeric, mat, Par::Seq, MemStack::new(&mut factor_mem), Default::default())
            .map_err(|e| Error::Factorisation(format!("numeric LU: {e:?}")))?;
        let solve_mem = MemBuffer::try_new(symbolic.solve_in_place_scratch::<f64>(1, Par::Seq))
            .map_err(|_| out_of_memory("LU solve"))?;
        Ok(Lu { symbolic, numeric, solve_mem })
    }

    /// Overwrites `rhs` with `A^{-1} rhs`.
    pub(crate) fn solve_in_place(&mut self, rhs: &mut [f64]) {
        let n = rhs.len();
        // `numeric` came out of `factorize_numeric_lu` with `symbolic`, which
        // is the pairing `new_unchecked` requires.
        LuRef::new_unchecked(&self.symbolic, &self.numeric).solve_in_place_with_conj(
            Conj::No,
            MatMut::from_column_major_slice_mut(rhs, n, 1),
            Par::Seq,
            MemStack::new(&mut self.solve_mem),
        );
    }
}
