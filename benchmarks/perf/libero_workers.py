"""LIBERO evaluation throughput with 1 and 2 worker processes, measured side by side.

    python -m lara.benchmarks.perf.libero_workers [--repeats 3] [--trials 4] [--max-steps 60] [--camera-size 128]

Runs the same evaluation (the scripted expert on one libero_object task, rendering both cameras,
no videos, every episode cut at `--max-steps` so that each run does the same work) with 1 and with 2
workers, interleaved (1, 2, then 2, 1, ...) so that a load change on a shared machine hits both.
Prints env steps/s for each run and the medians, the ratio 2 vs 1, and the load average before and
after; writes them to OUT/libero_workers.json. Two rates per run: `wall` = env steps / wall time of the
whole evaluation (worker start-up and env creation included), `steady` = the sum over workers of
env steps / seconds spent in episodes (start-up excluded: what long evaluations see). `cpu share` =
the workers' CPU seconds / wall seconds in episodes: well below 1, other processes had the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from lara.benchmarks.libero.evaluate import evaluate


def steady_rate(results: dict) -> float:
    """Sum over workers of (env steps / episode seconds) of that worker."""
    per_worker: dict[int, list[float]] = {}
    for task in results["tasks"]:
        for ep in task["episodes"]:
            steps, seconds = per_worker.setdefault(ep["worker_pid"], [0.0, 0.0])
            per_worker[ep["worker_pid"]] = [steps + ep["env_steps"], seconds + ep["seconds"]]
    return sum(steps / seconds for steps, seconds in per_worker.values() if seconds > 0)


def cpu_share(results: dict) -> float:
    """CPU seconds / wall seconds of the episodes, per worker: ~1 when each worker had a core to itself."""
    episodes = [ep for task in results["tasks"] for ep in task["episodes"]]
    return sum(ep["cpu_seconds"] for ep in episodes) / max(sum(ep["seconds"] for ep in episodes), 1e-9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="object", help="LIBERO suite")
    p.add_argument("--task", default="0", help="task index or name")
    p.add_argument("--trials", type=int, default=4, help="episodes per run (init states 0..trials-1)")
    p.add_argument("--max-steps", type=int, default=60, help="steps per episode (after the 10 wait steps)")
    p.add_argument("--camera-size", type=int, default=128, help="render size of both cameras")
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count, interleaved")
    p.add_argument("--threads-per-worker", type=int, default=1, help="BLAS/OpenMP/llvmpipe threads per worker")
    p.add_argument("--out", default="runs/perf_libero_workers", help="output folder")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    load_before = os.getloadavg()
    runs = []
    for repeat in range(args.repeats):
        for workers in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            results = evaluate("scripted", [args.suite], Path(args.out) / f"repeat{repeat}_workers{workers}",
                               tasks=[args.task], trials=args.trials, workers=workers, camera_size=args.camera_size,
                               max_steps=args.max_steps, video=False, progress=False,
                               threads_per_worker=args.threads_per_worker)
            run = {"repeat": repeat, "workers": workers, "env_steps": results["env_steps"],
                   "wall_s": results["wall_time_s"], "wall_steps_per_s": results["env_steps_per_s"],
                   "steady_steps_per_s": round(steady_rate(results), 2),
                   "cpu_share": round(cpu_share(results), 2), "worker_startup_s": results["worker_startup_s"],
                   "env_build_s": results["env_build_s"],
                   "load_avg_1min": round(os.getloadavg()[0], 2)}
            runs.append(run)
            print(f"repeat {repeat} workers {workers}: {run['env_steps']} env steps in {run['wall_s']} s, "
                  f"wall {run['wall_steps_per_s']} steps/s, steady {run['steady_steps_per_s']} steps/s, "
                  f"cpu share {run['cpu_share']}, "
                  f"worker start-up {run['worker_startup_s']} s, load {run['load_avg_1min']}", flush=True)
    summary = {"cpus": os.cpu_count(), "threads_per_worker": args.threads_per_worker, "camera_size": args.camera_size,
               "load_avg_before": [round(x, 2) for x in load_before],
               "load_avg_after": [round(x, 2) for x in os.getloadavg()], "runs": runs}
    for rate in ("wall_steps_per_s", "steady_steps_per_s"):
        medians = {w: statistics.median(r[rate] for r in runs if r["workers"] == w) for w in (1, 2)}
        summary[rate] = {"1": medians[1], "2": medians[2], "ratio": round(medians[2] / medians[1], 2)}
        print(f"{rate}: 1 worker {medians[1]:.2f}, 2 workers {medians[2]:.2f}, ratio {medians[2] / medians[1]:.2f}x")
    print(f"cpus {summary['cpus']}, load average before {summary['load_avg_before']}, "
          f"after {summary['load_avg_after']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "libero_workers.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
