"""Generate scripted LIBERO demonstrations in the LIBERO HDF5 schema.

    lara data generate --suite object --tasks 0,1 --episodes 20 --camera-size 128 --workers 2 --out data/scripted

Each episode starts from a fresh placement that the env samples from the task's BDDL regions, seeded per
attempt (`protocol.placement_seed`) so that it can be reproduced; the benchmark's fixed init states are
what evaluation runs on, so they are used only on request (`--init-states A:B`). The episode waits the 10
settling steps, then the privileged `ScriptedExpert` acts in the rollout loop (`lara.benchmarks.rollout`, with
`LiberoDemonstrations` as its env adapter; physics only, no cameras: ~10x faster on CPU);
after the first `done` the gripper opens and the hand retreats, and the episode is kept only if the task
is still solved at its end. A task's starts are tried in order, in chunks spread over `--workers` spawned
processes, until `--episodes` successes or `--attempts` tries; the first successes in start order are kept
(later ones discarded), so the result does not depend on the number of workers. Kept episodes are rendered
afterwards from their stored simulator states (exact by construction), written in start order to
`OUT/<task_name>_demo.hdf5`, and per-task success rates, init-state records and timing go to
`OUT/generation.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from lara.benchmarks.libero.env import (CAMERAS, NUM_WAIT_STEPS, SUITE_MAX_STEPS, WAIT_ACTION, LiberoEnv, _benchmark,
                                        resolve_suite, resolve_task, select_gl_backend, task_names, versions)
from lara.benchmarks.libero.expert import ScriptedExpert, check_covered
from lara.benchmarks.libero.protocol import FRESH, parse_init_states, placement_seed
from lara.benchmarks.rollout import init_worker, play, run_episode, worker_env
from lara.benchmarks.workers import spawn_pool
from lara.errors import InputError
from lara.outputs import check_new, recorded, replacing, writable, writing

TAIL_STEPS = 25  # release-and-retreat steps after the first `done` (at least)
RELEASED_STEPS = 10  # and the tail ends with the gripper open this long
ACTION_NOISE_STREAM = 7  # the noise generator's first seed word: its draws are independent of the placement's


@dataclass
class LiberoDemonstrations:
    """The generator's env adapter for the rollout loop (`lara.benchmarks.rollout`): an episode is (suite, task,
    benchmark init state or None, placement seed), settled by the 10 wait steps inside `reset` (unrecorded). Every
    step records the sim state, the proprioception and the expert's action; `done` means the demonstration is over:
    `TAIL_STEPS` after the first `done` (the expert then releases and retreats) once the gripper has been open
    `RELEASED_STEPS`, or at the suite's budget without one. Its policy is always the scripted expert.

    With `action_noise` > 0 the env executes the expert's action plus Gaussian noise of that standard deviation on
    the six arm dimensions (clipped to [-1, 1]; the gripper command stays clean), while the recorded action is the
    expert's own: the demonstrations then visit states off the expert's path, each labelled with the correction the
    expert makes there (DART, Laskey et al. 2017). The noise is drawn from a generator seeded by the start, so an
    episode is reproduced from its start and the noise scale. `camera_size` None builds physics-only envs (the
    rollouts); a size builds the camera env that renders kept episodes from their states."""

    action_noise: float = 0.0
    camera_size: int | None = None
    cameras: tuple[str, ...] = tuple(CAMERAS)
    expert: ScriptedExpert | None = None
    wait_steps: ClassVar[int] = 0  # the settling steps run in `reset`, unrecorded
    stops_at_success: ClassVar[bool] = True  # at `done`: the demonstration is over
    video_fps: ClassVar[int] = 30

    def load_policy(self, spec: str) -> ScriptedExpert:
        self.expert = ScriptedExpert()  # (the generator's spec is always `scripted`)
        return self.expert

    def env_key(self, episode) -> tuple:
        return resolve_suite(episode[0]), episode[1], self.camera_size, tuple(c for c in CAMERAS if c in self.cameras)

    def make_env(self, key: tuple, policy) -> LiberoEnv:
        suite, task, camera_size, cameras = key
        return LiberoEnv(suite, task, camera_size=camera_size, cameras=cameras)

    def episode_seed(self, episode) -> int:
        return episode[3] or 0  # (a benchmark init state may come without a placement seed)

    def reset(self, env: LiberoEnv, episode) -> dict:
        _, _, init_state_index, seed = episode
        start = 0 if init_state_index is None else 1 + init_state_index
        self.noise = np.random.default_rng([ACTION_NOISE_STREAM, seed or 0, start])
        obs = env.reset(init_state_index, seed)
        for _ in range(NUM_WAIT_STEPS):
            obs, _ = env.step(WAIT_ACTION)
        self.obs, self.first_done, self.open_steps = obs, None, 0
        self.steps = {k: [] for k in ("states", "actions", "ee_states", "gripper_states", "joint_states", "dones")}
        return obs

    def step(self, env: LiberoEnv, action: np.ndarray) -> tuple[dict, bool, dict]:
        action = action.astype(np.float32)  # the expert's own (the loop hands float64 over)
        t = len(self.steps["actions"])
        self.steps["states"].append(env.sim_state())
        self.steps["ee_states"].append(np.concatenate([self.obs["ee_pos"], self.obs["ee_ori"]]))
        self.steps["gripper_states"].append(self.obs["gripper_qpos"])
        self.steps["joint_states"].append(self.obs["joint_qpos"])
        self.steps["actions"].append(action)
        executed = action.copy()
        if self.action_noise > 0:
            executed[:6] = np.clip(action[:6] + self.noise.normal(0.0, self.action_noise, 6), -1.0, 1.0)
        self.obs, done = env.step(executed)
        self.steps["dones"].append(done)
        self.open_steps = self.open_steps + 1 if action[6] < 0 else 0
        if done and self.first_done is None:
            self.first_done = t
            self.expert.release()
        over = (self.first_done is None and t + 1 >= env.max_steps) or (  # (a knob twist finishes before the
            self.first_done is not None and t - self.first_done >= TAIL_STEPS and self.open_steps >= RELEASED_STEPS)
        return self.obs, over, {}  # hand lets go: the tail can be longer)

    def frame(self, env: LiberoEnv, obs: dict) -> np.ndarray:
        return obs["agentview_rgb"]

    def record(self, env: LiberoEnv, episode, done: bool, info: dict, finished: bool, steps: int) -> dict:
        arrays = {k: np.asarray(v) for k, v in self.steps.items()}
        success = self.first_done is not None and bool(env.env.check_success())
        return {"success": success, "steps": steps, "episode": {**arrays, "success": success,
                                                                "first_done": self.first_done}}


def rollout(env: LiberoEnv, expert: ScriptedExpert, init_state_index: int | None = None,
            seed: int | None = None, action_noise: float = 0.0) -> dict:
    """One unrendered expert episode from a start (`LiberoEnv.reset`'s arguments), in this process: per-step sim
    states, actions and proprioception, and success (`LiberoDemonstrations`)."""
    episode = (env.suite, env.task_id, init_state_index, seed)
    demonstrations = LiberoDemonstrations(action_noise, expert=expert)
    record = play(demonstrations, expert, env, episode, max_steps=env.max_steps + 3 * TAIL_STEPS)
    if record["failure_reason"]:
        raise RuntimeError(f"the scripted expert failed: {record['failure_reason']}")
    return record["episode"]


def render(env: LiberoEnv, states: np.ndarray) -> dict[str, np.ndarray]:
    """Upright images [T, H, W, 3] of stored sim states, per camera of the env (`agentview_rgb`, ...)."""
    frames = [env.render_state(s) for s in states]
    return {camera: np.stack([f[camera] for f in frames]) for camera in env.cameras}


def _reset_args(start: dict) -> dict:
    return {"init_state_index": start.get("init_state_index"), "seed": start["placement_seed"]}


def rollout_chunk(job: tuple) -> dict:
    """(suite, task, starts) -> the task's file metadata and one record per start, with the episode's
    arrays when it succeeded (failed episodes keep their counts only). Runs in a rollout worker
    (`rollout.init_worker` with `LiberoDemonstrations`), each episode in the rollout loop."""
    suite, task, starts = job
    budget = SUITE_MAX_STEPS[resolve_suite(suite)] + 3 * TAIL_STEPS  # the tail may run past the suite's budget
    records = []
    for start in starts:
        args = _reset_args(start)
        record = run_episode((suite, task, args["init_state_index"], args["seed"], budget, None))
        if record["failure_reason"]:  # the expert is code of ours: a crash is a bug, not a failed attempt
            raise RuntimeError(f"the scripted expert failed on {suite} task {task}: {record['failure_reason']}")
        records.append({**start, "success": record["success"], "steps": record["steps"], "seconds": record["seconds"],
                        "episode": record["episode"] if record["success"] else None})
    env, _ = worker_env(LiberoDemonstrations().env_key((suite, task)))  # the physics env the episodes ran in
    meta = {"task_name": env.task_name, "instruction": env.instruction, "bddl_file": env.bddl_file,
            "problem_info": {"problem_name": env.env.problem_name, "domain_name": env.env.domain_name}}
    return {"meta": meta, "records": records}


def render_episode(job: tuple) -> tuple[dict[str, np.ndarray], float]:
    """(suite, task, camera_size, cameras, start, states) -> the images per camera and the seconds it took, in the
    worker's camera env. The camera env is reset from the same start first: fixture positions live in the model, not
    in the states; in place (`rebuild=False`: the same fixtures and frames, without rebuilding the sim and its GL
    context for every episode)."""
    suite, task, camera_size, cameras, start, states = job
    t0 = time.time()
    env, _ = worker_env(LiberoDemonstrations(camera_size=camera_size, cameras=cameras).env_key((suite, task)))
    env.reset(**_reset_args(start), rebuild=False)
    return render(env, states), time.time() - t0


def task_starts(init_states: range | None, task: int, seed: int, attempts: int) -> list[dict]:
    """The starts to try for a task, in order: fresh placements with their seeds, or benchmark init states
    (with the seed of the reset before them, which places the fixtures)."""
    if init_states is None:
        return [{"placement_seed": placement_seed(seed, task, a)} for a in range(attempts)]
    return [{"init_state_index": i, "placement_seed": placement_seed(seed, task, i)} for i in init_states[:attempts]]


def roll_out(pool, suite: str, starts: dict[int, list[dict]], episodes: int, workers: int, bar=None,
             run_chunk=rollout_chunk) -> dict[int, dict]:
    """Roll out each task's starts in chunks, at most `workers` in flight, until its finished chunks hold
    `episodes` successes. A chunk takes the task's next untried starts, as many as it still lacks shared over the
    workers: ceil(missing / workers), where the starts in flight count as successes. The first chunks so split
    the work, the last ones are no larger than what is missing (chunks of a fixed ceil(episodes / workers) once
    left up to 25 rollouts of the demo on one worker, the other idle, to find its last success), and no start is
    rolled out while those in flight could still bring what a task lacks: a task ends with exactly `episodes`
    successes when its starts hold them. Chunks take starts in order, so a task's tried starts are always a
    prefix: the first `episodes` successes in that order do not depend on `workers`.
    Returns per task its file metadata and the records of every tried start, in start order."""
    found = {task: {"meta": None, "records": {}, "successes": 0} for task in starts}
    tried = dict.fromkeys(starts, 0)  # per task: its starts handed out so far (a prefix)
    pending = {}  # future -> (task, offset, starts in the chunk)

    def next_chunk() -> tuple[int, int, list[dict]] | None:
        for task, ordered in starts.items():  # tasks in order; a task that waits lets the next one go
            in_flight = sum(n for t, _, n in pending.values() if t == task)
            missing = episodes - found[task]["successes"] - in_flight
            if missing > 0 and tried[task] < len(ordered):
                offset = tried[task]
                chunk = ordered[offset:offset + -(-missing // workers)]
                tried[task] += len(chunk)
                return task, offset, chunk
        return None

    while True:
        while len(pending) < workers and (job := next_chunk()) is not None:
            task, offset, chunk = job
            pending[pool.submit(run_chunk, (suite, task, chunk))] = (task, offset, len(chunk))
        if not pending:
            break
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            task, offset, _ = pending.pop(future)
            result = future.result()
            f = found[task]
            f["meta"] = result["meta"]
            f["records"][offset] = result["records"]
            f["successes"] += sum(r["success"] for r in result["records"])
            if bar is not None:
                if f["successes"] >= episodes:  # enough (nothing else of it in flight): untried starts leave the total
                    bar.total -= len(starts[task]) - tried[task]
                bar.update(len(result["records"]))
                kept = sum(min(g["successes"], episodes) for g in found.values())
                bar.set_postfix(kept=f"{kept}/{episodes * len(found)}")  # beside tqdm's done/total, rate and ETA
    return {task: {"meta": f["meta"], "records": [r for offset in sorted(f["records"]) for r in f["records"][offset]]}
            for task, f in found.items()}


def keep_first(records: list[dict], episodes: int) -> tuple[list[dict], list[dict]]:
    """The first `episodes` successful records in start order, and the attempts up to the last of them
    (all tried records when fewer succeeded): what a single worker trying starts one by one would have."""
    kept, used = [], []
    for record in records:
        if len(kept) == episodes:
            break
        used.append(record)
        if record["success"]:
            kept.append(record)
    return kept, used


def init_state_record(kept: list[dict], benchmark: bool) -> dict:
    """generation.json's per-task `init_states`: which starts the kept episodes came from."""
    seeds = [r["placement_seed"] for r in kept]
    if benchmark:
        return {"source": "benchmark", "indices": [r["init_state_index"] for r in kept], "seeds": seeds}
    return {"source": FRESH, "seeds": seeds}


def _start(record: dict) -> dict:
    """The start of a record: `placement_seed`, and `init_state_index` for a benchmark init state."""
    return {k: record[k] for k in ("init_state_index", "placement_seed") if k in record}


def _writer(path: Path, suite: str, task: int, camera_size: int, cameras: tuple[str, ...], meta: dict):
    from lara.data.libero_hdf5 import LIBERO_FPS
    from lara.data.libero_writer import LiberoHDF5Writer

    env_args = {"env_name": meta["problem_info"]["problem_name"], "type": 1, "suite": suite, "task_id": task,
                "env_kwargs": {"camera_heights": camera_size, "camera_widths": camera_size,
                               "camera_names": [CAMERAS[c] for c in cameras], "controller": "OSC_POSE",
                               "control_freq": LIBERO_FPS}}  # the frames' rate, read back as Episode.fps
    return LiberoHDF5Writer(path, language=meta["instruction"], problem_info=meta["problem_info"],
                            env_args=env_args, bddl_file_name=meta["bddl_file"])


def write_files(pool, suite: str, camera_size: int, tasks: dict[int, dict], workers: int, bar=None,
                distractors=None, cameras: tuple[str, ...] = tuple(CAMERAS), action_noise: float = 0.0
                ) -> dict[int, float]:
    """Render every task's kept episodes in the pool (at most `workers` in flight) and write each task's
    `OUT/<task_name>_demo.hdf5` in start order as they arrive; returns per task its render seconds. With
    `distractors` (a DistractorConfig) the agentview frames get a patch moving with the arm's (x, y) command
    and a scrolling background texture, seeded by the episode's placement seed. Each demo's attrs hold its start
    and `action_noise` (with noise its actions are the expert's, not the executed ones: they do not replay it)."""
    jobs = [(task, record) for task, t in tasks.items() for record in t["kept"]]
    last = {task: max(i for i, (t, _) in enumerate(jobs) if t == task) for task, t in tasks.items() if t["kept"]}
    render_s, writers, arrived, pending, submitted, written = dict.fromkeys(tasks, 0.0), {}, {}, {}, 0, 0
    try:
        while written < len(jobs):
            while submitted < len(jobs) and len(pending) < workers:
                task, record = jobs[submitted]
                job = (suite, task, camera_size, cameras, _start(record), record["episode"]["states"])
                pending[pool.submit(render_episode, job)] = submitted
                submitted += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            arrived.update((pending.pop(f), f.result()) for f in finished)
            while written in arrived:  # in job order: at most `workers` episodes wait in memory
                (images, seconds), (task, record) = arrived.pop(written), jobs[written]
                agentview = images["agentview_rgb"]
                if task not in writers:
                    writers[task] = _writer(Path(tasks[task]["file"]), suite, task, camera_size, cameras,
                                            tasks[task]["meta"])
                ep = record["episode"]
                if distractors is not None:
                    from lara.benchmarks.probes.distractors import distract_episode

                    agentview = distract_episode(agentview, ep["actions"][:, :2], distractors, record["placement_seed"])
                writers[task].add_demo(actions=ep["actions"], agentview_rgb=agentview,
                                       eye_in_hand_rgb=images.get("eye_in_hand_rgb"),
                                       ee_states=ep["ee_states"], gripper_states=ep["gripper_states"],
                                       joint_states=ep["joint_states"], states=ep["states"],
                                       attrs={"success": True, "scripted": True, "action_noise": action_noise,
                                              **_start(record)})
                render_s[task] += seconds
                if written == last[task]:
                    writers.pop(task).close()
                written += 1
                if bar is not None:
                    bar.update(1)
    finally:
        for writer in writers.values():  # interrupted: leave no half-written file
            writer.discard()
    return render_s


def parse_tasks(text: str | None, suite: str) -> list[int]:
    """'0,1' -> [0, 1]; None -> every task of the suite."""
    if text is None:
        return list(range(len(task_names(suite))))
    tasks = [resolve_task(suite, t.strip()) for t in text.split(",") if t.strip()]
    twice = sorted({t for t in tasks if tasks.count(t) > 1})
    if not tasks or twice:  # a task given twice would write its file twice, the second over the first
        raise InputError(f"--tasks {text!r}: " + (f"task {twice[0]} is given twice; name each task once" if twice
                                                   else "names no task; give indices or names, e.g. --tasks 0,1"))
    return tasks


def uncovered_tasks(suite: str, tasks: list[int]) -> dict[int, str]:
    """Task index -> why the expert has no plan for it, read from the BDDL files (no env is built)."""
    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    bench, reasons = _benchmark(suite), {}
    for task in tasks:
        try:
            check_covered(robosuite_parse_problem(bench.get_task_bddl_file_path(task)))
        except ValueError as error:
            reasons[task] = str(error)
    return reasons


def task_summary(suite: str, task: int, found: dict, episodes: int, max_attempts: int, render_s: float) -> dict:
    """generation.json's entry of one task; `attempts` counts the starts a one-by-one run would have tried."""
    kept, used = keep_first(found["records"], episodes)
    rollout_s = sum(r["seconds"] for r in found["records"])
    return {
        "suite": suite, "task_id": task, "task_name": found["meta"]["task_name"],
        "instruction": found["meta"]["instruction"], "file": found["file"],
        "attempts": len(used), "successes": len(kept), "success_rate": len(kept) / max(len(used), 1),
        "max_attempts": max_attempts, "extra_rollouts": len(found["records"]) - len(used),  # past the last kept start
        "init_states": init_state_record(kept, benchmark="init_state_index" in found["records"][0]),
        "rollout_s_per_episode": round(rollout_s / max(len(found["records"]), 1), 2),
        "render_s_per_episode": round(render_s / max(len(kept), 1), 2),
        "wall_s": round(rollout_s + render_s, 1),  # worker seconds spent on this task
        "episodes": [{k: v for k, v in r.items() if k != "episode"} for r in used],
    }


def add_options(p: argparse.ArgumentParser) -> None:
    """The flags of `lara data generate --bench libero` (lara.benchmarks.generate adds --bench before them)."""
    from lara.cli import integer, number

    p.add_argument("--suite", required=True, help="LIBERO suite: spatial, object, goal (all but the wine rack task)")
    p.add_argument("--tasks", default=None, help="comma-separated task indices or names (default: all)")
    p.add_argument("--episodes", type=integer(1), default=20, help="successful episodes to keep per task")
    p.add_argument("--init-states", default=FRESH,
                   help="'fresh' (default): each episode starts from a new placement the env samples, seeded per "
                        "attempt; 'A:B': the benchmark's fixed init states A..B-1, which evaluation runs on "
                        "(trial i on state i), so a policy trained on them is refused there unless asked")
    p.add_argument("--attempts", type=integer(1), default=None,
                   help="try at most this many starts per task (default: 3x --episodes fresh placements, or all "
                        "of A:B); with --dry-run and --episodes equal to it: the expert's success rate")
    p.add_argument("--camera-size", type=integer(8), default=128, help="rendered image size in pixels")
    p.add_argument("--cameras", default=",".join(CAMERAS),
                   help=f"comma-separated cameras to render and write, agentview_rgb first (default: {','.join(CAMERAS)}; "
                        "each costs about as much as the other: a policy that reads agentview alone halves rendering)")
    p.add_argument("--workers", type=integer(1), default=1,
                   help="spawned worker processes, splitting every task's starts between them")
    p.add_argument("--threads-per-worker", type=integer(1), default=1,
                   help="BLAS/OpenMP/llvmpipe threads in each worker (1: let the workers use the cores)")
    p.add_argument("--seed", type=integer(0, 2**32 // 100003 - 1), default=0,
                   help="base seed: attempt a of task t is placed with seed*100003 + t*1009 + a")
    p.add_argument("--action-noise", type=number(0, 1), default=0.0,
                   help="standard deviation of Gaussian noise added to the six arm dimensions of the actions the "
                        "env executes (actions are in [-1, 1]); the recorded actions stay the expert's own, so the "
                        "demonstrations show its corrections from off-path states (DART). Default 0: no noise")
    p.add_argument("--dry-run", action="store_true",
                   help="measure the expert only: roll out and count successes, render and write nothing")
    p.add_argument("--distractors", action="store_true",
                   help="paint action-correlated distractors into the agentview frames (a patch moving with the arm, "
                        "a scrolling background texture): data for `lara probe` and task-centric LAMs")
    p.add_argument("--distractor-correlation", type=number(0, 1), default=0.7,
                   help="with --distractors: correlation of the patch's motion with the arm's (x, y) command")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files and generation.json of an earlier "
                   "generation in --out (default: refuse)")


def main(argv: list[str] | None = None) -> int:
    """`lara data generate --bench libero ARGV`."""
    from lara.benchmarks.generate import build_parser

    return generate(build_parser("libero").parse_args(sys.argv[1:] if argv is None else argv))


def generate(args: argparse.Namespace) -> int:
    """Generate from the parsed flags (`add_options`); 0 when every task kept an episode."""
    suite = resolve_suite(args.suite)
    select_gl_backend()  # once here; spawned workers inherit MUJOCO_GL
    tasks = parse_tasks(args.tasks, suite)
    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    if not cameras or cameras[0] != "agentview_rgb" or set(cameras) - set(CAMERAS) or len(set(cameras)) < len(cameras):
        raise InputError(f"--cameras {args.cameras!r}: expected agentview_rgb, optionally followed by eye_in_hand_rgb "
                         f"(the LIBERO HDF5 schema's cameras), e.g. --cameras {','.join(CAMERAS)}")
    try:
        init_states = parse_init_states(args.init_states)
    except ValueError as error:
        raise InputError(str(error)) from None
    available = len(_benchmark(suite).get_task_init_states(tasks[0]))
    if init_states is not None and init_states.stop > available:
        raise InputError(f"--init-states {args.init_states}: {suite} has {available} fixed init states per task "
                         f"(0..{available - 1}); give A:B with B <= {available}, or 'fresh'.")
    uncovered = uncovered_tasks(suite, tasks)
    if uncovered:
        names = task_names(suite)
        covered = [t for t in range(len(names)) if t not in uncovered_tasks(suite, list(range(len(names))))]
        listing = "\n".join(f"  {t}: {names[t]}: {why}" for t, why in uncovered.items())
        raise InputError(f"the scripted expert cannot solve these {suite} tasks:\n{listing}\n"
                         f"Tasks it covers: --tasks {','.join(map(str, covered))}")
    distractors = None
    if args.distractors:
        from lara.benchmarks.probes.distractors import DistractorConfig

        distractors = DistractorConfig(correlation=args.distractor_correlation)
    out = Path(args.out)  # before minutes of rollouts: an earlier generation is not replaced unasked
    names = task_names(suite)
    check_new([out / "generation.json", *([] if args.dry_run else [out / f"{names[t]}_demo.hdf5" for t in tasks])],
              overwrite=args.overwrite, what="generation")
    writable(out, "--out")
    max_attempts = args.attempts or (3 * args.episodes if init_states is None else len(init_states))
    starts = {t: task_starts(init_states, t, args.seed, max_attempts) for t in tasks}
    start = time.time()
    # every worker is a rollout worker (lara.benchmarks.rollout) whose policy is the expert
    demonstrations = LiberoDemonstrations(args.action_noise)
    initargs = (demonstrations, "scripted", args.threads_per_worker, time.time())
    with spawn_pool(args.workers, args.threads_per_worker, init_worker, initargs) as pool:
        with tqdm(total=sum(map(len, starts.values())), desc="expert rollouts", disable=args.no_progress,
                  dynamic_ncols=True) as bar:
            found = roll_out(pool, suite, starts, args.episodes, args.workers, bar)
        for task, f in found.items():
            f["kept"] = keep_first(f["records"], args.episodes)[0]
            written = bool(f["kept"]) and not args.dry_run
            f["file"] = recorded(out / f"{f['meta']['task_name']}_demo.hdf5") if written else None
        render_s = dict.fromkeys(tasks, 0.0)
        if not args.dry_run:
            with tqdm(total=sum(len(f["kept"]) for f in found.values()), desc="rendering kept episodes",
                      disable=args.no_progress, dynamic_ncols=True) as bar, writing(out):  # a full disk: one line
                render_s = write_files(pool, suite, args.camera_size, found, args.workers, bar, distractors, cameras,
                                       args.action_noise)
    results = [task_summary(suite, t, found[t], args.episodes, max_attempts, render_s[t]) for t in tasks]
    for r in results:
        capped = " (--attempts cap reached)" if r["successes"] < args.episodes else ""
        print(f"{r['suite']} task {r['task_id']:2d}: {r['successes']}/{r['attempts']} "
              f"({100 * r['success_rate']:.0f}%){capped} rollout {r['rollout_s_per_episode']} s/ep, "
              f"render {r['render_s_per_episode']} s/ep  {r['task_name']}")
    summary = {"suite": suite, "episodes_per_task": args.episodes, "camera_size": args.camera_size,
               "cameras": list(cameras), "init_states": args.init_states, "max_attempts": max_attempts, "seed": args.seed,
               "distractors": distractors.model_dump() if distractors is not None else None,
               "action_noise": args.action_noise,
               "workers": args.workers, "threads_per_worker": args.threads_per_worker, "versions": versions(),
               "wall_s": round(time.time() - start, 1),
               "tasks": results}
    with replacing(out / "generation.json") as staging:
        staging.write_text(json.dumps(summary, indent=2))
    return 0 if all(r["successes"] > 0 for r in results) else 1


if __name__ == "__main__":
    from lara.errors import run_command

    sys.exit(run_command("lara data", main, sys.argv[1:]))
