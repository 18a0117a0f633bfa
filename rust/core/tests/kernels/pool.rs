use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::pool::{self, Pool2dShape};
use edgetrain_core::kernels::window::{Padding, Window2d};

fn shapes() -> Vec<Pool2dShape> {
    let windows = [
        Window2d {
            stride: [2, 2],
            ..Window2d::new([5, 6], [2, 2])
        },
        Window2d {
            padding: Padding::uniform(1),
            ..Window2d::new([4, 5], [3, 3])
        },
        Window2d {
            stride: [2, 1],
            padding: Padding {
                top: 2,
                bottom: 1,
                left: 1,
                right: 0,
            },
            ..Window2d::new([6, 5], [3, 2])
        },
    ];
    windows
        .into_iter()
        .map(|window| Pool2dShape {
            batch: 2,
            channels: 3,
            window,
        })
        .collect()
}

/// Every window's real cells as flat positions in the map.
fn windows(s: &Pool2dShape) -> Vec<Vec<usize>> {
    let w = &s.window;
    let [oh, ow] = w.output("t").unwrap();
    let mut out = Vec::new();
    for r in 0..oh {
        for q in 0..ow {
            let mut cells = Vec::new();
            for i in 0..w.kernel[0] {
                for j in 0..w.kernel[1] {
                    let row = (r * w.stride[0] + i) as isize - w.padding.top as isize;
                    let col = (q * w.stride[1] + j) as isize - w.padding.left as isize;
                    if (0..w.input[0] as isize).contains(&row)
                        && (0..w.input[1] as isize).contains(&col)
                    {
                        cells.push(row as usize * w.input[1] + col as usize);
                    }
                }
            }
            cells.sort_unstable();
            out.push(cells);
        }
    }
    out
}

fn reference(s: &Pool2dShape, x: &[f64], max: bool) -> (Vec<f64>, Vec<i32>) {
    let map = s.window.input[0] * s.window.input[1];
    let (mut y, mut at) = (Vec::new(), Vec::new());
    for m in 0..s.batch * s.channels {
        for cells in windows(s) {
            let values = cells.iter().map(|&c| x[m * map + c]);
            if max {
                let (best, pos) = cells.iter().fold((f64::NEG_INFINITY, 0), |(b, p), &c| {
                    if x[m * map + c] > b {
                        (x[m * map + c], c)
                    } else {
                        (b, p)
                    }
                });
                y.push(best);
                at.push(pos as i32);
            } else {
                y.push(values.sum::<f64>() / cells.len() as f64);
            }
        }
    }
    (y, at)
}

#[test]
fn max_pooling_matches_reference_and_routes_gradients_to_argmax() {
    let mut rng = Rng::new(30);
    for s in shapes() {
        let x = rng.vec(s.batch * s.channels * s.window.input[0] * s.window.input[1]);
        let (expected, expected_at) = reference(&s, &x, true);
        let (mut y, mut at) = (vec![f32::NAN; expected.len()], vec![-1; expected.len()]);
        pool::max_forward(&s, &to_f32(&x), &mut y, &mut at).unwrap();
        assert_close(&y, &expected, 0.0, 0.0, "max y");
        assert_eq!(at, expected_at);
        let dy = rng.vec(expected.len());
        let mut dx = vec![f32::NAN; x.len()];
        pool::max_backward(&s, &to_f32(&dy), &at, &mut dx).unwrap();
        let numeric = numeric_grad(|p| reference(&s, p, true).0, &x, &dy);
        assert_close(&dx, &numeric, 1e-5, 1e-5, "max dx");
    }
}

#[test]
fn max_pooling_takes_the_first_of_tied_maxima() {
    let s = Pool2dShape {
        batch: 1,
        channels: 1,
        window: Window2d::new([2, 2], [2, 2]),
    };
    let (mut y, mut at) = ([0.0], [9]);
    pool::max_forward(&s, &[1.0, 3.0, 3.0, 2.0], &mut y, &mut at).unwrap();
    assert_eq!((y, at), ([3.0], [1]));
    let err = pool::max_backward(&s, &[1.0], &[4], &mut [0.0; 4]).unwrap_err();
    assert!(err.to_string().contains("position 4"), "{err}");
}

#[test]
fn average_pooling_divides_by_real_cells() {
    let mut rng = Rng::new(31);
    for s in shapes() {
        let x = rng.vec(s.batch * s.channels * s.window.input[0] * s.window.input[1]);
        let expected = reference(&s, &x, false).0;
        let mut y = vec![f32::NAN; expected.len()];
        pool::average_forward(&s, &to_f32(&x), &mut y).unwrap();
        assert_close(&y, &expected, 1e-6, 1e-6, "average y");
        let dy = rng.vec(expected.len());
        let mut dx = vec![f32::NAN; x.len()];
        pool::average_backward(&s, &to_f32(&dy), &mut dx).unwrap();
        let numeric = numeric_grad(|p| reference(&s, p, false).0, &x, &dy);
        assert_close(&dx, &numeric, 1e-5, 1e-5, "average dx");
    }
}

#[test]
fn pooling_refuses_padding_as_wide_as_the_window() {
    let window = Window2d {
        padding: Padding::uniform(2),
        ..Window2d::new([4, 4], [2, 2])
    };
    let s = Pool2dShape {
        batch: 1,
        channels: 1,
        window,
    };
    let err = pool::average_forward(&s, &[0.0; 16], &mut [0.0; 25]).unwrap_err();
    assert!(
        err.to_string().contains("smaller than the pool size"),
        "{err}"
    );
    let empty = Window2d {
        padding: Padding::uniform(1),
        ..Window2d::new([0, 3], [2, 2])
    };
    let s = Pool2dShape {
        batch: 1,
        channels: 1,
        window: empty,
    };
    let err = pool::max_forward(&s, &[], &mut [0.0; 4], &mut [0; 4]).unwrap_err();
    assert!(err.to_string().contains("empty map"), "{err}");
}

#[test]
fn global_pooling_and_tied_maxima_share_the_gradient() {
    let dims = [1, 2, 2, 2];
    let x = [1.0, 4.0, 4.0, 2.0, -1.0, -3.0, -2.0, -5.0];
    let (mut y, mut mask) = ([0.0; 2], [9u8; 8]);
    pool::global_max_forward(dims, &x, &mut y, &mut mask).unwrap();
    assert_eq!((y, mask), ([4.0, -1.0], [0, 1, 1, 0, 1, 0, 0, 0]));
    let mut dx = [f32::NAN; 8];
    pool::global_max_backward(dims, &[2.0, 3.0], &mask, &mut dx).unwrap();
    assert_eq!(dx, [0.0, 1.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0]);
    pool::global_average_forward(dims, &x, &mut y).unwrap();
    assert_eq!(y, [2.75, -2.75]);
    pool::global_average_backward(dims, &[2.0, 4.0], &mut dx).unwrap();
    assert_eq!(dx, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]);
    assert!(pool::global_average_forward(dims, &x, &mut [0.0; 3]).is_err());
}
