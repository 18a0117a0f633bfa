//! edgetrain's engine, free of Python so that it tests with `cargo test` alone
//! and can sit behind other fronts (C, Android) later.
//!
//! The kernels work on `f32` slices in NCHW, row-major order. They never allocate
//! tensors: every buffer, scratch included, comes from the caller (later, the arena the
//! memory planner lays out). Each validates its slices against the shapes it is given
//! and returns [`Result`] instead of panicking.

#![warn(missing_docs)]

pub mod error;
pub mod executor;
pub mod gemm;
pub mod kernels;
pub mod optim;
pub mod planner;
pub mod program;

pub use error::{Dims, Error, Result};

/// The crate version, which the Python package checks against its own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_semver() {
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
    }
}
