"""2-D pooling over NCHW maps: max, average, global max and global average.

NNTrainer's semantics (``spec/layers/pooling.md``): ``stride`` defaults to 1 (not to the
pool size), padded cells never take part (max ignores them, average divides by the number
of real cells in the window), and global max shares the derivative equally among tied
maxima. Max pooling keeps the position of each window's maximum in an integer scratch
tensor, so its derivative needs neither the input nor the output; with ``keep_argmax``
False (set by ``compile(recompute=True)`` when the input and the output are kept for
other steps anyway, ``spec/recompute.md``) it keeps nothing and its derivative finds the
position again from the input and the output, with the same tie rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tensors import Shape, format_shape
from .base import Array, Layer, LayerContext, LayerSetup, Operand, ScratchSpec, StepKind, int_pair
from .window import (
    PaddingSpec,
    Window,
    matrix_view,
    pad_map,
    padding_config,
    parse_padding_2d,
    resolve_window,
    tap,
    unpad_map,
)

POOLING_TYPES = ("max", "average", "global_max", "global_average")
_FORWARD_AND_DERIVATIVE = frozenset({StepKind.FORWARD, StepKind.CALC_DERIVATIVE})


class Pooling2D(Layer):
    """``Pooling2D(pooling, pool_size=, stride=1, padding=0)`` on ``(N, C, H, W)``.

    ``max`` / ``average`` need ``pool_size``; ``global_max`` / ``global_average`` pool the
    whole map to ``(N, C, 1, 1)`` and take no pool size, stride or padding.
    """

    type_name = "pooling2d"

    def __init__(
        self,
        pooling: str,
        *,
        pool_size: int | tuple[int, int] | str | None = None,
        stride: int | tuple[int, int] | str = 1,
        padding: int | tuple[int, ...] | str = 0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.keep_argmax = True
        kind = str(pooling).strip().lower()
        if kind not in POOLING_TYPES:
            raise ConfigError(
                f"pooling must be one of {', '.join(POOLING_TYPES)}, got {pooling!r}",
                key="pooling",
            )
        self.pooling = kind
        self.stride = int_pair(stride, "stride")
        self.padding: PaddingSpec = parse_padding_2d(padding)
        self.pool_size: tuple[int, int] | None = None
        if self.is_global:
            for key, given in (("pool_size", pool_size is not None),
                               ("stride", self.stride != (1, 1)),
                               ("padding", self.padding not in ("valid", (0, 0, 0, 0)))):
                if given:
                    raise ConfigError(
                        f"{kind} pooling covers the whole map and takes no {key}", key=key
                    )
            return
        if pool_size is None:
            raise ConfigError(f"{kind} pooling needs pool_size", key="pool_size")
        self.pool_size = int_pair(pool_size, "pool_size")
        if not isinstance(self.padding, str):
            top, bottom, left, right = self.padding
            if max(top, bottom) >= self.pool_size[0] or max(left, right) >= self.pool_size[1]:
                raise ConfigError(
                    f"padding {padding_config(self.padding)} must be smaller than pool_size "
                    f"{self.pool_size} on every side (a window of padding alone has no value)",
                    key="padding",
                )

    @property
    def keep_argmax(self) -> bool:
        """Max pooling only: keep each window's winning position from the forward step
        (an int32 scratch of the output's shape; the derivative reads nothing else), or,
        when False, keep nothing and find it again in the derivative from the input and
        the output (which it then reads). Not a model property: the compiler sets it."""
        return self._keep_argmax

    @keep_argmax.setter
    def keep_argmax(self, keep: bool) -> None:
        self._keep_argmax = bool(keep)
        self.derivative_reads = (
            frozenset() if keep else frozenset({Operand.INPUTS, Operand.OUTPUTS})
        )

    @property
    def is_global(self) -> bool:
        return self.pooling.startswith("global_")

    def config(self) -> dict[str, Any]:
        if self.is_global:
            return {"pooling": self.pooling}
        return {
            "pooling": self.pooling,
            "pool_size": self.pool_size,
            "stride": self.stride,
            "padding": padding_config(self.padding),
        }

    def window(self, height: int, width: int) -> Window:
        """The pooling window over an input map of ``height x width``."""
        size = (height, width) if self.pool_size is None else self.pool_size
        return resolve_window(self.padding, height, width, size, self.stride)

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        shape = input_shapes[0]
        self.expect_rank(shape, 4, "(N, C, H, W)")
        batch, channels, height, width = shape
        window = self.window(height, width)
        if not window.fits():
            raise self.shape_error(
                f"input {format_shape(shape)} padded by {window.pads} (top, bottom, left, "
                f"right) is smaller than pool_size {window.kernel}"
            )
        output = (batch, channels, *window.output)
        scratch = []
        if self.pooling == "max" and self.keep_argmax:
            scratch.append(ScratchSpec("argmax", output, _FORWARD_AND_DERIVATIVE, "int32"))
        elif self.pooling == "global_max":
            scratch.append(ScratchSpec("max_mask", tuple(shape), _FORWARD_AND_DERIVATIVE, "uint8"))
        return LayerSetup(output_shapes=[output], scratch=scratch)

    # -- steps -------------------------------------------------------------------------

    def forward(self, ctx: LayerContext) -> None:
        x, y = ctx.inputs[0], ctx.outputs[0]
        if self.pooling == "max":
            _max_forward(x, self.window(*x.shape[2:]), y, ctx.scratch.get("argmax"))
        elif self.pooling == "average":
            _average_forward(x, self.window(*x.shape[2:]), y)
        elif self.pooling == "global_max":
            peak = np.max(x, axis=(2, 3), keepdims=True)
            np.equal(x, peak, out=ctx.scratch["max_mask"], casting="unsafe")
            y[...] = peak
        else:
            np.mean(x, axis=(2, 3), keepdims=True, out=y)

    def calc_derivative(self, ctx: LayerContext) -> None:
        dy, dx = ctx.grad_outputs[0], ctx.grad_inputs[0]
        if self.pooling == "max":
            argmax = ctx.scratch.get("argmax")
            if argmax is None:
                x, y = ctx.inputs[0], ctx.outputs[0]
                argmax = np.empty(y.shape, np.int32)
                _max_positions(x, self.window(*x.shape[2:]), y, argmax)
            _max_backward(dy, argmax, dx)
        elif self.pooling == "average":
            _average_backward(dy, self.window(*dx.shape[2:]), dx)
        elif self.pooling == "global_max":
            mask = ctx.scratch["max_mask"]
            ties = np.sum(mask, axis=(2, 3), keepdims=True, dtype=dx.dtype)
            np.multiply(mask, dy / ties, out=dx)
        else:
            dx[...] = dy / dx.dtype.type(dx.shape[2] * dx.shape[3])


def _max_forward(x: Array, window: Window, y: Array, argmax: Array | None) -> None:
    """``y`` = the largest real cell of every window; ``argmax`` (when given) = its flat
    position ``h * W + w`` in the input map (the first one in row-major order on ties)."""
    kw = window.kernel[1]
    padded = pad_map(x, window.pads, -np.inf)
    y[...] = tap(padded, window, 0, 0)
    if argmax is not None:
        argmax[...] = 0  # the winning tap i * kw + j for now
    for index in range(1, window.taps):
        candidate = tap(padded, window, index // kw, index % kw)
        larger = candidate > y  # strictly: an equal later tap does not win
        np.copyto(y, candidate, where=larger)
        if argmax is not None:
            np.copyto(argmax, index, where=larger)
    if argmax is not None:
        _tap_to_position(argmax, window, x.shape[3])


def _max_positions(x: Array, window: Window, y: Array, argmax: Array) -> None:
    """``argmax`` as ``_max_forward`` writes it, found again from the input ``x`` and the
    output ``y``: the first tap (row-major) equal to ``y``. The forward scan moves to a
    tap only when it is strictly larger, so the tap it ends on is the first one holding
    the final maximum; where no tap equals ``y`` (a NaN first tap, which the scan never
    leaves) both give tap 0."""
    kw = window.kernel[1]
    padded = pad_map(x, window.pads, -np.inf)
    found = tap(padded, window, 0, 0) == y
    argmax[...] = 0
    for index in range(1, window.taps):
        hit = tap(padded, window, index // kw, index % kw) == y
        hit &= ~found
        np.copyto(argmax, index, where=hit)
        found |= hit
    _tap_to_position(argmax, window, x.shape[3])


def _tap_to_position(argmax: Array, window: Window, width: int) -> None:
    """Turn winning tap numbers ``i * kw + j`` into flat input positions ``h * W + w``."""
    kw = window.kernel[1]
    (oh, ow), (sh, sw) = window.output, window.stride
    top, _, left, _ = window.pads
    rows = np.arange(oh)[:, None] * sh - top + argmax // kw
    columns = np.arange(ow)[None, :] * sw - left + argmax % kw
    argmax[...] = rows * width + columns


def _max_backward(dy: Array, argmax: Array, dx: Array) -> None:
    """Route each output's derivative to the input cell that was its maximum."""
    n, c, height, width = dx.shape
    maps = matrix_view(dx, (n * c, height * width))
    maps[...] = 0
    which_map = np.arange(n * c)[:, None]
    np.add.at(maps, (which_map, argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))


def _cell_counts(window: Window, dtype: np.dtype[Any]) -> Array:
    """``(OH, OW)``: how many real (unpadded) input cells each window covers."""

    def per_axis(size: int, kernel: int, stride: int, before: int, out: int) -> Array:
        start = np.arange(out) * stride - before
        counts: Array = np.minimum(start + kernel, size) - np.maximum(start, 0)
        return counts

    top, _, left, _ = window.pads
    (kh, kw), (oh, ow) = window.kernel, window.output
    rows = per_axis(window.height, kh, window.stride[0], top, oh)
    columns = per_axis(window.width, kw, window.stride[1], left, ow)
    counts: Array = np.outer(rows, columns).astype(dtype)
    return counts


def _average_forward(x: Array, window: Window, y: Array) -> None:
    """``y`` = sum of the real cells of every window / their number."""
    padded = pad_map(x, window.pads)
    y[...] = 0
    for index in range(window.taps):
        y += tap(padded, window, index // window.kernel[1], index % window.kernel[1])
    y /= _cell_counts(window, y.dtype)


def _average_backward(dy: Array, window: Window, dx: Array) -> None:
    """Spread each output's derivative evenly over the real cells of its window."""
    share = dy / _cell_counts(window, dx.dtype)
    padded = np.zeros((*dx.shape[:2], *window.padded), dtype=dx.dtype)
    for index in range(window.taps):
        tap(padded, window, index // window.kernel[1], index % window.kernel[1])[...] += share
    dx[...] = unpad_map(padded, window)
