"""Execution orders and per-tensor usage: which orders read or write each tensor.

The program's step list is the execution order (``program.steps[k]`` runs at order
``k``). This module walks it once and records, for every tensor, the orders where a
step reads or writes it, following the layer contract: a forward step touches the
layer's inputs, outputs, weights and forward scratch; a backward step touches the
incoming derivatives, the forward tensors its layer declares in ``gradient_reads`` /
``derivative_reads``, its scratch, and what it writes (weight gradients, outgoing
derivatives); an apply step touches the weights, their gradients and optimizer state; a
recompute step reads what its ``Recomputation`` lists and writes the recomputed tensor,
which backward steps then read in place of the forward tensor (``spec/recompute.md``).
Rules and lifespan classes: ``spec/planning.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from ..layers.base import Operand, StepKind, backward_uses
from ..losses import LossLayer
from ..program import Binding, Program, Step
from ..tensors import TensorKind


class Lifespan(enum.Enum):
    """How long a tensor must live, NNTrainer's lifespans in edgetrain's words."""

    #: used only by forward steps (an activation no backward step reads, forward scratch)
    FORWARD = "forward"
    #: written in the forward pass and kept until a backward step has read it
    FORWARD_TO_BACKWARD = "forward_to_backward"
    #: born and dead inside the backward pass (derivatives, weight gradients)
    BACKWARD = "backward"
    #: a result the caller reads after the last step (the output, the loss value)
    ITERATION = "iteration"
    #: kept across iterations (weights, optimizer state)
    PERSISTENT = "persistent"


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class TensorUsage:
    """Where one tensor is touched, and the interval ``[first, last]`` it must live.

    ``reads``/``writes`` are sorted, duplicate-free orders. ``first``/``last`` widen
    the used orders by the lifespan: persistent tensors span every order, results
    reach the last order.
    """

    name: str
    kind: TensorKind
    nbytes: int
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    lifespan: Lifespan
    first: int
    last: int

    @property
    def orders(self) -> tuple[int, ...]:
        """Every order at which the tensor is read or written."""
        return tuple(sorted(set(self.reads) | set(self.writes)))

    def alive_at(self, order: int) -> bool:
        return self.first <= order <= self.last


def operand_tensors(binding: Binding, operands: frozenset[Operand]) -> list[str]:
    """The tensor names of a binding that ``operands`` stand for."""
    names: list[str] = []
    if Operand.INPUTS in operands:
        names += binding.inputs
    if Operand.OUTPUTS in operands:
        names += binding.outputs
    if Operand.WEIGHTS in operands:
        names += list(binding.weights.values())
    return names


def _scratch_for(program: Program, step: Step) -> list[str]:
    binding = program.bindings[step.node]
    specs = {s.name: s for s in program.node(step.node).setup.scratch}
    return [t for s, t in binding.scratch.items() if step.kind in specs[s].used_in]


def _kept_scratch(program: Program, step: Step) -> set[str]:
    """Scratch a backward step reads back from the forward step (a dropout mask)."""
    binding = program.bindings[step.node]
    specs = {s.name: s for s in program.node(step.node).setup.scratch}
    return {t for s, t in binding.scratch.items() if StepKind.FORWARD in specs[s].used_in}


def step_accesses(program: Program, step: Step) -> Iterator[tuple[str, Access]]:
    """The tensors one step touches, each with how (a tensor may appear twice)."""
    binding = program.step_binding(step)
    layer = program.node(step.node).layer
    for name in step.zero_fill:
        yield name, Access.WRITE
    if step.kind is StepKind.RECOMPUTE:
        recomputation = program.recompute[step.node]
        for name in recomputation.reads:
            yield name, Access.READ
        yield recomputation.recomputed, Access.WRITE
        return
    scratch = _scratch_for(program, step)
    uses_label = isinstance(layer, LossLayer)
    if step.kind is StepKind.FORWARD:
        for name in binding.inputs + list(binding.weights.values()):
            yield name, Access.READ
        for name in scratch:
            yield name, Access.WRITE
        for name in binding.outputs:
            yield name, Access.WRITE
        if uses_label and program.label is not None:
            yield program.label, Access.READ
    elif step.kind is StepKind.APPLY_GRADIENT:
        for weight, grad in binding.gradients.items():
            yield grad, Access.READ  # and written when an L2 penalty is added to it
            yield grad, Access.WRITE
            for updated in (binding.weights[weight], *binding.optimizer_state[weight].values()):
                yield updated, Access.READ
                yield updated, Access.WRITE
    else:
        for name in binding.grad_outputs + operand_tensors(
            binding, backward_uses(layer, step.kind)
        ):
            yield name, Access.READ
        kept = _kept_scratch(program, step)
        for name in scratch:
            yield name, Access.READ if name in kept else Access.WRITE
        written = (
            binding.gradients.values()
            if step.kind is StepKind.CALC_GRADIENT
            else binding.grad_inputs
        )
        for name in written:
            yield name, Access.WRITE
        if step.kind is StepKind.CALC_DERIVATIVE and uses_label and program.label is not None:
            yield program.label, Access.READ


def forward_step_count(program: Program) -> int:
    """Number of forward steps; they come first, so order ``k`` is forward iff ``k < this``."""
    return sum(1 for s in program.steps if s.kind is StepKind.FORWARD)


def analyse_usage(program: Program) -> dict[str, TensorUsage]:
    """Every tensor of the program with its reads, writes, lifespan and interval, in the
    program's tensor order (deterministic)."""
    reads: dict[str, set[int]] = {name: set() for name in program.tensors}
    writes: dict[str, set[int]] = {name: set() for name in program.tensors}
    loaded = list(program.inputs) + ([program.label] if program.label else [])
    for name in loaded:
        writes[name].add(0)  # the executor loads the batch before order 0 runs
    for order, step in enumerate(program.steps):
        for name, access in step_accesses(program, step):
            (reads if access is Access.READ else writes)[name].add(order)
    end = len(program.steps) - 1
    forward_end = forward_step_count(program)
    results = {program.output} | ({program.loss} if program.loss else set())
    usage: dict[str, TensorUsage] = {}
    for name, spec in program.tensors.items():
        used = reads[name] | writes[name]
        if spec.kind in (TensorKind.WEIGHT, TensorKind.OPTIMIZER_STATE):
            lifespan, first, last = Lifespan.PERSISTENT, 0, end
        elif name in results:
            lifespan, first, last = Lifespan.ITERATION, min(used, default=0), end
        else:
            first, last = min(used, default=0), max(used, default=0)
            if last < forward_end:
                lifespan = Lifespan.FORWARD
            elif first >= forward_end:
                lifespan = Lifespan.BACKWARD
            else:
                lifespan = Lifespan.FORWARD_TO_BACKWARD
        usage[name] = TensorUsage(
            name=name,
            kind=spec.kind,
            nbytes=spec.nbytes,
            reads=tuple(sorted(reads[name])),
            writes=tuple(sorted(writes[name])),
            lifespan=lifespan,
            first=first,
            last=last,
        )
    return usage
