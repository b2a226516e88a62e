"""Protocol hygiene: keep training starts apart from evaluation's init states, and evaluate at the training size.

The standard evaluation runs trial i from the benchmark's fixed init state i, so demonstrations that start
from those init states put the evaluation's own starts in the training data. `lara data generate` therefore
starts every episode from a fresh placement sampled by the env (`--init-states fresh`, the default) and takes
the benchmark's init states only on request (`--init-states A:B`); it records which in `generation.json`
(per task `init_states`) and in each demo's attrs (`init_state_index` or `placement_seed`).

`lara eval libero --policy checkpoint:RUN/final/vla` reads the run's `RUN/final/recipe.json` to learn which
benchmark init states the training data used (`training_init_states`), refuses trials on them unless
asked (`check_init_states`), and defaults its render size to the one the policy was trained at
(`policy_image_size`, `camera_size_for`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lara.benchmarks.libero.env import _benchmark
from lara.errors import InputError
from lara.policy import policy_image_size, recipe_of  # noqa: F401  (policy_image_size: still importable from here)

FRESH = "fresh"
PROTOCOL_CAMERA_SIZE = 256  # the community protocol's render size, for policies that do not say theirs


def parse_init_states(text: str) -> range | None:
    """`--init-states`: 'fresh' -> None (fresh placements); 'A:B' -> range(A, B) (the benchmark's fixed states)."""
    if text == FRESH:
        return None
    start, sep, stop = text.partition(":")
    if sep and start.isdigit() and stop.isdigit() and int(start) < int(stop):
        return range(int(start), int(stop))
    raise ValueError(f"--init-states must be 'fresh' (new placements, the default) or 'A:B' with A < B (the "
                     f"benchmark's fixed init states A..B-1, which evaluation uses), got {text!r}; e.g. 25:50.")


def placement_seed(base_seed: int, task: int, attempt: int) -> int:
    """The recorded seed of a task's attempt-th fresh placement (`LiberoEnv.reset(seed=...)` reproduces it)."""
    return base_seed * 100003 + task * 1009 + attempt


class TrainInitStateOverlap(InputError):
    """Evaluation trials would start from init states the policy's training data started from."""


@dataclass
class TrainingInitStates:
    """What a checkpoint's training data started from: benchmark init states per (suite, task_id), and the
    data paths whose starts could not be told (missing files, or files without per-demo records)."""

    recipe: Path
    benchmark: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def add(self, suite: str, task: int, indices) -> None:
        known = set(self.benchmark.get((suite, task), [])) | {int(i) for i in indices}
        if known:
            self.benchmark[(suite, task)] = sorted(known)


def _from_generation_json(path: Path, found: TrainingInitStates) -> bool:
    """Read a generated folder's init-state records; False when it has none (older folders, other data)."""
    summary_path = path / "generation.json"
    if not summary_path.is_file():
        return False
    tasks = json.loads(summary_path.read_text()).get("tasks", [])
    if not tasks or not all("init_states" in t for t in tasks):
        return False
    for task in tasks:
        if task["init_states"]["source"] == "benchmark":
            found.add(task["suite"], task["task_id"], task["init_states"]["indices"])
    return True


def _from_hdf5(path: Path, found: TrainingInitStates) -> None:
    """Read the per-demo `init_state_index` attrs of a file written by `lara data generate`."""
    from lara.data.libero_hdf5 import LiberoFileError, demo_names, open_libero_hdf5

    try:
        handle = open_libero_hdf5(path)
    except LiberoFileError:  # unreadable: training skipped it or failed on it; either way nothing to check
        found.unknown.append(str(path))
        return
    with handle:
        env_args = json.loads(handle["data"].attrs.get("env_args", "{}"))
        demos = [handle["data"][name].attrs for name in demo_names(handle)]
        if "suite" not in env_args or not all("init_state_index" in d or "placement_seed" in d for d in demos):
            found.unknown.append(str(path))
            return
        found.add(env_args["suite"], int(env_args["task_id"]),
                  [d["init_state_index"] for d in demos if "init_state_index" in d])


def training_init_states(policy_spec: str) -> TrainingInitStates | None:
    """The benchmark init states a checkpoint's training data (recipe `data.paths`, `pretrain.video_paths` and
    `posttrain.lam_warmup_paths`) started from; None when the policy is not a run's `final/vla` with a recipe.json
    beside it."""
    recipe = recipe_of(policy_spec)
    if recipe is None:
        return None
    from lara.data.libero_source import resolve_files

    config = json.loads(recipe.read_text())
    paths = [*config.get("data", {}).get("paths", []), *config.get("pretrain", {}).get("video_paths", []),
             *config.get("posttrain", {}).get("lam_warmup_paths", [])]
    found = TrainingInitStates(recipe)
    for path in (Path(p["path"] if isinstance(p, dict) else p) for p in paths):  # a path or a {path, ...} spec
        if path.is_dir() and _from_generation_json(path, found):
            continue
        try:
            files = resolve_files([path])
        except FileNotFoundError:
            found.unknown.append(str(path))
            continue
        for file in files:
            _from_hdf5(file, found)
    return found


def overlap(trials: dict[tuple[str, int], list[int]], train: TrainingInitStates | None) -> list[dict]:
    """Evaluation init states per (suite, task_id) that the training data started from, as records."""
    if train is None:
        return []
    shared = []
    for (suite, task), indices in sorted(trials.items()):
        common = sorted(set(indices) & set(train.benchmark.get((suite, task), [])))
        if common:
            shared.append({"suite": suite, "task_id": task, "indices": common})
    return shared


def describe(records: list[dict]) -> str:
    """[{'suite': 'libero_object', 'task_id': 1, 'indices': [0, 1]}] -> 'libero_object task 1: init states 0-1'."""
    def spans(indices: list[int]) -> str:
        runs, start = [], indices[0]
        for previous, current in zip(indices, indices[1:] + [None]):
            if current != previous + 1:
                runs.append(str(start) if start == previous else f"{start}-{previous}")
                start = current
        return ",".join(runs)
    return "; ".join(f"{r['suite']} task {r['task_id']}: init states {spans(r['indices'])}" for r in records)


def trial_init_states(jobs: list[tuple]) -> dict[tuple[str, int], list[int]]:
    """The benchmark init states the trials start from (trial i -> state i modulo their number), per (suite, task)."""
    trials: dict[tuple[str, int], set[int]] = {}
    for suite, task, trial, *_ in jobs:
        trials.setdefault((suite, task), set()).add(trial)
    counts = {(suite, task): len(_benchmark(suite).get_task_init_states(task)) for suite, task in trials}
    return {key: sorted({t % counts[key] for t in ts}) for key, ts in trials.items()}


def check_init_states(policy: str, jobs: list[tuple], allow_train_init_states: bool) -> dict:
    """results.json's init-state records; raises `TrainInitStateOverlap` when trials would start from init
    states the checkpoint's training data started from (warns instead with `allow_train_init_states`)."""
    used = trial_init_states(jobs)
    train = training_init_states(policy)
    shared = overlap(used, train)
    if train is not None and train.unknown:
        warnings.warn(f"cannot tell which init states the training data {', '.join(train.unknown)} (from "
                      f"{train.recipe}) started from: the overlap check covers the rest only", stacklevel=3)
    if shared and not allow_train_init_states:
        raise TrainInitStateOverlap(
            f"the policy was trained on demonstrations that start from the evaluation's own init states "
            f"({describe(shared)}; per {train.recipe}): evaluate other tasks, or retrain on `lara data generate "
            "--init-states fresh` data, or pass --allow-train-init-states to run anyway (recorded in results.json)")
    if shared:
        warnings.warn(f"evaluating on init states the policy was trained from ({describe(shared)}); "
                      "results.json records the overlap", stacklevel=3)
    return {"init_states": [{"suite": s, "task_id": t, "source": "benchmark", "indices": i}
                            for (s, t), i in sorted(used.items())],
            "train_init_states": None if train is None else [{"suite": s, "task_id": t, "indices": i}
                                                             for (s, t), i in sorted(train.benchmark.items())],
            "train_init_state_overlap": shared}


def camera_size_for(requested: int | None, trained: int | None) -> tuple[int, str | None]:
    """The render size and a warning: `requested` when given (warned about when it differs from the policy's
    training size), else the training size, else the protocol's 256 px."""
    if requested is None:
        return (trained or PROTOCOL_CAMERA_SIZE), None
    if trained is not None and requested != trained:
        return requested, (f"rendering at --camera-size {requested} px, but the policy was trained on {trained} px "
                           f"images; omit --camera-size to render at {trained} px")
    return requested, None
