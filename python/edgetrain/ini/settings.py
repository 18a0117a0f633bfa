"""The non-layer sections: ``[Model]``, ``[Optimizer]`` (or the old-style optimizer keys
of ``[Model]``), ``[LearningRateScheduler]``, ``[DataSet]`` and ``[train_set]``...
Each fills its part of a :class:`ModelDescription`, with NNTrainer's defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..optimizers import OPTIMIZERS
from ..schedules import SCHEDULES, Constant, Exponential, LearningRateSchedule
from . import keys
from .description import ModelDescription
from .reader import Reader
from .text import IniSection

_MODEL_KEYS = (
    "type", "loss", "batch_size", "epochs", "save_path", "save_best_path", "continue_train",
    "memory_optimization", "memory_swap", "memory_swap_path", "memory_swap_lookahead", "fsu",
    "fsu_path", "fsu_lookahead", "tensor_format", "model_tensor_type", "tensor_type",
    "loss_scale", "recompute",
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


def read_model(reader: Reader, section: IniSection | None, desc: ModelDescription) -> str | None:
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
    for key in ("continue_train", "memory_optimization", "recompute"):
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

OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
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
SCHEDULE_KEY_NAMES = {"iterations": "iteration", "learning_rates": "learning_rate"}


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


def _read_schedule(reader: Reader, section: IniSection) -> LearningRateSchedule:
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
    names = {v: k for k, v in SCHEDULE_KEY_NAMES.items()} if kind == "step" else {}
    try:
        return cls(**{names.get(k, k): v for k, v in values.items()})
    except ConfigError as err:
        blamed = reader.blame(err, section)
        reader.fail(str(err), section, SCHEDULE_KEY_NAMES.get(blamed or "", blamed))


def _optimizer_value(key: str) -> Callable[[str, str], Any]:
    if key == "torch_ref":
        return keys.parse_bool
    if key == "decay_steps":
        return keys.parse_int
    if key in ("momentum", "weight_decay"):
        return lambda t, k: keys.parse_float(t, k, minimum=0.0)
    return _positive_float


def read_optimizer(
    reader: Reader, model: IniSection | None, section: IniSection | None, desc: ModelDescription
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
    if kind not in OPTIMIZERS or kind not in OPTIMIZER_KEYS:
        reader.fail(
            f"unknown optimizer {kind!r} (known: {', '.join(sorted(OPTIMIZER_KEYS))})",
            type_source,
            type_key,
        )
    allowed = OPTIMIZER_KEYS[kind]
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


def read_data(reader: Reader, desc: ModelDescription) -> None:
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
