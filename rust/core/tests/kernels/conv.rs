use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use crate::window::geometries;
use edgetrain_core::kernels::conv::{self, Conv2dShape, ConvScratch};
use edgetrain_core::kernels::window::Window2d;
use edgetrain_core::Error;

/// Direct cross-correlation by the definition, in f64.
fn reference(s: &Conv2dShape, x: &[f64], weight: &[f64], bias: &[f64]) -> Vec<f64> {
    let w = &s.window;
    let [_, f, oh, ow] = s.output_dims().unwrap();
    let ([h, wd], [kh, kw]) = (w.input, w.kernel);
    let mut y = Vec::new();
    for n in 0..s.batch {
        for g in 0..f {
            for r in 0..oh {
                for q in 0..ow {
                    let mut acc = bias[g];
                    for c in 0..s.in_channels {
                        for i in 0..kh {
                            for j in 0..kw {
                                let row = (r * w.stride[0] + i * w.dilation[0]) as isize
                                    - w.padding.top as isize;
                                let col = (q * w.stride[1] + j * w.dilation[1]) as isize
                                    - w.padding.left as isize;
                                if (0..h as isize).contains(&row) && (0..wd as isize).contains(&col)
                                {
                                    let xv = x[((n * s.in_channels + c) * h + row as usize) * wd
                                        + col as usize];
                                    acc += weight[((g * s.in_channels + c) * kh + i) * kw + j] * xv;
                                }
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    y
}

/// Every geometry, one sample per GEMM and batched by 2 (a partial last block) and 3.
fn shapes() -> Vec<Conv2dShape> {
    let mut out = Vec::new();
    for window in geometries() {
        for samples_per_gemm in [1, 2, 3] {
            out.push(Conv2dShape {
                samples_per_gemm,
                ..Conv2dShape::new(3, 2, 3, window)
            });
        }
    }
    out
}

/// Scratch of the sizes `shape` asks for, filled with NaN so that stale reads show.
fn scratch(shape: &Conv2dShape) -> (Vec<f32>, Vec<f32>) {
    (
        vec![f32::NAN; shape.col_len().unwrap()],
        vec![f32::NAN; shape.stage_len().unwrap()],
    )
}

#[test]
fn forward_matches_direct_convolution() {
    let mut rng = Rng::new(10);
    for s in shapes() {
        let [h, w] = s.window.input;
        let x = to_f32(&rng.vec(s.batch * s.in_channels * h * w));
        let weight = to_f32(&rng.vec(s.filters * s.in_channels * s.window.taps()));
        let bias = to_f32(&rng.vec(s.filters));
        let wide = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
        let expected = reference(&s, &wide(&x), &wide(&weight), &wide(&bias));
        let what = format!("{:?} x{}", s.window, s.samples_per_gemm);
        let (mut col, mut stage) = scratch(&s);
        let mut y = vec![f32::NAN; expected.len()];
        let scratch1 = ConvScratch {
            col: &mut col,
            stage: &mut stage,
        };
        conv::forward(&s, &x, &weight, Some(&bias), &mut y, scratch1, 1).unwrap();
        assert_close(&y, &expected, 1e-5, 1e-5, &what);
        let mut y2 = vec![f32::NAN; expected.len()];
        let scratch2 = ConvScratch {
            col: &mut col,
            stage: &mut stage,
        };
        conv::forward(&s, &x, &weight, None, &mut y2, scratch2, 2).unwrap();
        let unbiased = reference(&s, &wide(&x), &wide(&weight), &vec![0.0; s.filters]);
        assert_close(
            &y2,
            &unbiased,
            1e-5,
            1e-5,
            &format!("no bias, 2 threads, {what}"),
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    for s in shapes() {
        let [h, w] = s.window.input;
        let x = rng.vec(s.batch * s.in_channels * h * w);
        let weight = rng.vec(s.filters * s.in_channels * s.window.taps());
        let bias = rng.vec(s.filters);
        let dy = rng.vec(reference(&s, &x, &weight, &bias).len());
        let (mut col, mut stage) = scratch(&s);
        let mut dw = vec![f32::NAN; weight.len()];
        let mut db = vec![f32::NAN; s.filters];
        let mut dx = vec![f32::NAN; x.len()];
        let (x32, dy32, w32) = (to_f32(&x), to_f32(&dy), to_f32(&weight));
        let first = ConvScratch {
            col: &mut col,
            stage: &mut stage,
        };
        conv::grad_weight(&s, &x32, &dy32, &mut dw, Some(&mut db), first, 1).unwrap();
        let second = ConvScratch {
            col: &mut col,
            stage: &mut stage,
        };
        conv::backward_input(&s, &dy32, &w32, &mut dx, second, 2).unwrap();
        let what = format!("{:?} x{}", s.window, s.samples_per_gemm);
        let num_w = numeric_grad(|p| reference(&s, &x, p, &bias), &weight, &dy);
        let num_b = numeric_grad(|p| reference(&s, &x, &weight, p), &bias, &dy);
        let num_x = numeric_grad(|p| reference(&s, p, &weight, &bias), &x, &dy);
        assert_close(&dw, &num_w, 1e-4, 1e-4, &format!("d_weight {what}"));
        assert_close(&db, &num_b, 1e-4, 1e-4, &format!("d_bias {what}"));
        assert_close(&dx, &num_x, 1e-4, 1e-4, &format!("dx {what}"));
    }
}

#[test]
fn scratch_sizes_follow_samples_per_gemm() {
    let window = Window2d::new([4, 5], [3, 3]);
    let one = Conv2dShape::new(4, 2, 3, window);
    assert_eq!(
        (one.col_len().unwrap(), one.stage_len().unwrap()),
        (18 * 6, 0)
    );
    let three = Conv2dShape {
        samples_per_gemm: 3,
        ..one
    };
    assert_eq!(
        (three.col_len().unwrap(), three.stage_len().unwrap()),
        (18 * 18, 3 * 18)
    );
    let more = Conv2dShape {
        samples_per_gemm: 9,
        ..one
    };
    assert_eq!(more.col_len().unwrap(), 18 * 24, "clamped to the batch");
}

#[test]
fn bad_slices_are_errors_naming_the_operand() {
    let s = Conv2dShape::new(1, 2, 3, Window2d::new([4, 4], [3, 3]));
    let (x, w) = (vec![0.0; 32], vec![0.0; 54]);
    let mut y = vec![0.0; 12];
    let mut short_col = vec![0.0; 10];
    let scratch = ConvScratch {
        col: &mut short_col,
        stage: &mut [],
    };
    let err = conv::forward(&s, &x, &w, None, &mut y, scratch, 1).unwrap_err();
    assert!(
        matches!(err, Error::SliceLength { operand: "col", .. }),
        "{err}"
    );
    let mut col = vec![0.0; s.col_len().unwrap()];
    let scratch = ConvScratch {
        col: &mut col,
        stage: &mut [],
    };
    let err = conv::forward(&s, &x, &w[..53], None, &mut y, scratch, 1).unwrap_err();
    assert!(
        err.to_string().contains("weight of shape (3, 2, 3, 3)"),
        "{err}"
    );
    let scratch = ConvScratch {
        col: &mut col,
        stage: &mut [],
    };
    let err = conv::backward_input(&s, &y, &w, &mut [0.0; 31], scratch, 1).unwrap_err();
    assert!(matches!(
        err,
        Error::SliceLength {
            op: "conv2d_backward_input",
            operand: "dx",
            ..
        }
    ));
    let batched = Conv2dShape {
        samples_per_gemm: 2,
        ..Conv2dShape::new(2, 2, 3, s.window)
    };
    let mut col = vec![0.0; batched.col_len().unwrap()];
    let scratch = ConvScratch {
        col: &mut col,
        stage: &mut [0.0; 5],
    };
    let err =
        conv::forward(&batched, &[0.0; 64], &w, None, &mut [0.0; 24], scratch, 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SliceLength {
                operand: "stage",
                ..
            }
        ),
        "{err}"
    );
}
