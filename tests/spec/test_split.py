"""The split layer (``spec/layers/split.md``): shapes, values, backward, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrain import ConfigError, ShapeError
from edgetrain import layers as L
from gradcheck import check_layer_gradients, make_context


@pytest.mark.parametrize(
    ("shape", "axis", "number", "part"),
    [
        ((2, 3, 4, 5), 3, 5, (2, 3, 4, 1)),
        ((2, 3, 4, 5), 2, 2, (2, 3, 2, 5)),
        ((2, 3, 4, 5), 1, None, (2, 1, 4, 5)),
        ((5, 6), -1, 3, (5, 2)),
    ],
)
def test_split_shapes_and_backward(shape: tuple[int, ...], axis: int, number: int | None,
                                   part: tuple[int, ...]) -> None:
    layer = L.Split(axis=axis, split_number=number, name="s")
    setup = layer.setup([shape])
    count = number if number is not None else shape[axis]
    assert setup.output_shapes == [part] * count
    check_layer_gradients(L.Split(axis=axis, split_number=number, name="s"), [shape])


def test_split_outputs_are_the_slices_in_order() -> None:
    x = np.arange(2 * 6, dtype=np.float64).reshape(2, 1, 1, 6)
    layer = L.Split(axis="3", split_number="3", name="s")
    ctx = make_context(layer, [x])
    layer.forward(ctx)
    for i, out in enumerate(ctx.outputs):
        np.testing.assert_array_equal(out, x[..., 2 * i : 2 * i + 2])


def test_split_errors() -> None:
    with pytest.raises(ShapeError, match=r"split layer 's'.*size 5.*2 equal parts"):
        L.Split(axis=3, split_number=2, name="s").setup([(2, 3, 4, 5)])
    with pytest.raises(ShapeError, match="axis 4 is not a non-batch axis"):
        L.Split(axis=4, name="s").setup([(2, 3, 4, 5)])
    with pytest.raises(ShapeError, match="axis 0"):
        L.Split(axis=0, name="s").setup([(2, 3)])
    with pytest.raises(ConfigError) as err:
        L.Split(axis=1, split_number=0, name="s")
    assert err.value.key == "split_number"
    with pytest.raises(ConfigError):
        L.Split(axis="", name="s")
