"""Layer sections: each becomes ``LAYER_TYPES[type](name=section, **keys)``, with the
few NNTrainer spellings edgetrain's constructors do not share translated (``keys``);
then the loss is resolved and the graph built once so that shape errors name the file."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ShapeError
from ..graph import build_graph
from ..layers import LAYER_TYPES
from ..layers.activation import ACTIVATIONS, Activation
from ..layers.base import Layer
from ..layers.input import Input
from ..losses import LOSSES, make_loss
from . import keys
from .backbone import LayerSection
from .description import ModelDescription
from .reader import Reader
from .text import IniSection


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


def _layer_class(reader: Reader, section: IniSection) -> type[Layer]:
    text = section.get("type")
    if text is None:
        reader.fail("a layer section needs a 'type' (or a 'backbone')", section)
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


def _read_layer(reader: Reader, source: LayerSection, inputs: list[str] | None) -> _LayerDraft:
    """One layer from its section; ``inputs`` are its resolved ``input_layers``."""
    section = source.section
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
    if source.trainable is not None:
        kwargs["trainable"] = source.trainable
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
    data = Input(shape=shape, name=input_layer_name(section.name))
    return _LayerDraft(section, [data, layer])


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


def read_layers(
    reader: Reader, sections: list[LayerSection]
) -> tuple[list[_LayerDraft], IniSection | None]:
    """Every layer section in model order; a trailing loss section is returned apart."""
    loss: IniSection | None = None
    layer_sections: list[LayerSection] = []
    seen: dict[str, IniSection] = {}
    for source in sections:
        section = source.section
        if loss is not None:
            reader.fail(f"the loss section [{loss.name}] must be the last layer section", section)
        if section.key in seen:
            first = seen[section.key]
            reader.fail(
                f"layer '{section.name}' is defined twice (first at {first.path}:{first.line})",
                section,
            )
        seen[section.key] = section
        if (section.get("type") or "").lower() in keys.LOSS_SECTION_TYPES:
            loss = section
        else:
            layer_sections.append(source)
    if not layer_sections:
        reader.fail("the file has no layer sections", loss)
    names = {s.section.key: s.section.name for s in layer_sections}
    for source in layer_sections:
        section = source.section
        if section.get("input_shape") and "input_layers" not in section.entries:
            names.setdefault(input_layer_name(section.name).lower(), input_layer_name(section.name))
    drafts: list[_LayerDraft] = []
    for source in layer_sections:
        inputs = _resolve_inputs(reader, source.section, names, loss)
        drafts.append(_read_layer(reader, source, inputs))
    if loss is not None:
        _check_loss_section(reader, loss, layer_sections[-1].section, names)
    return drafts, loss


def _resolve_inputs(
    reader: Reader, section: IniSection, names: dict[str, str], loss: IniSection | None
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
    reader: Reader, loss: IniSection, last: IniSection, names: dict[str, str]
) -> None:
    reader.check_keys(loss, ("type", "input_layers"), "a loss section")
    text = loss.get("input_layers")
    if text is not None:
        refs = keys.split_list(text)
        if [r.lower() for r in refs] != [last.key]:
            reader.fail(
                f"the loss reads the last layer ('{last.name}') in edgetrain", loss, "input_layers"
            )


def last_activation(layers: Sequence[Layer]) -> str | None:
    last = layers[-1]
    return last.kind if isinstance(last, Activation) else last.activation


def resolve_loss(
    reader: Reader,
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
        activation = last_activation(layers)
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


def _named_section(drafts: list[_LayerDraft], message: str) -> IniSection | None:
    """The first layer section a graph error message quotes (``'name'`` or
    ``'name/activation'``), to point at its line."""
    by_key = {d.section.key: d.section for d in drafts}
    for quoted in re.findall(r"'([^']+)'", message):
        section = by_key.get(quoted.split("/")[0].lower())
        if section is not None:
            return section
    return None


def check_graph(reader: Reader, drafts: list[_LayerDraft], desc: ModelDescription) -> None:
    """Build the graph once (batch of 1) so that connection and shape errors name the
    file; check the ``input_shape`` of connected layers against what they receive."""
    try:
        graph = build_graph(desc.layers, 1, make_loss(desc.loss) if desc.loss else None)
    except (ShapeError, ConfigError) as err:
        reader.fail(f"the model does not build: {err}", _named_section(drafts, str(err)))
    for draft in drafts:
        if draft.expected_shape is None:
            continue
        layer = draft.layers[-1]
        assert layer.name is not None
        got = [graph.shape_of(p)[1:] for p in graph.node(layer.name).inputs]
        if any(keys.squeeze(s) != keys.squeeze(draft.expected_shape) for s in got):
            shown = ", ".join(keys.format_shape_value(s) for s in got)
            reader.fail(f"input_shape is {keys.format_shape_value(draft.expected_shape)} but the layer "
                        f"receives {shown}", draft.section, "input_shape")  # fmt: skip
