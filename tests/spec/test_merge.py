from __future__ import annotations

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.errors import ConfigError, ShapeError
from edgetrain.graph import build_graph
from gradcheck import check_layer_gradients, make_context

# -- addition ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2, 2)])
def test_addition_backward_matches_finite_differences(count: int, shape: tuple[int, ...]) -> None:
    check_layer_gradients(L.Addition(name="add"), [shape] * count)


def test_addition_sums_and_copies_the_derivative_alias_safe() -> None:
    layer = L.Addition(name="add")
    assert layer.derivative_in_place
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(2, 4)) for _ in range(3)]
    ctx = make_context(layer, [x.copy() for x in xs])
    layer.forward(ctx)
    np.testing.assert_allclose(ctx.outputs[0], xs[0] + xs[1] + xs[2])
    dy = rng.normal(size=(2, 4))
    ctx.grad_outputs = [dy.copy()]
    ctx.grad_inputs = [ctx.grad_outputs[0], np.zeros((2, 4)), np.zeros((2, 4))]  # dx_0 over dy
    layer.calc_derivative(ctx)
    for dx in ctx.grad_inputs:
        np.testing.assert_array_equal(dx, dy)
    ctx.grad_inputs = [ctx.grad_outputs[0]] * 3  # passthrough: every dx is dy's bytes
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.grad_outputs[0], dy)
    ctx.outputs = [ctx.inputs[0]]  # output over the first input stays correct
    layer.forward(ctx)
    np.testing.assert_allclose(ctx.outputs[0], xs[0] + xs[1] + xs[2])


def test_addition_shape_mismatch_names_the_layers_and_shapes() -> None:
    layers = [
        L.Input(shape=(4,), name="a"),
        L.Input(shape=(5,), name="b"),
        L.Addition(input_layers="a, b", name="sum"),
    ]
    with pytest.raises(ShapeError) as err:
        build_graph(layers, batch_size=2)
    message = str(err.value)
    for part in ("'sum'", "(2, 4)", "(2, 5)", "'a'", "'b'"):
        assert part in message, message


def test_addition_needs_two_inputs() -> None:
    with pytest.raises(ShapeError, match="two or more"):
        L.Addition(name="add").setup([(2, 3)])


# -- concat -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "shapes"),
    [
        (1, [(2, 2, 3, 3), (2, 3, 3, 3)]),
        (2, [(2, 3, 2, 3), (2, 3, 3, 3)]),
        (3, [(2, 3, 3, 2), (2, 3, 3, 3)]),
        (1, [(3, 4), (3, 2), (3, 1)]),
        (-1, [(2, 3, 4), (2, 3, 1)]),
    ],
)
def test_concat_backward_matches_finite_differences(
    axis: int, shapes: list[tuple[int, ...]]
) -> None:
    layer = L.Concat(axis=axis, name="cat")
    check_layer_gradients(layer, shapes)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=s) for s in shapes]
    ctx = make_context(layer, xs)
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], np.concatenate(xs, axis=axis))


def test_concat_default_axis_follows_nntrainer() -> None:
    layer = L.Concat(name="cat")
    assert layer.setup([(2, 3, 4, 5), (2, 3, 4, 2)]).output_shapes == [(2, 3, 4, 7)]
    assert layer.setup([(2, 1, 4, 5), (2, 2, 4, 5)]).output_shapes == [(2, 3, 4, 5)]
    assert layer.setup([(2, 5), (2, 2)]).output_shapes == [(2, 7)]


def test_concat_mismatch_names_the_shapes() -> None:
    with pytest.raises(ShapeError, match=r"'cat'.*\(2, 3, 4, 4\).*\(2, 3, 5, 4\)"):
        L.Concat(axis=1, name="cat").setup([(2, 3, 4, 4), (2, 3, 5, 4)])
    with pytest.raises(ShapeError, match="axis 0"):
        L.Concat(axis=0, name="cat").setup([(2, 3), (2, 3)])
    with pytest.raises(ShapeError, match="two or more"):
        L.Concat(axis=1, name="cat").setup([(2, 3)])


def test_concat_properties() -> None:
    layer = L.Concat(axis="2", name="cat")
    assert layer.axis == 2 and layer.config() == {"axis": 2}
    assert L.Concat(**layer.config()).config() == layer.config()
    assert L.Concat().config() == {"axis": None}
    with pytest.raises(ConfigError) as err:
        L.Concat(axis="width")
    assert err.value.key == "axis"
    assert L.LAYER_TYPES["concat"] is L.Concat and L.LAYER_TYPES["addition"] is L.Addition
