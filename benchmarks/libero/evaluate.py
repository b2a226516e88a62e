"""Standard LIBERO evaluation of a `lara.policy.Policy`.

    lara eval libero --policy scripted --suite object --tasks 0,1 --trials 50 --workers 2 --out runs/eval

The protocol (OpenVLA, OpenVLA-OFT and openpi agree): the benchmark's fixed init states (trial i uses
init state i), 10 wait steps with [0,0,0,0,0,0,-1] that do not count towards the suite's step budget
(220/280/300/520/400), 256 px images rotated 180 degrees, gripper binarised to -1/+1, success = `done`.
Two checks keep it honest (`protocol.py`): a `checkpoint:RUN/final/vla` whose training data started from
init states of the evaluated trials is refused (`allow_train_init_states` runs it anyway and records the
overlap), and images are rendered at the size the checkpoint was trained at unless `camera_size` says
otherwise (with a warning when it differs); results.json records both.
Action chunks run to the end unless the episode ends first; `execution` (`--execute-steps`, `--prefetch-steps`,
`--ensemble`, `--latency-steps`) runs them as the ROS node would instead (`lara.benchmarks.execution`), holding on
the steps a simulated inference latency leaves without an action. `obs_format='openpi-libero'` (`--obs-format`) sends a
`ws://` policy openpi's LIBERO element instead of `lara.policy` keys (`lara.serving.openpi`: any openpi-protocol server,
scored as openpi's own LIBERO client would), rendered at 256 px unless `camera_size` says otherwise.
Episodes run in the rollout loop SIMPLER shares (`lara.benchmarks.rollout`, with `LiberoEpisodes` below as its env
adapter): in spawned worker processes (one worker too: the same code path, so 1 vs N workers compare fairly), each
with its own env and with its BLAS/OpenMP/llvmpipe thread pools at `threads_per_worker` (default 1: workers, not
threads, use the cores); a policy that returns wrong-shaped or non-finite actions fails that episode (with the
reason) and the evaluation goes on.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from lara.benchmarks.cli import listed
from lara.benchmarks.execution import execution, flag_values
from lara.benchmarks.libero.env import (CAMERAS, NUM_WAIT_STEPS, SUITE_MAX_STEPS, WAIT_ACTION, LiberoEnv, resolve_suite,
                                        resolve_task, select_gl_backend, task_names, versions)
from lara.benchmarks.libero.protocol import camera_size_for, check_init_states, policy_image_size
from lara.benchmarks.policy_spec import check_policy_spec, load_policy
from lara.benchmarks.rollout import follow, print_holds, run_jobs
from lara.errors import InputError
from lara.outputs import recorded, save_figure, writable, write_text
from lara.policy import REMOTE, recorded_spec, remote_address
from lara.serving import openpi

OBS_FORMATS = ("lara", openpi.OBS_FORMAT)  # what a served policy is sent: lara.policy keys, or openpi's LIBERO element


@dataclass(frozen=True)
class LiberoEpisodes:
    """LIBERO's env adapter for the rollout loop (`lara.benchmarks.rollout`): an episode is (suite, task, trial),
    trial i starts from the task's init state i, seeded `seed + 1000 task + trial`, after 10 still steps.
    `obs_format` openpi-libero: a `ws://` policy is sent openpi's LIBERO element (`lara.serving.openpi`), prompted
    with the benchmark's task language as openpi's client is; `api_key`: the token a `ws://` server asks for."""

    camera_size: int
    seed: int
    obs_format: str = "lara"
    api_key: str | None = field(default=None, repr=False)
    wait_steps: ClassVar[int] = NUM_WAIT_STEPS
    stops_at_success: ClassVar[bool] = True  # success = `done`: the episode ends there
    video_fps: ClassVar[int] = 30

    def load_policy(self, spec: str):
        if self.obs_format == openpi.OBS_FORMAT:
            return openpi.OpenpiLiberoPolicy(*remote_address(spec), api_key=self.api_key)
        if spec.startswith(REMOTE) and self.api_key:
            from lara.serving.client import RemotePolicy

            return RemotePolicy(*remote_address(spec), token=self.api_key)
        return load_policy(spec, "libero")

    def env_key(self, episode) -> tuple[str, int]:
        return episode[0], episode[1]

    def make_env(self, key: tuple[str, int], policy) -> LiberoEnv:
        # render only what the policy reads (a camera costs a render per step) plus agentview for the videos
        cameras = tuple(CAMERAS) if not hasattr(policy, "cameras") else ("agentview_rgb", *policy.cameras)
        env = LiberoEnv(*key, camera_size=self.camera_size, seed=self.seed, cameras=cameras)
        if self.obs_format == openpi.OBS_FORMAT:
            env.instruction = env.task_language  # what the policy is reset with and the records show
        return env

    def episode_seed(self, episode) -> int:
        _, task, trial = episode
        return self.seed + 1000 * task + trial

    def reset(self, env: LiberoEnv, episode) -> dict:
        return env.reset(episode[2])

    def step(self, env: LiberoEnv, action: np.ndarray) -> tuple[dict, bool, dict]:
        obs, done = env.step(action)  # done: the task's success predicate
        return obs, done, {}

    def frame(self, env: LiberoEnv, obs: dict) -> np.ndarray:
        return obs["agentview_rgb"]

    def record(self, env: LiberoEnv, episode, done: bool, info: dict, finished: bool, steps: int) -> dict:
        _, task, trial = episode
        return {"suite": env.suite, "task_id": task, "task_name": env.task_name, "instruction": env.instruction,
                "trial": trial, "init_state": trial % len(env.init_states), "success": bool(done), "steps": steps}


OPENPI_ELEMENT = {  # what results.json says was sent with --obs-format openpi-libero (lara.serving.openpi)
    "images": {key: f"{ours}, upright, resized with pad to {openpi.IMAGE_SIZE} px (PIL bilinear), uint8"
               for key, ours in openpi.IMAGES.items()},
    "state": f"{openpi.STATE}: float64 [8] = end-effector position, axis-angle, gripper qpos",
    "prompt": "the benchmark's task language (LIBERO's Task.language), as openpi's client sends",
}


def check_obs_format(policy: str, obs_format: str, api_key: str | None) -> None:
    """--obs-format and --api-key: known, and given only with a served policy (the only one they reach)."""
    if obs_format not in OBS_FORMATS:
        raise InputError(f"--obs-format must be one of {', '.join(OBS_FORMATS)}, got {obs_format!r}")
    for given, flag in ((obs_format != "lara", f"--obs-format {obs_format}"), (api_key is not None, "--api-key")):
        if given and not policy.startswith(REMOTE):
            raise InputError(f"{flag} is for a served policy (--policy ws://HOST:PORT), got --policy {policy!r}")


def summarize(records: list[dict], suites: list[str]) -> dict:
    """Per task, per suite and average success rates from episode records."""
    tasks, per_suite = [], {}
    for suite in suites:
        rates = []
        for task in sorted({r["task_id"] for r in records if r["suite"] == suite}):
            eps = sorted((r for r in records if r["suite"] == suite and r["task_id"] == task),
                         key=lambda r: r["trial"])
            successes = sum(r["success"] for r in eps)
            rates.append(successes / len(eps))
            tasks.append({"suite": suite, "task_id": task, "task_name": eps[0]["task_name"],
                          "instruction": eps[0]["instruction"], "successes": successes, "trials": len(eps),
                          "success_rate": rates[-1], "episodes": eps})
        per_suite[suite] = float(np.mean(rates)) if rates else 0.0
    return {"tasks": tasks, "suites": per_suite, "average_success_rate": float(np.mean(list(per_suite.values())))}


def plot(summary: dict, path: Path) -> None:
    """Bar plot of per-task success rates, one colour per suite, suite averages in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    suites = list(summary["suites"])
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(tasks) + 2), 4))
    for i, task in enumerate(tasks):
        s = suites.index(task["suite"])
        label = f"{task['suite']} ({100 * summary['suites'][task['suite']]:.1f}%)"
        ax.bar(i, 100 * task["success_rate"], color=colours(s),
               label=label if label not in ax.get_legend_handles_labels()[1] else None)
    ax.set_xticks(range(len(tasks)), [f"{t['suite'].removeprefix('libero_')}-{t['task_id']}" for t in tasks],
                  rotation=60, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"LIBERO success, average {100 * summary['average_success_rate']:.1f}%")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def evaluate(policy: str, suites: list[str], out: str | Path, tasks: list[int] | None = None, trials: int = 50,
             workers: int = 1, seed: int = 7, camera_size: int | None = None, max_steps: int | None = None,
             video: bool = True, progress: bool = True, threads_per_worker: int = 1,
             allow_train_init_states: bool = False, execute_steps: int | None = None, prefetch_steps: int | None = None,
             ensemble: float | None = None, latency_steps: int = 0, obs_format: str = "lara",
             api_key: str | None = None) -> dict:
    """Run the protocol on every (suite, task, trial); writes OUT/results.json, OUT/success.png, OUT/videos/.

    `camera_size=None` renders at the policy's training image size when its checkpoint says it, else 256 px.
    `execute_steps` ... `latency_steps`: how chunks run (`lara.benchmarks.execution`); by default whole, at once.
    `obs_format='openpi-libero'`: a `ws://` policy is sent openpi's LIBERO element (`lara.serving.openpi`), rendered
    at `camera_size` or openpi's 256 px; `api_key`: the token a `ws://` server asks for (never recorded)."""
    check_obs_format(policy, obs_format, api_key)
    check_policy_spec(policy)
    for name, value in dict(trials=trials, workers=workers, threads_per_worker=threads_per_worker,
                            camera_size=camera_size, max_steps=max_steps).items():
        if value is not None and value < 1:  # --trials 0 would report 0 % of nothing as a result
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    strategy = execution(execute_steps, prefetch_steps, ensemble, latency_steps)
    select_gl_backend()  # once here; spawned workers inherit MUJOCO_GL
    suites = [resolve_suite(s) for s in suites]
    out = Path(out)
    jobs = []
    for suite in suites:
        ids = range(len(task_names(suite))) if tasks is None else [resolve_task(suite, t) for t in tasks]
        for task in ids:
            for trial in range(trials):
                path = out / "videos" / suite / f"task{task:02d}_trial{trial:03d}.mp4" if video else None
                jobs.append((suite, task, trial, max_steps, recorded(path) if path else None))
    init_states = check_init_states(policy, jobs, allow_train_init_states)
    openpi_element = obs_format == openpi.OBS_FORMAT
    # openpi's client renders at 256 whatever the server: it asks for no image size
    trained_size = None if openpi_element else policy_image_size(policy, token=api_key)
    camera_size, size_warning = camera_size_for(camera_size, trained_size)
    if size_warning:
        warnings.warn(size_warning, stacklevel=2)
    writable(out, "--out")  # an existing file, or a folder it cannot write: one line before any episode
    start = time.time()
    bench = LiberoEpisodes(camera_size, seed, obs_format, api_key)
    records = follow(run_jobs(jobs, bench, policy, workers, threads_per_worker, strategy),
                     len(jobs), "LIBERO episodes", progress,
                     lambda r: f"{r['suite']} task {r['task_id']} trial {r['trial']}")
    wall = time.time() - start
    env_steps = sum(r["env_steps"] for r in records)
    startup = {r["worker_pid"]: r["worker_startup_s"] for r in records}  # spawn, imports, policy load
    results = {
        "policy": recorded_spec(policy), "seed": seed, "workers": workers, "threads_per_worker": threads_per_worker,
        "worker_startup_s": sorted(startup.values()),
        "env_build_s": round(sum(r["env_build_s"] for r in records), 1),  # all workers, one env per task each
        "protocol": {"max_steps": {s: max_steps or SUITE_MAX_STEPS[s] for s in suites}, "wait_steps": NUM_WAIT_STEPS,
                     "wait_action": WAIT_ACTION.tolist(), "camera_size": camera_size,
                     "policy_image_size": trained_size, "image_rotation_deg": 180,
                     "gripper": "binarised (+1 close, -1 open)", "init_state_rule": "benchmark fixed, trial i -> state i",
                     "execution": strategy.record(), "obs_format": obs_format,
                     **({"openpi_element": OPENPI_ELEMENT} if openpi_element else {}), **init_states},
        "versions": versions(), "wall_time_s": round(wall, 1), "env_steps": env_steps,
        "env_steps_per_s": round(env_steps / wall, 2),  # throughput, env creation and video writing included
        "episode_env_steps_per_s": round(env_steps / max(sum(r["seconds"] for r in records), 1e-9), 2),
        **summarize(records, suites),
    }
    write_text(out / "results.json", json.dumps(results, indent=2))  # whole or not at all
    plot(results, out / "success.png")
    return results


def from_flags(args) -> dict:
    """`lara eval libero`'s flags -> `evaluate`'s results, printing its per-task and per-suite lines."""
    tasks = None if args.tasks is None else listed("--tasks", args.tasks)
    results = evaluate(args.policy, listed("--suite", args.suite), args.out, tasks=tasks, trials=args.trials,
                       workers=args.workers, threads_per_worker=args.threads_per_worker, seed=args.seed,
                       camera_size=args.camera_size, max_steps=args.max_steps, video=not args.no_video,
                       allow_train_init_states=args.allow_train_init_states, obs_format=args.obs_format,
                       api_key=args.api_key, **flag_values(args))
    for task in results["tasks"]:
        print(f"{task['suite']} task {task['task_id']:2d}: {task['successes']}/{task['trials']}  {task['task_name']}")
    for suite, rate in results["suites"].items():
        print(f"{suite}: {100 * rate:.1f}%")
    print_holds(results, "steps")
    return results
