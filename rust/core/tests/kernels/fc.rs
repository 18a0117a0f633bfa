use crate::support::{assert_close, naive_matmul, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::fc::{self, FcShape};

fn reference(s: &FcShape, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let y = naive_matmul(
        s.rows,
        s.units,
        s.inputs,
        |i, p| x[i * s.inputs + p],
        |p, j| w[p * s.units + j],
    );
    y.iter()
        .enumerate()
        .map(|(i, &v)| v + b[i % s.units])
        .collect()
}

#[test]
fn forward_and_gradients_match_reference_and_finite_differences() {
    let mut rng = Rng::new(20);
    for s in [
        FcShape {
            rows: 1,
            inputs: 1,
            units: 1,
        },
        FcShape {
            rows: 6,
            inputs: 5,
            units: 4,
        },
        FcShape {
            rows: 3,
            inputs: 17,
            units: 9,
        },
    ] {
        let (x, w, b) = (
            rng.vec(s.rows * s.inputs),
            rng.vec(s.inputs * s.units),
            rng.vec(s.units),
        );
        let dy = rng.vec(s.rows * s.units);
        let mut y = vec![f32::NAN; s.rows * s.units];
        fc::forward(&s, &to_f32(&x), &to_f32(&w), Some(&to_f32(&b)), &mut y, 1).unwrap();
        assert_close(&y, &reference(&s, &x, &w, &b), 1e-5, 1e-5, "y");
        let (mut dw, mut db, mut dx) = (
            vec![f32::NAN; w.len()],
            vec![f32::NAN; b.len()],
            vec![f32::NAN; x.len()],
        );
        fc::grad_weight(&s, &to_f32(&x), &to_f32(&dy), &mut dw, Some(&mut db), 2).unwrap();
        fc::backward_input(&s, &to_f32(&dy), &to_f32(&w), &mut dx, 1).unwrap();
        assert_close(
            &dw,
            &numeric_grad(|p| reference(&s, &x, p, &b), &w, &dy),
            1e-4,
            1e-5,
            "dW",
        );
        assert_close(
            &db,
            &numeric_grad(|p| reference(&s, &x, &w, p), &b, &dy),
            1e-4,
            1e-5,
            "db",
        );
        assert_close(
            &dx,
            &numeric_grad(|p| reference(&s, p, &w, &b), &x, &dy),
            1e-4,
            1e-5,
            "dx",
        );
    }
}

#[test]
fn shape_errors() {
    let s = FcShape {
        rows: 2,
        inputs: 3,
        units: 4,
    };
    let mut y = vec![0.0; 8];
    let err = fc::forward(&s, &[0.0; 6], &[0.0; 12], Some(&[0.0; 3]), &mut y, 1).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fc_forward: bias of shape (4,)"),
        "{err}"
    );
    assert!(fc::forward(&FcShape { units: 0, ..s }, &[0.0; 6], &[], None, &mut [], 1).is_err());
    assert!(fc::grad_weight(&s, &[0.0; 6], &[0.0; 8], &mut [0.0; 11], None, 1).is_err());
}
