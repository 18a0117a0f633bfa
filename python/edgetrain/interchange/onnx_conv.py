"""ONNX convolution and pooling as edgetrain's ``conv2d`` and ``pooling2d``.

2-D ops map directly. 1-D ops (PyTorch's ``Conv1d``, ``MaxPool1d``, ``AvgPool1d`` on
``(N, C, L)``) become the 2-D layer with a ``1 x k`` window on ``(N, C, 1, L)`` -- the way
edgetrain's own ``conv1d`` works -- between two reshapes; a 1-D op directly after
another reads the other's ``(C, 1, L)`` map instead of a reshape of its reshape. Padding: ONNX ``pads`` list every
axis's start, then every axis's end (``[top, left, bottom, right]`` in 2-D, ``[left,
right]`` in 1-D); edgetrain's are ``(top, bottom, left, right)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from onnx import NodeProto

from ..layers import Conv2D, Pooling2D, Reshape
from ..layers.base import Layer
from ..layers.window import same_padding
from ..tensors import format_shape
from .onnx_context import (
    Array,
    Context,
    Converter,
    Refused,
    Tensor,
    as_vector,
    attribute,
    extra_outputs_read,
    only_attributes,
)

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def _spatial_input(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if len(x.shape) not in (2, 3):
        raise Refused(
            f"needs a (batch, C, L) or (batch, C, H, W) input, got (batch, {format_shape(x.shape)[1:-1]}): "
            "only 1-D and 2-D are imported"
        )
    return x


def _ints(node: NodeProto, name: str, default: int, spatial: int) -> list[int]:
    values = [int(v) for v in attribute(node, name, [default] * spatial)]
    if len(values) != spatial:
        raise Refused(f"{name}={values} does not have {spatial} value(s) for a {spatial}-D input")
    return values


def _as_2d(values: Sequence[int], spatial: int, fill: int) -> Pair:
    """A 1-D window value as the width of a ``1 x k`` window."""
    return (fill, values[0]) if spatial == 1 else (values[0], values[1])


def _pads(node: NodeProto, spatial: int, size: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
    """edgetrain's ``(top, bottom, left, right)`` from ONNX ``pads`` or ``auto_pad`` (the
    ``SAME`` modes computed from the known input size)."""
    auto = attribute(node, "auto_pad", "NOTSET")
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        amounts = [same_padding(size[i], kernel[i], stride[i], dilation[i]) for i in range(2)]
        if auto == "SAME_LOWER":  # the odd cell goes before, not after
            amounts = [(after, before) for before, after in amounts]
        return (amounts[0][0], amounts[0][1], amounts[1][0], amounts[1][1])
    if auto != "NOTSET":
        raise Refused(f"auto_pad={auto!r} is not supported")
    given = _ints(node, "pads", 0, 2 * spatial)
    if spatial == 1:
        return (0, 0, given[0], given[1])
    top, left, bottom, right = given
    return (top, bottom, left, right)


def _map(ctx: Context, node: NodeProto, x: Tensor, hint: str | None) -> Tensor:
    """``x`` as a ``(batch, C, H, W)`` map: a 1-D ``(C, L)`` tensor seen as ``(C, 1, L)``."""
    if len(x.shape) == 3:
        return x
    known = ctx.expanded.get(x)
    if known is not None:
        return known
    return ctx.add(node, Reshape(target_shape=(x.shape[0], 1, x.shape[1])), [x], hint=hint, suffix=".to_2d")


def _place(ctx: Context, node: NodeProto, layer: Layer, x: Tensor, weights: dict[str, Array] | None = None,
           *, hint: str | None = None, bias_from_add: bool = False) -> Tensor:
    """Add a 2-D layer reading ``x``; for a 1-D input, between the two reshapes."""
    out = ctx.add(node, layer, [_map(ctx, node, x, hint)], weights, hint=hint, bias_from_add=bias_from_add)
    if len(x.shape) == 3:
        return out
    channels, _, length = out.shape
    flat = ctx.add(node, Reshape(target_shape=(channels, length)), [out], hint=hint, suffix=".to_1d")
    ctx.expanded[flat] = out
    return flat


def conv(ctx: Context, node: NodeProto) -> Tensor:
    x = _spatial_input(ctx, node)
    spatial = len(x.shape) - 1
    if int(attribute(node, "group", 1)) != 1:
        raise Refused(f"group={attribute(node, 'group')} is not supported: edgetrain's conv2d has no groups")
    w = ctx.weight(node, 1, "W")
    if w.ndim != spatial + 2:
        raise Refused(f"W of shape {format_shape(w.shape)} is not a {spatial}-D kernel for this input")
    if list(attribute(node, "kernel_shape", w.shape[2:])) != list(w.shape[2:]):
        raise Refused(f"kernel_shape={attribute(node, 'kernel_shape')} disagrees with W {format_shape(w.shape)}")
    kernel = _as_2d(w.shape[2:], spatial, 1)
    stride = _as_2d(_ints(node, "strides", 1, spatial), spatial, 1)
    dilation = _as_2d(_ints(node, "dilations", 1, spatial), spatial, 1)
    size = _as_2d(x.shape[1:], spatial, 1)
    pads = _pads(node, spatial, size, kernel, stride, dilation)
    weights = {"weight": w.reshape(w.shape[0], w.shape[1], *kernel)}
    b = ctx.constant(node, 2, "B")
    if b is not None:
        weights["bias"] = as_vector(b, w.shape[0], "B")
    layer = Conv2D(
        filters=w.shape[0], kernel_size=kernel, stride=stride, padding=pads, dilation=dilation, bias=b is not None
    )
    return _place(ctx, node, layer, x, weights, hint=node.input[1], bias_from_add=True)


def pool(kind: str) -> Converter:
    """``MaxPool`` (kind ``max``) or ``AveragePool`` (``average``)."""

    def convert(ctx: Context, node: NodeProto) -> Tensor:
        x = _spatial_input(ctx, node)
        spatial = len(x.shape) - 1
        if extra_outputs_read(ctx, node):
            raise Refused("its Indices output is read; edgetrain's max pooling keeps them to itself")
        only_attributes(node, {"storage_order": 0})
        kernel = _as_2d(_ints(node, "kernel_shape", 0, spatial), spatial, 1)
        stride = _as_2d(_ints(node, "strides", 1, spatial), spatial, 1)
        dilation = _ints(node, "dilations", 1, spatial)
        if any(d != 1 for d in dilation):
            raise Refused(f"dilations={dilation} is not supported for pooling")
        size = _as_2d(x.shape[1:], spatial, 1)
        pads = _pads(node, spatial, size, kernel, stride, (1, 1))
        if kind == "average" and attribute(node, "count_include_pad", 0) and any(pads):
            raise Refused(
                "count_include_pad=1 with padding is not supported: edgetrain's average "
                "pooling divides by the real cells of each window (count_include_pad=0)"
            )
        if attribute(node, "ceil_mode", 0) and _ceil_changes_size(size, kernel, stride, pads):
            raise Refused("ceil_mode=1 is not supported here: it adds a partial window edgetrain drops")
        return _place(ctx, node, Pooling2D(kind, pool_size=kernel, stride=stride, padding=pads), x)

    return convert


def _ceil_changes_size(size: Pair, kernel: Pair, stride: Pair, pads: Pads) -> bool:
    """Whether ``ceil_mode=1`` adds a last, partial window on some axis (ONNX and PyTorch
    start that window only inside the input or its leading padding)."""
    padded = (size[0] + pads[0] + pads[1], size[1] + pads[2] + pads[3])
    for axis in range(2):
        span = padded[axis] - kernel[axis]
        if span % stride[axis]:
            start = (span // stride[axis] + 1) * stride[axis]
            if start < size[axis] + pads[2 * axis]:
                return True
    return False


def global_pool(kind: str) -> Converter:
    """``GlobalAveragePool`` / ``GlobalMaxPool`` over every spatial cell."""

    def convert(ctx: Context, node: NodeProto) -> Tensor:
        x = _spatial_input(ctx, node)
        return _place(ctx, node, Pooling2D(kind), x)

    return convert
