"""Pooling2D: NNTrainer's semantics against a naive oracle, backward against finite
differences, tie handling, errors and config."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain.errors import ConfigError, ShapeError
from edgetrain.layers.base import StepKind
from edgetrain.layers.pooling import Pooling2D
from gradcheck import check_layer_gradients, make_context


def naive_pool(x: np.ndarray, kind: str, size: tuple[int, int], stride: tuple[int, int],
               pads: tuple[int, int, int, int]) -> np.ndarray:
    """Loops over output pixels; padded cells are skipped (NNTrainer's rule)."""
    top, bottom, left, right = pads
    n, c, h, w = x.shape
    oh = (h + top + bottom - size[0]) // stride[0] + 1
    ow = (w + left + right - size[1]) // stride[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - top, j * stride[1] - left
            cells = x[:, :, max(r0, 0) : r0 + size[0], max(c0, 0) : c0 + size[1]]
            y[:, :, i, j] = cells.max(axis=(2, 3)) if kind == "max" else cells.mean(axis=(2, 3))
    return y


CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 4, 4), {"pool_size": 2, "stride": 2}),
    ((2, 2, 5, 5), {"pool_size": 2}),  # NNTrainer's default stride 1: overlapping windows
    ((1, 2, 5, 6), {"pool_size": (3, 2), "stride": (2, 1), "padding": 1}),
    ((2, 1, 5, 5), {"pool_size": 3, "stride": 2, "padding": "same"}),
    ((2, 2, 4, 4), {"pool_size": 3, "stride": 2, "padding": "same"}),  # uneven: (0,1,0,1)
    ((1, 2, 7, 7), {"pool_size": 3, "stride": 2, "padding": "valid"}),
    ((2, 2, 6, 5), {"pool_size": "2,3", "stride": "3", "padding": "0,1,1,0"}),
    ((2, 3, 3, 3), {"pool_size": 1}),
]


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize(("shape", "props"), CASES)
def test_pooling_forward_matches_naive_oracle(kind: str, shape: tuple[int, ...], props: dict[str, Any]) -> None:
    layer = Pooling2D(kind, name="pool", **props)
    x = np.random.default_rng(2).normal(size=shape)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    window = layer.window(shape[2], shape[3])
    expected = naive_pool(x, kind, window.kernel, window.stride, window.pads)
    np.testing.assert_allclose(ctx.outputs[0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize(("shape", "props"), CASES)
def test_pooling_backward_matches_finite_differences(kind: str, shape: tuple[int, ...], props: dict[str, Any]) -> None:
    check_layer_gradients(Pooling2D(kind, name="pool", **props), [shape])


@pytest.mark.parametrize("kind", ["global_max", "global_average"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 1), (3, 1, 2, 7)])
def test_global_pooling(kind: str, shape: tuple[int, ...]) -> None:
    layer = Pooling2D(kind, name="gp")
    assert layer.setup([shape]).output_shapes == [(shape[0], shape[1], 1, 1)]
    x = np.random.default_rng(0).normal(size=shape)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    reduce = np.max if kind == "global_max" else np.mean
    np.testing.assert_allclose(ctx.outputs[0], reduce(x, axis=(2, 3), keepdims=True))
    check_layer_gradients(Pooling2D(kind, name="gp"), [shape])


def test_max_pooling_ties_go_to_the_first_cell_in_row_major_order() -> None:
    layer = Pooling2D("max", pool_size=2, stride=2, name="pool")
    x = np.array([[[[1.0, 5.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0]]]])
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    ctx.grad_outputs = [np.array([[[[3.0, 4.0]]]])]
    ctx.grad_inputs = [np.full_like(x, np.nan)]
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.grad_inputs[0], [[[[0, 3, 4, 0], [0, 0, 0, 0]]]])


def test_global_max_shares_the_derivative_among_ties() -> None:
    layer = Pooling2D("global_max", name="gp")
    x = np.array([[[[2.0, 1.0], [2.0, 2.0]]], [[[0.0, 3.0], [1.0, 1.0]]]])
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    ctx.grad_outputs = [np.array([[[[6.0]]], [[[5.0]]]])]
    ctx.grad_inputs = [np.full_like(x, np.nan)]
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.grad_inputs[0], [[[[2, 0], [2, 2]]], [[[0, 5], [0, 0]]]])


def test_overlapping_max_windows_accumulate() -> None:
    layer = Pooling2D("max", pool_size=2, name="pool")  # stride 1
    x = np.array([[[[0.0, 0.1, 0.2], [0.3, 9.0, 0.4], [0.5, 0.6, 0.7]]]])
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], np.full((1, 1, 2, 2), 9.0))
    ctx.grad_outputs = [np.ones((1, 1, 2, 2))]
    ctx.grad_inputs = [np.zeros_like(x)]
    layer.calc_derivative(ctx)
    assert ctx.grad_inputs[0][0, 0, 1, 1] == 4.0 and ctx.grad_inputs[0].sum() == 4.0


def test_average_pooling_counts_only_real_cells() -> None:
    layer = Pooling2D("average", pool_size=3, stride=1, padding=1, name="pool")
    x = np.full((1, 1, 3, 3), 3.0)
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    np.testing.assert_array_equal(ctx.outputs[0], np.full((1, 1, 3, 3), 3.0))


def test_pooling_declares_integer_scratch_for_the_derivative_only() -> None:
    setup = Pooling2D("max", pool_size=2, stride=2).setup([(4, 3, 8, 6)])
    assert setup.output_shapes == [(4, 3, 4, 3)]
    (argmax,) = setup.scratch
    assert (argmax.name, argmax.shape, argmax.dtype) == ("argmax", (4, 3, 4, 3), "int32")
    assert argmax.used_in == frozenset({StepKind.FORWARD, StepKind.CALC_DERIVATIVE})
    (mask,) = Pooling2D("global_max").setup([(4, 3, 8, 6)]).scratch
    assert (mask.shape, mask.dtype) == ((4, 3, 8, 6), "uint8")
    assert Pooling2D("average", pool_size=2).setup([(1, 1, 3, 3)]).scratch == []
    assert Pooling2D.derivative_reads == frozenset()


def test_max_pooling_backward_after_input_is_gone() -> None:
    layer = Pooling2D("max", pool_size=2, stride=2, name="pool")
    x = np.random.default_rng(4).normal(size=(2, 2, 4, 4))
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    expected_dx = np.zeros_like(x)
    ctx.grad_outputs = [np.ones((2, 2, 2, 2))]
    ctx.grad_inputs = [expected_dx]
    layer.calc_derivative(ctx)
    kept = expected_dx.copy()
    ctx.inputs[0][...] = np.nan  # the planner may have reused the input's bytes
    layer.calc_derivative(ctx)
    np.testing.assert_array_equal(ctx.grad_inputs[0], kept)


def test_pooling_float32_stays_float32() -> None:
    for kind in ("max", "average", "global_max", "global_average"):
        props = {"pool_size": 2} if not kind.startswith("global") else {}
        layer = Pooling2D(kind, **props)
        x = np.random.default_rng(0).normal(size=(2, 2, 3, 3)).astype(np.float32)
        ctx = make_context(layer, [x], dtype=np.float32)
        layer.forward(ctx)
        ctx.grad_outputs = [np.ones_like(ctx.outputs[0])]
        ctx.grad_inputs = [np.zeros_like(x)]
        layer.calc_derivative(ctx)
        assert ctx.outputs[0].dtype == np.float32 and ctx.grad_inputs[0].dtype == np.float32


def test_pooling_config_round_trips_and_accepts_strings() -> None:
    layer = Pooling2D(pooling="MAX", pool_size="3,2", stride="2", padding="1,0,1,1", name="p")
    assert layer.config() == {"pooling": "max", "pool_size": (3, 2), "stride": (2, 2),
                              "padding": (1, 0, 1, 1)}
    assert Pooling2D(**layer.config()).config() == layer.config()
    assert Pooling2D("global_average").config() == {"pooling": "global_average"}


@pytest.mark.parametrize(
    ("args", "props", "key"),
    [
        (("min",), {"pool_size": 2}, "pooling"),
        (("max",), {}, "pool_size"),
        (("average",), {"pool_size": 0}, "pool_size"),
        (("max",), {"pool_size": 2, "stride": "0"}, "stride"),
        (("max",), {"pool_size": 2, "padding": 2}, "padding"),
        (("max",), {"pool_size": 2, "padding": "full"}, "padding"),
        (("global_max",), {"pool_size": 2}, "pool_size"),
        (("global_average",), {"stride": 2}, "stride"),
        (("global_max",), {"padding": 1}, "padding"),
    ],
)
def test_pooling_rejects_bad_properties(args: tuple[str], props: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Pooling2D(*args, **props)
    assert info.value.key == key


def test_pooling_shape_errors_name_layer_and_shape() -> None:
    with pytest.raises(ShapeError, match=r"pooling2d layer 'p1'.*\(1, 3, 2, 2\)"):
        Pooling2D("max", pool_size=3, name="p1").setup([(1, 3, 2, 2)])
    with pytest.raises(ShapeError, match=r"pooling2d layer 'p1'.*\(2, 8\)"):
        Pooling2D("max", pool_size=3, name="p1").setup([(2, 8)])
