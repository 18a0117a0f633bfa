"""NNTrainer's layer goldens for convolution and reshape.

Each ``.nnlayergolden`` was written by NNTrainer's ``test/input_gen/recorder.py``
(``record_single``) from a Keras layer behind a channels-first translation: the tensors are,
in order, the initial weights, the input, the output, the weight gradients, the weights
again and the input derivative, all NCHW (convolution kernels as ``(out, in, kh, kw)``).
The incoming derivative is 2 everywhere (the recorder differentiates ``2 * output``). The
layer properties are those of NNTrainer's ``unittest_layers_convolution2d.cpp``,
``unittest_layers_convolution1d.cpp`` and ``unittest_layers_reshape_cl.cpp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.layers.base import Layer, LayerContext
from edgetrain.layers.conv1d import Conv1D
from edgetrain.layers.conv2d import Conv2D
from goldens import read_layer_golden

TOLERANCE = 1e-5  # float32 recordings


def run_golden(layer: Layer, input_shape: tuple[int, ...], golden: str) -> None:
    tensors = read_layer_golden(golden)
    setup = layer.setup([input_shape])
    weight_specs = setup.weights
    count = len(weight_specs)
    initial = tensors[:count]
    x, y_expected = tensors[count], tensors[count + 1]
    grads_expected = tensors[count + 2 : 2 * count + 2]
    dx_expected = tensors[-1]
    assert len(tensors) == 3 * count + 3, f"{golden}: {len(tensors)} tensors"
    weights = {s.name: w.reshape(s.shape).copy() for s, w in zip(weight_specs, initial)}
    ctx = LayerContext(
        inputs=[x.reshape(input_shape)],
        outputs=[np.full(s, np.nan, np.float32) for s in setup.output_shapes],
        weights=weights,
        gradients={s.name: np.full(s.shape, np.nan, np.float32) for s in weight_specs},
        scratch={s.name: np.zeros(s.shape, s.dtype or np.float32) for s in setup.scratch},
    )
    layer.forward(ctx)
    np.testing.assert_allclose(ctx.outputs[0].reshape(-1), y_expected, rtol=TOLERANCE, atol=TOLERANCE)
    ctx.grad_outputs = [np.full(setup.output_shapes[0], 2.0, np.float32)]
    ctx.grad_inputs = [np.full(input_shape, np.nan, np.float32)]
    layer.calc_gradient(ctx)
    for spec, expected in zip(weight_specs, grads_expected):
        np.testing.assert_allclose(ctx.gradients[spec.name].reshape(-1), expected, rtol=TOLERANCE, atol=TOLERANCE)
    layer.calc_derivative(ctx)
    np.testing.assert_allclose(ctx.grad_inputs[0].reshape(-1), dx_expected, rtol=TOLERANCE, atol=TOLERANCE)


CONV2D: list[tuple[str, dict[str, Any], tuple[int, int, int]]] = [
    ("minimum", {"filters": 3, "kernel_size": "2,2"}, (1, 4, 4)),
    ("same_remain", {"filters": 2, "kernel_size": "3,3", "padding": "same"}, (1, 4, 4)),
    ("same_uneven_remain", {"filters": 2, "kernel_size": "3,3", "stride": "2,2", "padding": "same"}, (3, 4, 4)),
    ("same_uneven_remain", {"filters": 2, "kernel_size": "3,3", "stride": "2,2", "padding": "0,1,0,1"}, (3, 4, 4)),
    ("valid_drop_last", {"filters": 2, "kernel_size": "3,3", "stride": "2,2", "padding": "valid"}, (3, 7, 7)),
    ("no_overlap", {"filters": 3, "kernel_size": "2,2", "stride": "3,3"}, (2, 5, 5)),
    ("1x1_kernel", {"filters": 3, "kernel_size": "1,1", "stride": "2,2"}, (2, 5, 5)),
    ("dilation", {"filters": 2, "kernel_size": "3,3", "dilation": "2,2"}, (3, 11, 11)),
    ("same_dilation", {"filters": 2, "kernel_size": "3,3", "padding": "same", "dilation": "2,2"}, (3, 11, 11)),
]


@pytest.mark.parametrize("batch", [("sb", 1), ("mb", 3)], ids=lambda b: b[0])
@pytest.mark.parametrize(("case", "props", "chw"), CONV2D, ids=[f"{c[0]}-{c[1].get('padding', '')}" for c in CONV2D])
def test_conv2d_matches_nntrainer_golden(
    batch: tuple[str, int], case: str, props: dict[str, Any], chw: tuple[int, int, int]
) -> None:
    prefix, n = batch
    run_golden(Conv2D(name="conv", **props), (n, *chw), f"conv2d_{prefix}_{case}")


def test_reshape_matches_nntrainer_golden() -> None:
    run_golden(L.Reshape(target_shape="-1", name="reshape"), (2, 3, 3, 3), "reshape")
    run_golden(L.Reshape(target_shape="1:1:27", name="reshape"), (2, 3, 3, 3), "reshape")
    run_golden(L.Flatten(name="flatten"), (2, 3, 3, 3), "reshape")


CONV1D: list[tuple[str, dict[str, Any], tuple[int, int, int]]] = [
    ("minimum", {"filters": 3, "kernel_size": "2"}, (1, 1, 4)),
    ("same_remain", {"filters": 2, "kernel_size": "3", "padding": "same"}, (1, 1, 4)),
    ("same_uneven_remain", {"filters": 2, "kernel_size": "3", "stride": "2", "padding": "same"}, (3, 1, 4)),
    ("same_uneven_remain", {"filters": 2, "kernel_size": "3", "stride": "2", "padding": "0,1"}, (3, 1, 4)),
    ("valid_drop_last", {"filters": 2, "kernel_size": "3", "stride": "2", "padding": "valid"}, (3, 1, 7)),
    ("no_overlap", {"filters": 3, "kernel_size": "2", "stride": "3"}, (2, 1, 5)),
    ("causal", {"filters": 3, "kernel_size": "2", "padding": "causal"}, (1, 1, 4)),
    ("causal_dilation", {"filters": 3, "kernel_size": "2", "padding": "causal", "dilation": "2"}, (1, 1, 4)),
    ("1x1_kernel", {"filters": 3, "kernel_size": "1", "stride": "2"}, (2, 1, 5)),
    ("dilation", {"filters": 2, "kernel_size": "3", "dilation": "2"}, (3, 1, 11)),
    ("same_dilation", {"filters": 2, "kernel_size": "3", "padding": "same", "dilation": "2"}, (3, 1, 11)),
]


@pytest.mark.parametrize("batch", [("sb", 1), ("mb", 3)], ids=lambda b: b[0])
@pytest.mark.parametrize(("case", "props", "chw"), CONV1D, ids=[f"{c[0]}-{c[1].get('padding', '')}" for c in CONV1D])
def test_conv1d_matches_nntrainer_golden(
    batch: tuple[str, int], case: str, props: dict[str, Any], chw: tuple[int, int, int]
) -> None:
    prefix, n = batch
    run_golden(Conv1D(name="conv", **props), (n, *chw), f"conv1d_{prefix}_{case}")
