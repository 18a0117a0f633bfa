use edgetrain_core::optim::{adam_step, sgd_step, AdamConfig, SgdConfig, Step};

const GOLDENS: &str = include_str!("../data/optim_goldens.txt");
const SIZE: usize = 8;
const STEPS: u64 = 4;

fn initial_weight() -> Vec<f32> {
    (0..SIZE).map(|i| ((i as f64 - 4.0) / 3.0) as f32).collect()
}

fn grad(step: u64) -> Vec<f32> {
    (0..SIZE as u64)
        .map(|i| (((7 * i + 3 * step) % 11) as f64 - 5.0) as f32 / 8.0)
        .collect()
}

fn golden(name: &str) -> Vec<u32> {
    let mut lines = GOLDENS.lines();
    lines
        .find(|l| *l == name)
        .unwrap_or_else(|| panic!("no golden {name}"));
    let bits = lines.next().unwrap().split(' ');
    bits.map(|h| u32::from_str_radix(h, 16).unwrap()).collect()
}

fn run_sgd(lr: f64, momentum: f64, decay: f64) -> Vec<f32> {
    let (mut w, mut buf) = (initial_weight(), vec![0.0; SIZE]);
    for step in 1..=STEPS {
        let buffer = (momentum > 0.0).then_some(buf.as_mut_slice());
        let at = Step { lr, step, decay };
        sgd_step(&SgdConfig { momentum }, &at, &mut w, &grad(step), buffer).unwrap();
    }
    w
}

fn run_adam(config: &AdamConfig, lr: f64, decay: f64) -> Vec<f32> {
    let (mut w, mut m, mut v) = (initial_weight(), vec![0.0; SIZE], vec![0.0; SIZE]);
    for step in 1..=STEPS {
        let at = Step { lr, step, decay };
        adam_step(config, &at, &mut w, &grad(step), &mut m, &mut v).unwrap();
    }
    w
}

fn bits(w: &[f32]) -> Vec<u32> {
    w.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn updates_are_bit_identical_to_the_numpy_spec() {
    assert_eq!(
        bits(&run_sgd(0.1, 0.0, 0.0)),
        golden("sgd lr=0.1 momentum=0")
    );
    assert_eq!(
        bits(&run_sgd(0.05, 0.9, 0.0)),
        golden("sgd lr=0.05 momentum=0.9")
    );
    assert_eq!(
        bits(&run_sgd(0.05, 0.9, 0.2)),
        golden("sgd lr=0.05 momentum=0.9 decay=0.2")
    );
    let adam = AdamConfig::default();
    assert_eq!(bits(&run_adam(&adam, 0.01, 0.0)), golden("adam lr=0.01"));
    let custom = AdamConfig {
        beta1: 0.8,
        beta2: 0.99,
        epsilon: 1e-3,
        decoupled_weight_decay: None,
    };
    assert_eq!(
        bits(&run_adam(&custom, 0.3, 0.0)),
        golden("adam lr=0.3 beta1=0.8 beta2=0.99 eps=1e-3")
    );
    assert_eq!(
        bits(&run_adam(&adam, 0.01, 0.05)),
        golden("adam lr=0.01 decay=0.05")
    );
    let adamw = AdamConfig {
        decoupled_weight_decay: Some(0.1),
        ..adam
    };
    assert_eq!(
        bits(&run_adam(&adamw, 0.01, 0.0)),
        golden("adamw lr=0.01 weight_decay=0.1")
    );
    assert_eq!(
        bits(&run_adam(&adamw, 0.01, 0.05)),
        golden("adamw lr=0.01 weight_decay=0.1 decay=0.05")
    );
}

#[test]
fn hand_formulas() {
    let mut w = [1.0f32, -2.0];
    let mut buf = [0.5f32, 0.5];
    let half = SgdConfig { momentum: 0.5 };
    sgd_step(
        &half,
        &Step::new(0.5, 1),
        &mut w,
        &[0.25, 1.0],
        Some(&mut buf),
    )
    .unwrap();
    assert_eq!((buf, w), ([0.5, 1.25], [0.75, -2.625]));
    // Coupled decay: g + decay * w = 1 + 0.5 * 2 = 2.
    let mut w = [2.0f32];
    let at = Step {
        decay: 0.5,
        ..Step::new(0.25, 1)
    };
    sgd_step(&SgdConfig::default(), &at, &mut w, &[1.0], None).unwrap();
    assert_eq!(w, [1.5]);

    // Adam's first step: m_hat / sqrt(v_hat) = g / |g|, so w moves by lr against the sign.
    let (mut w, mut m, mut v) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 3]);
    adam_step(
        &AdamConfig::default(),
        &Step::new(0.1, 1),
        &mut w,
        &[3.0, -0.5, 1e-3],
        &mut m,
        &mut v,
    )
    .unwrap();
    for (got, want) in w.iter().zip([-0.1, 0.1, -0.1]) {
        assert!((got - want).abs() < 1e-4 * 0.1 + 1e-5, "{w:?}");
    }
    // AdamW decays before the step: at zero gradient only the decay acts (m, v stay 0).
    let mut w = [2.0f32];
    let config = AdamConfig {
        decoupled_weight_decay: Some(0.25),
        ..AdamConfig::default()
    };
    let at = Step {
        decay: 0.25,
        ..Step::new(0.1, 1)
    };
    adam_step(&config, &at, &mut w, &[0.0], &mut [0.0], &mut [0.0]).unwrap();
    assert_eq!(w, [2.0 * (1.0 - 0.1 * 0.5) as f32]);
}

#[test]
fn refusals() {
    let mut w = [0.0f32; 2];
    let (plain, momentum) = (SgdConfig::default(), SgdConfig { momentum: 0.9 });
    assert!(sgd_step(&momentum, &Step::new(0.1, 1), &mut w, &[0.0; 2], None).is_err());
    assert!(sgd_step(&plain, &Step::new(0.1, 1), &mut w, &[0.0; 3], None).is_err());
    assert!(sgd_step(&plain, &Step::new(f64::NAN, 1), &mut w, &[0.0; 2], None).is_err());
    let negative = Step {
        decay: -1.0,
        ..Step::new(0.1, 1)
    };
    assert!(sgd_step(&plain, &negative, &mut w, &[0.0; 2], None).is_err());
    let adam = AdamConfig::default();
    let err = adam_step(
        &adam,
        &Step::new(0.1, 0),
        &mut w,
        &[0.0; 2],
        &mut [0.0; 2],
        &mut [0.0; 2],
    )
    .unwrap_err();
    assert!(err.to_string().contains("steps count from 1"), "{err}");
    let err = adam_step(
        &adam,
        &Step::new(0.1, 1),
        &mut w,
        &[0.0; 2],
        &mut [0.0; 1],
        &mut [0.0; 2],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("adam_step: m of shape (2,)"),
        "{err}"
    );
    assert_eq!(w, [0.0; 2]);
}
