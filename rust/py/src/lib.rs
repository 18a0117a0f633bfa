//! PyO3 bindings: a translation layer only; the engine lives in `edgetrain-core`.
//!
//! `CoreExecutor` runs a lowered program (`spec/core-program.md`) in the arena it owns;
//! `tensor(name)` gives numpy arrays that *are* the arena's bytes (the executor object
//! is their base, so the memory outlives every array). Steps run with the GIL released;
//! every engine error becomes one of the exceptions below, and a panic inside the engine
//! is caught and raised as `CoreError` instead of crossing the boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};

use edgetrain_core::executor::{Executor, Mode};
use edgetrain_core::program::{DType, Program};
use edgetrain_core::Error;
use numpy::ndarray::{ArrayView1, ArrayViewD, IxDyn};
use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    _core,
    CoreError,
    PyValueError,
    "Base of the errors the compiled core raises (edgetrain translates them to its own)."
);
create_exception!(
    _core,
    CoreShapeError,
    CoreError,
    "A tensor whose size or shape does not fit the op (edgetrain's ShapeError)."
);
create_exception!(
    _core,
    CoreDataError,
    CoreError,
    "Data an op cannot take, e.g. an embedding id out of range (edgetrain's DataError)."
);
create_exception!(
    _core,
    CoreSwapError,
    CoreError,
    "The swap file could not be made or used (edgetrain's SwapError)."
);
create_exception!(
    _core,
    CoreConfigError,
    CoreError,
    "A program, property or argument the core refuses (edgetrain's ConfigError)."
);

fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    let mut root = &error;
    while let Error::Step { source, .. } = root {
        root = source;
    }
    match root {
        Error::SliceLength { .. } | Error::ShapeMismatch { .. } => CoreShapeError::new_err(message),
        Error::InvalidData { .. } => CoreDataError::new_err(message),
        Error::Swap { .. } => CoreSwapError::new_err(message),
        _ => CoreConfigError::new_err(message),
    }
}

/// Runs `work`, turning an engine error into its exception and a panic into `CoreError`.
fn guarded<T>(work: impl FnOnce() -> edgetrain_core::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result.map_err(to_py),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CoreError::new_err(format!(
                "internal error in the core: {what}"
            )))
        }
    }
}

/// A lowered program running in the arena it owns.
#[pyclass(module = "edgetrain._core")]
struct CoreExecutor {
    inner: Executor,
    /// Arrays whose memory external tensors use, kept alive as long as the executor.
    externals: Vec<Py<PyAny>>,
}

fn view<'py, T: Element>(
    owner: &Bound<'py, CoreExecutor>,
    ptr: *mut u8,
    shape: &[usize],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    // SAFETY: `ptr` is a region of the executor's arena holding `shape` elements of `T`
    // (checked when the program was validated); the arena is never reallocated and is
    // freed only when the executor, set as the array's base object, is dropped.
    let array = unsafe { ArrayViewD::<T>::from_shape_ptr(IxDyn(shape), ptr as *const T) };
    let array = unsafe { PyArrayDyn::<T>::borrow_from_array(&array, owner.clone().into_any()) };
    Ok(array.into_any().cast_into::<PyUntypedArray>()?)
}

#[pymethods]
impl CoreExecutor {
    /// Parses and validates the JSON description, allocates the arena (zeroed) and a
    /// pool of `threads` threads; `seed` seeds the dropout masks.
    #[new]
    /// A program with a swap schedule gets its swap file in `swap_dir` (default: the
    /// system temporary directory), created at its full size here.
    #[pyo3(signature = (description, threads, seed = 0, swap_dir = None))]
    fn new(
        description: &str,
        threads: usize,
        seed: u64,
        swap_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let inner = guarded(|| {
            Executor::with_swap_dir(
                Program::from_json(description)?,
                threads,
                seed,
                swap_dir.as_deref(),
            )
        })?;
        Ok(CoreExecutor {
            inner,
            externals: Vec::new(),
        })
    }

    /// Binds external tensor `name` to `array` (C-contiguous, writeable float32 of the
    /// tensor's size), which the executor keeps alive and reads in place.
    fn bind_external(&mut self, name: &str, array: &Bound<'_, PyArrayDyn<f32>>) -> PyResult<()> {
        if !array.is_c_contiguous() {
            return Err(CoreConfigError::new_err(format!(
                "external tensor '{name}': array is not C-contiguous"
            )));
        }
        drop(array.try_readwrite().map_err(|e| {
            CoreConfigError::new_err(format!(
                "external tensor '{name}': array is not writeable ({e})"
            ))
        })?);
        let bytes = array.len() * std::mem::size_of::<f32>();
        // SAFETY: the array is kept alive in `externals` as long as the executor; numpy
        // memory of a contiguous array is valid and aligned for its length; the caller
        // (edgetrain) does not touch it while a step runs, the GIL being released only
        // around steps of this executor.
        guarded(|| unsafe { self.inner.bind_external(name, array.data().cast(), bytes) })?;
        self.externals.push(array.clone().into_any().unbind());
        Ok(())
    }

    /// A numpy array that is tensor `name`'s bytes in the arena (no copy).
    fn tensor<'py>(slf: &Bound<'py, Self>, name: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
        let (ptr, shape, dtype) = {
            let this = slf.borrow();
            let program = this.inner.program();
            let index = program
                .tensor_index(name)
                .ok_or_else(|| CoreConfigError::new_err(format!("no tensor named '{name}'")))?;
            let tensor = &program.tensors[index];
            if tensor.offset.is_none() && !program.is_swapped(index) {
                return Err(CoreConfigError::new_err(format!(
                    "tensor '{name}' is external to the arena"
                )));
            }
            let (ptr, _) = this
                .inner
                .memory()
                .region(index)
                .expect("arena tensors have a region");
            (ptr, tensor.shape.clone(), tensor.dtype)
        };
        match dtype {
            DType::Float32 => view::<f32>(slf, ptr, &shape),
            DType::Int32 => view::<i32>(slf, ptr, &shape),
            DType::Uint8 => view::<u8>(slf, ptr, &shape),
        }
    }

    /// The whole arena as a uint8 array (no copy).
    fn arena<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let (ptr, len) = {
            let this = slf.borrow();
            let arena = this.inner.memory().arena();
            (arena.as_ptr(), arena.len())
        };
        // SAFETY: as in `view`: the arena lives as long as its base object, the executor.
        let array = unsafe { ArrayView1::<u8>::from_shape_ptr(len, ptr as *const u8) };
        Ok(unsafe { PyArray1::<u8>::borrow_from_array(&array, slf.clone().into_any()) })
    }

    /// One training iteration over the batch in the input and label tensors; returns
    /// the loss plus the L2 penalty. `update` counts optimizer updates, this one included.
    fn train_step(&mut self, py: Python<'_>, lr: f64, update: u64) -> PyResult<f64> {
        let inner = &mut self.inner;
        py.detach(|| guarded(|| inner.train_step(lr, update)))
    }

    /// The forward steps; `label` computes the loss too.
    #[pyo3(signature = (training = false, label = false))]
    fn forward(&mut self, py: Python<'_>, training: bool, label: bool) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| guarded(|| inner.forward(training, label)))
    }

    /// Entry `order` of the execution order alone (conformance tests compare step by step).
    #[pyo3(signature = (order, *, training, label, lr = 0.0, update = 0))]
    fn run_step(
        &mut self,
        py: Python<'_>,
        order: usize,
        training: bool,
        label: bool,
        lr: f64,
        update: u64,
    ) -> PyResult<()> {
        let inner = &mut self.inner;
        let mode = Mode {
            training,
            label,
            lr,
            update,
        };
        py.detach(|| guarded(|| inner.run_step(order, mode)))
    }

    /// Starts an iteration of a swapping program: the input and label tensors move to
    /// where order 0 has them (fetch their arrays again before loading the batch).
    fn begin_iteration(&mut self) -> PyResult<()> {
        guarded(|| self.inner.begin_iteration())
    }

    /// Writes resident weights back and unlinks the swap file (training is refused
    /// afterwards; arrays over swapped tensors stay valid until the executor goes).
    fn close_swap(&mut self) {
        self.inner.close_swap();
    }

    /// The swap schedule the core carries out, as JSON (None without swapping): the
    /// `swap` entry of the description as the core parsed it (conformance tests).
    fn swap_schedule(&self) -> PyResult<Option<String>> {
        self.inner
            .program()
            .swap
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| CoreError::new_err(e.to_string()))
    }

    /// Drops the swap file's pages from the process's resident set (after the weights
    /// were written into their slots; the page cache keeps the data).
    fn release_swap_pages(&mut self) {
        self.inner.release_swap_pages();
    }

    /// The swap file's path (None without swapping).
    #[getter]
    fn swap_path(&self) -> Option<std::path::PathBuf> {
        self.inner.swap().map(|s| s.file().path().to_path_buf())
    }

    /// Bytes moved and time waited (None without swapping), in the order of the fields
    /// of the Python `SwapTraffic` (`backends/rust.py` copies them by position): `iterations`,
    /// `last_written`, `last_read`, `total_written`, `total_read`, `waits`,
    /// `wait_seconds`, `read_wait_seconds`, `write_waits`, `write_wait_seconds`,
    /// `transfer_seconds`.
    #[allow(clippy::type_complexity)]
    fn swap_traffic(&self) -> Option<(u64, u64, u64, u64, u64, u64, f64, f64, u64, f64, f64)> {
        self.inner.swap().map(|s| {
            let t = s.traffic();
            (
                t.iterations,
                t.last_written,
                t.last_read,
                t.total_written,
                t.total_read,
                t.waits,
                t.wait_seconds,
                t.read_wait_seconds,
                t.write_waits,
                t.write_wait_seconds,
                t.transfer_seconds,
            )
        })
    }

    /// The loss of the last forward with labels.
    fn loss(&mut self) -> PyResult<f32> {
        guarded(|| self.inner.loss())
    }

    /// `sum(l2 / 2 * sum(w^2))` over the weights with an L2 regularizer.
    fn regularization_loss(&mut self) -> PyResult<f64> {
        guarded(|| self.inner.regularization_loss())
    }

    /// Bytes of the arena.
    #[getter]
    fn arena_bytes(&self) -> usize {
        self.inner.memory().arena().len()
    }

    /// Threads of the executor's pool.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    /// The dropout generator's state (SplitMix64): saving it and setting it back later
    /// continues the same masks, which is how a checkpoint resumes exactly.
    #[getter]
    fn dropout_state(&self) -> u64 {
        self.inner.dropout_state()
    }

    #[setter]
    fn set_dropout_state(&mut self, state: u64) {
        self.inner.set_dropout_state(state);
    }
}

/// The swap schedule of a JSON request (`spec/swapping.md`): the core's own computation
/// of what `plan_swap` gives in the spec, as the JSON of `SwapSchedule.to_json()`.
#[pyfunction]
fn plan_swap(py: Python<'_>, request: &str) -> PyResult<String> {
    py.detach(|| guarded(|| edgetrain_core::planner::swap::plan_swap_json(request)))
}

/// The version of the compiled core, equal to the Python package's version.
#[pyfunction]
fn version() -> &'static str {
    edgetrain_core::VERSION
}

/// edgetrain's compiled core.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(plan_swap, m)?)?;
    m.add("__version__", edgetrain_core::VERSION)?;
    m.add_class::<CoreExecutor>()?;
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    m.add("CoreShapeError", m.py().get_type::<CoreShapeError>())?;
    m.add("CoreConfigError", m.py().get_type::<CoreConfigError>())?;
    m.add("CoreDataError", m.py().get_type::<CoreDataError>())?;
    m.add("CoreSwapError", m.py().get_type::<CoreSwapError>())?;
    Ok(())
}
