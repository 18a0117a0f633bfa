from __future__ import annotations

import numpy as np
import pytest

from edgetrain import layers as L
from gradcheck import check_layer_gradients


@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 1, 7), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_fully_connected_backward_matches_finite_differences(shape: tuple[int, ...], bias: bool) -> None:
    check_layer_gradients(L.FullyConnected(unit=4, bias=bias, name="fc"), [shape])


def test_fully_connected_applies_to_last_axis() -> None:
    layer = L.FullyConnected(unit=3, name="fc")
    setup = layer.setup([(2, 4, 5)])
    assert setup.output_shapes == [(2, 4, 3)]
    assert [(w.name, w.shape) for w in setup.weights] == [("weight", (5, 3)), ("bias", (3,))]


@pytest.mark.parametrize("kind", sorted(L.activation.ACTIVATIONS))
def test_activation_backward_matches_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(3)
    # keep relu-like kinks away from the sampled points
    x = rng.normal(size=(3, 2, 5))
    x[np.abs(x) < 1e-3] = 0.5
    check_layer_gradients(L.Activation(kind, name="act"), [x.shape], inputs=[x])


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("true", True), ("0", False)])
def test_bias_and_trainable_accept_model_file_words(text: str, expected: bool) -> None:
    layer = L.FullyConnected(unit=2, bias=text, trainable=text)
    assert layer.bias is expected
    assert layer.trainable is expected


def test_bias_refuses_words_that_are_not_flags() -> None:
    from edgetrain.errors import ConfigError

    with pytest.raises(ConfigError, match="bias must be true or false"):
        L.FullyConnected(unit=2, bias="maybe")
