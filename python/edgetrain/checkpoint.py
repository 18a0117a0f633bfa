"""Checkpoint files: the tensors and the JSON state of a training run, checksummed.

A checkpoint is a 52-byte header (magic, version, payload length, SHA-256 of the payload)
followed by a payload that is a complete safetensors file: the weights and optimizer
state as tensors, and the run's state (position, random generators, metrics, identity)
as one JSON string in its ``__metadata__``. The checksum covers every payload byte, so a
truncated or corrupted file is refused before anything is read from it. Files are
written atomically (``weights_io.atomic_write``) and a directory keeps the newest
``KEEP`` of them. What the state holds and how training uses it: ``training.py``;
the byte layout: ``spec/checkpoint.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import secrets
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from .errors import CheckpointError, SaveError
from .weights_io import atomic_write

Array = NDArray[Any]
PathLike = str | os.PathLike[str]

MAGIC = b"EDGECKPT"
VERSION = 1
#: magic, version (u32), payload length (u64), SHA-256 of the payload; little-endian
HEADER = struct.Struct("<8sIQ32s")
#: the ``__metadata__`` key of the payload that holds the state JSON
STATE_KEY = "edgetrain.checkpoint"
#: how many checkpoint files a directory keeps (the newest, and the one before it)
KEEP = 2
FILE_PATTERN = re.compile(r"^checkpoint-(\d+)\.ckpt$")
#: the temporary file of a checkpoint write that never completed (``atomic_write``'s name)
TEMP_PATTERN = re.compile(r"^\.checkpoint-\d+\.ckpt\.[0-9a-f]+\.tmp$")

#: safetensors dtype names of the tensors a checkpoint may hold (little-endian)
DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class CheckpointWarning(UserWarning):
    """Resuming skipped a checkpoint that could not be used and fell back to an older one."""


@dataclass
class Checkpoint:
    """What one file holds: tensors by name, and the JSON state."""

    tensors: dict[str, Array]
    state: dict[str, Any]


# -- one file --------------------------------------------------------------------------------


def _payload_parts(tensors: Mapping[str, Array], state: Mapping[str, Any]) -> list[memoryview]:
    """The safetensors payload as a list of byte views: the header, then each tensor's
    bytes in the given order (no copy of a contiguous little-endian tensor)."""
    header: dict[str, Any] = {"__metadata__": {STATE_KEY: json.dumps(state, sort_keys=True)}}
    blobs: list[memoryview] = []
    offset = 0
    for name, value in tensors.items():
        dtype = np.dtype(value.dtype).newbyteorder("<")
        if dtype not in _DTYPE_NAMES:
            raise SaveError(
                f"checkpoint tensor '{name}' has dtype {value.dtype}; only float32/float64"
            )
        data = np.ascontiguousarray(value, dtype=dtype)
        blob = data.reshape(-1).view(np.uint8).data if data.size else memoryview(b"")
        header[name] = {
            "dtype": _DTYPE_NAMES[dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + blob.nbytes],
        }
        offset += blob.nbytes
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return [memoryview(struct.pack("<Q", len(text))), memoryview(text), *blobs]


def write_checkpoint(
    path: PathLike, tensors: Mapping[str, Array], state: Mapping[str, Any]
) -> None:
    """Write one checkpoint file atomically (the old file at ``path``, if any, stays
    whole until the new one is complete on disk). ``state`` must be JSON-serialisable."""
    parts = _payload_parts(tensors, state)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    length = sum(part.nbytes for part in parts)
    header = HEADER.pack(MAGIC, VERSION, length, digest.digest())

    def write(handle: IO[bytes]) -> None:
        handle.write(header)
        for part in parts:
            handle.write(part)

    atomic_write(path, write, what="checkpoint")


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read and verify one checkpoint file; any damage is a :class:`CheckpointError`
    naming the file and what is wrong with it. The file is mapped, not read into memory:
    its tensors are read-only views of the mapping (file-backed pages the OS can drop),
    so resuming a large model needs no second copy of its state in RAM."""
    source = Path(path)
    try:
        data = _map(source)
    except OSError as err:
        raise CheckpointError(f"cannot read: {err.strerror or err}", path=source) from None
    if len(data) < HEADER.size or bytes(data[: len(MAGIC)]) != MAGIC:
        raise CheckpointError(
            f"not an edgetrain checkpoint (it does not start with {MAGIC.decode()})", path=source
        )
    _, version, length, expected = HEADER.unpack_from(data)
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint format version {version}; this edgetrain reads version {VERSION}",
            path=source,
        )
    payload = data[HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(
            f"truncated or padded: the header announces {length} payload bytes, the file "
            f"holds {len(payload)}",
            path=source,
        )
    if hashlib.sha256(payload).digest() != expected:
        raise CheckpointError(
            "corrupt: the SHA-256 of its payload does not match its header", path=source
        )
    return _parse_payload(source, payload)


def _map(source: Path) -> memoryview:
    """The file's bytes: a read-only memory map (an empty file gives empty bytes)."""
    with source.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return memoryview(b"")
        return memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))


def _parse_payload(source: Path, payload: memoryview) -> Checkpoint:
    """Tensors and state from a verified safetensors payload (read-only views)."""
    try:
        (size,) = struct.unpack_from("<Q", payload)
        header = json.loads(bytes(payload[8 : 8 + size]).decode("utf-8"))
        state = json.loads(header.pop("__metadata__")[STATE_KEY])
        start = 8 + size
        tensors: dict[str, Array] = {}
        for name, entry in header.items():
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
            count = int(np.prod(shape))
            if end - begin != count * dtype.itemsize or start + end > len(payload):
                raise ValueError(f"tensor '{name}' has offsets {begin}..{end} for shape {shape}")
            values = np.frombuffer(payload, dtype=dtype, count=count, offset=start + begin)
            tensors[name] = values.reshape(shape)
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise CheckpointError(
            f"unreadable payload despite a valid checksum ({err})", path=source
        ) from None
    if not isinstance(state, dict) or state.get("format") != "edgetrain-checkpoint":
        raise CheckpointError("its metadata is not an edgetrain checkpoint state", path=source)
    return Checkpoint(tensors, state)


def describe_checkpoint(path: PathLike) -> tuple[str, bool]:
    """One line about a checkpoint file — where its run stood, or what is wrong with it —
    and whether it is intact."""
    from .planning.report import format_bytes

    source = Path(path)
    try:
        found = read_checkpoint(source)
        state = found.state
        progress = state["progress"]
        epoch, epochs, batch = progress["epoch"], progress["epochs"], progress["batch"]
        optimizer = state["training"]["optimizer"]["type"]
        names = state["tensors"]
        model_hash = state["model"]["hash"]
    except CheckpointError as err:
        return f"{source}  UNUSABLE: {err.reason}", False
    except (KeyError, TypeError) as err:
        return f"{source}  UNUSABLE: incomplete state ({err!r})", False
    if epoch >= epochs:
        stage = f"end of training ({epochs} epochs)"
    elif batch == 0:
        stage = f"start of epoch {epoch + 1}/{epochs}"
    else:
        stage = f"epoch {epoch + 1}/{epochs}, {batch}/{progress['batches_per_epoch']} batches done"
    nbytes = sum(int(t.nbytes) for t in found.tensors.values())
    line = (
        f"{source}  ok: iteration {progress['iteration']}, {stage}; "
        f"{len(names['weights'])} weights and {len(names['optimizer_state'])} {optimizer} "
        f"state tensors ({format_bytes(nbytes)}); model {model_hash[:12]}"
    )
    return line, True


# -- a directory of checkpoints ------------------------------------------------------------------


def checkpoint_name(iteration: int) -> str:
    """The file name of the checkpoint taken after ``iteration`` iterations."""
    return f"checkpoint-{iteration:09d}.ckpt"


def checkpoint_files(directory: PathLike) -> list[Path]:
    """The checkpoint files in ``directory``, oldest (fewest iterations) first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = FILE_PATTERN.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def _make_directory(directory: PathLike) -> Path:
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SaveError(
            f"cannot create the checkpoint directory {folder}: {err.strerror or err}"
        ) from None
    return folder


def check_checkpoint_directory(directory: PathLike) -> Path:
    """Make sure checkpoints can be written in ``directory`` before training starts (so a
    bad path costs seconds, not an epoch): it is created if missing, and a probe file is
    written there and removed. Raises :class:`SaveError`."""
    folder = _make_directory(directory)
    probe = folder / f".checkpoint-probe.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise SaveError(f"cannot save checkpoints in {folder}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def save_checkpoint(
    directory: PathLike, iteration: int, tensors: Mapping[str, Array], state: Mapping[str, Any]
) -> Path:
    """Write the checkpoint of ``iteration`` into ``directory`` (created if missing), then
    remove all but the newest :data:`KEEP` files: the previous good checkpoint is only
    removed once a newer one is complete on disk."""
    folder = _make_directory(directory)
    target = folder / checkpoint_name(iteration)
    write_checkpoint(target, tensors, state)
    for old in checkpoint_files(folder)[:-KEEP]:
        with contextlib.suppress(OSError):  # one more old file is harmless
            old.unlink()
    return target


def _remove_unfinished(directory: PathLike) -> None:
    """Delete temporary files left by saves that were killed before their rename."""
    folder = Path(directory)
    if folder.is_dir():
        for entry in folder.iterdir():
            if TEMP_PATTERN.match(entry.name):
                with contextlib.suppress(OSError):
                    entry.unlink()


@dataclass
class Resumed:
    """The checkpoint resuming uses, its file, and the newer files it had to skip."""

    checkpoint: Checkpoint
    path: Path
    skipped: list[CheckpointError]


def newest_valid(directory: PathLike) -> Resumed | None:
    """The newest checkpoint in ``directory`` that reads back intact, or None when the
    directory holds no checkpoint file. Temporary files of saves that never completed
    (the process died mid-write) are deleted first. Newer files that fail are renamed to
    ``<name>.corrupt`` (kept for inspection, never picked again) and reported with a
    :class:`CheckpointWarning`; when every file fails, the error lists them all."""
    failures: list[CheckpointError] = []
    _remove_unfinished(directory)
    files = checkpoint_files(directory)
    for path in reversed(files):
        try:
            found = read_checkpoint(path)
        except CheckpointError as err:
            failures.append(err)
            continue
        for failure in failures:
            bad = Path(failure.path)
            with contextlib.suppress(OSError):
                bad.rename(bad.with_name(bad.name + ".corrupt"))
            warnings.warn(
                CheckpointWarning(
                    f"{failure} — moved aside to {bad.name}.corrupt; resuming from the older "
                    f"{path.name} instead"
                ),
                stacklevel=3,
            )
        return Resumed(found, path, failures)
    if failures:
        reasons = "; ".join(str(failure) for failure in failures)
        raise CheckpointError(f"no usable checkpoint: {reasons}", path=Path(directory))
    return None
