"""The vocabulary of NNTrainer INI model files: section names, value parsers, and the few
places where NNTrainer's spelling differs from edgetrain's constructors.

Everything here is data or a pure function so that ``spec/ini.md`` can be checked
against it line by line. Layer keys are *not* listed: a layer section's keys are the
keyword arguments of the layer's constructor (see :func:`layer_keywords`), so a new layer
needs no entry here unless NNTrainer names a property differently.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..layers.base import Layer

# -- sections -----------------------------------------------------------------------

#: the dedicated (non-layer) sections, by their lower-cased name
MODEL_SECTION = "model"
OPTIMIZER_SECTION = "optimizer"
SCHEDULER_SECTION = "learningratescheduler"
DATASET_SECTION = "dataset"
#: NNTrainer's newer data sections and the split each one feeds
DATA_SECTIONS = {"train_set": "train", "valid_set": "valid", "test_set": "test"}
DEDICATED_SECTIONS = frozenset(
    {MODEL_SECTION, OPTIMIZER_SECTION, SCHEDULER_SECTION, DATASET_SECTION, *DATA_SECTIONS}
)

# -- layer types ------------------------------------------------------------------------

#: other spellings of a layer type, mapped to the registered ``LAYER_TYPES`` name
TYPE_ALIASES: dict[str, str] = {
    "fc": "fully_connected",
    "bn": "batch_normalization",
}

#: loss-layer types of a loss section, mapped to edgetrain's loss names (``losses.LOSSES``)
LOSS_SECTION_TYPES: dict[str, str] = {
    "mse": "mse",
    "cross_softmax": "cross_entropy",
    "cross_sigmoid": "cross_entropy_sigmoid",
}

#: NNTrainer layer types edgetrain does not have (for a clearer message than "unknown")
NNTRAINER_ONLY_TYPES = frozenset(
    {
        "add", "attention", "backbone_nnstreamer", "backbone_tflite", "cast", "centroid_knn",
        "channel_shuffle", "constant_derivative", "conv1d", "conv2dtranspose", "cosine",
        "depthwiseconv2d", "divide", "gather", "gru", "grucell", "identity", "kld", "lstm",
        "lstmcell", "matmul", "mol_attention", "multi_head_attention", "multiply", "negative",
        "permute", "positional_encoding", "pow", "preprocess_flip", "preprocess_l2norm",
        "preprocess_translate", "reduce_mean", "reduce_sum", "rnn", "rnncell", "sine", "slice",
        "sqrt", "subtract", "tangent", "time_dist", "upsample2d", "weight",
        "zoneout_lstmcell",
    }
)  # fmt: skip

# -- value parsers -------------------------------------------------------------------


def parse_bool(text: str, key: str) -> bool:
    """NNTrainer's booleans ``true``/``false`` (any case)."""
    word = text.strip().lower()
    if word == "true":
        return True
    if word == "false":
        return False
    raise ConfigError(f"{key} must be true or false, got {text!r}", key=key)


def parse_float(
    text: str, key: str, *, positive: bool = False, minimum: float | None = None
) -> float:
    """A finite number; ``positive`` refuses 0 and below, ``minimum`` anything below it."""
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {text!r}", key=key) from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {text!r}", key=key)
    if positive and number <= 0:
        raise ConfigError(f"{key} must be a positive number, got {text!r}", key=key)
    if minimum is not None and number < minimum:
        raise ConfigError(f"{key} must be >= {minimum:g}, got {text!r}", key=key)
    return number


def parse_int(text: str, key: str, *, minimum: int = 1) -> int:
    """An integer of at least ``minimum`` (NNTrainer's positive-integer properties use 1)."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {text!r}", key=key) from None
    if number < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {text!r}", key=key)
    return number


def split_list(text: str) -> list[str]:
    """NNTrainer's list values: comma-separated, blanks around items ignored."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_shape(text: str, key: str = "input_shape") -> tuple[int, ...]:
    """A tensor shape ``C:H:W`` (1 to 4 numbers separated by ``:`` or ``,``).

    With four numbers the first is NNTrainer's batch size, which the model's
    ``batch_size`` overrides; it is dropped, so ``1:3:32:32`` is ``(3, 32, 32)``.
    """
    parts = [p.strip() for p in text.replace(",", ":").split(":")]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if not 1 <= len(dims) <= 4 or min(dims, default=0) <= 0:
        raise ConfigError(
            f"{key} must be 1 to 4 positive integers like 3:32:32, got {text!r}", key=key
        )
    return tuple(dims[1:] if len(dims) == 4 else dims)


def squeeze(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape without leading 1s, for comparing NNTrainer's always-4-D shapes with
    edgetrain's: ``1:1:100`` is ``(100,)``."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return tuple(dims)


def format_shape_value(shape: Any) -> str:
    """A shape the way NNTrainer writes it: ``3:32:32``."""
    return ":".join(str(int(d)) for d in shape)


def format_value(value: Any) -> str:
    """A property value as NNTrainer INI text: booleans ``true``/``false``, sequences
    comma-separated, floats with enough digits to read back the same number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if hasattr(value, "value") and not isinstance(value, (int, str)):  # an enum member
        return format_value(value.value)
    return str(value)


# -- layer keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyAlias:
    """An NNTrainer key whose edgetrain constructor keyword is spelled differently.

    Applied only to a layer whose constructor takes ``edgetrain`` and not ``nntrainer``,
    so a layer that adopts NNTrainer's spelling needs no change here.
    """

    nntrainer: str
    edgetrain: str
    read: Callable[[str], Any]
    write: Callable[[Any], str]


LAYER_KEY_ALIASES: tuple[KeyAlias, ...] = (
    KeyAlias(
        "disable_bias",
        "bias",
        lambda text: not parse_bool(text, "disable_bias"),
        lambda bias: format_value(not bias),
    ),
    KeyAlias("input_shape", "shape", parse_shape, format_shape_value),
    KeyAlias("activation", "kind", lambda text: text.strip().lower(), str),
)

#: keys whose values are shapes written ``C:H:W`` rather than comma-separated
SHAPE_KEYS = frozenset({"input_shape", "target_shape"})


@dataclass(frozen=True)
class InertKey:
    """An NNTrainer layer key edgetrain reads only at values that change nothing."""

    accepts: Callable[[str], bool]
    allowed: str


def _is_false(text: str) -> bool:
    return text.strip().lower() == "false"


#: NNTrainer layer-node keys without an edgetrain counterpart, unless a layer's own
#: constructor takes them
INERT_LAYER_KEYS: dict[str, InertKey] = {
    "distribute": InertKey(_is_false, "false (time distribution is not supported)"),
    "flatten": InertKey(_is_false, "false (add a flatten layer instead)"),
    "normalization": InertKey(_is_false, "false (normalize the data before training)"),
    "standardization": InertKey(_is_false, "false (standardize the data before training)"),
    "compute_engine": InertKey(lambda t: t.strip().lower() == "cpu", "cpu"),
    "inplace": InertKey(lambda t: t.strip().lower() in ("true", "false"),
                        "true or false (edgetrain plans in-place use itself)"),
}  # fmt: skip


def layer_keywords(cls: type[Layer]) -> dict[str, inspect.Parameter]:
    """The keyword arguments a layer class's constructor accepts, through the chain of
    ``__init__`` methods that forward ``**common`` up to :class:`Layer`."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not (isinstance(klass, type) and issubclass(klass, Layer)):
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for param in params:
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                found.setdefault(param.name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found


def is_bool_keyword(param: inspect.Parameter) -> bool:
    """A keyword annotated exactly ``bool``: its value is converted from INI text here,
    since ``bool("false")`` would be true."""
    return param.annotation in (bool, "bool")


#: keywords of the base :class:`Layer` that the reader sets itself rather than passing
#: as text: the layer's name, its connections, its trainable flag, its activation
STRUCTURAL_KEYWORDS = frozenset({"name", "input_layers", "trainable", "activation"})


def base_property_defaults() -> dict[str, Any]:
    """The other keywords of :class:`Layer` (regularizer, decays) with their defaults:
    properties every layer has, saved when they differ from the default."""
    params = layer_keywords(Layer)  # type: ignore[type-abstract]
    return {
        name: param.default
        for name, param in params.items()
        if name not in STRUCTURAL_KEYWORDS and param.default is not inspect.Parameter.empty
    }
