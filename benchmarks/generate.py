"""`lara data generate [--bench libero|simpler] ...`: scripted demonstrations in the LIBERO HDF5 schema.

    lara data generate --suite object --tasks 0,1 --episodes 20 --out data/scripted_object            # LIBERO
    lara data generate --bench simpler --tasks carrot,spoon --episodes 20 --out data/bridge_scripted  # SIMPLER

`--bench` (default libero) picks the benchmark; every other flag belongs to that benchmark's generator
(`lara data generate --bench simpler --help`).
"""

from __future__ import annotations

import importlib
import sys

GENERATORS = {"libero": "lara.benchmarks.libero.generate", "simpler": "lara.benchmarks.simpler.generate"}


def main(argv: list[str] | None = None) -> int:
    from lara.cli import ArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ArgumentParser(prog="lara data generate", add_help=False)
    parser.add_argument("--bench", default="libero", choices=list(GENERATORS))
    known, _ = parser.parse_known_args(argv)
    return importlib.import_module(GENERATORS[known.bench]).main(argv)  # its parser documents --bench too
