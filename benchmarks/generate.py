"""`lara data generate [--bench NAME] ...`: scripted demonstrations in the LIBERO HDF5 schema.

    lara data generate --suite object --tasks 0,1 --episodes 20 --out data/scripted_object            # LIBERO
    lara data generate --bench simpler --tasks carrot,spoon --episodes 20 --out data/bridge_scripted  # SIMPLER

`--bench` (default libero) picks the benchmark of `lara.benchmarks.table`; every other flag belongs to that
benchmark's generator (`lara data generate --bench simpler --help`), which its folder declares (`Benchmark.generator`).
"""

from __future__ import annotations

import argparse
import sys

from lara.benchmarks.table import BENCHMARKS, DEFAULT
from lara.cli import ArgumentParser


def build_parser(bench: str = DEFAULT) -> argparse.ArgumentParser:
    """`lara data generate --bench BENCH`'s parser: --bench, then the flags of that benchmark's generator."""
    generator = BENCHMARKS[bench].load("generator")
    p = ArgumentParser(prog="lara data generate" + ("" if bench == DEFAULT else f" --bench {bench}"),
                       description=generator.__doc__.split("\n\n")[0])
    p.add_argument("--bench", choices=list(BENCHMARKS), default=DEFAULT,
                   help=f"the benchmark (default {DEFAULT}); these flags are {bench}'s: "
                        "`lara data generate --bench NAME --help` lists another's")
    generator.add_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench = ArgumentParser(prog="lara data generate", add_help=False)
    bench.add_argument("--bench", default=DEFAULT, choices=list(BENCHMARKS))
    name = bench.parse_known_args(argv)[0].bench
    return BENCHMARKS[name].load("generator").generate(build_parser(name).parse_args(argv))
