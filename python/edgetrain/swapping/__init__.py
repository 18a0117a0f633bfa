"""The Python swap runtime: a preallocated, mapped swap file and a store that carries out
a swap schedule (``spec/swapping.md``; the schedule itself is ``planning/swap.py``)."""

from __future__ import annotations

from .file import SwapFile, default_swap_dir
from .store import SwapStore, SwapTraffic

__all__ = ["SwapFile", "SwapStore", "SwapTraffic", "default_swap_dir"]
