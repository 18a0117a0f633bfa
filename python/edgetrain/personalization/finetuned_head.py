"""A softmax head trained by edgetrain on a frozen backbone's features
(``spec/personalization.md``, section 5).

The backbone runs once per example (inference, no derivatives); only a FullyConnected
layer ``dim -> n_classes`` trains, so the personalization step's memory is the head's
plan plus the stored feature vectors. New classes grow the head: their weight columns
start *imprinted* (Qi et al., 2018, "Low-Shot Learning with Imprinted Weights") from the
class's mean embedded feature, then every column is fine-tuned on the support examples
and a few kept base examples (exemplars), balanced per class, so base classes are not
forgotten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..layers.fully_connected import FullyConnected
from ..layers.input import Input
from ..model import Model
from ..optimizers import Adam
from ..planning import MemoryPlan
from .classifier import FewShotClassifier
from .features import FeatureExtractor
from .storage import required

Array = NDArray[Any]

#: the scale of imprinted columns when there are no trained columns to match
DEFAULT_IMPRINT_SCALE = 10.0


class EmbeddedRows:
    """The head's training set without copying it: rows of several raw feature arrays
    (``parts``, seen as one after the other) taken in ``order`` and embedded one batch at
    a time, with their class ids (a ``Dataset`` for ``Model.fit``)."""

    def __init__(
        self,
        parts: Sequence[Array],
        ids: Array,
        order: Array,
        embed: Callable[[Array], Array],
    ) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.ids = ids
        self.order = order
        self.embed = embed

    def __len__(self) -> int:
        return len(self.order)

    def take(self, indices: Array) -> tuple[list[Array], Array]:
        rows = self.order[np.asarray(indices)]
        source = np.searchsorted(self.starts, rows, side="right") - 1
        batch = np.empty((len(rows), self.parts[0].shape[1]), dtype=self.parts[0].dtype)
        for k, part in enumerate(self.parts):
            here = source == k
            batch[here] = part[rows[here] - self.starts[k]]
        return [self.embed(batch)], self.ids[rows]


def balanced_indices(ids: Array, classes: int, rng: np.random.Generator) -> Array:
    """Indices of ``ids`` giving every class as many samples as the largest one: each
    class's samples repeated whole, then a random few of them to fill up."""
    groups = [np.flatnonzero(ids == c) for c in range(classes)]
    target = max(len(g) for g in groups)
    chosen = []
    for group in groups:
        if len(group) == 0:
            continue
        repeats, rest = divmod(target, len(group))
        chosen.append(np.tile(group, repeats))
        chosen.append(rng.choice(group, size=rest, replace=False))
    return np.concatenate(chosen)


class FinetunedHead(FewShotClassifier):
    """``softmax(W^T e + b)`` over the embedded features ``e``, ``W`` of shape
    ``(dim, n_classes)``, trained with Adam and cross entropy by an edgetrain ``Model``.

    ``fit_base`` trains the head from scratch on all base data (``base_epochs``) and
    keeps ``exemplars_per_class`` random base examples per class (their raw features).
    ``fit`` adds new classes (imprinted columns), then fine-tunes the whole head for
    ``epochs`` passes over the exemplars and every support example so far, each class
    resampled to the size of the largest. ``training_plan`` is the memory plan of the
    last training run (the head's arena: weights, gradients, Adam state, one batch)."""

    kind = "finetuned_head"

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        *,
        epochs: int = 30,
        base_epochs: int = 10,
        learning_rate: float = 0.01,
        batch_size: int = 32,
        exemplars_per_class: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__(extractor)
        for name, value in (
            ("epochs", epochs),
            ("base_epochs", base_epochs),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(exemplars_per_class, bool) or exemplars_per_class < 0:
            raise ConfigError(f"exemplars_per_class must be >= 0, got {exemplars_per_class!r}")
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate!r}")
        self.epochs = int(epochs)
        self.base_epochs = int(base_epochs)
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.exemplars_per_class = int(exemplars_per_class)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        #: the head's weight ``(dim, n_classes)`` and bias ``(n_classes,)``
        self.weight_: Array | None = None
        self.bias_: Array | None = None
        self._exemplars: Array | None = None
        self._exemplar_classes: Array | None = None
        self.training_plan: MemoryPlan | None = None
        #: the trained head, which ``predict_proba`` runs
        self.head: Model | None = None

    # -- the head as an edgetrain model ------------------------------------------------------

    def _head(self, dim: int) -> Model:
        return Model(
            [
                Input(shape=(dim,), name="features"),
                FullyConnected(unit=self.n_classes, name="classes", activation="softmax"),
            ],
            loss="cross",
            name="head",
        )

    def _train(self, parts: Sequence[Array], ids: Array, epochs: int) -> None:
        """Train the head (starting from ``weight_``/``bias_`` when set) on class-balanced
        samples of the rows of ``parts``, embedded a batch at a time."""
        order = balanced_indices(ids, self.n_classes, self._rng)
        data = EmbeddedRows(parts, ids, order, self.embed)
        head = self._head(parts[0].shape[1])
        head.compile(
            Adam(self.learning_rate),
            batch_size=min(self.batch_size, len(data)),
            seed=self.seed,
            dtype=parts[0].dtype,
        )
        if self.weight_ is not None and self.bias_ is not None:
            head.set_weights({"classes:weight": self.weight_, "classes:bias": self.bias_})
        head.fit(data, epochs=epochs)
        weights = head.get_weights()
        self.weight_, self.bias_ = weights["classes:weight"], weights["classes:bias"]
        self.training_plan = head.plan()
        self.head = head

    # -- learning ------------------------------------------------------------------------

    def _learn_base(self, embedded: Array, ids: Array, features: Array) -> None:
        self._train([features], ids, self.base_epochs)
        keep = []
        for c in range(self.n_classes):
            members = np.flatnonzero(ids == c)
            count = min(self.exemplars_per_class, len(members))
            keep.append(np.sort(self._rng.choice(members, size=count, replace=False)))
        chosen = np.concatenate(keep)
        self._exemplars = features[chosen]
        self._exemplar_classes = ids[chosen]

    def _learn_support(self) -> None:
        parts, ids = list(self._support), np.concatenate(self._support_classes)
        new = ids >= (0 if self.weight_ is None else self.weight_.shape[1])
        self._imprint(self.embed(np.concatenate(parts)[new]), ids[new])
        if self._exemplars is not None and self._exemplar_classes is not None:
            parts.insert(0, self._exemplars)
            ids = np.concatenate([self._exemplar_classes, ids])
        self._train(parts, ids, self.epochs)

    def _settings(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "base_epochs": self.base_epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "exemplars_per_class": self.exemplars_per_class,
            "seed": self.seed,
        }

    def _state(self) -> dict[str, Array]:
        assert self.weight_ is not None and self.bias_ is not None
        state = {
            "weight": self.weight_,
            "bias": self.bias_,
            "rng_state": np.array(json.dumps(self._rng.bit_generator.state)),
        }
        if self._exemplars is not None and self._exemplar_classes is not None:
            state |= {"exemplars": self._exemplars, "exemplar_classes": self._exemplar_classes}
        return state

    def _restore(self, arrays: dict[str, Array], path: str | os.PathLike[str]) -> None:
        required(arrays, ("weight", "bias", "rng_state"), path)
        self.weight_, self.bias_ = arrays["weight"], arrays["bias"]
        self._rng.bit_generator.state = json.loads(str(arrays["rng_state"]))
        if "exemplars" in arrays:
            required(arrays, ("exemplar_classes",), path)
            self._exemplars = arrays["exemplars"]
            self._exemplar_classes = arrays["exemplar_classes"].astype(np.int64)
        head = self._head(self.weight_.shape[0])
        head.compile(None, batch_size=self.batch_size, seed=self.seed, dtype=self.weight_.dtype)
        head.set_weights({"classes:weight": self.weight_, "classes:bias": self.bias_})
        self.head = head

    def stored_bytes(self) -> dict[str, int]:
        stored = super().stored_bytes()
        if self._exemplars is not None:
            stored["kept base examples (features)"] = self._exemplars.nbytes
        if self.weight_ is not None and self.bias_ is not None:
            stored["head weights"] = self.weight_.nbytes + self.bias_.nbytes
        return stored

    def _imprint(self, embedded: Array, ids: Array) -> None:
        """Columns for classes the head does not have yet: the class's mean embedded
        feature, unit length, times the mean norm of the trained columns; bias the mean
        trained bias."""
        dim = embedded.shape[1]
        have = 0 if self.weight_ is None else self.weight_.shape[1]
        if have == self.n_classes:
            return
        weight = np.zeros((dim, self.n_classes), dtype=embedded.dtype)
        bias = np.zeros(self.n_classes, dtype=embedded.dtype)
        scale = DEFAULT_IMPRINT_SCALE
        if self.weight_ is not None and self.bias_ is not None and have:
            weight[:, :have] = self.weight_
            bias[:have] = self.bias_
            scale = float(np.linalg.norm(self.weight_, axis=0).mean())
            bias[have:] = self.bias_.mean()
        for c in range(have, self.n_classes):
            mean = embedded[ids == c].mean(axis=0)
            weight[:, c] = scale * mean / max(float(np.linalg.norm(mean)), 1e-12)
        self.weight_, self.bias_ = weight, bias

    def _probabilities(self, embedded: Array) -> Array:
        assert self.head is not None
        return self.head.predict(embedded)
