"""The entry point of data into the graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..tensors import Shape
from .base import Layer, LayerContext, LayerSetup, positive_int


class Input(Layer):
    """Holds one batch of the model's input; the executor writes the data into its output.

    ``shape`` excludes the batch dimension, e.g. ``(3, 32, 32)`` for CHW images.
    """

    type_name = "input"
    has_derivative = False

    def __init__(self, *, shape: Sequence[int], **common: Any) -> None:
        super().__init__(**common)
        if isinstance(shape, int) or len(shape) == 0:
            raise ConfigError(f"input layer '{self.display_name}': shape must be a sequence, got {shape!r}")
        self.shape: Shape = tuple(positive_int(d, "input_shape") for d in shape)

    def config(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        """The graph passes the data's shape, batch included, as the one input shape."""
        self.expect_inputs(input_shapes, 1)
        if tuple(input_shapes[0][1:]) != self.shape:
            raise self.shape_error(f"data of shape {input_shapes[0]} does not match {self.shape}")
        return LayerSetup(output_shapes=[tuple(input_shapes[0])])

    def forward(self, ctx: LayerContext) -> None:
        """Nothing to compute: the executor has written the batch into the output."""

    def calc_derivative(self, ctx: LayerContext) -> None:
        """Never scheduled: no derivative flows out of the data."""
