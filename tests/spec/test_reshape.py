"""Flatten and Reshape: shapes, target_shape forms, view-or-copy steps, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.errors import ConfigError, ShapeError
from edgetrain.layers.base import Layer, LayerContext
from gradcheck import check_layer_gradients


@pytest.mark.parametrize(
    ("target", "shape", "out"),
    [
        ("1:1:27", (2, 3, 3, 3), (2, 1, 1, 27)),
        ("-1", (2, 3, 3, 3), (2, 27)),
        ((9, -1), (2, 3, 3, 3), (2, 9, 3)),
        ("3,9", (4, 27), (4, 3, 9)),
        ([27], (1, 3, 9), (1, 27)),
    ],
)
def test_reshape_shapes(target: Any, shape: tuple[int, ...], out: tuple[int, ...]) -> None:
    layer = L.Reshape(target_shape=target, name="r")
    assert layer.setup([shape]).output_shapes == [out]
    check_layer_gradients(layer, [shape])
    assert L.Reshape(**layer.config()).setup([shape]).output_shapes == [out]


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 7), (2, 3, 4)])
def test_flatten_keeps_the_batch_axis(shape: tuple[int, ...]) -> None:
    layer = L.Flatten(name="f")
    assert layer.setup([shape]).output_shapes == [(shape[0], int(np.prod(shape[1:])))]
    check_layer_gradients(layer, [shape])


def _run(layer: Layer, x: np.ndarray, y: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> None:
    ctx = LayerContext(inputs=[x], outputs=[y], grad_outputs=[dy], grad_inputs=[dx])
    layer.forward(ctx)
    layer.calc_derivative(ctx)


@pytest.mark.parametrize("layer", [L.Flatten(name="f"), L.Reshape(target_shape="4:6", name="r")])
def test_view_layers_work_as_views_and_as_copies(layer: Layer) -> None:
    x = np.arange(48.0).reshape(2, 2, 3, 4)
    out_shape = layer.setup([x.shape]).output_shapes[0]
    dy = np.arange(48.0, 96.0).reshape(out_shape)
    # separate buffers: the values are copied in row-major order
    y, dx = np.full(out_shape, np.nan), np.full(x.shape, np.nan)
    _run(layer, x, y, dy, dx)
    np.testing.assert_array_equal(y, x.reshape(out_shape))
    np.testing.assert_array_equal(dx, dy.reshape(x.shape))
    # shared buffers (what the planner does): nothing moves, nothing breaks
    x2, dy2 = x.copy(), dy.copy()
    y2, dx2 = x2.reshape(out_shape), dy2.reshape(x.shape)
    _run(layer, x2, y2, dy2, dx2)
    np.testing.assert_array_equal(y2, x.reshape(out_shape))
    np.testing.assert_array_equal(dx2, dy.reshape(x.shape))
    assert type(layer).output_is_view


@pytest.mark.parametrize("target", ["", "a:b", "0:3", "-1:-1", "3:-2", (2, 0)])
def test_reshape_rejects_bad_target_shape(target: Any) -> None:
    with pytest.raises(ConfigError) as info:
        L.Reshape(target_shape=target)
    assert info.value.key == "target_shape"


def test_reshape_shape_errors_name_layer_and_shapes() -> None:
    with pytest.raises(ShapeError, match=r"reshape layer 'r'.*\(2, 3, 3, 3\).*\(4, 7\)"):
        L.Reshape(target_shape="4:7", name="r").setup([(2, 3, 3, 3)])
    with pytest.raises(ShapeError, match=r"reshape layer 'r'.*\(2, 3, 3, 3\).*\(5, -1\)"):
        L.Reshape(target_shape="5:-1", name="r").setup([(2, 3, 3, 3)])
    with pytest.raises(ShapeError, match=r"flatten layer 'f'.*\(7\)"):
        L.Flatten(name="f").setup([(7,)])
