"""A compiled model as data: every tensor of one iteration and the ordered steps.

The program is the boundary between analysis and execution. The planner reads it to
find lifetimes and offsets; the reference executor (and, later, the Rust core) runs it.
Its step list *is* the execution order: ``steps[k]`` runs at order ``k``.

Tensor names (``spec/program.md``):
``<layer>:output`` (``output<i>`` for i > 0), ``<layer>:<weight>``,
``<layer>:<weight>:grad``, ``<layer>:<weight>:<state>`` (optimizer state),
``<layer>:scratch:<name>``, ``<layer>:output:grad`` (dL/d output), ``label``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .graph import Graph, Node, Port
from .layers.base import StepKind, WeightPenalty
from .layers.input import Input
from .losses import LossLayer
from .tensors import TensorKind, TensorSpec


@dataclass(frozen=True)
class Binding:
    """The tensor names one layer's context is made of."""

    inputs: list[str]
    outputs: list[str]
    weights: dict[str, str]
    gradients: dict[str, str]
    optimizer_state: dict[str, dict[str, str]]
    scratch: dict[str, str]
    grad_outputs: list[str]
    grad_inputs: list[str]
    #: regularizer and decay of each trained weight (keys as in ``gradients``)
    penalties: dict[str, WeightPenalty] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One entry of the execution order. ``zero_fill`` lists derivative tensors nobody
    writes (outputs no layer reads) that must read as zero at this step."""

    kind: StepKind
    node: str
    zero_fill: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recomputation:
    """An activation output not kept from the forward to the backward pass
    (``spec/recompute.md``): the ``recompute`` step of ``node`` writes ``recomputed`` from
    ``reads`` (the normalization ``source``'s ``normalized`` scratch, ``gamma`` and
    ``beta``), then runs ``node``'s forward over it; backward steps read ``recomputed``
    wherever their binding names ``tensor``."""

    node: str
    source: str
    tensor: str
    recomputed: str
    reads: tuple[str, ...]


@dataclass
class Program:
    """Everything an executor needs, and everything a planner analyses."""

    graph: Graph
    training: bool
    dtype: np.dtype[np.floating]
    tensors: dict[str, TensorSpec]
    bindings: dict[str, Binding]
    steps: list[Step]
    inputs: list[str]
    output: str
    label: str | None = None
    loss: str | None = None
    #: nodes whose weights are trained (have gradients and an apply step)
    trained: frozenset[str] = field(default_factory=frozenset)
    #: recomputed activations by node (empty unless compiled with ``recompute=True``)
    recompute: dict[str, Recomputation] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return self.graph.node(name)

    def step_binding(self, step: Step) -> Binding:
        """The binding ``step`` works on: its node's, except that a backward step
        (``calc_gradient``, ``calc_derivative``) reads a recomputed tensor in place of the
        forward tensor it stands for."""
        binding = self.bindings[step.node]
        if not self.recompute or step.kind not in _BACKWARD_READS:
            return binding
        renamed = {r.tensor: r.recomputed for r in self.recompute.values()}
        if not renamed.keys() & {*binding.inputs, *binding.outputs}:
            return binding
        return replace(
            binding,
            inputs=[renamed.get(n, n) for n in binding.inputs],
            outputs=[renamed.get(n, n) for n in binding.outputs],
        )


#: step kinds that read forward tensors through a layer's declared reads
_BACKWARD_READS = (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE)


def output_name(node: str, index: int) -> str:
    return f"{node}:output" if index == 0 else f"{node}:output{index}"


def derivative_name(port: Port) -> str:
    return output_name(port.node, port.index) + ":grad"


def _gradient_flow(graph: Graph, training: bool) -> tuple[set[str], set[str]]:
    """(nodes that train their weights, nodes whose output needs a derivative)."""
    trained: set[str] = set()
    needs_grad: set[str] = set()
    if not training:
        return trained, needs_grad
    for node in graph.nodes:
        has_trainable = any(w.trainable for w in node.setup.weights)
        if node.layer.trainable and has_trainable:
            trained.add(node.name)
        if node.name in trained or any(p.node in needs_grad for p in node.inputs):
            needs_grad.add(node.name)
    return trained, needs_grad


def build_program(
    graph: Graph,
    *,
    training: bool,
    dtype: np.dtype[np.floating] | type = np.float32,
    optimizer_state: Sequence[str] = (),
) -> Program:
    """Name every tensor and lay out the steps of one iteration (forward only when
    ``training`` is False)."""
    ftype: np.dtype[np.floating] = np.dtype(dtype)
    trained, needs_grad = _gradient_flow(graph, training)
    tensors: dict[str, TensorSpec] = {}
    bindings: dict[str, Binding] = {}

    def add(name: str, shape: tuple[int, ...], kind: TensorKind, dt: np.dtype | None = None) -> str:
        tensors[name] = TensorSpec(name, tuple(shape), dt if dt is not None else ftype, kind)
        return name

    def derivative_needed(node: Node) -> bool:
        return node.layer.has_derivative and any(p.node in needs_grad for p in node.inputs)

    scheduled: dict[str, set[StepKind]] = {}
    for node in graph.nodes:
        kinds = {StepKind.FORWARD}
        if node.name in trained:
            kinds |= {StepKind.CALC_GRADIENT, StepKind.APPLY_GRADIENT}
        if derivative_needed(node):
            kinds.add(StepKind.CALC_DERIVATIVE)
        scheduled[node.name] = kinds

    for node in graph.nodes:
        kind = TensorKind.INPUT if isinstance(node.layer, Input) else TensorKind.ACTIVATION
        outputs = [add(output_name(node.name, i), s, kind) for i, s in enumerate(node.output_shapes)]
        weights, gradients, state, penalties = {}, {}, {}, {}
        for w in node.setup.weights:
            weights[w.name] = add(f"{node.name}:{w.name}", w.shape, TensorKind.WEIGHT)
            if node.name in trained and w.trainable:
                gradients[w.name] = add(f"{node.name}:{w.name}:grad", w.shape, TensorKind.GRADIENT)
                penalties[w.name] = node.layer.weight_penalty(w)
                state[w.name] = {
                    s: add(f"{node.name}:{w.name}:{s}", w.shape, TensorKind.OPTIMIZER_STATE)
                    for s in optimizer_state
                }
        scratch = {
            s.name: add(
                f"{node.name}:scratch:{s.name}",
                s.shape,
                TensorKind.SCRATCH,
                np.dtype(s.dtype) if s.dtype else None,
            )
            for s in node.setup.scratch
            if s.used_in & scheduled[node.name]
        }
        grad_outputs = (
            [
                add(derivative_name(Port(node.name, i)), s, TensorKind.DERIVATIVE)
                for i, s in enumerate(node.output_shapes)
            ]
            if node.name in needs_grad and not isinstance(node.layer, LossLayer)
            else []
        )
        grad_inputs = (
            [derivative_name(p) for p in node.inputs] if derivative_needed(node) else []
        )
        for port, name in zip(node.inputs, grad_inputs):
            # a layer writes the derivative of every input; one whose producer needs none
            # (an input fanned out to a trained and an untrained branch) is written, never read
            if name not in tensors:
                add(name, graph.shape_of(port), TensorKind.DERIVATIVE)
        bindings[node.name] = Binding(
            inputs=[output_name(p.node, p.index) for p in node.inputs],
            outputs=outputs,
            weights=weights,
            gradients=gradients,
            optimizer_state=state,
            scratch=scratch,
            grad_outputs=grad_outputs,
            grad_inputs=grad_inputs,
            penalties=penalties,
        )

    steps = [Step(StepKind.FORWARD, n.name) for n in graph.nodes]
    for node in reversed(graph.nodes):
        unwritten = tuple(
            derivative_name(Port(node.name, i))
            for i, readers in enumerate(node.consumers)
            if not readers and bindings[node.name].grad_outputs
        )
        backward = [
            k
            for k in (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE, StepKind.APPLY_GRADIENT)
            if k in scheduled[node.name]
        ]
        for position, k in enumerate(backward):
            steps.append(Step(k, node.name, unwritten if position == 0 else ()))

    loss_nodes = [n for n in graph.nodes if isinstance(n.layer, LossLayer)]
    label = loss = None
    output = output_name(graph.nodes[-1].name, 0)
    if loss_nodes:
        loss_node = loss_nodes[-1]
        output = bindings[loss_node.name].outputs[0]
        loss = bindings[loss_node.name].scratch.get("loss")
        label = add("label", loss_node.output_shapes[0], TensorKind.LABEL)
    return Program(
        graph=graph,
        training=training,
        dtype=ftype,
        tensors=tensors,
        bindings=bindings,
        steps=steps,
        inputs=[output_name(n.name, 0) for n in graph.input_nodes()],
        output=output,
        label=label,
        loss=loss,
        trained=frozenset(trained),
    )
