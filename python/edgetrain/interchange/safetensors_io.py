"""Weights as safetensors: the interchange format of the Hugging Face ecosystem.

A safetensors file is an 8-byte little-endian header length, a JSON header (each
tensor's dtype, shape and byte range, plus a ``__metadata__`` map of strings) and the raw
little-endian tensor bytes. edgetrain writes every weight as float32 under its
``"<layer>:<weight>"`` name with metadata naming the format and its version, so a file
checks itself by name like ``.npz`` but opens in any safetensors reader. See
``spec/interchange.md``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.numpy import load as _decode
from safetensors.numpy import save as _encode

from ..errors import ModelFileError
from ..tensors import Shape
from ..weights_io import match_named_weights

Array = NDArray[Any]

#: the metadata edgetrain writes; readers need none of it (files from other tools load)
METADATA = {"format": "edgetrain", "version": "1"}
#: safetensors dtypes edgetrain reads (converted to the model's dtype)
FLOAT_DTYPES = ("F16", "F32", "F64")
_HEADER_LENGTH_BYTES = 8
#: the safetensors reference limit on the JSON header (100 MB)
_MAX_HEADER_BYTES = 100_000_000


def encode_safetensors(weights: Mapping[str, Array]) -> bytes:
    """The bytes of a safetensors file holding ``weights`` as float32, in the given order."""
    arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
    return _encode(arrays, metadata=dict(METADATA))


def write_safetensors(handle: IO[bytes], weights: Mapping[str, Array]) -> None:
    """Write :func:`encode_safetensors` to an open file (used inside ``atomic_write``)."""
    handle.write(encode_safetensors(weights))


def read_header(path: Path, data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file, or a :class:`ModelFileError` saying that the
    file is not one (too short, a length beyond the file, not JSON, not a map)."""
    if len(data) < _HEADER_LENGTH_BYTES:
        raise ModelFileError(f"is not a safetensors file: only {len(data)} bytes", path=path)
    (length,) = struct.unpack("<Q", data[:_HEADER_LENGTH_BYTES])
    if length > min(len(data) - _HEADER_LENGTH_BYTES, _MAX_HEADER_BYTES):
        raise ModelFileError(
            f"is not a safetensors file: its first 8 bytes give a header of {length} bytes "
            f"but the file has {len(data)}",
            path=path,
        )
    try:
        header = json.loads(data[_HEADER_LENGTH_BYTES : _HEADER_LENGTH_BYTES + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("is not a safetensors file: its header is not JSON", path=path) from None
    if not isinstance(header, dict):
        raise ModelFileError("is not a safetensors file: its header is not a JSON object", path=path)
    return header


def read_safetensors(path: Path) -> tuple[dict[str, Array], dict[str, str]]:
    """Every tensor of a safetensors file by name, and its metadata."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read: {err.strerror or err}", path=path) from None
    header = read_header(path, data)
    metadata = header.pop("__metadata__", None) or {}
    for name, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in FLOAT_DTYPES:
            raise ModelFileError(
                f"tensor '{name}' has dtype {dtype}; weights must be one of {', '.join(FLOAT_DTYPES)}",
                path=path,
            )
    try:
        tensors = _decode(data)
    except SafetensorError as err:
        raise ModelFileError(f"is not a valid safetensors file: {err}", path=path) from None
    return tensors, {str(k): str(v) for k, v in dict(metadata).items()}


def load_safetensors(path: Path, expected: Mapping[str, Shape]) -> dict[str, Array]:
    """The weights named in ``expected`` (name -> shape, model order), checked by name and
    shape: missing and unknown names are listed, a wrong shape names both shapes."""
    stored, _ = read_safetensors(path)
    return match_named_weights(path, stored, expected)
