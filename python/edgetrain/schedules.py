"""Learning-rate schedules, as functions of the 0-based iteration.

The definitions are NNTrainer's (``nntrainer/optimizers/lr_scheduler_*.cpp``), so a model
file trains the same way in both: the step schedule switches *after* a boundary
iteration, and the cosine schedule restarts every ``decay_steps`` iterations.
Formulas: ``spec/optimizers.md``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from .errors import ConfigError


class LearningRateSchedule(abc.ABC):
    """Maps the number of iterations already done to the learning rate of the next one."""

    type_name: ClassVar[str]

    @abc.abstractmethod
    def lr_at(self, iteration: int) -> float:
        """The learning rate for the iteration numbered ``iteration`` (from 0)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments, for saving the schedule."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _positive(value: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a positive number, got {value!r}", key=what) from None
    if not number > 0 or math.isinf(number):
        raise ConfigError(f"{what} must be a positive number, got {value!r}", key=what)
    return number


def _integer(value: int, what: str, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != math.floor(value)
        or value < minimum
    ):
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}", key=what)
    return int(value)


class Constant(LearningRateSchedule):
    """The same rate for every iteration."""

    type_name = "constant"

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _positive(learning_rate, "learning_rate")

    def lr_at(self, iteration: int) -> float:
        return self.learning_rate

    def config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}


class Exponential(LearningRateSchedule):
    """``learning_rate * decay_rate ** (iteration / decay_steps)``."""

    type_name = "exponential"

    def __init__(self, learning_rate: float, decay_rate: float, decay_steps: int) -> None:
        self.learning_rate = _positive(learning_rate, "learning_rate")
        self.decay_rate = _positive(decay_rate, "decay_rate")
        self.decay_steps = _integer(decay_steps, "decay_steps", 1)

    def lr_at(self, iteration: int) -> float:
        return float(self.learning_rate * self.decay_rate ** (iteration / self.decay_steps))

    def config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
        }


class Step(LearningRateSchedule):
    """``learning_rates[k]`` for the iterations ``iterations[k-1] < i <= iterations[k]``
    (one more rate than boundaries, the last one for every later iteration); boundaries
    must increase. With ``iterations=[10]`` iterations 0..10 use the first rate."""

    type_name = "step"

    def __init__(self, iterations: Sequence[int], learning_rates: Sequence[float]) -> None:
        self.iterations = [_integer(i, "iterations", 0) for i in iterations]
        self.learning_rates = [_positive(r, "learning_rate") for r in learning_rates]
        if len(self.learning_rates) != len(self.iterations) + 1:
            raise ConfigError(
                "step schedule needs one more learning rate than iterations, got "
                f"{len(self.learning_rates)} rates for {len(self.iterations)} iterations"
            )
        if any(b <= a for a, b in zip(self.iterations, self.iterations[1:])) or any(
            i < 0 for i in self.iterations
        ):
            raise ConfigError(f"step iterations must increase from 0 up, got {self.iterations}")

    def lr_at(self, iteration: int) -> float:
        index = sum(1 for boundary in self.iterations if iteration > boundary)
        return self.learning_rates[index]

    def config(self) -> dict[str, Any]:
        return {"iterations": list(self.iterations), "learning_rates": list(self.learning_rates)}


class Cosine(LearningRateSchedule):
    """Cosine annealing from ``max_learning_rate`` towards ``min_learning_rate`` over
    ``decay_steps`` iterations, restarting at the maximum every ``decay_steps``:
    ``min + (max - min) * (1 + cos(pi * (i mod decay_steps) / decay_steps)) / 2``."""

    type_name = "cosine"

    def __init__(
        self, max_learning_rate: float, decay_steps: int, min_learning_rate: float = 0.0
    ) -> None:
        self.max_learning_rate = _positive(max_learning_rate, "max_learning_rate")
        self.min_learning_rate = float(min_learning_rate)
        self.decay_steps = _integer(decay_steps, "decay_steps", 1)
        if not 0 <= self.min_learning_rate <= self.max_learning_rate:
            raise ConfigError("min_learning_rate must be between 0 and max_learning_rate")

    def lr_at(self, iteration: int) -> float:
        progress = (iteration % self.decay_steps) / self.decay_steps
        span = self.max_learning_rate - self.min_learning_rate
        return self.min_learning_rate + 0.5 * span * (1.0 + math.cos(math.pi * progress))

    def config(self) -> dict[str, Any]:
        return {
            "max_learning_rate": self.max_learning_rate,
            "decay_steps": self.decay_steps,
            "min_learning_rate": self.min_learning_rate,
        }


class Linear(LearningRateSchedule):
    """From ``max_learning_rate`` down to ``min_learning_rate`` in a straight line over
    ``decay_steps`` iterations, then constant:
    ``max(max - (max - min) * i / decay_steps, min)``."""

    type_name = "linear"

    def __init__(
        self, max_learning_rate: float, decay_steps: int, min_learning_rate: float = 0.0
    ) -> None:
        self.max_learning_rate = _positive(max_learning_rate, "max_learning_rate")
        self.min_learning_rate = float(min_learning_rate)
        self.decay_steps = _integer(decay_steps, "decay_steps", 1)
        if not 0 <= self.min_learning_rate <= self.max_learning_rate:
            raise ConfigError("min_learning_rate must be between 0 and max_learning_rate")

    def lr_at(self, iteration: int) -> float:
        span = self.max_learning_rate - self.min_learning_rate
        rate = self.max_learning_rate - span * (iteration / self.decay_steps)
        return max(rate, self.min_learning_rate)

    def config(self) -> dict[str, Any]:
        return {
            "max_learning_rate": self.max_learning_rate,
            "decay_steps": self.decay_steps,
            "min_learning_rate": self.min_learning_rate,
        }


SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    cls.type_name: cls for cls in (Constant, Exponential, Step, Cosine, Linear)
}


def as_schedule(rate: float | LearningRateSchedule) -> LearningRateSchedule:
    """A plain number means a constant rate."""
    return rate if isinstance(rate, LearningRateSchedule) else Constant(rate)
