"""Execution-order analysis and memory planning (``spec/planning.md``, ``spec/sharing.md``).

``plan_memory(program, planner)`` gives a :class:`MemoryPlan`; ``ArenaStore`` runs a
program inside it; ``check_plan`` verifies any plan independently. ``plan_swap`` gives a
:class:`SwapSchedule` (``spec/swapping.md``), ``check_swap`` verifies it.
"""

from __future__ import annotations

from .arena import ArenaStore
from .bounds import live_bytes, lower_bound
from .checker import Placement, PlanCheckError, check_layout, check_plan
from .lifetimes import Lifespan, TensorUsage, analyse_usage
from .plan import BufferPlan, MemoryPlan, StepPlan, TensorPlan, plan_memory
from .planners import ALIGNMENT, PLANNERS, Block, Planner, align, arena_size, get_planner
from .sharing import Buffer, Share, SharingRule, find_sharing, group_buffers
from .swap import Exit, Segment, SwapSchedule, SwapSlot, plan_swap, swap_candidates
from .swap_check import SwapCheckError, check_swap

__all__ = [
    "ALIGNMENT",
    "PLANNERS",
    "ArenaStore",
    "Block",
    "Buffer",
    "BufferPlan",
    "Exit",
    "Lifespan",
    "MemoryPlan",
    "Placement",
    "PlanCheckError",
    "Planner",
    "Segment",
    "Share",
    "SharingRule",
    "StepPlan",
    "SwapCheckError",
    "SwapSchedule",
    "SwapSlot",
    "TensorPlan",
    "TensorUsage",
    "align",
    "analyse_usage",
    "arena_size",
    "check_layout",
    "check_plan",
    "check_swap",
    "find_sharing",
    "get_planner",
    "group_buffers",
    "live_bytes",
    "lower_bound",
    "plan_memory",
    "plan_swap",
    "swap_candidates",
]
