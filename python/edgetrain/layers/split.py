"""Split: one input cut into equal slices along one axis, one output per slice
(NNTrainer's ``split`` layer; ``spec/layers/split.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tensors import Shape, format_shape
from .base import Array, Layer, LayerContext, LayerSetup, positive_int
from .properties import axis_value, resolve_axis


class Split(Layer):
    """Cuts the input along ``axis`` (batch = 0; NCHW for rank 4, so 3 is width) into
    ``split_number`` equal slices, output ``i`` being slice ``i``. Without
    ``split_number`` every slice is one element thick. Consumers read ``name(i)``.

    The backward writes each slice of the input derivative from the matching output
    derivative and reads no forward tensor; an output nobody reads contributes zero.
    """

    type_name = "split"

    def __init__(
        self, *, axis: int | str, split_number: int | str | None = None, **common: Any
    ) -> None:
        super().__init__(**common)
        parsed = axis_value(axis)
        if parsed is None:
            raise ConfigError(f"split layer '{self.display_name}': axis must be given", key="axis")
        self.axis = parsed
        self.split_number = (
            None if split_number is None else positive_int(split_number, "split_number")
        )

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis, "split_number": self.split_number}

    def _resolved_axis(self, shape: Shape) -> int:
        resolved = resolve_axis(self.axis, len(shape))
        if resolved is None:
            raise self.shape_error(
                f"axis {self.axis} is not a non-batch axis of the input {format_shape(shape)}"
            )
        return resolved

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = tuple(input_shapes[0])
        axis = self._resolved_axis(shape)
        count = self.split_number if self.split_number is not None else shape[axis]
        if shape[axis] % count:
            raise self.shape_error(
                f"axis {axis} of the input {format_shape(shape)} has size {shape[axis]}, "
                f"which does not split into {count} equal parts"
            )
        part = (*shape[:axis], shape[axis] // count, *shape[axis + 1 :])
        return LayerSetup(output_shapes=[part] * count)

    def _slices(self, shape: Shape, count: int) -> list[tuple[slice, ...]]:
        axis = self._resolved_axis(shape)
        size = shape[axis] // count
        lead = (slice(None),) * axis
        return [(*lead, slice(i * size, (i + 1) * size)) for i in range(count)]

    def forward(self, ctx: LayerContext) -> None:
        x: Array = ctx.inputs[0]
        for out, index in zip(ctx.outputs, self._slices(x.shape, len(ctx.outputs))):
            np.copyto(out, x[index])

    def calc_derivative(self, ctx: LayerContext) -> None:
        dx: Array = ctx.grad_inputs[0]
        for dy, index in zip(ctx.grad_outputs, self._slices(dx.shape, len(ctx.grad_outputs))):
            np.copyto(dx[index], dy)
