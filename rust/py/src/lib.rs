//! PyO3 bindings: a translation layer only; the engine lives in `edgetrain-core`.

use pyo3::prelude::*;

/// The version of the compiled core, equal to the Python package's version.
#[pyfunction]
fn version() -> &'static str {
    edgetrain_core::VERSION
}

/// edgetrain's compiled core.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add("__version__", edgetrain_core::VERSION)?;
    Ok(())
}
