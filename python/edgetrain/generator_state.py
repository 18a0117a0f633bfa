"""Random generators' states as JSON-safe values, for checkpoints (``spec/checkpoint.md``).

Two generators are saved: numpy's PCG64 (the data loader's, and the reference executor's
dropout masks) and the core's SplitMix64 (the rust backend's dropout masks). Each is
tagged with its ``bit_generator`` name, so a state is never restored into the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError, StateError

PCG64 = "PCG64"
SPLITMIX64 = "SplitMix64"


def encode_rng(state: Mapping[str, Any]) -> dict[str, Any]:
    """A PCG64 generator state (``Generator.bit_generator.state``) as JSON-safe values:
    the 128-bit numbers as decimal strings."""
    if state.get("bit_generator") != PCG64:
        raise StateError(f"only PCG64 generators can be checkpointed, not {state.get('bit_generator')}")
    return {
        "bit_generator": PCG64,
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def decode_rng(data: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_rng`."""
    expect_generator(data, PCG64)
    return {
        "bit_generator": PCG64,
        "state": {"state": int(data["state"]), "inc": int(data["inc"])},
        "has_uint32": int(data["has_uint32"]),
        "uinteger": int(data["uinteger"]),
    }


def encode_splitmix(state: int) -> dict[str, Any]:
    """The core's 64-bit SplitMix64 state, as a decimal string."""
    return {"bit_generator": SPLITMIX64, "state": str(state)}


def decode_splitmix(data: Mapping[str, Any]) -> int:
    """The inverse of :func:`encode_splitmix`, range-checked."""
    expect_generator(data, SPLITMIX64)
    state = int(data["state"])
    if not 0 <= state < 1 << 64:
        raise ConfigError(f"a SplitMix64 state is a 64-bit unsigned number, got {state}")
    return state


def expect_generator(data: Mapping[str, Any], name: str) -> None:
    """Refuses another generator's state: masks of one backend cannot continue on the other."""
    found = data.get("bit_generator")
    if found != name:
        backend = {PCG64: "python", SPLITMIX64: "rust"}
        raise ConfigError(
            f"the saved dropout generator is {found} (the {backend.get(str(found), 'unknown')} "
            f"backend's), this executor draws with {name} (the {backend[name]} backend's): "
            "resume on the backend that saved the run"
        )
