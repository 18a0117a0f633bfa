//! Times single-precision GEMM from three crates on the shapes edgetrain trains with.
//!
//! `cargo run --release -- <threads>` prints one line per (shape, library): the median
//! GFLOP/s over repeated runs. matrixmultiply reads its thread count once per process from
//! `MATMUL_NUM_THREADS`, so each thread count is a separate run of this binary.

use std::time::{Duration, Instant};

/// How an operand is stored: as the matrix itself or as its transpose (row-major both).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Plain,
    Transposed,
}

/// `C (m x n) = op(A) (m x k) * op(B) (k x n)`, named after the training step it serves.
struct Case {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    a: Layout,
    b: Layout,
}

const fn case(name: &'static str, m: usize, k: usize, n: usize, a: Layout, b: Layout) -> Case {
    Case {
        name,
        m,
        k,
        n,
        a,
        b,
    }
}

use Layout::{Plain as P, Transposed as T};

/// Fully connected (MLP 784-1024, batch 64; 1024-1024 batch 32) and per-sample im2col
/// convolutions of VGG-16 on 32x32 inputs (conv1_2: 64 ch at 32x32, conv3: 256 ch at 8x8)
/// plus one batch-wide im2col (conv4, 512 ch at 4x4, batch 32). Forward is A B, the weight
/// gradient A^T B (fc) or A B^T (conv), the input derivative A B^T (fc) or A^T B (conv).
const CASES: &[Case] = &[
    case("fc784 fwd  x W", 64, 784, 1024, P, P),
    case("fc784 dW   x^T dy", 784, 64, 1024, T, P),
    case("fc784 dx   dy W^T", 64, 1024, 784, P, T),
    case("fc1024 fwd", 32, 1024, 1024, P, P),
    case("fc1024 dW", 1024, 32, 1024, T, P),
    case("fc1024 dx", 32, 1024, 1024, P, T),
    case("conv1_2 fwd W col", 64, 576, 1024, P, P),
    case("conv1_2 dW dy col^T", 64, 1024, 576, P, T),
    case("conv1_2 dcol W^T dy", 576, 64, 1024, T, P),
    case("conv3 fwd", 256, 2304, 64, P, P),
    case("conv3 dW", 256, 64, 2304, P, T),
    case("conv3 dcol", 2304, 256, 64, T, P),
    case("conv4 batch fwd", 512, 4608, 512, P, P),
    case("conv1_1 fwd (C=3)", 64, 27, 1024, P, P),
];

/// Row and column strides of a row-major `rows x cols` operand read as its `op`.
fn strides(layout: Layout, rows: usize, cols: usize) -> (isize, isize) {
    match layout {
        Layout::Plain => (cols as isize, 1),
        Layout::Transposed => (1, rows as isize),
    }
}

fn with_gemm(c: &Case, a: &[f32], b: &[f32], out: &mut [f32], threads: usize) {
    let (ars, acs) = strides(c.a, c.m, c.k);
    let (brs, bcs) = strides(c.b, c.k, c.n);
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every slice holds exactly the elements the strides address.
    unsafe {
        gemm::gemm(
            c.m,
            c.n,
            c.k,
            out.as_mut_ptr(),
            1,
            c.n as isize,
            false,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn with_matrixmultiply(c: &Case, a: &[f32], b: &[f32], out: &mut [f32]) {
    let (ars, acs) = strides(c.a, c.m, c.k);
    let (brs, bcs) = strides(c.b, c.k, c.n);
    // SAFETY: every slice holds exactly the elements the strides address.
    unsafe {
        matrixmultiply::sgemm(
            c.m,
            c.k,
            c.n,
            1.0,
            a.as_ptr(),
            ars,
            acs,
            b.as_ptr(),
            brs,
            bcs,
            0.0,
            out.as_mut_ptr(),
            c.n as isize,
            1,
        );
    }
}

fn with_faer(c: &Case, a: &[f32], b: &[f32], out: &mut [f32], threads: usize) {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    let lhs = match c.a {
        Layout::Plain => MatRef::from_row_major_slice(a, c.m, c.k),
        Layout::Transposed => MatRef::from_row_major_slice(a, c.k, c.m).transpose(),
    };
    let rhs = match c.b {
        Layout::Plain => MatRef::from_row_major_slice(b, c.k, c.n),
        Layout::Transposed => MatRef::from_row_major_slice(b, c.n, c.k).transpose(),
    };
    let dst = MatMut::from_row_major_slice_mut(out, c.m, c.n);
    let par = if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    };
    matmul(dst, Accum::Replace, lhs, rhs, 1.0, par);
}

/// Median seconds of one call, repeating for at least `budget` and at least 5 times.
fn time(mut run: impl FnMut(), budget: Duration) -> f64 {
    run();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        run();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn filled(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn max_abs_diff(x: &[f32], y: &[f32]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("thread count"))
        .unwrap_or(1);
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");
    let budget = Duration::from_millis(300);
    println!("threads={threads}");
    println!(
        "{:<22} {:>16} {:>8} {:>8} {:>8}",
        "case", "m x k x n", "gemm", "mmul", "faer"
    );
    for c in CASES {
        let a = filled(c.m * c.k, 1);
        let b = filled(c.k * c.n, 2);
        let mut reference = vec![0.0; c.m * c.n];
        let mut out = vec![0.0; c.m * c.n];
        let flops = 2.0 * (c.m * c.k * c.n) as f64;
        let gflops = |secs: f64| flops / secs / 1e9;

        with_matrixmultiply(c, &a, &b, &mut reference);
        let g = time(|| with_gemm(c, &a, &b, &mut out, threads), budget);
        assert!(max_abs_diff(&out, &reference) < 1e-3, "gemm disagrees");
        let m = time(|| with_matrixmultiply(c, &a, &b, &mut out), budget);
        let f = time(|| with_faer(c, &a, &b, &mut out, threads), budget);
        assert!(max_abs_diff(&out, &reference) < 1e-3, "faer disagrees");
        println!(
            "{:<22} {:>16} {:>8.1} {:>8.1} {:>8.1}",
            c.name,
            format!("{}x{}x{}", c.m, c.k, c.n),
            gflops(g),
            gflops(m),
            gflops(f)
        );
    }
}
