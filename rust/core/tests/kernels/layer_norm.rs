use crate::batch_norm::{normalize, EPS};
use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::layer_norm::{self, LayerNormCache, LayerNormShape};
use edgetrain_core::kernels::InOut;

/// Row-major index over the axes `keep` says (true) of flat element `i` of `dims`.
fn index_over(dims: &[usize], i: usize, keep: impl Fn(usize) -> bool) -> usize {
    let (mut rest, mut index, mut scale) = (i, 0, 1);
    for d in (0..dims.len()).rev() {
        let coordinate = rest % dims[d];
        rest /= dims[d];
        if keep(d) {
            index += coordinate * scale;
            scale *= dims[d];
        }
    }
    index
}

#[test]
fn layer_norm_over_any_axes_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(41);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[3, 4, 5], &[2]),
        (&[3, 4, 5], &[1, 2]),
        (&[2, 3, 2, 2], &[1, 2, 3]),
        (&[2, 3, 2, 4], &[1, 3]),
        (&[2, 3, 4], &[0, 2]),
        (&[4, 3], &[0, 1]),
    ];
    for (dims, axes) in cases {
        let len: usize = dims.iter().product();
        let features: usize = axes.iter().map(|&a| dims[a]).product();
        let groups = len / features;
        let (x, gamma, beta, dy) = (
            rng.vec(len),
            rng.vec(features),
            rng.vec(features),
            rng.vec(len),
        );
        let group = |i: usize| index_over(dims, i, |d| !axes.contains(&d));
        let param = |i: usize| index_over(dims, i, |d| axes.contains(&d));
        let f = |x: &[f64], g: &[f64], b: &[f64]| normalize(x, g, b, group, param, groups).0;
        let shape = LayerNormShape { dims, axes };
        let what = format!("{dims:?} over {axes:?}");
        let (gamma32, beta32, x32) = (to_f32(&gamma), to_f32(&beta), to_f32(&x));
        let (mut y, mut x_hat, mut inv_std) = (
            vec![f32::NAN; len],
            vec![f32::NAN; len],
            vec![f32::NAN; groups],
        );
        let cache = LayerNormCache {
            normalized: &mut x_hat,
            inv_std: &mut inv_std,
        };
        layer_norm::forward(
            &shape,
            EPS as f32,
            InOut::Separate(&x32, &mut y),
            &gamma32,
            &beta32,
            Some(cache),
        )
        .unwrap();
        assert_close(&y, &f(&x, &gamma, &beta), 1e-5, 1e-5, &format!("y {what}"));
        let mut inference = x32.clone();
        layer_norm::forward(
            &shape,
            EPS as f32,
            InOut::InPlace(&mut inference),
            &gamma32,
            &beta32,
            None,
        )
        .unwrap();
        assert_eq!(inference, y, "inference in place = training output, {what}");

        let (mut dg, mut db, mut dx) = (
            vec![f32::NAN; features],
            vec![f32::NAN; features],
            vec![f32::NAN; len],
        );
        let dy32 = to_f32(&dy);
        layer_norm::grad(&shape, &dy32, &x_hat, &mut dg, &mut db).unwrap();
        layer_norm::backward(
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
            &format!("dx {what}"),
        );
        assert_close(
            &dg,
            &numeric_grad(|p| f(&x, p, &beta), &gamma, &dy),
            1e-4,
            1e-5,
            &format!("d_gamma {what}"),
        );
        assert_close(
            &db,
            &numeric_grad(|p| f(&x, &gamma, p), &beta, &dy),
            1e-4,
            1e-5,
            &format!("d_beta {what}"),
        );
        let mut dx_in_place = dy32.clone();
        layer_norm::backward(
            &shape,
            InOut::InPlace(&mut dx_in_place),
            &x_hat,
            &inv_std,
            &gamma32,
        )
        .unwrap();
        assert_eq!(dx_in_place, dx, "dx over dy, {what}");
    }
}

#[test]
fn layer_norm_refuses_axes_it_cannot_normalise() {
    let dims = [2, 3];
    for axes in [&[][..], &[2], &[1, 0]] {
        let shape = LayerNormShape { dims: &dims, axes };
        let err = layer_norm::forward(
            &shape,
            1e-5,
            InOut::InPlace(&mut [0.0; 6]),
            &[1.0; 3],
            &[0.0; 3],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("must be increasing axes"), "{err}");
    }
    let shape = LayerNormShape {
        dims: &dims,
        axes: &[1],
    };
    let cache = LayerNormCache {
        normalized: &mut [0.0; 6],
        inv_std: &mut [0.0; 3],
    };
    let err = layer_norm::forward(
        &shape,
        1e-5,
        InOut::InPlace(&mut [0.0; 6]),
        &[1.0; 3],
        &[0.0; 3],
        Some(cache),
    )
    .unwrap_err();
    assert!(err.to_string().contains("inv_std of shape (2,)"), "{err}");
}
