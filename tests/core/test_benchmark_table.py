"""A toy benchmark, declared the way benchmarks/<name>/ declares one, and the one table the command line reads.

A benchmark is a folder plus one row (issue 36): its folder declares `BENCHMARK` (its `lara eval` flags, how it
evaluates, its env adapter for the rollout loop, its scripted expert, its demonstration generator) and
`lara.benchmarks.table.BENCHMARKS` lists it. This module is such a folder for a toy benchmark ("toy": a point that
moves to a goal); the tests add it as a row and see `lara eval` and `lara data generate` pick it up, and its episodes
and its generator run through `lara.benchmarks.rollout`.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="the table's LIBERO generator imports mujoco (the libero extra); "
                    ".venv-tf440 has only the core")
from lara import cli  # noqa: E402
from lara.benchmarks import cli as eval_cli  # noqa: E402
from lara.benchmarks import generate as generate_cli  # noqa: E402
from lara.benchmarks import policy_spec, rollout  # noqa: E402
from lara.benchmarks.benchmark import Benchmark  # noqa: E402
from lara.benchmarks.table import BENCHMARKS, DEFAULT  # noqa: E402
from lara.policy import load_policy  # noqa: E402

SHARED_EVAL_FLAGS = {"-h", "--help", "--policy", "--no-video", "--out", "--overwrite", "--execute-steps",
                     "--prefetch-steps", "--ensemble", "--latency-steps"}
ADAPTER = ("load_policy", "env_key", "make_env", "episode_seed", "reset", "wait_steps", "stops_at_success", "step",
           "frame", "video_fps", "record")  # what `lara.benchmarks.rollout` reads of an env adapter


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def own_flags(add_options) -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    return flags(parser)


# ---------------------------------------------------------------------------------------------------------------
# The toy benchmark: what benchmarks/toy/ would hold


class ToyEnv:
    """A point on a line that should reach `goal`; obs in `lara.policy` keys (one camera, the robot state)."""

    max_steps = 20

    def __init__(self, goal: float):
        self.goal, self.instruction, self.position = goal, f"move to {goal}", 0.0

    def observe(self) -> dict:
        image = np.full((8, 8, 3), int(255 * min(abs(self.position) / 4, 1)), dtype=np.uint8)
        return {"agentview_rgb": image, "position": self.position}

    def close(self) -> None:
        pass


class ToyExpert:
    """The privileged expert: a chunk of two steps towards the goal, read from the live env (`bind`)."""

    def bind(self, env: ToyEnv) -> None:
        self.env = env

    def reset(self, instruction: str) -> None:
        pass

    def act(self, obs: dict) -> np.ndarray:
        step = np.clip(self.env.goal - obs["position"], -1, 1)
        return np.array([[step, 0, 0, 0, 0, 0, -1]] * 2)  # (2, 7)


class ToyEpisodes:
    """The env adapter: an episode is (goal, trial)."""

    wait_steps, stops_at_success, video_fps = 1, True, 5

    def load_policy(self, spec: str):
        return load_policy(spec, named={"scripted": ToyExpert})  # a spawned worker reads no test's table

    def env_key(self, episode) -> float:
        return episode[0]

    def make_env(self, goal: float, policy) -> ToyEnv:
        return ToyEnv(goal)

    def episode_seed(self, episode) -> int:
        return episode[1]

    def reset(self, env: ToyEnv, episode) -> dict:
        env.position = 0.0
        return env.observe()

    def step(self, env: ToyEnv, action: np.ndarray) -> tuple[dict, bool, dict]:
        env.position += float(action[0])
        return env.observe(), abs(env.position - env.goal) < 1e-9, {}

    def frame(self, env: ToyEnv, obs: dict) -> np.ndarray:
        return obs["agentview_rgb"]

    def record(self, env: ToyEnv, episode, done: bool, info: dict, finished: bool, steps: int) -> dict:
        return {"goal": episode[0], "trial": episode[1], "success": bool(done), "steps": steps}


def add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--goals", default="2,3", help="comma-separated goals, one task each")
    p.add_argument("--trials", type=cli.integer(1), default=2, help="trials per goal")


def evaluate(args: argparse.Namespace) -> dict:
    """`lara eval toy`'s flags -> results.json's content, through the one rollout loop."""
    jobs = [(float(goal), trial, None, None) for goal in eval_cli.listed("--goals", args.goals)
            for trial in range(args.trials)]
    start = time.time()
    records = list(rollout.run_jobs(jobs, ToyEpisodes(), args.policy, workers=1))
    wall = time.time() - start
    results = {"tasks": [{"episodes": records}], "average_success_rate": np.mean([r["success"] for r in records]),
               "wall_time_s": round(wall, 1), "env_steps_per_s": round(sum(r["env_steps"] for r in records) / wall, 1)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, default=float))
    print(f"toy: {sum(r['success'] for r in records)}/{len(records)}")
    return results


def add_options(p: argparse.ArgumentParser) -> None:
    """The toy generator's flags (`Benchmark.generator` names this module)."""
    p.add_argument("--goals", default="1,2", help="comma-separated goals")
    p.add_argument("--out", required=True, help="output folder")


def generate(args: argparse.Namespace) -> int:
    """The expert's episodes, run by the rollout loop's own workers, written as one JSON file."""
    jobs = [(float(goal), 0, None, None) for goal in args.goals.split(",")]
    records = sorted(rollout.run_jobs(jobs, ToyEpisodes(), "scripted", workers=1), key=lambda r: r["goal"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "generation.json").write_text(json.dumps(records))
    return 0


BENCHMARK = Benchmark(name="toy", description="A point that moves to a goal: a benchmark in one test module.",
                      add_eval_options=add_eval_options, evaluate=f"{__name__}:evaluate",
                      episodes=f"{__name__}:ToyEpisodes", expert=f"{__name__}:ToyExpert", generator=__name__)


@pytest.fixture
def toy_row(monkeypatch):
    """The one row a third benchmark adds to lara.benchmarks.table."""
    monkeypatch.setitem(BENCHMARKS, "toy", BENCHMARK)


# ---------------------------------------------------------------------------------------------------------------
# The table


def test_every_row_declares_what_the_command_line_and_the_rollout_loop_read(toy_row):
    for name, benchmark in BENCHMARKS.items():
        assert benchmark.name == name and benchmark.description
        assert callable(benchmark.load("evaluate"))
        adapter = benchmark.load("episodes")
        assert all(hasattr(adapter, part) for part in ADAPTER), [p for p in ADAPTER if not hasattr(adapter, p)]
        expert = benchmark.load("expert")
        assert callable(expert.act) and callable(expert.reset)
        generator = benchmark.load("generator")
        assert callable(generator.add_options) and callable(generator.generate) and generator.__doc__


def test_eval_and_generate_parsers_hold_the_shared_flags_and_exactly_each_benchmarks_own(toy_row):
    for name, benchmark in BENCHMARKS.items():
        own = own_flags(benchmark.add_eval_options)
        assert not own & SHARED_EVAL_FLAGS
        assert flags(eval_cli.build_parser(name)) == SHARED_EVAL_FLAGS | own, name
        parser = generate_cli.build_parser(name)
        assert flags(parser) == {"-h", "--help", "--bench"} | own_flags(benchmark.load("generator").add_options)
        bench = next(a for a in parser._actions if "--bench" in a.option_strings)
        assert bench.choices == list(BENCHMARKS) and bench.default == DEFAULT


def test_the_dispatchers_name_no_benchmark():
    """No per-benchmark flag, branch or table outside the benchmarks' folders and the table: the modules that build
    the flags and dispatch name no benchmark but in their docstrings (usage examples)."""
    names = [n for n in BENCHMARKS if n != "toy"]
    for module in (eval_cli, generate_cli, policy_spec, rollout):
        tree = ast.parse(Path(module.__file__).read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and id(n) not in docstrings]
        assert not [s for s in strings if any(name in s.lower() for name in names)], module.__name__


# ---------------------------------------------------------------------------------------------------------------
# A third benchmark is its folder plus one row


def test_a_new_row_appears_in_lara_eval_and_lara_data_generate(toy_row, capsys):
    assert cli.main(["eval", "--help"]) == 0
    assert "lara eval {libero,simpler,toy}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["eval", "toy", "--help"])
    shown = capsys.readouterr().out
    assert "--goals GOALS" in shown and "--trials TRIALS" in shown and "--execute-steps N" in shown
    assert "A point that moves to a goal" in shown and "--suite" not in shown
    with pytest.raises(SystemExit):
        cli.main(["data", "generate", "--bench", "toy", "--help"])
    shown = capsys.readouterr().out
    assert "usage: lara data generate --bench toy" in shown and "--goals GOALS" in shown
    assert "A toy benchmark, declared the way" in shown  # the generator module's docstring
    assert cli.main(["eval", "toy", "--policy", "scripted", "--trials", "0", "--out", "x"]) == 2  # its flag's range
    assert "argument --trials: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_scripted_is_the_expert_the_row_declares(toy_row):
    assert isinstance(policy_spec.load_policy("scripted", "toy"), ToyExpert)


@pytest.mark.slow
def test_a_new_benchmark_evaluates_and_generates_through_the_rollout_loop(toy_row, tmp_path, capsys):
    """`lara eval toy` and `lara data generate --bench toy` run its episodes in spawned rollout workers."""
    out = tmp_path / "eval"
    assert cli.main(["eval", "toy", "--policy", "scripted", "--goals", "2,3", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "toy: 4/4" in shown and "average: 100.0%" in shown and f"-> {out}/results.json" in shown
    episodes = json.loads((out / "results.json").read_text())["tasks"][0]["episodes"]
    # the expert's chunks of 2 run whole: goal 3 takes 3 steps, after the adapter's 1 wait step
    assert sorted((e["goal"], e["steps"], e["env_steps"], e["chunks"]) for e in episodes) == [
        (2.0, 2, 3, 1), (2.0, 2, 3, 1), (3.0, 3, 4, 2), (3.0, 3, 4, 2)]
    assert cli.main(["data", "generate", "--bench", "toy", "--goals", "1,4", "--out", str(tmp_path / "demos")]) == 0
    demos = json.loads((tmp_path / "demos" / "generation.json").read_text())
    assert [(d["goal"], d["success"], d["steps"]) for d in demos] == [(1.0, True, 1), (4.0, True, 4)]
