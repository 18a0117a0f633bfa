"""``export_onnx``: a compiled edgetrain model as an inference ONNX model, to run it
elsewhere (ONNX Runtime, a phone's NN API, a server).

The graph is written the way PyTorch's exporter writes it, so that ``Model.from_onnx``
and other importers read it back: a ``Gemm`` with ``transB=1`` and the weight as
``(out, in)`` for a fully-connected layer on ``(N, in)``, ``MatMul`` + ``Add`` on higher
ranks, explicit ``pads``/``strides``/``dilations``, batch norm in inference form. Every
initializer keeps the edgetrain weight name (``"<layer>:<weight>"``), inputs keep their
layer names with a symbolic batch ``N``, and the one output is ``output``: what
``Model.predict`` returns (softmax probabilities under cross entropy, sigmoid under
sigmoid cross entropy). See ``spec/interchange.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError
from ..graph import Node, Port
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
    Input,
    LayerNormalization,
    Multiout,
    Pooling2D,
    Reshape,
    Split,
)
from ..layers.properties import resolve_axis
from ..losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy
from ..weights_io import atomic_write

if TYPE_CHECKING:
    from ..model import Model

Array = NDArray[Any]

#: the op set written by default: supported by ONNX Runtime since 1.12 and by onnx 1.12+
DEFAULT_OPSET = 17
#: the oldest op set whose Softmax, Dropout and Reshape mean what edgetrain's layers do
MIN_OPSET = 13
#: the IR version that goes with op set 17 (readers refuse files newer than they know)
IR_VERSION = 8
#: the first op set with ``Gelu``
GELU_OPSET = 20
BATCH_DIM = "N"
OUTPUT = "output"
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


class _Writer:
    """The ONNX nodes, initializers and value names of one export."""

    def __init__(self, model: Model, opset: int) -> None:
        self.graph = model.graph
        self.weights = model.get_weights()
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.values: dict[Port, str] = {}
        #: the activation layer the loss absorbed (its name goes to the exported op)
        self.fused = _fused_activation(model)

    def source(self, node: Node, index: int = 0) -> str:
        return self.values[node.inputs[index]]

    def shape(self, node: Node, index: int = 0) -> tuple[int, ...]:
        return tuple(self.graph.shape_of(node.inputs[index]))

    def weight(self, node: Node, name: str, value: Array | None = None) -> str:
        full = f"{node.name}:{name}"
        array = self.weights[full] if value is None else value
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), full))
        return full

    def constant(self, name: str, value: Array) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def emit(self, node: Node, op: str, inputs: Sequence[str], output: str | None = None, **attrs: Any) -> str:
        name = output or node.name
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        self.values[Port(node.name, 0)] = name
        return name


def _refuse(node: Node, why: str) -> ConfigError:
    return ConfigError(f"layer '{node.name}' ({node.layer.type_name}) cannot be exported to ONNX: {why}")


def _fully_connected(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, FullyConnected)
    x = w.source(node)
    if len(w.shape(node)) == 2:
        inputs = [x, w.weight(node, "weight", w.weights[f"{node.name}:weight"].T)]
        if layer.bias:
            inputs.append(w.weight(node, "bias"))
        w.emit(node, "Gemm", inputs, alpha=1.0, beta=1.0, transB=1)
        return
    product = w.emit(node, "MatMul", [x, w.weight(node, "weight")], f"{node.name}/MatMul")
    if layer.bias:
        w.emit(node, "Add", [product, w.weight(node, "bias")])


def _conv(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Conv2D)
    _, _, height, width = w.shape(node)
    window = layer.window(height, width)
    top, bottom, left, right = window.pads
    inputs = [w.source(node), w.weight(node, "weight")]
    if layer.bias:
        inputs.append(w.weight(node, "bias"))
    w.emit(
        node, "Conv", inputs, kernel_shape=list(window.kernel), strides=list(window.stride),
        dilations=list(window.dilation), pads=[top, left, bottom, right], group=1,
    )


def _pooling(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Pooling2D)
    x = w.source(node)
    if layer.is_global:
        w.emit(node, "GlobalMaxPool" if layer.pooling == "global_max" else "GlobalAveragePool", [x])
        return
    _, _, height, width = w.shape(node)
    window = layer.window(height, width)
    top, bottom, left, right = window.pads
    attrs: dict[str, Any] = {
        "kernel_shape": list(window.kernel), "strides": list(window.stride),
        "pads": [top, left, bottom, right], "ceil_mode": 0,
    }
    if layer.pooling == "average":
        attrs["count_include_pad"] = 0  # edgetrain divides by the real cells of a window
    w.emit(node, "MaxPool" if layer.pooling == "max" else "AveragePool", [x], **attrs)


def _activation(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Activation)
    x = w.source(node)
    if layer.kind in _ACTIVATIONS:
        w.emit(node, _ACTIVATIONS[layer.kind], [x])
    elif layer.kind == "softmax":
        w.emit(node, "Softmax", [x], axis=-1)
    elif layer.kind == "leaky_relu":
        from ..layers.activation import LEAKY_RELU_SLOPE

        w.emit(node, "LeakyRelu", [x], alpha=LEAKY_RELU_SLOPE)
    elif layer.kind == "swish":  # x * sigmoid(x), as PyTorch writes SiLU
        gate = w.emit(node, "Sigmoid", [x], f"{node.name}/Sigmoid")
        w.emit(node, "Mul", [x, gate])
    elif layer.kind in ("gelu", "tanh_gelu") and w.opset >= GELU_OPSET:
        w.emit(node, "Gelu", [x], approximate="none" if layer.kind == "gelu" else "tanh")
    elif layer.kind in ("gelu", "tanh_gelu"):
        raise _refuse(node, f"Gelu needs op set {GELU_OPSET} (export with opset={GELU_OPSET})")
    else:
        raise _refuse(node, f"activation {layer.kind} has no ONNX op in op set {w.opset} that edgetrain maps")


def _batch_norm(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, BatchNormalization)
    shape = w.shape(node)
    if layer.channel_axis(shape) != 1:
        raise _refuse(node, f"it normalises axis {layer.channel_axis(shape)}; ONNX BatchNormalization normalises axis 1")
    inputs = [w.source(node)] + [w.weight(node, n) for n in ("gamma", "beta", "moving_mean", "moving_variance")]
    w.emit(node, "BatchNormalization", inputs, epsilon=layer.epsilon, momentum=layer.momentum)


def _layer_norm(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, LayerNormalization)
    shape = w.shape(node)
    axes = layer.normalized_axes(shape)
    if axes != tuple(range(axes[0], len(shape))):
        raise _refuse(node, f"it normalises axes {list(axes)}; ONNX LayerNormalization takes the last axes")
    if w.opset < 17:
        raise _refuse(node, "LayerNormalization needs op set 17")
    inputs = [w.source(node), w.weight(node, "gamma"), w.weight(node, "beta")]
    w.emit(node, "LayerNormalization", inputs, axis=axes[0], epsilon=layer.epsilon)


def _flatten(w: _Writer, node: Node) -> None:
    w.emit(node, "Flatten", [w.source(node)], axis=1)


def _reshape(w: _Writer, node: Node) -> None:
    target = np.array([-1, *node.output_shapes[0][1:]], dtype=np.int64)
    w.emit(node, "Reshape", [w.source(node), w.constant(f"{node.name}:shape", target)])


def _dropout(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Dropout)
    ratio = w.constant(f"{node.name}:ratio", np.array(layer.dropout_rate, dtype=np.float32))
    w.emit(node, "Dropout", [w.source(node), ratio])


def _addition(w: _Writer, node: Node) -> None:
    inputs = [w.source(node, i) for i in range(len(node.inputs))]
    w.emit(node, "Add" if len(inputs) == 2 else "Sum", inputs)


def _concat(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Concat)
    inputs = [w.source(node, i) for i in range(len(node.inputs))]
    w.emit(node, "Concat", inputs, axis=layer.concat_axis(w.shape(node)))


def _split(w: _Writer, node: Node) -> None:
    """``Split`` with the part sizes as an input (op sets 13 and later); output ``i`` is
    ``<layer>`` for 0, ``<layer>_<i>`` after."""
    layer = node.layer
    assert isinstance(layer, Split)
    shape = w.shape(node)
    axis = resolve_axis(layer.axis, len(shape))
    assert axis is not None  # checked by the layer's setup
    parts = len(node.output_shapes)
    sizes = w.constant(f"{node.name}:split", np.full(parts, shape[axis] // parts, dtype=np.int64))
    outputs = [node.name if i == 0 else f"{node.name}_{i}" for i in range(parts)]
    w.nodes.append(helper.make_node("Split", [w.source(node), sizes], outputs, name=node.name, axis=axis))
    for index, name in enumerate(outputs):
        w.values[Port(node.name, index)] = name


def _embedding(w: _Writer, node: Node) -> None:
    """The float ids cast to int64, then ``Gather`` of the ``(in_dim, out_dim)`` table."""
    ids = w.emit(node, "Cast", [w.source(node)], f"{node.name}/ids", to=TensorProto.INT64)
    w.emit(node, "Gather", [w.weight(node, "weight"), ids], axis=0)


def _multiout(w: _Writer, node: Node) -> None:
    for index in range(len(node.output_shapes)):
        w.values[Port(node.name, index)] = w.source(node)


def _loss(w: _Writer, node: Node) -> None:
    """What ``predict`` applies after the last layer: softmax or sigmoid under the cross
    entropies (named after the activation the loss absorbed), nothing under MSE."""
    if isinstance(node.layer, (SoftmaxCrossEntropy, SigmoidCrossEntropy)):
        softmax = isinstance(node.layer, SoftmaxCrossEntropy)
        name = w.fused or _free_name(w.graph, "softmax" if softmax else "sigmoid")
        if softmax:
            w.emit(node, "Softmax", [w.source(node)], name, axis=-1)
        else:
            w.emit(node, "Sigmoid", [w.source(node)], name)
    else:
        w.values[Port(node.name, 0)] = w.source(node)


def _fused_activation(model: Model) -> str | None:
    """The name of the model's last layer when the graph folded it into the loss."""
    last = model.layers[-1] if model.layers else None
    in_graph = {node.name for node in model.graph.nodes}
    if isinstance(last, Activation) and last.name is not None and last.name not in in_graph:
        return last.name
    return None


def _free_name(graph: Any, base: str) -> str:
    taken = {node.name for node in graph.nodes}
    name = base
    while name in taken:
        name = "_" + name
    return name


def _input(w: _Writer, node: Node) -> None:
    layer = node.layer
    assert isinstance(layer, Input)
    shape: list[int | str] = [BATCH_DIM, *layer.shape]
    w.inputs.append(helper.make_tensor_value_info(node.name, TensorProto.FLOAT, shape))
    w.values[Port(node.name, 0)] = node.name


Exporter = Callable[[_Writer, Node], None]

#: the layer types with an ONNX mapping (the loss layers are handled separately)
EXPORTERS: dict[type, Exporter] = {
    Input: _input,
    FullyConnected: _fully_connected,
    Conv2D: _conv,
    Pooling2D: _pooling,
    Activation: _activation,
    BatchNormalization: _batch_norm,
    LayerNormalization: _layer_norm,
    Flatten: _flatten,
    Reshape: _reshape,
    Dropout: _dropout,
    Addition: _addition,
    Concat: _concat,
    Split: _split,
    Embedding: _embedding,
    Multiout: _multiout,
    MeanSquaredError: _loss,
    SoftmaxCrossEntropy: _loss,
    SigmoidCrossEntropy: _loss,
}


def _exporter(node: Node) -> Exporter:
    for cls in type(node.layer).__mro__:
        if cls in EXPORTERS:
            return EXPORTERS[cls]
    raise _refuse(node, f"no ONNX mapping for {node.layer.type_name} layers (exported: {exported_types()})")


def exported_types() -> str:
    return ", ".join(sorted({cls.type_name for cls in EXPORTERS if hasattr(cls, "type_name")}))


def to_onnx(model: Model, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The inference ONNX model of a compiled model (checked by ``onnx.checker``)."""
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ConfigError(f"opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, got {opset}")
    w = _Writer(model, opset)
    graph = w.graph
    exporters = [(node, _exporter(node)) for node in graph.nodes]  # refuse before writing
    for node, export in exporters:
        export(w, node)
    last = graph.nodes[-1]
    final = w.values[Port(last.name, 0)]
    if any(v.name == final for v in w.inputs):
        raise ConfigError("the model computes nothing: its output is its input")
    if final != OUTPUT:
        _rename_value(w, OUTPUT, f"{OUTPUT}/value")  # a layer named "output" that is not last
        _rename_value(w, final, OUTPUT)
    out_shape: list[int | str] = [BATCH_DIM, *last.output_shapes[0][1:]]
    proto = helper.make_model(
        helper.make_graph(
            w.nodes, model.name, w.inputs,
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_shape)], w.initializers,
        ),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="edgetrain",
    )
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def _rename_value(w: _Writer, old: str, new: str) -> None:
    """Rename value ``old`` wherever nodes write or read it, and in the graph inputs."""
    for onnx_node in w.nodes:
        for names in (onnx_node.input, onnx_node.output):
            for index, name in enumerate(names):
                if name == old:
                    names[index] = new
    for value in w.inputs:
        if value.name == old:
            value.name = new


def export_onnx(model: Model, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> None:
    """Write ``model`` (compiled) as an inference ONNX file, atomically. Layers without an
    ONNX mapping are refused with a :class:`ConfigError` naming them, before any file is
    written."""
    data = to_onnx(model, opset=opset).SerializeToString()

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    atomic_write(path, write)


__all__ = ["DEFAULT_OPSET", "export_onnx", "exported_types", "to_onnx"]
