"""Generate scripted Bridge-like (WidowX) demonstrations on SIMPLER's tasks, in the LIBERO HDF5 schema.

    lara data generate --bench simpler --tasks carrot,spoon --episodes 20 --camera-size 128 --workers 2 \
        --assets /data/ms_assets --out data/bridge_scripted

SIMPLER evaluates on fixed configurations (`episode_id` 0..23: the source and target objects on two corners of
a 15 cm square, the source at one of two yaws), so demonstrations from those configurations would train on the
evaluation's own scenes. By default (`--placements fresh`) every attempt therefore starts from episode
`attempt % 24` (the task's configuration count) and then moves the objects to a fresh placement drawn with a recorded seed: both objects
uniformly in the square the configurations span (kept `MIN_SEPARATION` apart), the source at a uniform yaw,
then `SETTLE_STEPS` still steps so they come to rest. `--placements simpler` keeps SIMPLER's configurations
(recorded, so that nobody mistakes a policy trained on them for a held-out result).

The privileged `ScriptedWidowXExpert` acts until its last waypoint (the object released over its target), then
`TAIL_STEPS` still steps (in the rollout loop, `lara.benchmarks.rollout`, with `SimplerDemonstrations` as its env
adapter), and the episode is kept when `info["success"]` holds at its end; every step is rendered (ManiSkill renders
its camera with each observation) at `--camera-size`. Attempts run in spawned workers; a task keeps its first
`--episodes` successes in attempt order, so the result does not depend on `--workers`. Each task's kept
episodes go to `OUT/<env_id>_demo.hdf5` (agentview only: the Bridge setup has no wrist camera; joint_states
holds the WidowX's 6 arm joints; actions are `lara.policy` actions: metres and radians in the robot base
frame, gripper +1 = close), and `OUT/generation.json` records success rates, placements and timing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lara.benchmarks.libero.protocol import placement_seed
from lara.benchmarks.rollout import init_worker, run_episode
from lara.benchmarks.simpler.assets import BRIDGE_TASKS, check_assets, resolve_asset_dir, resolve_task
from lara.benchmarks.simpler.evaluate import SimplerEpisodes
from lara.benchmarks.simpler.expert import SUPPORTED, ScriptedWidowXExpert
from lara.benchmarks.workers import run_in_pool
from lara.errors import InputError
from lara.outputs import check_new, recorded, replacing, writable, writing

PLACEMENTS = ("fresh", "simpler")
SETTLE_STEPS = 5        # control steps (1 s) with the arm still after objects are moved
TAIL_STEPS = 3         # still steps after the expert's last waypoint, before success is read
MIN_SEPARATION = 0.10   # metres between the source and target objects' centres (SIMPLER's are 0.15 or 0.21)


def fresh_poses(env, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Source and target anywhere in the square SIMPLER's configurations span, the source at a uniform yaw."""
    from transforms3d.euler import euler2quat
    from transforms3d.quaternions import qmult

    configs = env.unwrapped.xyz_configs.cpu().numpy()  # (configurations, objects, 3), world frame
    low, high = configs[..., :2].min(axis=(0, 1)), configs[..., :2].max(axis=(0, 1))
    names = BRIDGE_TASKS[env.env_id].objects[:2]
    current = env.object_poses()
    while True:
        xy = rng.uniform(low, high, size=(2, 2))
        if np.linalg.norm(xy[0] - xy[1]) >= MIN_SEPARATION:
            break
    yaw = euler2quat(0.0, 0.0, rng.uniform(-np.pi, np.pi))
    return {names[0]: (np.append(xy[0], configs[0, 0, 2]), qmult(yaw, current[names[0]][1])),
            names[1]: (np.append(xy[1], configs[0, 1, 2]), current[names[1]][1])}


@dataclass
class SimplerDemonstrations:
    """The generator's env adapter for the rollout loop (`lara.benchmarks.rollout`): SIMPLER's env and action mapping
    as evaluation builds them (`evaluation`), an episode being (env_id, attempt, SIMPLER's `episode_id`, placement seed
    or None). `reset` moves the objects to a fresh placement drawn with the seed (when there is one); every step
    records the observation, the sim state and the expert's action; `done` means the demonstration is over:
    `TAIL_STEPS` still steps after the expert's last waypoint (the object released over its target). Its policy is
    always the scripted expert."""

    evaluation: SimplerEpisodes
    expert: ScriptedWidowXExpert | None = None
    wait_steps: ClassVar[int] = 0
    stops_at_success: ClassVar[bool] = True  # at `done`: the demonstration is over
    video_fps: ClassVar[int] = SimplerEpisodes.video_fps

    def load_policy(self, spec: str) -> ScriptedWidowXExpert:
        self.expert = ScriptedWidowXExpert()  # (the generator's spec is always `scripted`)
        return self.expert

    def env_key(self, episode) -> str:
        return episode[0]

    def make_env(self, env_id: str, policy):
        return self.evaluation.make_env(env_id, policy)

    def episode_seed(self, episode) -> int:
        return episode[3] or 0

    def reset(self, env, episode) -> dict:
        _, _, episode_id, seed = episode
        obs = env.reset(episode_id=episode_id, seed=seed or 0)
        if seed is not None:
            obs = env.place(fresh_poses(env, np.random.default_rng(seed)), settle_steps=SETTLE_STEPS)
        self.start_poses = {name: np.concatenate(pose).round(5).tolist() for name, pose in env.object_poses().items()}
        self.obs, self.tail = obs, TAIL_STEPS
        self.steps = {k: [] for k in ("agentview_rgb", "ee_states", "gripper_states", "joint_states", "actions",
                                      "states")}
        return obs

    def step(self, env, action: np.ndarray) -> tuple[dict, bool, dict]:
        action = action.astype(np.float32)  # the expert's own (the loop hands float64 over)
        self.steps["agentview_rgb"].append(self.obs["agentview_rgb"])
        self.steps["ee_states"].append(np.concatenate([self.obs["ee_pos"], self.obs["ee_ori"]]))
        self.steps["gripper_states"].append(self.obs["gripper_qpos"])
        self.steps["joint_states"].append(self.obs["joint_qpos"])
        self.steps["states"].append(env.sim_state())
        self.steps["actions"].append(action)
        self.obs, _, info = self.evaluation.step(env, action)
        if self.expert.done:  # released: a few still steps with the gripper open let the object come to rest
            self.tail -= 1
        return self.obs, self.tail < 0, info

    def frame(self, env, obs: dict) -> np.ndarray:
        return self.evaluation.frame(env, obs)

    def record(self, env, episode, done: bool, info: dict, finished: bool, steps: int) -> dict:
        arrays = {k: np.asarray(v) for k, v in self.steps.items()}
        success = bool(info.get("success", False))
        return {"instruction": env.instruction, "success": success,
                "episode": {**arrays, "success": success, "start_poses": self.start_poses}}


def run_attempt(job: tuple) -> dict:
    """(env_id, attempt, episode_id, placement seed or None) -> the attempt's record, with the episode when it
    succeeded. Runs in a rollout worker (`rollout.init_worker` with `SimplerDemonstrations`), the episode in the
    rollout loop."""
    env_id, attempt, episode_id, seed = job
    record = run_episode((env_id, attempt, episode_id, seed, None, None))
    if record["failure_reason"]:  # the expert is code of ours: a crash is a bug, not a failed attempt
        raise RuntimeError(f"the scripted WidowX expert failed on {env_id}: {record['failure_reason']}")
    episode = record["episode"]
    return {"env_id": env_id, "attempt": attempt, "episode_id": episode_id, "placement_seed": seed,
            "instruction": record["instruction"], "success": record["success"], "steps": len(episode["actions"]),
            "start_poses": episode["start_poses"], "seconds": record["seconds"],
            "episode": episode if record["success"] else None}


def first_successes(records: dict[int, dict], episodes: int) -> tuple[list[dict], int] | None:
    """The first `episodes` successes in attempt order and the attempts they took, once the attempts finished
    so far form a prefix that holds them (None until then)."""
    kept = []
    for attempt in range(len(records)):
        if attempt not in records:
            return None
        if records[attempt]["success"]:
            kept.append(records[attempt])
            if len(kept) == episodes:
                return kept, attempt + 1
    return None


def write_task(path: Path, env_id: str, kept: list[dict], camera_size: int, rotation: str) -> None:
    from lara.benchmarks.simpler.env import BRIDGE_CAMERA, BRIDGE_CONTROL_MODE
    from lara.data.libero_writer import LiberoHDF5Writer

    env_args = {"env_name": env_id, "bench": "simpler", "control_mode": BRIDGE_CONTROL_MODE,
                "camera_names": [BRIDGE_CAMERA], "camera_heights": camera_size, "camera_widths": camera_size,
                "rotation": rotation}
    with LiberoHDF5Writer(path, language=kept[0]["instruction"], env_args=env_args,
                          problem_info={"problem_name": env_id, "domain_name": "simpler_bridge"}) as writer:
        for record in kept:
            ep = record["episode"]
            attrs = {"success": True, "scripted": True, "episode_id": record["episode_id"],
                     "start_poses": record["start_poses"]}
            if record["placement_seed"] is not None:
                attrs["placement_seed"] = record["placement_seed"]
            writer.add_demo(actions=ep["actions"], agentview_rgb=ep["agentview_rgb"], ee_states=ep["ee_states"],
                            gripper_states=ep["gripper_states"], joint_states=ep["joint_states"],
                            states=ep["states"], attrs=attrs)


def add_options(p: argparse.ArgumentParser) -> None:
    """The flags of `lara data generate --bench simpler` (lara.benchmarks.generate adds --bench before them)."""
    from lara.cli import integer

    p.add_argument("--tasks", default="carrot,spoon", help="comma-separated: carrot, spoon (the expert's tasks)")
    p.add_argument("--episodes", type=integer(1), default=20, help="successful episodes to keep per task")
    p.add_argument("--attempts", type=integer(1), default=None, help="try at most this many starts per task "
                   "(default: 2x --episodes)")
    p.add_argument("--placements", default="fresh", choices=PLACEMENTS,
                   help="'fresh' (default): objects moved to new placements drawn with recorded seeds; 'simpler': "
                        "SIMPLER's own evaluation configurations (episode_id = attempt mod 24)")
    p.add_argument("--camera-size", type=integer(8), default=128, help="rendered image size in pixels")
    p.add_argument("--rotation", default="simpler", choices=("simpler", "exact"),
                   help="the env's rotation mapping (lara.benchmarks.simpler.env); the expert only yaws")
    p.add_argument("--assets", default=None, help="ManiSkill asset folder (default: $MS_ASSET_DIR, else ~/.maniskill)")
    p.add_argument("--workers", type=integer(1), default=1, help="spawned worker processes")
    p.add_argument("--seed", type=integer(0, 2**32 // 100003 - 1), default=0, help="base seed: attempt a of task t is placed with "
                   "seed*100003 + t*1009 + a")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files and generation.json of an earlier "
                   "generation in --out (default: refuse)")


def generate(args: argparse.Namespace) -> int:
    """Generate from the parsed flags (`add_options`); 0 when every task kept an episode."""
    from tqdm import tqdm

    from lara.benchmarks.simpler.env import versions

    env_ids = [resolve_task(t.strip()) for t in args.tasks.split(",") if t.strip()]
    unsupported = [e for e in env_ids if e not in SUPPORTED]
    if unsupported:
        raise InputError(f"--tasks: the scripted WidowX expert plans {list(SUPPORTED)} only, not {unsupported}")
    for flag in ("episodes", "attempts", "workers", "camera_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    attempts = args.attempts or 2 * args.episodes
    out = Path(args.out)  # before the assets are read and minutes of rollouts: an earlier generation is kept unasked
    check_new([out / "generation.json", *(out / f"{env_id}_demo.hdf5" for env_id in env_ids)],
              overwrite=args.overwrite, what="generation")
    writable(out, "--out")
    root = resolve_asset_dir(args.assets)
    check_assets(root, env_ids)  # one line naming the missing files; nothing created
    fresh = args.placements == "fresh"
    jobs = [(env_id, a, a % BRIDGE_TASKS[env_id].configurations, placement_seed(args.seed, t, a) if fresh else None)
            for a in range(attempts) for t, env_id in enumerate(env_ids)]  # tasks interleaved: all advance
    records: dict[str, dict[int, dict]] = {env_id: {} for env_id in env_ids}
    done: dict[str, tuple[list[dict], int]] = {}
    start = time.time()
    os.environ["MS_ASSET_DIR"] = str(root)  # spawned workers import mani_skill with it
    with tqdm(total=len(jobs), desc="expert episodes", disable=args.no_progress, dynamic_ncols=True) as bar:
        demonstrations = SimplerDemonstrations(SimplerEpisodes(args.camera_size, str(root), args.rotation))
        initargs = (demonstrations, "scripted", 1, time.time())
        for record in run_in_pool(args.workers, 1, init_worker, initargs, run_attempt, jobs):
            records[record["env_id"]][record["attempt"]] = record
            bar.update(1)
            for env_id in env_ids:
                if env_id not in done and (found := first_successes(records[env_id], args.episodes)):
                    done[env_id] = found
            if len(done) == len(env_ids):
                break  # the attempts still in flight finish and are dropped; later ones never start
    tasks = []
    for env_id in env_ids:
        kept, used = done.get(env_id) or ([r for _, r in sorted(records[env_id].items()) if r["success"]],
                                          len(records[env_id]))
        path = out / f"{env_id}_demo.hdf5"
        if kept:
            with writing(path):  # a full disk: one line naming the file
                write_task(path, env_id, kept, args.camera_size, args.rotation)
        tried = [r for a, r in sorted(records[env_id].items()) if a < used]
        tasks.append({"env_id": env_id, "instruction": tried[0]["instruction"],
                      "file": recorded(path) if kept else None,
                      "attempts": used, "successes": len(kept), "success_rate": len(kept) / max(used, 1),
                      "placements": args.placements,
                      "episode_ids": [r["episode_id"] for r in kept],
                      "placement_seeds": [r["placement_seed"] for r in kept] if fresh else None,
                      "seconds_per_attempt": round(float(np.mean([r["seconds"] for r in tried])), 2),
                      "attempt_records": [{k: v for k, v in r.items() if k != "episode"} for r in tried]})
        capped = " (--attempts cap reached)" if len(kept) < args.episodes else ""
        print(f"{env_id}: {len(kept)}/{used} solved{capped}, {tasks[-1]['seconds_per_attempt']} s per attempt")
    summary = {"bench": "simpler", "episodes_per_task": args.episodes, "max_attempts": attempts,
               "placements": args.placements, "camera_size": args.camera_size, "rotation": args.rotation,
               "seed": args.seed, "workers": args.workers, "versions": versions(), "asset_dir": recorded(root),
               "wall_s": round(time.time() - start, 1), "tasks": tasks}
    with replacing(out / "generation.json") as staging:
        staging.write_text(json.dumps(summary, indent=2))
    return 0 if all(t["successes"] > 0 for t in tasks) else 1
