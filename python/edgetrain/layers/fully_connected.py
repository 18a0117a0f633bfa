"""Fully-connected (dense) layer over the last axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..initializers import check_initializer
from ..tensors import Shape
from .base import Layer, LayerContext, LayerSetup, Operand, WeightSpec, positive_int
from .properties import parse_flag


class FullyConnected(Layer):
    """``y = x @ W + b`` over the last axis: ``x (..., in)``, ``W (in, unit)``, ``b (unit,)``.

    The gradient needs ``x``; the derivative needs ``W``. Both flatten the leading axes,
    so an input ``(N, C, H, in)`` is treated as ``N*C*H`` rows.
    """

    type_name = "fully_connected"
    gradient_reads = frozenset({Operand.INPUTS})
    derivative_reads = frozenset({Operand.WEIGHTS})

    def __init__(
        self,
        *,
        unit: int,
        bias: bool = True,
        weight_initializer: str = "xavier_uniform",
        bias_initializer: str = "zeros",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.unit = positive_int(unit, "unit")
        self.bias = parse_flag(bias, "bias")
        self.weight_initializer = check_initializer(weight_initializer, "weight_initializer")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer")

    def config(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "bias": self.bias,
            "weight_initializer": self.weight_initializer,
            "bias_initializer": self.bias_initializer,
        }

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = input_shapes[0]
        if len(shape) < 2:
            raise self.shape_error(f"needs an input with a feature axis, got {shape}")
        weights = [WeightSpec("weight", (shape[-1], self.unit), self.weight_initializer)]
        if self.bias:
            weights.append(WeightSpec("bias", (self.unit,), self.bias_initializer))
        return LayerSetup(output_shapes=[(*shape[:-1], self.unit)], weights=weights)

    def forward(self, ctx: LayerContext) -> None:
        out = ctx.outputs[0]
        np.matmul(ctx.inputs[0], ctx.weights["weight"], out=out)
        if self.bias:
            out += ctx.weights["bias"]

    def calc_gradient(self, ctx: LayerContext) -> None:
        x = ctx.inputs[0]
        dy = ctx.grad_outputs[0]
        rows_x = x.reshape(-1, x.shape[-1])
        rows_dy = dy.reshape(-1, dy.shape[-1])
        np.matmul(rows_x.T, rows_dy, out=ctx.gradients["weight"])
        if "bias" in ctx.gradients:
            np.sum(rows_dy, axis=0, out=ctx.gradients["bias"])

    def calc_derivative(self, ctx: LayerContext) -> None:
        np.matmul(ctx.grad_outputs[0], ctx.weights["weight"].T, out=ctx.grad_inputs[0])
