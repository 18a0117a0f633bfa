"""A personalized classifier as one ``.npz`` file, so it survives the app's restart
(``spec/personalization.md``, section 6).

The file holds arrays only (``allow_pickle=False``): a format tag, the classifier's kind
and settings (JSON text), the common state (labels, centring mean, support features) and
the kind's own arrays. The backbone is not in it: it is the model, saved with
``Model.save``, and given again to ``load``. Written atomically (temporary file, fsync,
rename).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelFileError
from ..weights_io import atomic_write

Array = NDArray[Any]

FORMAT = "edgetrain-few-shot/1"


def write_state(
    path: str | os.PathLike[str],
    kind: str,
    settings: Mapping[str, Any],
    arrays: Mapping[str, Array],
) -> None:
    """Write ``arrays`` with the format tag, ``kind`` and ``settings`` to ``path``."""
    payload = {
        "format": np.array(FORMAT),
        "kind": np.array(kind),
        "settings": np.array(json.dumps(dict(settings), sort_keys=True)),
        **{name: np.asarray(value) for name, value in arrays.items()},
    }

    def write(handle: IO[bytes]) -> None:
        np.savez(handle, allow_pickle=False, **payload)

    atomic_write(path, write, what="the classifier")


def read_state(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, Array]]:
    """``(kind, settings, arrays)`` of a file written by :func:`write_state`."""
    source = Path(path)
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ModelFileError(
            f"is not a readable few-shot classifier file ({err})", path=source
        ) from None
    tag = str(arrays.pop("format", ""))
    if tag != FORMAT:
        raise ModelFileError(
            f"is not a few-shot classifier file of format {FORMAT!r} (found {tag or 'no tag'!r})",
            path=source,
        )
    try:
        kind = str(arrays.pop("kind"))
        settings = json.loads(str(arrays.pop("settings")))
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"has no readable kind or settings ({err})", path=source) from None
    return kind, settings, arrays


def required(
    arrays: Mapping[str, Array], names: tuple[str, ...], path: str | os.PathLike[str]
) -> None:
    """Refuse a file missing any of ``names``."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ModelFileError(f"is missing the arrays {missing}", path=Path(path))
