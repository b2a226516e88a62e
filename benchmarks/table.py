"""Every benchmark `lara eval` and `lara data generate` know, one row each; what a row holds is its folder's own
declaration (`lara.benchmarks.benchmark.Benchmark`). Adding a benchmark is its folder and one row here."""

from __future__ import annotations

from lara.benchmarks import libero, simpler
from lara.benchmarks.benchmark import Benchmark

BENCHMARKS: dict[str, Benchmark] = {
    "libero": libero.BENCHMARK,  # robosuite, Franka Panda: the standard protocol and a waypoint expert
    "simpler": simpler.BENCHMARK,  # ManiSkill3, WidowX: SIMPLER's Bridge tasks
}
DEFAULT = "libero"  # `lara data generate` without --bench
