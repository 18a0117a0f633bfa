use crate::support::{assert_close, naive_matmul, to_f32, Rng};
use edgetrain_core::gemm::{gemm, GemmSpec, Transpose};
use edgetrain_core::Error;

/// `alpha op(A) op(B) + beta C` by the definition, A and B stored as the spec says.
fn reference(spec: &GemmSpec, a: &[f64], b: &[f64], c: &[f64]) -> Vec<f64> {
    let GemmSpec { m, n, k, .. } = *spec;
    let get_a = |i: usize, p: usize| match spec.trans_a {
        Transpose::No => a[i * k + p],
        Transpose::Yes => a[p * m + i],
    };
    let get_b = |p: usize, j: usize| match spec.trans_b {
        Transpose::No => b[p * n + j],
        Transpose::Yes => b[j * k + p],
    };
    let product = naive_matmul(m, n, k, get_a, get_b);
    let (alpha, beta) = (f64::from(spec.alpha), f64::from(spec.beta));
    product
        .iter()
        .zip(c)
        .map(|(&p, &old)| alpha * p + if beta == 0.0 { 0.0 } else { beta * old })
        .collect()
}

#[test]
fn every_transpose_alpha_beta_and_thread_count_matches_the_triple_loop() {
    let mut rng = Rng::new(1);
    for &(m, n, k) in &[(1, 1, 1), (7, 5, 3), (67, 45, 33), (16, 130, 70)] {
        for trans_a in [Transpose::No, Transpose::Yes] {
            for trans_b in [Transpose::No, Transpose::Yes] {
                for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (2.0, 0.5), (-0.5, 0.0)] {
                    for threads in [1, 2] {
                        let spec = GemmSpec {
                            trans_a,
                            trans_b,
                            ..GemmSpec::new(m, n, k).scaled(alpha, beta).threads(threads)
                        };
                        let (a, b, c) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
                        let mut out = to_f32(&c);
                        gemm(&spec, &to_f32(&a), &to_f32(&b), &mut out).unwrap();
                        let what = format!(
                            "{m}x{n}x{k} {trans_a:?} {trans_b:?} a={alpha} b={beta} t={threads}"
                        );
                        assert_close(&out, &reference(&spec, &a, &b, &c), 1e-5, 1e-5, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn beta_zero_overwrites_without_reading_stale_nan() {
    let spec = GemmSpec::new(2, 2, 1);
    let mut c = [f32::NAN; 4];
    gemm(&spec, &[1.0, 2.0], &[3.0, 4.0], &mut c).unwrap();
    assert_eq!(c, [3.0, 4.0, 6.0, 8.0]);
}

#[test]
fn empty_inner_dimension_gives_beta_c() {
    let mut c = [5.0f32; 6];
    gemm(&GemmSpec::new(2, 3, 0), &[], &[], &mut c).unwrap();
    assert_eq!(c, [0.0; 6]);
    let mut c = [5.0f32; 6];
    gemm(&GemmSpec::new(2, 3, 0).accumulate(), &[], &[], &mut c).unwrap();
    assert_eq!(c, [5.0; 6]);
}

#[test]
fn wrong_lengths_and_zero_threads_are_errors_that_leave_c_alone() {
    let mut c = [7.0f32; 4];
    let err = gemm(&GemmSpec::new(2, 2, 3), &[0.0; 5], &[0.0; 6], &mut c).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SliceLength {
                operand: "a",
                expected: 6,
                actual: 5,
                ..
            }
        ),
        "{err}"
    );
    let err = gemm(
        &GemmSpec::new(2, 2, 3).transpose_b(),
        &[0.0; 6],
        &[0.0; 6],
        &mut c[..3],
    )
    .unwrap_err();
    assert!(err.to_string().contains("c of shape (2, 2)"), "{err}");
    let err = gemm(
        &GemmSpec::new(2, 2, 3).threads(0),
        &[0.0; 6],
        &[0.0; 6],
        &mut c,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            what: "threads",
            ..
        }
    ));
    assert_eq!(c, [7.0; 4]);
}

#[test]
fn two_threads_run_inside_the_callers_rayon_pool() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut rng = Rng::new(5);
    let (m, n, k) = (96, 200, 150);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let spec = GemmSpec::new(m, n, k).transpose_b().threads(2);
    let mut out = vec![f32::NAN; m * n];
    pool.install(|| gemm(&spec, &to_f32(&a), &to_f32(&b), &mut out))
        .unwrap();
    // B is read as stored n x k: reinterpret the same numbers for the reference.
    assert_close(
        &out,
        &reference(&spec, &a, &b, &vec![0.0; m * n]),
        1e-5,
        1e-5,
        "pool",
    );
}
