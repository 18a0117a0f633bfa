//! edgetrain's engine, free of Python so that it tests with `cargo test` alone
//! and can sit behind other fronts (C, Android) later.

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
