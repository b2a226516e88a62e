"""The `lara` command: a thin dispatcher to the subcommands' own modules.

Each subcommand lives next to the code it runs and exposes `main(argv: list[str] | None) -> int`.
Modules are imported only when their subcommand runs, so `lara serve` never imports a simulator and
`lara eval` never imports ROS. A user error (`lara.errors.UserError`: a bad config, flag, path or data
file) ends on one line with exit 2, for every subcommand alike; `--debug` or LARA_DEBUG=1 shows its
traceback. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Callable

from lara.errors import DEBUG_ENV, DEBUG_FLAG, InputError, run_command

SUBCOMMANDS = {
    "train": ("lara.adapters.cli", "train a preset: pre-training, post-training or LAM refinement"),
    "eval": ("lara.benchmarks.cli", "evaluate a policy on a benchmark: libero or simpler"),
    "data": ("lara.data.cli", "data tools: generate LIBERO demos, inspect any source, write video folders"),
    "serve": ("lara.real_robot.server", "serve a policy over openpi's websocket protocol"),
    "probe": ("lara.benchmarks.probes.probe", "judge latent actions: action / task probes of LAMs and vision features"),
    "study": ("lara.benchmarks.study.cli", "a with/without-LARA grid of training runs and evaluations, with statistics"),
    "demo": ("lara.benchmarks.demo", "the main job on the embedded default: a short LARA training run on CPU"),
}


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type` for an integer flag within [low, high]: `--episodes 0` is refused while parsing, naming
    the flag and the range, before the command runs (tests/core/test_bad_numbers.py walks every such flag)."""
    return _bounded(int, "an integer", low, high)


def number(low: float | None = None, high: float | None = None, *, above: float | None = None) -> Callable[[str], float]:
    """An argparse `type` for a finite float flag within [low, high] (or > `above`): NaN and inf are refused."""
    return _bounded(float, "a finite number", low, high, above)


def _bounded(kind, what: str, low, high, above=None):
    limits = [f">= {low}" if low is not None else "", f"> {above}" if above is not None else "",
              f"<= {high}" if high is not None else ""]
    expected = f"{what} {' and '.join(x for x in limits if x)}".strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (value != value or value in (float("inf"), float("-inf")) or (low is not None and value < low)
                or (high is not None and value > high) or (above is not None and value <= above)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    parse.bounds = (kind, low, high, above)  # what tests/core/test_bad_numbers.py reads
    return parse


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every `lara` command: a bad flag (unknown, missing, of the wrong type, or refused by the
    command's own checks through `parser.error`) is an InputError, so it ends on the same one line
    (`lara <command>: error: ...`, exit 2) as every other user error, not argparse's usage block."""

    def error(self, message: str):
        raise InputError(message)


def _usage() -> str:
    rows = "\n".join(f"  {name:<7} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return (f"usage: lara <command> [options] [{DEBUG_FLAG}]\n\ncommands:\n{rows}\n\n"
            f"A bad input ends on one line with exit 2; {DEBUG_FLAG} (or {DEBUG_ENV}=1) shows its traceback.\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [DEBUG_FLAG]:  # `lara --debug train ...` as well as `lara train ... --debug`
        argv = argv[1:] + argv[:1]
    if not argv or argv[0] in ("-h", "--help", DEBUG_FLAG):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"lara: unknown command '{name}'.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return run_command(f"lara {name}", module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
