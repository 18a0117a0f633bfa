"""The mapping between edgetrain's execution orders and tensor names and NNTrainer's,
so that the two systems' execution-order goldens can be audited against each other.

NNTrainer numbers orders differently by design: the forward of node ``i`` is order
``i`` (as in edgetrain), but then, walking the nodes backwards from order ``N`` (the
node count), *every* node takes three orders (calc-gradient, calc-derivative,
apply-gradient) — one shared order when it is a frozen layer — whether or not it runs
those steps. edgetrain schedules only the steps that do work, so its backward orders are
denser. Tensor names: edgetrain ``<node>:output`` / ``output<i>`` is NNTrainer's
``<node>:out0`` / ``out<i>``; ``<x>/activation`` is ``<x>/activation_realized``;
weights, ``:grad`` suffixes and other names are equal. The loss node, which
edgetrain names ``loss``, takes the name given in ``renames``. Details and the known
differences: ``spec/planning.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..layers.base import StepKind
from ..program import Program

#: NNTrainer's mark for an order that never runs (``PERSIST_END_ORDER - 1``)
NEVER = 4294967294


def nntrainer_node(node: str, renames: Mapping[str, str] | None = None) -> str:
    """NNTrainer's name for an edgetrain node."""
    if renames and node in renames:
        return renames[node]
    if node.endswith("/activation"):
        return node + "_realized"
    return node


def nntrainer_tensor(name: str, renames: Mapping[str, str] | None = None) -> str:
    """NNTrainer's name for an edgetrain tensor name (``spec/program.md`` naming)."""
    node, _, rest = name.partition(":")
    if not rest:
        return name
    head, _, tail = rest.partition(":")
    if head == "output":
        head = "out0"
    elif head.startswith("output") and head[6:].isdigit():
        head = "out" + head[6:]
    return ":".join(p for p in (nntrainer_node(node, renames), head, tail) if p)


def nntrainer_frozen(program: Program, node: str) -> bool:
    """Whether NNTrainer gives ``node`` one backward order instead of three: a frozen
    layer with weights (edgetrain copies ``trainable`` onto realised activations, which
    NNTrainer keeps trainable, so weightless nodes always count three)."""
    n = program.node(node)
    return not n.layer.trainable and bool(n.setup.weights)


def nntrainer_step_orders(program: Program) -> dict[tuple[StepKind, str], int]:
    """NNTrainer's order for every (step kind, node), for all four kinds, whether or not
    edgetrain schedules the step."""
    nodes = program.graph.nodes
    orders: dict[tuple[StepKind, str], int] = {}
    for index, node in enumerate(nodes):
        orders[(StepKind.FORWARD, node.name)] = index
    counter = len(nodes)
    for node in reversed(nodes):
        step = 0 if nntrainer_frozen(program, node.name) else 1
        orders[(StepKind.CALC_GRADIENT, node.name)] = counter
        orders[(StepKind.CALC_DERIVATIVE, node.name)] = counter + step
        orders[(StepKind.APPLY_GRADIENT, node.name)] = counter + 2 * step
        counter += 2 * step + 1
    return orders


def nntrainer_order_map(program: Program) -> list[int]:
    """``map[k]``: NNTrainer's order for edgetrain's order ``k`` (strictly increasing)."""
    table = nntrainer_step_orders(program)
    return [table[(step.kind, step.node)] for step in program.steps]
