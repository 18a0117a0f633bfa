"""2-D convolution (NCHW) as im2col into declared scratch, then one GEMM per sample.

The column matrix of one sample (``C*kh*kw x OH*OW``) is the large temporary of a
convolution, so it is declared three times with disjoint lifetimes: ``im2col`` for the
forward, ``im2col_gradient`` (recomputed from the input) for the weight gradient and
``col2im`` for the derivative. Nothing of that size lives from the forward to the
backward; the planner can give all three the same bytes. See ``spec/layers/conv2d.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..initializers import check_initializer
from ..tensors import Shape, format_shape
from .base import (
    Layer,
    LayerContext,
    LayerSetup,
    Operand,
    ScratchSpec,
    StepKind,
    WeightSpec,
    int_pair,
    positive_int,
)
from .properties import parse_flag
from .window import (
    PaddingSpec,
    Window,
    col2im,
    im2col,
    matrix_view,
    padding_config,
    parse_padding_2d,
    resolve_window,
)

_FORWARD = frozenset({StepKind.FORWARD})
_GRADIENT = frozenset({StepKind.CALC_GRADIENT})
_DERIVATIVE = frozenset({StepKind.CALC_DERIVATIVE})


class Conv2D(Layer):
    """``y[n, f] = b[f] + sum_c W[f, c] (*) x[n, c]`` (cross-correlation) over NCHW input.

    ``x (N, C, H, W)``, ``W (filters, C, kh, kw)``, ``b (filters,)``, ``y (N, filters,
    OH, OW)``. The gradient reads the input, the derivative reads the weight.
    """

    type_name = "conv2d"
    gradient_reads = frozenset({Operand.INPUTS})
    derivative_reads = frozenset({Operand.WEIGHTS})

    def __init__(
        self,
        *,
        filters: int | str,
        kernel_size: int | tuple[int, int] | str,
        stride: int | tuple[int, int] | str = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, int] | str = 1,
        bias: bool | str = True,
        weight_initializer: str = "xavier_uniform",
        bias_initializer: str = "zeros",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.stride = int_pair(stride, "stride")
        self.padding: PaddingSpec = parse_padding_2d(padding)
        self.dilation = int_pair(dilation, "dilation")
        self.bias = parse_flag(bias, "bias")
        self.weight_initializer = check_initializer(weight_initializer, "weight_initializer")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer")

    def config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": padding_config(self.padding),
            "dilation": self.dilation,
            "bias": self.bias,
            "weight_initializer": self.weight_initializer,
            "bias_initializer": self.bias_initializer,
        }

    # -- geometry ------------------------------------------------------------------

    def window(self, height: int, width: int) -> Window:
        """The sliding window over an input map of ``height x width``."""
        return resolve_window(
            self.padding, height, width, self.kernel_size, self.stride, self.dilation
        )

    def check_input(self, shape: Shape) -> None:
        """Refuse inputs this convolution cannot take (Conv1D adds the height-1 rule)."""
        self.expect_rank(shape, 4, "(N, C, H, W)")

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = input_shapes[0]
        self.check_input(shape)
        batch, channels, height, width = shape
        window = self.window(height, width)
        if not window.fits():
            raise self.shape_error(
                f"input {format_shape(shape)} padded by {window.pads} (top, bottom, left, "
                f"right) is smaller than the kernel span {window.effective_kernel}"
            )
        out_h, out_w = window.output
        kh, kw = self.kernel_size
        weights = [
            WeightSpec("weight", (self.filters, channels, kh, kw), self.weight_initializer)
        ]
        if self.bias:
            weights.append(WeightSpec("bias", (self.filters,), self.bias_initializer))
        columns = (channels * kh * kw, out_h * out_w)
        return LayerSetup(
            output_shapes=[(batch, self.filters, out_h, out_w)],
            weights=weights,
            scratch=[
                ScratchSpec("im2col", columns, _FORWARD),
                ScratchSpec("im2col_gradient", columns, _GRADIENT),
                ScratchSpec("col2im", columns, _DERIVATIVE),
            ],
        )

    # -- steps -----------------------------------------------------------------------

    def _kernel_matrix(self, ctx: LayerContext) -> Any:
        weight = ctx.weights["weight"]
        return weight.reshape(weight.shape[0], -1)

    def forward(self, ctx: LayerContext) -> None:
        x, y = ctx.inputs[0], ctx.outputs[0]
        window = self.window(x.shape[2], x.shape[3])
        kernel = self._kernel_matrix(ctx)
        columns = ctx.scratch["im2col"]
        for n in range(x.shape[0]):
            im2col(x[n], window, columns)
            y[n] = np.matmul(kernel, columns).reshape(y.shape[1:])
        if self.bias:
            y += ctx.weights["bias"][:, None, None]

    def calc_gradient(self, ctx: LayerContext) -> None:
        x, dy = ctx.inputs[0], ctx.grad_outputs[0]
        window = self.window(x.shape[2], x.shape[3])
        columns = ctx.scratch["im2col_gradient"]
        grad = ctx.gradients["weight"]
        grad_matrix = matrix_view(grad, (grad.shape[0], columns.shape[0]))
        grad_matrix[...] = 0
        for n in range(x.shape[0]):
            im2col(x[n], window, columns)
            grad_matrix += np.matmul(dy[n].reshape(dy.shape[1], -1), columns.T)
        if "bias" in ctx.gradients:
            np.sum(dy, axis=(0, 2, 3), out=ctx.gradients["bias"])

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        window = self.window(dx.shape[2], dx.shape[3])
        kernel = self._kernel_matrix(ctx)
        columns = ctx.scratch["col2im"]
        for n in range(dx.shape[0]):
            np.matmul(kernel.T, dy[n].reshape(dy.shape[1], -1), out=columns)
            col2im(columns, window, dx[n])
