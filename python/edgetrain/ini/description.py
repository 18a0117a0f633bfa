"""What a model file describes, typed: the result of reading one and the input of
writing one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..layers.base import Layer
from ..optimizers import Optimizer
from ..schedules import LearningRateSchedule

if TYPE_CHECKING:
    from ..model import Model


@dataclass
class DataFiles:
    """Data files the model file names (``[DataSet]`` or ``[train_set]``...), resolved
    against the model file's directory as NNTrainer does."""

    train: Path | None = None
    valid: Path | None = None
    test: Path | None = None
    buffer_size: int | None = None


@dataclass
class SwapSettings:
    """NNTrainer's ``memory_swap`` (newer name ``fsu``) keys, kept for the swap planner.
    ``path`` is None when the file does not set ``memory_swap_path``: the swap file then
    goes to the system temp dir (NNTrainer's default, ``.``, is the process's working
    directory, which on a device is often read-only or the app's install directory)."""

    enabled: bool = False
    path: str | None = None
    lookahead: int = 0


@dataclass
class ModelDescription:
    """Everything a model file says, typed. ``loss`` is edgetrain's loss name
    (``losses.LOSSES``); ``optimizer`` carries the learning-rate schedule."""

    layers: list[Layer]
    loss: str | None = None
    optimizer: Optimizer | None = None
    batch_size: int = 1
    epochs: int = 1
    data: DataFiles = field(default_factory=DataFiles)
    swap: SwapSettings = field(default_factory=SwapSettings)
    save_path: Path | None = None
    save_best_path: Path | None = None
    continue_train: bool = False
    memory_optimization: bool = True
    #: edgetrain's ``[Model] recompute`` (not NNTrainer's): ``compile(recompute=True)``
    recompute: bool = False
    #: NNTrainer's Adam ``torch_ref``; edgetrain's Adam always uses the torch formula
    torch_ref: bool = False
    source: Path | None = None

    @property
    def schedule(self) -> LearningRateSchedule | None:
        return self.optimizer.schedule if self.optimizer is not None else None


@dataclass
class ModelFile:
    """A model read from a file, with the training settings the file gives."""

    model: Model
    description: ModelDescription

    @property
    def optimizer(self) -> Optimizer | None:
        return self.description.optimizer

    @property
    def batch_size(self) -> int:
        return self.description.batch_size

    @property
    def epochs(self) -> int:
        return self.description.epochs

    @property
    def save_path(self) -> Path | None:
        return self.description.save_path

    @property
    def train_data(self) -> Path | None:
        return self.description.data.train

    @property
    def valid_data(self) -> Path | None:
        return self.description.data.valid

    @property
    def test_data(self) -> Path | None:
        return self.description.data.test
