"""Flatten and Reshape: the same bytes seen with another shape.

Both are ``output_is_view``: the planner may make the output *be* the input's memory (and
the outgoing derivative the incoming one's). The steps then have nothing to do; when the
arrays are separate they copy. Either way the row-major order of the values is kept, which
is NNTrainer's (and numpy's) reshape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tensors import Shape, format_shape
from .base import Array, Layer, LayerContext, LayerSetup


def copy_unless_shared(source: Array, target: Array) -> None:
    """``target`` = ``source`` re-shaped, skipped when ``target`` already is those bytes."""
    if not np.shares_memory(source, target):
        target[...] = source.reshape(target.shape)


class _ViewLayer(Layer):
    """A layer whose output is its input's bytes in another shape."""

    output_is_view = True

    def forward(self, ctx: LayerContext) -> None:
        copy_unless_shared(ctx.inputs[0], ctx.outputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        copy_unless_shared(ctx.grad_outputs[0], ctx.grad_inputs[0])


class Flatten(_ViewLayer):
    """``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)``: everything but the batch on one axis."""

    type_name = "flatten"

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = input_shapes[0]
        if len(shape) < 2:
            raise self.shape_error(f"needs a batched input of rank >= 2, got {format_shape(shape)}")
        return LayerSetup(output_shapes=[(shape[0], math.prod(shape[1:]))])


def parse_target_shape(value: Any, key: str = "target_shape") -> tuple[int, ...]:
    """A target shape without the batch: a tuple, or NNTrainer's ``"C:H:W"`` string (commas
    also accepted). One entry may be -1: it is inferred from the input size."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").replace(",", ":").split(":") if v]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        dims = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        dims = ()
    if not dims or any(d == 0 or d < -1 for d in dims) or dims.count(-1) > 1:
        raise ConfigError(
            f"{key} must be positive sizes (one may be -1), e.g. '1:1:27' or (3, 9), "
            f"got {value!r}",
            key=key,
        )
    return dims


class Reshape(_ViewLayer):
    """``(N, ...)`` to ``(N, *target_shape)``, the element count per sample unchanged."""

    type_name = "reshape"

    def __init__(self, *, target_shape: Sequence[int] | str, **common: Any) -> None:
        super().__init__(**common)
        self.target_shape = parse_target_shape(target_shape)

    def config(self) -> dict[str, Any]:
        return {"target_shape": self.target_shape}

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = input_shapes[0]
        if len(shape) < 2:
            raise self.shape_error(f"needs a batched input of rank >= 2, got {format_shape(shape)}")
        size = math.prod(shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        target = self.target_shape
        if -1 in target and size % known == 0:
            target = tuple(size // known if d == -1 else d for d in target)
        if math.prod(target) != size or -1 in target:
            raise self.shape_error(
                f"cannot reshape input {format_shape(shape)} ({size} values per sample) "
                f"to target_shape {format_shape(self.target_shape)}"
            )
        return LayerSetup(output_shapes=[(shape[0], *target)])
