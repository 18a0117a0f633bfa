"""Optimizers: each updates one weight in place from its gradient and its own state.

The update is applied per weight right after its gradient exists (the apply-gradient
step of its layer), so an optimizer never sees the whole model at once. The formulas are
PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``), which NNTrainer's goldens use, with
their defaults. A layer's ``weight_decay``/``bias_decay`` reaches ``apply`` as ``decay``:
added to the gradient (coupled) by SGD and Adam, applied to the weight (decoupled) by
AdamW. Formulas: ``spec/optimizers.md``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError
from .schedules import LearningRateSchedule, as_schedule

Array = NDArray[Any]


class Optimizer(abc.ABC):
    """Base: a learning rate (number or schedule) and the per-weight update."""

    type_name: ClassVar[str]

    def __init__(self, learning_rate: float | LearningRateSchedule = 1e-3) -> None:
        self.schedule = as_schedule(learning_rate)

    @abc.abstractmethod
    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors kept per weight, each of the weight's shape."""

    @abc.abstractmethod
    def apply(
        self,
        weight: Array,
        grad: Array,
        state: Mapping[str, Array],
        lr: float,
        step: int,
        decay: float = 0.0,
    ) -> None:
        """Update ``weight`` in place; ``step`` counts updates from 1 (Adam's bias terms);
        ``decay`` is the weight's own decay. ``grad`` may be overwritten."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments besides the learning rate."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}(learning_rate={self.schedule!r}, {args})"


def _check_range(value: float, what: str, low: float, high: float) -> float:
    number = float(value)
    if not low <= number < high:
        raise ConfigError(f"{what} must be in [{low}, {high}), got {value!r}")
    return number


class SGD(Optimizer):
    """``buf = momentum * buf + g; w -= lr * buf`` (plain ``w -= lr * g`` at momentum 0)."""

    type_name = "sgd"

    def __init__(
        self, learning_rate: float | LearningRateSchedule = 1e-3, momentum: float = 0.0
    ) -> None:
        super().__init__(learning_rate)
        self.momentum = _check_range(momentum, "momentum", 0.0, 1.0)

    def state_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum > 0 else ()

    def apply(
        self,
        weight: Array,
        grad: Array,
        state: Mapping[str, Array],
        lr: float,
        step: int,
        decay: float = 0.0,
    ) -> None:
        _couple_decay(weight, grad, decay)
        rate = weight.dtype.type(lr)
        if self.momentum == 0:
            weight -= rate * grad
            return
        buf = state["momentum"]  # starts at zero, so the first step gives buf = g as torch does
        buf *= weight.dtype.type(self.momentum)
        buf += grad
        weight -= rate * buf

    def config(self) -> dict[str, Any]:
        return {"momentum": self.momentum}


class Adam(Optimizer):
    """``torch.optim.Adam`` (NNTrainer's ``torch_ref=true``)::

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    type_name = "adam"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(learning_rate)
        self.beta1 = _check_range(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _check_range(beta2, "beta2", 0.0, 1.0)
        self.epsilon = float(epsilon)
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be positive, got {epsilon!r}")

    def state_names(self) -> tuple[str, ...]:
        return ("m", "v")

    def _decay(self, weight: Array, grad: Array, lr: float, decay: float) -> None:
        """Adam couples the weight's decay into the gradient (``torch.optim.Adam``'s
        ``weight_decay``); AdamW overrides this with decoupled decay."""
        _couple_decay(weight, grad, decay)

    def apply(
        self,
        weight: Array,
        grad: Array,
        state: Mapping[str, Array],
        lr: float,
        step: int,
        decay: float = 0.0,
    ) -> None:
        f = weight.dtype.type
        self._decay(weight, grad, lr, decay)
        m, v = state["m"], state["v"]
        m *= f(self.beta1)
        m += f(1.0 - self.beta1) * grad
        v *= f(self.beta2)
        v += f(1.0 - self.beta2) * grad * grad
        step_size = f(lr / (1.0 - self.beta1**step))
        denom = np.sqrt(v) / f(math.sqrt(1.0 - self.beta2**step)) + f(self.epsilon)
        weight -= step_size * (m / denom)

    def config(self) -> dict[str, Any]:
        return {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam plus decoupled decay ``w -= lr * (weight_decay + decay)
    * w`` before the Adam step, ``decay`` being the layer's own decay of that weight."""

    type_name = "adamw"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(learning_rate, beta1, beta2, epsilon)
        self.weight_decay = float(weight_decay)
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")

    def _decay(self, weight: Array, grad: Array, lr: float, decay: float) -> None:
        rate = self.weight_decay + decay
        if rate:
            weight *= weight.dtype.type(1.0 - lr * rate)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "weight_decay": self.weight_decay}


def _couple_decay(weight: Array, grad: Array, decay: float) -> None:
    """``g += decay * w``: L2-style decay folded into the gradient."""
    if decay:
        grad += weight.dtype.type(decay) * weight


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.type_name: cls for cls in (SGD, Adam, AdamW)}
