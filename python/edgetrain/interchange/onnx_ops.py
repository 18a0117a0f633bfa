"""One converter per ONNX op: from a node (and the values it reads) to an edgetrain layer
with its weights in edgetrain's layouts.

Layouts (``spec/interchange.md``): a ``Gemm`` ``B`` is ``(out, in)`` when ``transB=1`` and
edgetrain's fully-connected weight is ``(in, out)``; a ``Conv`` ``W`` is ``(out, in, kh, kw)``
like edgetrain's; batch-norm ``scale, B, mean, var`` become ``gamma, beta, moving_mean,
moving_variance``. ONNX pads are ``[top, left, bottom, right]`` for 2-D, edgetrain's
``(top, bottom, left, right)``. What has no exact edgetrain equivalent is refused, naming
the node and its op, never approximated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from onnx import NodeProto, TensorProto, helper

from ..layers import (
    Activation,
    Addition,
    BatchNormalization,
    Concat,
    Conv2D,
    Dropout,
    Flatten,
    FullyConnected,
    Input,
    LayerNormalization,
    Pooling2D,
    Reshape,
)
from ..layers.base import Layer
from ..layers.window import same_padding
from ..tensors import Shape, format_shape
from .onnx_fold import BATCH, has_batch

Array = NDArray[Any]


class Refused(ValueError):
    """A node edgetrain cannot import; the importer adds the file, node and op."""


@dataclass(frozen=True)
class Tensor:
    """A value computed by layer ``layer`` at run time, of ``(batch, *shape)``."""

    layer: str
    shape: Shape


@dataclass
class ImportedLayer:
    """A layer made from one or more nodes, with its weights by weight name."""

    layer: Layer
    weights: dict[str, Array]
    output: Tensor
    #: made from a MatMul/Gemm/Conv without bias: a following Add of a constant may become it
    bias_from_add: bool = False
    nodes: list[str] = field(default_factory=list)


class Context:
    """What a converter sees: the values by ONNX name, and how to add a layer."""

    def __init__(self, fixed_batch: int | None) -> None:
        self.values: dict[str, Tensor | Array] = {}
        self.layers: list[ImportedLayer] = []
        #: how many nodes (and graph outputs) read each value
        self.readers: dict[str, int] = {}
        self.fixed_batch = fixed_batch
        #: the initializer a folded constant was computed from (a transposed weight)
        self.origins: dict[str, str] = {}
        self.initializers: set[str] = set()
        self._names: set[str] = set()

    # -- values ------------------------------------------------------------------------

    def tensor(self, node: NodeProto, index: int) -> Tensor:
        value = self.values[node.input[index]]
        if not isinstance(value, Tensor):
            raise Refused(f"input {index} ('{node.input[index]}') must be computed from the model's inputs, not a constant")
        return value

    def constant(self, node: NodeProto, index: int, what: str) -> Array | None:
        """Input ``index`` as a constant, ``None`` when omitted; a run-time value is refused."""
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self.values[node.input[index]]
        if isinstance(value, Tensor):
            raise Refused(f"{what} ('{node.input[index]}') must be a constant (an initializer), not computed at run time")
        return value

    def weight(self, node: NodeProto, index: int, what: str) -> Array:
        value = self.constant(node, index, what)
        if value is None:
            raise Refused(f"needs {what} (input {index})")
        if not np.issubdtype(value.dtype, np.floating):
            raise Refused(f"{what} ('{node.input[index]}') has dtype {value.dtype}, not float")
        return value.astype(np.float32)

    # -- layers ------------------------------------------------------------------------

    def layer_name(self, node: NodeProto, hint: str | None) -> str:
        """A unique layer name: the name of the initializer behind the weight ``hint``
        without ``.weight`` (PyTorch's module path), else the node's name, else the op
        and the layer's index."""
        source = self.origins.get(hint, hint) if hint else None
        weight_name = source if source in self.initializers else None
        for candidate in (weight_name, node.name):
            if candidate:
                cleaned = _clean_name(candidate)
                if cleaned:
                    break
        else:
            cleaned = f"{node.op_type.lower()}{len(self.layers)}"
        name = cleaned
        suffix = 1
        while name in self._names:
            suffix += 1
            name = f"{cleaned}_{suffix}"
        self._names.add(name)
        return name

    def add(
        self,
        node: NodeProto,
        layer: Layer,
        inputs: Sequence[Tensor],
        weights: dict[str, Array] | None = None,
        *,
        hint: str | None = None,
        bias_from_add: bool = False,
    ) -> Tensor:
        """Place ``layer`` reading ``inputs``; its output shape and weight shapes come from
        its own ``setup`` (so a weight that does not fit is refused here)."""
        layer.name = self.layer_name(node, hint)
        weights = weights or {}
        if isinstance(layer, Input):  # fed by the data, not by a layer
            setup = layer.setup([(1, *layer.shape)])
        else:
            layer.input_layers = [t.layer for t in inputs]
            setup = layer.setup([(1, *t.shape) for t in inputs])
        for spec in setup.weights:
            value = weights.get(spec.name)
            if value is None or value.shape != spec.shape:
                have = "none" if value is None else format_shape(value.shape)
                raise Refused(f"weight '{spec.name}' must have shape {format_shape(spec.shape)}, got {have}")
        output = Tensor(layer.name, tuple(setup.output_shapes[0][1:]))
        self.layers.append(ImportedLayer(layer, weights, output, bias_from_add, [node.name]))
        return output

    def producer(self, tensor: Tensor) -> ImportedLayer:
        return next(item for item in self.layers if item.layer.name == tensor.layer)


def _clean_name(text: str) -> str:
    """A layer name from an ONNX name: module paths keep their dots, other separators
    become ``_`` (edgetrain names have no spaces or ``:,()[]/``)."""
    if text.startswith("onnx::"):
        return ""
    if ":" in text:  # edgetrain's own "<layer>:<weight>" (an exported edgetrain model)
        text = text.rsplit(":", 1)[0]
    text = text.removesuffix(".weight")
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in text.strip("/"))
    return cleaned.strip("_")


def attribute(node: NodeProto, name: str, default: Any = None) -> Any:
    for item in node.attribute:
        if item.name == name:
            value = helper.get_attribute_value(item)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _only_attributes(node: NodeProto, allowed: dict[str, Any]) -> None:
    """Refuse any attribute whose value is not the one edgetrain computes."""
    for name, expected in allowed.items():
        value = attribute(node, name)
        if value is not None and value != expected:
            raise Refused(f"{name}={value!r} is not supported (only {expected!r})")


Converter = Callable[[Context, NodeProto], "Tensor | Array"]


# -- dense -----------------------------------------------------------------------------------


def _gemm(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if attribute(node, "transA", 0):
        raise Refused("transA=1 is not supported: the input must be (batch, features)")
    if len(x.shape) != 1:
        raise Refused(f"Gemm needs a (batch, features) input, got (batch, {format_shape(x.shape)[1:-1]})")
    b = ctx.weight(node, 1, "B")
    if b.ndim != 2:
        raise Refused(f"B must be a matrix, got shape {format_shape(b.shape)}")
    weight = (b.T if attribute(node, "transB", 0) else b) * np.float32(attribute(node, "alpha", 1.0))
    weights = {"weight": np.ascontiguousarray(weight, dtype=np.float32)}
    unit = weight.shape[1]
    c = ctx.constant(node, 2, "C")
    if c is not None:
        weights["bias"] = _as_vector(c, unit, "C") * np.float32(attribute(node, "beta", 1.0))
    layer = FullyConnected(unit=unit, bias=c is not None)
    return ctx.add(node, layer, [x], weights, hint=node.input[1], bias_from_add=True)


def _matmul(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    weight = ctx.weight(node, 1, "the second operand")
    if weight.ndim != 2:
        raise Refused(
            f"MatMul is imported as a fully-connected layer: the second operand must be a "
            f"constant matrix, got shape {format_shape(weight.shape)}"
        )
    layer = FullyConnected(unit=weight.shape[1], bias=False)
    return ctx.add(node, layer, [x], {"weight": weight}, hint=node.input[1], bias_from_add=True)


def _as_vector(value: Array, size: int, what: str) -> Array:
    """A bias given as ``(size,)``, ``(1, size)``, a scalar or ``(1,)``, as ``(size,)``."""
    if value.size == 1:
        return np.full(size, value.ravel()[0], dtype=np.float32)
    if value.size != size or any(d != 1 for d in value.shape[:-1]):
        raise Refused(f"{what} of shape {format_shape(value.shape)} is not a bias of {size} values")
    return value.reshape(size).astype(np.float32)


# -- element-wise and merges -------------------------------------------------------------------


def _add(ctx: Context, node: NodeProto) -> Tensor:
    first, second = (ctx.values[name] for name in node.input[:2])
    if isinstance(first, Tensor) and isinstance(second, Tensor):
        if first.shape != second.shape:
            raise Refused(
                f"adds (batch, {format_shape(first.shape)[1:-1]}) and (batch, "
                f"{format_shape(second.shape)[1:-1]}): edgetrain's addition takes one shape (no broadcasting)"
            )
        return ctx.add(node, Addition(), [first, second])
    which = 0 if isinstance(first, Tensor) else 1
    tensor, constant = (first, second) if which == 0 else (second, first)
    assert isinstance(tensor, Tensor) and not isinstance(constant, Tensor)
    return _bias_add(ctx, node, node.input[which], tensor, constant)


def _bias_add(ctx: Context, node: NodeProto, name: str, tensor: Tensor, constant: Array) -> Tensor:
    """``x + b`` after a MatMul/Gemm/Conv whose output (ONNX value ``name``) nothing else
    reads: ``b`` becomes (or adds to) that layer's bias."""
    made = ctx.producer(tensor)
    layer = made.layer
    if not made.bias_from_add or made.output != tensor or ctx.readers.get(name, 0) != 1:
        raise Refused(
            "adds a constant to a value that is not the output of a MatMul, Gemm or Conv "
            "read only by this Add (edgetrain has no layer adding a constant)"
        )
    if isinstance(layer, Conv2D):
        channels = layer.filters
        if constant.size != 1 and (constant.ndim < 3 or constant.shape[-2:] != (1, 1)):
            raise Refused(f"the constant of shape {format_shape(constant.shape)} is not a per-channel bias")
        bias = _as_vector(constant.reshape(-1), channels, "the constant")
    else:
        assert isinstance(layer, FullyConnected)
        bias = _as_vector(constant, layer.unit, "the constant")
    if layer.bias:
        made.weights["bias"] = made.weights["bias"] + bias
    else:
        layer.bias = True
        made.weights["bias"] = bias
    made.nodes.append(node.name)
    return tensor


def _sum(ctx: Context, node: NodeProto) -> Tensor:
    inputs = [ctx.tensor(node, i) for i in range(len(node.input))]
    if len(inputs) == 1:
        return inputs[0]
    if len({t.shape for t in inputs}) != 1:
        raise Refused("sums tensors of different shapes (edgetrain's addition does not broadcast)")
    return ctx.add(node, Addition(), inputs)


def _concat(ctx: Context, node: NodeProto) -> Tensor:
    inputs = [ctx.tensor(node, i) for i in range(len(node.input))]
    rank = len(inputs[0].shape) + 1
    axis = int(attribute(node, "axis", 1))
    axis = axis + rank if axis < 0 else axis
    if not 0 < axis < rank:
        raise Refused(f"concatenates along axis {attribute(node, 'axis')} of a rank-{rank} tensor: only non-batch axes")
    if len(inputs) == 1:
        return inputs[0]
    return ctx.add(node, Concat(axis=axis), inputs)


def _activation(kind: str) -> Converter:
    def convert(ctx: Context, node: NodeProto) -> Tensor:
        return ctx.add(node, Activation(kind), [ctx.tensor(node, 0)])

    return convert


def _leaky_relu(ctx: Context, node: NodeProto) -> Tensor:
    from ..layers.activation import LEAKY_RELU_SLOPE

    alpha = float(attribute(node, "alpha", 0.01))
    if not math.isclose(alpha, LEAKY_RELU_SLOPE, rel_tol=1e-6):
        raise Refused(f"alpha={alpha} is not supported: edgetrain's leaky_relu has slope {LEAKY_RELU_SLOPE}")
    return ctx.add(node, Activation("leaky_relu"), [ctx.tensor(node, 0)])


def _softmax(ctx: Context, node: NodeProto, opset: int) -> Tensor:
    """Softmax over the trailing block of axes it normalises: the last axis as is; a
    wider block (opset < 13 normalises everything from ``axis`` on; from 13 one axis,
    which is a block when the axes after it have size 1) is reshaped to one axis, put
    through softmax and reshaped back."""
    x = ctx.tensor(node, 0)
    rank = len(x.shape) + 1
    axis = int(attribute(node, "axis", -1 if opset >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if not 0 < axis < rank:
        raise Refused(f"softmax over axis {attribute(node, 'axis')} of a rank-{rank} tensor: not over the batch")
    if axis == rank - 1:
        return ctx.add(node, Activation("softmax"), [x])
    if opset >= 13 and math.prod(x.shape[axis:]) != 1:
        raise Refused(
            f"softmax over axis {axis} of (batch, {format_shape(x.shape)[1:-1]}): edgetrain's softmax "
            "is over the last axis (or a trailing block of axes)"
        )
    block = (*x.shape[: axis - 1], math.prod(x.shape[axis - 1 :]))
    rows = ctx.add(node, Flatten() if len(block) == 1 else Reshape(target_shape=block), [x])
    normalised = ctx.add(node, Activation("softmax"), [rows])
    return ctx.add(node, Reshape(target_shape=x.shape), [normalised])


def _dropout(ctx: Context, node: NodeProto) -> Tensor:
    if _extra_outputs_read(ctx, node):
        raise Refused("its mask output is read; edgetrain's dropout keeps the mask to itself")
    ratio = ctx.constant(node, 1, "ratio")
    rate = float(attribute(node, "ratio", 0.5) if ratio is None else ratio.ravel()[0])
    training = ctx.constant(node, 2, "training_mode")
    if training is not None and bool(training.ravel()[0]):
        raise Refused("training_mode=true: an inference model is expected (dropout as identity)")
    return ctx.add(node, Dropout(dropout_rate=rate), [ctx.tensor(node, 0)])


# -- convolution and pooling -------------------------------------------------------------------


def _window_pads(
    node: NodeProto, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    """edgetrain's ``(top, bottom, left, right)`` from ONNX ``pads`` or ``auto_pad``."""
    auto = attribute(node, "auto_pad", "NOTSET")
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [same_padding(size[i], kernel[i], stride[i], dilation[i]) for i in range(2)]
        if auto == "SAME_LOWER":  # the odd cell goes before, not after
            pads = [(after, before) for before, after in pads]
        return (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
    if auto != "NOTSET":
        raise Refused(f"auto_pad={auto!r} is not supported")
    given = [int(p) for p in attribute(node, "pads", [0, 0, 0, 0])]
    if len(given) != 4:
        raise Refused(f"pads={given} is not 2-D padding")
    top, left, bottom, right = given
    return (top, bottom, left, right)


def _pair(node: NodeProto, name: str, default: int) -> tuple[int, int]:
    values = [int(v) for v in attribute(node, name, [default, default])]
    if len(values) != 2:
        raise Refused(f"{name}={values} is not 2-D (only 2-D convolution and pooling are imported)")
    return (values[0], values[1])


def _map_input(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if len(x.shape) != 3:
        raise Refused(f"needs a (batch, C, H, W) input, got (batch, {format_shape(x.shape)[1:-1]}): only 2-D is imported")
    return x


def _conv(ctx: Context, node: NodeProto) -> Tensor:
    x = _map_input(ctx, node)
    if int(attribute(node, "group", 1)) != 1:
        raise Refused(f"group={attribute(node, 'group')} is not supported: edgetrain's conv2d has no groups")
    w = ctx.weight(node, 1, "W")
    if w.ndim != 4:
        raise Refused(f"W of shape {format_shape(w.shape)} is not a 2-D kernel (out, in, kh, kw)")
    kernel = (w.shape[2], w.shape[3])
    if tuple(attribute(node, "kernel_shape", kernel)) != kernel:
        raise Refused(f"kernel_shape={attribute(node, 'kernel_shape')} disagrees with W {format_shape(w.shape)}")
    stride, dilation = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    pads = _window_pads(node, (x.shape[1], x.shape[2]), kernel, stride, dilation)
    weights = {"weight": w}
    b = ctx.constant(node, 2, "B")
    if b is not None:
        weights["bias"] = _as_vector(b, w.shape[0], "B")
    layer = Conv2D(
        filters=w.shape[0], kernel_size=kernel, stride=stride, padding=pads, dilation=dilation, bias=b is not None
    )
    return ctx.add(node, layer, [x], weights, hint=node.input[1], bias_from_add=True)


def _pool(kind: str) -> Converter:
    def convert(ctx: Context, node: NodeProto) -> Tensor:
        x = _map_input(ctx, node)
        if _extra_outputs_read(ctx, node):
            raise Refused("its Indices output is read; edgetrain's max pooling keeps them to itself")
        _only_attributes(node, {"storage_order": 0})
        kernel = _pair(node, "kernel_shape", 0)
        stride, dilation = _pair(node, "strides", 1), _pair(node, "dilations", 1)
        if dilation != (1, 1):
            raise Refused(f"dilations={list(dilation)} is not supported for pooling")
        size = (x.shape[1], x.shape[2])
        pads = _window_pads(node, size, kernel, stride, dilation)
        if kind == "average" and attribute(node, "count_include_pad", 0) and any(pads):
            raise Refused(
                "count_include_pad=1 with padding is not supported: edgetrain's average "
                "pooling divides by the real cells of each window (count_include_pad=0)"
            )
        if attribute(node, "ceil_mode", 0) and _ceil_changes_size(size, kernel, stride, pads):
            raise Refused("ceil_mode=1 is not supported here: it adds a partial window edgetrain drops")
        layer = Pooling2D(kind, pool_size=kernel, stride=stride, padding=pads)
        return ctx.add(node, layer, [x])

    return convert


def _ceil_changes_size(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int]) -> bool:
    padded = (size[0] + pads[0] + pads[1], size[1] + pads[2] + pads[3])
    for axis in range(2):
        span = padded[axis] - kernel[axis]
        if span % stride[axis]:
            # a ceil window must start inside the input or the leading padding (ONNX/PyTorch)
            start = (span // stride[axis] + 1) * stride[axis]
            if start < size[axis] + pads[2 * axis]:
                return True
    return False


def _global_pool(kind: str) -> Converter:
    def convert(ctx: Context, node: NodeProto) -> Tensor:
        return ctx.add(node, Pooling2D(kind), [_map_input(ctx, node)])

    return convert


def _batch_norm(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if attribute(node, "training_mode", 0) or _extra_outputs_read(ctx, node):
        raise Refused("training-mode batch normalization (running statistics as outputs) is not supported")
    gamma, beta = ctx.weight(node, 1, "scale"), ctx.weight(node, 2, "B")
    mean, var = ctx.weight(node, 3, "input_mean"), ctx.weight(node, 4, "input_var")
    layer = BatchNormalization(
        epsilon=float(attribute(node, "epsilon", 1e-5)),
        momentum=float(attribute(node, "momentum", 0.9)),
        axis=1,
    )
    weights = {"moving_mean": mean, "moving_variance": var, "gamma": gamma, "beta": beta}
    return ctx.add(node, layer, [x], weights, hint=node.input[1])


def _layer_norm(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if _extra_outputs_read(ctx, node):
        raise Refused("its Mean or InvStdDev output is read; edgetrain's layer normalization keeps them")
    if int(attribute(node, "stash_type", 1)) != 1:
        raise Refused("stash_type other than 1 (float32 statistics) is not supported")
    rank = len(x.shape) + 1
    axis = int(attribute(node, "axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 < axis < rank:
        raise Refused(f"normalises from axis {attribute(node, 'axis')}: the batch axis cannot be normalised over")
    gamma = ctx.weight(node, 1, "Scale")
    beta = ctx.constant(node, 2, "B")
    weights = {"gamma": gamma, "beta": np.zeros_like(gamma) if beta is None else beta.astype(np.float32)}
    layer = LayerNormalization(epsilon=float(attribute(node, "epsilon", 1e-5)), axis=list(range(axis, rank)))
    return ctx.add(node, layer, [x], weights, hint=node.input[1])


# -- views -----------------------------------------------------------------------------------------


def _flatten(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    rank = len(x.shape) + 1
    axis = int(attribute(node, "axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 1:
        raise Refused(f"Flatten with axis={attribute(node, 'axis')} is not supported: only axis 1 (keep the batch)")
    if rank == 2:
        return x
    return ctx.add(node, Flatten(), [x])


def _reshape(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    target = ctx.constant(node, 1, "shape")
    if target is None:
        raise Refused("needs a shape")
    dims = [int(d) for d in target.ravel()]
    allow_zero = attribute(node, "allowzero", 0)
    full = [BATCH, *x.shape]
    if not allow_zero:
        dims = [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(dims)]
    rest = dims[1:]
    size = math.prod(x.shape)
    batch_kept = dims and (
        dims[0] == BATCH
        or (dims[0] == -1 and -1 not in rest and BATCH not in rest and math.prod(rest) == size)
        or (ctx.fixed_batch is not None and dims[0] == ctx.fixed_batch)
    )
    if not batch_kept or BATCH in rest:
        shown = ["N" if d == BATCH else d for d in dims]
        raise Refused(f"reshapes (batch, {format_shape(x.shape)[1:-1]}) to {shown}: the batch dimension must stay first")
    if len(rest) == 1:
        return x if len(x.shape) == 1 else ctx.add(node, Flatten(), [x])
    if tuple(rest) == x.shape:
        return x
    return ctx.add(node, Reshape(target_shape=tuple(rest)), [x])


def _identity(ctx: Context, node: NodeProto) -> Tensor | Array:
    return ctx.values[node.input[0]]


def _cast(ctx: Context, node: NodeProto) -> Tensor:
    """A cast of a run-time tensor to a float type: edgetrain computes in its own float
    type, so it is the identity."""
    target = int(attribute(node, "to", 0))
    if target not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        raise Refused(f"casts a tensor to {TensorProto.DataType.Name(target)}: only float tensors are computed")
    return ctx.tensor(node, 0)


def _extra_outputs_read(ctx: Context, node: NodeProto) -> bool:
    """Whether any output but the first (statistics, indices, masks) is read."""
    return any(name and ctx.readers.get(name, 0) for name in node.output[1:])


def converters(opset: int) -> dict[str, Converter]:
    """The converter of every op edgetrain imports, for a model of ``opset``."""
    return {
        "Gemm": _gemm,
        "MatMul": _matmul,
        "Add": _add,
        "Sum": _sum,
        "Concat": _concat,
        "Conv": _conv,
        "BatchNormalization": _batch_norm,
        "LayerNormalization": _layer_norm,
        "Relu": _activation("relu"),
        "Sigmoid": _activation("sigmoid"),
        "Tanh": _activation("tanh"),
        "LeakyRelu": _leaky_relu,
        "Softmax": lambda ctx, node: _softmax(ctx, node, opset),
        "MaxPool": _pool("max"),
        "AveragePool": _pool("average"),
        "GlobalAveragePool": _global_pool("global_average"),
        "GlobalMaxPool": _global_pool("global_max"),
        "Flatten": _flatten,
        "Reshape": _reshape,
        "Dropout": _dropout,
        "Identity": _identity,
        "Cast": _cast,
    }


def is_shape_value(value: Array) -> bool:
    """Whether a folded constant carries the batch size (it can only feed a Reshape)."""
    return has_batch(value)
