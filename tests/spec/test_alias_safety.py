"""Every layer that lets the planner share bytes computes the same numbers when it does.

For each registered layer type with a sharing flag (``spec/sharing.md``), one step runs
twice: once over separate arrays and once with the shared arrays being one memory (seen
through different array objects, as the arena gives them); results must be bit-equal.
This checks the layer side of each rule independently of whether a model happens to
trigger it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgetrain import layers as L
from edgetrain.layers.activation import ACTIVATIONS
from edgetrain.layers.base import Layer, LayerContext, StepKind

SHAPE = (2, 3, 4, 5)

#: how to build each layer type that declares a sharing flag, and its input count
CONSTRUCTORS: dict[str, Callable[[], list[tuple[Layer, int]]]] = {
    "activation": lambda: [
        (L.Activation(kind, name=f"act_{kind}"), 1) for kind in sorted(ACTIVATIONS)
    ],
    "batch_normalization": lambda: [(L.BatchNormalization(name="bn"), 1)],
    "layer_normalization": lambda: [(L.LayerNormalization(name="ln"), 1)],
    "dropout": lambda: [(L.Dropout(dropout_rate=0.4, name="drop"), 1)],
    "flatten": lambda: [(L.Flatten(name="flat"), 1)],
    "reshape": lambda: [(L.Reshape(target_shape=(5, 12), name="reshape"), 1)],
    "multiout": lambda: [(L.Multiout(outputs=3, name="fan"), 1)],
    "addition": lambda: [(L.Addition(name="add"), 3)],
}


def _sharing(layer: Layer) -> bool:
    return bool(
        layer.supports_in_place
        or layer.derivative_in_place
        or layer.output_is_view
        or layer.derivative_passthrough
    )


def _flagged_layers() -> list[tuple[Layer, int]]:
    found: list[tuple[Layer, int]] = []
    for type_name, cls in sorted(L.LAYER_TYPES.items()):
        if type_name in CONSTRUCTORS:
            found += CONSTRUCTORS[type_name]()
        elif any(
            getattr(cls, flag)
            for flag in (
                "supports_in_place",
                "derivative_in_place",
                "output_is_view",
                "derivative_passthrough",
            )
        ):
            raise AssertionError(f"layer type '{type_name}' shares bytes: add it to CONSTRUCTORS")
    return [(layer, n) for layer, n in found if _sharing(layer)]


def _arrays(shapes: list[tuple[int, ...]], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def _run(layer: Layer, inputs: int, step: StepKind, alias: bool) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    setup = layer.setup([SHAPE] * inputs)
    xs = _arrays([SHAPE] * inputs, rng)
    weights = {w.name: rng.normal(size=w.shape).astype(np.float32) for w in setup.weights}
    if "moving_variance" in weights:
        weights["moving_variance"] = np.abs(weights["moving_variance"]) + np.float32(0.5)
    scratch = {s.name: np.zeros(s.shape, s.dtype or np.float32) for s in setup.scratch}
    outs = [np.zeros(s, np.float32) for s in setup.output_shapes]
    dys = _arrays(setup.output_shapes, rng)
    dxs = [np.zeros(SHAPE, np.float32) for _ in range(inputs)]
    if alias and step is StepKind.FORWARD:
        if layer.output_is_view:
            outs = [xs[0].view().reshape(s) for s in setup.output_shapes]
        else:
            outs = [xs[0].view()]
    if alias and step is StepKind.CALC_DERIVATIVE:
        if layer.derivative_passthrough:
            dxs = [dys[0].view() for _ in range(inputs)]
        else:
            dxs[0] = dys[0].view().reshape(SHAPE)

    def ctx(outputs: list[np.ndarray]) -> LayerContext:
        return LayerContext(
            inputs=xs,
            outputs=outputs,
            weights=weights,
            gradients={k: np.zeros_like(v) for k, v in weights.items()},
            scratch=scratch,
            grad_outputs=dys,
            grad_inputs=dxs,
            training=True,
            rng=np.random.default_rng(3),
        )

    if step is StepKind.FORWARD:
        layer.forward(ctx(outs))
        return {
            "outputs": [o.copy() for o in outs],
            "scratch": [s.copy() for s in scratch.values()],
        }
    forward_outs = [np.zeros(s, np.float32) for s in setup.output_shapes]
    layer.forward(ctx(forward_outs))  # fill scratch, as the iteration would
    if layer.supports_in_place:
        xs[0] = np.full(SHAPE, np.nan, np.float32)  # backward must not read an overwritten input
    layer.calc_derivative(ctx(forward_outs))
    return {"grad_inputs": [d.copy() for d in dxs]}


LAYERS = _flagged_layers()


@pytest.mark.parametrize(("layer", "inputs"), LAYERS, ids=[layer.name or "" for layer, _ in LAYERS])
def test_forward_is_alias_safe(layer: Layer, inputs: int) -> None:
    if not (layer.supports_in_place or layer.output_is_view):
        pytest.skip("the output never shares the input's bytes")
    want = _run(layer, inputs, StepKind.FORWARD, alias=False)
    got = _run(layer, inputs, StepKind.FORWARD, alias=True)
    for a, b in zip(got["outputs"] + got["scratch"], want["outputs"] + want["scratch"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("layer", "inputs"), LAYERS, ids=[layer.name or "" for layer, _ in LAYERS])
def test_derivative_is_alias_safe(layer: Layer, inputs: int) -> None:
    if not (layer.derivative_in_place or layer.output_is_view or layer.derivative_passthrough):
        pytest.skip("the derivative never shares the incoming one's bytes")
    want = _run(layer, inputs, StepKind.CALC_DERIVATIVE, alias=False)
    got = _run(layer, inputs, StepKind.CALC_DERIVATIVE, alias=True)
    for a, b in zip(got["grad_inputs"], want["grad_inputs"]):
        np.testing.assert_array_equal(a, b)


def test_every_sharing_layer_is_covered() -> None:
    kinds = {type(layer).type_name for layer, _ in LAYERS}
    assert {
        "activation",
        "batch_normalization",
        "dropout",
        "flatten",
        "multiout",
        "addition",
    } <= kinds
