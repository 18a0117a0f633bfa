"""The reference executor: runs a program's steps in order over a tensor store.

Where the bytes live is the store's business. :class:`HeapStore` gives every tensor its
own array (the unplanned execution); a planned store gives views into one arena. The
executor is the same for both, which is how planned training is shown to compute the
same numbers as unplanned training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .generator_state import decode_rng, encode_rng
from .layers.base import LayerContext, StepKind, WeightPenalty
from .layers.normalization import BatchNormalization, LayerNormalization
from .optimizers import Optimizer
from .program import Binding, Program, Step
from .tensors import TensorSpec

Array = NDArray[Any]
NO_PENALTY = WeightPenalty()


class TensorStore(Protocol):
    """Gives the array behind a tensor name."""

    def __getitem__(self, name: str) -> Array: ...


@runtime_checkable
class IterationObserver(Protocol):
    """A store that wants to know where the iteration is (the arena's NaN poisoning)."""

    def begin_iteration(self) -> None: ...

    def end_step(self, order: int) -> None: ...


class HeapStore:
    """Every tensor in its own zero-initialised array; ``shared`` arrays are used as given
    (an inference program borrows the training program's weights this way)."""

    def __init__(self, tensors: Mapping[str, TensorSpec], shared: Mapping[str, Array] | None = None):
        shared = shared or {}
        self.arrays: dict[str, Array] = {}
        for name, spec in tensors.items():
            given = shared.get(name)
            self.arrays[name] = given if given is not None else np.zeros(spec.shape, spec.dtype)

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]


class Executor:
    """Runs one program over one store. ``update_count`` counts optimizer steps (Adam's
    bias correction); ``rng`` drives dropout."""

    def __init__(
        self,
        program: Program,
        store: TensorStore,
        optimizer: Optimizer | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.program = program
        self.store = store
        self.optimizer = optimizer
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.update_count = 0

    def dropout_state(self) -> dict[str, Any]:
        """The dropout generator's state, JSON-safe: checkpoints save it."""
        return encode_rng(self.rng.bit_generator.state)

    def check_dropout_state(self, state: Mapping[str, Any]) -> None:
        """Refuses (ConfigError) a saved state this executor cannot continue from."""
        decode_rng(state)

    def restore_dropout_state(self, state: Mapping[str, Any]) -> None:
        """Continues the dropout masks from a saved :meth:`dropout_state`."""
        self.rng.bit_generator.state = decode_rng(state)

    def context(self, binding: Binding, *, training: bool, label: bool) -> LayerContext:
        s = self.store
        return LayerContext(
            inputs=[s[n] for n in binding.inputs],
            outputs=[s[n] for n in binding.outputs],
            weights={k: s[n] for k, n in binding.weights.items()},
            gradients={k: s[n] for k, n in binding.gradients.items()},
            scratch={k: s[n] for k, n in binding.scratch.items()},
            grad_outputs=[s[n] for n in binding.grad_outputs],
            grad_inputs=[s[n] for n in binding.grad_inputs],
            training=training,
            rng=self.rng,
            label=s[self.program.label] if label and self.program.label else None,
        )

    def load_batch(self, inputs: Sequence[Array], label: Array | None) -> None:
        """Copy one batch into the input (and label) tensors."""
        for name, data in zip(self.program.inputs, inputs, strict=True):
            np.copyto(self.store[name], data, casting="same_kind")
        if label is not None and self.program.label is not None:
            np.copyto(self.store[self.program.label], label, casting="same_kind")

    def run_step(self, step: Step, *, training: bool, label: bool, lr: float) -> None:
        """Run one entry of the execution order."""
        for name in step.zero_fill:
            self.store[name].fill(0)
        binding = self.program.step_binding(step)
        layer = self.program.node(step.node).layer
        if step.kind is StepKind.RECOMPUTE:
            self.recompute(step.node)
            return
        if step.kind is StepKind.APPLY_GRADIENT:
            assert self.optimizer is not None
            for weight, grad in binding.gradients.items():
                state = {k: self.store[n] for k, n in binding.optimizer_state[weight].items()}
                values, gradient = self.store[binding.weights[weight]], self.store[grad]
                penalty = binding.penalties.get(weight, NO_PENALTY)
                if penalty.l2:
                    gradient += values.dtype.type(penalty.l2) * values
                self.optimizer.apply(
                    values, gradient, state, lr, self.update_count, decay=penalty.decay
                )
            return
        ctx = self.context(binding, training=training, label=label)
        if step.kind is StepKind.FORWARD:
            layer.forward(ctx)
        elif step.kind is StepKind.CALC_GRADIENT:
            layer.calc_gradient(ctx)
        else:
            layer.calc_derivative(ctx)

    def recompute(self, node: str) -> None:
        """The recompute step of ``node`` (``spec/recompute.md``): its normalization input
        writes its output again into the recomputed tensor from the kept scratch, then
        ``node``'s forward runs over those bytes in place."""
        r = self.program.recompute[node]
        source = self.program.bindings[r.source]
        norm = self.program.node(r.source).layer
        if not isinstance(norm, (BatchNormalization, LayerNormalization)):
            raise AssertionError(f"'{r.source}' cannot recompute its output")
        out = self.store[r.recomputed]
        s = self.store
        norm.recompute_output(
            LayerContext(
                inputs=[],
                outputs=[out],
                weights={k: s[n] for k, n in source.weights.items() if n in r.reads},
                scratch={k: s[n] for k, n in source.scratch.items() if n in r.reads},
                training=True,
                rng=self.rng,
            )
        )
        self.program.node(node).layer.forward(
            LayerContext(inputs=[out], outputs=[out], training=True, rng=self.rng)
        )

    def train_step(self, inputs: Sequence[Array], label: Array, lr: float) -> float:
        """One iteration: forward, then each layer's gradient, derivative and update."""
        if not self.program.training:
            raise AssertionError("train_step on an inference program")
        observer = self.store if isinstance(self.store, IterationObserver) else None
        if observer is not None:
            observer.begin_iteration()
        self.load_batch(inputs, label)
        self.update_count += 1
        penalty = self.regularization_loss()
        for order, step in enumerate(self.program.steps):
            self.run_step(step, training=True, label=True, lr=lr)
            if observer is not None:
                observer.end_step(order)
        return self.loss() + penalty

    def regularization_loss(self) -> float:
        """``sum(l2 / 2 * sum(w^2))`` over the trained weights with an L2 regularizer,
        which training adds to the loss (with the weights the forward pass uses)."""
        total = 0.0
        for binding in self.program.bindings.values():
            for weight, penalty in binding.penalties.items():
                if penalty.l2:
                    values = self.store[binding.weights[weight]]
                    total += 0.5 * penalty.l2 * float(np.sum(np.square(values, dtype=np.float64)))
        return total

    def forward(self, inputs: Sequence[Array], label: Array | None = None) -> Array:
        """Forward only, in inference mode; returns the output tensor (not a copy)."""
        observer = self.store if isinstance(self.store, IterationObserver) else None
        if observer is not None:
            observer.begin_iteration()
        self.load_batch(inputs, label)
        for order, step in enumerate(self.program.steps):
            if step.kind is StepKind.FORWARD:
                self.run_step(step, training=False, label=label is not None, lr=0.0)
                if observer is not None:
                    observer.end_step(order)
        return self.store[self.program.output]

    def loss(self) -> float:
        assert self.program.loss is not None
        return float(self.store[self.program.loss][0])
