use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::loss;

/// One-hot rows of `classes`, class `(row * 3) % classes` set.
fn one_hot(rows: usize, classes: usize) -> Vec<f64> {
    (0..rows * classes)
        .map(|i| {
            if i % classes == (i / classes * 3) % classes {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

fn softmax_ce(x: &[f64], t: &[f64], batch: usize, classes: usize) -> f64 {
    let mut total = 0.0;
    for (row, targets) in x.chunks(classes).zip(t.chunks(classes)) {
        let peak = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_norm = row.iter().map(|v| (v - peak).exp()).sum::<f64>().ln();
        total -= row
            .iter()
            .zip(targets)
            .map(|(v, t)| t * (v - peak - log_norm))
            .sum::<f64>();
    }
    total / batch as f64
}

#[test]
fn softmax_cross_entropy_loss_probabilities_and_derivative() {
    let mut rng = Rng::new(60);
    for dims in [vec![4, 5], vec![2, 3, 5]] {
        let (batch, len) = (dims[0], dims.iter().product::<usize>());
        let x: Vec<f64> = rng.vec(len).iter().map(|v| 3.0 * v).collect();
        let t = one_hot(len / 5, 5);
        let mut probs = vec![f32::NAN; len];
        let value =
            loss::softmax_cross_entropy_forward(&dims, &to_f32(&x), Some(&to_f32(&t)), &mut probs)
                .unwrap();
        assert_close(
            &[value.unwrap()],
            &[softmax_ce(&x, &t, batch, 5)],
            1e-5,
            1e-6,
            "loss",
        );
        for row in probs.chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let mut dx = vec![f32::NAN; len];
        loss::softmax_cross_entropy_backward(&dims, &probs, &to_f32(&t), &mut dx).unwrap();
        let numeric = numeric_grad(|p| vec![softmax_ce(p, &t, batch, 5)], &x, &[1.0]);
        assert_close(&dx, &numeric, 1e-4, 1e-6, "dx");
        let mut unlabeled = vec![0.0; len];
        assert_eq!(
            loss::softmax_cross_entropy_forward(&dims, &to_f32(&x), None, &mut unlabeled).unwrap(),
            None
        );
        assert_eq!(unlabeled, probs);
    }
}

#[test]
fn mean_squared_error_and_derivative() {
    let mut rng = Rng::new(61);
    let dims = [3, 4];
    let (y, t) = (rng.vec(12), rng.vec(12));
    let mse = |p: &[f64]| vec![p.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 12.0];
    let value = loss::mse_forward(&dims, &to_f32(&y), &to_f32(&t)).unwrap();
    assert_close(&[value], &mse(&y), 1e-6, 1e-7, "mse");
    let mut dx = vec![f32::NAN; 12];
    loss::mse_backward(&dims, &to_f32(&y), &to_f32(&t), &mut dx).unwrap();
    assert_close(&dx, &numeric_grad(mse, &y, &[1.0]), 1e-4, 1e-6, "mse dx");
}

#[test]
fn sigmoid_cross_entropy_is_stable_and_differentiates_right() {
    let mut rng = Rng::new(62);
    let dims = [2, 5];
    let x: Vec<f64> = rng.vec(10).iter().map(|v| 5.0 * v).collect();
    let t: Vec<f64> = rng.vec(10).iter().map(|v| 0.5 * (v + 1.0)).collect();
    let bce = |p: &[f64]| {
        let s: f64 = p
            .iter()
            .zip(&t)
            .map(|(&v, &l)| {
                let s = 1.0 / (1.0 + (-v).exp());
                -(l * s.ln() + (1.0 - l) * (1.0 - s).ln())
            })
            .sum();
        vec![s / 10.0]
    };
    let mut probs = vec![f32::NAN; 10];
    let value =
        loss::sigmoid_cross_entropy_forward(&dims, &to_f32(&x), Some(&to_f32(&t)), &mut probs)
            .unwrap();
    assert_close(&[value.unwrap()], &bce(&x), 1e-5, 1e-6, "bce");
    let mut dx = vec![f32::NAN; 10];
    loss::sigmoid_cross_entropy_backward(&dims, &probs, &to_f32(&t), &mut dx).unwrap();
    assert_close(&dx, &numeric_grad(bce, &x, &[1.0]), 1e-4, 1e-6, "bce dx");

    let far = [-500.0f32, 500.0];
    let mut p = [0.0; 2];
    let value = loss::sigmoid_cross_entropy_forward(&[2], &far, Some(&[1.0, 0.0]), &mut p)
        .unwrap()
        .unwrap();
    assert!(
        (value - 500.0).abs() < 1e-3 && p == [0.0, 1.0],
        "{value} {p:?}"
    );
}

#[test]
fn label_shape_is_checked() {
    let mut probs = [0.0; 6];
    let err = loss::softmax_cross_entropy_forward(&[2, 3], &[0.0; 6], Some(&[0.0; 5]), &mut probs)
        .unwrap_err();
    assert!(err.to_string().contains("label of shape (2, 3)"), "{err}");
    assert!(loss::mse_forward(&[2, 3], &[0.0; 6], &[0.0; 7]).is_err());
}
