"""edgetrain's benchmarks: ``python -m bench`` (all of them) or ``python -m bench NAME``.

Each benchmark is a module registered in ``bench/__main__.py`` (``planner`` today); the
standard workloads they share are in :mod:`bench.workloads`. Benchmarks are not tests: they
print tables and can write JSON (``--json``), and their targets are reported, not asserted.
"""
