"""Fan-out: one output read by several layers, as NNTrainer's multiout layer does it.

The graph inserts this layer wherever an output has more than one consumer, so that
every other tensor has exactly one reader and one derivative. Its backward sums the
derivatives coming back from the consumers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensors import Shape
from .base import Layer, LayerContext, LayerSetup, positive_int


class Multiout(Layer):
    """Copies its one input to ``outputs`` outputs; sums their derivatives on the way back."""

    type_name = "multiout"
    #: every output may be the input's bytes (readers only read them; a reader that
    #: would write in place is refused by the planner while a sibling still needs them)
    output_is_view = True
    #: the sum is written element-wise over the first incoming derivative
    derivative_in_place = True

    def __init__(self, *, outputs: int = 2, **common: Any) -> None:
        super().__init__(**common)
        self.outputs = positive_int(outputs, "outputs")

    def config(self) -> dict[str, Any]:
        return {"outputs": self.outputs}

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        return LayerSetup(output_shapes=[tuple(input_shapes[0])] * self.outputs)

    def forward(self, ctx: LayerContext) -> None:
        for out in ctx.outputs:
            if out is not ctx.inputs[0]:
                np.copyto(out, ctx.inputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        total = ctx.grad_inputs[0]
        first, *rest = ctx.grad_outputs
        if not rest:
            np.copyto(total, first)
            return
        np.add(first, rest[0], out=total)
        for extra in rest[1:]:
            total += extra
