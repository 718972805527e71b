//! Adjoints of the exact solvers (placeholder, being written).
