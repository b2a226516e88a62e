"""`--policy SPEC`, what `lara eval libero|simpler` runs: every spec `lara.policy.load_policy` reads (`checkpoint:DIR`,
`ws://HOST:PORT`, `module:factory`) plus `scripted`, the benchmark's own privileged expert.

The core names no benchmark; the benchmarks name their experts here.
"""

from __future__ import annotations

import importlib

from lara import policy as core
from lara.policy import Policy

SCRIPTED = {"libero": ("lara.benchmarks.libero.expert", "ScriptedExpert"),  # privileged experts, per benchmark
            "simpler": ("lara.benchmarks.simpler.expert", "ScriptedWidowXExpert")}
NAMED = ("scripted",)


def check_policy_spec(spec: str) -> None:
    """`lara.policy.check_policy_spec`, with `scripted` among the specs."""
    core.check_policy_spec(spec, named=NAMED)


def load_policy(spec: str, bench: str = "libero") -> Policy:
    """`scripted` (the benchmark's privileged expert) or any spec of `lara.policy.load_policy`."""
    module, name = SCRIPTED[bench]
    return core.load_policy(spec, named={"scripted": lambda: getattr(importlib.import_module(module), name)()})


def load_simpler_policy(spec: str) -> Policy:
    """`load_policy` for SIMPLER: `scripted` is the privileged WidowX expert."""
    return load_policy(spec, bench="simpler")
