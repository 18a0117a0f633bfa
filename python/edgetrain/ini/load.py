"""Reading a model file: :func:`read_ini` for the description, :func:`load_model` for a
:class:`~edgetrain.model.Model`, :func:`read_model_file` for both."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import keys
from .backbone import expand_backbones
from .description import ModelDescription, ModelFile
from .layers import check_graph, read_layers, resolve_loss
from .reader import Reader
from .settings import read_data, read_model, read_optimizer
from .text import PathLike, read_sections

if TYPE_CHECKING:
    from ..model import Model


def read_ini(path: PathLike) -> ModelDescription:
    """Everything an NNTrainer INI model file describes, checked: every layer built and
    the graph connected with its shapes inferred. Errors are :class:`ModelFileError`."""
    source = Path(path)
    reader = Reader(source, read_sections(source))
    if not reader.sections:
        reader.fail("the file has no sections")
    desc = ModelDescription(layers=[], source=source)
    model = reader.by_key.get(keys.MODEL_SECTION)
    written_loss = read_model(reader, model, desc)
    read_optimizer(reader, model, reader.by_key.get(keys.OPTIMIZER_SECTION), desc)
    read_data(reader, desc)
    layer_sections = [s for s in reader.sections if s.key not in keys.DEDICATED_SECTIONS]
    if not layer_sections:
        reader.fail("the file has no layer sections")
    drafts, loss_section = read_layers(reader, expand_backbones(reader, layer_sections))
    desc.layers = [layer for draft in drafts for layer in draft.layers]
    desc.loss = resolve_loss(reader, model, written_loss, loss_section, desc.layers)
    check_graph(reader, drafts, desc)
    return desc


def load_model(path: PathLike) -> Model:
    """A :class:`Model` from a model file. Its ``optimizer`` and ``batch_size`` are the
    file's, so ``model.compile(model.optimizer, model.batch_size)`` trains as described;
    ``model.description`` keeps the rest (epochs, data files, swap settings)."""
    from ..model import Model

    desc = read_ini(path)
    model = Model(desc.layers, desc.loss, name=Path(path).stem)
    model.optimizer = desc.optimizer
    model.batch_size = desc.batch_size
    model.description = desc
    return model


def read_model_file(path: PathLike) -> ModelFile:
    """:func:`load_model` with the description beside it (what the CLI uses)."""
    model = load_model(path)
    assert model.description is not None
    return ModelFile(model, model.description)
