use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::batch_norm::{
    self, BatchNormParams, BatchNormShape, BatchNormWeights,
};
use edgetrain_core::kernels::InOut;

pub const EPS: f64 = 1e-3;

/// `(outer, channels, inner)` around axes `first..=last`.
fn split(dims: &[usize], first: usize, last: usize) -> (usize, usize, usize) {
    (
        dims[..first].iter().product(),
        dims[first..=last].iter().product(),
        dims[last + 1..].iter().product(),
    )
}

/// Normalise `x` per "group" and scale by the per-"param" gamma/beta, where `group` and
/// `param` map a flat index (batch norm: group = param = channel; layer norm: group =
/// row, param = feature).
pub fn normalize(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    group: impl Fn(usize) -> usize,
    param: impl Fn(usize) -> usize,
    groups: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut sum, mut count) = (vec![0.0; groups], vec![0.0; groups]);
    for (i, &v) in x.iter().enumerate() {
        sum[group(i)] += v;
        count[group(i)] += 1.0;
    }
    let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, c)| s / c).collect();
    let mut var = vec![0.0; groups];
    for (i, &v) in x.iter().enumerate() {
        var[group(i)] += (v - mean[group(i)]).powi(2) / count[group(i)];
    }
    let y = x.iter().enumerate().map(|(i, &v)| {
        let g = group(i);
        gamma[param(i)] * (v - mean[g]) / (var[g] + EPS).sqrt() + beta[param(i)]
    });
    (y.collect(), mean, var)
}

#[test]
fn batch_norm_training_matches_reference_finite_differences_and_moving_stats() {
    let mut rng = Rng::new(40);
    for (dims, axis) in [(vec![3, 4, 2, 3], 1), (vec![5, 6], 1), (vec![2, 3, 4], 2)] {
        let (outer, c, inner) = split(&dims, axis, axis);
        let len = outer * c * inner;
        let (x, gamma, beta, dy) = (rng.vec(len), rng.vec(c), rng.vec(c), rng.vec(len));
        let channel = |i: usize| (i / inner) % c;
        let f = |x: &[f64], g: &[f64], b: &[f64]| normalize(x, g, b, channel, channel, c).0;
        let (expected, mean, var) = normalize(&x, &gamma, &beta, channel, channel, c);
        let shape = BatchNormShape { dims: &dims, axis };
        let params = BatchNormParams {
            epsilon: EPS as f32,
            momentum: 0.9,
        };
        let (mut mm, mut mv) = (vec![0.5f32; c], vec![2.0f32; c]);
        let (mut y, mut x_hat, mut inv_std) =
            (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; c]);
        let (gamma32, beta32) = (to_f32(&gamma), to_f32(&beta));
        let weights = BatchNormWeights {
            gamma: &gamma32,
            beta: &beta32,
            moving_mean: &mut mm,
            moving_variance: &mut mv,
        };
        let x32 = to_f32(&x);
        batch_norm::train_forward(
            &shape,
            &params,
            InOut::Separate(&x32, &mut y),
            weights,
            &mut x_hat,
            &mut inv_std,
        )
        .unwrap();
        assert_close(&y, &expected, 1e-5, 1e-5, "bn y");
        let moving_mean: Vec<f64> = mean.iter().map(|m| 0.9 * 0.5 + 0.1 * m).collect();
        let moving_var: Vec<f64> = var.iter().map(|v| 0.9 * 2.0 + 0.1 * v).collect();
        assert_close(&mm, &moving_mean, 1e-6, 1e-6, "moving mean");
        assert_close(&mv, &moving_var, 1e-6, 1e-6, "moving variance (biased)");

        let mut in_place = x32.clone();
        let (mut mm2, mut mv2, mut x_hat2, mut inv2) = (
            vec![0.5f32; c],
            vec![2.0f32; c],
            vec![0.0; len],
            vec![0.0; c],
        );
        let weights = BatchNormWeights {
            gamma: &gamma32,
            beta: &beta32,
            moving_mean: &mut mm2,
            moving_variance: &mut mv2,
        };
        batch_norm::train_forward(
            &shape,
            &params,
            InOut::InPlace(&mut in_place),
            weights,
            &mut x_hat2,
            &mut inv2,
        )
        .unwrap();
        assert_eq!(
            (in_place, x_hat2),
            (y.clone(), x_hat.clone()),
            "in place = separate"
        );

        let (mut dg, mut db, mut dx) = (vec![f32::NAN; c], vec![f32::NAN; c], vec![f32::NAN; len]);
        let dy32 = to_f32(&dy);
        batch_norm::grad(&shape, &dy32, &x_hat, &mut dg, &mut db).unwrap();
        batch_norm::backward(
            &shape,
            InOut::Separate(&dy32, &mut dx),
            &x_hat,
            &inv_std,
            &gamma32,
        )
        .unwrap();
        assert_close(
            &dx,
            &numeric_grad(|p| f(p, &gamma, &beta), &x, &dy),
            1e-3,
            1e-4,
            "bn dx",
        );
        assert_close(
            &dg,
            &numeric_grad(|p| f(&x, p, &beta), &gamma, &dy),
            1e-4,
            1e-5,
            "bn d_gamma",
        );
        assert_close(
            &db,
            &numeric_grad(|p| f(&x, &gamma, p), &beta, &dy),
            1e-4,
            1e-5,
            "bn d_beta",
        );
        let mut dx_in_place = dy32.clone();
        batch_norm::backward(
            &shape,
            InOut::InPlace(&mut dx_in_place),
            &x_hat,
            &inv_std,
            &gamma32,
        )
        .unwrap();
        assert_eq!(dx_in_place, dx, "dx over dy = separate");
    }
}

#[test]
fn batch_norm_inference_uses_moving_statistics() {
    let dims = [2, 2, 1, 2];
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let (gamma, beta, mean, var) = ([2.0, 1.0], [0.5, -1.0], [1.0, 2.0], [3.0, 0.0]);
    let mut y = [0.0; 8];
    let shape = BatchNormShape {
        dims: &dims,
        axis: 1,
    };
    batch_norm::infer_forward(
        &shape,
        1.0,
        InOut::Separate(&x, &mut y),
        &gamma,
        &beta,
        &mean,
        &var,
    )
    .unwrap();
    let expected: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 2) % 2;
            (f64::from(v) - mean[c] as f64) * (gamma[c] as f64 / (var[c] as f64 + 1.0).sqrt())
                + beta[c] as f64
        })
        .collect();
    assert_close(&y, &expected, 1e-6, 1e-6, "inference y");
    let mut in_place = x;
    batch_norm::infer_forward(
        &shape,
        1.0,
        InOut::InPlace(&mut in_place),
        &gamma,
        &beta,
        &mean,
        &var,
    )
    .unwrap();
    assert_eq!(in_place, y, "in place = separate");
    let err = batch_norm::infer_forward(
        &shape,
        1.0,
        InOut::Separate(&x, &mut y),
        &gamma[..1],
        &beta,
        &mean,
        &var,
    )
    .unwrap_err();
    assert!(err.to_string().contains("gamma of shape (2,)"), "{err}");
}
