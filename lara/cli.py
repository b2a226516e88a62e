"""The `lara` command: a thin dispatcher to the subcommands' own modules.

Each subcommand lives next to the code it runs and exposes `main(argv: list[str] | None) -> int`.
Modules are imported only when their subcommand runs, so `lara serve` never imports a simulator and
`lara eval` never imports ROS.
"""

from __future__ import annotations

import difflib
import importlib
import sys

SUBCOMMANDS = {
    "train": ("lara.adapters.cli", "train a preset: pre-training, post-training or LAM refinement"),
    "eval": ("lara.benchmarks.cli", "evaluate a policy on a benchmark (libero)"),
    "data": ("lara.data.cli", "data tools: generate LIBERO demos, inspect any source, write video folders"),
    "serve": ("lara.real_robot.server", "serve a policy over openpi's websocket protocol"),
    "study": ("lara.benchmarks.study.cli", "a with/without-LARA grid of training runs and evaluations, with statistics"),
    "demo": ("lara.adapters.demo", "the main job on the embedded default: a short LARA training run on CPU"),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<7} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return f"usage: lara <command> [options]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"lara: unknown command '{name}'.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
