"""What the ONNX op converters share: the values by ONNX name, the layers made so far,
and how a refusal names what went wrong."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from onnx import NodeProto, helper

from ..layers import Input
from ..layers.base import Layer
from ..tensors import Shape, format_shape

Array = NDArray[Any]


class Refused(ValueError):
    """A node edgetrain cannot import; the importer adds the file, node and op."""


@dataclass(frozen=True)
class Tensor:
    """A value computed at run time, of ``(batch, *shape)``: output 0 of layer ``layer``, or
    output ``i`` when ``layer`` is written ``name(i)`` (edgetrain's port syntax).

    ``ids``: integer ids (an integer graph input, or a cast to an integer type), which
    edgetrain carries in its float tensors and only an embedding lookup may read."""

    layer: str
    shape: Shape
    ids: bool = False

    @property
    def source(self) -> str:
        """The name of the layer computing it (without the output index)."""
        return self.layer.split("(", 1)[0]


@dataclass
class ImportedLayer:
    """A layer made from one or more nodes, with its weights by weight name."""

    layer: Layer
    weights: dict[str, Array]
    output: Tensor
    #: every output (``output`` is the first)
    outputs: list[Tensor]
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
        #: a 1-D tensor ``(C, L)`` reshaped back from the ``(C, 1, L)`` map it came from
        self.expanded: dict[Tensor, Tensor] = {}
        self._names: set[str] = set()

    # -- values ------------------------------------------------------------------------

    def tensor(self, node: NodeProto, index: int, *, ids: bool = False) -> Tensor:
        """Input ``index`` as a run-time tensor; integer ids only where ``ids`` (a lookup)."""
        value = self.values[node.input[index]]
        if not isinstance(value, Tensor):
            raise Refused(f"input {index} ('{node.input[index]}') must be computed from the model's inputs, not a constant")
        if value.ids and not ids:
            raise Refused(
                f"input {index} ('{node.input[index]}') holds integer ids; edgetrain only looks them up "
                "(Gather from an embedding table)"
            )
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
        return value.astype(np.float32, copy=False)

    # -- layers ------------------------------------------------------------------------

    def layer_name(self, node: NodeProto, hint: str | None, suffix: str = "") -> str:
        """A unique layer name: the name of the initializer behind the weight ``hint``
        without ``.weight`` (PyTorch's module path), else the node's name, else the op
        and the layer's index."""
        source = self.origins.get(hint, hint) if hint else None
        weight_name = source if source in self.initializers else None
        for candidate in (weight_name, node.name):
            if candidate:
                cleaned = clean_name(candidate)
                if cleaned:
                    break
        else:
            cleaned = f"{node.op_type.lower()}{len(self.layers)}"
        cleaned += suffix
        name = cleaned
        count = 1
        while name in self._names:
            count += 1
            name = f"{cleaned}_{count}"
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
        suffix: str = "",
    ) -> Tensor:
        """Place ``layer`` reading ``inputs``; its output shape and weight shapes come from
        its own ``setup`` (so a weight that does not fit is refused here)."""
        layer.name = self.layer_name(node, hint, suffix)
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
        outputs = [
            Tensor(layer.name if i == 0 else f"{layer.name}({i})", tuple(shape[1:]))
            for i, shape in enumerate(setup.output_shapes)
        ]
        self.layers.append(ImportedLayer(layer, weights, outputs[0], outputs, bias_from_add, [node.name]))
        return outputs[0]

    def producer(self, tensor: Tensor) -> ImportedLayer | None:
        """The layer computing ``tensor`` as its first output, if any."""
        return next((item for item in self.layers if item.output == tensor), None)


def clean_name(text: str) -> str:
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


def only_attributes(node: NodeProto, allowed: dict[str, Any]) -> None:
    """Refuse any attribute whose value is not the one edgetrain computes."""
    for name, expected in allowed.items():
        value = attribute(node, name)
        if value is not None and value != expected:
            raise Refused(f"{name}={value!r} is not supported (only {expected!r})")


Converter = Callable[[Context, NodeProto], "Tensor | Array | list[Tensor]"]


def as_vector(value: Array, size: int, what: str) -> Array:
    """A bias given as ``(size,)``, ``(1, size)``, a scalar or ``(1,)``, as ``(size,)``."""
    if value.size == 1:
        return np.full(size, value.ravel()[0], dtype=np.float32)
    if value.size != size or any(d != 1 for d in value.shape[:-1]):
        raise Refused(f"{what} of shape {format_shape(value.shape)} is not a bias of {size} values")
    return value.reshape(size).astype(np.float32)


def extra_outputs_read(ctx: Context, node: NodeProto) -> bool:
    """Whether any output but the first (statistics, indices, masks) is read."""
    return any(name and ctx.readers.get(name, 0) for name in node.output[1:])
