//! The one error vocabulary of the engine: every variant names the op and the shapes it
//! was given, so a wrong call is explained without a debugger (the bindings map these to
//! the Python `ShapeError` / `ConfigError` classes).

use std::fmt;

/// A tensor shape as the caller described it, printed like `(2, 3, 4)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dims(pub Vec<usize>);

impl Dims {
    /// The number of elements a tensor of this shape holds (`usize::MAX` when that
    /// overflows, which no slice can match).
    pub fn elements(&self) -> usize {
        self.0
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() == 1 {
            write!(f, ",")?;
        }
        write!(f, ")")
    }
}

impl<const N: usize> From<[usize; N]> for Dims {
    fn from(dims: [usize; N]) -> Self {
        Dims(dims.to_vec())
    }
}

impl From<&[usize]> for Dims {
    fn from(dims: &[usize]) -> Self {
        Dims(dims.to_vec())
    }
}

/// Why a kernel refused its arguments. Kernels validate before touching any memory, so an
/// `Err` leaves every output slice unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A slice does not hold the number of elements its declared shape needs.
    #[error("{op}: {operand} of shape {shape} needs {expected} elements, got a slice of {actual}")]
    SliceLength {
        /// The kernel that refused (e.g. `conv2d_forward`).
        op: &'static str,
        /// Which argument (e.g. `weight`, `col`).
        operand: &'static str,
        /// The shape the operand was declared with.
        shape: Dims,
        /// Elements that shape holds.
        expected: usize,
        /// Elements the slice has.
        actual: usize,
    },
    /// Declared shapes that cannot go together (e.g. concat inputs differing off the axis).
    #[error("{op}: incompatible shapes {shapes:?}: {reason}")]
    ShapeMismatch {
        /// The kernel that refused (e.g. `conv2d_forward`).
        op: &'static str,
        /// Every shape involved, in argument order.
        shapes: Vec<Dims>,
        /// What is wrong, in words.
        reason: String,
    },
    /// A geometry or hyper-parameter outside its domain (zero stride, kernel larger than
    /// the padded input, zero threads, negative learning rate...).
    #[error("{op}: invalid {what}: {reason}")]
    InvalidArgument {
        /// The kernel that refused (e.g. `conv2d_forward`).
        op: &'static str,
        /// The argument or property at fault (e.g. `stride`, `threads`).
        what: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// Data values an op cannot take (an embedding id that is not a whole number in
    /// range): the caller's data is wrong, not the program.
    #[error("{op}: {reason}")]
    InvalidData {
        /// The kernel that refused (e.g. `embedding_forward`).
        op: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// The swap file could not be made, written or read (a missing or unwritable
    /// directory, a full disk): the bindings raise it as `SwapError`.
    #[error("{reason}")]
    Swap {
        /// What failed, naming the directory or file and the OS's reason.
        reason: String,
    },
    /// A step of a program failed (`executor`): names the layer, its op and the step.
    #[error("layer '{layer}' ({op}) {step}: {source}")]
    Step {
        /// The layer (graph node) name.
        layer: String,
        /// Its operation.
        op: &'static str,
        /// The step kind (`forward`, `calc_gradient`, ...).
        step: &'static str,
        /// What failed inside.
        source: Box<Error>,
    },
}

/// The result of every fallible kernel.
pub type Result<T> = std::result::Result<T, Error>;

/// `Ok` when `slice_len` is the element count of `shape`; the error names `op` and `operand`.
pub fn check_len(
    op: &'static str,
    operand: &'static str,
    shape: impl Into<Dims>,
    slice_len: usize,
) -> Result<()> {
    let shape = shape.into();
    let expected = shape.elements();
    if expected == slice_len {
        Ok(())
    } else {
        Err(Error::SliceLength {
            op,
            operand,
            shape,
            expected,
            actual: slice_len,
        })
    }
}

/// An [`Error::InvalidArgument`] for `op`.
pub fn invalid(op: &'static str, what: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        op,
        what,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_length_error_names_op_operand_and_shape() {
        let err = check_len("fc_forward", "x", [2, 3], 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fc_forward: x of shape (2, 3) needs 6 elements, got a slice of 5"
        );
        assert!(check_len("fc_forward", "b", [4], 4).is_ok());
        assert_eq!(Dims::from([7]).to_string(), "(7,)");
    }
}
