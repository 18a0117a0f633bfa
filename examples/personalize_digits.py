"""Few-shot personalization: a digit classifier trained on 0-7 learns 8 and 9 from five
examples each, on the device, without retraining its backbone.

1. Train a small CNN on the digits 0 to 7 of scikit-learn's handwritten digits (the
   "pretrained" model a device would ship with).
2. Cut it at its ``flatten`` layer (256 features): a frozen feature extractor.
3. Personalize with five examples each of 8 and 9, two ways: a nearest-centroid classifier
   (SimpleShot) and a fine-tuned softmax head, both keeping the classes 0-7.
4. Report the accuracy on a held-out test set of all ten digits before and after, and the
   memory personalization used: the planned arenas (backbone for one batch, the head's
   training step) and the bytes each classifier keeps, then two measurements of the
   process. tracemalloc's peak also counts transient allocations the plans do not hold
   (``Model.fit`` reading the training set once to check it, numpy temporaries, Python
   objects); the peak resident set only grows if personalization needs more than the
   base training before it already used, which it does not here.

Run ``python examples/personalize_digits.py`` (needs scikit-learn:
``pip install 'edgetrain[examples]'``). ``tests/spec/test_personalize_example.py`` runs it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgetrain import Model
from edgetrain import layers as L
from edgetrain.datasets import load_digits
from edgetrain.optimizers import Adam
from edgetrain.personalization import (
    FeatureExtractor,
    FewShotClassifier,
    FinetunedHead,
    NearestCentroid,
)
from edgetrain.planning.report import format_bytes

BASE_CLASSES = tuple(range(8))
NEW_CLASSES = (8, 9)


def build_backbone() -> Model:
    """Conv + batch norm + ReLU + max pool + flatten (the features), an 8-way softmax."""
    return Model(
        [
            L.Input(shape=(1, 8, 8), name="image"),
            L.Conv2D(filters=16, kernel_size=3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1", activation="relu"),
            L.Pooling2D("max", pool_size=2, stride=2, name="pool1"),
            L.Flatten(name="flatten"),
            L.FullyConnected(unit=len(BASE_CLASSES), name="classes", activation="softmax"),
        ],
        loss="cross",
    )


@dataclass
class Split:
    """Training images of the base classes, the support set, and the held-out test set."""

    x_base: NDArray[np.float32]
    y_base: NDArray[np.int64]
    x_support: NDArray[np.float32]
    y_support: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]


def split_digits(shots: int, seed: int, test_fraction: float = 0.25) -> Split:
    """A seeded held-out test set of all ten digits; from the rest, every base-class image
    for training and ``shots`` images of each new class as the user's examples."""
    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, rest = order[:n_test], order[n_test:]
    base = rest[np.isin(y[rest], BASE_CLASSES)]
    support = np.concatenate([rest[y[rest] == c][:shots] for c in NEW_CLASSES])
    return Split(x[base], y[base], x[support], y[support], x[test], y[test])


@dataclass
class Accuracy:
    """Accuracy on the whole test set and on its base-class and new-class parts."""

    all: float
    base: float
    new: float

    @classmethod
    def of(cls, predicted: NDArray[np.int64], truth: NDArray[np.int64]) -> Accuracy:
        new = np.isin(truth, NEW_CLASSES)
        correct = predicted == truth
        return cls(float(correct.mean()), float(correct[~new].mean()), float(correct[new].mean()))

    def __str__(self) -> str:
        return f"all ten {self.all:6.1%}   0-7 {self.base:6.1%}   8-9 {self.new:6.1%}"


@dataclass
class Result:
    """What the example measured."""

    before: Accuracy
    after: dict[str, Accuracy]
    #: bytes by what they hold, per method
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    #: growth of the process's peak resident set (ru_maxrss) during each personalization
    peak_rss_growth: dict[str, int] = field(default_factory=dict)
    #: the most bytes allocated at once during each personalization (tracemalloc)
    peak_allocated: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def peak_rss_bytes() -> int:
    """The process's peak resident set so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def personalize(
    method: FewShotClassifier, data: Split, extractor: FeatureExtractor
) -> tuple[Accuracy, dict[str, int], tuple[int, int], float]:
    """Learn the base classes (from the base training data), then the new ones from the
    support set; the accuracy after, the bytes the personalization step holds, the peak
    RSS growth and allocation peak during it, and its seconds."""
    method.fit_base(data.x_base, data.y_base)
    rss = peak_rss_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    method.fit(data.x_support, data.y_support)
    seconds = time.perf_counter() - start
    allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    growth = peak_rss_bytes() - rss
    accuracy = Accuracy.of(method.predict(data.x_test), data.y_test)
    assert extractor.plan is not None
    memory = {"feature extraction arena (one batch; weights borrowed)": extractor.plan.arena_bytes}
    if isinstance(method, FinetunedHead) and method.training_plan is not None:
        memory["head training arena (weights, gradients, Adam state, batch)"] = (
            method.training_plan.arena_bytes
        )
    memory.update(method.stored_bytes())
    return accuracy, memory, (growth, allocated), seconds


def run(shots: int = 5, epochs: int = 15, seed: int = 0, verbose: bool = True) -> Result:
    """The whole example; prints as it goes when ``verbose``."""
    say = print if verbose else (lambda *args: None)
    data = split_digits(shots, seed)
    say(
        f"base training: {len(data.x_base)} images of 0-7; support: {shots} images each of "
        f"8 and 9; test: {len(data.x_test)} images of all ten digits"
    )
    backbone = build_backbone()
    backbone.compile(Adam(0.01), batch_size=32, seed=seed)
    start = time.perf_counter()
    backbone.fit(data.x_base, data.y_base, epochs=epochs)
    say(f"trained the backbone for {epochs} epochs in {time.perf_counter() - start:.1f} s")
    before = Accuracy.of(backbone.predict(data.x_test).argmax(axis=1), data.y_test)
    say(f"before personalization  {before}   (the model only knows 0-7)")
    backbone.freeze()
    extractor = FeatureExtractor(backbone, "flatten", batch_size=10)
    result = Result(before, {})
    methods: dict[str, FewShotClassifier] = {
        "nearest centroid": NearestCentroid(extractor),
        "fine-tuned head": FinetunedHead(extractor, seed=seed),
    }
    for name, method in methods.items():
        accuracy, memory, (growth, allocated), seconds = personalize(method, data, extractor)
        result.after[name] = accuracy
        result.memory[name] = memory
        result.peak_rss_growth[name] = growth
        result.peak_allocated[name] = allocated
        result.seconds[name] = seconds
        say(f"after, {name:16}  {accuracy}   ({seconds * 1000:.0f} ms to personalize)")
    for name, memory in result.memory.items():
        say(f"memory of personalization, {name} (planned and counted bytes):")
        for what, size in memory.items():
            say(f"  {what:64} {format_bytes(size):>10}")
        say(f"  {'total':64} {format_bytes(sum(memory.values())):>10}")
        say(
            "  measured: most bytes allocated at once while personalizing (tracemalloc): "
            f"{format_bytes(result.peak_allocated[name])}"
        )
        say(
            "  measured: growth of the process's peak RSS while personalizing (ru_maxrss): "
            f"{format_bytes(result.peak_rss_growth[name])}"
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=5, help="examples of each new digit")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of base training")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    run(options.shots, options.epochs, options.seed)
