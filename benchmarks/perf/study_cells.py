"""How to run a study's cells on this machine: one cell at a time with 2 threads, or two cells at once with 1 each.

    python -m lara.benchmarks.perf.study_cells --data data/ref_object64
    python -m lara.benchmarks.perf.study_cells --data data/ref_object64 --steps 200 --trials 3

A study cell is `lara train` then `lara eval libero` (benchmarks/study/cells.py). This runs both phases of the
reference recipe as the study runs them, shortened, in the two layouts side by side in one run:
- `one`: one training with OMP_NUM_THREADS=2, then one evaluation with 2 worker processes of 2 threads each
  (the layout the earlier studies used: workers 1, eval_workers 2, threads 2);
- `two`: two trainings at once with 1 thread each (different seeds), then two evaluations at once with 1 worker
  of 1 thread each (workers 2, eval_workers 1, threads 1).
Training: the trainer's own `samples_per_s` over the joint steps (metrics.jsonl; the LAM warm-up and start-up are
left out: `--warmup` steps of it run first), summed over the processes running at once. Evaluation: env steps per
second in episodes (worker start-up and env creation left out), summed likewise; every episode cut at
`--max-steps` so that all runs do the same work. The layouts alternate (one, two, two, one, ...) over `--rounds`.
Last lines: each phase's rate per layout (median over rounds), the ratio two/one, the load average before and
after, and the cells per hour that a full cell (5000 joint steps at batch 32, 1000 warm-up steps, 100 evaluation
episodes of ~`--episode-steps` env steps) would give in each layout from those rates. Writes OUT/study_cells.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lara.adapters.metrics import read_metrics


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _lara(*args: str) -> list[str]:
    return [sys.executable, "-m", "lara.cli", *args]


def train(out: Path, data: Path, seeds: list[int], threads: int, steps: int, warmup: int) -> list[dict]:
    """Train the reference recipe with each seed at once, each with `threads` threads: per process, the joint
    phase's samples/s (median over its logged windows, the first dropped) and the command's wall seconds."""
    runs, processes = [], []
    for seed in seeds:
        run = out / f"train_t{threads}_s{seed}"
        args = _lara("train", "reference_libero_object", f"data.paths=[{data}]", f"output_dir={run}",
                     f"train.seed={seed}", f"train.steps={steps}", f"posttrain.lam_warmup_steps={warmup}",
                     "train.log_every=10", f"train.checkpoint_every={steps}", "train.progress=false")
        log = open(out / f"{run.name}.log", "w")
        processes.append((run, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_env(threads)), log))
    start = time.time()
    for run, process, log in processes:
        if process.wait() != 0:
            raise SystemExit(f"training failed: see {out / (run.name + '.log')}")
        log.close()
        rates = [r["samples_per_s"] for r in read_metrics(run / "metrics.jsonl") if "samples_per_s" in r][1:]
        runs.append({"run": run.name, "samples_per_s": statistics.median(rates), "wall_s": time.time() - start})
    return runs


def evaluate(out: Path, policies: list[Path], workers: int, threads: int, trials: int, max_steps: int) -> list[dict]:
    """Evaluate each policy at once on libero_object task 0: per evaluation, env steps per second in episodes
    summed over its workers, and its wall seconds."""
    processes = []
    for i, policy in enumerate(policies):
        folder = out / f"eval_w{workers}_t{threads}_{i}"
        args = _lara("eval", "libero", "--policy", f"checkpoint:{policy}", "--suite", "object", "--tasks", "0",
                     "--trials", str(trials), "--max-steps", str(max_steps), "--camera-size", "64", "--no-video",
                     "--workers", str(workers), "--threads-per-worker", str(threads), "--out", str(folder),
                     "--overwrite", "--allow-train-init-states")
        log = open(out / f"{folder.name}.log", "w")
        processes.append((folder, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_env(threads)), log))
    start, done = time.time(), []
    for folder, process, log in processes:
        if process.wait() != 0:
            raise SystemExit(f"evaluation failed: see {out / (folder.name + '.log')}")
        log.close()
        results = json.loads((folder / "results.json").read_text())
        per_worker: dict[int, list[float]] = {}
        for task in results["tasks"]:
            for ep in task["episodes"]:
                steps, seconds = per_worker.setdefault(ep["worker_pid"], [0.0, 0.0])
                per_worker[ep["worker_pid"]] = [steps + ep["env_steps"], seconds + ep["seconds"]]
        done.append({"eval": folder.name, "env_steps_per_s": sum(s / t for s, t in per_worker.values() if t > 0),
                     "wall_s": time.time() - start})
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the reference data (lara data generate ... "
                        "--out data/ref_object64)")
    parser.add_argument("--out", type=Path, default=Path("runs/perf_study_cells"))
    parser.add_argument("--steps", type=int, default=150, help="joint training steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="LAM warm-up steps per run (not timed)")
    parser.add_argument("--trials", type=int, default=2, help="evaluation episodes per evaluation")
    parser.add_argument("--max-steps", type=int, default=120, help="env steps per episode at most")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both layouts, alternating their order")
    parser.add_argument("--episode-steps", type=int, default=150,
                        help="env steps of an average study episode, for the cells-per-hour estimate")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rates: dict[str, dict[str, list[float]]] = {"one": {"train": [], "eval": []}, "two": {"train": [], "eval": []}}
    records = []
    for r in range(args.rounds):
        for layout in (("one", "two") if r % 2 == 0 else ("two", "one")):
            out = args.out / f"round{r}_{layout}"
            out.mkdir(parents=True, exist_ok=True)
            if layout == "one":
                trained = train(out, args.data, [0], 2, args.steps, args.warmup)
                evaluated = evaluate(out, [out / "train_t2_s0" / "final" / "vla"], 2, 2, args.trials, args.max_steps)
            else:
                trained = train(out, args.data, [0, 1], 1, args.steps, args.warmup)
                evaluated = evaluate(out, [out / f"train_t1_s{s}" / "final" / "vla" for s in (0, 1)], 1, 1,
                                     args.trials, args.max_steps)
            rates[layout]["train"].append(sum(t["samples_per_s"] for t in trained))
            rates[layout]["eval"].append(sum(e["env_steps_per_s"] for e in evaluated))
            records.append({"round": r, "layout": layout, "train": trained, "eval": evaluated,
                            "load": os.getloadavg()[0]})
            print(f"round {r} {layout}: train {rates[layout]['train'][-1]:.1f} samples/s, "
                  f"eval {rates[layout]['eval'][-1]:.1f} env steps/s (load {os.getloadavg()[0]:.2f})", flush=True)
    load_after = os.getloadavg()
    median = {layout: {phase: statistics.median(v) for phase, v in phases.items()} for layout, phases in rates.items()}
    cell_samples, cell_env_steps = (5000 + 1000) * 32, 100 * args.episode_steps  # warm-up steps counted as joint
    per_hour = {layout: 3600 / (cell_samples / m["train"] + cell_env_steps / m["eval"]) for layout, m in median.items()}
    summary = {"median": median, "cells_per_hour": per_hour, "load_before": load_before, "load_after": load_after,
               "settings": vars(args) | {"data": str(args.data), "out": str(args.out)}, "records": records}
    (args.out / "study_cells.json").write_text(json.dumps(summary, indent=1))
    for phase, unit in (("train", "samples/s"), ("eval", "env steps/s")):
        print(f"{phase}: one={median['one'][phase]:.1f} two={median['two'][phase]:.1f} {unit} "
              f"ratio two/one={median['two'][phase] / median['one'][phase]:.2f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"cells per hour (estimated from these rates): one={per_hour['one']:.2f} two={per_hour['two']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
