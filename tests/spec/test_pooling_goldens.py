"""Pooling2D against NNTrainer's Keras-recorded model goldens (``models_v1/pooling_*.info``).

The models (NNTrainer's ``test/input_gen/genModelTests.py``) are ``input -> pooling ->
sigmoid -> flatten -> dense(10)`` with softmax cross entropy, batch 3, inputs that are
multiples of 0.1 (so max pooling meets many ties). From the first iteration we take the
input, the pooling output, the pooling layer's input derivative and the sigmoid layer's
input derivative (= dL/d pooling output): the pooling layer alone must map the input to
that output and that incoming derivative to that input derivative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain import layers as L
from goldens import DATA
from gradcheck import make_context

CASES: dict[str, tuple[str, dict[str, Any], tuple[int, int, int, int]]] = {
    "pooling_max_same_padding": ("max", {"pool_size": 3, "padding": "same"}, (3, 2, 5, 3)),
    "pooling_max_valid_padding": ("max", {"pool_size": 3, "padding": "valid"}, (3, 2, 5, 3)),
    "pooling_avg_same_padding": ("average", {"pool_size": 3, "padding": "same"}, (3, 2, 5, 3)),
    "pooling_avg_valid_padding": ("average", {"pool_size": 3, "padding": "valid"}, (3, 2, 5, 3)),
    "pooling_global_avg": ("global_average", {}, (3, 2, 5, 3)),
    "pooling_global_max": ("global_max", {}, (3, 2, 5, 3)),
    "pooling_max_same_padding_multi_stride": (
        "max", {"pool_size": 3, "stride": 2, "padding": "same"}, (3, 2, 3, 5)),
    "pooling_avg_same_padding_multi_stride": (
        "average", {"pool_size": 3, "stride": 2, "padding": "same"}, (3, 2, 3, 5)),
}
CLASSES = 10


def first_iteration(name: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The tensors of iteration 0 that concern the pooling layer."""
    values = np.fromfile(DATA / "models_v1" / f"{name}.info", "<f4")
    batch = input_shape[0]
    x_size, y_size = int(np.prod(input_shape)), int(np.prod(output_shape))
    features = y_size // batch
    sizes = [
        ("input", x_size), ("label", batch * CLASSES), ("dense_weight", features * CLASSES),
        ("dense_bias", CLASSES), ("input_output", x_size), ("input_derivative", x_size),
        ("pool_output", y_size), ("pool_derivative", x_size), ("sigmoid_output", y_size),
        ("sigmoid_derivative", y_size),
    ]
    tensors, offset = {}, 0
    for key, size in sizes:
        tensors[key] = values[offset : offset + size]
        offset += size
    return tensors


@pytest.mark.parametrize("keep_argmax", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_pooling_matches_nntrainer_model_golden(name: str, keep_argmax: bool) -> None:
    """Max pooling also without its argmax scratch (``compile(recompute=True)``): the
    derivative finds the winners again from input and output with the same tie rule."""
    pooling, props, shape = CASES[name]
    layer = L.Pooling2D(pooling, name="pool", **props)
    layer.keep_argmax = keep_argmax
    out_shape = layer.setup([shape]).output_shapes[0]
    golden = first_iteration(name, shape, out_shape)
    np.testing.assert_array_equal(golden["input_output"], golden["input"])  # layout check
    x = golden["input"].reshape(shape).copy()
    ctx = make_context(layer, [x], dtype=np.float32)
    layer.forward(ctx)
    np.testing.assert_allclose(ctx.outputs[0].reshape(-1), golden["pool_output"], rtol=1e-6, atol=1e-7)
    ctx.grad_outputs = [golden["sigmoid_derivative"].reshape(out_shape).copy()]
    ctx.grad_inputs = [np.full(shape, np.nan, np.float32)]
    layer.calc_derivative(ctx)
    np.testing.assert_allclose(ctx.grad_inputs[0].reshape(-1), golden["pool_derivative"], rtol=1e-6, atol=1e-8)
