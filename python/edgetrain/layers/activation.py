"""Element-wise activations (and softmax over the last axis) as a layer.

Each activation's derivative is written from its output where that is possible (relu,
leaky relu, sigmoid, tanh, softmax); those may then be computed in place over their
input, which the planner exploits. The others (gelu, tanh_gelu, swish) read the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tensors import Shape
from .base import Array, Layer, LayerContext, LayerSetup, Operand

LEAKY_RELU_SLOPE = 0.01
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0; 1 / inf = 0
        result: Array = 1.0 / (1.0 + np.exp(-x))
    return result


def _softmax(x: Array) -> Array:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    result: Array = e / np.sum(e, axis=-1, keepdims=True)
    return result


def _phi(x: Array) -> Array:
    """Standard normal CDF via erf (float64 for accuracy, cast back)."""
    erf = np.asarray(_erf(x.astype(np.float64) / math.sqrt(2.0)), dtype=np.float64)
    result: Array = (0.5 * (1.0 + erf)).astype(x.dtype)
    return result


def _gelu_grad(x: Array) -> Array:
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    result: Array = _phi(x) + x * pdf
    return result


def _tanh_gelu(x: Array) -> Array:
    result: Array = 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
    return result


def _tanh_gelu_grad(x: Array) -> Array:
    inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
    t = np.tanh(inner)
    d_inner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
    result: Array = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner
    return result


def _swish_grad(x: Array) -> Array:
    s = _sigmoid(x)
    result: Array = s + x * s * (1.0 - s)
    return result


def _softmax_backward(y: Array, dy: Array) -> Array:
    result: Array = y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
    return result


@dataclass(frozen=True)
class ActivationFunction:
    """``forward(x) -> y``; ``backward(a, dy) -> dx`` where ``a`` is the output when
    ``from_output`` and the input otherwise."""

    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array], Array]
    from_output: bool


ACTIVATIONS: dict[str, ActivationFunction] = {
    "relu": ActivationFunction(lambda x: np.maximum(x, 0), lambda y, dy: dy * (y > 0), True),
    "leaky_relu": ActivationFunction(
        lambda x: np.where(x > 0, x, x * x.dtype.type(LEAKY_RELU_SLOPE)),
        lambda y, dy: np.where(y > 0, dy, dy * dy.dtype.type(LEAKY_RELU_SLOPE)),
        True,
    ),
    "sigmoid": ActivationFunction(_sigmoid, lambda y, dy: dy * y * (1.0 - y), True),
    "tanh": ActivationFunction(np.tanh, lambda y, dy: dy * (1.0 - y * y), True),
    "softmax": ActivationFunction(_softmax, _softmax_backward, True),
    "gelu": ActivationFunction(lambda x: x * _phi(x), lambda x, dy: dy * _gelu_grad(x), False),
    "tanh_gelu": ActivationFunction(_tanh_gelu, lambda x, dy: dy * _tanh_gelu_grad(x), False),
    "swish": ActivationFunction(lambda x: x * _sigmoid(x), lambda x, dy: dy * _swish_grad(x), False),
}


class Activation(Layer):
    """Applies one activation function; ``Activation("relu")``."""

    type_name = "activation"
    derivative_in_place = True

    def __init__(self, kind: str | None = None, **common: Any) -> None:
        if kind is None:
            kind = common.pop("activation", None)
        else:
            common.pop("activation", None)
        super().__init__(**common)
        key = (kind or "").strip().lower()
        if key not in ACTIVATIONS:
            raise ConfigError(
                f"activation layer '{self.display_name}': unknown activation {kind!r} "
                f"(known: {', '.join(sorted(ACTIVATIONS))})"
            )
        self.kind = key
        self.function = ACTIVATIONS[key]
        uses = Operand.OUTPUTS if self.function.from_output else Operand.INPUTS
        self.derivative_reads = frozenset({uses})
        self.supports_in_place = self.function.from_output

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        self.expect_inputs(input_shapes, 1)
        return LayerSetup(output_shapes=[tuple(input_shapes[0])])

    def forward(self, ctx: LayerContext) -> None:
        ctx.outputs[0][...] = self.function.forward(ctx.inputs[0])

    def calc_derivative(self, ctx: LayerContext) -> None:
        source = ctx.outputs[0] if self.function.from_output else ctx.inputs[0]
        ctx.grad_inputs[0][...] = self.function.backward(source, ctx.grad_outputs[0])
