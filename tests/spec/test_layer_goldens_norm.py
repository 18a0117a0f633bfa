"""NNTrainer's layer goldens for normalization, dropout and merge layers.

Each case is run the way NNTrainer's ``layers_golden_tests.cpp`` runs it: weights and
inputs from the file, four warm-up forwards and a fifth, then ``calc_gradient`` and
``calc_derivative`` with the incoming derivative fixed at 2, all in float32. A golden
holds (``recorder.py``, ``record_single``): initial weights, inputs, outputs, gradients
of the trainable weights, weights after the five forwards, derivatives. Values are
compared with NNTrainer's own tolerance, an absolute 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edgetrain import layers as L
from edgetrain.layers.base import LayerContext
from goldens import read_layer_golden

Array = NDArray[Any]
ATOL = 1e-5  # NNTrainer's Tensor::operator== epsilon


@dataclass
class GoldenRun:
    """What one golden case produced with our layer, next to the file's tensors."""

    ctx: LayerContext
    trainable: list[str]
    weight_names: list[str]
    expected: dict[str, list[Array]]


def run_golden(
    layer: L.Layer, name: str, shapes: list[tuple[int, ...]], *, training: bool
) -> GoldenRun:
    tensors = read_layer_golden(name)
    setup = layer.setup(shapes)
    specs = setup.weights
    trainable = [w.name for w in specs if w.trainable]
    parts: dict[str, list[Array]] = {}
    position = 0
    sizes = {
        "initial": [int(np.prod(w.shape)) for w in specs],
        "inputs": [int(np.prod(s)) for s in shapes],
        "outputs": [int(np.prod(s)) for s in setup.output_shapes],
        "gradients": [int(np.prod(w.shape)) for w in specs if w.trainable],
        "weights": [int(np.prod(w.shape)) for w in specs],
        "derivatives": [int(np.prod(s)) for s in shapes],
    }
    for part, counts in sizes.items():
        parts[part] = []
        for count in counts:
            tensor = tensors[position]
            assert tensor.size == count, (
                f"{name}: {part} tensor {position} has {tensor.size}, want {count}"
            )
            parts[part].append(tensor)
            position += 1
    assert position == len(tensors), f"{name}: {len(tensors) - position} tensors left over"

    f32 = np.float32
    ctx = LayerContext(
        inputs=[t.reshape(s).astype(f32) for t, s in zip(parts["inputs"], shapes)],
        outputs=[np.zeros(s, f32) for s in setup.output_shapes],
        weights={w.name: t.reshape(w.shape).astype(f32) for w, t in zip(specs, parts["initial"])},
        gradients={w.name: np.zeros(w.shape, f32) for w in specs if w.trainable},
        scratch={
            s.name: np.zeros(s.shape, np.dtype(s.dtype) if s.dtype else f32) for s in setup.scratch
        },
        grad_outputs=[np.full(s, 2.0, f32) for s in setup.output_shapes],
        grad_inputs=[np.zeros(s, f32) for s in shapes],
        training=training,
        rng=np.random.default_rng(1234),
    )
    for _ in range(5):
        layer.forward(ctx)
    if training:
        layer.calc_gradient(ctx)
        layer.calc_derivative(ctx)
    return GoldenRun(ctx, trainable, [w.name for w in specs], parts)


def assert_close(got: Array, want: Array, what: str) -> None:
    np.testing.assert_allclose(got.reshape(-1), want, rtol=0, atol=ATOL, err_msg=what)


def check_all(run: GoldenRun, *, compare_backward: bool = True) -> None:
    ctx, expected = run.ctx, run.expected
    for i, (got, want) in enumerate(zip(ctx.outputs, expected["outputs"])):
        assert_close(got, want, f"output {i}")
    for name, want in zip(run.weight_names, expected["weights"]):
        assert_close(ctx.weights[name], want, f"weight {name} after the forwards")
    if compare_backward:
        for name, want in zip(run.trainable, expected["gradients"]):
            assert_close(ctx.gradients[name], want, f"gradient of {name}")
        for i, (got, want) in enumerate(zip(ctx.grad_inputs, expected["derivatives"])):
            assert_close(got, want, f"derivative {i}")


BN_CASES = [
    ("bn_channels_training", (2, 4, 2, 3), True),
    ("bn_channels_inference", (2, 4, 2, 3), False),
    ("bn_width_training", (2, 1, 1, 10), True),
    ("bn_width_inference", (2, 1, 1, 10), False),
]


@pytest.mark.parametrize(("name", "shape", "training"), BN_CASES)
def test_batch_normalization_golden(name: str, shape: tuple[int, ...], training: bool) -> None:
    run = run_golden(L.BatchNormalization(name="bn"), name, [shape], training=training)
    check_all(run, compare_backward=training)


def test_batch_normalization_width_golden_as_a_matrix() -> None:
    """The ``(2, 1, 1, 10)`` case is a per-feature batch norm of a ``(2, 10)`` matrix."""
    run = run_golden(L.BatchNormalization(name="bn"), "bn_width_training", [(2, 10)], training=True)
    check_all(run)


LN_CASES = {
    "ln_axis_1": "1",
    "ln_axis_2": "2",
    "ln_axis_3": "3",
    "ln_axis_1_2": "1, 2",
    "ln_axis_2_3": "2, 3",
    "ln_axis_1_3": "1, 3",
    "ln_axis_1_2_3": "1, 2, 3",
}


@pytest.mark.parametrize("name", sorted(LN_CASES))
def test_layer_normalization_golden(name: str) -> None:
    # the goldens come from Keras' LayerNormalization, whose epsilon is 1e-3
    layer = L.LayerNormalization(axis=LN_CASES[name], epsilon="1e-3", name="ln")
    check_all(run_golden(layer, name, [(2, 4, 2, 3)], training=True))


@pytest.mark.parametrize("name", ["added_w32a32", "added_w32a32_2"])
def test_addition_golden(name: str) -> None:
    shape = (2, 3, 3, 3) if name == "added_w32a32" else (3, 4, 3, 4)
    check_all(run_golden(L.Addition(name="add"), name, [shape, shape], training=True))


@pytest.mark.parametrize(
    ("name", "axis", "shapes"),
    [
        ("concat_dim1", 1, [(2, 2, 3, 3), (2, 3, 3, 3)]),
        ("concat_dim2", 2, [(2, 3, 2, 3), (2, 3, 3, 3)]),
        ("concat_dim3", 3, [(2, 3, 3, 2), (2, 3, 3, 3)]),
    ],
)
def test_concat_golden(name: str, axis: int, shapes: list[tuple[int, ...]]) -> None:
    check_all(run_golden(L.Concat(axis=axis, name="concat"), name, shapes, training=True))


@pytest.mark.parametrize(
    ("name", "rate", "training"),
    [
        ("dropout_0_training", "0.0", True),
        ("dropout_20_inference", "0.2", False),
        ("dropout_100_training", "1.0", True),
    ],
)
def test_dropout_golden_exact(name: str, rate: str, training: bool) -> None:
    """Cases whose values do not depend on the random mask must match exactly
    (``dropout_100`` was recorded with Keras' rate 0.9999: every element dropped)."""
    run = run_golden(
        L.Dropout(dropout_rate=rate, name="dropout"), name, [(2, 3, 2, 3)], training=training
    )
    check_all(run, compare_backward=training)


def test_dropout_20_golden_matches_up_to_the_mask() -> None:
    """The 20% case depends on TensorFlow's mask, which no other generator reproduces.
    NNTrainer checks it (DROPOUT_MATCH_60_PERCENT) by requiring every element of the
    output and the derivative to equal the golden one or to be zero in one of the two.
    We check that, and also what holds for any mask: kept elements are ``x / 0.8``, the
    derivative is ``2 / 0.8`` exactly where the output mask kept, and zero elsewhere."""
    run = run_golden(
        L.Dropout(dropout_rate=0.2, name="dropout"),
        "dropout_20_training",
        [(2, 3, 2, 3)],
        training=True,
    )
    x = run.ctx.inputs[0].reshape(-1)
    out = run.ctx.outputs[0].reshape(-1)
    dx = run.ctx.grad_inputs[0].reshape(-1)
    for got, want in ((out, run.expected["outputs"][0]), (dx, run.expected["derivatives"][0])):
        weak = np.isclose(got, want, rtol=0, atol=1e-6) | (got == 0) | (want == 0)
        assert weak.all(), f"elements that are neither equal nor zero: {np.flatnonzero(~weak)}"
    kept = run.ctx.scratch["mask"].reshape(-1).astype(bool)
    np.testing.assert_allclose(out[kept], x[kept] / 0.8, rtol=1e-6)
    assert (out[~kept] == 0).all()
    np.testing.assert_allclose(dx[kept], 2 / 0.8, rtol=1e-6)
    assert (dx[~kept] == 0).all()
    # the golden's own kept values follow the same rule
    golden_out = run.expected["outputs"][0]
    golden_kept = run.expected["derivatives"][0] != 0
    np.testing.assert_allclose(
        golden_out[golden_kept], run.expected["inputs"][0][golden_kept] / 0.8, rtol=1e-6
    )
