"""NNTrainer INI model files: read one into a :class:`ModelDescription` (and a
:class:`~edgetrain.model.Model`), and write a model back out. The format: ``spec/ini.md``.

Reading happens in two passes. :mod:`.text` turns the file into sections of
``key = value`` entries with line numbers, as NNTrainer's iniparser reads them;
:mod:`.settings` and :mod:`.layers` interpret the sections, each layer section built
generically as ``LAYER_TYPES[type](name=section, **keys)``. Every error is a
:class:`~edgetrain.errors.ModelFileError` naming the file, line, section and key.
:mod:`.write` writes a model back, atomically.
"""

from __future__ import annotations

from .description import DataFiles, ModelDescription, ModelFile, SwapSettings
from .layers import input_layer_name
from .load import load_model, read_ini, read_model_file
from .settings import OPTIMIZER_DEFAULTS
from .text import IniEntry, IniSection, parse_ini, read_sections
from .write import describe_model, format_ini, save_model, write_ini

__all__ = [
    "OPTIMIZER_DEFAULTS",
    "DataFiles",
    "IniEntry",
    "IniSection",
    "ModelDescription",
    "ModelFile",
    "SwapSettings",
    "describe_model",
    "format_ini",
    "input_layer_name",
    "load_model",
    "parse_ini",
    "read_ini",
    "read_model_file",
    "read_sections",
    "save_model",
    "write_ini",
]
