"""`lara data <command>`: dispatch to the data tools, each a module with `main(argv) -> int`.

    lara data generate --suite object --episodes 20 --out data/scripted_object   # scripted LIBERO demos
    lara data generate --bench simpler --tasks carrot --out data/bridge_scripted  # scripted SIMPLER (WidowX) demos
    lara data inspect data/videos --pairs 4 --sheet pairs.png                    # what the LAM will be fed
    lara data videos data/scripted_object data/videos                            # demos -> an mp4 folder
    lara data convert data/scripted_object --to lerobot data/scripted_lerobot    # LIBERO <-> LeRobot v3.0
"""

from __future__ import annotations

import difflib
import importlib
import sys

from lara.errors import run_command  # `lara data convert: error: ...`, exit 2, like every command

# name -> (module, help)
COMMANDS = {
    "generate": ("lara.benchmarks.generate", "scripted LIBERO (or --bench simpler) demos in the LIBERO HDF5 schema"),
    "inspect": ("lara.data.inspect", "episodes, frames, fps, cameras, tasks, statistics, a PNG of pairs"),
    "videos": ("lara.data.video", "write a source's episodes as an mp4 folder with captions"),
    "convert": ("lara.data.convert", "LIBERO HDF5 demos -> a LeRobot v3.0 dataset (--to lerobot) and back"),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: lara data <command> [options]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"lara data: unknown command '{name}'.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    return run_command(f"lara data {name}", importlib.import_module(COMMANDS[name][0]).main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
