//! Single-precision matrix product on row-major slices, through faer (chosen by the
//! measurements in `docs/gemm.md`): AVX-512/AVX2 kernels on x86-64, NEON on aarch64.
//!
//! faer allocates its own packing buffers inside a call; the caller's arena holds only
//! the operands.

use crate::error::{check_len, invalid, Result};
use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};

/// Whether an operand enters the product as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// As stored.
    No,
    /// Transposed (stored as the transpose's row-major layout).
    Yes,
}

/// `C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C`, with `A` stored
/// row-major as `m x k` (or `k x m` when transposed) and `B` as `k x n` (or `n x k`).
///
/// `beta == 0` overwrites `C` without reading it (stale NaNs in `C` do not leak);
/// `beta == 1` accumulates. `threads > 1` runs on the current rayon pool, so an
/// executor bounds it with `ThreadPool::install`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec {
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// The shared inner dimension.
    pub k: usize,
    /// Whether `A` is used transposed.
    pub trans_a: Transpose,
    /// Whether `B` is used transposed.
    pub trans_b: Transpose,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the previous `C` (0: overwrite without reading it).
    pub beta: f32,
    /// Threads for the product, at least 1.
    pub threads: usize,
}

impl GemmSpec {
    /// `C = A B` on one thread.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            m,
            n,
            k,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
            alpha: 1.0,
            beta: 0.0,
            threads: 1,
        }
    }

    /// Use `A^T` (A stored `k x m`).
    pub fn transpose_a(mut self) -> Self {
        self.trans_a = Transpose::Yes;
        self
    }

    /// Use `B^T` (B stored `n x k`).
    pub fn transpose_b(mut self) -> Self {
        self.trans_b = Transpose::Yes;
        self
    }

    /// Add the product to `C` (`beta = 1`) instead of overwriting it.
    pub fn accumulate(mut self) -> Self {
        self.beta = 1.0;
        self
    }

    /// Scale factors of the product and of the previous `C`.
    pub fn scaled(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// Threads for this product (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

const OP: &str = "gemm";

/// Multiply-adds below which a product runs on the calling thread alone: about 25 µs
/// of work, where handing halves to another thread and waiting for it costs as much as
/// it saves (LeNet-5's products, measured: 2 threads slower than 1 without this).
const PARALLEL_MACS: usize = 1 << 21;

fn checked_area(rows: usize, cols: usize, operand: &'static str) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| invalid(OP, operand, format!("{rows} x {cols} overflows usize")))
}

fn matrix<'a>(data: &'a [f32], rows: usize, cols: usize, trans: Transpose) -> MatRef<'a, f32> {
    match trans {
        Transpose::No => MatRef::from_row_major_slice(data, rows, cols),
        Transpose::Yes => MatRef::from_row_major_slice(data, cols, rows).transpose(),
    }
}

/// Runs the product `spec` describes; see [`GemmSpec`].
pub fn gemm(spec: &GemmSpec, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
    let GemmSpec { m, n, k, .. } = *spec;
    if spec.threads == 0 {
        return Err(invalid(OP, "threads", "must be at least 1"));
    }
    let a_dims = match spec.trans_a {
        Transpose::No => [m, k],
        Transpose::Yes => [k, m],
    };
    let b_dims = match spec.trans_b {
        Transpose::No => [k, n],
        Transpose::Yes => [n, k],
    };
    checked_area(m, k, "a")?;
    checked_area(k, n, "b")?;
    checked_area(m, n, "c")?;
    check_len(OP, "a", a_dims, a.len())?;
    check_len(OP, "b", b_dims, b.len())?;
    check_len(OP, "c", [m, n], c.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let accum = if spec.beta == 0.0 {
        Accum::Replace
    } else {
        if spec.beta != 1.0 {
            c.iter_mut().for_each(|v| *v *= spec.beta);
        }
        Accum::Add
    };
    if k == 0 {
        if accum == Accum::Replace {
            c.fill(0.0);
        }
        return Ok(());
    }
    let threads = if m.saturating_mul(n).saturating_mul(k) < PARALLEL_MACS {
        1
    } else {
        spec.threads
    };
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };
    let lhs = matrix(a, m, k, spec.trans_a);
    let rhs = matrix(b, k, n, spec.trans_b);
    let dst = MatMut::from_row_major_slice_mut(c, m, n);
    matmul(dst, accum, lhs, rhs, spec.alpha, par);
    if threads == 1 {
        clean_upper_vector_state();
    } else {
        // Every thread of the pool may have run a piece of the product.
        rayon::broadcast(|_| clean_upper_vector_state());
    }
    Ok(())
}

/// Clears the upper halves of the AVX/AVX-512 registers after faer's kernels.
///
/// faer's AVX-512 microkernels return with those halves dirty. Code compiled for the
/// x86-64 baseline (SSE2, no VEX encoding: every other kernel of this crate) then runs
/// with a false dependency on them per instruction: measured on the AMD EPYC of
/// `docs/gemm.md`, batch norm's sums took 5.0 ms on a thread that had run a GEMM and
/// 0.8 ms on one that had not, the same code on the same data. `vzeroupper` is what
/// compilers emit at the end of any AVX function for this reason.
#[inline]
fn clean_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available (checked above); vzeroupper only clears the upper
            // register halves, which no live Rust value of this baseline build uses.
            unsafe { zero_upper() }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}
