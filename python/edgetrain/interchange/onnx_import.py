"""``Model.from_onnx``: an ONNX model (exported from PyTorch or another framework) as an
edgetrain model with its weights, ready to predict or to fine-tune on the device.

The graph is walked in its (topological) node order. Initializers and ``Constant`` nodes
are constants; a node whose inputs are all constants is folded (``onnx_fold``); every
other node becomes one edgetrain layer (``onnx_ops``), except the bias ``Add`` after a
``MatMul``, ``Gemm`` or ``Conv``, which becomes that layer's bias, and ``Identity``. Layers
no path leads from to the graph's output are left out. See ``spec/interchange.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import GraphProto, NodeProto, ValueInfoProto, numpy_helper

from ..errors import ConfigError, ModelFileError, ShapeError
from ..layers import Input
from .onnx_context import Context, ImportedLayer, Refused, Tensor, attribute
from .onnx_fold import FOLDERS, FoldError, fold, shape_vector
from .onnx_ops import FLOAT_TYPES, INTEGER_TYPES, converters

if TYPE_CHECKING:
    from ..model import Model

#: ONNX element types an input may have (its values are fed as edgetrain's float type)


def read_onnx(path: Path) -> onnx.ModelProto:
    """The checked ONNX model in ``path`` (external data is read from its directory)."""
    if not path.is_file():
        raise ModelFileError("no such ONNX file" if not path.exists() else "not a regular file", path=path)
    try:
        model = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError, and others on garbage
        raise ModelFileError(f"is not an ONNX model ({type(err).__name__}: {err})", path=path) from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "invalid"
        raise ModelFileError(f"is not a valid ONNX model: {first}", path=path) from None
    return model


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelFileError("imports no version of the default ONNX op set", path="<onnx>")


def import_onnx(
    path: str | os.PathLike[str], *, loss: str | None = None, name: str | None = None
) -> Model:
    """The model in ONNX file ``path`` with its weights, compiled for inference with batch
    size 1 (``compile(optimizer, batch_size)`` to fine-tune keeps the weights).

    ``loss`` is put on the graph's output (none by default); with ``"cross_entropy"`` a
    trailing ``Softmax`` folds into it, so ``predict`` still gives probabilities."""
    from ..model import Model

    source = Path(path)
    proto = read_onnx(source)
    graph = proto.graph
    if len(graph.output) != 1:
        raise ModelFileError(
            f"has {len(graph.output)} outputs ({', '.join(o.name for o in graph.output)}); "
            "an edgetrain model has one",
            path=source,
        )
    ctx = Context(_fixed_batch(graph, source))
    _count_readers(ctx, graph)
    for initializer in graph.initializer:
        ctx.values[initializer.name] = numpy_helper.to_array(initializer)
        ctx.initializers.add(initializer.name)
    inputs = _add_inputs(ctx, graph, source)
    table = converters(default_opset(proto))
    for index, node in enumerate(graph.node):
        _convert(ctx, node, index, table, source)
    output = ctx.values.get(graph.output[0].name)
    if not isinstance(output, Tensor) or output.layer in inputs or output.ids:
        raise ModelFileError(
            f"output '{graph.output[0].name}' is not computed by any layer from the inputs", path=source
        )
    kept = _reachable(ctx.layers, output.source)
    if output.layer != output.source:
        raise ModelFileError(
            f"output '{graph.output[0].name}' is output {output.layer} of a layer with several; "
            "an edgetrain model's output is the first output of its last layer",
            path=source,
        )
    model = Model([item.layer for item in kept], loss, name=name or graph.name or source.stem)
    try:
        model.compile(None, batch_size=1)
    except (ConfigError, ShapeError) as err:
        raise ModelFileError(f"the imported layers do not form a model: {err}", path=source) from None
    weights = {
        f"{item.layer.name}:{weight}": value for item in kept for weight, value in item.weights.items()
    }
    if weights:
        try:
            model.set_weights(weights)
        except ConfigError as err:  # NaN or infinite values
            raise ModelFileError(str(err), path=source) from None
    return model


def _fixed_batch(graph: GraphProto, path: Path) -> int | None:
    """The batch size every input fixes (PyTorch exports a fixed one unless told not to),
    or None when an input leaves it symbolic. Inputs fixing different sizes are refused:
    one would be broadcast over the other's batch, and edgetrain feeds every input the
    same batch."""
    sizes: dict[str, int] = {}
    symbolic = False
    initializers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            sizes[value.name] = int(dims[0].dim_value)
        else:
            symbolic = True
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"'{name}' {size}" for name, size in sizes.items())
        raise ModelFileError(
            f"its inputs fix different batch sizes ({shown}); edgetrain gives every input the same batch",
            path=path,
        )
    return None if symbolic or not sizes else next(iter(sizes.values()))


def _count_readers(ctx: Context, graph: GraphProto) -> None:
    for node in graph.node:
        for name in node.input:
            if name:
                ctx.readers[name] = ctx.readers.get(name, 0) + 1
    for value in graph.output:
        ctx.readers[value.name] = ctx.readers.get(value.name, 0) + 1


def _add_inputs(ctx: Context, graph: GraphProto, path: Path) -> set[str]:
    """An ``Input`` layer for every graph input that is not an initializer; the first
    dimension is the batch and is dropped."""
    names: set[str] = set()
    initializers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        shape = _input_shape(value, path)
        node = NodeProto(name=value.name, op_type="Input")
        tensor = ctx.add(node, Input(shape=shape), [])
        ids = value.type.tensor_type.elem_type in INTEGER_TYPES
        ctx.values[value.name] = Tensor(tensor.layer, tensor.shape, ids=ids)
        names.add(tensor.layer)
    if not names:
        raise ModelFileError("has no inputs besides its initializers", path=path)
    return names


def _input_shape(value: ValueInfoProto, path: Path) -> tuple[int, ...]:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in FLOAT_TYPES | INTEGER_TYPES:
        kind = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ModelFileError(
            f"input '{value.name}' is {kind}: only float inputs and integer ids are imported", path=path
        )
    dims = list(tensor_type.shape.dim)
    if len(dims) < 2:
        raise ModelFileError(
            f"input '{value.name}' has rank {len(dims)}: edgetrain inputs are (batch, features...)", path=path
        )
    shape = []
    for axis, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            raise ModelFileError(
                f"input '{value.name}' has a symbolic size '{dim.dim_param}' on axis {axis}: "
                "only the batch (axis 0) may be symbolic; export with fixed sizes",
                path=path,
            )
        shape.append(int(dim.dim_value))
    return tuple(shape)


def _convert(ctx: Context, node: NodeProto, index: int, table: dict[str, Any], path: Path) -> None:
    where = f"node '{node.name or f'#{index}'}' ({node.op_type})"
    if node.domain not in ("", "ai.onnx"):
        raise ModelFileError(f"{where}: ops of domain '{node.domain}' are not supported", path=path)
    try:
        missing = [name for name in node.input if name and name not in ctx.values]
        if missing:
            raise Refused(f"reads {missing}, which no earlier node computes (graphs must be topologically sorted)")
        value = _value_of(ctx, node, table)
    except (Refused, FoldError) as err:
        raise ModelFileError(f"{where}: {err}", path=path) from None
    except (ConfigError, ShapeError) as err:
        raise ModelFileError(f"{where}: cannot be an edgetrain layer: {err}", path=path) from None
    if isinstance(value, list):  # one value per output (Split)
        for name, part in zip(node.output, value):
            if name:
                ctx.values[name] = part
        return
    ctx.values[node.output[0]] = value
    if node.op_type in _KEEPS_ORIGIN and node.input and not isinstance(value, Tensor):
        ctx.origins[node.output[0]] = ctx.origins.get(node.input[0], node.input[0])


#: folded ops whose result is still "that weight" for naming the layer that uses it
_KEEPS_ORIGIN = frozenset({"Transpose", "Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze"})


def _value_of(ctx: Context, node: NodeProto, table: dict[str, Any]) -> Any:
    if node.op_type == "Constant":
        return _constant(node)
    if node.op_type == "Shape":
        source = ctx.values[node.input[0]]
        if isinstance(source, Tensor):
            return shape_vector(source.shape, int(attribute(node, "start", 0)), attribute(node, "end"))
        return np.array(np.shape(source), dtype=np.int64)
    arguments = [ctx.values[name] if name else None for name in node.input]
    constants = [a for a in arguments if not isinstance(a, Tensor)]
    if len(constants) == len(arguments) and node.op_type in FOLDERS:
        return fold(node, constants)
    convert = table.get(node.op_type)
    if convert is None:
        raise Refused(f"op {node.op_type} is not supported (supported: {', '.join(sorted(table))})")
    return convert(ctx, node)


def _constant(node: NodeProto) -> Any:
    for item in node.attribute:
        if item.name == "value":
            return numpy_helper.to_array(item.t)
        if item.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(item))
        if item.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(item)))
    raise Refused("only tensor, float and int constants are supported")


def _reachable(layers: list[ImportedLayer], output: str) -> list[ImportedLayer]:
    """The layers the output depends on, in their order."""
    needed = {output}
    for item in reversed(layers):
        if item.layer.name in needed:
            needed.update(name.split("(", 1)[0] for name in item.layer.input_layers or [])
    return [item for item in layers if item.layer.name in needed]


__all__ = ["Tensor", "import_onnx", "read_onnx"]
