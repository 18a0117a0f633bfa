use crate::support::Rng;
use edgetrain_core::kernels::dropout;
use edgetrain_core::kernels::InOut;

#[test]
fn mask_keeps_about_one_minus_rate_and_scales_kept_elements() {
    let mut rng = Rng::new(70);
    let mut mask = vec![9u8; 10_000];
    dropout::draw_mask(0.3, &mut mask, || (0.5 * (rng.next() + 1.0)) as f32).unwrap();
    let kept = mask.iter().filter(|&&m| m == 1).count();
    assert!(mask.iter().all(|&m| m <= 1));
    assert!(
        (6700..7300).contains(&kept),
        "kept {kept} of 10000 at rate 0.3"
    );

    let x = [1.0f32, -2.0, 3.0, 4.0];
    let mut y = [f32::NAN; 4];
    dropout::apply_mask(0.5, InOut::Separate(&x, &mut y), &[1, 0, 1, 0]).unwrap();
    assert_eq!(y, [2.0, 0.0, 6.0, 0.0]);
    let mut dx = [1.0f32; 4];
    dropout::apply_mask(0.5, InOut::InPlace(&mut dx), &[0, 1, 1, 0]).unwrap();
    assert_eq!(dx, [0.0, 2.0, 2.0, 0.0]);
}

#[test]
fn rate_zero_copies_and_rate_one_zeroes() {
    let x = [1.0f32, 2.0];
    let mut y = [0.0; 2];
    dropout::apply_mask(0.0, InOut::Separate(&x, &mut y), &[]).unwrap();
    assert_eq!(y, x);
    let mut mask = [1u8; 2];
    dropout::draw_mask(1.0, &mut mask, || 0.999_999).unwrap();
    assert_eq!(mask, [0, 0]);
    dropout::apply_mask(1.0, InOut::Separate(&x, &mut y), &mask).unwrap();
    assert_eq!(y, [0.0, 0.0]);
    assert!(dropout::apply_mask(1.5, InOut::Separate(&x, &mut y), &mask).is_err());
    assert!(dropout::apply_mask(0.5, InOut::Separate(&x, &mut y), &[1]).is_err());
}
