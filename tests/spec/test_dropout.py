from __future__ import annotations

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.errors import ConfigError
from edgetrain.layers.base import StepKind
from gradcheck import check_layer_gradients, make_context


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_dropout_backward_matches_finite_differences(rate: float, shape: tuple[int, ...]) -> None:
    """The checker redraws the mask from the same seed on every forward, so the
    function differentiated is the one the analytic backward saw."""
    check_layer_gradients(L.Dropout(dropout_rate=rate, name="drop"), [shape])


def test_dropout_training_drops_at_the_rate_and_rescales() -> None:
    rate = 0.3
    layer = L.Dropout(dropout_rate=rate, name="drop")
    x = np.random.default_rng(1).uniform(1.0, 2.0, size=(100, 1000)).astype(np.float32)
    ctx = make_context(layer, [x], dtype=np.float32)
    layer.forward(ctx)
    y, mask = ctx.outputs[0], ctx.scratch["mask"]
    assert y.dtype == np.float32 and mask.dtype == np.uint8
    kept = mask.astype(bool)
    assert abs(1.0 - kept.mean() - rate) < 0.005  # 100k draws: 5 sigma is 0.0072... 3.5 sigma
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert (y[~kept] == 0).all()
    assert abs(y.mean() / x.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
    first = mask.copy()
    layer.forward(ctx)
    assert (ctx.scratch["mask"] != first).any(), "a new mask is drawn on every forward"


def test_dropout_derivative_uses_the_forward_mask() -> None:
    layer = L.Dropout(dropout_rate=0.5, name="drop")
    x = np.ones((8, 16))
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    ctx.grad_outputs = [np.full(x.shape, 3.0)]
    ctx.grad_inputs = [np.zeros(x.shape)]
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.grad_inputs[0], 3.0 * ctx.outputs[0])


def test_dropout_inference_is_the_identity() -> None:
    layer = L.Dropout(dropout_rate=0.9, name="drop")
    x = np.random.default_rng(2).normal(size=(3, 5))
    ctx = make_context(layer, [x], training=False)
    ctx.scratch = {}  # the mask is only for training
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], x)
    ctx.outputs = ctx.inputs  # in place
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], x)


def test_dropout_rate_one_drops_everything() -> None:
    layer = L.Dropout(dropout_rate="1.0", name="drop")
    x = np.random.default_rng(3).normal(size=(4, 5))
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    assert not ctx.outputs[0].any()
    ctx.grad_outputs, ctx.grad_inputs = [np.ones_like(x)], [np.full_like(x, 7.0)]
    layer.calc_derivative(ctx)
    assert not ctx.grad_inputs[0].any()


def test_dropout_is_alias_safe() -> None:
    layer = L.Dropout(dropout_rate=0.4, name="drop")
    assert layer.supports_in_place and layer.derivative_in_place
    assert layer.derivative_reads == frozenset()
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(6, 7)), rng.normal(size=(6, 7))
    plain = make_context(layer, [x.copy()], seed=11)
    layer.forward(plain)
    plain.grad_outputs, plain.grad_inputs = [dy.copy()], [np.zeros_like(x)]
    layer.calc_derivative(plain)
    shared = make_context(layer, [x.copy()], seed=11)
    shared.outputs = shared.inputs
    layer.forward(shared)
    shared.grad_outputs = [dy.copy()]
    shared.grad_inputs = shared.grad_outputs
    layer.calc_derivative(shared)
    np.testing.assert_array_equal(shared.outputs[0], plain.outputs[0])
    np.testing.assert_array_equal(shared.grad_inputs[0], plain.grad_inputs[0])


def test_dropout_declares_a_byte_mask_only_when_it_drops() -> None:
    (mask,) = L.Dropout(dropout_rate=0.2).setup([(2, 3, 4)]).scratch
    assert (mask.name, mask.shape, mask.dtype) == ("mask", (2, 3, 4), "uint8")
    assert mask.used_in == {StepKind.FORWARD, StepKind.CALC_DERIVATIVE}
    assert L.Dropout(dropout_rate=0).setup([(2, 3, 4)]).scratch == []


def test_dropout_properties() -> None:
    layer = L.Dropout(dropout_rate="0.25", name="drop")
    assert layer.dropout_rate == 0.25 and layer.config() == {"dropout_rate": 0.25}
    assert L.LAYER_TYPES["dropout"] is L.Dropout
    for bad in (-0.1, 1.5, "half", "nan", None):
        with pytest.raises(ConfigError) as err:
            L.Dropout(dropout_rate=bad)  # type: ignore[arg-type]
        assert err.value.key == "dropout_rate"
