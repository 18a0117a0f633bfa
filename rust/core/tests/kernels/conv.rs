use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use crate::window::geometries;
use edgetrain_core::kernels::conv::{self, Conv2dShape};
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

fn shapes() -> Vec<Conv2dShape> {
    geometries()
        .into_iter()
        .map(|window| Conv2dShape {
            batch: 2,
            in_channels: 2,
            filters: 3,
            window,
        })
        .collect()
}

#[test]
fn forward_matches_direct_convolution() {
    let mut rng = Rng::new(10);
    for s in shapes() {
        let [h, w] = s.window.input;
        let x = rng.vec(s.batch * s.in_channels * h * w);
        let weight = rng.vec(s.filters * s.in_channels * s.window.taps());
        let bias = rng.vec(s.filters);
        let expected = reference(&s, &x, &weight, &bias);
        let mut y = vec![f32::NAN; expected.len()];
        let mut col = vec![0.0; s.col_len().unwrap()];
        conv::forward(
            &s,
            &to_f32(&x),
            &to_f32(&weight),
            Some(&to_f32(&bias)),
            &mut y,
            &mut col,
            1,
        )
        .unwrap();
        assert_close(&y, &expected, 1e-5, 1e-5, &format!("{:?}", s.window));
        let mut y2 = vec![f32::NAN; expected.len()];
        conv::forward(
            &s,
            &to_f32(&x),
            &to_f32(&weight),
            None,
            &mut y2,
            &mut col,
            2,
        )
        .unwrap();
        let unbiased = reference(&s, &x, &weight, &vec![0.0; s.filters]);
        assert_close(&y2, &unbiased, 1e-5, 1e-5, "no bias, 2 threads");
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
        let mut col = vec![f32::NAN; s.col_len().unwrap()];
        let (mut dw, mut db, mut dx) = (
            vec![f32::NAN; weight.len()],
            vec![f32::NAN; s.filters],
            vec![f32::NAN; x.len()],
        );
        conv::grad_weight(
            &s,
            &to_f32(&x),
            &to_f32(&dy),
            &mut dw,
            Some(&mut db),
            &mut col,
            1,
        )
        .unwrap();
        conv::backward_input(&s, &to_f32(&dy), &to_f32(&weight), &mut dx, &mut col, 2).unwrap();
        let what = format!("{:?}", s.window);
        let num_w = numeric_grad(|p| reference(&s, &x, p, &bias), &weight, &dy);
        let num_b = numeric_grad(|p| reference(&s, &x, &weight, p), &bias, &dy);
        let num_x = numeric_grad(|p| reference(&s, p, &weight, &bias), &x, &dy);
        assert_close(&dw, &num_w, 1e-4, 1e-4, &format!("d_weight {what}"));
        assert_close(&db, &num_b, 1e-4, 1e-4, &format!("d_bias {what}"));
        assert_close(&dx, &num_x, 1e-4, 1e-4, &format!("dx {what}"));
    }
}

#[test]
fn bad_slices_are_errors_naming_the_operand() {
    let s = Conv2dShape {
        batch: 1,
        in_channels: 2,
        filters: 3,
        window: Window2d::new([4, 4], [3, 3]),
    };
    let (x, w) = (vec![0.0; 32], vec![0.0; 54]);
    let mut y = vec![0.0; 12];
    let mut short_col = vec![0.0; 10];
    let err = conv::forward(&s, &x, &w, None, &mut y, &mut short_col, 1).unwrap_err();
    assert!(
        matches!(err, Error::SliceLength { operand: "col", .. }),
        "{err}"
    );
    let mut col = vec![0.0; s.col_len().unwrap()];
    let err = conv::forward(&s, &x, &w[..53], None, &mut y, &mut col, 1).unwrap_err();
    assert!(
        err.to_string().contains("weight of shape (3, 2, 3, 3)"),
        "{err}"
    );
    let err = conv::backward_input(&s, &y, &w, &mut [0.0; 31], &mut col, 1).unwrap_err();
    assert!(matches!(
        err,
        Error::SliceLength {
            op: "conv2d_backward_input",
            operand: "dx",
            ..
        }
    ));
}
