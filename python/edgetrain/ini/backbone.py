"""Backbone sections: ``backbone = other.ini`` puts the layer sections of another model
file where the section is, as NNTrainer's ``IniGraphInterpreter`` does.

The other file's dedicated sections (``[Model]``, ``[Optimizer]``...) are ignored, its
layers keep their names, and the backbone section's ``trainable`` (if given) applies to
every one of them. Backbones may nest; a file that includes itself is an error. Only
``.ini`` backbones exist in edgetrain (NNTrainer's TFLite and NNStreamer ones do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFileError
from . import keys
from .reader import Reader
from .text import IniSection, read_sections


@dataclass(frozen=True)
class LayerSection:
    """A layer section to build, and the ``trainable`` a backbone imposes on it."""

    section: IniSection
    trainable: bool | None = None


def expand_backbones(
    reader: Reader, sections: list[IniSection], including: tuple[Path, ...] = ()
) -> list[LayerSection]:
    """The layer sections in model order, each backbone section replaced by the layer
    sections of its file; ``including`` are the files being expanded (for cycles)."""
    out: list[LayerSection] = []
    for section in sections:
        if "backbone" in section.entries:
            out += _expand(reader, section, including)
        else:
            out.append(LayerSection(section))
    return out


def _expand(reader: Reader, section: IniSection, including: tuple[Path, ...]) -> list[LayerSection]:
    if "type" in section.entries:
        reader.fail("a section has a 'type' or a 'backbone', not both", section, "backbone")
    reader.check_keys(section, ("backbone", "trainable", "input_shape"), "a backbone section")
    text = section.entries["backbone"].value
    if not text.lower().endswith(".ini"):
        reader.fail(
            f"only .ini backbones are supported (not TFLite or NNStreamer ones), got {text!r}",
            section,
            "backbone",
        )
    path = reader.resolve(text, section)
    own = (section.path or reader.path).resolve()
    if path.resolve() in (*including, own):
        reader.fail(f"the backbone {path} includes itself", section, "backbone")
    try:
        inner = read_sections(path)
    except ModelFileError as err:
        if err.line is not None:
            raise  # a syntax error inside the backbone: its own file and line
        reader.fail(f"cannot use the backbone: {err}", section, "backbone")
    layers = [s for s in inner if s.key not in keys.DEDICATED_SECTIONS]
    if not layers:
        reader.fail(f"the backbone {path} has no layer sections", section, "backbone")
    for layer in layers:
        if (layer.get("type") or "").lower() in keys.LOSS_SECTION_TYPES:
            reader.fail("a backbone cannot contain a loss section", layer, "type")
    expanded = expand_backbones(reader, layers, (*including, own))
    if "trainable" in section.entries:
        trainable = reader.convert(section, "trainable", keys.parse_bool)
        expanded = [LayerSection(s.section, trainable) for s in expanded]
    if "input_shape" in section.entries:
        _check_input_shape(reader, section, expanded[0].section)
    return expanded


def _check_input_shape(reader: Reader, section: IniSection, first: IniSection) -> None:
    """NNTrainer ignores a backbone section's ``input_shape``; edgetrain accepts it only
    where it says what the backbone's first layer already says."""
    shape = reader.convert(section, "input_shape", keys.parse_shape)
    written = first.get("input_shape")
    if written is None or keys.squeeze(keys.parse_shape(written)) != keys.squeeze(shape):
        reader.fail(
            f"input_shape of a backbone must repeat the input_shape of its first layer "
            f"('{first.name}': {written or 'none'})",
            section,
            "input_shape",
        )
