use crate::support::{assert_close, numeric_grad, to_f32, Rng};
use edgetrain_core::kernels::activation::{self, Activation};
use edgetrain_core::kernels::InOut;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The spec's formulas in f64; softmax over rows of `classes`.
fn reference(kind: Activation, x: &[f64], classes: usize) -> Vec<f64> {
    if kind == Activation::Softmax {
        return x
            .chunks(classes)
            .flat_map(|row| {
                let peak = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (v - peak).exp()).sum();
                row.iter().map(move |v| (v - peak).exp() / sum)
            })
            .collect();
    }
    x.iter()
        .map(|&v| match kind {
            Activation::Relu => v.max(0.0),
            Activation::LeakyRelu => {
                if v > 0.0 {
                    v
                } else {
                    0.01 * v
                }
            }
            Activation::Sigmoid => sigmoid(v),
            Activation::Tanh => v.tanh(),
            Activation::Gelu => v * 0.5 * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
            Activation::TanhGelu => {
                0.5 * v
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
            }
            Activation::Swish => v * sigmoid(v),
            Activation::Softmax => unreachable!(),
        })
        .collect()
}

#[test]
fn every_activation_matches_reference_and_finite_differences_in_and_out_of_place() {
    let mut rng = Rng::new(50);
    let dims = [3, 2, 7];
    for kind in Activation::ALL {
        let x: Vec<f64> = rng.vec(42).iter().map(|v| 4.0 * v).collect();
        let dy = rng.vec(42);
        let expected = reference(kind, &x, 7);
        let x32 = to_f32(&x);
        let mut y = vec![f32::NAN; 42];
        activation::forward(kind, &dims, InOut::Separate(&x32, &mut y)).unwrap();
        assert_close(&y, &expected, 2e-6, 2e-6, kind.name());
        let mut in_place = x32.clone();
        activation::forward(kind, &dims, InOut::InPlace(&mut in_place)).unwrap();
        assert_eq!(in_place, y, "{} in place", kind.name());

        let source = if kind.backward_reads_output() {
            &y
        } else {
            &x32
        };
        let dy32 = to_f32(&dy);
        let mut dx = vec![f32::NAN; 42];
        activation::backward(kind, &dims, source, InOut::Separate(&dy32, &mut dx)).unwrap();
        let numeric = numeric_grad(|p| reference(kind, p, 7), &x, &dy);
        assert_close(&dx, &numeric, 1e-4, 1e-5, &format!("{} dx", kind.name()));
        let mut dx_in_place = dy32.clone();
        activation::backward(kind, &dims, source, InOut::InPlace(&mut dx_in_place)).unwrap();
        assert_eq!(dx_in_place, dx, "{} dx over dy", kind.name());
    }
}

#[test]
fn extreme_inputs_stay_finite() {
    let x = [-200.0f32, -90.0, 0.0, 90.0, 200.0];
    for kind in Activation::ALL {
        let mut y = [0.0; 5];
        activation::forward(kind, &[5], InOut::Separate(&x, &mut y)).unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{}: {y:?}", kind.name());
    }
}

#[test]
fn names_and_errors() {
    assert_eq!(
        Activation::from_name(" Tanh_GELU ").unwrap(),
        Activation::TanhGelu
    );
    assert!(Activation::from_name("mish").is_err());
    let mut y = [0.0; 5];
    let err = activation::forward(
        Activation::Relu,
        &[2, 3],
        InOut::Separate(&[0.0; 6], &mut y),
    )
    .unwrap_err();
    assert!(err.to_string().contains("output of shape (2, 3)"), "{err}");
    let err = activation::backward(Activation::Softmax, &[2, 0], &[], InOut::InPlace(&mut []))
        .unwrap_err();
    assert!(err.to_string().contains("last axis"), "{err}");
}
