"""Recompute instead of keep: fewer bytes alive in the backward pass for a little compute.

Two rewrites of a training program (``spec/recompute.md``), both exact (training computes
the same bits with and without them):

* An activation whose only input is a normalization's output (``conv -> bn -> relu``) is
  not kept from the forward to the backward pass: a ``recompute`` step, right before the
  first backward step that reads it, writes it again from the normalization's
  ``normalized`` scratch, ``gamma`` and ``beta`` (kept for the normalization's own
  backward anyway) and runs the activation over it. The recomputed value is a second
  tensor, ``<activation>:output:recomputed``, so every tensor keeps one interval and one
  offset and the planners, the bound and the checker need no new idea.
* Max pooling drops its argmax scratch (kept from the forward pass to its derivative)
  when its input and its output are alive at its derivative anyway; the derivative then
  finds each window's winner again from the two.

Each rewrite is applied only where the lifetimes say it frees bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..layers.activation import Activation
from ..layers.base import Layer, StepKind, backward_uses
from ..layers.normalization import BatchNormalization, LayerNormalization
from ..layers.pooling import Pooling2D
from ..program import Program, Recomputation, Step
from ..tensors import TensorKind, TensorSpec
from .lifetimes import analyse_usage, forward_step_count, operand_tensors
from .plan import MemoryPlan, plan_memory
from .sharing import Buffer, find_sharing, group_buffers

if TYPE_CHECKING:
    from ..model import Model

#: the name of the tensor a recompute step writes is the forward tensor's plus this
RECOMPUTED_SUFFIX = ":recomputed"
#: normalizations whose training output can be written again from what they keep
RECOMPUTABLE = (BatchNormalization, LayerNormalization)

_BACKWARD = (StepKind.CALC_GRADIENT, StepKind.CALC_DERIVATIVE)


def _buffers(program: Program) -> tuple[dict[str, Buffer], int]:
    """Every tensor's buffer in ``program``, and the number of forward steps."""
    usage = analyse_usage(program)
    buffers = group_buffers(usage, find_sharing(program, usage))
    return {m: b for b in buffers for m in b.members}, forward_step_count(program)


def _backward_readers(program: Program, tensor: str) -> list[int]:
    """Orders of the backward steps that read ``tensor`` through a layer's declared reads."""
    found = []
    for k, step in enumerate(program.steps):
        if step.kind in _BACKWARD:
            layer = program.node(step.node).layer
            names = operand_tensors(program.bindings[step.node], backward_uses(layer, step.kind))
            if tensor in names:
                found.append(k)
    return found


# -- max pooling -------------------------------------------------------------------------


def pooling_without_argmax(program: Program) -> list[str]:
    """Max-pooling nodes of a training program whose input buffer is alive at the node's
    derivative step anyway (a later backward step reads it: no byte more) and whose
    output buffer is kept into the backward pass anyway (read by the consumers' backward
    steps, which run before the derivative: it is stretched over a few orders where the
    argmax, as many elements, would be alive). The argmax scratch is alive from the
    forward step to the derivative."""
    buffer_of, forward_end = _buffers(program)
    chosen = []
    for k, step in enumerate(program.steps):
        layer = program.node(step.node).layer
        if (
            step.kind is not StepKind.CALC_DERIVATIVE
            or not isinstance(layer, Pooling2D)
            or layer.pooling != "max"
        ):
            continue
        binding = program.bindings[step.node]
        if buffer_of[binding.inputs[0]].last >= k and buffer_of[binding.outputs[0]].last >= forward_end:
            chosen.append(step.node)
    return chosen


def set_pooling_argmax(layers: Iterable[Layer], dropped: Sequence[str] = ()) -> None:
    """Every max pooling layer keeps its argmax except those named in ``dropped``."""
    for layer in layers:
        if isinstance(layer, Pooling2D):
            layer.keep_argmax = layer.name not in dropped


# -- activations after a normalization -------------------------------------------------


def recompute_candidates(program: Program) -> list[str]:
    """Activation nodes whose output a recompute step could write again exactly: an
    alias-safe activation (its backward reads only its output) whose one input is output 0
    of a normalization read by nothing else, whose ``normalized`` scratch that
    normalization's backward keeps anyway; its output is read in the backward pass,
    directly (no view of it is read there, which would keep its bytes) and is not a
    result."""
    found = []
    backward_nodes = {s.node for s in program.steps if s.kind in _BACKWARD}
    for node in program.graph.nodes:
        layer = node.layer
        if not isinstance(layer, Activation) or not layer.supports_in_place:
            continue
        if len(node.inputs) != 1 or node.inputs[0].index != 0:
            continue
        source = program.node(node.inputs[0].node)
        if not isinstance(source.layer, RECOMPUTABLE) or len(source.consumers[0]) != 1:
            continue
        if source.name not in backward_nodes:
            continue
        kept = program.bindings[source.name]
        if not all(s in kept.scratch for s in source.layer.recompute_scratch):
            continue
        tensor = program.bindings[node.name].outputs[0]
        if tensor in (program.output, program.loss):
            continue
        if any(program.node(c).layer.output_is_view for c, _ in node.consumers[0]):
            continue
        if _backward_readers(program, tensor):
            found.append(node.name)
    return found


def add_recompute(program: Program, nodes: Sequence[str]) -> Program:
    """``program`` with a recompute step for each activation node in ``nodes`` (from
    :func:`recompute_candidates`), right before the first backward step reading its
    output, and the recomputed tensor after the forward one in the tensor table."""
    if not nodes:
        return program
    recompute: dict[str, Recomputation] = {}
    for name in nodes:
        source = program.node(name).inputs[0].node
        layer = program.node(source).layer
        assert isinstance(layer, RECOMPUTABLE)
        kept = program.bindings[source]
        tensor = program.bindings[name].outputs[0]
        reads = tuple(kept.scratch[s] for s in layer.recompute_scratch)
        reads += tuple(kept.weights[w] for w in layer.recompute_weights)
        recompute[name] = Recomputation(name, source, tensor, tensor + RECOMPUTED_SUFFIX, reads)
    tensors: dict[str, TensorSpec] = {}
    by_tensor = {r.tensor: r for r in recompute.values()}
    for name, spec in program.tensors.items():
        tensors[name] = spec
        if name in by_tensor:
            new = by_tensor[name].recomputed
            tensors[new] = TensorSpec(new, spec.shape, spec.dtype, TensorKind.ACTIVATION)
    first = {name: _backward_readers(program, r.tensor)[0] for name, r in recompute.items()}
    steps: list[Step] = []
    for k, step in enumerate(program.steps):
        steps += [Step(StepKind.RECOMPUTE, n) for n in nodes if first[n] == k]
        steps.append(step)
    return replace(program, tensors=tensors, steps=steps, recompute=recompute)


def choose_recompute(program: Program) -> list[str]:
    """The candidates whose forward buffer then dies in the forward pass (another tensor
    of that buffer, e.g. a dropout computed in place over it, may still be read in the
    backward pass, and recomputing would then only add bytes): candidates failing that
    are dropped until every remaining one frees its buffer."""
    chosen = recompute_candidates(program)
    while chosen:
        buffer_of, forward_end = _buffers(add_recompute(program, chosen))
        freed = [n for n in chosen if buffer_of[program.bindings[n].outputs[0]].last < forward_end]
        if freed == chosen:
            break
        chosen = freed
    return chosen


def build_with_recompute(build: Callable[[], Program], layers: Sequence[Layer], recompute: bool) -> Program:
    """The program ``build()`` makes from ``layers``, with recomputation when
    ``recompute`` (training programs only): max pooling layers that can drop their argmax
    do (``build`` runs again after they change), then the activations chosen by
    :func:`choose_recompute` get recompute steps. Without ``recompute`` every max pooling
    layer keeps its argmax (a layer object may have been compiled with it before)."""
    set_pooling_argmax(layers)
    program = build()
    if not recompute or not program.training:
        return program
    dropped = pooling_without_argmax(program)
    if dropped:
        set_pooling_argmax(layers, dropped)
        program = build()
    return add_recompute(program, choose_recompute(program))


# -- what recompute did, for reports -------------------------------------------------------


@dataclass(frozen=True)
class RecomputeSummary:
    """What ``compile(recompute=True)`` changed in a model's training program:
    ``recomputed`` activation nodes, max ``pooling`` layers without their argmax, and
    ``without``, the plan of the same model compiled without recompute."""

    recomputed: tuple[str, ...]
    pooling: tuple[str, ...]
    without: MemoryPlan


def recompute_summary(model: Model, planner: str) -> RecomputeSummary | None:
    """The summary for a model compiled with ``recompute=True`` for training (None
    otherwise). The plan without recompute is made from copies of the layers, so the
    compiled model is left untouched."""
    if not model.recompute or model.optimizer is None:
        return None
    program = model.program
    pooling = tuple(
        n.name
        for n in program.graph.nodes
        if isinstance(n.layer, Pooling2D) and n.layer.pooling == "max" and not n.layer.keep_argmax
    )
    layers = [copy.copy(layer) for layer in model.layers]
    plain = model._build_program(layers, training=True, recompute=False)
    return RecomputeSummary(tuple(program.recompute), pooling, plan_memory(plain, planner))
