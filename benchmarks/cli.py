"""`lara eval <benchmark>`: evaluate a policy on a simulated benchmark.

    lara eval libero --policy scripted --suite object --tasks 0,1 --trials 50 --workers 2 --out runs/eval

--policy is `scripted` (the privileged LIBERO expert), `checkpoint:DIR` (a saved VLA) or `module:factory` / `file.py:factory`, a
callable returning a `lara.policy.Policy`. A `checkpoint:RUN/final/vla` is refused on init states its training
data started from (`--allow-train-init-states` runs it anyway) and rendered at its training image size.
"""

from __future__ import annotations

import argparse
import sys

BENCHMARKS = ("libero",)


def build_libero_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara eval libero", description="Standard LIBERO evaluation protocol.")
    p.add_argument("--policy", required=True, help="'scripted', 'checkpoint:DIR' or 'module:factory' returning a Policy")
    p.add_argument("--suite", required=True,
                   help="comma-separated suites: spatial, object, goal, 10, 90 (or libero_spatial, ...)")
    p.add_argument("--tasks", default=None, help="comma-separated task indices or names (default: all)")
    p.add_argument("--trials", type=int, default=50, help="trials per task; trial i starts from init state i")
    p.add_argument("--allow-train-init-states", action="store_true",
                   help="run trials on init states the checkpoint's training data started from (refused otherwise); "
                        "warns and records the overlap in results.json")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes, each with its own env")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="BLAS/OpenMP/llvmpipe threads in each worker (1: let the workers use the cores)")
    p.add_argument("--seed", type=int, default=7, help="seed for the env and numpy/torch in each episode")
    p.add_argument("--camera-size", type=int, default=None,
                   help="render size in pixels (default: the checkpoint's training image size when its recipe.json "
                        "or config says it, else the protocol's 256; a different size warns)")
    p.add_argument("--max-steps", type=int, default=None, help="override the suite's step budget (debugging)")
    p.add_argument("--no-video", action="store_true", help="skip the per-episode MP4s")
    p.add_argument("--out", required=True, help="output folder for results.json, success.png, videos/")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        given = argv[0] if argv else "nothing"
        print(f"usage: lara eval {{{','.join(BENCHMARKS)}}} [options]; got {given!r}.", file=sys.stderr)
        return 2
    args = build_libero_parser().parse_args(argv[1:])
    from lara.benchmarks.libero.evaluate import check_policy_spec, evaluate
    from lara.benchmarks.libero.protocol import TrainInitStateOverlap

    tasks = None if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:  # before any worker spawns: one line, not a traceback from a broken pool
        check_policy_spec(args.policy)
    except (ValueError, FileNotFoundError) as error:
        print(f"lara eval libero: error: {error}", file=sys.stderr)
        return 2
    try:
        results = evaluate(args.policy, args.suite.split(","), args.out, tasks=tasks, trials=args.trials,
                           workers=args.workers, threads_per_worker=args.threads_per_worker, seed=args.seed,
                           camera_size=args.camera_size, max_steps=args.max_steps, video=not args.no_video,
                           allow_train_init_states=args.allow_train_init_states)
    except TrainInitStateOverlap as error:
        print(f"lara eval libero: error: {error}", file=sys.stderr)
        return 2
    for task in results["tasks"]:
        print(f"{task['suite']} task {task['task_id']:2d}: {task['successes']}/{task['trials']}  {task['task_name']}")
    for suite, rate in results["suites"].items():
        print(f"{suite}: {100 * rate:.1f}%")
    print(f"average: {100 * results['average_success_rate']:.1f}%  ({results['env_steps_per_s']} env steps/s, "
          f"{results['wall_time_s']} s)  -> {args.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
