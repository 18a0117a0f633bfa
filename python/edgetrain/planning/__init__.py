"""Execution-order analysis and memory planning (``spec/planning.md``, ``spec/sharing.md``).

``plan_memory(program, planner)`` gives a :class:`MemoryPlan`; ``ArenaStore`` runs a
program inside it; ``check_plan`` verifies any plan independently.
"""

from __future__ import annotations

from .arena import ArenaStore
from .bounds import live_bytes, lower_bound
from .checker import Placement, PlanCheckError, check_layout, check_plan
from .lifetimes import Lifespan, TensorUsage, analyse_usage
from .plan import BufferPlan, MemoryPlan, StepPlan, TensorPlan, plan_memory
from .planners import ALIGNMENT, PLANNERS, Block, Planner, align, arena_size, get_planner
from .sharing import Buffer, Share, SharingRule, find_sharing, group_buffers

__all__ = [
    "ALIGNMENT",
    "PLANNERS",
    "ArenaStore",
    "Block",
    "Buffer",
    "BufferPlan",
    "Lifespan",
    "MemoryPlan",
    "Placement",
    "PlanCheckError",
    "Planner",
    "Share",
    "SharingRule",
    "StepPlan",
    "TensorPlan",
    "TensorUsage",
    "align",
    "analyse_usage",
    "arena_size",
    "check_layout",
    "check_plan",
    "find_sharing",
    "get_planner",
    "group_buffers",
    "live_bytes",
    "lower_bound",
    "plan_memory",
]
