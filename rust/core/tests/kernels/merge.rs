use edgetrain_core::kernels::merge;
use edgetrain_core::Error;

fn iota(len: usize, start: f32) -> Vec<f32> {
    (0..len).map(|i| start + i as f32).collect()
}

#[test]
fn addition_sums_inputs_and_copies_the_derivative() {
    let (a, b, c) = (iota(6, 0.0), iota(6, 10.0), iota(6, 100.0));
    let mut y = vec![f32::NAN; 6];
    merge::add_forward(&[&a, &b, &c], &mut y).unwrap();
    assert_eq!(y, vec![110.0, 113.0, 116.0, 119.0, 122.0, 125.0]);
    let (mut d0, mut d1) = (vec![0.0; 6], vec![0.0; 6]);
    merge::add_backward(&y, &mut [&mut d0, &mut d1]).unwrap();
    assert_eq!((&d0, &d1), (&y, &y));
    let err = merge::add_forward(&[&a, &b[..5]], &mut y).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn concat_along_each_axis_and_back() {
    let (a, b) = (iota(2 * 3 * 2, 0.0), iota(4, 100.0));
    let dims: [&[usize]; 2] = [&[2, 3, 2], &[2, 1, 2]];
    let mut y = vec![f32::NAN; 16];
    merge::concat_forward(&dims, 1, &[&a, &b], &mut y).unwrap();
    assert_eq!(
        y,
        vec![0., 1., 2., 3., 4., 5., 100., 101., 6., 7., 8., 9., 10., 11., 102., 103.]
    );
    let (mut da, mut db) = (vec![f32::NAN; 12], vec![f32::NAN; 4]);
    merge::concat_backward(&dims, 1, &y, &mut [&mut da, &mut db]).unwrap();
    assert_eq!((da, db), (a.clone(), b.clone()));

    let last: [&[usize]; 2] = [&[2, 3, 2], &[2, 3, 1]];
    let c = iota(6, 50.0);
    let mut y = vec![f32::NAN; 18];
    merge::concat_forward(&last, 2, &[&a, &c], &mut y).unwrap();
    assert_eq!(&y[..6], &[0., 1., 50., 2., 3., 51.]);
    let first: [&[usize]; 2] = [&[2, 3, 2], &[1, 3, 2]];
    let mut y = vec![f32::NAN; 18];
    merge::concat_forward(&first, 0, &[&a, &c], &mut y).unwrap();
    assert_eq!(&y[12..], c.as_slice());
}

#[test]
fn concat_refuses_shapes_differing_off_the_axis() {
    let dims: [&[usize]; 2] = [&[2, 3], &[3, 3]];
    let err = merge::concat_forward(&dims, 1, &[&[0.0; 6], &[0.0; 9]], &mut [0.0; 15]).unwrap_err();
    assert!(
        err.to_string()
            .contains("input 1 differs from input 0 off axis 1"),
        "{err}"
    );
    let err = merge::concat_forward(&dims, 0, &[&[0.0; 6], &[0.0; 8]], &mut [0.0; 15]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SliceLength {
                op: "concat_forward",
                ..
            }
        ),
        "{err}"
    );
}
