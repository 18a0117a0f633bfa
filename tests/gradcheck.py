"""Central finite differences (float64) against a layer's analytic backward.

The layer is driven directly through its contract (setup, forward, calc_gradient,
calc_derivative) with arrays made here, so a test checks the layer alone. The scalar
checked is ``L = sum(output * R)`` for a fixed random ``R``; ``dL/d output = R``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgetrain.layers.base import Layer, LayerContext

Array = NDArray[Any]


@dataclass
class LayerRun:
    """Arrays of one forward/backward pass of a single layer."""

    ctx: LayerContext
    weights: dict[str, Array]


def make_context(
    layer: Layer,
    inputs: Sequence[Array],
    weights: dict[str, Array] | None = None,
    *,
    training: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> LayerContext:
    """A context with fresh outputs, scratch and gradients for ``layer`` on ``inputs``;
    weights are drawn at random unless given."""
    setup = layer.setup([a.shape for a in inputs])
    rng = np.random.default_rng(seed)
    if weights is None:
        weights = {}
        for spec in setup.weights:
            values = rng.normal(0.0, 0.5, size=spec.shape)
            if "variance" in spec.name:
                values = np.abs(values) + 0.5
            weights[spec.name] = values.astype(dtype)
    return LayerContext(
        inputs=list(inputs),
        outputs=[np.zeros(s, dtype) for s in setup.output_shapes],
        weights=weights,
        gradients={s.name: np.zeros(s.shape, dtype) for s in setup.weights if s.trainable},
        scratch={
            s.name: np.zeros(s.shape, np.dtype(s.dtype) if s.dtype else dtype) for s in setup.scratch
        },
        training=training,
        rng=np.random.default_rng(seed + 1),
    )


def _objective(layer: Layer, ctx: LayerContext, probes: Sequence[Array], seed: int) -> float:
    ctx.rng = np.random.default_rng(seed + 1)  # the same dropout mask on every call
    layer.forward(ctx)
    return float(sum(np.sum(o * r) for o, r in zip(ctx.outputs, probes)))


def check_layer_gradients(
    layer: Layer,
    input_shapes: Sequence[tuple[int, ...]],
    *,
    seed: int = 0,
    training: bool = True,
    samples: int = 40,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    inputs: Sequence[Array] | None = None,
    check_inputs: Sequence[bool] | None = None,
) -> None:
    """Assert the layer's derivatives and weight gradients match central differences at
    ``samples`` random positions of every input and trainable weight."""
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = [rng.normal(size=s) for s in input_shapes]
    inputs = [np.array(a) for a in inputs]
    ctx = make_context(layer, inputs, training=training, seed=seed)
    saved = {k: v.copy() for k, v in ctx.weights.items()}
    probes = [rng.normal(size=o.shape) for o in ctx.outputs]

    def restore() -> None:
        for k, v in saved.items():
            np.copyto(ctx.weights[k], v)

    _objective(layer, ctx, probes, seed)
    ctx.grad_outputs = [p.copy() for p in probes]
    ctx.grad_inputs = [np.zeros_like(a, dtype=np.float64) for a in inputs]
    layer.calc_gradient(ctx)
    analytic_inputs = [g.copy() for g in ctx.grad_inputs]
    if layer.has_derivative:
        layer.calc_derivative(ctx)
        analytic_inputs = [g.copy() for g in ctx.grad_inputs]
    analytic_weights = {k: g.copy() for k, g in ctx.gradients.items()}

    targets: list[tuple[str, Array, Array]] = []
    if layer.has_derivative:
        for i, (a, g) in enumerate(zip(inputs, analytic_inputs)):
            if check_inputs is None or check_inputs[i]:
                targets.append((f"input {i}", a, g))
    for name, g in analytic_weights.items():
        targets.append((f"weight {name}", ctx.weights[name], g))
    saved = {k: v.copy() for k, v in ctx.weights.items()}

    for what, array, analytic in targets:
        flat = array.reshape(-1)
        picks = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
        for index in picks:
            original = flat[index]

            def shifted(delta: float) -> float:
                restore()  # undo what forward changed (moving statistics)
                flat[index] = original + delta
                return _objective(layer, ctx, probes, seed)

            numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
            restore()
            flat[index] = original
            got = analytic.reshape(-1)[index]
            where = np.unravel_index(index, array.shape)
            assert np.isclose(got, numeric, rtol=rtol, atol=atol), (
                f"{layer.type_name} {what}{where}: analytic {got}, numeric {numeric}"
            )
