"""Sliding-window geometry shared by convolution and pooling: padding specs, output sizes
and the im2col / col2im rearrangements.

Padding is kept as the user wrote it (``"same"``, ``"valid"`` or explicit amounts) and
resolved against the input size at ``setup``, because NNTrainer's ``same`` depends on the
input: the total padding of one axis is ``max((ceil(in / stride) - 1) * stride +
(kernel - 1) * dilation + 1 - in, 0)``, with ``total // 2`` before and the rest after (so
an odd total puts the extra cell at the bottom / right, as TensorFlow does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from .base import Array

#: explicit padding as (top, bottom, left, right)
Pads = tuple[int, int, int, int]
#: a padding spec: "same", "valid" or explicit amounts
PaddingSpec = str | Pads


def parse_padding_2d(value: Any, key: str = "padding") -> PaddingSpec:
    """Read a 2-D padding property: ``"same"``, ``"valid"``, ``p`` (every side), ``(ph, pw)``
    (top and bottom ``ph``, left and right ``pw``) or ``(top, bottom, left, right)``, each
    also as NNTrainer's comma-separated string (``"1,1"``, ``"0,1,0,1"``)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("same", "valid"):
            return word
        value = [v for v in word.replace(" ", "").split(",") if v]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        amounts = [int(v) for v in items]
    except (TypeError, ValueError):
        amounts = []
    if len(amounts) not in (1, 2, 4) or min(amounts) < 0 or any(
        isinstance(v, float) and v != int(v) for v in items
    ):
        raise ConfigError(
            f"{key} must be 'same', 'valid' or 1, 2 or 4 integers >= 0 "
            f"(top,bottom,left,right), got {value!r}",
            key=key,
        )
    if len(amounts) == 1:
        return (amounts[0],) * 4
    if len(amounts) == 2:
        return (amounts[0], amounts[0], amounts[1], amounts[1])
    return (amounts[0], amounts[1], amounts[2], amounts[3])


def padding_config(spec: PaddingSpec) -> str | int | tuple[int, ...]:
    """The shortest form of a padding spec that :func:`parse_padding_2d` reads back."""
    if isinstance(spec, str):
        return spec
    top, bottom, left, right = spec
    if top == bottom == left == right:
        return top
    if top == bottom and left == right:
        return (top, left)
    return spec


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of one axis so that ``out = ceil(size / stride)``."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Window:
    """One sliding window over an (H, W) map: kernel taps, stride, dilation, padding and
    the resulting output size."""

    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """The span of the kernel on the input, dilation included."""
        return (
            (self.kernel[0] - 1) * self.dilation[0] + 1,
            (self.kernel[1] - 1) * self.dilation[1] + 1,
        )

    @property
    def padded(self) -> tuple[int, int]:
        top, bottom, left, right = self.pads
        return self.height + top + bottom, self.width + left + right

    def fits(self) -> bool:
        """Whether at least one window position fits in the padded input."""
        (ph, pw), (kh, kw) = self.padded, self.effective_kernel
        return ph >= kh and pw >= kw

    @property
    def output(self) -> tuple[int, int]:
        """Output size: ``(padded - effective_kernel) // stride + 1`` per axis (a last
        partial window is dropped)."""
        (ph, pw), (kh, kw) = self.padded, self.effective_kernel
        return (ph - kh) // self.stride[0] + 1, (pw - kw) // self.stride[1] + 1

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]


def resolve_window(
    spec: PaddingSpec,
    height: int,
    width: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> Window:
    """The window geometry for an input map of ``height x width``."""
    if spec == "valid":
        pads: Pads = (0, 0, 0, 0)
    elif spec == "same":
        pads = (
            *same_padding(height, kernel[0], stride[0], dilation[0]),
            *same_padding(width, kernel[1], stride[1], dilation[1]),
        )
    else:
        assert not isinstance(spec, str)
        pads = spec
    return Window(height, width, kernel, stride, dilation, pads)


def matrix_view(array: Array, shape: tuple[int, ...]) -> Array:
    """``array`` seen with another shape *without copying*, so that writes reach it. The
    context arrays are contiguous, which makes this always possible."""
    view = array.reshape(shape)
    if not np.may_share_memory(view, array):
        raise ValueError(f"array of shape {array.shape} cannot be viewed as {shape} in place")
    return view


def pad_map(x: Array, pads: Pads, fill: float = 0.0) -> Array:
    """``x (..., H, W)`` with ``pads`` cells of ``fill`` around its last two axes."""
    top, bottom, left, right = pads
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    padded: Array = np.pad(x, widths, constant_values=fill)
    return padded


def window_taps(padded: Array, window: Window) -> Array:
    """Every window of a padded map ``(..., Hp, Wp)`` as a strided view
    ``(..., OH, OW, kh, kw)``: element ``[.., oh, ow, i, j]`` is
    ``padded[.., oh * sh + i * dh, ow * sw + j * dw]``."""
    eh, ew = window.effective_kernel
    views = sliding_window_view(padded, (eh, ew), axis=(-2, -1))
    (sh, sw), (dh, dw) = window.stride, window.dilation
    oh, ow = window.output
    taps: Array = views[..., ::sh, ::sw, ::dh, ::dw][..., :oh, :ow, :, :]
    return taps


def tap(padded: Array, window: Window, i: int, j: int) -> Array:
    """Kernel tap ``(i, j)`` of every window of a padded map ``(..., Hp, Wp)``, as a strided
    view ``(..., OH, OW)``: element ``[.., oh, ow]`` is ``padded[.., oh * sh + i * dh,
    ow * sw + j * dw]``. Writing through it reaches ``padded``."""
    (sh, sw), (dh, dw) = window.stride, window.dilation
    oh, ow = window.output
    rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
    columns = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
    return padded[..., rows, columns]


def im2col(x: Array, window: Window, out: Array) -> None:
    """Write the column matrix of one sample ``x (C, H, W)`` into ``out (C*kh*kw, OH*OW)``:
    row ``(c, i, j)`` (the weight's ``(in, kh, kw)`` order), column ``(oh, ow)``; padded
    cells read as zero."""
    channels = x.shape[0]
    (kh, kw), (oh, ow) = window.kernel, window.output
    taps = window_taps(pad_map(x, window.pads), window)  # (C, OH, OW, kh, kw)
    matrix_view(out, (channels, kh, kw, oh, ow))[...] = taps.transpose(0, 3, 4, 1, 2)


def col2im(cols: Array, window: Window, out: Array) -> None:
    """The adjoint of :func:`im2col`: add every column entry back onto the input cell it
    was read from, writing ``out (C, H, W)``; entries read from padding are dropped."""
    channels = out.shape[0]
    (kh, kw), (oh, ow) = window.kernel, window.output
    padded = np.zeros((channels, *window.padded), dtype=out.dtype)
    taps = cols.reshape(channels, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            tap(padded, window, i, j)[...] += taps[:, i, j]
    out[...] = unpad_map(padded, window)


def unpad_map(padded: Array, window: Window) -> Array:
    """The input-sized centre of a padded map ``(..., Hp, Wp)`` (a view)."""
    top, _, left, _ = window.pads
    centre: Array = padded[..., top : top + window.height, left : left + window.width]
    return centre
