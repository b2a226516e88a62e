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

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara.benchmarks.execution import add_flags as add_execution_flags
from lara.cli import ArgumentParser, integer
from lara.errors import InputError
from lara.outputs import check_new

BENCHMARKS = ("libero", "simpler")


def listed(flag: str, text: str) -> list[str]:
    """A comma-separated flag's items, refusing an empty list and an item given twice (it would run twice)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    twice = sorted({item for item in items if items.count(item) > 1})
    if not items or twice:
        raise InputError(f"{flag} {text!r}: " + (f"{twice[0]!r} is given twice; name each once" if twice
                                                 else "names nothing; give a comma-separated list"))
    return items


def build_libero_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="lara eval libero", description="Standard LIBERO evaluation protocol.")
    p.add_argument("--policy", required=True, help="'scripted', 'checkpoint:DIR', 'ws://HOST:PORT' (lara serve) or 'module:factory' returning a Policy")
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
    p.add_argument("--no-video", action="store_true", help="skip the per-episode MP4s")
    p.add_argument("--out", required=True, help="output folder for results.json, success.png, videos/")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's results in --out")
    p.add_argument("--obs-format", choices=("lara", "openpi-libero"), default="lara",
                   help="what a served policy (--policy ws://HOST:PORT) is sent: 'lara' (lara.policy keys, images at "
                        "the size the server announces) or 'openpi-libero' (openpi's LIBERO example element: "
                        "observation/image and observation/wrist_image upright, resized with pad to 224 px from "
                        "--camera-size renders, default 256; observation/state = eef position, axis-angle, gripper "
                        "qpos; prompt = the task's language): scores any openpi-protocol server")
    p.add_argument("--api-key", default=None,
                   help="token for a served policy that asks for one, sent as openpi's client does "
                        "('Authorization: Api-Key KEY'; lara serve --token); never written to results.json")
    add_execution_flags(p)
    return p


def build_simpler_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="lara eval simpler",
                                description="SIMPLER's Bridge (WidowX) tasks on ManiSkill3, SimplerEnv's protocol.")
    p.add_argument("--policy", required=True, help="'scripted', 'checkpoint:DIR', 'ws://HOST:PORT' (lara serve) or 'module:factory' returning a Policy")
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
    p.add_argument("--no-video", action="store_true", help="skip the per-episode MP4s")
    p.add_argument("--out", required=True, help="output folder for results.json, success.png, videos/")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's results in --out")
    add_execution_flags(p)
    return p


def execution_args(args: argparse.Namespace) -> dict:
    return dict(execute_steps=args.execute_steps, prefetch_steps=args.prefetch_steps, ensemble=args.ensemble,
                latency_steps=args.latency_steps)


def print_holds(results: dict, steps_key: str) -> None:
    """How many steps the arm waited for a chunk (a simulated inference latency), when it did."""
    episodes = [e for task in results["tasks"] for e in task["episodes"]]
    holds, steps = sum(e["holds"] for e in episodes), sum(e[steps_key] for e in episodes)
    if holds:
        print(f"held on {holds} of {steps} steps waiting for chunks ({holds / len(episodes):.1f} per episode)")


def main_simpler(argv: list[str]) -> int:
    args = build_simpler_parser().parse_args(argv)
    check_new([Path(args.out) / "results.json"], overwrite=args.overwrite, what="evaluation")
    from lara.benchmarks.simpler.evaluate import evaluate

    results = evaluate(args.policy, listed("--tasks", args.tasks), args.out,
                       episodes=args.episodes, seeds=args.seeds, workers=args.workers, assets=args.assets,
                       image_size=args.image_size, rotation=args.rotation, max_steps=args.max_steps,
                       video=not args.no_video, threads_per_worker=args.threads_per_worker,
                       allow_train_episodes=args.allow_train_episodes, **execution_args(args))
    for task in results["tasks"]:
        low, high = task["success_ci95"]
        print(f"{task['env_id']}: {task['successes']}/{task['trials']} success (95% CI {100 * low:.1f}-"
              f"{100 * high:.1f}%), grasped {100 * task['is_src_obj_grasped_rate']:.1f}%")
    if not results["simpler_scores"]:
        print(f"stand-in table scene for {results['stand_in_stages']}: these are NOT SIMPLER scores")
    print_holds(results, "env_steps")
    print(f"average: {100 * results['average_success_rate']:.1f}%  ({results['env_steps_per_s']} env steps/s, "
          f"{results['wall_time_s']} s)  -> {args.out}/results.json")
    record_in_card(args.policy, "simpler", results, ["simpler", *argv])
    return 0


def record_in_card(policy: str, benchmark: str, results: dict, argv: list[str]) -> None:
    """Add the result to the model card of the run evaluated (`checkpoint:RUN/final/vla`), saying where."""
    from lara.benchmarks.card_rows import add_to_card

    card = add_to_card(policy, benchmark, results, argv)
    if card is not None:
        print(f"model card: {card} (this evaluation added to its table)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: lara eval {{{','.join(BENCHMARKS)}}} [options]   (lara eval libero --help: its options)\n\n"
              f"{__doc__}")
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        given = argv[0] if argv else "nothing"
        print(f"usage: lara eval {{{','.join(BENCHMARKS)}}} [options]; got {given!r}.", file=sys.stderr)
        return 2
    if argv[0] == "simpler":
        return main_simpler(argv[1:])
    args = build_libero_parser().parse_args(argv[1:])
    check_new([Path(args.out) / "results.json"], overwrite=args.overwrite, what="evaluation")
    from lara.benchmarks.libero.evaluate import evaluate

    tasks = None if args.tasks is None else listed("--tasks", args.tasks)
    # evaluate checks the policy, suites, tasks, counts and init states before any worker or output folder:
    # a bad one raises lara.errors.InputError, which `lara` ends on one line with exit 2
    results = evaluate(args.policy, listed("--suite", args.suite), args.out, tasks=tasks, trials=args.trials,
                       workers=args.workers, threads_per_worker=args.threads_per_worker, seed=args.seed,
                       camera_size=args.camera_size, max_steps=args.max_steps, video=not args.no_video,
                       allow_train_init_states=args.allow_train_init_states, obs_format=args.obs_format,
                       api_key=args.api_key, **execution_args(args))
    for task in results["tasks"]:
        print(f"{task['suite']} task {task['task_id']:2d}: {task['successes']}/{task['trials']}  {task['task_name']}")
    for suite, rate in results["suites"].items():
        print(f"{suite}: {100 * rate:.1f}%")
    print_holds(results, "steps")
    print(f"average: {100 * results['average_success_rate']:.1f}%  ({results['env_steps_per_s']} env steps/s, "
          f"{results['wall_time_s']} s)  -> {args.out}/results.json")
    record_in_card(args.policy, "libero", results, argv)
    return 0


if __name__ == "__main__":
    from lara.errors import run_command

    sys.exit(run_command("lara eval", main, sys.argv[1:]))
