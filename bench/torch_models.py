"""The same network as an edgetrain model file, as a PyTorch module, for the speed benchmark.

The module is made from edgetrain's own compiled graph (``build_graph``: the activations
as their own nodes, the fan-outs, the loss with the trailing softmax fused) and each
layer's properties as ``lower_op`` resolves them for the Rust core (padding as four
numbers, strides, pools), so PyTorch runs the layers, shapes and loss the file says,
not a hand-written look-alike. Initial values differ (they do not change the time).

Only the benchmark's PyTorch worker imports this module; PyTorch is the optional
``bench`` extra and never a dependency of the package or its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgetrain.backends.lowering import lower_op
from edgetrain.errors import ConfigError
from edgetrain.graph import Graph, Node

#: a graph node as PyTorch: its inputs to its output
Forward = Callable[[list[Tensor]], Tensor]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "tanh_gelu": lambda x: F.gelu(x, approximate="tanh"),
    "swish": F.silu,
}


def _pad_for_conv(pads: list[int]) -> tuple[tuple[int, int] | None, list[int] | None]:
    """Symmetric padding as the conv's own argument; asymmetric as an ``F.pad`` first."""
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return (top, left), None
    return None, [left, right, top, bottom]


class GraphModule(nn.Module):
    """Runs the graph's nodes in edgetrain's execution order; ``forward`` returns the loss
    (the loss node's value) for inputs ``x`` and integer class labels ``y``."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[Node, Forward]] = []
        self.loss_kind: str | None = None
        for node in graph.nodes:
            input_shapes = [graph.shape_of(port) for port in node.inputs]
            op = lower_op(node.layer, input_shapes)
            self.steps.append((node, self._forward_of(node, op, input_shapes)))

    def _module(self, node: Node, module: nn.Module) -> nn.Module:
        self.layers[node.name.replace("/", "__").replace(".", "_")] = module
        return module

    def _forward_of(self, node: Node, op: dict[str, Any], shapes: list[tuple[int, ...]]) -> Forward:
        kind = op["type"]
        weights = {w.name: w.shape for w in node.setup.weights}
        if kind == "input":
            return lambda xs: xs[0]
        if kind == "fully_connected":
            fan_in, units = weights["weight"]
            linear = self._module(node, nn.Linear(fan_in, units, bias="bias" in weights))
            return lambda xs: linear(xs[0])
        if kind == "conv2d":
            out_channels, in_channels, kh, kw = weights["weight"]
            padding, explicit = _pad_for_conv(op["padding"])
            conv = self._module(
                node,
                nn.Conv2d(
                    in_channels,
                    out_channels,
                    (kh, kw),
                    stride=tuple(op["stride"]),
                    padding=padding or 0,
                    dilation=tuple(op["dilation"]),
                    bias="bias" in weights,
                ),
            )
            if explicit is None:
                return lambda xs: conv(xs[0])
            return lambda xs: conv(F.pad(xs[0], explicit))
        if kind == "pooling2d":
            return self._pooling(op)
        if kind == "activation":
            name = op["kind"]
            if name == "softmax":
                return lambda xs: torch.softmax(xs[0], dim=-1)
            if name == "leaky_relu":
                return lambda xs: F.leaky_relu(xs[0], 0.01)
            function = ACTIVATIONS[name]
            return lambda xs: function(xs[0])
        if kind == "view":
            out_shape = node.output_shapes[0]
            return lambda xs: xs[0].reshape(xs[0].shape[0], *out_shape[1:])
        if kind == "multiout":
            return lambda xs: xs[0]
        if kind == "addition":
            return lambda xs: torch.stack(xs).sum(0) if len(xs) > 2 else xs[0] + xs[1]
        if kind == "batch_normalization":
            channels = shapes[0][op["axis"]]
            if op["axis"] != 1:
                raise ConfigError(f"batch norm over axis {op['axis']} has no PyTorch twin here")
            norm_cls = nn.BatchNorm2d if len(shapes[0]) == 4 else nn.BatchNorm1d
            # edgetrain (as NNTrainer) keeps momentum * moving + (1 - momentum) * batch
            norm = self._module(
                node, norm_cls(channels, eps=op["epsilon"], momentum=1.0 - op["momentum"])
            )
            return lambda xs: norm(xs[0])
        if kind == "loss" and op["loss"] == "cross_entropy":
            self.loss_kind = "cross_entropy"
            return lambda xs: xs[0]
        raise ConfigError(
            f"layer '{node.name}' ({kind}) has no PyTorch twin in bench/torch_models.py"
        )

    def _pooling(self, op: dict[str, Any]) -> Forward:
        pooling = op["pooling"]
        if pooling == "global_max":
            return lambda xs: torch.amax(xs[0], dim=(2, 3), keepdim=True)
        if pooling == "global_average":
            return lambda xs: torch.mean(xs[0], dim=(2, 3), keepdim=True)
        top, bottom, left, right = op["padding"]
        if top != bottom or left != right:
            raise ConfigError("asymmetric pooling padding has no PyTorch twin here")
        pool, stride = tuple(op["pool"]), tuple(op["stride"])
        if pooling == "max":
            return lambda xs: F.max_pool2d(xs[0], pool, stride, (top, left))
        return lambda xs: F.avg_pool2d(xs[0], pool, stride, (top, left), count_include_pad=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # a value is dropped after its last reader, as idiomatic PyTorch code would
        reads: dict[str, int] = {}
        for node, _ in self.steps:
            for port in node.inputs:
                reads[port.node] = reads.get(port.node, 0) + 1
        values: dict[str, Tensor] = {}
        last = x
        for node, run in self.steps:
            inputs = [values[port.node] for port in node.inputs] if node.inputs else [x]
            for port in node.inputs:
                reads[port.node] -= 1
                if reads[port.node] == 0:
                    del values[port.node]
            last = run(inputs)
            if reads.get(node.name, 0):
                values[node.name] = last
        if self.loss_kind != "cross_entropy":
            raise ConfigError("the PyTorch twin needs a model file with loss = cross")
        return F.cross_entropy(last.reshape(last.shape[0], -1), y)
