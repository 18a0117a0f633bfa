"""Which layers train: the selection behind ``Model.freeze``/``unfreeze``, and the plan
the same model would have with every layer trainable (``edgetrain plan`` shows both).

Freezing is only the layer flag ``trainable``; ``program.py`` turns it into fewer steps
and tensors (``spec/graph.md``, "Which layers train"). This module decides which layers
a call names, in the model's execution order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError
from .graph import build_graph
from .layers.base import Layer
from .planning import MemoryPlan, plan_memory

if TYPE_CHECKING:
    from .model import Model


def execution_order(layers: Sequence[Layer]) -> list[Layer]:
    """The model's layers in the order their forward steps run (the topological order of
    ``spec/graph.md``; generated activation and fan-out nodes are seen as their layer)."""
    graph = build_graph(layers, 1)
    by_name = {layer.name: layer for layer in layers}
    return [by_name[n.name] for n in graph.nodes if n.name in by_name]


def select_layers(
    layers: Sequence[Layer], names: str | Sequence[str] | None, up_to: str | None
) -> list[Layer]:
    """The layers a freeze/unfreeze call names, in execution order: ``names`` (one name or
    several), or ``up_to`` and every layer whose forward step runs before it (inclusive),
    or every layer when neither is given. Unknown names are refused, listing the known."""
    ordered = execution_order(layers)
    known = [layer.name for layer in ordered]
    if names is not None and up_to is not None:
        raise ConfigError("give layer names or up_to=, not both")
    if up_to is not None:
        _check_names([up_to], known)
        return ordered[: known.index(up_to) + 1]
    if names is None:
        return ordered
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ConfigError("no layer names given; call with no argument to select every layer")
    _check_names(wanted, known)
    return [layer for layer in ordered if layer.name in wanted]


def _check_names(wanted: Sequence[str], known: Sequence[str | None]) -> None:
    unknown = [name for name in wanted if name not in known]
    if not unknown:
        return
    hint = ""
    if any("/" in name for name in unknown):
        hint = " (generated nodes such as 'x/activation' follow their layer 'x': name that)"
    raise ConfigError(
        f"no layer named {', '.join(repr(n) for n in unknown)}{hint}; the model's layers "
        f"in execution order are {', '.join(str(n) for n in known)}"
    )


def unfrozen_plan(model: Model, planner: str) -> MemoryPlan | None:
    """The training plan of ``model`` with every layer trainable, to show what freezing
    saves; None when nothing is frozen or the model does not train. The layers are
    copied, so the model is left untouched."""
    if model.optimizer is None or all(layer.trainable for layer in model.layers):
        return None
    thawed = [copy.copy(layer) for layer in model.layers]
    for layer in thawed:
        layer.trainable = True
    return plan_memory(model._build_program(thawed, training=True, recompute=model.recompute), planner)
