"""The lower bound on arena size: the most bytes alive at any one execution order.

No placement of the blocks can use fewer bytes than are alive together at some order,
so ``max_k live(k)`` bounds every planner from below (without swapping to storage).
Planners may exceed it (fragmentation); greedy_by_size usually lands within a few
percent.
"""

from __future__ import annotations

from collections.abc import Sequence

from .planners import Block


def live_bytes(blocks: Sequence[Block], orders: int) -> list[int]:
    """Bytes of the blocks alive at each order ``0 .. orders-1`` (a difference array:
    +size at ``first``, -size after ``last``)."""
    delta = [0] * (orders + 1)
    for block in blocks:
        delta[block.first] += block.size
        delta[block.last + 1] -= block.size
    live, total = [], 0
    for k in range(orders):
        total += delta[k]
        live.append(total)
    return live


def lower_bound(blocks: Sequence[Block], orders: int) -> tuple[int, int]:
    """(the bound in bytes, the first order that reaches it)."""
    live = live_bytes(blocks, orders)
    if not live:
        return 0, 0
    peak = max(live)
    return peak, live.index(peak)
