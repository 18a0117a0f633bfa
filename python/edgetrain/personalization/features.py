"""A trained model cut at a named layer: the backbone whose features few-shot classifiers
learn from (``spec/personalization.md``, section 2).

The cut model is the named layer and every layer it depends on, compiled for inference
at a fixed batch size with its own memory plan. Its weights are *borrowed* from the model
(views into the model's arena), so cutting costs no copy of the backbone, and a model
recompiled since (``freeze``, ``compile``) is followed on the next call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..data import as_input_list, check_inputs
from ..errors import ConfigError, StateError
from ..executor import Executor, HeapStore, TensorStore
from ..graph import Graph, build_graph
from ..layers.base import Layer
from ..planning import ArenaStore, MemoryPlan, plan_memory
from ..program import build_program
from ..tensors import TensorKind

if TYPE_CHECKING:
    from ..model import Model

Array = NDArray[Any]


def backbone_layers(model: Model, layer: str) -> list[Layer]:
    """``layer`` and every layer its output depends on, in the order the model lists them
    (so a layer without ``input_layers`` still reads the layer listed before it)."""
    graph = model.graph
    names = {user.name for user in model.layers}
    if layer not in names:
        raise ConfigError(
            f"cannot cut the model at '{layer}': no such layer; its layers are "
            f"{', '.join(str(user.name) for user in model.layers)}"
        )
    needed: set[str] = set()
    pending = [layer]
    while pending:
        node = graph.node(pending.pop())
        if node.name in needed:
            continue
        needed.add(node.name)
        pending.extend(port.node for port in node.inputs)
    return [user for user in model.layers if user.name in needed]


class FeatureExtractor:
    """Features of a compiled model at ``layer``: that layer's output (after its
    ``activation=`` when it has one), flattened to one vector per sample and computed in
    inference mode (dropout off, batch-norm moving statistics), ``batch_size`` samples at
    a time. The last, smaller batch is zero-padded: in inference every layer treats
    samples independently, so padding changes no feature and one plan serves every call.

    ``plan`` is the memory plan of one batch (None with ``planner=None``): the working
    memory feature extraction needs besides the borrowed weights."""

    def __init__(
        self,
        model: Model,
        layer: str,
        *,
        batch_size: int | None = None,
        planner: str | None = "greedy_by_size",
    ) -> None:
        if not model._weights:
            raise StateError("the backbone model is not compiled yet: call compile() first")
        self.model = model
        self.layer = layer
        self.batch_size = int(batch_size or model.batch_size or 32)
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.planner = planner
        self.layers = backbone_layers(model, layer)
        self._build()

    def _build(self) -> None:
        graph: Graph = build_graph(self.layers, self.batch_size)
        program = build_program(graph, training=False, dtype=self.model.dtype)
        weights = self.model._weights
        self._borrowed = {
            name: weights[name]
            for name, spec in program.tensors.items()
            if spec.kind is TensorKind.WEIGHT
        }
        store: TensorStore
        self.plan: MemoryPlan | None = None
        if self.planner is None:
            store = HeapStore(program.tensors, shared=self._borrowed)
        else:
            self.plan = plan_memory(program, self.planner, external=list(self._borrowed))
            store = ArenaStore(program.tensors, self.plan, shared=self._borrowed)
        self._executor = Executor(program, store)
        nodes = graph.input_nodes()
        self._input_shapes = [n.output_shapes[0][1:] for n in nodes]
        self._input_names = [n.name for n in nodes]
        self.shape: tuple[int, ...] = program.tensors[program.output].shape[1:]
        #: length of one feature vector
        self.dim = int(np.prod(self.shape))

    def _current(self) -> Executor:
        """The executor, rebuilt when the model's weights moved (it was recompiled)."""
        weights = self.model._weights
        if any(weights.get(name) is not array for name, array in self._borrowed.items()):
            self._build()
        return self._executor

    def __call__(self, x: Array | Sequence[Array]) -> Array:
        """Features ``(n, dim)`` of ``n`` samples, in the model's dtype."""
        inputs = as_input_list(x)
        check_inputs(inputs, self._input_shapes, self._input_names)
        executor = self._current()
        n = len(inputs[0])
        features = np.empty((n, self.dim), dtype=self.model.dtype)
        padded = [
            np.zeros((self.batch_size, *s), dtype=self.model.dtype) for s in self._input_shapes
        ]
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            batch = [a[start:stop] for a in inputs]
            if stop - start < self.batch_size:
                for target, part in zip(padded, batch):
                    target[: stop - start] = part
                    target[stop - start :] = 0
                batch = padded
            out = executor.forward(batch)
            features[start:stop] = out.reshape(self.batch_size, -1)[: stop - start]
        return features
