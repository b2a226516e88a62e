"""`make demo` / `lara demo`: the main job end to end on a CPU, no GPU and no downloads.

1. Demonstrations: the privileged scripted expert solves a libero_object task in the real LIBERO simulator,
   from fresh placements (not the benchmark's init states, which step 3 evaluates on), while the env executes
   its actions with Gaussian noise of 0.1 on the arm (`--action-noise`; the files record the expert's own
   actions, so they show its corrections from off-path states: DART); the successful episodes are rendered
   (agentview only unless `--wrist`), written in the LIBERO HDF5 schema and cached (`--data`), so a second run
   skips this step.
2. Post-training with LARA: the reference recipe (`reference_libero_object`: the TokenVLA with action chunks
   from OpenVLA-OFT's L1 head and the robot state; a fresh LAM warmed up alone, then joint training with the
   alignment loss), without its wrist camera unless `--wrist`, shrunk to minutes by the overrides it prints.
3. Evaluation: the standard LIBERO protocol on the same task, 2 worker processes; the policy is asked again
   after 4 of the 8 actions of each chunk (`--execute-steps`).
4. Report: OUT/report/{results.json, loss.png, rollout.mp4, summary.txt}; the summary is printed.

Every flag, the training config it makes and both folders are checked before anything runs or is removed. A re-run
replaces OUT/run, OUT/eval and OUT/report, which an earlier demo wrote (OUT/demo.json says so); folders of those
names that the demo did not write are replaced only with `--overwrite`.

The default scale (task 1, cream cheese into the basket: 50 demonstrations, 500 LAM warm-up + 1200 joint
steps at batch 32, 10 trials) is sized to the 15 minutes `make demo` may take on 2 cores with the venv: the
render of the demonstrations is the largest cost (~40 ms of CPU per camera and frame with Mesa's llvmpipe on a quiet
machine, hardly depending on the image size: the draw of LIBERO's ~310k mesh triangles with 4x multisampling is all
of it, see benchmarks/libero/README.md), which is why the demo renders one camera. Its measured success rates are
in docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from lara.benchmarks.libero.protocol import FRESH
from lara.cli import ArgumentParser, integer, number
from lara.errors import InputError
from lara.outputs import publish_folder, recorded, recorded_paths, settings, staging_folder, writable

DEFAULT_TASKS = "1"  # libero_object: the cream cheese into the basket
PRESET = "reference_libero_object"
EXECUTE_STEPS = 4  # half of each chunk: see docs/demo.md for what it changed over 3 seeds
ACTION_NOISE = 0.1  # DART demonstrations: see docs/demo.md for what it changed over 3 seeds
OUTPUTS = ("run", "eval", "report")  # what the demo writes into --out
MARKER = "demo.json"  # OUT/demo.json: these OUTPUTS are a demo's own, which a re-run replaces


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="lara demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="run, evaluation and report folder")
    p.add_argument("--data", type=Path, default=Path("outputs/demo_data"),
                   help="cache of the generated demonstrations (reused when its settings match)")
    p.add_argument("--suite", default="object", help="LIBERO suite of the demonstrations and the evaluation")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated task indices")
    p.add_argument("--episodes", type=integer(1), default=50, help="scripted demonstrations per task")
    p.add_argument("--camera-size", type=integer(8), default=64, help="rendered image size of demos and evaluation")
    p.add_argument("--action-noise", type=number(0, 1), default=ACTION_NOISE,
                   help="noise the expert's executed actions carry while its own actions are recorded (DART; "
                        "`lara data generate --action-noise`); 0: clean demonstrations")
    p.add_argument("--wrist", action="store_true",
                   help="also render and train on the wrist camera, as the reference recipe (twice the rendering)")
    p.add_argument("--lam-warmup", type=integer(0), default=500, help="LAM-only steps before joint training")
    p.add_argument("--steps", type=integer(1), default=1200, help="joint VLA + LAM training steps")
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--trials", type=integer(1), default=10, help="evaluation episodes per task")
    p.add_argument("--max-steps", type=integer(1), default=None, help="evaluation step budget (default: the suite's)")
    p.add_argument("--execute-steps", type=integer(1, 8), default=EXECUTE_STEPS,
                   help="actions of each 8-action chunk the evaluation runs before it asks the policy again "
                        "(8: the whole chunk open-loop, as the reference study evaluates)")
    p.add_argument("--workers", type=integer(1), default=2, help="worker processes for generation and evaluation")
    p.add_argument("--baseline", action="store_true", help="the identical run without LARA (alignment off)")
    p.add_argument("--seed", type=integer(0, 2**32 // 100003 - 1), default=0,
                   help="seed of the demonstrations, the training and the evaluation")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT/run, OUT/eval and OUT/report although no earlier demo wrote them (default: a "
                        "re-run replaces only its own)")
    return p


def check_folders(args) -> None:
    """--data is a demo cache or empty, and --out holds no run/eval/report the demo did not write (unless
    --overwrite) and can be written: refused on one line before anything is removed or written."""
    if args.data.exists() and not args.data.is_dir():
        raise InputError(f"--data {args.data} is a file; name a folder for the demonstrations")
    if args.data.is_dir() and any(args.data.iterdir()) and not (args.data / "generation.json").is_file():
        raise InputError(f"--data {args.data} holds files but no generation.json, so it is not a demo cache; "
                         "the demo replaces its cache when settings change: name an empty or new folder")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; name a folder for the run, evaluation and report")
    foreign = [args.out / name for name in OUTPUTS if (args.out / name).exists()]
    if foreign and not (args.out / MARKER).is_file() and not args.overwrite:
        raise InputError(f"{foreign[0]} exists and no earlier demo wrote it (no {args.out / MARKER}); the demo would "
                         "replace it: give --overwrite to replace it, or another --out")
    writable(args.out, "--out")


# ------------------------------------------------------------------------------------------------
# 1. demonstrations


def cameras(args) -> tuple[str, ...]:
    """The cameras the demonstrations are rendered with and the policy reads."""
    return ("agentview_rgb", "eye_in_hand_rgb") if args.wrist else ("agentview_rgb",)


def _cache_matches(data: Path, suite: str, tasks: list[int], episodes: int, camera_size: int,
                   cams: tuple[str, ...], action_noise: float) -> bool:
    """Whether `data` holds demonstrations generated with these settings from fresh placements (a cache
    from the benchmark's init states, or from before they were recorded, is regenerated; one from before
    cameras were recorded had both)."""
    summary_path = data / "generation.json"
    if not summary_path.is_file():
        return False
    summary = json.loads(summary_path.read_text())
    entries = {t["task_id"]: t for t in summary.get("tasks", [])}
    return (summary.get("suite") == suite and summary.get("episodes_per_task") == episodes
            and summary.get("camera_size") == camera_size and sorted(entries) == sorted(tasks)
            and summary.get("action_noise", 0.0) == action_noise
            and tuple(summary.get("cameras", ("agentview_rgb", "eye_in_hand_rgb"))) == cams
            and all(t.get("file") and Path(t["file"]).is_file() for t in entries.values())
            and all(t.get("init_states", {}).get("source") == FRESH for t in entries.values()))


def demonstrations(args, suite: str, tasks: list[int]) -> tuple[dict, bool]:
    """The cached demonstrations, generated first when missing (into a staging folder renamed at the end,
    so an interrupted generation never looks like a cache)."""
    from lara.benchmarks.libero import generate

    if _cache_matches(args.data, suite, tasks, args.episodes, args.camera_size, cameras(args), args.action_noise):
        return json.loads((args.data / "generation.json").read_text()), True
    args.data.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(args.data)  # beside it, named by this process: an interrupted run's is removed next time
    code = generate.main(["--suite", suite, "--tasks", ",".join(map(str, tasks)),
                          "--episodes", str(args.episodes), "--init-states", FRESH,
                          "--camera-size", str(args.camera_size), "--cameras", ",".join(cameras(args)),
                          "--action-noise", str(args.action_noise),
                          "--workers", str(args.workers), "--seed", str(args.seed),
                          "--out", str(staging)])
    summary = json.loads((staging / "generation.json").read_text())
    if code != 0:
        raise RuntimeError(f"the scripted expert solved no episode of some task; see {staging / 'generation.json'}")
    for task in summary["tasks"]:  # the summary names files by their final place
        task["file"] = recorded(args.data / Path(task["file"]).name)
    (staging / "generation.json").write_text(json.dumps(summary, indent=2))
    publish_folder(staging, args.data)
    return summary, False


# ------------------------------------------------------------------------------------------------
# 2. training


def training_overrides(args, run: Path) -> list[str]:
    every = max(10, args.steps // 4 // 10 * 10)
    return [f"data.paths=[{args.data}]", f"output_dir={run}", f"train.steps={args.steps}",
            f"train.batch_size={args.batch_size}", f"posttrain.lam_warmup_steps={args.lam_warmup}",
            "train.log_every=10", f"train.checkpoint_every={every}", "train.keep_checkpoints=1",
            f"train.warmup_steps={min(100, args.steps // 10)}", "train.wandb.mode=disabled",
            f"train.seed={args.seed}", f"baseline={str(args.baseline).lower()}", f"data.image_size={args.camera_size}",
            f"model.build.image_size={args.camera_size}", f"lara.lam.image_size={args.camera_size}",
            f"data.extra_cameras=[{','.join(cameras(args)[1:])}]"]


def train(args, run: Path) -> dict:
    from lara.adapters import posttrain
    from lara.adapters.config import load_recipe
    from lara.adapters.metrics import read_metrics

    overrides = training_overrides(args, run)
    print(f"\n[2/4] post-training, the same as:\n  lara train {PRESET} " + " ".join(
        f"'{o}'" if " " in o else o for o in overrides), flush=True)
    start = time.time()
    result = posttrain.run(load_recipe(PRESET, overrides))
    wall = time.time() - start
    records = read_metrics(run / "metrics.jsonl")
    speeds = sorted(r["samples_per_s"] for r in records[1:] or records)
    return {"final": str(result["final"]), "samples": result["samples"], "wall_s": round(wall, 1),
            "joint_steps": args.steps, "lam_warmup_steps": 0 if args.baseline else args.lam_warmup,
            "median_samples_per_s": round(speeds[len(speeds) // 2], 1), "last": records[-1],
            "metrics": str(run / "metrics.jsonl")}


# ------------------------------------------------------------------------------------------------
# 3. evaluation and 4. report


def loss_plot(run: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lara.adapters.metrics import read_metrics

    joint = read_metrics(run / "metrics.jsonl")
    warm = read_metrics(run / "lam" / "metrics.jsonl") if (run / "lam" / "metrics.jsonl").is_file() else []
    offset = warm[-1]["step"] if warm else 0
    lam = warm + [{**r, "step": r["step"] + offset} for r in joint]
    panels = [("VLA action loss (L1)", "base", joint), ("alignment (1 - cos)", "align", joint),
              ("LAM reconstruction", "lam/recon", lam), ("LAM codes in use (perplexity)", "lam/perplexity", lam)]
    panels = [p for p in panels if p[2] and p[1] in p[2][-1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, key, records) in zip(list(axes) if len(panels) > 1 else [axes], panels):
        ax.plot([r["step"] for r in records], [r[key] for r in records])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step (LAM warm-up first)" if records is lam and warm else "step")
        ax.set_yscale("log")
        if records is lam and warm:
            ax.axvline(offset, color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_text(report: dict, folder: Path) -> str:
    data, training, evaluation, timing = report["data"], report["train"], report["eval"], report["timing"]
    lines = [f"LARA demo ({'baseline, no LARA' if report['baseline'] else 'TokenVLA + LARA'}) "
             f"on {evaluation['suite']} tasks {report['tasks']}",
             f"  demonstrations: {data['episodes']} scripted episodes "
             f"({'cached' if data['cached'] else 'generated'}, expert success {data['expert_success']}"
             + (f", executed with action noise {data['action_noise']:g})" if data.get("action_noise") else ")")]
    from lara.benchmarks.study.stats import wilson_interval

    last = training["last"]
    parts = ", ".join(f"{k}={last[k]:.3g}" for k in ("base", "align", "align/constant", "lam/recon", "lam/action",
                                                      "lam/perplexity", "lam/code_usage", "lam/z_std") if k in last)
    lo, hi = wilson_interval(evaluation["successes"], evaluation["episodes"])
    lines += [f"  training: {training['lam_warmup_steps']} LAM warm-up + {training['joint_steps']} joint steps "
              f"on {training['samples']} samples, {training['median_samples_per_s']} samples/s; last {parts}",
              f"  evaluation: {evaluation['successes']}/{evaluation['episodes']} successful episodes "
              f"({100 * evaluation['success_rate']:.0f}%, Wilson 95 % interval {100 * lo:.0f}-{100 * hi:.0f}%) on "
              f"benchmark init states the demonstrations did not use, {evaluation['execute_steps']} actions of each "
              f"chunk per query, {evaluation['env_steps_per_s']} env steps/s",
              "  time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items()),
              f"  report: {folder} (results.json, loss.png, rollout.mp4)",
              f"  policy: {training['final']}/vla  (lara eval libero --policy checkpoint:{training['final']}/vla "
              f"--execute-steps {evaluation['execute_steps']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight bars (workers inherit it)
    from lara.benchmarks.libero.env import resolve_suite
    from lara.benchmarks.libero.evaluate import evaluate
    from lara.benchmarks.libero.generate import parse_tasks

    from lara.adapters.config import load_recipe

    suite = resolve_suite(args.suite)
    tasks = parse_tasks(args.tasks, suite)
    run, eval_dir, folder = (args.out / name for name in OUTPUTS)
    load_recipe(PRESET, training_overrides(args, run))  # the training config, checked before minutes of rendering
    check_folders(args)
    (args.out / MARKER).write_text(json.dumps({"written_by": "lara demo", "outputs": list(OUTPUTS)}) + "\n")
    for stale in (run, eval_dir, folder):  # each demo run starts fresh; the demonstrations cache stays
        shutil.rmtree(stale, ignore_errors=True)
    timing, start = {}, time.time()

    print(f"[1/4] scripted demonstrations: {suite} tasks {tasks}, {args.episodes} episodes each -> {args.data}",
          flush=True)
    generation, cached = demonstrations(args, suite, tasks)
    timing["data"] = time.time() - start

    t0 = time.time()
    training = train(args, run)
    timing["train"] = time.time() - t0

    print(f"\n[3/4] evaluation: {args.trials} trials per task, {args.workers} workers", flush=True)
    t0 = time.time()
    policy = f"checkpoint:{training['final']}/vla"
    results = evaluate(policy, [suite], eval_dir, tasks=tasks, trials=args.trials, workers=args.workers,
                       seed=args.seed, camera_size=args.camera_size, max_steps=args.max_steps,
                       execute_steps=args.execute_steps)
    timing["eval"] = time.time() - t0

    staging = staging_folder(folder)  # the report appears whole or not at all (it names its final place)
    loss_plot(run, staging / "loss.png")
    episodes = [e for t in results["tasks"] for e in t["episodes"]]
    shown = next((e for e in episodes if e["success"]), episodes[0])
    shutil.copy(shown["video"], staging / "rollout.mp4")
    timing["total"] = time.time() - start
    report = {
        "baseline": args.baseline, "tasks": tasks, "settings": settings(args),
        "data": {"folder": str(args.data), "cached": cached, "episodes": sum(t["successes"] for t in generation["tasks"]),
                 "action_noise": generation.get("action_noise", 0.0),
                 "expert_success": f"{sum(t['successes'] for t in generation['tasks'])}/"
                                   f"{sum(t['attempts'] for t in generation['tasks'])}",
                 "tasks": [{k: t[k] for k in ("task_id", "task_name", "successes", "attempts",
                                               "rollout_s_per_episode", "render_s_per_episode")}
                           for t in generation["tasks"]]},
        "train": training,
        "eval": {"suite": suite, "execute_steps": args.execute_steps, "episodes": len(episodes),
                 "successes": sum(e["success"] for e in episodes),
                 "success_rate": results["average_success_rate"], "env_steps_per_s": results["env_steps_per_s"],
                 "per_task": {t["task_name"]: f"{t['successes']}/{t['trials']}" for t in results["tasks"]},
                 "results": str(eval_dir / "results.json"), "rollout_video": str(shown["video"]),
                 "rollout_success": shown["success"]},
        "timing": {k: round(v, 1) for k, v in timing.items()},
    }
    (staging / "results.json").write_text(json.dumps(recorded_paths(report), indent=2))
    text = summary_text(report, folder)
    (staging / "summary.txt").write_text(text + "\n")
    publish_folder(staging, folder)
    print("\n[4/4] " + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
