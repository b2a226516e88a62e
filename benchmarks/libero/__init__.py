"""LIBERO (robosuite, Franka Panda): the standard evaluation protocol (`evaluate.py`), a privileged waypoint expert
(`expert.py`) and its demonstrations (`generate.py`). `BENCHMARK` is all the command line knows of it: one row of
`lara.benchmarks.table`."""

from __future__ import annotations

import argparse

from lara.benchmarks.benchmark import Benchmark
from lara.cli import integer


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """The flags of `lara eval libero` between --policy and the ones every benchmark shares."""
    p.add_argument("--suite", required=True,
                   help="comma-separated suites: spatial, object, goal, 10, 90 (or libero_spatial, ...)")
    p.add_argument("--tasks", default=None, help="comma-separated task indices or names (default: all)")
    p.add_argument("--trials", type=integer(1), default=50, help="trials per task; trial i starts from init state i")
    p.add_argument("--allow-train-init-states", action="store_true",
                   help="run trials on init states the checkpoint's training data started from (refused otherwise); "
                        "warns and records the overlap in results.json")
    p.add_argument("--workers", type=integer(1), default=1, help="parallel worker processes, each with its own env")
    p.add_argument("--threads-per-worker", type=integer(1), default=1,
                   help="BLAS/OpenMP/llvmpipe threads in each worker (1: let the workers use the cores)")
    p.add_argument("--seed", type=integer(0, 2**31 - 1), default=7, help="seed for the env and numpy/torch in each episode")
    p.add_argument("--camera-size", type=integer(8), default=None,
                   help="render size in pixels (default: the checkpoint's training image size when its recipe.json "
                        "or config says it, else the protocol's 256; a different size warns)")
    p.add_argument("--max-steps", type=integer(1), default=None, help="override the suite's step budget (debugging)")
    p.add_argument("--obs-format", choices=("lara", "openpi-libero"), default="lara",
                   help="what a served policy (--policy ws://HOST:PORT) is sent: 'lara' (lara.policy keys, images at "
                        "the size the server announces) or 'openpi-libero' (openpi's LIBERO example element: "
                        "observation/image and observation/wrist_image upright, resized with pad to 224 px from "
                        "--camera-size renders, default 256; observation/state = eef position, axis-angle, gripper "
                        "qpos; prompt = the task's language): scores any openpi-protocol server")
    p.add_argument("--api-key", default=None,
                   help="token for a served policy that asks for one, sent as openpi's client does "
                        "('Authorization: Api-Key KEY'; lara serve --token); never written to results.json")


BENCHMARK = Benchmark(
    name="libero",
    description="Standard LIBERO evaluation protocol.",
    add_eval_options=add_eval_options,
    evaluate="lara.benchmarks.libero.evaluate:from_flags",
    episodes="lara.benchmarks.libero.evaluate:LiberoEpisodes",
    expert="lara.benchmarks.libero.expert:ScriptedExpert",
    generator="lara.benchmarks.libero.generate",
)
