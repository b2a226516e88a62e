"""One cell of a study, (variant, seed): `lara train` then `lara eval libero`, each a subprocess, and its read-back.

OUT/cells/<variant>/seed<S>/ holds run/ (the training run), eval/ (results.json), train.log, eval.log and
cell.json: the recorded arguments of both commands, the commit each ran with whether its checkout was dirty and the
versions of torch, transformers, numpy and mujoco and the CPU (`*_source`) and, once each finished,
its wall time. A two-stage variant (config.StagedVariant) first trains first/ (first.log), and its run starts
from first/final/vla (and, with continue_lam, continues first/final/lara or first/final/lam as its LAM). A
variant may train on its own data.paths instead of the study's. A cell is skipped when its recorded arguments match and eval/results.json
exists; a half-done one is re-run (the training resumes from its own checkpoints). A cell whose recorded
arguments differ from the study's is refused (its run may hold hours of training): `replace_changed` retrains
one whose training arguments changed and re-evaluates one whose evaluation arguments changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lara.errors import InputError
from lara.outputs import replacing

from .config import StudyConfig, continues_lam, variant_parts

LAM_METRICS = {"code_usage": "lam/code_usage", "perplexity": "lam/perplexity", "align_cos": "align/cos",
               "z_std": "lam/z_std", "align_constant": "align/constant"}  # the cell record's name -> the key in the run's metrics.jsonl
FIRST_METRICS = {"latent_accuracy": "latent/accuracy", "latent_chance": "latent/chance"}  # of a first stage's run


class CellFailed(RuntimeError):
    """A cell's training or evaluation exited with an error (its log, `log`, says why)."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Cell:
    variant: str
    seed: int
    folder: Path
    train_args: list[str]  # `lara train` arguments, less output_dir (which follows from the folder)
    eval_args: list[str]  # `lara eval` arguments that decide the results, less --policy and --out
    camera_size: int
    first_args: list[str] | None = None  # a two-stage variant's first `lara train`, less output_dir

    @property
    def first(self) -> Path:
        return self.folder / "first"

    @property
    def run(self) -> Path:
        return self.folder / "run"

    @property
    def eval(self) -> Path:
        return self.folder / "eval"

    @property
    def name(self) -> str:
        return f"{self.variant}/seed{self.seed}"


def camera_size_of(recipe, name: str) -> int:
    """The evaluation's render size: the training data's image size, so the policy sees what it was trained on."""
    size = recipe.data.image_size
    if isinstance(size, (tuple, list)) and len(set(size)) == 1:
        size = size[0]
    if not isinstance(size, int):
        raise InputError(f"cell {name}: the recipe's data.image_size is {size!r}, but the evaluation renders square "
                         "images of the training size; set it for every variant, e.g. --set data.image_size=64")
    return size


def data_override(entries: list) -> str:
    """`data.paths=[...]` of the study's data: paths as they are, source entries as YAML flow mappings."""
    def item(entry) -> str:
        if isinstance(entry, Path):
            return str(entry)
        fields = entry.model_dump(mode="json", exclude_defaults=True)
        return yaml.safe_dump(fields, default_flow_style=True, sort_keys=False, width=1 << 20).strip()
    return f"data.paths=[{','.join(item(e) for e in entries)}]"


def _sets(overrides: list[str], key: str) -> bool:
    return any(o.split("=", 1)[0].strip() == key for o in overrides)


def plan_cells(study: StudyConfig) -> list[Cell]:
    """Every (variant, seed) cell with its commands; each cell's recipe is validated here, before anything runs.
    Seed by seed (every variant of seed 0 first), or group by group of `cell_order`, seed by seed in each: a study
    stopped early holds complete pairs with the baseline."""
    from lara.adapters.config import load_recipe

    def validated(preset: str, args: list[str], name: str):
        try:
            return load_recipe(preset, args)
        except (ValueError, FileNotFoundError) as error:
            raise InputError(f"cell {name}: " + "; ".join(line.strip() for line in str(error).splitlines())) from None

    data = data_override(study.data)
    tasks = ",".join(str(t) for t in study.tasks)
    cells = []
    for seed, variant in study.run_order():
        spec = study.all_variants()[variant]
        folder = study.out / "cells" / variant / f"seed{seed}"
        overrides, first = variant_parts(spec)
        first_args = None
        if first is not None:
            own_data = _sets(first.overrides, "data.paths")
            first_args = ["train", first.preset, *study.overrides, *first.overrides, *([] if own_data else [data]),
                          f"train.seed={seed}"]
            first_recipe = validated(first.preset, first_args[2:] + [f"output_dir={folder / 'first'}"],
                                     f"{variant}/seed{seed} (first stage)")
            overrides = [*overrides, f"model.path={folder / 'first' / 'final' / 'vla'}"]
            if continues_lam(spec):  # latent_pretrain exports its labeller as final/lam, the others final/lara
                artifact = "lam" if first_recipe.recipe == "latent_pretrain" else "lara"
                overrides.append(f"refine.lam_from={folder / 'first' / 'final' / artifact}")
        own_data = _sets(overrides, "data.paths")  # a variant on other data (e.g. an oracle with every label)
        train_args = ["train", study.preset, *study.overrides, *overrides, *([] if own_data else [data]),
                      f"train.seed={seed}"]
        recipe = validated(study.preset, train_args[2:] + [f"output_dir={folder / 'run'}"], f"{variant}/seed{seed}")
        size = camera_size_of(recipe, f"{variant}/seed{seed}")
        eval_args = ["eval", "libero", "--suite", study.suite, "--tasks", tasks, "--trials", str(study.trials),
                     "--camera-size", str(size), "--no-video"]
        eval_args += ["--max-steps", str(study.max_steps)] if study.max_steps else []
        cells.append(Cell(variant, seed, folder, train_args, eval_args, size, first_args))
    return cells


def source_commit() -> dict:
    """The commit of the checkout this study's code runs from ({"commit": None} outside a git checkout) and
    whether it had uncommitted changes: a study runs from its own worktree at a fixed commit."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


RECORDED_VERSIONS = ("torch", "transformers", "numpy", "mujoco")


def package_versions() -> dict[str, str | None]:
    """The versions of the packages that decide a cell's numbers (None: not installed), as its commands see them:
    they run under this interpreter."""
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    return {name: version(name) for name in RECORDED_VERSIONS}


def machine() -> dict[str, str | None]:
    """The CPU a phase runs on: its model name and the vector instructions torch's CPU kernels dispatch to
    (`torch.backends.cpu.get_cpu_capability()`: AVX512, AVX2, ...). They round differently: the reference study's
    baseline, seed 100, logged the same loss for its first 10 steps on an AVX2 and an AVX-512 machine and gradient
    norms 1e-6 apart, so a cell rerun on another kind of machine is another draw, not a replication."""
    import platform

    import torch

    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model or platform.processor() or platform.machine() or None,
            "capability": torch.backends.cpu.get_cpu_capability()}


def phase_record() -> dict:
    """What a cell records of each phase before it runs: the commit, whether the checkout was dirty, the versions,
    the machine's CPU."""
    return {**source_commit(), "versions": package_versions(), "machine": machine()}


def read_state(cell: Cell) -> dict:
    path = cell.folder / "cell.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(cell: Cell, state: dict) -> None:
    with replacing(cell.folder / "cell.json") as staging:
        staging.write_text(json.dumps(state, indent=1))


_RUNNING: set[subprocess.Popen] = set()  # the cells' commands running now, each the leader of its process group
_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by stop_running: no further command starts
# a process group of its own in the study's session (Python 3.10 has no process_group: a session of its own)
_OWN_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
STOP_GRACE_S = 30  # how long a stopped command gets to end after SIGTERM before SIGKILL


def stop_running() -> int:
    """End every cell command running now and everything it started (evaluation workers, data loaders): SIGTERM
    to each process group, SIGKILL after STOP_GRACE_S. How many were running. What a stopped study calls, so that
    no `lara train` goes on holding its run folder."""
    with _LOCK:
        _STOPPING.set()
        running = list(_RUNNING)
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + STOP_GRACE_S
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return len(running)


def stopping() -> bool:
    """Whether `stop_running` was called: a command failing now was ended by it, not by its own error."""
    return _STOPPING.is_set()


LAUNCHER_MODULES = {"accelerate launch": "accelerate.commands.launch", "torchrun": "torch.distributed.run"}


def launched(launcher: str, args: list[str]) -> list[str]:
    """`lara train ARGS` under a multi-process launcher: `accelerate launch ... -m lara.adapters.cli PRESET ...`.
    accelerate's and torchrun's launchers run as modules of this interpreter (the study's venv, wherever the job
    runs); any other launcher runs as given."""
    words = shlex.split(launcher)
    for name, module in LAUNCHER_MODULES.items():
        if words[:len(name.split())] == name.split():
            words = [sys.executable, "-m", module, *words[len(name.split()):]]
    return [*words, "-m", "lara.adapters.cli", *args[1:]]


def _subprocess(args: list[str], log: Path, threads: int, launcher: str | None = None) -> tuple[float, list[float]]:
    """Run `python -m lara.cli ARGS` with capped thread pools, output appended to `log`; its wall seconds and the
    machine's 1-minute load average [at the start, at the end] (a shared machine's figures need it beside them).
    A `launcher` runs a `train` command (see `launched`). The command leads its own process group, which
    `stop_running` ends when the study is stopped, in the study's session: Linux's autogroup scheduler weighs
    sessions against each other, so a command in a session of its own would ignore a study started under `nice`."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = launched(launcher, args) if launcher else [sys.executable, "-m", "lara.cli", *args]
    start, load = time.time(), os.getloadavg()[0]
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        with _LOCK:
            if _STOPPING.is_set():
                raise CellFailed("the study was stopped before this command started", log)
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                       env=env, **_OWN_GROUP)
            _RUNNING.add(process)
        try:
            code = process.wait()
        finally:
            with _LOCK:
                _RUNNING.discard(process)
    if code != 0:
        raise CellFailed(f"`lara {args[0]}` exited with {code}; see {log}", log)
    return round(time.time() - start, 1), [round(load, 2), round(os.getloadavg()[0], 2)]


def changes(cell: Cell, state: dict | None = None) -> list[str]:
    """What a recorded cell was run with differently from its arguments now: ['training'] (a retrained cell is
    evaluated afresh anyway), ['evaluation'] or []. `state`: its cell.json, when already read."""
    state = read_state(cell) if state is None else state
    if not state:
        return []
    if state.get("train") != cell.train_args or state.get("first") != cell.first_args:
        return ["training"]
    return ["evaluation"] if state.get("eval") != cell.eval_args else []


def prepare(cell: Cell, replace_changed: bool = False) -> tuple[dict, str]:
    """The cell's state, after discarding what no longer matches its arguments where `replace_changed`
    allows it, and what is left to do."""
    state = read_state(cell)
    if not state and cell.folder.is_dir() and any(cell.folder.iterdir()):
        raise CellFailed(f"{cell.folder} holds files but no cell.json, so it is not a study cell; "
                         "give the study a new --out or remove that folder")
    changed = changes(cell, state)
    if changed and not replace_changed:
        raise CellFailed(f"{cell.folder} was run with other {changed[0]} arguments; give the study a new --out, "
                         "or pass --replace-changed to discard that cell's " +
                         ("run and evaluation" if changed == ["training"] else "evaluation"))
    if changed == ["training"]:
        shutil.rmtree(cell.folder)  # another recipe: its checkpoints must not be resumed
        state = {}
    elif changed == ["evaluation"]:
        shutil.rmtree(cell.eval, ignore_errors=True)
        state.pop("eval_s", None)
    cell.folder.mkdir(parents=True, exist_ok=True)
    state.update(variant=cell.variant, seed=cell.seed, train=cell.train_args, eval=cell.eval_args)
    if cell.first_args is not None:
        state["first"] = cell.first_args
    _write_state(cell, state)
    if state.get("train_s") is None:
        return state, "train and evaluate"
    return state, "skip" if finished(cell, state) else "evaluate"


def finished(cell: Cell, state: dict) -> bool:
    """Whether the cell whose cell.json is `state` was trained and evaluated (with whatever arguments)."""
    return (state.get("train_s") is not None and state.get("eval_s") is not None
            and (cell.eval / "results.json").is_file())


def done(cell: Cell, state: dict) -> bool:
    """Whether the cell is finished with this study's arguments: what a re-run skips and a report reads."""
    return finished(cell, state) and not changes(cell, state)


def record_files(cell: Cell) -> list[Path]:
    """A cell's records, without weights: cell.json (its arguments and times: what a re-run needs to skip it),
    eval/results.json, and every phase's metrics.jsonl and data_split.json (what the report reads, and the split)."""
    logged = [path for name in ("metrics.jsonl", "data_split.json") for path in cell.folder.rglob(name)
              if not {"checkpoints", "wandb"} & set(path.relative_to(cell.folder).parts)]
    return [cell.folder / "cell.json", cell.eval / "results.json", *sorted(logged)]


def run_cell(cell: Cell, eval_workers: int, threads: int, say=print, replace_changed: bool = False,
             launcher: str | None = None) -> dict:
    """Train and evaluate a cell where needed, then read it back (see `read_cell`). A `launcher` (e.g. `accelerate
    launch --multi_gpu --num_processes 8`) runs its training commands, recorded in cell.json as `launcher`."""
    state, todo = prepare(cell, replace_changed)
    if launcher:
        state["launcher"] = launcher
    say(f"[{cell.name}] {'done before: skipped' if todo == 'skip' else todo}")
    if cell.first_args is not None and state.get("first_s") is None:
        state["first_source"] = phase_record()
        state["first_s"], state["first_load"] = _subprocess([*cell.first_args, f"output_dir={cell.first}"],
                                                            cell.folder / "first.log", threads, launcher)
        _write_state(cell, state)
        say(f"[{cell.name}] first stage trained in {state['first_s']:.0f} s")
    if state.get("train_s") is None:
        output_dir = f"output_dir={cell.run}"
        state["train_source"] = phase_record()
        state["train_s"], state["train_load"] = _subprocess([*cell.train_args, output_dir], cell.folder / "train.log",
                                                            threads, launcher)
        _write_state(cell, state)
        say(f"[{cell.name}] trained in {state['train_s']:.0f} s")
    if todo != "skip":
        args = [*cell.eval_args, "--policy", f"checkpoint:{cell.run / 'final' / 'vla'}", "--out", str(cell.eval),
                "--workers", str(eval_workers), "--threads-per-worker", str(threads),
                "--overwrite"]  # the cell's own evaluation, redone because its arguments or results changed
        state["eval_source"] = phase_record()
        state["eval_s"], state["eval_load"] = _subprocess(args, cell.folder / "eval.log", threads)
        _write_state(cell, state)
        say(f"[{cell.name}] evaluated in {state['eval_s']:.0f} s")
    return read_cell(cell, state)


def read_cell(cell: Cell, state: dict) -> dict:
    """A finished cell: success k/n per task, per-episode success by (task, trial), the last logged LAM and
    alignment metrics of its training (None where not logged, e.g. in the baseline), those of a first stage
    (`first_metrics`: the last logged latent-code accuracy and its chance level), its wall times, the load
    averages at the start and end of each (`load`) and the code each phase ran (`source`: None where a phase ran
    before cells recorded it)."""
    from lara.adapters.metrics import read_metrics

    results = json.loads((cell.eval / "results.json").read_text())
    episodes = sorted((e["task_id"], e["trial"], int(e["success"])) for t in results["tasks"] for e in t["episodes"])
    success = {str(t["task_id"]): [t["successes"], t["trials"]] for t in results["tasks"]}
    metrics = cell.run / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.is_file() else []
    last = {name: next((r[key] for r in reversed(records) if key in r), None) for name, key in LAM_METRICS.items()}
    first = cell.first / "metrics.jsonl"
    first_records = read_metrics(first) if cell.first_args is not None and first.is_file() else []
    last["first_metrics"] = {name: next((r[key] for r in reversed(first_records) if key in r), None)
                             for name, key in FIRST_METRICS.items()} if first_records else None
    return {"variant": cell.variant, "seed": cell.seed, "success": success, **last,
            "first_s": state.get("first_s"), "train_s": state["train_s"], "eval_s": state["eval_s"],
            "load": {phase: state.get(f"{phase}_load") for phase in ("first", "train", "eval")},
            "source": {phase: state.get(f"{phase}_source") for phase in ("first", "train", "eval")},
            "camera_size": cell.camera_size,
            "eval_seed": results["seed"], "episodes": [list(e) for e in episodes], "folder": str(cell.folder),
            "versions": results.get("versions", {})}
