"""Weight files: NNTrainer's ``.bin``, a named ``.npz`` and ``.safetensors``, written atomically.

``.bin`` is what NNTrainer's ``NeuralNetwork::save(MODEL_FORMAT_BIN)`` writes: every
weight of every layer as little-endian float32, layers in execution order and each
layer's weights in the order it declares them, nothing else. ``.npz`` keeps each weight
under its ``"<layer>:<weight>"`` name, so it survives reordering and is checked by name;
``.safetensors`` does the same in the interchange format (``interchange/safetensors_io.py``).
A save never leaves a half-written file: it writes a temporary file in the same
directory, syncs it to disk and renames it over the target. See ``spec/weights.md``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from .errors import ModelFileError, SaveError
from .tensors import Shape, format_shape

Array = NDArray[Any]
PathLike = str | os.PathLike[str]

#: the one value type of a ``.bin`` file
BIN_VALUE = np.dtype("<f4")
#: NNTrainer's training trailer: epoch and iteration counters, one uint32 each
BIN_TRAILER_BYTES = 8
#: NNTrainer writes this tag, then the Adam moment tensors, before the trailer
BIN_ADAM_TAG = b"adam"


#: weight formats chosen by file extension; any other name is NNTrainer's ``.bin``
NAMED_FORMATS = {".npz": "npz", ".safetensors": "safetensors"}


def weight_format(path: PathLike) -> str:
    """``"npz"`` or ``"safetensors"`` by extension, else ``"bin"`` (NNTrainer names any
    weight file)."""
    return NAMED_FORMATS.get(Path(path).suffix.lower(), "bin")


# -- saving --------------------------------------------------------------------------------


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def check_save_path(path: PathLike) -> Path:
    """Make sure weights can be saved at ``path`` before spending time on training:
    missing parent directories are created, and a probe file is written and removed."""
    target = Path(path)
    if target.is_dir():
        raise SaveError(f"cannot save weights to {target}: it is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SaveError(f"cannot save weights to {target}: {_reason(err)}") from None
    probe = _temp_name(target)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise SaveError(f"cannot save weights to {target}: {_reason(err)}") from None
    os.close(fd)
    os.unlink(probe)
    return target


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def atomic_write(
    path: PathLike, write: Callable[[IO[bytes]], None], *, what: str = "weights"
) -> None:
    """Write a file through ``write`` so that ``path`` holds either its old content or the
    complete new one, even if the process dies: temp file, fsync, rename, fsync the
    directory. Any failure raises :class:`SaveError` ("cannot save <what> to <path>")
    and removes the temp file."""
    target = Path(path)
    if target.is_dir():
        raise SaveError(f"cannot save {what} to {target}: it is a directory")
    temp = _temp_name(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise SaveError(f"cannot save {what} to {target}: {_reason(err)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            raise SaveError(f"cannot save {what} to {target}: {_reason(err)}") from None
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_weights(path: PathLike, weights: Mapping[str, Array]) -> None:
    """Save ``weights`` (in the model's order: layers in execution order, each layer's
    weights as declared) to ``path`` as ``.bin``, ``.npz`` or ``.safetensors`` by its
    extension."""
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise SaveError(f"cannot save weights to {path}: weight '{name}' has NaN or infinite values")
    chosen = weight_format(path)
    if chosen == "safetensors":
        from .interchange.safetensors_io import write_safetensors

        def write(handle: IO[bytes]) -> None:
            write_safetensors(handle, weights)

    elif chosen == "npz":
        arrays = {name: np.asarray(value) for name, value in weights.items()}

        def write(handle: IO[bytes]) -> None:
            np.savez(handle, allow_pickle=False, **arrays)

    else:

        def write(handle: IO[bytes]) -> None:
            for value in weights.values():
                handle.write(np.ascontiguousarray(value, dtype=BIN_VALUE).tobytes())

    atomic_write(path, write)


# -- loading -------------------------------------------------------------------------------


def load_weights(path: PathLike, expected: Mapping[str, Shape]) -> dict[str, Array]:
    """Read the weights of a model whose weights are ``expected`` (name -> shape, in the
    model's order), checking sizes (``.bin``) or names and shapes (``.npz``,
    ``.safetensors``)."""
    source = Path(path)
    if not source.is_file():
        raise ModelFileError("no such weights file" if not source.exists() else "not a regular file", path=source)
    if weight_format(source) == "npz":
        return _load_npz(source, expected)
    if weight_format(source) == "safetensors":
        from .interchange.safetensors_io import load_safetensors

        result = load_safetensors(source, expected)
        _check_finite(source, result)
        return result
    return _load_bin(source, expected)


def _load_bin(path: Path, expected: Mapping[str, Shape]) -> dict[str, Array]:
    sizes = {name: int(np.prod(shape)) for name, shape in expected.items()}
    need = sum(sizes.values()) * BIN_VALUE.itemsize
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read: {_reason(err)}", path=path) from None
    extra = data[need:]
    trailer_ok = (
        len(extra) in (0, BIN_TRAILER_BYTES)
        or (extra.startswith(BIN_ADAM_TAG) and len(extra) % BIN_VALUE.itemsize == 0)
    )
    if len(data) < need or not trailer_ok:
        raise ModelFileError(
            f"has {len(data)} bytes but this model's {len(sizes)} weight tensors take "
            f"{need} bytes ({need // BIN_VALUE.itemsize} float32 values): the file was saved "
            "from a different model",
            path=path,
        )
    values = np.frombuffer(data, dtype=BIN_VALUE, count=need // BIN_VALUE.itemsize)
    result: dict[str, Array] = {}
    start = 0
    for name, shape in expected.items():
        size = sizes[name]
        result[name] = values[start : start + size].reshape(shape).copy()
        start += size
    _check_finite(path, result)
    return result


def _load_npz(path: Path, expected: Mapping[str, Shape]) -> dict[str, Array]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"is not a readable .npz weights file ({err})", path=path) from None
    result = match_named_weights(path, stored, expected)
    for name, value in result.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise ModelFileError(f"weight '{name}' has dtype {value.dtype}, not float", path=path)
    _check_finite(path, result)
    return result


def match_named_weights(
    path: Path, stored: Mapping[str, Array], expected: Mapping[str, Shape]
) -> dict[str, Array]:
    """The weights of a named file (``.npz``, safetensors) in the model's order, checked
    by name and shape: missing and unknown names are listed, a wrong shape names both."""
    missing = [n for n in expected if n not in stored]
    unknown = [n for n in stored if n not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unknown:
            parts.append(f"not in this model {unknown}")
        raise ModelFileError(f"weight names do not match the model: {'; '.join(parts)}", path=path)
    for name, shape in expected.items():
        if tuple(stored[name].shape) != tuple(shape):
            raise ModelFileError(
                f"weight '{name}' has shape {format_shape(stored[name].shape)} in the file, "
                f"the model needs {format_shape(shape)}",
                path=path,
            )
    return {name: stored[name] for name in expected}


def _check_finite(path: Path, weights: Mapping[str, Array]) -> None:
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise ModelFileError(f"weight '{name}' has NaN or infinite values", path=path)
