"""One converter per ONNX op: from a node (and the values it reads) to an edgetrain layer
with its weights in edgetrain's layouts.

Layouts (``spec/interchange.md``): a ``Gemm`` ``B`` is ``(out, in)`` when ``transB=1`` and
edgetrain's fully-connected weight is ``(in, out)``; batch-norm ``scale, B, mean, var``
become ``gamma, beta, moving_mean, moving_variance``. Convolution and pooling are in
``onnx_conv``. What has no exact edgetrain equivalent is refused, naming the node and its
op, never approximated.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto, TensorProto

from ..layers import (
    Activation,
    Addition,
    BatchNormalization,
    Concat,
    Conv2D,
    Dropout,
    Embedding,
    Flatten,
    FullyConnected,
    LayerNormalization,
    Reshape,
    Split,
)
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
)
from .onnx_conv import conv, global_pool, pool
from .onnx_fold import BATCH

#: ONNX element types edgetrain computes with (as its own float type)
FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16})
#: integer element types: ids, carried as whole numbers in float tensors
INTEGER_TYPES = frozenset({TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8})

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
    weight = np.ascontiguousarray(b.T if attribute(node, "transB", 0) else b)
    alpha = float(attribute(node, "alpha", 1.0))
    if alpha != 1.0:
        weight = weight * np.float32(alpha)
    weights = {"weight": weight}
    unit = weight.shape[1]
    c = ctx.constant(node, 2, "C")
    if c is not None:
        weights["bias"] = as_vector(c, unit, "C") * np.float32(attribute(node, "beta", 1.0))
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


# -- element-wise and merges -------------------------------------------------------------------


def _add(ctx: Context, node: NodeProto) -> Tensor:
    first, second = (ctx.values[name] for name in node.input[:2])
    if isinstance(first, Tensor) and isinstance(second, Tensor):
        first, second = ctx.tensor(node, 0), ctx.tensor(node, 1)  # no ids
        if first.shape != second.shape:
            raise Refused(
                f"adds (batch, {format_shape(first.shape)[1:-1]}) and (batch, "
                f"{format_shape(second.shape)[1:-1]}): edgetrain's addition takes one shape (no broadcasting)"
            )
        return ctx.add(node, Addition(), [first, second])
    which = 0 if isinstance(first, Tensor) else 1
    constant = second if which == 0 else first
    assert not isinstance(constant, Tensor)
    return _bias_add(ctx, node, node.input[which], ctx.tensor(node, which), constant)


def _bias_add(ctx: Context, node: NodeProto, name: str, tensor: Tensor, constant: Array) -> Tensor:
    """``x + b`` after a MatMul/Gemm/Conv whose output (ONNX value ``name``) nothing else
    reads: ``b`` becomes (or adds to) that layer's bias."""
    made = ctx.producer(tensor)
    if made is None or not made.bias_from_add or ctx.readers.get(name, 0) != 1:
        raise Refused(
            "adds a constant to a value that is not the output of a MatMul, Gemm or Conv "
            "read only by this Add (edgetrain has no layer adding a constant)"
        )
    layer = made.layer
    if isinstance(layer, Conv2D):
        channels = layer.filters
        if constant.size != 1 and (constant.ndim < 3 or constant.shape[-2:] != (1, 1)):
            raise Refused(f"the constant of shape {format_shape(constant.shape)} is not a per-channel bias")
        bias = as_vector(constant.reshape(-1), channels, "the constant")
    else:
        assert isinstance(layer, FullyConnected)
        bias = as_vector(constant, layer.unit, "the constant")
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


def _gelu(ctx: Context, node: NodeProto) -> Tensor:
    """``Gelu`` (op set 20): exact (erf) or ``approximate="tanh"``."""
    kinds = {"none": "gelu", "tanh": "tanh_gelu"}
    approximate = str(attribute(node, "approximate", "none"))
    if approximate not in kinds:
        raise Refused(f"approximate={approximate!r} is not supported")
    return ctx.add(node, Activation(kinds[approximate]), [ctx.tensor(node, 0)])


def _mul(ctx: Context, node: NodeProto) -> Tensor:
    """``x * Sigmoid(x)`` -- how PyTorch writes SiLU -- is edgetrain's ``swish``: the
    sigmoid layer (read by nothing else) becomes a swish of ``x``. Other products of
    run-time values have no edgetrain layer."""
    if any(not isinstance(ctx.values[name], Tensor) for name in node.input[:2]):
        raise Refused("multiplies by a constant; edgetrain has no layer scaling by a constant")
    a, b = ctx.tensor(node, 0), ctx.tensor(node, 1)
    for x, gate, name in ((a, b, node.input[1]), (b, a, node.input[0])):
        made = ctx.producer(gate)
        layer = made.layer if made is not None else None
        if (
            made is not None
            and isinstance(layer, Activation)
            and layer.kind == "sigmoid"
            and layer.input_layers == [x.layer]
            and ctx.readers.get(name, 0) == 1
        ):
            swish = Activation("swish", name=layer.name, input_layers=layer.input_layers)
            made.layer = swish
            made.nodes.append(node.name)
            return gate
    raise Refused("multiplies two run-time values; only x * Sigmoid(x) (SiLU, edgetrain's swish) is imported")


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
    rows = ctx.add(node, Flatten() if len(block) == 1 else Reshape(target_shape=block), [x], suffix=".to_rows")
    normalised = ctx.add(node, Activation("softmax"), [rows])
    return ctx.add(node, Reshape(target_shape=x.shape), [normalised], suffix=".from_rows")


def _dropout(ctx: Context, node: NodeProto) -> Tensor:
    if extra_outputs_read(ctx, node):
        raise Refused("its mask output is read; edgetrain's dropout keeps the mask to itself")
    ratio = ctx.constant(node, 1, "ratio")
    rate = float(attribute(node, "ratio", 0.5) if ratio is None else ratio.ravel()[0])
    training = ctx.constant(node, 2, "training_mode")
    if training is not None and bool(training.ravel()[0]):
        raise Refused("training_mode=true: an inference model is expected (dropout as identity)")
    return ctx.add(node, Dropout(dropout_rate=rate), [ctx.tensor(node, 0)])


def _batch_norm(ctx: Context, node: NodeProto) -> Tensor:
    x = ctx.tensor(node, 0)
    if attribute(node, "training_mode", 0) or extra_outputs_read(ctx, node):
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
    if extra_outputs_read(ctx, node):
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
    """A cast of a run-time tensor: to a float type it is the identity (edgetrain computes
    in its own float type); to an integer type it makes ids, which only an embedding
    lookup may read (edgetrain's embedding checks they are whole numbers)."""
    target = int(attribute(node, "to", 0))
    x = ctx.tensor(node, 0, ids=True)
    if target in FLOAT_TYPES:
        if x.ids:
            raise Refused("casts integer ids back to floats: edgetrain only looks ids up")
        return x
    if target in INTEGER_TYPES:
        return Tensor(x.layer, x.shape, ids=True)
    raise Refused(f"casts a tensor to {TensorProto.DataType.Name(target)}")


def _gather(ctx: Context, node: NodeProto) -> Tensor:
    """``Gather(table, ids)`` with a constant 2-D table along axis 0: an embedding lookup
    (PyTorch's ``nn.Embedding``); the table is the ``(in_dim, out_dim)`` weight as is."""
    table = ctx.weight(node, 0, "the table (data)")
    ids = ctx.tensor(node, 1, ids=True)
    if int(attribute(node, "axis", 0)) != 0 or table.ndim != 2:
        raise Refused(
            f"only a lookup of rows (axis 0) of a constant matrix is imported, got axis "
            f"{attribute(node, 'axis', 0)} of {format_shape(table.shape)}"
        )
    if not ids.ids:
        raise Refused("its indices are float values, not integer ids (cast them to int64 first)")
    layer = Embedding(in_dim=table.shape[0], out_dim=table.shape[1])
    return ctx.add(node, layer, [Tensor(ids.layer, ids.shape)], {"weight": table}, hint=node.input[0])


def _split(ctx: Context, node: NodeProto, opset: int) -> list[Tensor]:
    """``Split`` into equal parts along a non-batch axis (edgetrain's split makes equal
    parts only); sizes from the input (opset >= 13), the attribute, or ``num_outputs``."""
    x = ctx.tensor(node, 0)
    rank = len(x.shape) + 1
    axis = int(attribute(node, "axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 < axis < rank:
        raise Refused(f"splits along axis {attribute(node, 'axis', 0)}: only non-batch axes")
    count = len(node.output)
    given = ctx.constant(node, 1, "split") if opset >= 13 else None
    sizes = [int(v) for v in (given.ravel() if given is not None else attribute(node, "split", []))]
    length = x.shape[axis - 1]
    if not sizes:
        sizes = [length // count] * count if length % count == 0 else []
    if len(set(sizes)) != 1 or len(sizes) != count or sum(sizes) != length:
        raise Refused(f"splits axis {axis} of size {length} into {sizes or count}: edgetrain's split makes equal parts")
    ctx.add(node, Split(axis=axis, split_number=count), [x])
    return ctx.layers[-1].outputs


def converters(opset: int) -> dict[str, Converter]:
    """The converter of every op edgetrain imports, for a model of ``opset``."""
    return {
        "Gemm": _gemm,
        "MatMul": _matmul,
        "Add": _add,
        "Sum": _sum,
        "Concat": _concat,
        "Conv": conv,
        "BatchNormalization": _batch_norm,
        "LayerNormalization": _layer_norm,
        "Relu": _activation("relu"),
        "Sigmoid": _activation("sigmoid"),
        "Tanh": _activation("tanh"),
        "LeakyRelu": _leaky_relu,
        "Gelu": _gelu,
        "Mul": _mul,
        "Softmax": lambda ctx, node: _softmax(ctx, node, opset),
        "MaxPool": pool("max"),
        "AveragePool": pool("average"),
        "GlobalAveragePool": global_pool("global_average"),
        "GlobalMaxPool": global_pool("global_max"),
        "Flatten": _flatten,
        "Reshape": _reshape,
        "Dropout": _dropout,
        "Identity": _identity,
        "Cast": _cast,
        "Gather": _gather,
        "Split": lambda ctx, node: _split(ctx, node, opset),
    }
