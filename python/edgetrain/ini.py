"""NNTrainer INI model files: read one into a :class:`ModelDescription` (and a
:class:`~edgetrain.model.Model`), and write a model back out.

Reading happens in two passes. :func:`parse_ini` turns text into sections of
``key = value`` entries the way NNTrainer's iniparser does (keys and section names
case-insensitive, ``#``/``;`` comments, quotes, ``\\`` continuations), keeping every line
number and refusing what iniparser would silently merge (duplicate sections and keys).
:func:`read_ini` then interprets the sections: ``[Model]``, ``[Optimizer]``,
``[LearningRateScheduler]``, the data sections, and one section per layer, built generically
as ``LAYER_TYPES[type](name=section, **keys)``. Every error is a :class:`ModelFileError`
naming the file, line, section and key. The format: ``spec/ini.md``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import ini_keys as keys
from .errors import ConfigError, ModelFileError, SaveError, ShapeError
from .graph import assign_names, build_graph
from .layers import LAYER_TYPES
from .layers.activation import ACTIVATIONS, Activation
from .layers.base import Layer
from .layers.input import Input
from .losses import LOSSES, make_loss
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, Constant, Exponential, LearningRateSchedule

if TYPE_CHECKING:
    from .model import Model

PathLike = str | os.PathLike[str]

# -- the text layer --------------------------------------------------------------------


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line; ``key`` lower-cased, ``value`` unquoted and stripped."""

    key: str
    value: str
    line: int


@dataclass
class IniSection:
    """One ``[name]`` and its entries by lower-cased key, in file order."""

    name: str
    line: int
    entries: dict[str, IniEntry] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name.lower()

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None


_SECTION = re.compile(r"^\[([^\]]*)\]\s*(?:[#;].*)?$")


def _value(raw: str) -> str | None:
    """The value after ``=``: quoted text as is, else up to a ``#``/``;`` comment.
    ``None`` when text follows a closing quote."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        close = raw.find(raw[0], 1)
        if close > 0:
            rest = raw[close + 1 :].strip()
            if rest and rest[0] not in "#;":
                return None
            return raw[1:close]
    return re.split(r"[#;]", raw, maxsplit=1)[0].strip()


def parse_ini(text: str, path: PathLike) -> list[IniSection]:
    """Sections of an INI text, with line numbers; syntax errors and duplicates raise."""
    path = Path(path)
    sections: list[IniSection] = []
    by_key: dict[str, IniSection] = {}
    current: IniSection | None = None
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start = number + 1
        line = lines[number].strip()
        number += 1
        while line.endswith("\\") and number < len(lines):
            line = line[:-1].rstrip() + lines[number].strip()
            number += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION.match(line)
            name = match.group(1).strip() if match else ""
            if not match or not name:
                raise ModelFileError(f"malformed section header {line!r}", path=path, line=start)
            if name.lower() in by_key:
                first = by_key[name.lower()]
                raise ModelFileError(
                    f"section [{name}] appears twice (first at line {first.line})",
                    path=path,
                    line=start,
                    section=name,
                )
            current = IniSection(name, start)
            sections.append(current)
            by_key[name.lower()] = current
            continue
        key, equals, raw = line.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            raise ModelFileError(f"expected 'key = value', got {line!r}", path=path, line=start)
        if current is None:
            raise ModelFileError(
                f"key '{key}' comes before any [section]", path=path, line=start, key=key
            )
        value = _value(raw)
        if value is None:
            raise ModelFileError(
                f"unexpected text after the quoted value in {line!r}",
                path=path, line=start, section=current.name, key=key,
            )  # fmt: skip
        if not value:
            raise ModelFileError(
                "the value is empty", path=path, line=start, section=current.name, key=key
            )
        if key in current.entries:
            raise ModelFileError(
                f"key '{key}' appears twice in the section (first at line "
                f"{current.entries[key].line})",
                path=path, line=start, section=current.name, key=key,
            )  # fmt: skip
        current.entries[key] = IniEntry(key, value, start)
    return sections


def read_sections(path: PathLike) -> list[IniSection]:
    """Read and parse a file; a missing or unreadable file is a :class:`ModelFileError`."""
    path = Path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ModelFileError(f"not a text file ({err.reason})", path=path) from None
    except OSError as err:
        raise ModelFileError(
            f"cannot read the model file: {err.strerror or err}", path=path
        ) from None
    return parse_ini(text, path)


# -- the description -------------------------------------------------------------------


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
    """NNTrainer's ``memory_swap`` (newer name ``fsu``) keys, kept for the swap planner."""

    enabled: bool = False
    path: str = "."
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
    #: NNTrainer's Adam ``torch_ref``; edgetrain's Adam always uses the torch formula
    torch_ref: bool = False
    source: Path | None = None

    @property
    def schedule(self) -> LearningRateSchedule | None:
        return self.optimizer.schedule if self.optimizer is not None else None


# -- reading: shared machinery -------------------------------------------------------------


class _Reader:
    """Interprets the sections of one file; every error goes through :meth:`fail`."""

    def __init__(self, path: Path, sections: list[IniSection]) -> None:
        self.path = path
        self.sections = sections
        self.by_key = {s.key: s for s in sections}

    def fail(
        self, message: str, section: IniSection | None = None, key: str | None = None
    ) -> NoReturn:
        line = None
        if section is not None:
            entry = section.entries.get(key) if key else None
            line = entry.line if entry is not None else section.line
        raise ModelFileError(
            message,
            path=self.path,
            line=line,
            section=section.name if section is not None else None,
            key=key if section is not None and key in section.entries else None,
        )

    def convert(self, section: IniSection, key: str, parse: Callable[[str, str], Any]) -> Any:
        """``parse(value, key)`` with its :class:`ConfigError` pointed at the line."""
        try:
            return parse(section.entries[key].value, key)
        except ConfigError as err:
            self.fail(str(err), section, key)

    def blame(self, err: ConfigError, section: IniSection) -> str | None:
        """The key of ``section`` a :class:`ConfigError` is about: its ``key``, else the
        key its message starts with (``"beta1 must be ..."``)."""
        if err.key is not None:
            return err.key
        return next((k for k in section.entries if str(err).startswith(f"{k} ")), None)

    def check_keys(self, section: IniSection, allowed: Sequence[str], what: str) -> None:
        for key in section.entries:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"unknown key '{key}' for {what} (known: {known})", section, key)

    def resolve(self, text: str) -> Path:
        """A path as NNTrainer resolves it: relative to the model file's directory."""
        path = Path(text)
        return path if path.is_absolute() else self.path.parent / path


# -- reading: [Model] ------------------------------------------------------------------------

_MODEL_KEYS = (
    "type", "loss", "batch_size", "epochs", "save_path", "save_best_path", "continue_train",
    "memory_optimization", "memory_swap", "memory_swap_path", "memory_swap_lookahead", "fsu",
    "fsu_path", "fsu_lookahead", "tensor_format", "model_tensor_type", "tensor_type",
    "loss_scale",
)  # fmt: skip
#: old-style optimizer keys of ``[Model]`` (NNTrainer's deprecated form)
_MODEL_OPTIMIZER_KEYS = (
    "optimizer",
    "learning_rate",
    "decay_rate",
    "decay_steps",
    "beta1",
    "beta2",
    "epsilon",
)
#: NNTrainer's newer names of the swap keys
_SWAP_ALIASES = {
    "fsu": "memory_swap",
    "fsu_path": "memory_swap_path",
    "fsu_lookahead": "memory_swap_lookahead",
}


def _read_model(reader: _Reader, section: IniSection | None, desc: ModelDescription) -> str | None:
    """Fill ``desc`` from ``[Model]``; returns the loss as written (resolved later)."""
    if section is None:
        return None
    reader.check_keys(section, _MODEL_KEYS + _MODEL_OPTIMIZER_KEYS, "the [Model] section")
    for new, old in _SWAP_ALIASES.items():
        if new in section.entries and old in section.entries:
            reader.fail(f"'{new}' and '{old}' are the same setting; give one", section, new)
    get = section.get
    model_type = get("type")
    if model_type is not None and model_type.lower() != "neuralnetwork":
        reader.fail(f"model type must be NeuralNetwork, got {model_type!r}", section, "type")
    if "batch_size" in section.entries:
        desc.batch_size = reader.convert(section, "batch_size", keys.parse_int)
    if "epochs" in section.entries:
        desc.epochs = reader.convert(section, "epochs", keys.parse_int)
    for key in ("save_path", "save_best_path"):
        if key in section.entries:
            setattr(desc, key, reader.resolve(section.entries[key].value))
    for key in ("continue_train", "memory_optimization"):
        if key in section.entries:
            setattr(desc, key, reader.convert(section, key, keys.parse_bool))
    for key in ("memory_swap", "fsu"):
        if key in section.entries:
            desc.swap.enabled = reader.convert(section, key, keys.parse_bool)
    for key in ("memory_swap_path", "fsu_path"):
        if key in section.entries:
            desc.swap.path = section.entries[key].value
    for key in ("memory_swap_lookahead", "fsu_lookahead"):
        if key in section.entries:
            desc.swap.lookahead = reader.convert(
                section, key, lambda t, k: keys.parse_int(t, k, minimum=0)
            )
    fixed = {
        "tensor_format": ("nchw",),
        "model_tensor_type": ("fp32-fp32",),
        "tensor_type": ("fp32", "fp32-fp32"),
    }
    for key, allowed in fixed.items():
        value = get(key)
        if value is not None and value.lower() not in allowed:
            reader.fail(
                f"edgetrain supports only {key} = {allowed[0].upper()}, got {value!r}", section, key
            )
    if "loss_scale" in section.entries:
        scale = reader.convert(section, "loss_scale", keys.parse_float)
        if scale != 1.0:
            reader.fail(
                "loss_scale (mixed precision) is not supported; only 1 is accepted",
                section,
                "loss_scale",
            )
    return get("loss")


# -- reading: optimizer and schedule -----------------------------------------------------------

_OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("learning_rate", "decay_rate", "decay_steps", "momentum"),
    "adam": ("learning_rate", "decay_rate", "decay_steps", "beta1", "beta2", "epsilon", "torch_ref"),
    "adamw": ("learning_rate", "decay_rate", "decay_steps", "beta1", "beta2", "epsilon", "torch_ref",
              "weight_decay"),
}  # fmt: skip
#: NNTrainer's defaults, which differ from edgetrain's Python defaults
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"learning_rate": 1e-4, "momentum": 0.0},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7},
    "adamw": {
        "learning_rate": 1e-3,
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 0.0,
    },
}

_SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("learning_rate",),
    "exponential": ("learning_rate", "decay_rate", "decay_steps"),
    "step": ("learning_rate", "iteration"),
    "cosine": ("max_learning_rate", "min_learning_rate", "decay_steps"),
    "linear": ("max_learning_rate", "min_learning_rate", "decay_steps"),
}
#: schedule keyword -> INI key, where they differ (the step schedule's lists)
_SCHEDULE_KEY_NAMES = {"iterations": "iteration", "learning_rates": "learning_rate"}


def _positive_float(text: str, key: str) -> float:
    return keys.parse_float(text, key, positive=True)


def _list(parse: Callable[[str, str], Any]) -> Callable[[str, str], list[Any]]:
    def parse_all(text: str, key: str) -> list[Any]:
        items = keys.split_list(text)
        if not items:
            raise ConfigError(f"{key} must be a comma-separated list, got {text!r}", key=key)
        return [parse(item, key) for item in items]

    return parse_all


def _schedule_value(kind: str, key: str) -> Callable[[str, str], Any]:
    if kind == "step":
        return (
            _list(lambda t, k: keys.parse_int(t, k, minimum=0))
            if key == "iteration"
            else _list(_positive_float)
        )
    if key == "decay_steps":
        return keys.parse_int
    if key == "min_learning_rate":
        return lambda t, k: keys.parse_float(t, k, minimum=0.0)
    return _positive_float


def _read_schedule(reader: _Reader, section: IniSection) -> LearningRateSchedule:
    kind = (section.get("type") or "").lower()
    if not kind:
        reader.fail("the learning-rate scheduler needs a 'type'", section)
    if kind not in SCHEDULES or kind not in _SCHEDULE_KEYS:
        reader.fail(
            f"unknown scheduler type {kind!r} (known: {', '.join(sorted(_SCHEDULE_KEYS))})",
            section,
            "type",
        )
    wanted = _SCHEDULE_KEYS[kind]
    reader.check_keys(section, ("type", *wanted), f"a {kind} scheduler")
    for key in wanted:
        if key not in section.entries:
            reader.fail(f"a {kind} scheduler needs '{key}'", section, "type")
    values = {key: reader.convert(section, key, _schedule_value(kind, key)) for key in wanted}
    cls = SCHEDULES[kind]
    names = {v: k for k, v in _SCHEDULE_KEY_NAMES.items()} if kind == "step" else {}
    try:
        return cls(**{names.get(k, k): v for k, v in values.items()})
    except ConfigError as err:
        blamed = reader.blame(err, section)
        reader.fail(str(err), section, _SCHEDULE_KEY_NAMES.get(blamed or "", blamed))


def _optimizer_value(key: str) -> Callable[[str, str], Any]:
    if key == "torch_ref":
        return keys.parse_bool
    if key == "decay_steps":
        return keys.parse_int
    if key in ("momentum", "weight_decay"):
        return lambda t, k: keys.parse_float(t, k, minimum=0.0)
    return _positive_float


def _read_optimizer(
    reader: _Reader, model: IniSection | None, section: IniSection | None, desc: ModelDescription
) -> None:
    """``[Optimizer]`` (or the deprecated ``[Model] optimizer = ...``) and the schedule."""
    scheduler = reader.by_key.get(keys.SCHEDULER_SECTION)
    old_style = model is not None and "optimizer" in model.entries
    if section is not None and old_style:
        reader.fail(
            "the optimizer is given twice: in [Model] and in [Optimizer]", model, "optimizer"
        )
    if section is None and not old_style:
        if scheduler is not None:
            reader.fail("a learning-rate scheduler needs an [Optimizer] section", scheduler)
        if model is not None:
            for key in _MODEL_OPTIMIZER_KEYS[1:]:
                if key in model.entries:
                    reader.fail(
                        f"'{key}' has no optimizer to apply to: add an [Optimizer] section",
                        model,
                        key,
                    )
        return
    # values: [Optimizer] first, then [Model]'s old-style keys, then NNTrainer's defaults
    sources: dict[str, IniSection] = {}
    for source in (section, model):
        if source is None:
            continue
        for key in source.entries:
            if key in _MODEL_OPTIMIZER_KEYS[1:] or (source is section and key != "type"):
                sources.setdefault(key, source)
    type_source = section if section is not None else model
    assert type_source is not None
    kind = (type_source.get("type" if section is not None else "optimizer") or "adam").lower()
    type_key = "type" if section is not None else "optimizer"
    if kind not in OPTIMIZERS or kind not in _OPTIMIZER_KEYS:
        reader.fail(
            f"unknown optimizer {kind!r} (known: {', '.join(sorted(_OPTIMIZER_KEYS))})",
            type_source,
            type_key,
        )
    allowed = _OPTIMIZER_KEYS[kind]
    if section is not None:
        reader.check_keys(section, ("type", *allowed), f"the {kind} optimizer")
    for key, source in sources.items():
        if key not in allowed:
            reader.fail(f"the {kind} optimizer has no '{key}'", source, key)
    values: dict[str, Any] = dict(OPTIMIZER_DEFAULTS[kind])
    for key, source in sources.items():
        values[key] = reader.convert(source, key, _optimizer_value(key))
    desc.torch_ref = bool(values.pop("torch_ref", False))
    decay = {k: values.pop(k) for k in ("decay_rate", "decay_steps") if k in values}
    rate = values.pop("learning_rate")
    schedule: LearningRateSchedule
    if scheduler is not None:
        if decay:
            key = next(iter(decay))
            reader.fail(
                "two learning-rate schedules: decay keys here and a [LearningRateScheduler]",
                sources[key],
                key,
            )
        schedule = _read_schedule(reader, scheduler)
    elif decay:
        for key in ("decay_rate", "decay_steps"):
            if key not in decay:
                other = next(iter(decay))
                reader.fail(
                    f"'{other}' needs '{key}' too (an exponential decay)", sources[other], other
                )
        try:
            schedule = Exponential(rate, decay["decay_rate"], decay["decay_steps"])
        except ConfigError as err:
            reader.fail(str(err), sources.get(err.key or "", section), err.key)
    else:
        schedule = Constant(rate)
    try:
        desc.optimizer = OPTIMIZERS[kind](schedule, **values)
    except ConfigError as err:
        blamed = err.key or next((k for k in sources if str(err).startswith(f"{k} ")), None)
        reader.fail(str(err), sources.get(blamed or "", type_source), blamed)


# -- reading: data sections -------------------------------------------------------------------


def _read_data(reader: _Reader, desc: ModelDescription) -> None:
    old = reader.by_key.get(keys.DATASET_SECTION)
    if old is not None:
        allowed = ("traindata", "validdata", "testdata", "labeldata", "buffersize", "buffer_size")
        reader.check_keys(old, allowed, "the [DataSet] section")
        if "traindata" not in old.entries:
            reader.fail("[DataSet] needs TrainData", old)
        for key, split in (("traindata", "train"), ("validdata", "valid"), ("testdata", "test")):
            if key in old.entries:
                setattr(desc.data, split, reader.resolve(old.entries[key].value))
        for key in ("buffersize", "buffer_size"):
            if key in old.entries:
                desc.data.buffer_size = reader.convert(old, key, keys.parse_int)
    for name, split in keys.DATA_SECTIONS.items():
        section = reader.by_key.get(name)
        if section is None:
            continue
        reader.check_keys(section, ("type", "path", "buffer_size", "buffersize"), f"[{name}]")
        kind = (section.get("type") or "").lower()
        if kind != "file":
            reader.fail(
                f"[{name}] must have type = file, got {section.get('type')!r}", section, "type"
            )
        if "path" not in section.entries:
            reader.fail(f"[{name}] needs a 'path'", section)
        if getattr(desc.data, split) is not None:
            reader.fail(
                f"the {split} data is given twice ([DataSet] and [{name}])", section, "path"
            )
        setattr(desc.data, split, reader.resolve(section.entries["path"].value))
        for key in ("buffer_size", "buffersize"):
            if key in section.entries:
                desc.data.buffer_size = reader.convert(section, key, keys.parse_int)


# -- reading: layer sections --------------------------------------------------------------------


@dataclass
class _LayerDraft:
    """A layer built from one section, with what is checked once the graph exists."""

    section: IniSection
    layers: list[Layer]
    #: ``input_shape`` of a layer that also has ``input_layers``: the shape it must receive
    expected_shape: tuple[int, ...] | None = None


def _read_alias(params: dict[str, inspect.Parameter], key: str) -> keys.KeyAlias | None:
    for alias in keys.LAYER_KEY_ALIASES:
        if alias.nntrainer == key and key not in params and alias.edgetrain in params:
            return alias
    return None


def _alias_reader(alias: keys.KeyAlias) -> Callable[[str, str], Any]:
    return lambda text, _key: alias.read(text)


def _file_key(edgetrain_key: str | None, section: IniSection) -> str | None:
    """The INI key a constructor's ``ConfigError(key=...)`` refers to."""
    if edgetrain_key is None or edgetrain_key in section.entries:
        return edgetrain_key
    for alias in keys.LAYER_KEY_ALIASES:
        if alias.edgetrain == edgetrain_key and alias.nntrainer in section.entries:
            return alias.nntrainer
    return edgetrain_key


def _layer_class(reader: _Reader, section: IniSection) -> type[Layer]:
    text = section.get("type")
    if text is None:
        if "backbone" in section.entries:
            reader.fail(
                "backbone sections (models inside models) are not supported", section, "backbone"
            )
        reader.fail("a layer section needs a 'type'", section)
    kind = keys.TYPE_ALIASES.get(text.lower(), text.lower())
    if kind in LAYER_TYPES:
        return LAYER_TYPES[kind]
    if kind == "cross":
        reader.fail("a loss section of type 'cross' is ambiguous: use cross_softmax or cross_sigmoid "
                    "(or loss = cross in [Model])", section, "type")  # fmt: skip
    if kind in keys.NNTRAINER_ONLY_TYPES:
        reader.fail(
            f"NNTrainer's layer type {text!r} is not supported by edgetrain", section, "type"
        )
    known = ", ".join(sorted({*LAYER_TYPES, *keys.TYPE_ALIASES, *keys.LOSS_SECTION_TYPES}))
    reader.fail(f"unknown layer type {text!r} (known: {known})", section, "type")


def _read_layer(reader: _Reader, section: IniSection, inputs: list[str] | None) -> _LayerDraft:
    """One layer from its section; ``inputs`` are its resolved ``input_layers``."""
    cls = _layer_class(reader, section)
    params = keys.layer_keywords(cls)
    kwargs: dict[str, Any] = {"name": section.name}
    if inputs is not None:
        kwargs["input_layers"] = inputs
    shape: tuple[int, ...] | None = None
    for key, entry in section.entries.items():
        value = entry.value
        if key in ("type", "input_layers"):
            continue
        if key == "name":
            if value.lower() != section.key:
                reader.fail("the section name is the layer name: leave 'name' out", section, key)
        elif key == "trainable":
            kwargs["trainable"] = reader.convert(section, key, keys.parse_bool)
        elif key == "activation":
            kind = value.lower()
            if kind not in ACTIVATIONS and kind != "none":
                reader.fail(
                    f"unknown activation {value!r} (known: {', '.join(sorted(ACTIVATIONS))}, none)",
                    section,
                    key,
                )
            kwargs["activation"] = kind
        elif key in params:
            bool_key = keys.is_bool_keyword(params[key])
            kwargs[key] = (
                reader.convert(section, key, keys.parse_bool) if bool_key else value.lower()
            )
        elif (alias := _read_alias(params, key)) is not None:
            kwargs[alias.edgetrain] = reader.convert(section, key, _alias_reader(alias))
        elif key == "input_shape":
            shape = reader.convert(section, key, keys.parse_shape)
        elif (inert := keys.INERT_LAYER_KEYS.get(key)) is not None:
            if not inert.accepts(value):
                reader.fail(
                    f"'{key}' is not supported by edgetrain: only {inert.allowed}", section, key
                )
        else:
            known = sorted(
                {_nntrainer_name(k, params) for k in params if k != "name"} | {"input_shape"}
            )
            reader.fail(
                f"unknown key '{key}' for a {cls.type_name} layer (known: {', '.join(known)})",
                section,
                key,
            )
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in kwargs:
            reader.fail(f"a {cls.type_name} layer needs '{_nntrainer_name(name, params)}'", section)
    try:
        layer = cls(**kwargs)
    except ConfigError as err:
        reader.fail(str(err), section, _file_key(reader.blame(err, section), section))
    except (TypeError, ValueError) as err:
        reader.fail(f"cannot build the {cls.type_name} layer: {err}", section)
    if shape is None:
        return _LayerDraft(section, [layer])
    if inputs is not None:
        return _LayerDraft(section, [layer], expected_shape=shape)
    source = Input(shape=shape, name=input_layer_name(section.name))
    return _LayerDraft(section, [source, layer])


def _nntrainer_name(keyword: str, params: dict[str, inspect.Parameter]) -> str:
    for alias in keys.LAYER_KEY_ALIASES:
        if alias.edgetrain == keyword and alias.nntrainer not in params:
            return alias.nntrainer
    return keyword


def input_layer_name(layer: str) -> str:
    """The Input layer created for a non-input layer that has ``input_shape`` and no
    ``input_layers`` (NNTrainer feeds such a layer from the data directly)."""
    return f"{layer}/input"


def _split_port(ref: str) -> tuple[str, str]:
    """``"name(1)"`` -> ``("name", "(1)")``; plain names get an empty suffix."""
    match = re.fullmatch(r"(.*?)\s*(\(\s*\d+\s*\))", ref)
    if match:
        return match.group(1).strip(), match.group(2).replace(" ", "")
    return ref.strip(), ""


def _read_layers(
    reader: _Reader, sections: list[IniSection]
) -> tuple[list[_LayerDraft], IniSection | None]:
    """Every layer section in file order; a trailing loss section is returned apart."""
    loss: IniSection | None = None
    layer_sections: list[IniSection] = []
    for section in sections:
        kind = (section.get("type") or "").lower()
        if loss is not None:
            reader.fail(f"the loss section [{loss.name}] must be the last layer section", section)
        if kind in keys.LOSS_SECTION_TYPES:
            loss = section
        else:
            layer_sections.append(section)
    if not layer_sections:
        reader.fail("the file has no layer sections", loss)
    names = {s.key: s.name for s in layer_sections}
    for section in layer_sections:
        if section.get("input_shape") and "input_layers" not in section.entries:
            names.setdefault(input_layer_name(section.name).lower(), input_layer_name(section.name))
    drafts: list[_LayerDraft] = []
    for section in layer_sections:
        inputs = _resolve_inputs(reader, section, names, loss)
        drafts.append(_read_layer(reader, section, inputs))
    if loss is not None:
        _check_loss_section(reader, loss, layer_sections[-1], names)
    return drafts, loss


def _resolve_inputs(
    reader: _Reader, section: IniSection, names: dict[str, str], loss: IniSection | None
) -> list[str] | None:
    """``input_layers`` with each name spelled as its section is (NNTrainer's names are
    case-insensitive); a name that is no layer of the file is an error."""
    text = section.get("input_layers")
    if text is None:
        return None
    refs = keys.split_list(text)
    if not refs:
        reader.fail("input_layers names no layer", section, "input_layers")
    resolved = []
    for ref in refs:
        base, port = _split_port(ref)
        if base.lower() not in names:
            what = (
                "the loss section"
                if loss is not None and base.lower() == loss.key
                else "no layer of this file"
            )
            reader.fail(f"input_layers names '{base}', which is {what}", section, "input_layers")
        resolved.append(names[base.lower()] + port)
    return resolved


def _check_loss_section(
    reader: _Reader, loss: IniSection, last: IniSection, names: dict[str, str]
) -> None:
    reader.check_keys(loss, ("type", "input_layers"), "a loss section")
    text = loss.get("input_layers")
    if text is not None:
        refs = keys.split_list(text)
        if [r.lower() for r in refs] != [last.key]:
            reader.fail(
                f"the loss reads the last layer ('{last.name}') in edgetrain", loss, "input_layers"
            )


def _last_activation(layers: Sequence[Layer]) -> str | None:
    last = layers[-1]
    return last.kind if isinstance(last, Activation) else last.activation


def _resolve_loss(
    reader: _Reader,
    model: IniSection | None,
    written: str | None,
    loss_section: IniSection | None,
    layers: Sequence[Layer],
) -> str | None:
    """edgetrain's loss name. NNTrainer's ``cross`` means softmax or sigmoid cross entropy
    by the activation the last layer ends in, and is refused after any other."""
    if loss_section is not None:
        if written is not None:
            reader.fail(
                "the loss is given twice: in [Model] and as a loss section", loss_section, "type"
            )
        return keys.LOSS_SECTION_TYPES[(loss_section.get("type") or "").lower()]
    if written is None:
        return None
    assert model is not None
    name = written.lower()
    if name == "cross":
        activation = _last_activation(layers)
        if activation == "softmax":
            return "cross_entropy"
        if activation == "sigmoid":
            return "cross_entropy_sigmoid"
        reader.fail(
            f"loss = cross needs the last layer ('{layers[-1].name}') to end in a softmax or "
            "sigmoid activation; use a cross_softmax or cross_sigmoid loss section otherwise",
            model, "loss",
        )  # fmt: skip
    if name not in LOSSES:
        reader.fail(
            f"unknown loss {written!r} (known: cross, {', '.join(sorted(LOSSES))})", model, "loss"
        )
    return make_loss(name).type_name


def _named_section(reader: _Reader, message: str) -> IniSection | None:
    """The first layer section a graph error message quotes (``'name'`` or
    ``'name/activation'``), to point at its line."""
    for quoted in re.findall(r"'([^']+)'", message):
        section = reader.by_key.get(quoted.split("/")[0].lower())
        if section is not None:
            return section
    return None


def _check_graph(reader: _Reader, drafts: list[_LayerDraft], desc: ModelDescription) -> None:
    """Build the graph once (batch of 1) so that connection and shape errors name the
    file; check the ``input_shape`` of connected layers against what they receive."""
    try:
        graph = build_graph(desc.layers, 1, make_loss(desc.loss) if desc.loss else None)
    except (ShapeError, ConfigError) as err:
        reader.fail(f"the model does not build: {err}", _named_section(reader, str(err)))
    for draft in drafts:
        if draft.expected_shape is None:
            continue
        layer = draft.layers[-1]
        assert layer.name is not None
        got = [graph.shape_of(p)[1:] for p in graph.node(layer.name).inputs]
        if any(_squeeze(s) != _squeeze(draft.expected_shape) for s in got):
            shown = ", ".join(keys.format_shape_value(s) for s in got)
            reader.fail(f"input_shape is {keys.format_shape_value(draft.expected_shape)} but the layer "
                        f"receives {shown}", draft.section, "input_shape")  # fmt: skip


def _squeeze(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape without leading 1s: NNTrainer's ``1:1:100`` is edgetrain's ``(100,)``."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return tuple(dims)


# -- reading: the entry points ------------------------------------------------------------------


def read_ini(path: PathLike) -> ModelDescription:
    """Everything an NNTrainer INI model file describes, checked: every layer built and
    the graph connected with its shapes inferred. Errors are :class:`ModelFileError`."""
    source = Path(path)
    reader = _Reader(source, read_sections(source))
    if not reader.sections:
        reader.fail("the file has no sections")
    desc = ModelDescription(layers=[], source=source)
    model = reader.by_key.get(keys.MODEL_SECTION)
    written_loss = _read_model(reader, model, desc)
    _read_optimizer(reader, model, reader.by_key.get(keys.OPTIMIZER_SECTION), desc)
    _read_data(reader, desc)
    layer_sections = [s for s in reader.sections if s.key not in keys.DEDICATED_SECTIONS]
    if not layer_sections:
        reader.fail("the file has no layer sections")
    drafts, loss_section = _read_layers(reader, layer_sections)
    desc.layers = [layer for draft in drafts for layer in draft.layers]
    desc.loss = _resolve_loss(reader, model, written_loss, loss_section, desc.layers)
    _check_graph(reader, drafts, desc)
    return desc


def load_model(path: PathLike) -> Model:
    """A :class:`Model` from a model file. Its ``optimizer`` and ``batch_size`` are the
    file's, so ``model.compile(model.optimizer, model.batch_size)`` trains as described;
    ``model.description`` keeps the rest (epochs, data files, swap settings)."""
    from .model import Model

    desc = read_ini(path)
    model = Model(desc.layers, desc.loss, name=Path(path).stem)
    model.optimizer = desc.optimizer
    model.batch_size = desc.batch_size
    model.description = desc
    return model


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


def read_model_file(path: PathLike) -> ModelFile:
    """:func:`load_model` with the description beside it (what the CLI uses)."""
    model = load_model(path)
    assert model.description is not None
    return ModelFile(model, model.description)


# -- writing --------------------------------------------------------------------------------------


def describe_model(model: Model) -> ModelDescription:
    """The description of a model as it is now: its layers, loss, optimizer and batch
    size, and the other settings of the file it was read from, if any."""
    base = model.description
    loss = make_loss(model.loss_name).type_name if model.loss_name else None
    batch = model.batch_size or (base.batch_size if base is not None else 1)
    if base is None:
        return ModelDescription(list(model.layers), loss, model.optimizer, batch)
    return ModelDescription(
        list(model.layers), loss, model.optimizer, batch, base.epochs, base.data, base.swap,
        base.save_path, base.save_best_path, base.continue_train, base.memory_optimization,
        base.torch_ref, base.source,
    )  # fmt: skip


def _text(value: str) -> str:
    """A value as INI text, quoted where a comment character or edge blank would be lost."""
    if '"' in value or "\n" in value:
        raise SaveError(f"cannot write the value {value!r} to an INI file")
    if not value or value != value.strip() or "#" in value or ";" in value or value.endswith("\\"):
        return f'"{value}"'
    return value


def _write_alias(key: str, config: dict[str, Any]) -> keys.KeyAlias | None:
    for alias in keys.LAYER_KEY_ALIASES:
        if alias.edgetrain == key and alias.nntrainer not in config:
            return alias
    return None


def _layer_entries(layer: Layer) -> list[tuple[str, str]]:
    entries = [("type", layer.type_name)]
    if layer.input_layers is not None:
        entries.append(("input_layers", ", ".join(layer.input_layers)))
    if not layer.trainable:
        entries.append(("trainable", "false"))
    if layer.activation is not None:
        entries.append(("activation", layer.activation))
    config = layer.config()
    for key, value in config.items():
        if value is None:
            continue
        alias = _write_alias(key, config)
        if alias is not None:
            entries.append((alias.nntrainer, alias.write(value)))
        elif key in keys.SHAPE_KEYS and isinstance(value, (list, tuple)):
            entries.append((key, keys.format_shape_value(value)))
        else:
            entries.append((key, keys.format_value(value)))
    for key, default in keys.base_property_defaults().items():
        value = getattr(layer, key, default)
        if value == default or (default is None and str(value).lower() == "none"):
            continue
        entries.append((key, keys.format_value(value)))
    return entries


def _loss_placement(desc: ModelDescription) -> tuple[str | None, str | None]:
    """(``loss`` of ``[Model]``, type of a trailing loss section): NNTrainer's ``cross``
    where the last activation makes it mean the same, else an explicit loss section."""
    if desc.loss is None:
        return None, None
    activation = _last_activation(desc.layers) if desc.layers else None
    if desc.loss == "cross_entropy":
        return ("cross", None) if activation == "softmax" else (None, "cross_softmax")
    if desc.loss == "cross_entropy_sigmoid":
        return ("cross", None) if activation == "sigmoid" else (None, "cross_sigmoid")
    return desc.loss, None


def _model_entries(desc: ModelDescription, loss: str | None) -> list[tuple[str, str]]:
    entries = [("type", "NeuralNetwork")]
    if loss is not None:
        entries.append(("loss", loss))
    entries += [("batch_size", str(desc.batch_size)), ("epochs", str(desc.epochs))]
    for key in ("save_path", "save_best_path"):
        value = getattr(desc, key)
        if value is not None:
            entries.append((key, str(value)))
    if desc.continue_train:
        entries.append(("continue_train", "true"))
    if not desc.memory_optimization:
        entries.append(("memory_optimization", "false"))
    default = SwapSettings()
    if desc.swap.enabled != default.enabled:
        entries.append(("memory_swap", keys.format_value(desc.swap.enabled)))
    if desc.swap.path != default.path:
        entries.append(("memory_swap_path", desc.swap.path))
    if desc.swap.lookahead != default.lookahead:
        entries.append(("memory_swap_lookahead", str(desc.swap.lookahead)))
    return entries


def _optimizer_sections(desc: ModelDescription) -> list[tuple[str, list[tuple[str, str]]]]:
    optimizer = desc.optimizer
    if optimizer is None:
        return []
    kind = optimizer.type_name
    defaults = OPTIMIZER_DEFAULTS.get(kind, {})
    entries = [("type", kind)]
    schedule = optimizer.schedule
    if isinstance(schedule, Constant):
        entries.append(("learning_rate", keys.format_value(schedule.learning_rate)))
    for key, value in optimizer.config().items():
        if defaults.get(key) != value:
            entries.append((key, keys.format_value(value)))
    if desc.torch_ref and "torch_ref" in _OPTIMIZER_KEYS.get(kind, ()):
        entries.append(("torch_ref", "true"))
    sections = [("Optimizer", entries)]
    if not isinstance(schedule, Constant):
        rows = [("type", schedule.type_name)]
        rows += [
            (_SCHEDULE_KEY_NAMES.get(k, k), keys.format_value(v))
            for k, v in schedule.config().items()
        ]
        sections.append(("LearningRateScheduler", rows))
    return sections


def _data_sections(data: DataFiles) -> list[tuple[str, list[tuple[str, str]]]]:
    sections = []
    for name, split in keys.DATA_SECTIONS.items():
        path = getattr(data, split)
        if path is None:
            continue
        entries = [("type", "file"), ("path", str(path))]
        if data.buffer_size is not None:
            entries.append(("buffer_size", str(data.buffer_size)))
        sections.append((name, entries))
    return sections


def format_ini(desc: ModelDescription) -> str:
    """The model file text of a description (layers must be named: see
    :func:`~edgetrain.graph.assign_names`)."""
    model_loss, loss_type = _loss_placement(desc)
    sections = [("Model", _model_entries(desc, model_loss))]
    sections += _optimizer_sections(desc)
    sections += _data_sections(desc.data)
    for layer in desc.layers:
        assert layer.name is not None
        sections.append((layer.name, _layer_entries(layer)))
    if loss_type is not None:
        taken = {name.lower() for name, _ in sections}
        name = "loss"
        while name in taken:
            name += "_"
        sections.append((name, [("type", loss_type)]))
    out = ["# NNTrainer INI model file written by edgetrain (spec/ini.md)"]
    for name, entries in sections:
        out.append(f"\n[{name}]")
        out += [f"{key} = {_text(value)}" for key, value in entries]
    return "\n".join(out) + "\n"


def write_ini(desc: ModelDescription, path: PathLike) -> None:
    """Write a description atomically: the file at ``path`` is either the old one or
    the complete new one (temporary file, fsync, rename)."""
    assign_names(desc.layers)
    _write_atomically(Path(path), format_ini(desc))


def save_model(model: Model, path: PathLike) -> None:
    """Write ``model`` as an NNTrainer INI model file (unnamed layers get their graph
    names, ``<type><index>``, first)."""
    write_ini(describe_model(model), path)


def _write_atomically(target: Path, text: str) -> None:
    if target.is_dir():
        raise SaveError(f"cannot write the model file {target}: it is a directory")
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise SaveError(f"cannot write the model file {target}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            raise SaveError(
                f"cannot write the model file {target}: {err.strerror or err}"
            ) from None
        raise
    with contextlib.suppress(OSError):
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
