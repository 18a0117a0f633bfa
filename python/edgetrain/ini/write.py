"""Writing a model file: NNTrainer INI text from a :class:`ModelDescription`, written
atomically. What is written reads back to the same layers, loss, optimizer and schedule
(``tests/spec/test_ini.py`` checks every registered layer type)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import SaveError
from ..weights_io import atomic_write
from ..graph import assign_names
from ..layers.base import Layer
from ..losses import make_loss
from ..schedules import Constant
from . import keys
from .description import DataFiles, ModelDescription, SwapSettings
from .layers import last_activation
from .settings import OPTIMIZER_DEFAULTS, OPTIMIZER_KEYS, SCHEDULE_KEY_NAMES
from .text import PathLike

if TYPE_CHECKING:
    from ..model import Model


def describe_model(model: Model) -> ModelDescription:
    """The description of a model as it is now: its layers, loss, optimizer and batch
    size, and the other settings of the file it was read from, if any."""
    base = model.description
    loss = make_loss(model.loss_name).type_name if model.loss_name else None
    batch = model.batch_size or (base.batch_size if base is not None else 1)
    if base is None:
        return ModelDescription(list(model.layers), loss, model.optimizer, batch)
    return dataclasses.replace(
        base, layers=list(model.layers), loss=loss, optimizer=model.optimizer, batch_size=batch
    )


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
    activation = last_activation(desc.layers) if desc.layers else None
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
    if desc.recompute:
        entries.append(("recompute", "true"))
    default = SwapSettings()
    if desc.swap.enabled != default.enabled:
        entries.append(("memory_swap", keys.format_value(desc.swap.enabled)))
    if desc.swap.path is not None:
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
    if desc.torch_ref and "torch_ref" in OPTIMIZER_KEYS.get(kind, ()):
        entries.append(("torch_ref", "true"))
    sections = [("Optimizer", entries)]
    if not isinstance(schedule, Constant):
        rows = [("type", schedule.type_name)]
        rows += [
            (SCHEDULE_KEY_NAMES.get(k, k), keys.format_value(v))
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
    data = format_ini(desc).encode("utf-8")

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    atomic_write(path, write, what="the model file")


def save_model(model: Model, path: PathLike) -> None:
    """Write ``model`` as an NNTrainer INI model file (unnamed layers get their graph
    names, ``<type><index>``, first)."""
    write_ini(describe_model(model), path)
