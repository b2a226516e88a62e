"""What a benchmark declares about itself, in its own folder: `BENCHMARK = Benchmark(...)` in
`benchmarks/<name>/__init__.py`. `lara eval` and `lara data generate` build their flags and dispatch from these
declarations alone, through the one table `lara.benchmarks.table.BENCHMARKS`. Adding a benchmark is one folder and
one row.

    name                 `lara eval NAME`, `lara data generate --bench NAME`, the model card's benchmark column
    description          the first line of `lara eval NAME --help`
    add_eval_options     adds its own flags of `lara eval NAME` to a parser; `--policy` comes before them, and
                         `--no-video`, `--out`, `--overwrite` and the chunk-execution flags after (`benchmarks/cli.py`)
    evaluate             'module:function': the parsed flags -> the results written to OUT/results.json, printing its
                         own per-task lines on the way (the average line and the model card follow: `benchmarks/cli.py`)
    episodes             'module:Class': its env adapter for the one rollout loop (`lara.benchmarks.rollout` lists what
                         an adapter provides); its `evaluate` builds one with the run's settings
    expert               'module:Class': its privileged scripted expert, the policy `--policy scripted` makes
                         (`lara.benchmarks.policy_spec.load_policy`)
    generator            module of `lara data generate --bench NAME`: `add_options(parser)` adds its flags and
                         `generate(args) -> exit code` runs it; its docstring's first paragraph describes it

The names are strings so that reading the table imports no simulator: `lara eval --help` stays instant, and a machine
with only one benchmark's extra installed still lists and runs that one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, as its folder declares it (see the module docstring)."""

    name: str
    description: str
    add_eval_options: Callable[[argparse.ArgumentParser], None]
    evaluate: str
    episodes: str
    expert: str
    generator: str

    def load(self, field: str) -> Any:
        """The object a 'module:name' field names, or the module a `generator` names (imported on first use)."""
        module, _, name = getattr(self, field).partition(":")
        return getattr(import_module(module), name) if name else import_module(module)
