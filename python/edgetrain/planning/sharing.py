"""Memory-sharing rules: which tensors may be the same bytes as another on purpose.

Tensors that share form a *buffer*: one range of bytes, planned as a single block whose
lifetime is the union of its members'. A tensor joins a buffer at the step that first
writes it, and only when the rule's safety condition holds at that step (reasons in
``spec/sharing.md``):

* ``view``: a layer with ``output_is_view`` (flatten, reshape, the MSE output, every
  output of a fan-out) sees its input's bytes with another shape; nothing is
  overwritten.
* ``in_place``: a layer with ``supports_in_place`` computes its output over its input
  when no tensor of the input's buffer is used after this forward step.
* ``derivative_in_place``: a layer with ``derivative_in_place`` (or ``output_is_view``,
  whose derivative is the incoming one seen with the input's shape) writes
  ``grad_inputs[0]`` over ``grad_outputs[0]`` when no tensor of that buffer is used
  after this step.
* ``derivative_passthrough``: a layer with ``derivative_passthrough`` (addition) hands
  the incoming derivative to every input unchanged, so all of them are its bytes.

Writers check the whole buffer, so a buffer with several readers (views, a passed-on
derivative) is never overwritten while one of them still needs it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..layers.base import Operand, StepKind
from ..program import Program
from ..tensors import TensorKind
from .lifetimes import Lifespan, TensorUsage


class SharingRule(enum.Enum):
    """Why a tensor is placed on another tensor's bytes."""

    VIEW = "view"
    IN_PLACE = "in_place"
    DERIVATIVE_IN_PLACE = "derivative_in_place"
    DERIVATIVE_PASSTHROUGH = "derivative_passthrough"


@dataclass(frozen=True)
class Share:
    """``tensor`` takes the bytes of ``source`` (whose buffer is named ``buffer``) from
    order ``order`` on, by ``rule``."""

    tensor: str
    source: str
    buffer: str
    rule: SharingRule
    order: int


@dataclass(frozen=True)
class Buffer:
    """Bytes shared by ``members`` (program order), named after their root, alive over
    ``[first, last]``; ``nbytes`` is the largest member."""

    name: str
    members: tuple[str, ...]
    nbytes: int
    first: int
    last: int
    lifespan: Lifespan
    kind: TensorKind


_UNSHAREABLE = (TensorKind.WEIGHT, TensorKind.OPTIMIZER_STATE, TensorKind.LABEL)


class _Groups:
    """Union of tensors into buffers, remembering each buffer's members in join order."""

    def __init__(self, usage: Mapping[str, TensorUsage]) -> None:
        self.usage = usage
        self.root: dict[str, str] = {name: name for name in usage}
        self.members: dict[str, list[str]] = {name: [name] for name in usage}

    def last_use(self, tensor: str) -> int:
        return max(self.usage[m].last for m in self.members[self.root[tensor]])

    def join(self, tensor: str, source: str) -> str:
        buffer = self.root[source]
        for moved in self.members.pop(self.root[tensor]):
            self.root[moved] = buffer
            self.members[buffer].append(moved)
        return buffer


def _compatible(usage: Mapping[str, TensorUsage], a: str, b: str, order: int) -> bool:
    """Same byte count, kinds that may share, and ``a`` first used at ``order``."""
    ua, ub = usage[a], usage[b]
    return (
        ua.nbytes == ub.nbytes
        and ua.kind not in _UNSHAREABLE
        and ub.kind not in _UNSHAREABLE
        and ua.first == order
    )


def find_sharing(program: Program, usage: Mapping[str, TensorUsage]) -> list[Share]:
    """The sharing decisions for a program, in execution order (deterministic)."""
    groups = _Groups(usage)
    shares: list[Share] = []

    def share(tensor: str, source: str, rule: SharingRule, order: int) -> None:
        if program.tensors[tensor].dtype != program.tensors[source].dtype:
            return
        buffer = groups.join(tensor, source)
        shares.append(Share(tensor, source, buffer, rule, order))

    for order, step in enumerate(program.steps):
        binding = program.bindings[step.node]
        layer = program.node(step.node).layer
        if step.kind is StepKind.FORWARD and len(binding.inputs) == 1 and layer.output_is_view:
            for out in binding.outputs:
                if _compatible(usage, out, binding.inputs[0], order):
                    share(out, binding.inputs[0], SharingRule.VIEW, order)
        elif (
            step.kind is StepKind.FORWARD and len(binding.inputs) == 1 and len(binding.outputs) == 1
        ):
            source, out = binding.inputs[0], binding.outputs[0]
            if not _compatible(usage, out, source, order):
                continue
            if (
                layer.supports_in_place
                and program.tensors[out].shape == program.tensors[source].shape
                and Operand.INPUTS not in layer.gradient_reads | layer.derivative_reads
                and groups.last_use(source) <= order
            ):
                share(out, source, SharingRule.IN_PLACE, order)
        elif step.kind is StepKind.CALC_DERIVATIVE and binding.grad_outputs and binding.grad_inputs:
            incoming = binding.grad_outputs[0]
            if layer.derivative_passthrough:
                for outgoing in binding.grad_inputs:
                    if _compatible(usage, outgoing, incoming, order):
                        share(outgoing, incoming, SharingRule.DERIVATIVE_PASSTHROUGH, order)
            elif layer.derivative_in_place or layer.output_is_view:
                outgoing = binding.grad_inputs[0]
                same_shape = program.tensors[outgoing].shape == program.tensors[incoming].shape
                if (
                    (same_shape or layer.output_is_view)
                    and _compatible(usage, outgoing, incoming, order)
                    and groups.last_use(incoming) <= order
                ):
                    share(outgoing, incoming, SharingRule.DERIVATIVE_IN_PLACE, order)
    return shares


def group_buffers(usage: Mapping[str, TensorUsage], shares: Sequence[Share]) -> list[Buffer]:
    """The buffers the shares make, every tensor in exactly one: named after the root
    every member joined, members in program order, buffers ordered by their earliest
    member in program order (deterministic)."""
    buffer_of = {name: name for name in usage}
    for s in shares:
        buffer_of[s.tensor] = buffer_of[s.source]
    members: dict[str, list[str]] = {}
    for name in usage:
        members.setdefault(buffer_of[name], []).append(name)
    buffers = []
    for name, names in members.items():
        used = [usage[m] for m in names]
        lifespans = [u.lifespan for u in used]
        lifespan = max(lifespans, key=_LIFESPAN_RANK.__getitem__)
        buffers.append(
            Buffer(
                name=name,
                members=tuple(names),
                nbytes=max(u.nbytes for u in used),
                first=min(u.first for u in used),
                last=max(u.last for u in used),
                lifespan=lifespan,
                kind=usage[name].kind,
            )
        )
    return buffers


_LIFESPAN_RANK = {
    Lifespan.FORWARD: 0,
    Lifespan.BACKWARD: 1,
    Lifespan.FORWARD_TO_BACKWARD: 2,
    Lifespan.ITERATION: 3,
    Lifespan.PERSISTENT: 4,
}
