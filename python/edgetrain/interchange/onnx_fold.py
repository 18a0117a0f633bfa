"""Constant folding of the shape arithmetic ONNX exporters emit around a flatten.

PyTorch writes ``x.view(x.size(0), -1)`` as ``Shape -> Gather(0) -> Unsqueeze -> Concat
(with [-1]) -> Reshape``. Everything before the ``Reshape`` computes on constants except
the batch size, which is not known when importing. A folded value is a numpy array in
which the batch size is the sentinel :data:`BATCH`; the ops here only move integers
around (gather, slice, concatenate, squeeze), so the sentinel survives to the ``Reshape``
that reads it. Arithmetic on the sentinel is refused, since its result would depend on the
batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from onnx import NodeProto, helper, numpy_helper

Array = NDArray[Any]

#: stands for the (unknown) batch size inside a folded shape vector
BATCH = int(np.iinfo(np.int64).min)


class FoldError(ValueError):
    """A constant node that cannot be folded; the importer adds the node's name."""


def has_batch(value: Array) -> bool:
    """Whether ``value`` holds the batch-size sentinel."""
    return bool(value.dtype == np.int64 and np.any(value == BATCH))


def _attribute(node: NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _axes(node: NodeProto, inputs: Sequence[Array | None]) -> list[int] | None:
    """``axes`` from the second input (opset >= 13) or the attribute (older opsets)."""
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in np.asarray(inputs[1]).ravel()]
    axes = _attribute(node, "axes")
    return None if axes is None else [int(a) for a in axes]


def _gather(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    data, indices = _required(inputs, 2)
    axis = int(_attribute(node, "axis", 0))
    return np.take(data, indices.astype(np.int64), axis=axis)


def _unsqueeze(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    (data,) = _required(inputs, 1)
    axes = _axes(node, inputs)
    if axes is None:
        raise FoldError("Unsqueeze needs axes")
    rank = data.ndim + len(axes)
    result = data
    for axis in sorted(a + rank if a < 0 else a for a in axes):
        result = np.expand_dims(result, axis)
    return result


def _squeeze(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    (data,) = _required(inputs, 1)
    axes = _axes(node, inputs)
    return np.squeeze(data) if axes is None else np.squeeze(data, axis=tuple(axes))


def _concat(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    parts = _required(inputs, len(inputs))
    return np.concatenate(parts, axis=int(_attribute(node, "axis", 0)))


def _slice(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    (data,) = _required(inputs[:1], 1)
    if len(inputs) >= 3:
        starts, ends = (np.asarray(v).ravel() for v in _required(inputs[1:3], 2))
        axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
        steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts))
    else:
        starts = np.asarray(_attribute(node, "starts"))
        ends = np.asarray(_attribute(node, "ends"))
        axes = np.asarray(_attribute(node, "axes", list(range(len(starts)))))
        steps = np.ones(len(starts))
    index: list[slice] = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, np.ravel(axes), np.ravel(steps)):
        # ONNX clamps out-of-range starts and ends (INT64_MAX means "to the end"), as slice does
        index[int(axis)] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _cast(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    (data,) = _required(inputs, 1)
    target = helper.tensor_dtype_to_np_dtype(int(_attribute(node, "to")))
    if has_batch(data) and target != np.int64:
        raise FoldError(f"casts the batch size to {target}")
    return data.astype(target)


def _arithmetic(function: Callable[[Array, Array], Array]) -> Callable[[NodeProto, Sequence[Array | None]], Array]:
    def fold(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
        a, b = _required(inputs, 2)
        if has_batch(a) or has_batch(b):
            raise FoldError("computes with the batch size, which is not known when importing")
        return np.asarray(function(a, b)).astype(np.result_type(a, b))

    return fold


def _divide(a: Array, b: Array) -> Array:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        result: Array = np.fix(a / b).astype(a.dtype)  # ONNX integer division truncates
        return result
    quotient: Array = a / b
    return quotient


def _reshape(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    data, shape = _required(inputs, 2)
    target = [int(d) if d != 0 else data.shape[i] for i, d in enumerate(shape.ravel())]
    return data.reshape(target)


def _transpose(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    """A weight transposed by the exporter (``aten::t`` before a ``MatMul``)."""
    (data,) = _required(inputs, 1)
    perm = _attribute(node, "perm")
    return np.transpose(data, None if perm is None else [int(p) for p in perm])


def _constant_of_shape(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    """A tensor of the given shape filled with ``value`` (float32 0 by default)."""
    (shape,) = _required(inputs, 1)
    if has_batch(shape):
        raise FoldError("makes a tensor as large as the batch, which is not known when importing")
    value = _attribute(node, "value")
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return np.full([int(d) for d in shape.ravel()], fill.ravel()[0], dtype=fill.dtype)


def _identity(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    (data,) = _required(inputs[:1], 1)
    return data


def _required(inputs: Sequence[Array | None], count: int) -> list[Array]:
    present = [v for v in inputs[:count] if v is not None]
    if len(present) != count:
        raise FoldError(f"needs {count} input(s)")
    return present


#: ONNX ops folded when every input is a constant
FOLDERS: dict[str, Callable[[NodeProto, Sequence[Array | None]], Array]] = {
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Cast": _cast,
    "Add": _arithmetic(np.add),
    "Sub": _arithmetic(np.subtract),
    "Mul": _arithmetic(np.multiply),
    "Div": _arithmetic(_divide),
    "Reshape": _reshape,
    "Transpose": _transpose,
    "ConstantOfShape": _constant_of_shape,
    "Identity": _identity,
    "Dropout": _identity,
}


def fold(node: NodeProto, inputs: Sequence[Array | None]) -> Array:
    """The value of ``node`` whose inputs are all constants (``None`` for an omitted
    optional input)."""
    folder = FOLDERS.get(node.op_type)
    if folder is None:
        raise FoldError(f"{node.op_type} of constants cannot be folded")
    return np.asarray(folder(node, inputs))


def shape_vector(shape: Sequence[int], start: int = 0, end: int | None = None) -> Array:
    """What ``Shape`` gives for a tensor of ``(batch, *shape)``: the batch as :data:`BATCH`,
    sliced by the opset-15 ``start``/``end`` attributes."""
    full = np.array([BATCH, *shape], dtype=np.int64)
    return full[start:end]
