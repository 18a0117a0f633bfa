"""The contract every layer keeps, which is what lets the whole iteration be planned ahead.

A layer never allocates the tensors it works on. ``setup`` declares them (output shapes,
weights, scratch tensors and the steps each scratch tensor is used in); the program
gives every declared tensor a name; the executor hands the layer a :class:`LayerContext`
of arrays that may be views into one planned arena. So a layer writes its results *into*
the arrays it is given (``out[...] = ...`` or ``np.f(..., out=...)``) and must stay correct
when the planner lets an output share bytes with an input (``supports_in_place``) or an
outgoing derivative share bytes with the incoming one (``derivative_in_place``).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ShapeError
from ..tensors import Shape, format_shape
from .properties import parse_flag

Array = NDArray[Any]


class StepKind(enum.Enum):
    """The four kinds of step a layer contributes to one training iteration, and the
    ``recompute`` step a program may add (``spec/recompute.md``): it writes again, in the
    backward pass, an activation's output that was not kept from the forward pass."""

    FORWARD = "forward"
    CALC_GRADIENT = "calc_gradient"
    CALC_DERIVATIVE = "calc_derivative"
    APPLY_GRADIENT = "apply_gradient"
    RECOMPUTE = "recompute"


class Operand(enum.Enum):
    """Forward tensors a backward step may read, which keeps them alive until then."""

    INPUTS = "inputs"
    OUTPUTS = "outputs"
    WEIGHTS = "weights"


@dataclass(frozen=True)
class WeightSpec:
    """A persistent tensor of the layer. ``trainable=False`` ones (batch-norm moving
    statistics) get no gradient and no optimizer state."""

    name: str
    shape: Shape
    initializer: str
    trainable: bool = True


@dataclass(frozen=True)
class WeightPenalty:
    """What one trained weight adds to its gradient before the optimizer step
    (NNTrainer's regularizer and decay properties, ``spec/optimizers.md``).

    ``l2``: the L2 regularizer constant ``c`` (the loss gains ``c/2 * sum(w^2)``, the
    gradient ``c * w``); ``decay``: weight decay, coupled (``g += decay * w``) for SGD and
    Adam and decoupled (``w -= lr * decay * w``) for AdamW.
    """

    l2: float = 0.0
    decay: float = 0.0


#: weight names that take ``bias_decay`` and no regularizer, as NNTrainer's layers
#: assign them
BIAS_LIKE_WEIGHTS = frozenset({"bias", "beta"})
#: weight names that take ``weight_decay`` but no regularizer (normalization scales);
#: every other weight takes ``weight_regularizer`` and ``weight_decay``
UNREGULARIZED_WEIGHTS = frozenset({"gamma"})

REGULARIZERS = ("none", "l2norm")


def _non_negative(value: Any, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number >= 0, got {value!r}", key=key) from None
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}", key=key)
    return number


@dataclass(frozen=True)
class ScratchSpec:
    """A temporary the layer needs, alive only over the steps in ``used_in``.

    ``dtype=None`` means the model's float type; integer scratch (max-pool indices,
    dropout masks) names its own.
    """

    name: str
    shape: Shape
    used_in: frozenset[StepKind]
    dtype: str | None = None


@dataclass(frozen=True)
class LayerSetup:
    """What ``Layer.setup`` declares for given input shapes (batch dimension included)."""

    output_shapes: list[Shape]
    weights: list[WeightSpec] = field(default_factory=list)
    scratch: list[ScratchSpec] = field(default_factory=list)


@dataclass
class LayerContext:
    """The arrays one step of one layer works on, keyed the way ``setup`` declared them.

    ``grad_outputs[i]`` is dL/d(output i), given; ``grad_inputs[i]`` is dL/d(input i), to
    be written by ``calc_derivative``. ``gradients`` holds dL/d(weight) for trainable
    weights, written (not accumulated) by ``calc_gradient``.
    """

    inputs: list[Array]
    outputs: list[Array]
    weights: dict[str, Array] = field(default_factory=dict)
    gradients: dict[str, Array] = field(default_factory=dict)
    scratch: dict[str, Array] = field(default_factory=dict)
    grad_outputs: list[Array] = field(default_factory=list)
    grad_inputs: list[Array] = field(default_factory=list)
    training: bool = True
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    label: Array | None = None


class Layer(abc.ABC):
    """Base of all layers: properties shared by every type, and the step methods."""

    #: the layer's type in model files (NNTrainer's name)
    type_name: ClassVar[str]
    #: forward tensors ``calc_gradient`` reads besides ``grad_outputs``
    gradient_reads: frozenset[Operand] = frozenset()
    #: forward tensors ``calc_derivative`` reads besides ``grad_outputs``
    derivative_reads: frozenset[Operand] = frozenset()
    #: the output may be computed over the input's buffer (single input, same shape)
    supports_in_place: bool = False
    #: ``grad_inputs[0]`` may be computed over the buffer of ``grad_outputs[0]``
    derivative_in_place: bool = False
    #: the output is the input's bytes seen with another shape (flatten, reshape)
    output_is_view: bool = False
    #: every ``grad_inputs[i]`` equals ``grad_outputs[0]`` (addition): the planner may hand
    #: the incoming derivative's bytes to all inputs, so writing them must be a copy
    #: that is harmless when source and target are the same bytes
    derivative_passthrough: bool = False
    #: False where no derivative can flow to the inputs (integer ids of an embedding)
    has_derivative: bool = True

    def __init__(
        self,
        *,
        name: str | None = None,
        input_layers: Sequence[str] | str | None = None,
        trainable: bool = True,
        activation: str | None = None,
        weight_regularizer: str | None = None,
        weight_regularizer_constant: float = 1.0,
        weight_decay: float = 0.0,
        bias_decay: float = 0.0,
    ) -> None:
        if name is not None and (not name or any(c in name for c in " :,()[]")):
            raise ConfigError(f"layer name {name!r} must be non-empty without spaces or :,()[]")
        self.name = name
        if isinstance(input_layers, str):
            input_layers = [s.strip() for s in input_layers.split(",") if s.strip()]
        self.input_layers: list[str] | None = (
            list(input_layers) if input_layers is not None else None
        )
        self.trainable = parse_flag(trainable, "trainable")
        self.activation = activation.lower() if activation else None
        regularizer = (weight_regularizer or "none").strip().lower()
        if regularizer not in REGULARIZERS:
            raise ConfigError(
                f"layer '{self.display_name}': weight_regularizer must be one of "
                f"{', '.join(REGULARIZERS)}, got {weight_regularizer!r}",
                key="weight_regularizer",
            )
        self.weight_regularizer = regularizer
        self.weight_regularizer_constant = _non_negative(
            weight_regularizer_constant, "weight_regularizer_constant"
        )
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.bias_decay = _non_negative(bias_decay, "bias_decay")

    # -- declaration -------------------------------------------------------------

    @abc.abstractmethod
    def setup(self, input_shapes: Sequence[Shape]) -> LayerSetup:
        """Check the input shapes and declare outputs, weights and scratch.

        Raise :class:`ShapeError` (via :meth:`shape_error`) for inputs that do not fit;
        the graph adds the names of the layers that produced them.
        """

    def config(self) -> dict[str, Any]:
        """The constructor arguments beyond the common ones, to rebuild or save the layer."""
        return {}

    def weight_penalty(self, weight: WeightSpec) -> WeightPenalty:
        """The regularizer and decay of one of this layer's weights: names in
        ``BIAS_LIKE_WEIGHTS`` take ``bias_decay`` only, names in ``UNREGULARIZED_WEIGHTS``
        ``weight_decay`` only, the others ``weight_regularizer`` and ``weight_decay``.
        A layer whose weights split otherwise overrides this."""
        if weight.name in BIAS_LIKE_WEIGHTS:
            return WeightPenalty(decay=self.bias_decay)
        if weight.name in UNREGULARIZED_WEIGHTS:
            return WeightPenalty(decay=self.weight_decay)
        l2 = self.weight_regularizer_constant if self.weight_regularizer == "l2norm" else 0.0
        return WeightPenalty(l2=l2, decay=self.weight_decay)

    # -- steps ---------------------------------------------------------------------

    @abc.abstractmethod
    def forward(self, ctx: LayerContext) -> None:
        """Compute ``ctx.outputs`` from ``ctx.inputs`` and ``ctx.weights``."""

    def calc_gradient(self, ctx: LayerContext) -> None:
        """Write dL/d(weight) into ``ctx.gradients``; layers without weights do nothing."""

    @abc.abstractmethod
    def calc_derivative(self, ctx: LayerContext) -> None:
        """Write dL/d(input i) into ``ctx.grad_inputs[i]`` from ``ctx.grad_outputs``."""

    # -- helpers -------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        return self.name if self.name is not None else f"<unnamed {self.type_name}>"

    def shape_error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.type_name} layer '{self.display_name}': {message}")

    def expect_inputs(self, input_shapes: Sequence[Shape], count: int) -> None:
        if len(input_shapes) != count:
            raise self.shape_error(f"takes {count} input(s), got {len(input_shapes)}")

    def expect_rank(self, shape: Shape, rank: int, what: str) -> None:
        if len(shape) != rank:
            raise self.shape_error(
                f"expects a {what} input of rank {rank} (batch included), got {format_shape(shape)}"
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if args else ''}{args})"


def positive_int(value: Any, key: str) -> int:
    """Parse property ``key`` (given as a number or a model-file string) as a positive
    integer, with a clear error otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a positive integer, got {value!r}", key=key) from None
    if number <= 0 or (isinstance(value, float) and value != number):
        raise ConfigError(f"{key} must be a positive integer, got {value!r}", key=key)
    return number


def int_pair(value: Any, key: str, *, minimum: int = 1) -> tuple[int, int]:
    """Property ``key`` as an int or a pair of ints (``3``, ``(3, 3)``, ``"3,3"``), returned
    as a ``(height, width)`` pair."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    items: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value, value]
    if len(items) == 1:
        items = [items[0], items[0]]
    try:
        pair = (int(items[0]), int(items[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(
            f"{key} must be an integer or a pair of integers, got {value!r}", key=key
        ) from None
    if len(items) != 2 or min(pair) < minimum:
        raise ConfigError(f"{key} must be integers >= {minimum}, got {value!r}", key=key)
    return pair


def backward_uses(layer: Layer, step: StepKind) -> frozenset[Operand]:
    """The forward tensors a backward step of ``layer`` reads (for lifetime analysis)."""
    if step is StepKind.CALC_GRADIENT:
        return layer.gradient_reads
    if step is StepKind.CALC_DERIVATIVE:
        return layer.derivative_reads
    return frozenset()

