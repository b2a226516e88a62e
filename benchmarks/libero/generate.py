"""Generate scripted LIBERO demonstrations in the LIBERO HDF5 schema.

    lara data generate --suite object --tasks 0,1 --episodes 20 --camera-size 128 --out data/scripted

Each episode starts from one of the benchmark's fixed init states, waits the 10 settling steps, then
the privileged `ScriptedExpert` acts (physics only, no cameras: ~10x faster on CPU); after the first
`done` the gripper opens and the hand retreats, and the episode is kept only if the task is still
solved at its end. Kept episodes are rendered afterwards from their stored simulator states (exact by
construction), written to `OUT/<task_name>_demo.hdf5`, and the per-task success rate and timing go to
`OUT/generation.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

from lara.benchmarks.libero.env import (NUM_WAIT_STEPS, WAIT_ACTION, LiberoEnv, _benchmark, resolve_suite,
                                        resolve_task, select_gl_backend, task_names, versions)
from lara.benchmarks.libero.expert import ScriptedExpert, check_covered

TAIL_STEPS = 25  # release-and-retreat steps after the first `done` (at least)
RELEASED_STEPS = 10  # and the tail ends with the gripper open this long


def rollout(env: LiberoEnv, expert: ScriptedExpert, init_state_index: int) -> dict:
    """One unrendered expert episode: per-step sim states, actions and proprioception, and success."""
    obs = env.reset(init_state_index)
    for _ in range(NUM_WAIT_STEPS):
        obs, _ = env.step(WAIT_ACTION)
    expert.bind(env)
    expert.reset(env.instruction)
    keys = ("states", "actions", "ee_states", "gripper_states", "joint_states", "dones")
    steps = {k: [] for k in keys}
    first_done, done, open_steps = None, False, 0
    for t in range(env.max_steps + 3 * TAIL_STEPS):
        action = expert.act(obs)[0]
        steps["states"].append(env.sim_state())
        steps["ee_states"].append(np.concatenate([obs["ee_pos"], obs["ee_ori"]]))
        steps["gripper_states"].append(obs["gripper_qpos"])
        steps["joint_states"].append(obs["joint_qpos"])
        steps["actions"].append(action)
        obs, done = env.step(action)
        steps["dones"].append(done)
        open_steps = open_steps + 1 if action[6] < 0 else 0
        if done and first_done is None:
            first_done = t
            expert.release()
        if first_done is None and t + 1 >= env.max_steps:
            break
        if first_done is not None and t - first_done >= TAIL_STEPS and open_steps >= RELEASED_STEPS:
            break  # (a knob twist finishes before the hand lets go: the tail can be longer)
    episode = {k: np.asarray(v) for k, v in steps.items()}
    episode["success"] = first_done is not None and bool(env.env.check_success())
    episode["first_done"] = first_done
    return episode


def render(env: LiberoEnv, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upright agentview and wrist images [T, H, W, 3] of stored sim states."""
    frames = [env.render_state(s) for s in states]
    return (np.stack([f["agentview_rgb"] for f in frames]), np.stack([f["eye_in_hand_rgb"] for f in frames]))


def generate_task(suite: str, task: int, episodes: int, camera_size: int, out: str, seed: int,
                  dry_run: bool = False, max_attempts: int | None = None) -> dict:
    """Roll out init states in order until `episodes` successes (or `max_attempts` tries, or the init states run
    out); write the file (`dry_run`: roll out and count only, no rendering, no file)."""
    from lara.data.libero_hdf5 import LiberoHDF5Writer

    start = time.time()
    physics = LiberoEnv(suite, task, camera_size=None, seed=seed)
    expert = ScriptedExpert()
    kept, attempts = [], []
    for index in range(min(len(physics.init_states), max_attempts or len(physics.init_states))):
        if len(kept) == episodes:
            break
        t0 = time.time()
        episode = rollout(physics, expert, index)
        attempts.append({"init_state": index, "success": episode["success"], "steps": len(episode["actions"]),
                         "seconds": round(time.time() - t0, 2)})
        if episode["success"]:
            kept.append((index, episode))
    rollout_s = time.time() - start
    path = Path(out) / f"{physics.task_name}_demo.hdf5"
    problem_info = {"problem_name": physics.env.problem_name, "domain_name": physics.env.domain_name}
    env_args = {"env_name": physics.env.problem_name, "type": 1, "suite": physics.suite, "task_id": task,
                "env_kwargs": {"camera_heights": camera_size, "camera_widths": camera_size,
                               "camera_names": ["agentview", "robot0_eye_in_hand"], "controller": "OSC_POSE"}}
    render_start = time.time()
    if kept and not dry_run:
        camera = LiberoEnv(suite, task, camera_size=camera_size, seed=seed)
        with LiberoHDF5Writer(path, language=physics.instruction, problem_info=problem_info, env_args=env_args,
                              bddl_file_name=physics.bddl_file) as writer:
            for index, ep in kept:
                agentview, wrist = render(camera, ep["states"])
                writer.add_demo(actions=ep["actions"], agentview_rgb=agentview, eye_in_hand_rgb=wrist,
                                ee_states=ep["ee_states"], gripper_states=ep["gripper_states"],
                                joint_states=ep["joint_states"], states=ep["states"],
                                attrs={"success": True, "init_state_index": index, "scripted": True})
        camera.close()
    render_s = time.time() - render_start
    physics.close()
    return {
        "suite": physics.suite, "task_id": task, "task_name": physics.task_name,
        "instruction": physics.instruction, "file": str(path) if kept and not dry_run else None,
        "attempts": len(attempts), "successes": len(kept),
        "success_rate": len(kept) / max(len(attempts), 1),
        "rollout_s_per_episode": round(rollout_s / max(len(attempts), 1), 2),
        "render_s_per_episode": round(render_s / max(len(kept), 1), 2),
        "wall_s": round(time.time() - start, 1), "episodes": attempts,
    }


def _generate_task_star(args: tuple) -> dict:
    return generate_task(*args)


def parse_tasks(text: str | None, suite: str) -> list[int]:
    """'0,1' -> [0, 1]; None -> every task of the suite."""
    if text is None:
        return list(range(len(task_names(suite))))
    return [resolve_task(suite, t.strip()) for t in text.split(",") if t.strip()]


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara data generate", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["generate"], help="what to do (only `generate` for now)")
    p.add_argument("--suite", required=True, help="LIBERO suite: spatial, object, goal (all but the wine rack task)")
    p.add_argument("--tasks", default=None, help="comma-separated task indices or names (default: all)")
    p.add_argument("--episodes", type=int, default=20, help="successful episodes to keep per task")
    p.add_argument("--attempts", type=int, default=None,
                   help="try at most this many init states per task (default: all 50); with --dry-run and "
                        "--episodes equal to it: the success rate over init states 0..N-1")
    p.add_argument("--camera-size", type=int, default=128, help="rendered image size in pixels")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (one task each)")
    p.add_argument("--seed", type=int, default=0, help="env seed")
    p.add_argument("--dry-run", action="store_true",
                   help="measure the expert only: roll out and count successes, render and write nothing")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    suite = resolve_suite(args.suite)
    select_gl_backend()  # once here; spawned workers inherit MUJOCO_GL
    tasks = parse_tasks(args.tasks, suite)
    uncovered = uncovered_tasks(suite, tasks)
    if uncovered:
        names = task_names(suite)
        covered = [t for t in range(len(names)) if t not in uncovered_tasks(suite, list(range(len(names))))]
        listing = "\n".join(f"  {t}: {names[t]}: {why}" for t, why in uncovered.items())
        parser.error(f"the scripted expert cannot solve these {suite} tasks:\n{listing}\n"
                     f"Tasks it covers: --tasks {','.join(map(str, covered))}")
    jobs = [(suite, t, args.episodes, args.camera_size, args.out, args.seed, args.dry_run, args.attempts)
            for t in tasks]
    start = time.time()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            results = list(pool.imap(_generate_task_star, jobs))
    else:
        results = [generate_task(*job) for job in jobs]
    for r in results:
        print(f"{r['suite']} task {r['task_id']:2d}: {r['successes']}/{r['attempts']} "
              f"({100 * r['success_rate']:.0f}%) rollout {r['rollout_s_per_episode']} s/ep, "
              f"render {r['render_s_per_episode']} s/ep  {r['task_name']}")
    summary = {"suite": suite, "episodes_per_task": args.episodes, "camera_size": args.camera_size,
               "seed": args.seed, "versions": versions(), "wall_s": round(time.time() - start, 1), "tasks": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "generation.json").write_text(json.dumps(summary, indent=2))
    return 0 if all(r["successes"] > 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
