"""Convolution, pooling, flatten, reshape and embedding inside whole models: training in a
planned arena (dead bytes poisoned with NaN after every step) computes exactly what
training with a separate array per tensor computes. This checks the declared scratch
lifetimes and backward reads, and the view layers over shared bytes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.optimizers import SGD


def cnn() -> list[L.Layer]:
    return [
        L.Input(shape=(2, 9, 8), name="image"),
        L.Conv2D(filters=4, kernel_size=3, padding="same", activation="relu", name="conv1"),
        L.Pooling2D("max", pool_size=2, stride=2, name="pool1"),
        L.Conv2D(filters=3, kernel_size=(2, 3), stride=(1, 2), padding="0,1,0,1", dilation=1, name="conv2"),
        L.Pooling2D("average", pool_size=3, padding="same", name="pool2"),
        L.Reshape(target_shape=(3, -1), name="rows"),
        L.Flatten(name="flatten"),
        L.FullyConnected(unit=5, name="fc"),
    ]


def global_pooling() -> list[L.Layer]:
    return [
        L.Input(shape=(1, 1, 12), name="signal"),
        L.Conv1D(filters=3, kernel_size=3, padding="causal", dilation=2, name="conv"),
        L.Pooling2D("global_max", name="gmax"),
        L.Flatten(name="flatten"),
        L.FullyConnected(unit=5, name="fc"),
    ]


def embedding() -> list[L.Layer]:
    return [
        L.Input(shape=(1, 1, 6), name="ids"),
        L.Embedding(in_dim=11, out_dim=4, name="embed"),
        L.Conv2D(filters=2, kernel_size=(2, 4), name="conv"),
        L.Pooling2D("global_average", name="gavg"),
        L.Flatten(name="flatten"),
        L.FullyConnected(unit=5, name="fc"),
    ]


def train(build: Callable[[], list[L.Layer]], x: np.ndarray, y: np.ndarray, planner: str | None) -> tuple[list[float], dict[str, np.ndarray]]:
    model = Model(build(), loss="cross")
    model.compile(SGD(learning_rate=0.1), batch_size=4, seed=3, dtype=np.float64,
                  planner=planner, debug_poison=planner is not None)
    losses = [model.train_step(x, y) for _ in range(3)]
    return losses, {k: v.copy() for k, v in model.get_weights().items()}


@pytest.mark.parametrize(
    ("build", "input_shape", "ids"),
    [(cnn, (4, 2, 9, 8), False), (global_pooling, (4, 1, 1, 12), False), (embedding, (4, 1, 1, 6), True)],
    ids=["cnn", "conv1d_global_max", "embedding"],
)
def test_planned_training_equals_unplanned(build: Callable[[], list[L.Layer]], input_shape: tuple[int, ...], ids: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, size=input_shape).astype(np.float64) if ids else rng.normal(size=input_shape)
    y = np.eye(5)[rng.integers(0, 5, size=4)]
    plain_losses, plain_weights = train(build, x, y, None)
    planned_losses, planned_weights = train(build, x, y, "greedy_by_size")
    assert all(np.isfinite(plain_losses))
    assert plain_losses[-1] < plain_losses[0]
    np.testing.assert_array_equal(planned_losses, plain_losses)
    assert planned_weights.keys() == plain_weights.keys()
    for name, values in plain_weights.items():
        np.testing.assert_array_equal(planned_weights[name], values, err_msg=name)
