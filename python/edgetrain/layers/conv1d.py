"""1-D convolution over the width of ``(N, C, 1, W)`` input, as NNTrainer does it: a
:class:`Conv2D` with a ``1 x k`` kernel, so it shares its kernels, scratch and spec."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..tensors import Shape, format_shape
from .base import positive_int
from .conv2d import Conv2D
from .window import Window, resolve_window, same_padding


def parse_padding_1d(value: Any, key: str = "padding") -> str | tuple[int, int]:
    """``"same"``, ``"valid"``, ``"causal"``, ``p`` (both sides) or ``(left, right)``, also as
    a comma-separated string."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("same", "valid", "causal"):
            return word
        value = [v for v in word.replace(" ", "").split(",") if v]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        amounts = [int(v) for v in items]
    except (TypeError, ValueError):
        amounts = []
    if len(amounts) not in (1, 2) or min(amounts) < 0:
        raise ConfigError(
            f"{key} must be 'same', 'valid', 'causal' or 1 or 2 integers >= 0 (left,right), "
            f"got {value!r}",
            key=key,
        )
    return (amounts[0], amounts[-1])


class Conv1D(Conv2D):
    """``Conv1D(filters, kernel_size, stride, padding, dilation)`` on ``(N, C, 1, W)``;
    the weight is ``(filters, C, 1, kernel_size)``. ``padding="causal"`` puts all of the
    ``same`` padding on the left, so output ``t`` sees inputs up to ``t * stride``."""

    type_name = "conv1d"

    def __init__(
        self,
        *,
        filters: int | str,
        kernel_size: int | str,
        stride: int | str = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | str = 1,
        **rest: Any,
    ) -> None:
        super().__init__(
            filters=filters,
            kernel_size=(1, positive_int(kernel_size, "kernel_size")),
            stride=(1, positive_int(stride, "stride")),
            dilation=(1, positive_int(dilation, "dilation")),
            **rest,
        )
        self.padding_1d = parse_padding_1d(padding)

    def config(self) -> dict[str, Any]:
        config = super().config()
        padding = self.padding_1d
        config.update(
            kernel_size=self.kernel_size[1],
            stride=self.stride[1],
            dilation=self.dilation[1],
            padding=padding if isinstance(padding, str) or padding[0] != padding[1] else padding[0],
        )
        return config

    def window(self, height: int, width: int) -> Window:
        k, s, d = self.kernel_size[1], self.stride[1], self.dilation[1]
        padding = self.padding_1d
        if padding == "valid":
            left, right = 0, 0
        elif padding == "same":
            left, right = same_padding(width, k, s, d)
        elif padding == "causal":
            left, right = sum(same_padding(width, k, s, d)), 0
        else:
            assert not isinstance(padding, str)
            left, right = padding
        return resolve_window(
            (0, 0, left, right), height, width, self.kernel_size, self.stride, self.dilation
        )

    def check_input(self, shape: Shape) -> None:
        self.expect_rank(shape, 4, "(N, C, 1, W)")
        if shape[2] != 1:
            raise self.shape_error(f"expects an input of height 1, got {format_shape(shape)}")
