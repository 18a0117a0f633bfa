"""Inverted dropout (``spec/layers/dropout.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensors import Shape
from .base import Layer, LayerContext, LayerSetup, ScratchSpec, StepKind
from .properties import float_in_range


class Dropout(Layer):
    """Zeroes each element with probability ``dropout_rate`` in training and scales the
    kept ones by ``1 / (1 - dropout_rate)``, so inference is the identity.

    The mask is drawn from ``ctx.rng`` in every training forward and kept as one byte
    per element (scratch ``mask``) for the derivative, which reads nothing else; so the
    output may overwrite the input and ``dx`` may overwrite ``dy``. ``dropout_rate = 1``
    drops everything (the output and the derivative are zero), as NNTrainer's
    ``dropout_100`` case expects; ``0`` declares no mask at all.
    """

    type_name = "dropout"
    supports_in_place = True
    derivative_in_place = True

    def __init__(self, *, dropout_rate: float | str = 0.0, **common: Any) -> None:
        super().__init__(**common)
        self.dropout_rate = float_in_range(dropout_rate, "dropout_rate", low=0.0, high=1.0)

    def config(self) -> dict[str, Any]:
        return {"dropout_rate": self.dropout_rate}

    @property
    def scale(self) -> float:
        """The factor a kept element is multiplied by (0 when every element is dropped)."""
        return 1.0 / (1.0 - self.dropout_rate) if self.dropout_rate < 1.0 else 0.0

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = tuple(input_shapes[0])
        scratch = []
        if self.dropout_rate > 0.0:
            used = frozenset({StepKind.FORWARD, StepKind.CALC_DERIVATIVE})
            scratch.append(ScratchSpec("mask", shape, used, dtype="uint8"))
        return LayerSetup(output_shapes=[shape], scratch=scratch)

    def forward(self, ctx: LayerContext) -> None:
        x, y = ctx.inputs[0], ctx.outputs[0]
        if not ctx.training or self.dropout_rate == 0.0:
            if y is not x:
                np.copyto(y, x)
            return
        mask = ctx.scratch["mask"]
        uniform = ctx.rng.random(mask.shape, dtype=np.float32)
        np.greater_equal(uniform, np.float32(self.dropout_rate), out=mask, casting="unsafe")
        np.multiply(x, mask, out=y)
        y *= y.dtype.type(self.scale)

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        if self.dropout_rate == 0.0:
            if dx is not dy:
                np.copyto(dx, dy)
            return
        np.multiply(dy, ctx.scratch["mask"], out=dx)
        dx *= dx.dtype.type(self.scale)
