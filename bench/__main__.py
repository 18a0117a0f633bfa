"""``python -m bench [NAME] [--json FILE] [--workloads W ...]``: run one benchmark, or all
of them when no NAME is given (what ``make bench`` does).

A benchmark is a module with ``add_arguments(parser)`` and ``run(workloads, args) -> data``
(it prints its own table and returns JSON-ready data), registered in ``BENCHMARKS``.
``speed``'s data is the list of rows the product issue asks for (``workload``,
``framework``, ``batch``, ``threads``, ``step_time_s``, ``peak_memory_growth_bytes``).
``--json`` writes that data; with no NAME it writes ``{name: data}`` for every benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgetrainError

from . import backends, planner, speed, swap
from .workloads import WORKLOADS, Workload, select


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: how it adds its options and how it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[list[Workload], argparse.Namespace], Any]


#: every benchmark, in the order ``python -m bench`` runs them
BENCHMARKS: dict[str, Benchmark] = {
    "planner": Benchmark(
        "planner",
        "arena bytes of every planner against the lower bound and the naive total",
        planner.add_arguments,
        planner.run,
    ),
    "backends": Benchmark(
        "backends",
        "training-step time of the python and rust backends",
        backends.add_arguments,
        backends.run,
    ),
    "speed": Benchmark(
        "speed",
        "step time and peak-memory growth against PyTorch, each run in its own process",
        speed.add_arguments,
        speed.run,
    ),
    "swap": Benchmark(
        "swap",
        "training under a memory budget (50/25/10% of the plan): peak RSS, step time, bytes moved",
        swap.add_arguments,
        swap.run,
    ),
}


def _shared_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--json`` and ``--workloads``, accepted before or after the benchmark name (the
    subcommand's copies default to SUPPRESS so they never hide the top-level values)."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--json", type=Path, metavar="FILE", default=default, help="write results")
    parser.add_argument(
        "--workloads",
        nargs="+",
        metavar="W",
        default=default,
        help=f"workloads to run ({', '.join(w.name for w in WORKLOADS)}, or a model name)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run edgetrain's benchmarks: the one named, or all of them.",
    )
    _shared_options(parser, top=True)
    sub = parser.add_subparsers(dest="benchmark", metavar="benchmark")
    for bench in BENCHMARKS.values():
        child = sub.add_parser(bench.name, help=bench.help, description=bench.help)
        _shared_options(child, top=False)
        bench.add_arguments(child)
    return parser


def _arguments(
    parser: argparse.ArgumentParser, bench: Benchmark, args: argparse.Namespace
) -> argparse.Namespace:
    """``args`` for ``bench``: as given when it was named, else its own defaults (a
    benchmark's options are parsed only when it is named) with the shared options."""
    if args.benchmark:
        return args
    own = parser.parse_args([bench.name])
    own.json, own.workloads = args.json, args.workloads
    return own


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = [BENCHMARKS[args.benchmark]] if args.benchmark else list(BENCHMARKS.values())
    try:
        workloads = select(args.workloads)
        data = {bench.name: bench.run(workloads, _arguments(parser, bench, args)) for bench in chosen}
        if args.json is not None:
            out = data[args.benchmark] if args.benchmark else data
            args.json.write_text(json.dumps(out, indent=1) + "\n")
            print(f"wrote {args.json}")
    except (EdgetrainError, OSError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
