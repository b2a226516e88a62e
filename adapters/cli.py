"""`lara train <preset> [key=value ...]`: run a recipe from a preset in adapters/configs (or a YAML path).

    lara train --list
    lara train posttrain_token_vla data.paths=[data/scripted_object] train.steps=200
    lara train posttrain_token_vla baseline=true output_dir=runs/baseline    # the same recipe without LARA
    lara train latent_pretrain_token_vla latent.lam_from=runs/pre/final/lara   # LAPA: predict the LAM's codes
    accelerate launch --num_processes 2 -m lara.adapters.cli posttrain_pi0 ...   # DDP

Re-running a command resumes its output_dir; a config that differs in a training-relevant field is refused
(adapters/run_folder.py), and a finished run's RUN/final is never rewritten. A bad config ends on one line
with exit 2 (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

import yaml

from .config import PRESETS_DIR, available_presets, load_recipe
from .recipes import RECIPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lara train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", help=f"a preset name ({PRESETS_DIR}) or a .yaml path")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)
    if args.list or args.preset is None:
        print("presets:\n" + "\n".join(f"  {name}" for name in available_presets()))
        return 0
    cfg = load_recipe(args.preset, args.overrides)  # a bad config raises lara.errors.InputError: one line, exit 2
    if args.print_config:
        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        return 0
    try:
        result = import_module(RECIPES[cfg.recipe]).run(cfg)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a 65-line traceback; the run resumes from its last checkpoint
        print(f"lara train: interrupted; re-run the same command to resume {cfg.output_dir} from its last checkpoint",
              file=sys.stderr)
        return 130
    print({k: str(v) for k, v in result.items()})
    return 0


if __name__ == "__main__":  # `accelerate launch -m lara.adapters.cli` ends user errors on one line too
    from lara.errors import run_command

    raise SystemExit(run_command("lara train", main, sys.argv[1:]))
