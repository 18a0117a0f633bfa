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
from ..losses import LossLayer
from ..program import Program
from ..tensors import TensorKind
from .lifetimes import analyse_usage, operand_tensors
from .plan import plan_memory
from .sharing import SharingRule

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


def nntrainer_usage(
    program: Program, renames: Mapping[str, str] | None = None
) -> dict[str, set[int]]:
    """Per tensor (NNTrainer's names), the orders NNTrainer lists for it, derived from
    edgetrain's usage with NNTrainer's conventions applied (rules N1-N5 of
    ``spec/planning.md``). Tensors only NNTrainer creates are absent; labels, optimizer
    state and the loss scratch, which NNTrainer's goldens do not list, are left out."""
    usage = analyse_usage(program)
    plan = plan_memory(program)
    to_nnt = nntrainer_order_map(program)
    table = nntrainer_step_orders(program)
    scheduled = {(s.kind, s.node) for s in program.steps}
    orders = {name: {to_nnt[k] for k in u.orders} for name, u in usage.items()}
    loss_outputs: set[str] = set()
    for node in program.graph.nodes:
        b = program.bindings[node.name]
        cg = table[(StepKind.CALC_GRADIENT, node.name)]
        cd = table[(StepKind.CALC_DERIVATIVE, node.name)]
        ag = table[(StepKind.APPLY_GRADIENT, node.name)]
        runs_cd = (StepKind.CALC_DERIVATIVE, node.name) in scheduled
        if isinstance(node.layer, LossLayer) and runs_cd:  # N1
            loss_outputs.update(b.outputs)
            for out in b.outputs:
                orders[out].discard(cd)
            for source in b.inputs:
                orders[source].add(cd)
        trained = node.name in program.trained
        for w in b.weights.values():  # N2
            orders[w] |= {cg, ag} if trained else set()
            orders[w].add(cd if runs_cd or trained else NEVER)
        if (
            not runs_cd and not nntrainer_frozen(program, node.name) and node.layer.has_derivative
        ):  # N3
            for name in b.grad_outputs + operand_tensors(b, node.layer.derivative_reads):
                orders[name].add(cd)
        if not node.setup.weights:  # N4
            for name in b.grad_outputs:
                orders[name].add(cg)
    merged = {name: set(o) for name, o in orders.items()}
    for t in plan.tensors.values():  # N5
        if t.shares and t.shares[0] in (SharingRule.IN_PLACE, SharingRule.DERIVATIVE_IN_PLACE):
            group = [m for m in plan.buffers[t.buffer].members if m not in loss_outputs]
            union = set().union(*(orders[m] for m in group))
            for m in group:
                merged[m] = union
    hidden = (TensorKind.LABEL, TensorKind.OPTIMIZER_STATE)
    return {
        nntrainer_tensor(name, renames): o
        for name, o in merged.items()
        if usage[name].kind not in hidden and name != program.loss
    }


def format_exegolden(
    program: Program, orders: Mapping[str, set[int]], renames: Mapping[str, str] | None = None
) -> str:
    """``orders`` in NNTrainer's ``.exegolden`` text: nodes in graph order, each node's
    tensors sorted by name, one line ``name, order, order, ...`` (orders ascending)."""
    lines = []
    for node in program.graph.nodes:
        prefix = nntrainer_node(node.name, renames) + ":"
        for name in sorted(n for n in orders if n.startswith(prefix)):
            lines.append(", ".join([name, *(str(o) for o in sorted(orders[name]))]))
    return "".join(line + "\n" for line in lines)
