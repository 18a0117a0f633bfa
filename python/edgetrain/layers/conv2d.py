"""2-D convolution (NCHW) as im2col into declared scratch, then one GEMM per block of
samples.

The column matrix of a block of ``s`` samples (``C*kh*kw x s*OH*OW``) is the large
temporary of a convolution, so it is declared three times with disjoint lifetimes:
``im2col`` for the forward, ``im2col_gradient`` (recomputed from the input) for the
weight gradient and ``col2im`` for the derivative. Nothing of that size lives from the
forward to the backward; the planner can give all three the same bytes. ``s`` is the
smallest number of samples whose maps give the GEMM :data:`GEMM_COLUMNS` columns
(capped at the batch): one sample of a large map, several of a small one, whose GEMM
would otherwise be too narrow to be fast; one for a small weight matrix. See
``spec/layers/conv2d.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..initializers import check_initializer
from ..tensors import Shape, format_shape
from .base import (
    Array,
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

#: The GEMM width (columns, ``s * OH*OW``) a block of samples is chosen to reach. A
#: narrower GEMM is several times slower per FLOP (a 512-filter layer on a 2x2 map runs
#: at a tenth of the speed of one on a 32x32 map); 256 and 512 measured no faster and
#: only cost scratch (``docs/gemm.md``, convolution kernels).
GEMM_COLUMNS = 128

#: Weight matrices (``F x C*kh*kw``) smaller than this many elements keep one sample per
#: GEMM. A narrow GEMM is slow because it streams the weight matrix again for every few
#: columns; one of at most 16 KiB stays in the L1 cache, so blocks would only add scratch,
#: which on a small model is a large share of its arena.
BLOCKED_WEIGHTS = 4096


def samples_per_gemm(batch: int, out_map: int, weights: int) -> int:
    """The smallest number of samples whose ``out_map`` output cells reach
    :data:`GEMM_COLUMNS` columns, at least 1 and at most ``batch``; 1 when the weight
    matrix has fewer than :data:`BLOCKED_WEIGHTS` elements."""
    if weights < BLOCKED_WEIGHTS:
        return 1
    wanted = -(-GEMM_COLUMNS // max(out_map, 1))
    return max(1, min(batch, wanted))


def sample_blocks(batch: int, samples: int) -> list[tuple[int, int]]:
    """``(first, count)`` of consecutive blocks of ``samples`` samples; the last block
    holds the remainder when ``samples`` does not divide ``batch``."""
    return [(first, min(samples, batch - first)) for first in range(0, batch, samples)]


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
        samples = samples_per_gemm(batch, out_h * out_w, self.filters * channels * kh * kw)
        columns = (channels * kh * kw, samples * out_h * out_w)
        scratch = [
            ScratchSpec("im2col", columns, _FORWARD),
            ScratchSpec("im2col_gradient", columns, _GRADIENT),
            ScratchSpec("col2im", columns, _DERIVATIVE),
        ]
        if samples > 1:
            staged = (self.filters, samples * out_h * out_w)
            scratch += [
                ScratchSpec("stage", staged, _FORWARD),
                ScratchSpec("stage_gradient", staged, _GRADIENT),
                ScratchSpec("stage_derivative", staged, _DERIVATIVE),
            ]
        return LayerSetup(
            output_shapes=[(batch, self.filters, out_h, out_w)],
            weights=weights,
            scratch=scratch,
        )

    def samples_per_gemm(self, input_shape: Shape) -> int:
        """How many samples share one GEMM for this input (what ``setup`` sized the
        scratch for)."""
        batch, channels, height, width = input_shape
        out_h, out_w = self.window(height, width).output
        kh, kw = self.kernel_size
        return samples_per_gemm(batch, out_h * out_w, self.filters * channels * kh * kw)

    # -- steps -----------------------------------------------------------------------
    #
    # Samples go through the GEMM in blocks of ``s`` (the width of the declared column
    # scratch): the block's column matrices side by side, ``K x count*P``, sample ``n``
    # in columns ``n*P .. (n+1)*P``. The GEMM's other operand or its product is then
    # ``F x count*P``: a single sample's ``(F, OH, OW)`` is that matrix as it stands; for
    # several, the NCHW block is reordered to and from it through the ``stage`` scratch.

    def _kernel_matrix(self, ctx: LayerContext) -> Any:
        weight = ctx.weights["weight"]
        return weight.reshape(weight.shape[0], -1)

    @staticmethod
    def _block_columns(columns: Array, count: int, out_map: int) -> Array:
        """The first ``count`` samples' columns, viewed ``(K, count, P)``."""
        return matrix_view(columns[:, : count * out_map], (columns.shape[0], count, out_map))

    @staticmethod
    def _stage_in(block: Array, ctx: LayerContext, name: str) -> Array:
        """``block (count, F, OH, OW)`` as the ``F x count*P`` GEMM operand."""
        count, filters = block.shape[:2]
        if count == 1:
            return block.reshape(filters, -1)
        stage = ctx.scratch[name][:, : count * block.shape[2] * block.shape[3]]
        staged = matrix_view(stage, (filters, count, stage.shape[1] // count))
        staged[...] = block.reshape(count, filters, -1).transpose(1, 0, 2)
        return stage

    def forward(self, ctx: LayerContext) -> None:
        x, y = ctx.inputs[0], ctx.outputs[0]
        window = self.window(x.shape[2], x.shape[3])
        kernel = self._kernel_matrix(ctx)
        columns = ctx.scratch["im2col"]
        filters, out_map = y.shape[1], y.shape[2] * y.shape[3]
        samples = columns.shape[1] // out_map
        for first, count in sample_blocks(x.shape[0], samples):
            block = self._block_columns(columns, count, out_map)
            for n in range(count):
                im2col(x[first + n], window, block[:, n])
            if count == 1:
                np.matmul(kernel, columns[:, :out_map], out=matrix_view(y[first], (filters, out_map)))
            else:
                stage = ctx.scratch["stage"][:, : count * out_map]
                np.matmul(kernel, columns[:, : count * out_map], out=stage)
                staged = stage.reshape(filters, count, out_map).transpose(1, 0, 2)
                y[first : first + count] = staged.reshape(count, *y.shape[1:])
        if self.bias:
            y += ctx.weights["bias"][:, None, None]

    def calc_gradient(self, ctx: LayerContext) -> None:
        x, dy = ctx.inputs[0], ctx.grad_outputs[0]
        window = self.window(x.shape[2], x.shape[3])
        columns = ctx.scratch["im2col_gradient"]
        out_map = dy.shape[2] * dy.shape[3]
        samples = columns.shape[1] // out_map
        grad = ctx.gradients["weight"]
        grad_matrix = matrix_view(grad, (grad.shape[0], columns.shape[0]))
        grad_matrix[...] = 0
        for first, count in sample_blocks(x.shape[0], samples):
            block = self._block_columns(columns, count, out_map)
            for n in range(count):
                im2col(x[first + n], window, block[:, n])
            grads = self._stage_in(dy[first : first + count], ctx, "stage_gradient")
            grad_matrix += np.matmul(grads, columns[:, : count * out_map].T)
        if "bias" in ctx.gradients:
            np.sum(dy, axis=(0, 2, 3), out=ctx.gradients["bias"])

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        window = self.window(dx.shape[2], dx.shape[3])
        kernel = self._kernel_matrix(ctx)
        columns = ctx.scratch["col2im"]
        out_map = dy.shape[2] * dy.shape[3]
        samples = columns.shape[1] // out_map
        for first, count in sample_blocks(dx.shape[0], samples):
            grads = self._stage_in(dy[first : first + count], ctx, "stage_derivative")
            np.matmul(kernel.T, grads, out=columns[:, : count * out_map])
            block = self._block_columns(columns, count, out_map)
            for n in range(count):
                col2im(block[:, n], window, dx[first + n])
