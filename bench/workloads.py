"""The standard workloads every benchmark measures: a model file and a batch size.

The model files are ``examples/*.ini`` (made by ``examples/make_workload_inis.py``; all
train with SGD, momentum 0.9). Names are ``<model>-b<batch>`` so one file can appear at
several batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetrain import Model
from edgetrain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    """One model file trained at one batch size."""

    model: str
    batch_size: int
    description: str

    @property
    def name(self) -> str:
        return f"{self.model}-b{self.batch_size}"

    @property
    def path(self) -> Path:
        return ROOT / "examples" / f"{self.model}.ini"

    def compile(self, *, training: bool = True, recompute: bool = False) -> Model:
        """The model compiled at this batch size (with the file's optimizer when
        ``training``; recomputing as ``spec/recompute.md`` says when ``recompute``)."""
        model = Model.from_ini(self.path)
        assert model.description is not None
        optimizer = model.description.optimizer if training else None
        model.compile(optimizer, batch_size=self.batch_size, recompute=recompute)
        return model


WORKLOADS: tuple[Workload, ...] = (
    Workload("mlp", 64, "MLP 784-1024-1024-10"),
    Workload("lenet5", 32, "LeNet-5, 1x28x28"),
    Workload("vgg16", 32, "VGG-16 + batch norm, 3x32x32, 100 classes"),
    Workload("vgg16", 128, "VGG-16 + batch norm, 3x32x32, 100 classes"),
    Workload("resnet18", 32, "ResNet-18 (CIFAR), 3x32x32, 100 classes"),
    Workload("resnet18", 128, "ResNet-18 (CIFAR), 3x32x32, 100 classes"),
)


def select(names: list[str] | None) -> list[Workload]:
    """The workloads called ``names`` (a model name selects all its batch sizes); all of
    them for None."""
    if not names:
        return list(WORKLOADS)
    chosen: list[Workload] = []
    for name in names:
        hits = [w for w in WORKLOADS if name in (w.name, w.model)]
        if not hits:
            known = ", ".join(w.name for w in WORKLOADS)
            raise ConfigError(f"unknown workload {name!r} (known: {known}, or a model name)")
        chosen += [w for w in hits if w not in chosen]
    return chosen
