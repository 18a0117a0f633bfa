"""Nearest-centroid few-shot classifier on a frozen backbone: SimpleShot (Wang et al.,
2019, "SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot Learning")
with base classes kept as centroids (``spec/personalization.md``, section 4).

No training, no gradients: learning a class is averaging a few normalised feature
vectors, so personalization costs one backbone forward per example and ``dim`` floats
per class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .classifier import FewShotClassifier
from .features import FeatureExtractor
from .storage import required

Array = NDArray[Any]


class NearestCentroid(FewShotClassifier):
    """Each class is the mean of its examples' centred, unit-length features (CL2N); a
    sample belongs to the nearest centroid in Euclidean distance. ``predict_proba`` is
    ``softmax(-||e - c||^2 / temperature)`` over the centroids (the ranking, hence
    ``predict``, does not depend on ``temperature``).

    Base classes (``fit_base``) are kept as the sum and count of their embedded
    features, which stay valid because their mean is the fixed centring mean; support
    examples are kept raw, so that without base classes they can be re-embedded when the
    support mean moves."""

    kind = "nearest_centroid"

    def __init__(
        self, extractor: FeatureExtractor | None = None, *, temperature: float = 0.1
    ) -> None:
        super().__init__(extractor)
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self._base_sum: Array | None = None
        self._base_count: Array | None = None
        #: ``(n_classes, dim)``: one centroid per class, rows in ``classes_`` order
        self.centroids_: Array | None = None

    def _learn_base(self, embedded: Array, ids: Array, features: Array) -> None:
        sums = np.zeros((self.n_classes, embedded.shape[1]), dtype=np.float64)
        np.add.at(sums, ids, embedded)
        self._base_sum = sums
        self._base_count = np.bincount(ids, minlength=self.n_classes).astype(np.float64)
        self.centroids_ = (sums / self._base_count[:, None]).astype(embedded.dtype)

    def _learn_support(self) -> None:
        features, ids = self.support()
        embedded = self.embed(features)
        sums = np.zeros((self.n_classes, embedded.shape[1]), dtype=np.float64)
        counts = np.zeros(self.n_classes, dtype=np.float64)
        if self._base_sum is not None and self._base_count is not None:
            known = len(self._base_count)
            sums[:known] = self._base_sum
            counts[:known] = self._base_count
        np.add.at(sums, ids, embedded)
        counts += np.bincount(ids, minlength=self.n_classes)
        self.centroids_ = (sums / counts[:, None]).astype(embedded.dtype)

    def _settings(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def _state(self) -> dict[str, Array]:
        assert self.centroids_ is not None
        state = {"centroids": self.centroids_}
        if self._base_sum is not None and self._base_count is not None:
            state |= {"base_sum": self._base_sum, "base_count": self._base_count}
        return state

    def _restore(self, arrays: dict[str, Array], path: str | os.PathLike[str]) -> None:
        required(arrays, ("centroids",), path)
        self.centroids_ = arrays["centroids"]
        if "base_sum" in arrays:
            required(arrays, ("base_count",), path)
            self._base_sum, self._base_count = arrays["base_sum"], arrays["base_count"]

    def stored_bytes(self) -> dict[str, int]:
        stored = super().stored_bytes()
        if self.centroids_ is not None:
            stored["centroids"] = self.centroids_.nbytes
        if self._base_sum is not None and self._base_count is not None:
            stored["base class sums and counts"] = self._base_sum.nbytes + self._base_count.nbytes
        return stored

    def distances(self, x: Array | Sequence[Array]) -> Array:
        """Squared Euclidean distances ``(n, n_classes)`` of embedded samples to centroids."""
        return self._distances(self.embed(self.features(x)))

    def _distances(self, embedded: Array) -> Array:
        assert self.centroids_ is not None
        c = self.centroids_
        squared = (
            np.sum(embedded**2, axis=1, keepdims=True)
            - 2.0 * embedded @ c.T
            + np.sum(c**2, axis=1)[None, :]
        )
        result: Array = np.maximum(squared, 0.0)
        return result

    def _probabilities(self, embedded: Array) -> Array:
        logits = -self._distances(embedded) / embedded.dtype.type(self.temperature)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        result: Array = exp / exp.sum(axis=1, keepdims=True)
        return result
