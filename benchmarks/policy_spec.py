"""`--policy SPEC`, what `lara eval libero|simpler` runs: every spec `lara.policy.load_policy` reads (`checkpoint:DIR`,
`ws://HOST:PORT`, `module:factory`) plus `scripted`, the benchmark's own privileged expert.

The core names no benchmark; each benchmark names its expert in its folder (`Benchmark.expert`).
"""

from __future__ import annotations

from lara import policy as core
from lara.benchmarks.table import BENCHMARKS
from lara.policy import Policy

NAMED = ("scripted",)


def check_policy_spec(spec: str) -> None:
    """`lara.policy.check_policy_spec`, with `scripted` among the specs."""
    core.check_policy_spec(spec, named=NAMED)


def load_policy(spec: str, bench: str) -> Policy:
    """`scripted` (the benchmark's privileged expert) or any spec of `lara.policy.load_policy`."""
    return core.load_policy(spec, named={"scripted": lambda: BENCHMARKS[bench].load("expert")()})
