"""`lara eval <benchmark>`: evaluate a policy on a simulated benchmark.

    lara eval libero --policy scripted --suite object --tasks 0,1 --trials 50 --workers 2 --out runs/eval
    lara eval simpler --policy scripted --tasks carrot,spoon --episodes 24 --seeds 3 --workers 2 --out runs/eval
    lara eval libero ... --execute-steps 8 --prefetch-steps 3 --latency-steps 2   # the ROS node's chunk strategies
    lara eval libero --policy ws://HOST:PORT --obs-format openpi-libero --execute-steps 5 ...   # any openpi server

--policy is `scripted` (the privileged LIBERO / WidowX expert), `checkpoint:DIR` (a saved VLA), `ws://HOST:PORT` (a
policy served by `lara serve`, e.g. on a GPU machine, or with `--obs-format openpi-libero` any openpi-protocol server,
sent what openpi's LIBERO client sends) or `module:factory` / `file.py:factory`, a callable returning a
`lara.policy.Policy`. A `checkpoint:RUN/final/vla` is refused on init states its training
data started from (`--allow-train-init-states` runs it anyway) and rendered at its training image size, and its result
is added to the run's model card, RUN/final/README.md (`lara.benchmarks.card_rows`).
"""
# (this docstring is `lara eval --help`.) The benchmarks, their own flags and what runs them come from one table,
# `lara.benchmarks.table`, whose rows are what each benchmark's folder declares (`lara.benchmarks.benchmark`).

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara.benchmarks.execution import add_flags as add_execution_flags
from lara.benchmarks.table import BENCHMARKS
from lara.cli import ArgumentParser
from lara.errors import InputError
from lara.outputs import check_new

POLICY_HELP = "'scripted', 'checkpoint:DIR', 'ws://HOST:PORT' (lara serve) or 'module:factory' returning a Policy"


def listed(flag: str, text: str) -> list[str]:
    """A comma-separated flag's items, refusing an empty list and an item given twice (it would run twice)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    twice = sorted({item for item in items if items.count(item) > 1})
    if not items or twice:
        raise InputError(f"{flag} {text!r}: " + (f"{twice[0]!r} is given twice; name each once" if twice
                                                 else "names nothing; give a comma-separated list"))
    return items


def build_parser(name: str) -> argparse.ArgumentParser:
    """`lara eval NAME`'s parser: --policy, the benchmark's own flags (`Benchmark.add_eval_options`), then the flags
    every benchmark shares."""
    benchmark = BENCHMARKS[name]
    p = ArgumentParser(prog=f"lara eval {name}", description=benchmark.description)
    p.add_argument("--policy", required=True, help=POLICY_HELP)
    benchmark.add_eval_options(p)
    p.add_argument("--no-video", action="store_true", help="skip the per-episode MP4s")
    p.add_argument("--out", required=True, help="output folder for results.json, success.png, videos/")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's results in --out")
    add_execution_flags(p)
    return p


def record_in_card(policy: str, benchmark: str, results: dict, argv: list[str]) -> None:
    """Add the result to the model card of the run evaluated (`checkpoint:RUN/final/vla`), saying where."""
    from lara.benchmarks.card_rows import add_to_card

    card = add_to_card(policy, benchmark, results, argv)
    if card is not None:
        print(f"model card: {card} (this evaluation added to its table)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: lara eval {{{','.join(BENCHMARKS)}}} [options]"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}   (lara eval {next(iter(BENCHMARKS))} --help: its options)\n\n{__doc__}")
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        given = argv[0] if argv else "nothing"
        print(f"{usage}; got {given!r}.", file=sys.stderr)
        return 2
    name, benchmark = argv[0], BENCHMARKS[argv[0]]
    args = build_parser(name).parse_args(argv[1:])
    check_new([Path(args.out) / "results.json"], overwrite=args.overwrite, what="evaluation")
    # the benchmark checks the policy, tasks, counts and its protocol before any worker or output folder: a bad
    # one raises lara.errors.InputError, which `lara` ends on one line with exit 2
    results = benchmark.load("evaluate")(args)
    print(f"average: {100 * results['average_success_rate']:.1f}%  ({results['env_steps_per_s']} env steps/s, "
          f"{results['wall_time_s']} s)  -> {args.out}/results.json")
    record_in_card(args.policy, name, results, argv)
    return 0


if __name__ == "__main__":
    from lara.errors import run_command

    sys.exit(run_command("lara eval", main, sys.argv[1:]))
