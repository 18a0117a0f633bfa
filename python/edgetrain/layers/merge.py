"""Layers that merge several inputs into one output (``spec/layers/merge.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensors import Shape, format_shape
from .base import Layer, LayerContext, LayerSetup
from .properties import axis_value, resolve_axis


def _list_shapes(shapes: Sequence[Shape]) -> str:
    return ", ".join(f"input {i} {format_shape(s)}" for i, s in enumerate(shapes))


class Addition(Layer):
    """The element-wise sum of two or more inputs of one shape.

    The derivative of every input is the incoming derivative itself, so the backward
    reads no forward tensor and any ``dx_i`` may share ``dy``'s buffer (the planner
    may hand ``dy``'s bytes to every input: ``derivative_passthrough``).
    """

    type_name = "addition"
    derivative_in_place = True
    #: every ``grad_inputs[i]`` may be ``grad_outputs[0]``'s bytes (``spec/sharing.md``)
    derivative_passthrough = True

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        if len(input_shapes) < 2:
            raise self.shape_error(f"takes two or more inputs, got {len(input_shapes)}")
        first = tuple(input_shapes[0])
        if any(tuple(s) != first for s in input_shapes[1:]):
            raise self.shape_error(f"inputs must have one shape, got {_list_shapes(input_shapes)}")
        return LayerSetup(output_shapes=[first])

    def forward(self, ctx: LayerContext) -> None:
        out = ctx.outputs[0]
        first, second, *rest = ctx.inputs
        np.add(first, second, out=out)
        for extra in rest:
            out += extra

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy = ctx.grad_outputs[0]
        for dx in ctx.grad_inputs:
            if dx is not dy:
                np.copyto(dx, dy)


class Concat(Layer):
    """Joins its inputs along ``axis`` (batch = 0; NCHW for a rank-4 input, so 1 is
    channels); every other axis must agree.

    Without ``axis``, NNTrainer's default: a rank-4 input with more than one channel
    is joined along width (3), one with a single channel along channels (1); inputs
    of another rank along their last axis.
    """

    type_name = "concat"

    def __init__(self, *, axis: int | str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.axis = axis_value(axis)

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def concat_axis(self, shape: Shape) -> int:
        """The axis joined along, for a first input of ``shape``."""
        if self.axis is None:
            if len(shape) == 4:
                return 3 if shape[1] > 1 else 1
            return len(shape) - 1
        resolved = resolve_axis(self.axis, len(shape))
        if resolved is None:
            raise self.shape_error(
                f"axis {self.axis} is not a non-batch axis of the input {format_shape(shape)}"
            )
        return resolved

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        if len(input_shapes) < 2:
            raise self.shape_error(f"takes two or more inputs, got {len(input_shapes)}")
        first = tuple(input_shapes[0])
        axis = self.concat_axis(first)
        for shape in input_shapes[1:]:
            if len(shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis
            ):
                raise self.shape_error(
                    f"inputs must agree on every axis but {axis}, got {_list_shapes(input_shapes)}"
                )
        joined = sum(s[axis] for s in input_shapes)
        return LayerSetup(output_shapes=[(*first[:axis], joined, *first[axis + 1 :])])

    def forward(self, ctx: LayerContext) -> None:
        axis = self.concat_axis(ctx.inputs[0].shape)
        np.concatenate(ctx.inputs, axis=axis, out=ctx.outputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy = ctx.grad_outputs[0]
        axis = self.concat_axis(ctx.grad_inputs[0].shape)
        start = 0
        for dx in ctx.grad_inputs:
            stop = start + dx.shape[axis]
            index = (slice(None),) * axis + (slice(start, stop),)
            np.copyto(dx, dy[index])
            start = stop
