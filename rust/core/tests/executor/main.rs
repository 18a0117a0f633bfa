//! The executor on small programs written here: a training step against a hand-derived
//! reference, in-place sharing, zero-fill, and the refusals (bad descriptions,
//! overlapping operands, unbound external tensors).

use edgetrain_core::executor::{Executor, Mode};
use edgetrain_core::program::Program;

/// `x (2, 3) -> fully_connected (3 -> 2, no bias) -> mse`, SGD at momentum 0; the loss
/// output shares the fc output's bytes (offset 64), as the planner's view sharing does.
fn fc_mse(activation_offset: usize) -> String {
    format!(
        r#"{{
  "format": "edgetrain-core-program", "version": 1, "training": true, "arena_bytes": 512,
  "tensors": [
    {{"name": "in:output", "offset": 0, "shape": [2, 3], "dtype": "float32"}},
    {{"name": "fc:output", "offset": 64, "shape": [2, 2], "dtype": "float32"}},
    {{"name": "fc:weight", "offset": 128, "shape": [3, 2], "dtype": "float32"}},
    {{"name": "fc:weight:grad", "offset": 192, "shape": [3, 2], "dtype": "float32"}},
    {{"name": "loss:output", "offset": {activation_offset}, "shape": [2, 2], "dtype": "float32"}},
    {{"name": "loss:scratch:loss", "offset": 256, "shape": [1], "dtype": "float32"}},
    {{"name": "fc:output:grad", "offset": 320, "shape": [2, 2], "dtype": "float32"}},
    {{"name": "label", "offset": 384, "shape": [2, 2], "dtype": "float32"}}
  ],
  "layers": [
    {{"name": "in", "op": {{"type": "input"}}, "binding": {{"outputs": [0]}}}},
    {{"name": "fc", "op": {{"type": "fully_connected"}}, "binding": {{
      "inputs": [0], "outputs": [1], "weights": {{"weight": 2}}, "gradients": {{"weight": 3}},
      "grad_outputs": [6], "penalties": {{"weight": {{"l2": 0.5, "decay": 0.0}}}}}}}},
    {{"name": "loss", "op": {{"type": "loss", "loss": "mse"}}, "binding": {{
      "inputs": [1], "outputs": [4], "scratch": {{"loss": 5}}, "grad_inputs": [6]}}}}
  ],
  "steps": [
    {{"kind": "forward", "layer": 0}}, {{"kind": "forward", "layer": 1}},
    {{"kind": "forward", "layer": 2}}, {{"kind": "calc_derivative", "layer": 2}},
    {{"kind": "calc_gradient", "layer": 1}}, {{"kind": "apply_gradient", "layer": 1}}
  ],
  "optimizer": {{"type": "sgd", "momentum": 0.0}},
  "inputs": [0], "output": 4, "label": 7, "loss": 5
}}"#
    )
}

fn executor(text: &str) -> Executor {
    Executor::new(Program::from_json(text).unwrap(), 1, 0).unwrap()
}

#[test]
fn one_training_step_matches_the_hand_derived_reference() {
    let mut ex = executor(&fc_mse(64));
    let x = [1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0];
    let w = [0.1f32, -0.2, 0.3, 0.4, -0.5, 0.6];
    let t = [1.0f32, 0.0, 0.0, 1.0];
    ex.tensor_mut::<f32>("in:output")
        .unwrap()
        .copy_from_slice(&x);
    ex.tensor_mut::<f32>("fc:weight")
        .unwrap()
        .copy_from_slice(&w);
    ex.tensor_mut::<f32>("label").unwrap().copy_from_slice(&t);
    let lr = 0.1;
    let loss = ex.train_step(lr, 1).unwrap();

    let (x, w, t) = (x.map(f64::from), w.map(f64::from), t.map(f64::from));
    let y: Vec<f64> = (0..4)
        .map(|i| (0..3).map(|k| x[(i / 2) * 3 + k] * w[k * 2 + i % 2]).sum())
        .collect();
    let mse: f64 = y.iter().zip(t).map(|(y, t)| (y - t) * (y - t)).sum::<f64>() / 4.0;
    let penalty = 0.25 * w.iter().map(|v| v * v).sum::<f64>();
    assert!(
        (loss - (mse + penalty)).abs() < 1e-5,
        "{loss} vs {}",
        mse + penalty
    );
    let dy: Vec<f64> = y.iter().zip(t).map(|(y, t)| (y - t) * 0.5).collect();
    let updated = ex.tensor_mut::<f32>("fc:weight").unwrap().to_vec();
    for k in 0..3 {
        for j in 0..2 {
            let grad =
                (0..2).map(|r| x[r * 3 + k] * dy[r * 2 + j]).sum::<f64>() + 0.5 * w[k * 2 + j];
            let expected = w[k * 2 + j] - lr * grad;
            assert!(
                (f64::from(updated[k * 2 + j]) - expected).abs() < 1e-6,
                "w[{k},{j}]"
            );
        }
    }
}

#[test]
fn forward_without_labels_leaves_the_loss_alone_and_inference_mode_runs() {
    let mut ex = executor(&fc_mse(64));
    ex.tensor_mut::<f32>("in:output").unwrap().fill(1.0);
    ex.tensor_mut::<f32>("fc:weight").unwrap().fill(0.5);
    ex.forward(false, false).unwrap();
    assert_eq!(ex.tensor_mut::<f32>("loss:output").unwrap(), &[1.5; 4]);
    assert_eq!(ex.loss().unwrap(), 0.0);
}

#[test]
fn a_separate_loss_output_is_a_copy() {
    let mut ex = executor(&fc_mse(448));
    ex.tensor_mut::<f32>("in:output").unwrap().fill(1.0);
    ex.tensor_mut::<f32>("fc:weight").unwrap().fill(0.25);
    ex.forward(true, true).unwrap();
    assert_eq!(ex.tensor_mut::<f32>("loss:output").unwrap(), &[0.75; 4]);
}

#[test]
fn partially_overlapping_operands_are_refused_not_aliased() {
    // the loss output 32 bytes into the fc output: neither the same bytes nor disjoint
    let mut ex = executor(&fc_mse(72));
    let err = ex.forward(true, true).unwrap_err().to_string();
    assert!(
        err.contains("layer 'loss' (loss) forward") && err.contains("overlaps"),
        "{err}"
    );
}

#[test]
fn bad_descriptions_are_errors_naming_the_problem() {
    let cases = [
        (
            fc_mse(64).replace("\"arena_bytes\": 512", "\"arena_bytes\": 390"),
            "outside the arena",
        ),
        (
            fc_mse(64).replace("\"offset\": 256", "\"offset\": 258"),
            "misaligned",
        ),
        (
            fc_mse(64).replace("\"layer\": 2}", "\"layer\": 9}"),
            "names layer 9",
        ),
        (
            fc_mse(64).replace("\"inputs\": [1]", "\"inputs\": [99]"),
            "out of range",
        ),
        (
            fc_mse(64).replace("fully_connected", "attention"),
            "unknown variant",
        ),
        (
            fc_mse(64).replace("\"version\": 1", "\"version\": 7"),
            "version",
        ),
    ];
    for (text, needle) in cases {
        let err = Program::from_json(&text)
            .map(|_| ())
            .expect_err(needle)
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn external_tensors_must_be_bound_with_the_right_size() {
    let text = fc_mse(64).replace(
        r#""name": "fc:weight", "offset": 128"#,
        r#""name": "fc:weight", "offset": null"#,
    );
    let mut ex = executor(&text);
    let err = ex.forward(false, false).unwrap_err().to_string();
    assert!(err.contains("'fc:weight' is not bound"), "{err}");
    let mut small = vec![0.5f32; 5];
    // SAFETY: refused before the pointer is stored.
    let err = unsafe { ex.bind_external("fc:weight", small.as_mut_ptr().cast(), 20) }.unwrap_err();
    assert!(err.to_string().contains("needs 24 aligned bytes"), "{err}");
    let mut weight = vec![0.5f32; 6];
    // SAFETY: `weight` outlives `ex` (dropped after it at the end of the test) and is
    // not touched while steps run.
    unsafe { ex.bind_external("fc:weight", weight.as_mut_ptr().cast(), 24) }.unwrap();
    ex.tensor_mut::<f32>("in:output").unwrap().fill(2.0);
    ex.forward(false, false).unwrap();
    assert_eq!(ex.tensor_mut::<f32>("fc:output").unwrap(), &[3.0; 4]);
    drop(ex);
    weight[0] = 0.0;
}

#[test]
fn zero_fill_and_threads_are_honoured() {
    let text = fc_mse(64).replace(
        r#"{"kind": "calc_derivative", "layer": 2}"#,
        r#"{"kind": "calc_derivative", "layer": 2, "zero_fill": [3]}"#,
    );
    let program = Program::from_json(&text).unwrap();
    assert!(Executor::new(program.clone(), 0, 0).is_err());
    let mut ex = Executor::new(program, 2, 0).unwrap();
    ex.tensor_mut::<f32>("fc:weight:grad").unwrap().fill(7.0);
    ex.run_step(
        3,
        Mode {
            training: true,
            label: true,
            lr: 0.0,
            update: 1,
        },
    )
    .unwrap();
    assert_eq!(ex.tensor_mut::<f32>("fc:weight:grad").unwrap(), &[0.0; 6]);
}

#[test]
fn embedding_picks_rows_sums_repeated_ids_and_refuses_bad_ids() {
    use edgetrain_core::kernels::embedding::{forward, grad, EmbeddingShape};
    use edgetrain_core::Error;
    let shape = EmbeddingShape { in_dim: 3, out_dim: 2 };
    let table = [0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0];
    let mut y = [0.0f32; 6];
    forward(&shape, &[2.0, 0.0, 2.0], &table, &mut y).unwrap();
    assert_eq!(y, [20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
    let mut d = [9.0f32; 6];
    grad(&shape, &[2.0, 0.0, 2.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut d).unwrap();
    assert_eq!(d, [3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
    for bad in [3.0f32, -1.0, 0.5, f32::NAN] {
        let err = forward(&shape, &[0.0, bad, 1.0], &table, &mut y).unwrap_err();
        assert!(matches!(err, Error::InvalidData { .. }), "{err}");
        assert!(err.to_string().contains("at flat index 1 (1 bad of 3)"), "{err}");
    }
}
