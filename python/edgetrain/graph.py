"""From a list of layers to a checked, ordered DAG with every shape known.

Semantics (written out in ``spec/graph.md``):

* a layer without ``input_layers`` reads the output of the layer listed before it;
* ``activation=`` on a layer becomes a separate activation layer named
  ``<name>/activation`` that takes over the layer's consumers;
* an output read by more than one layer gets a :class:`Multiout` node
  ``<name>/multiout`` so that every tensor has one reader and one derivative;
* nodes are ordered topologically, ties broken by the order the user listed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import ConfigError, ShapeError
from .layers.base import Layer, LayerSetup
from .layers.input import Input
from .layers.multiout import Multiout
from .losses import LossLayer, SigmoidCrossEntropy
from .tensors import Shape, format_shape


@dataclass(frozen=True)
class Port:
    """Output ``index`` of node ``node``."""

    node: str
    index: int = 0


@dataclass
class Node:
    """A layer placed in the graph: where its inputs come from and what ``setup`` declared."""

    name: str
    layer: Layer
    inputs: list[Port]
    setup: LayerSetup = field(default_factory=lambda: LayerSetup(output_shapes=[]))
    #: for each output, the (consumer node, input index) pairs that read it
    consumers: list[list[tuple[str, int]]] = field(default_factory=list)

    @property
    def output_shapes(self) -> list[Shape]:
        return self.setup.output_shapes


@dataclass
class Graph:
    """Nodes in execution (topological) order, with shapes for one batch size."""

    nodes: list[Node]
    batch_size: int

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if isinstance(n.layer, Input)]

    def shape_of(self, port: Port) -> Shape:
        return self._by_name[port.node].output_shapes[port.index]


def assign_names(layers: Sequence[Layer]) -> None:
    """Refuse duplicate names, then give unnamed layers ``<type><index>`` names that no
    named layer uses (``_`` appended until free)."""
    seen: set[str] = set()
    for layer in layers:
        if layer.name is None:
            continue
        if layer.name in seen:
            raise ConfigError(f"two layers are named '{layer.name}'; layer names must be unique")
        seen.add(layer.name)
    for index, layer in enumerate(layers):
        if layer.name is None:
            candidate = f"{layer.type_name}{index}"
            while candidate in seen:
                candidate += "_"
            layer.name = candidate
            seen.add(candidate)


def _check_generated_name(name: str, taken: set[str], why: str) -> None:
    if name in taken:
        raise ConfigError(
            f"layer name '{name}' is reserved for the {why}; rename that layer"
        )
    taken.add(name)


def _parse_port(text: str) -> Port:
    """``"name"`` or ``"name(1)"`` (NNTrainer's syntax for output 1 of ``name``)."""
    text = text.strip()
    if text.endswith(")") and "(" in text:
        base, _, index = text[:-1].partition("(")
        if index.isdigit():
            return Port(base.strip(), int(index))
    return Port(text)


def _connect(layers: Sequence[Layer]) -> list[Node]:
    nodes: list[Node] = []
    previous: str | None = None
    for layer in layers:
        assert layer.name is not None
        if isinstance(layer, Input):
            inputs: list[Port] = []
            if layer.input_layers:
                raise ConfigError(f"input layer '{layer.name}' cannot have input_layers")
        elif layer.input_layers is not None:
            inputs = [_parse_port(s) for s in layer.input_layers]
        elif previous is None:
            raise ConfigError(
                f"layer '{layer.name}' is first but is not an input layer: "
                "start the model with an Input layer or give it input_layers"
            )
        else:
            inputs = [Port(previous)]
        nodes.append(Node(layer.name, layer, inputs))
        previous = layer.name
    return nodes


def _realize_activations(nodes: list[Node]) -> tuple[list[Node], dict[str, str]]:
    """Split ``activation=`` into its own node that takes over the layer's consumers."""
    from .layers.activation import Activation

    renamed: dict[str, str] = {}
    out: list[Node] = []
    taken = {n.name for n in nodes}
    for node in nodes:
        out.append(node)
        kind = node.layer.activation
        if kind is None or kind == "none" or isinstance(node.layer, Activation):
            continue
        act_name = f"{node.name}/activation"
        _check_generated_name(act_name, taken, f"activation of layer '{node.name}'")
        act = Activation(kind, name=act_name)
        act.trainable = node.layer.trainable
        out.append(Node(act_name, act, [Port(node.name)]))
        renamed[node.name] = act_name
    for node in out:
        if node.name in renamed.values():
            continue
        node.inputs = [
            Port(renamed[p.node], p.index) if p.node in renamed and p.index == 0 else p
            for p in node.inputs
        ]
    return out, renamed


def _attach_loss(nodes: list[Node], output: str, loss: LossLayer) -> list[Node]:
    """Append the loss node after ``output``, folding a softmax/sigmoid it fuses with."""
    from .layers.activation import Activation

    by_name = {n.name: n for n in nodes}
    last = by_name[output]
    readers = [n for n in nodes if any(p.node == output for p in n.inputs)]
    if (
        loss.follows_activation
        and isinstance(last.layer, Activation)
        and last.layer.kind == SigmoidCrossEntropy.fuses_activation
    ):
        loss = SigmoidCrossEntropy()
    if (
        isinstance(last.layer, Activation)
        and last.layer.kind == loss.fuses_activation
        and not readers
        and len(last.inputs) == 1
    ):
        nodes = [n for n in nodes if n is not last]
        source = last.inputs[0]
    else:
        source = Port(output)
    taken = {n.name for n in nodes}
    name = "loss"
    while name in taken:
        name = "_" + name
    loss.name = name
    return [*nodes, Node(name, loss, [source])]


def _toposort(nodes: list[Node]) -> list[Node]:
    """Kahn's algorithm; among ready nodes the one listed first runs first."""
    names = {n.name: i for i, n in enumerate(nodes)}
    for node in nodes:
        for port in node.inputs:
            if port.node not in names:
                raise ConfigError(f"layer '{node.name}' reads '{port.node}', which is not a layer of the model")
    pending = {n.name: len({p.node for p in n.inputs}) for n in nodes}
    readers: dict[str, list[str]] = {n.name: [] for n in nodes}
    for node in nodes:
        for producer in dict.fromkeys(p.node for p in node.inputs):
            readers[producer].append(node.name)
    ready = sorted((names[n] for n, c in pending.items() if c == 0))
    ordered: list[Node] = []
    while ready:
        current = nodes[ready.pop(0)]
        ordered.append(current)
        for reader in readers[current.name]:
            pending[reader] -= 1
            if pending[reader] == 0:
                ready.append(names[reader])
                ready.sort()
    if len(ordered) != len(nodes):
        stuck = sorted(n for n, c in pending.items() if c > 0)
        raise ConfigError(f"the model has a cycle through layers {stuck}")
    return ordered


def _source_name(by_name: dict[str, Node], port: Port) -> str:
    """The user's layer behind a port: fan-out nodes are seen through; an output other
    than the first is written ``name(i)``."""
    node = by_name[port.node]
    while isinstance(node.layer, Multiout):
        port = node.inputs[0]
        node = by_name[port.node]
    return port.node if port.index == 0 else f"{port.node}({port.index})"


def _infer_shapes(nodes: list[Node], batch_size: int) -> None:
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        if isinstance(node.layer, Input):
            in_shapes: list[Shape] = [(batch_size, *node.layer.shape)]
        else:
            in_shapes = []
            for port in node.inputs:
                producer = by_name[port.node]
                if port.index >= len(producer.output_shapes):
                    raise ConfigError(
                        f"layer '{node.name}' reads output {port.index} of '{port.node}', "
                        f"which has {len(producer.output_shapes)} output(s)"
                    )
                in_shapes.append(producer.output_shapes[port.index])
        try:
            node.setup = node.layer.setup(in_shapes)
        except ShapeError as err:
            sources = ", ".join(
                f"'{_source_name(by_name, p)}' gives {format_shape(s)}"
                for p, s in zip(node.inputs, in_shapes)
            )
            raise ShapeError(f"{err} (inputs: {sources or 'none'})") from None
        node.consumers = [[] for _ in node.output_shapes]


def _insert_multiouts(nodes: list[Node]) -> list[Node]:
    """Give every output read more than once its own multiout node."""
    readers: dict[Port, list[tuple[Node, int]]] = {}
    for node in nodes:
        for i, port in enumerate(node.inputs):
            readers.setdefault(port, []).append((node, i))
    out: list[Node] = []
    taken = {n.name for n in nodes}
    for node in nodes:
        out.append(node)
        for index in sorted({p.index for p in readers if p.node == node.name}):
            port = Port(node.name, index)
            reading = readers[port]
            if len(reading) < 2:
                continue
            name = f"{node.name}/multiout" if index == 0 else f"{node.name}/multiout{index}"
            _check_generated_name(name, taken, f"fan-out of layer '{node.name}'")
            fan = Multiout(outputs=len(reading), name=name)
            fan.trainable = node.layer.trainable
            out.append(Node(name, fan, [port]))
            for k, (reader, slot) in enumerate(reading):
                reader.inputs[slot] = Port(name, k)
    return out


def build_graph(layers: Sequence[Layer], batch_size: int, loss: LossLayer | None = None) -> Graph:
    """Connect, realise activations, attach the loss to the last listed layer, order, add
    fan-out nodes and infer every shape."""
    if not layers:
        raise ConfigError("a model needs at least one layer")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    assign_names(layers)
    nodes, renamed = _realize_activations(_connect(layers))
    if loss is not None:
        last = layers[-1].name
        assert last is not None
        nodes = _attach_loss(nodes, renamed.get(last, last), loss)
    nodes = _toposort(nodes)
    if not any(isinstance(n.layer, Input) for n in nodes):
        raise ConfigError("the model has no Input layer")
    nodes = _insert_multiouts(nodes)
    _infer_shapes(nodes, batch_size)
    graph = Graph(nodes, batch_size)
    for node in nodes:
        for slot, port in enumerate(node.inputs):
            graph.node(port.node).consumers[port.index].append((node.name, slot))
    return graph
