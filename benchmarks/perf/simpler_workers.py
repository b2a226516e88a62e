"""SIMPLER evaluation throughput with 1 and 2 worker processes, measured side by side.

    python -m lara.benchmarks.perf.simpler_workers --assets DIR [--stand-in PARTIAL] [--repeats 2] [--episodes 6]

Runs the same evaluation (the scripted WidowX expert on the carrot task, 640x480 rendering resized to 128 px,
no videos, every episode the task's full 60 steps) with 1 and with 2 workers, interleaved (1, 2, then 2, 1)
so that a load change on a shared machine hits both. `--stand-in PARTIAL` builds the asset folder at DIR from
a partial copy (e.g. ../shared/simpler_assets) with the stand-in table: the speed of the real scene may differ.
Two rates per run: `wall` = env steps / wall time of the whole evaluation (worker start-up and the ~15 s env
creation included) and `steady` = the sum over workers of env steps / seconds spent in episodes (what long
evaluations see; the headline ratio). Writes OUT/simpler_workers.json. Last line:
`simpler_workers ratio=<r>x one=<steps/s> two=<steps/s>` (steady rates).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from lara.benchmarks.perf.libero_workers import cpu_share, steady_rate


def main(argv: list[str] | None = None) -> int:
    from lara.benchmarks.simpler.assets import stand_in_asset_dir
    from lara.benchmarks.simpler.evaluate import evaluate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", required=True, help="ManiSkill asset folder (built there with --stand-in)")
    p.add_argument("--stand-in", default=None, help="partial asset copy to link, with a stand-in table, into --assets")
    p.add_argument("--task", default="carrot", help="carrot or spoon (the scripted expert's tasks)")
    p.add_argument("--episodes", type=int, default=6, help="episodes per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per worker count, interleaved")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--out", default="runs/perf_simpler_workers")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.stand_in:
        stand_in_asset_dir(Path(args.stand_in), Path(args.assets))

    load_before = os.getloadavg()
    runs = []
    for repeat in range(args.repeats):
        for workers in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            results = evaluate("scripted", [args.task], Path(args.out) / f"repeat{repeat}_workers{workers}",
                               episodes=args.episodes, seeds=1, workers=workers, assets=args.assets,
                               image_size=args.image_size, video=False, progress=False)
            run = {"repeat": repeat, "workers": workers, "env_steps": results["env_steps"],
                   "wall_s": results["wall_time_s"], "wall_steps_per_s": results["env_steps_per_s"],
                   "steady_steps_per_s": round(steady_rate(results), 2), "cpu_share": round(cpu_share(results), 2),
                   "successes": results["tasks"][0]["successes"], "worker_startup_s": results["worker_startup_s"],
                   "load_avg_1min": round(os.getloadavg()[0], 2)}
            runs.append(run)
            print(f"repeat {repeat} workers {workers}: {run['env_steps']} env steps in {run['wall_s']} s, wall "
                  f"{run['wall_steps_per_s']} steps/s, steady {run['steady_steps_per_s']} steps/s, cpu share "
                  f"{run['cpu_share']}, {run['successes']}/{args.episodes} solved, load {run['load_avg_1min']}",
                  flush=True)
    summary = {"cpus": os.cpu_count(), "task": args.task, "image_size": args.image_size, "stand_in": bool(args.stand_in),
               "load_avg_before": [round(x, 2) for x in load_before],
               "load_avg_after": [round(x, 2) for x in os.getloadavg()], "runs": runs}
    for rate in ("wall_steps_per_s", "steady_steps_per_s"):
        medians = {w: statistics.median(r[rate] for r in runs if r["workers"] == w) for w in (1, 2)}
        summary[rate] = {"1": medians[1], "2": medians[2], "ratio": round(medians[2] / medians[1], 2)}
        print(f"{rate}: 1 worker {medians[1]:.2f}, 2 workers {medians[2]:.2f}, ratio {medians[2] / medians[1]:.2f}x")
    print(f"cpus {summary['cpus']}, load average before {summary['load_avg_before']}, after {summary['load_avg_after']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "simpler_workers.json").write_text(json.dumps(summary, indent=2))
    steady = summary["steady_steps_per_s"]
    print(f"simpler_workers ratio={steady['ratio']}x one={steady['1']:.2f} two={steady['2']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
