"""What every few-shot classifier shares: the label bookkeeping, the feature vectors and
their SimpleShot normalisation (``spec/personalization.md``, sections 3 and 6).

A classifier knows *base* classes (``fit_base``: plenty of data, typically the classes
the backbone was trained on; optional) and *new* classes (``fit``: a handful of examples
each). Every call to ``fit`` adds the classes it has not seen to the ones known, so the
classifier predicts base and new classes together. Labels are ints or strings;
``classes_`` lists them in the order they were learned, which is also the order of the
``predict_proba`` columns.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, DataError, ModelFileError, StateError
from .features import FeatureExtractor
from .storage import read_state, required, write_state

Array = NDArray[Any]


def centred_unit(features: Array, mean: Array) -> Array:
    """SimpleShot's CL2N: ``(f - mean) / ||f - mean||`` per row (a row equal to the mean
    stays zero rather than dividing by zero)."""
    centred = features - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    tiny = np.finfo(centred.dtype).tiny
    unit: Array = centred / np.maximum(norms, tiny)
    return unit


class FewShotClassifier(abc.ABC):
    """``fit_base`` (optional, once, first), then ``fit`` any number of times; ``predict``,
    ``predict_proba`` and ``score`` as in scikit-learn; ``save`` and ``load``. With
    ``extractor=None`` the inputs are feature vectors ``(n, dim)`` already."""

    #: the name a saved file gives this kind of classifier
    kind: ClassVar[str]
    _kinds: ClassVar[dict[str, type[FewShotClassifier]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FewShotClassifier._kinds[cls.kind] = cls

    def __init__(self, extractor: FeatureExtractor | None = None) -> None:
        self.extractor = extractor
        self._labels: list[Any] = []
        #: the centring mean, and where it came from: "base" (fixed) or "support"
        self.mean_: Array | None = None
        self.mean_from: str | None = None
        self._support: list[Array] = []
        self._support_classes: list[Array] = []

    # -- labels and features -------------------------------------------------------------

    @property
    def classes_(self) -> Array:
        """Every class known, base classes first, in the order learned."""
        return np.asarray(self._labels)

    @property
    def n_classes(self) -> int:
        return len(self._labels)

    def features(self, x: Array | Sequence[Array]) -> Array:
        """Raw feature vectors of ``x`` (the backbone's, or ``x`` itself), checked."""
        if self.extractor is not None:
            return self.extractor(x)
        features = np.asarray(x)
        if features.ndim != 2 or len(features) == 0:
            raise DataError(
                f"without a feature extractor the inputs are feature vectors (n, dim), "
                f"got shape {features.shape}"
            )
        if not np.issubdtype(features.dtype, np.floating):
            features = features.astype(np.float32)
        if self.mean_ is not None and features.shape[1] != self.mean_.shape[0]:
            raise DataError(
                f"feature vectors have {features.shape[1]} values, the classifier was fitted "
                f"on {self.mean_.shape[0]}"
            )
        if not np.all(np.isfinite(features)):
            raise DataError("the feature vectors contain NaN or infinite values")
        return features

    def _class_ids(self, y: Array, n: int, *, learn: bool) -> Array:
        """Class indices of labels ``y``; new labels are appended (sorted) when ``learn``."""
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != n:
            raise DataError(f"expected {n} labels in a 1-D array, got shape {labels.shape}")
        if labels.dtype.kind not in "iuUS":
            raise DataError(f"labels must be integers or strings, got dtype {labels.dtype}")
        numbers = labels.dtype.kind in "iu"
        if self._labels and numbers != isinstance(self._labels[0], int):
            raise DataError(
                f"labels must all be integers or all strings; known classes {self._labels}, "
                f"got labels of dtype {labels.dtype}"
            )
        if learn:
            known = set(self._labels)
            self._labels.extend(v for v in np.unique(labels).tolist() if v not in known)
        index = {label: i for i, label in enumerate(self._labels)}
        missing = sorted({v for v in labels.tolist() if v not in index}, key=str)
        if missing:
            raise DataError(f"unknown class label(s) {missing}; known classes {self._labels}")
        return np.array([index[v] for v in labels.tolist()], dtype=np.int64)

    def embed(self, features: Array) -> Array:
        """Centred, unit-length feature vectors (the space both classifiers work in)."""
        if self.mean_ is None:
            raise StateError("the classifier is not fitted yet: call fit() first")
        return centred_unit(features, self.mean_.astype(features.dtype, copy=False))

    # -- learning ------------------------------------------------------------------------

    def fit_base(self, x: Array | Sequence[Array], y: Array) -> FewShotClassifier:
        """Learn base classes from plenty of data; their feature mean becomes the fixed
        centring mean. Once, before any ``fit``."""
        if self.mean_from is not None:
            raise StateError(
                "fit_base must come once and before fit(): the centring mean is then fixed"
            )
        features = self.features(x)
        ids = self._class_ids(y, len(features), learn=True)
        self.mean_ = features.mean(axis=0)
        self.mean_from = "base"
        self._learn_base(self.embed(features), ids, features)
        return self

    def fit(self, x: Array | Sequence[Array], y: Array) -> FewShotClassifier:
        """Learn from a few examples: classes not known yet are added to the known ones,
        examples of known classes refine them. Without base classes the centring mean is
        the mean of every support example seen so far."""
        features = self.features(x)
        ids = self._class_ids(y, len(features), learn=True)
        self._support.append(features)
        self._support_classes.append(ids)
        if self.mean_from != "base":
            self.mean_ = np.concatenate(self._support).mean(axis=0)
            self.mean_from = "support"
        self._learn_support()
        return self

    def support(self) -> tuple[Array, Array]:
        """Every support example seen by ``fit`` (raw features) and its class index."""
        return np.concatenate(self._support), np.concatenate(self._support_classes)

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write everything learnt (not the backbone) to ``path`` (``.npz``), atomically."""
        if self.mean_ is None:
            raise StateError("nothing to save: the classifier is not fitted yet")
        if self._support:
            features, ids = self.support()
        else:
            features = np.empty((0, self.mean_.shape[0]), dtype=self.mean_.dtype)
            ids = np.empty(0, dtype=np.int64)
        arrays = {
            "classes": self.classes_,
            "mean": self.mean_,
            "mean_from": np.array(self.mean_from),
            "support": features,
            "support_classes": ids,
            **self._state(),
        }
        write_state(path, self.kind, self._settings(), arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], extractor: FeatureExtractor | None = None
    ) -> FewShotClassifier:
        """A classifier saved by :meth:`save`, over ``extractor`` (the same backbone it was
        fitted with; its feature length is checked). ``FewShotClassifier.load`` gives
        whichever kind the file holds; ``NearestCentroid.load`` insists on its own."""
        kind, settings, arrays = read_state(path)
        target = FewShotClassifier._kinds.get(kind)
        if target is None or not issubclass(target, cls):
            raise ModelFileError(
                f"holds a classifier of kind {kind!r}, not {getattr(cls, 'kind', 'any known')!r}",
                path=str(path),
            )
        required(arrays, ("classes", "mean", "mean_from", "support", "support_classes"), path)
        try:
            classifier = target(extractor, **settings)
        except (TypeError, ConfigError) as err:
            raise ModelFileError(
                f"has unusable settings {settings} ({err})", path=str(path)
            ) from None
        mean = arrays["mean"]
        if extractor is not None and extractor.dim != mean.shape[0]:
            raise ModelFileError(
                f"was fitted on {mean.shape[0]} features, the extractor gives {extractor.dim}",
                path=str(path),
            )
        classifier._labels = arrays["classes"].tolist()
        classifier.mean_ = mean
        classifier.mean_from = str(arrays["mean_from"])
        if len(arrays["support"]):
            classifier._support = [arrays["support"]]
            classifier._support_classes = [arrays["support_classes"].astype(np.int64)]
        classifier._restore(arrays, path)
        return classifier

    @abc.abstractmethod
    def _settings(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON values), to rebuild the classifier."""

    @abc.abstractmethod
    def _state(self) -> dict[str, Array]:
        """The kind's own learnt arrays, by name."""

    @abc.abstractmethod
    def _restore(self, arrays: dict[str, Array], path: str | os.PathLike[str]) -> None:
        """Take back what :meth:`_state` gave (``required`` refuses missing arrays)."""

    def stored_bytes(self) -> dict[str, int]:
        """What the classifier keeps between calls, in bytes, by what it is (the
        backbone and any training arena not included)."""
        return {"support examples (features)": sum(f.nbytes for f in self._support)}

    @abc.abstractmethod
    def _learn_base(self, embedded: Array, ids: Array, features: Array) -> None:
        """Take in base classes (``embedded`` = ``embed(features)``)."""

    @abc.abstractmethod
    def _learn_support(self) -> None:
        """Take in every support example so far (``support()``), classes grown."""

    @abc.abstractmethod
    def _probabilities(self, embedded: Array) -> Array:
        """``(n, n_classes)`` class probabilities of embedded features."""

    # -- prediction ----------------------------------------------------------------------

    def predict_proba(self, x: Array | Sequence[Array]) -> Array:
        """Probabilities ``(n, n_classes)``, columns in ``classes_`` order."""
        if not self._labels or self.mean_ is None:
            raise StateError("the classifier is not fitted yet: call fit() first")
        return self._probabilities(self.embed(self.features(x)))

    def predict(self, x: Array | Sequence[Array]) -> Array:
        """The most probable class label of each sample."""
        labels: Array = self.classes_[self.predict_proba(x).argmax(axis=1)]
        return labels

    def score(self, x: Array | Sequence[Array], y: Array) -> float:
        """Accuracy: the fraction of samples whose predicted label is ``y``."""
        predicted = self.predict(x)
        truth = np.asarray(y)
        if truth.shape != predicted.shape:
            raise DataError(f"expected {len(predicted)} labels, got shape {truth.shape}")
        return float(np.mean(predicted == truth))
