"""Whole training runs with convolution, pooling and flatten against NNTrainer's Keras
model goldens (``tests/data/nntrainer/models_v1/{conv,mnist_conv}_*.info``).

NNTrainer's ``test/input_gen/genModelTests.py`` recorded each model (a Keras model with
channels-first translation, SGD, softmax cross entropy, batch 3 or 1) for 10 iterations
with ``recorder.py``'s ``record``. The file is bare float32: the input, the one-hot label,
the initial weights (conv kernel ``(F, C, kh, kw)`` and bias, dense ``(in, out)`` and bias),
then per iteration, per layer in model order (the input layer first): its output, its
input derivative and, for layers with weights, the gradients of the trainable ones and
all weights after the update (batch norm: moving mean, moving variance, gamma, beta);
then the loss. We start from the initial weights and, per iteration,
compare the loss and every updated weight (NNTrainer's element-wise 1e-5), and the
recorded per-layer outputs and derivatives are used to check the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.optimizers import SGD
from goldens import DATA

ATOL = 1e-5
ITERATIONS = 10


def conv_model(input_chw: tuple[int, int, int], **conv: Any) -> Callable[[], list[L.Layer]]:
    def build() -> list[L.Layer]:
        return [
            L.Input(shape=input_chw, name="input"),
            L.Conv2D(name="conv", **conv),
            L.Activation("sigmoid", name="sigmoid"),
            L.Flatten(name="flatten"),
            L.FullyConnected(unit=10, name="dense"),
        ]

    return build


def mnist_conv() -> list[L.Layer]:
    return [
        L.Input(shape=(2, 4, 5), name="input"),
        L.Conv2D(filters=2, kernel_size=(3, 4), name="conv"),
        L.Activation("sigmoid", name="sigmoid"),
        L.Pooling2D("average", pool_size=2, stride=2, name="pool"),  # Keras' stride = pool size
        L.Flatten(name="flatten"),
        L.FullyConnected(unit=10, name="dense"),
    ]


def conv_bn() -> list[L.Layer]:
    return [
        L.Input(shape=(2, 3, 5), name="input"),
        L.Conv2D(filters=2, kernel_size=2, name="conv"),
        L.BatchNormalization(name="bn"),  # Keras' defaults: momentum 0.99, epsilon 1e-3
        L.Activation("relu", name="relu"),
        L.Flatten(name="flatten"),
        L.FullyConnected(unit=10, name="dense"),
    ]


CASES: dict[str, tuple[Callable[[], list[L.Layer]], int]] = {
    "conv_bn": (conv_bn, 3),
    "conv_basic": (conv_model((2, 5, 3), filters=4, kernel_size=3), 3),
    "conv_same_padding": (conv_model((2, 5, 3), filters=4, kernel_size=3, padding="same"), 3),
    "conv_multi_stride": (conv_model((2, 5, 3), filters=4, kernel_size=3, stride=2), 3),
    "conv_same_padding_multi_stride": (
        conv_model((2, 5, 3), filters=4, kernel_size=3, stride=2, padding="same"), 3),
    "conv_uneven_strides": (conv_model((2, 5, 3), filters=4, kernel_size=3, stride=3), 3),
    "conv_uneven_strides2": (conv_model((2, 4, 4), filters=2, kernel_size=2, stride=(1, 2)), 3),
    "conv_uneven_strides3": (conv_model((2, 4, 4), filters=2, kernel_size=2, stride=(2, 1)), 3),
    "conv_1x1": (conv_model((2, 4, 5), filters=4, kernel_size=1), 3),
    "conv_input_matches_kernel": (conv_model((2, 4, 5), filters=4, kernel_size=(4, 5)), 3),
    "mnist_conv_cross": (mnist_conv, 3),
    "mnist_conv_cross_one_input": (mnist_conv, 1),
}


class Reader:
    """Consumes the bare float32 values of a ``.info`` file in order."""

    def __init__(self, name: str) -> None:
        self.values = np.fromfile(DATA / "models_v1" / f"{name}.info", "<f4")
        self.offset = 0

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        assert self.offset + size <= self.values.size, "golden file shorter than the model"
        chunk = self.values[self.offset : self.offset + size].reshape(shape)
        self.offset += size
        return chunk.copy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_model_matches_nntrainer_golden(name: str) -> None:
    build, batch = CASES[name]
    layers = build()
    shapes, weight_shapes, trained = [], [], set()
    assert isinstance(layers[0], L.Input)
    shape: tuple[int, ...] = (batch, *layers[0].shape)
    for layer in layers:
        if isinstance(layer, L.Input):
            out = shape
            weights: list[tuple[str, tuple[int, ...]]] = []
        else:
            setup = layer.setup([shape])
            out = setup.output_shapes[0]
            weights = [(f"{layer.name}:{w.name}", w.shape) for w in setup.weights]
            trained |= {f"{layer.name}:{w.name}" for w in setup.weights if w.trainable}
        shapes.append((shape, out))
        weight_shapes.append(weights)
        shape = out

    golden = Reader(name)
    x = golden.take(shapes[0][0])
    label = golden.take((batch, 10))
    initial = {n: golden.take(s) for ws in weight_shapes for n, s in ws}

    model = Model(build(), loss="cross")
    model.compile(SGD(learning_rate=0.1), batch_size=batch, dtype=np.float32)
    model.set_weights(initial)
    for iteration in range(ITERATIONS):
        loss = model.train_step(x, label)
        updated = model.get_weights()
        for (in_shape, out_shape), weights in zip(shapes, weight_shapes):
            golden.take(out_shape)  # the layer's output
            golden.take(in_shape)  # its input derivative
            for n, s in weights:
                if n in trained:
                    golden.take(s)  # gradient
            for n, s in weights:
                np.testing.assert_allclose(
                    updated[n], golden.take(s), rtol=0, atol=ATOL,
                    err_msg=f"{name}: {n} after iteration {iteration}",
                )
        (recorded_loss,) = golden.take((1,))
        assert abs(loss - recorded_loss) <= ATOL, f"{name}: loss {loss} vs {recorded_loss} at iteration {iteration}"
    assert golden.offset == golden.values.size
