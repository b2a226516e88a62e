"""SIMPLER (ManiSkill3 Bridge, WidowX) evaluation of a `lara.policy.Policy`.

    lara eval simpler --policy checkpoint:RUN/final/vla --tasks carrot,spoon --episodes 24 --seeds 3 \
        --workers 2 --assets /data/ms_assets --out runs/eval_simpler

The protocol (SimplerEnv's ManiSkill3 evaluation): episode i of a task is SIMPLER's fixed configuration
`episode_id = i` (24 per task, the eggplant 64), repeated for each seed s (the env and the policy seeded with
1000 s + i); every episode runs the task's full 60 steps (eggplant 120) at 5 Hz and its success is
`info["success"]` at the last step, with the partial credit `is_src_obj_grasped` (the source object was
grasped at some step) and `consecutive_grasp` (grasped 5 steps in a row). Action chunks run open-loop, like
LIBERO's, or as the ROS node runs them (`--execute-steps`, `--prefetch-steps`, `--ensemble`, `--latency-steps`:
`lara.benchmarks.execution`). Episodes run in the rollout loop LIBERO shares (`lara.benchmarks.rollout`, with
`SimplerEpisodes` below as its env adapter); the env wrapper (`env.py`) maps images, robot state and actions,
rotation convention included.

Before any worker spawns: the policy spec, the task names and every asset file are checked (one line naming
what is missing and the download command; ManiSkill's own download prompt never runs). results.json records
mani-skill / sapien / Mesa versions and the sha256 of every asset file loaded; when a table scene is the
stand-in box (`assets.write_stand_in_stages`), `simpler_scores` is false and the plot says so.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lara.benchmarks.cli import listed
from lara.benchmarks.execution import execution, flag_values
from lara.benchmarks.libero.protocol import camera_size_for
from lara.benchmarks.policy_spec import check_policy_spec, load_policy
from lara.benchmarks.rollout import follow, print_holds, run_jobs
from lara.benchmarks.simpler.assets import (BRIDGE_TASKS, check_assets, checksums, resolve_asset_dir, resolve_task,
                                            stage_is_stand_in)
from lara.benchmarks.study.stats import wilson_interval
from lara.errors import InputError
from lara.outputs import recorded, save_figure, writable, write_text
from lara.policy import policy_image_size, recipe_of, recorded_spec

PARTIAL = ("is_src_obj_grasped", "consecutive_grasp")


@dataclass(frozen=True)
class SimplerEpisodes:
    """SIMPLER's env adapter for the rollout loop (`lara.benchmarks.rollout`): an episode is (env_id, seed, episode_id),
    SIMPLER's configuration `episode_id` with the env and the policy seeded `1000 seed + episode_id`; it runs the
    task's whole budget and its success is `info["success"]` at the last step."""

    image_size: int
    assets: str
    rotation: str
    wait_steps: ClassVar[int] = 0
    stops_at_success: ClassVar[bool] = False  # every episode runs the task's whole budget
    video_fps: ClassVar[int] = 5  # the control rate

    def load_policy(self, spec: str):
        return load_policy(spec, "simpler")

    def env_key(self, episode) -> str:
        return episode[0]

    def make_env(self, env_id: str, policy):
        from lara.benchmarks.simpler.env import ManiSkillEnv

        return ManiSkillEnv(env_id, image_size=self.image_size, assets=self.assets, rotation=self.rotation)

    def episode_seed(self, episode) -> int:
        _, seed, episode_id = episode
        return 1000 * seed + episode_id

    def reset(self, env, episode) -> dict:
        return env.reset(episode_id=episode[2], seed=self.episode_seed(episode))

    def step(self, env, action: np.ndarray) -> tuple[dict, bool, dict]:
        obs, info = env.step(action)  # the env maps the action to the WidowX controller's
        return obs, False, info

    def frame(self, env, obs: dict) -> np.ndarray:
        return env.frame  # the full-size camera image

    def record(self, env, episode, done: bool, info: dict, finished: bool, steps: int) -> dict:
        env_id, seed, episode_id = episode
        return {"env_id": env_id, "instruction": env.instruction, "seed": seed, "episode_id": episode_id,
                "success": bool(finished and info.get("success", False)),
                **{k: bool(info.get(k, False)) for k in PARTIAL}}


def training_episodes(policy: str) -> dict[str, list[int]]:
    """SIMPLER configurations (episode ids) per task that a checkpoint's training data started from: folders
    written by `lara data generate --bench simpler --placements simpler` (fresh placements start from none)."""
    recipe = recipe_of(policy)
    if recipe is None:
        return {}
    data = json.loads(recipe.read_text()).get("data", {})
    found: dict[str, set[int]] = {}
    for entry in data.get("paths", []):
        summary = Path(entry["path"] if isinstance(entry, dict) else entry) / "generation.json"
        if not summary.is_file():
            continue
        generated = json.loads(summary.read_text())
        if generated.get("bench") == "simpler" and generated.get("placements") == "simpler":
            for task in generated["tasks"]:
                found.setdefault(task["env_id"], set()).update(task["episode_ids"])
    return {env_id: sorted(ids) for env_id, ids in found.items()}


def summarize(records: list[dict], env_ids: list[str]) -> dict:
    tasks = []
    for env_id in env_ids:
        eps = sorted((r for r in records if r["env_id"] == env_id), key=lambda r: (r["seed"], r["episode_id"]))
        k, n = sum(r["success"] for r in eps), len(eps)
        low, high = wilson_interval(k, n)
        tasks.append({"env_id": env_id, "instruction": eps[0]["instruction"], "successes": k, "trials": n,
                      "success_rate": k / n, "success_ci95": [round(low, 4), round(high, 4)],
                      **{f"{p}_rate": sum(r[p] for r in eps) / n for p in PARTIAL},
                      "per_seed": {str(s): sum(r["success"] for r in eps if r["seed"] == s)
                                   for s in sorted({r["seed"] for r in eps})},
                      "episodes": eps})
    return {"tasks": tasks, "average_success_rate": float(np.mean([t["success_rate"] for t in tasks]))}


def plot(summary: dict, path: Path, simpler_scores: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(tasks) + 2), 4))
    x = np.arange(len(tasks))
    for offset, key, label in ((-0.2, "success_rate", "success"), (0.2, "is_src_obj_grasped_rate", "grasped")):
        ax.bar(x + offset, [100 * t[key] for t in tasks], width=0.4, label=label)
    for i, task in enumerate(tasks):
        low, high = task["success_ci95"]
        ax.errorbar(i - 0.2, 100 * task["success_rate"], yerr=[[100 * (task["success_rate"] - low)],
                                                               [100 * (high - task["success_rate"])]],
                    color="black", capsize=3)
    ax.set_xticks(x, [f"{t['env_id'].removesuffix('-v1')}\n{t['successes']}/{t['trials']}" for t in tasks], fontsize=7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    title = f"SIMPLER Bridge, average success {100 * summary['average_success_rate']:.1f}%"
    ax.set_title(title if simpler_scores else f"{title}\nstand-in table: NOT SIMPLER scores", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def evaluate(policy: str, tasks: list[str], out: str | Path, episodes: int = 24, seeds: int = 3, workers: int = 1,
             assets: str | Path | None = None, image_size: int | None = None, rotation: str = "simpler",
             max_steps: int | None = None, video: bool = True, progress: bool = True,
             threads_per_worker: int = 1, allow_train_episodes: bool = False, execute_steps: int | None = None,
             prefetch_steps: int | None = None, ensemble: float | None = None, latency_steps: int = 0) -> dict:
    """Run every (task, seed, episode); writes OUT/results.json, OUT/success.png and OUT/videos/.
    `execute_steps` ... `latency_steps`: how chunks run (`lara.benchmarks.execution`); by default whole, at once."""
    from lara.benchmarks.simpler.env import ROTATIONS, versions

    check_policy_spec(policy)
    for name, value in dict(episodes=episodes, seeds=seeds, workers=workers, threads_per_worker=threads_per_worker,
                            image_size=image_size, max_steps=max_steps).items():
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    strategy = execution(execute_steps, prefetch_steps, ensemble, latency_steps)
    if rotation not in ROTATIONS:
        raise InputError(f"--rotation must be one of {list(ROTATIONS)}, got {rotation!r}")
    env_ids = [resolve_task(t) for t in tasks]
    if policy == "scripted":
        from lara.benchmarks.simpler.expert import SUPPORTED

        unsupported = [e for e in env_ids if e not in SUPPORTED]
        if unsupported:
            raise InputError(f"--policy scripted plans {list(SUPPORTED)} only, not {unsupported}")
    root = resolve_asset_dir(assets)
    check_assets(root, env_ids)  # one line naming the missing files; nothing created
    trained_size = policy_image_size(policy)  # reads a checkpoint's files, or asks a served policy: once
    size, warning = camera_size_for(image_size, trained_size)
    if warning:
        import warnings

        warnings.warn(warning, stacklevel=2)
    trained_on = training_episodes(policy)
    shared = {e: sorted(set(trained_on.get(e, [])) & {i % BRIDGE_TASKS[e].configurations for i in range(episodes)})
              for e in env_ids}
    shared = {e: ids for e, ids in shared.items() if ids}
    if shared and not allow_train_episodes:
        raise InputError(f"the policy was trained on demonstrations from SIMPLER's own evaluation configurations "
                         f"({shared}, per {recipe_of(policy)}): retrain on `lara data generate --bench simpler "
                         "--placements fresh` data, or pass --allow-train-episodes to run anyway (recorded in results.json)")
    out = Path(out)
    jobs = [(env_id, seed, episode, max_steps,
             recorded(out / "videos" / env_id / f"seed{seed}_episode{episode:03d}.mp4") if video else None)
            for env_id in env_ids for seed in range(seeds) for episode in range(episodes)]
    writable(out, "--out")  # an existing file, or a folder it cannot write: one line before any episode
    os.environ["MS_ASSET_DIR"] = str(root)  # spawned workers import mani_skill with it
    start = time.time()
    records = follow(run_jobs(jobs, SimplerEpisodes(size, str(root), rotation), policy, workers, threads_per_worker,
                              strategy), len(jobs), "SIMPLER episodes", progress,
                     lambda r: f"{r['env_id']} seed {r['seed']} episode {r['episode_id']}")
    wall = time.time() - start
    stand_in = sorted(e for e in env_ids if stage_is_stand_in(root, e))
    steps = sum(r["env_steps"] for r in records)
    results = {
        "policy": recorded_spec(policy), "episodes": episodes, "seeds": list(range(seeds)), "workers": workers,
        "threads_per_worker": threads_per_worker, "simpler_scores": not stand_in, "stand_in_stages": stand_in,
        "protocol": {"obs_mode": "rgb+segmentation", "camera": "3rd_view_camera 640x480, resized (cv2 INTER_AREA)",
                     "image_size": size, "policy_image_size": trained_size,
                     "control_mode": "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos", "control_hz": 5,
                     "max_steps": {e: max_steps or BRIDGE_TASKS[e].max_steps for e in env_ids},
                     "rotation": rotation, "gripper": "ours -1 open / +1 close -> WidowX +1 open / -1 close, binarised",
                     "episode_rule": "episode i -> episode_id i; env and policy seeded 1000*seed + i",
                     "success": "info['success'] at the last step", "execution": strategy.record()},
        "train_episode_ids": trained_on or None, "train_episode_overlap": shared or None,
        "versions": versions(), "asset_dir": recorded(root), "asset_sha256": checksums(root, env_ids),
        "wall_time_s": round(wall, 1), "env_steps": steps, "env_steps_per_s": round(steps / wall, 2),
        "worker_startup_s": sorted({r["worker_pid"]: r["worker_startup_s"] for r in records}.values()),
        **summarize(records, env_ids),
    }
    write_text(out / "results.json", json.dumps(results, indent=2))  # whole or not at all
    plot(results, out / "success.png", results["simpler_scores"])
    return results


def from_flags(args) -> dict:
    """`lara eval simpler`'s flags -> `evaluate`'s results, printing its per-task lines."""
    results = evaluate(args.policy, listed("--tasks", args.tasks), args.out,
                       episodes=args.episodes, seeds=args.seeds, workers=args.workers, assets=args.assets,
                       image_size=args.image_size, rotation=args.rotation, max_steps=args.max_steps,
                       video=not args.no_video, threads_per_worker=args.threads_per_worker,
                       allow_train_episodes=args.allow_train_episodes, **flag_values(args))
    for task in results["tasks"]:
        low, high = task["success_ci95"]
        print(f"{task['env_id']}: {task['successes']}/{task['trials']} success (95% CI {100 * low:.1f}-"
              f"{100 * high:.1f}%), grasped {100 * task['is_src_obj_grasped_rate']:.1f}%")
    if not results["simpler_scores"]:
        print(f"stand-in table scene for {results['stand_in_stages']}: these are NOT SIMPLER scores")
    print_holds(results, "env_steps")
    return results
