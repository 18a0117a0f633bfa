//! Shared test helpers: deterministic random data, tolerances, finite differences.

/// A small xorshift generator, so test data is the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1), rounded to f32 and returned as the f64 of that f32, so the f32
    /// kernel and the f64 reference see exactly the same numbers.
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        f64::from((2.0 * unit - 1.0) as f32)
    }

    pub fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.next()).collect()
    }
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Asserts `|actual - expected| <= atol + rtol * |expected|` everywhere.
#[track_caller]
pub fn assert_close(actual: &[f32], expected: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}[{i}]: got {a}, expected {e} (error {err:e})"
        );
    }
}

/// d/dx of `sum(dy * f(x))` by central differences in f64.
pub fn numeric_grad(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let up: f64 = f(&probe).iter().zip(dy).map(|(a, b)| a * b).sum();
            probe[i] = x[i] - h;
            let down: f64 = f(&probe).iter().zip(dy).map(|(a, b)| a * b).sum();
            probe[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// The f64 product `op(A) op(B)` by the definition, for `A (m x k)`, `B (k x n)` given
/// as element accessors.
pub fn naive_matmul(
    m: usize,
    n: usize,
    k: usize,
    a: impl Fn(usize, usize) -> f64,
    b: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
        }
    }
    c
}
