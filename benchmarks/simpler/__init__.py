"""SIMPLER's Bridge (WidowX) tasks on ManiSkill3: SimplerEnv's evaluation protocol (`evaluate.py`), a privileged
scripted expert (`expert.py`) and its demonstrations (`generate.py`). `BENCHMARK` is all the command line knows of
it: one row of `lara.benchmarks.table`."""

from __future__ import annotations

import argparse

from lara.benchmarks.benchmark import Benchmark
from lara.cli import integer


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """The flags of `lara eval simpler` between --policy and the ones every benchmark shares."""
    p.add_argument("--tasks", default="carrot,spoon,stack,eggplant",
                   help="comma-separated: carrot, spoon, stack, eggplant or their env ids (default: all four)")
    p.add_argument("--episodes", type=integer(1), default=24, help="episodes per task and seed; episode i is episode_id i")
    p.add_argument("--seeds", type=integer(1), default=3, help="seeds 0..N-1, each running every episode")
    p.add_argument("--assets", default=None, help="ManiSkill asset folder (default: $MS_ASSET_DIR, else ~/.maniskill)")
    p.add_argument("--workers", type=integer(1), default=1, help="parallel worker processes, each with its own env")
    p.add_argument("--threads-per-worker", type=integer(1), default=1, help="BLAS/OpenMP/lavapipe threads in each worker")
    p.add_argument("--image-size", type=integer(8), default=None,
                   help="policy image size (default: the checkpoint's training size, else 256)")
    p.add_argument("--rotation", default="simpler", choices=("simpler", "exact"),
                   help="how the policy's roll-pitch-yaw delta becomes the controller's input (see "
                        "lara.benchmarks.simpler.env)")
    p.add_argument("--allow-train-episodes", action="store_true",
                   help="run episodes whose configurations the checkpoint's training data started from (refused "
                        "otherwise: `lara data generate --bench simpler --placements simpler`); recorded in results.json")
    p.add_argument("--max-steps", type=integer(1), default=None, help="override the task's 60/120 steps (debugging)")


BENCHMARK = Benchmark(
    name="simpler",
    description="SIMPLER's Bridge (WidowX) tasks on ManiSkill3, SimplerEnv's protocol.",
    add_eval_options=add_eval_options,
    evaluate="lara.benchmarks.simpler.evaluate:from_flags",
    episodes="lara.benchmarks.simpler.evaluate:SimplerEpisodes",
    expert="lara.benchmarks.simpler.expert:ScriptedWidowXExpert",
    generator="lara.benchmarks.simpler.generate",
)
