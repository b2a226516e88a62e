"""The one rollout loop of `lara eval` and `lara data generate`: a policy's action chunks run in a simulated env,
episode by episode, in spawned worker processes (`run_jobs`, `run_episode`) or in this one (`play`).

What differs between benchmarks, and between evaluating and generating demonstrations, is a small env adapter
(`LiberoEpisodes` in `libero/evaluate.py`, `SimplerEpisodes` in `simpler/evaluate.py`; the generators'
`LiberoDemonstrations` and `SimplerDemonstrations`, whose `step` records each step and whose `done` says the
demonstration is over), a picklable object sent to each worker once:

    load_policy(spec)            the benchmark's policy (`scripted` is its own privileged expert)
    env_key(episode)             which env an episode needs; a worker keeps one env and rebuilds it when the key changes
    make_env(key, policy)        that env, its observations already in `lara.policy` keys
    episode_seed(episode)        the seed of Python's, numpy's and torch's generators for the episode
    reset(env, episode) -> obs   the episode's start (a benchmark init state, a SIMPLER configuration)
    wait_steps                   still steps before the policy acts (LIBERO's 10 settling steps; not in the budget)
    stops_at_success             end the episode at the first `done` (LIBERO) or run the whole budget (SIMPLER)
    step(env, action)            -> (obs, done, info): the action mapping to the simulator and the success signal
    frame(env, obs)              the video frame of a step;  video_fps: the video's frame rate
    record(env, episode, done, info, finished, steps)   the benchmark's own fields of the episode record

A job is `(*episode, max_steps or None, video path or None)`; `episode` is the adapter's own tuple (LIBERO:
suite, task, trial; SIMPLER: env_id, seed, episode_id). Every action's gripper is binarised (+1 close, -1 open)
before the adapter maps it; a step without an action (a chunk still being computed, `lara.benchmarks.execution`)
holds the arm with the gripper as last commanded. A policy that raises, or returns a chunk that is not a finite
[T, 7] array, fails its episode with the reason, and the evaluation goes on. The generators call `run_episode` from
their own worker jobs (LIBERO's try a chunk of starts each) and stop on a failing expert: it is a bug, not an attempt.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from lara.benchmarks.execution import Execution, hold_action
from lara.benchmarks.workers import run_in_pool
from lara.policy import ACTION_DIM

_WORKER: dict = {}  # per-process state: the env adapter, the policy and the env of the current key


def check_chunk(chunk) -> str | None:
    """Why an action chunk is unusable (None when it is a finite float array [T, 7], T >= 1)."""
    array = np.asarray(chunk)
    if array.ndim == 1 and array.shape[0] == ACTION_DIM:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != ACTION_DIM or array.shape[0] == 0:
        return f"policy returned actions of shape {list(array.shape)}, expected [T, {ACTION_DIM}] with T >= 1"
    if not np.issubdtype(array.dtype, np.number):
        return f"policy returned actions of dtype {array.dtype}, expected float"
    if not np.all(np.isfinite(array)):
        return "policy returned NaN or inf actions"
    return None


def seed_everything(seed: int) -> None:
    """Seed Python's and numpy's global generators, and torch's when a policy imported it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def init_worker(bench, policy_spec: str, threads: int, spawned_at: float, strategy: Execution = Execution()) -> None:
    """A worker's start: its policy loaded once; envs are built by the first episode that needs them."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    _WORKER.update(bench=bench, policy=bench.load_policy(policy_spec), env=None, key=None, strategy=strategy,
                   startup_s=time.time() - spawned_at)  # spawn, imports and policy load


def worker_env(key) -> tuple:
    """The worker's env for `key` (built when the key changes, the previous one closed) and the seconds it took."""
    if _WORKER["key"] == key:
        return _WORKER["env"], 0.0
    start = time.time()
    if _WORKER["env"] is not None:
        _WORKER["env"].close()
    _WORKER["env"] = _WORKER["bench"].make_env(key, _WORKER["policy"])
    _WORKER["key"] = key
    return _WORKER["env"], time.time() - start


def play(bench, policy, env, episode, max_steps: int | None = None, video: str | None = None,
         strategy: Execution = Execution()) -> dict:
    """One episode of `policy` in `env` (the loop itself, in this process) -> the adapter's record plus the loop's
    counts and timing. `max_steps` None: the env's own budget."""
    max_steps = max_steps or env.max_steps
    seed_everything(bench.episode_seed(episode))
    start, cpu_start = time.time(), time.process_time()
    obs = bench.reset(env, episode)
    if hasattr(policy, "bind"):  # privileged policies (the scripted experts) read the live sim
        policy.bind(env)
    policy.reset(env.instruction)
    frames = [bench.frame(env, obs)] if video else []
    gripper = -1.0  # open, as every episode starts
    for _ in range(bench.wait_steps):
        obs, _, _ = bench.step(env, hold_action(gripper))
        frames += [bench.frame(env, obs)] if video else []
    steps, done, info, reason = 0, False, {}, None
    schedule = strategy.schedule()
    while steps < max_steps and not (done and bench.stops_at_success):
        if schedule.wants_chunk():
            try:
                chunk = policy.act(obs)
            except Exception as error:  # a crashing policy fails its episode, not the whole evaluation
                reason = f"policy.act raised {type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
                break
            reason = check_chunk(chunk)
            if reason is not None:
                break
            schedule.submit(np.asarray(chunk, dtype=np.float64).reshape(-1, ACTION_DIM))
        action = schedule.next_action()  # None: the chunk is still being computed, the arm holds
        if action is None:
            action = hold_action(gripper)
        action[-1] = gripper = 1.0 if action[-1] > 0 else -1.0  # binarised gripper: +1 close, -1 open
        obs, done, info = bench.step(env, action)
        steps += 1
        frames += [bench.frame(env, obs)] if video else []
    seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start  # all the process's threads
    if video:
        import imageio.v2 as imageio

        Path(video).parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video, frames, fps=bench.video_fps, macro_block_size=1)
    return {**bench.record(env, episode, done, info, reason is None, steps),
            "env_steps": bench.wait_steps + steps, "chunks": schedule.chunks, "holds": schedule.holds,
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "failure_reason": reason,
            "video": video}


def run_episode(job: tuple) -> dict:
    """One episode in a worker: `(*episode, max_steps or None, video path or None)` -> its record, with the
    worker's own fields."""
    *episode, max_steps, video = job
    env, build_s = worker_env(_WORKER["bench"].env_key(episode))
    record = play(_WORKER["bench"], _WORKER["policy"], env, episode, max_steps, video, _WORKER["strategy"])
    return {**record, "worker_pid": os.getpid(), "worker_startup_s": round(_WORKER["startup_s"], 2),
            "env_build_s": round(build_s, 2)}


def run_jobs(jobs: list[tuple], bench, policy_spec: str, workers: int, threads: int = 1,
             strategy: Execution = Execution()) -> Iterator[dict]:
    """Run episodes in `workers` spawned processes (`workers.run_in_pool`; one worker too: the same code path, so
    1 vs N workers compare fairly), each with its thread pools at `threads`; yields records as they finish."""
    initargs = (bench, policy_spec, threads, time.time(), strategy)
    yield from run_in_pool(workers, threads, init_worker, initargs, run_episode, jobs)


def follow(records: Iterable[dict], total: int, desc: str, progress: bool, where: Callable[[dict], str]) -> list[dict]:
    """The records as they come, behind a progress bar with the running success rate; a failed episode's first
    line is printed under the bar, after `where(record)` (which episode it was)."""
    from tqdm import tqdm

    done = []
    bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)
    for record in records:
        done.append(record)
        bar.update(1)
        successes = sum(r["success"] for r in done)  # beside tqdm's episodes done/total, rate and ETA
        bar.set_postfix(success=f"{successes}/{len(done)} ({100 * successes / len(done):.1f}%)")
        if record["failure_reason"]:
            bar.write(f"{where(record)} failed: {record['failure_reason'].splitlines()[0]}")
    bar.close()
    return done


def print_holds(results: dict, steps_key: str) -> None:
    """How many of the episodes' `steps_key` steps the arm waited for a chunk (a simulated inference latency), when
    it did."""
    episodes = [e for task in results["tasks"] for e in task["episodes"]]
    holds, steps = sum(e["holds"] for e in episodes), sum(e[steps_key] for e in episodes)
    if holds:
        print(f"held on {holds} of {steps} steps waiting for chunks ({holds / len(episodes):.1f} per episode)")
