"""Few-shot personalization on a frozen backbone (``spec/personalization.md``).

``FeatureExtractor(model, "layer")`` cuts a trained model at a layer; ``NearestCentroid``
(SimpleShot) and ``FinetunedHead`` (a softmax head trained by edgetrain) learn a user's
new classes from a handful of examples on top of it, keeping the base classes, with the
same ``fit_base``/``fit``/``predict``/``predict_proba``/``score``/``save``/``load``
interface.
"""

from __future__ import annotations

from .classifier import FewShotClassifier, centred_unit
from .features import FeatureExtractor, backbone_layers
from .finetuned_head import FinetunedHead
from .nearest_centroid import NearestCentroid

__all__ = [
    "FeatureExtractor",
    "FewShotClassifier",
    "FinetunedHead",
    "NearestCentroid",
    "backbone_layers",
    "centred_unit",
]
