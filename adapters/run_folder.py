"""A run folder belongs to one training: re-running it with another config is refused, not silently mixed.

A recipe resumes from the checkpoints in its `output_dir`. Were the config changed in between, the resumed
run would train on (or, when finished, merely re-export) weights that the new config did not produce, and
rewrite RUN/final/recipe.json with values that never trained them. So before anything runs, the config is
compared with the one the folder saved (RUN/final/recipe.json, else the newest checkpoint's
trainer_state.json) on every training-relevant field:

- a finished run (RUN/final/recipe.json) is never retrained or rewritten: a change is refused, and so is
  `train.resume=false`, which would train it afresh over its records;
- an unfinished one is refused unless `train.allow_config_change=true`, which resumes it under the new
  config and appends the change to RUN/config_changes.jsonl; `train.resume=false` starts it over, as before.

Training-relevant means anything that can change the trained weights or the data order: every field but
those in NOT_TRAINING_RELEVANT, so a field added later counts until it is shown not to.

Two more guards: a process that trains in a folder holds RUN/.lock (`holds_run_folder`), so a second one is
refused instead of writing the same steps beside it; and a finished run's RUN/final is checked against the
sizes and sha256 recorded at export (RUN/final/manifest.json) before a re-run says there is nothing to do.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from lara.errors import InputError
from lara.outputs import check_link, recorded, recorded_paths, writing

from . import checkpoints as ckpt

if TYPE_CHECKING:
    from .config import RecipeConfig

# Fields whose value cannot change the trained weights or the data order, and why:
NOT_TRAINING_RELEVANT = (
    "output_dir",  # the folder itself, however it is spelled
    "train.resume",  # whether to read the folder: checked separately below
    "train.allow_config_change",  # the override of this check
    "train.progress",  # a progress bar
    "train.wandb",  # where the logged values also go
    "train.trackers",  # where the logged values also go
    "train.log_every",  # how many steps a logged average spans: the loop reads values, never changes them
    "train.checkpoint_every",  # when state is saved: resuming from any step is exact (tests/adapters/test_trainer.py)
    "train.keep_checkpoints",  # how many saved states are kept
    "train.gradient_checkpointing",  # recomputes the same activations: the same losses (tests/adapters/test_scale.py)
    "train.num_workers",  # DataLoader processes: the order is a function of the step, reading draws no random numbers
    "lara.check_inputs",  # a NaN check that raises or changes nothing
    "refine.probe_samples",  # the probe judges the LAM before and after; it trains nothing
)
PHASES = ("checkpoints", "joint/checkpoints", "lam/checkpoints")  # newest phase first: where trainers save


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'train': {'lr': 1e-4}} -> {'train.lr': 1e-4}; lists stay whole values."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(_flat(value, f"{name}.") if isinstance(value, dict) and value else {name: value})
    return flat


def _ignored(name: str, recipe: str) -> bool:
    from .recipes import RECIPES, declared  # (the recipes' modules import this one)

    skip = NOT_TRAINING_RELEVANT + (declared(recipe).ignores if recipe in RECIPES else ())  # what it never reads
    return any(name == field or name.startswith(field + ".") for field in skip)


def _normalised(saved: dict) -> dict:
    """The saved config with today's defaults filled in (a field added since it was written takes its
    default), or as written when it no longer validates (its differences are then listed as they stand); an
    absolute path written by an earlier version as the config records it now (`RecipeConfig.record`)."""
    from .config import RecipeConfig  # (the config imports the recipes, which import this module)

    try:
        return RecipeConfig.model_validate(saved).record()
    except ValidationError:
        return recorded_paths(saved)


def differences(saved: dict, now: dict) -> dict[str, tuple[object, object]]:
    """Training-relevant fields whose values differ: {dotted name: (saved, now)}."""
    old, new = _flat(_normalised(saved)), _flat(recorded_paths(now))
    missing = "(absent)"
    names = sorted(set(old) | set(new))
    return {n: (old.get(n, missing), new.get(n, missing)) for n in names
            if old.get(n, missing) != new.get(n, missing) and not _ignored(n, now.get("recipe", ""))}


def saved_config(run_dir: Path) -> tuple[dict, Path] | None:
    """The config the folder's training last saved, and the file it is in; None for a fresh folder."""
    recipe = run_dir / "final" / "recipe.json"
    if recipe.is_file():
        return json.loads(recipe.read_text()), recipe
    for phase in PHASES:
        for checkpoint in ckpt.checkpoints(run_dir / phase):  # newest first; an unsealed one is invisible
            state = checkpoint / "trainer_state.json"
            if state.is_file():
                return json.loads(state.read_text()).get("config", {}), state
    return None


def _listing(changed: dict[str, tuple[object, object]]) -> str:
    shown = [f"{name}: {json.dumps(old)} -> {json.dumps(new)}" for name, (old, new) in list(changed.items())[:8]]
    more = f"; and {len(changed) - 8} more" if len(changed) > 8 else ""
    return "; ".join(shown) + more


def check_run_folder(cfg: RecipeConfig) -> bool:
    """Refuse a re-run that would mix two trainings in `cfg.output_dir` (see the module docstring).
    Returns whether the folder holds a finished run (RUN/final/recipe.json) of this very config."""
    found = saved_config(cfg.output_dir)
    if found is None:
        return False
    saved, source = found
    finished = source.parent.name == "final"
    if not cfg.train.resume:
        if finished:
            raise InputError(f"{cfg.output_dir} holds a finished run ({source}); train.resume=false would train it "
                             f"afresh over its records. Give a new output_dir")
        return False  # the unfinished run is started over: nothing of it is resumed
    changed = differences(saved, cfg.record())
    if not changed:
        if finished:
            _check_final(source.parent)
        return finished
    fields = f"{len(changed)} training-relevant field{'s' * (len(changed) > 1)}"
    where = (f"{cfg.output_dir} holds a {'finished' if finished else 'started'} run whose config ({source}) differs "
             f"in {fields} (saved -> now): {_listing(changed)}.")
    if finished:
        raise InputError(f"{where} A finished run is not changed: give a new output_dir (model.path={cfg.output_dir}"
                         f"/final/vla starts from its weights)")
    if not cfg.train.allow_config_change:
        raise InputError(f"{where} Give a new output_dir to train this config from scratch, or "
                         f"train.allow_config_change=true to resume the saved checkpoints under it")
    if main_process():  # every DDP process checks; one writes
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "saved_in": recorded(source),
                  "changes": {name: {"saved": old, "now": new} for name, (old, new) in changed.items()}}
        with open(cfg.output_dir / "config_changes.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"{cfg.output_dir}: resuming under a changed config (train.allow_config_change): {_listing(changed)}")
    return False


def _check_final(final: Path) -> None:
    """A finished run's exports must be what was exported: a truncated or altered file is refused, not
    reported as 'nothing to train'. Runs exported before the manifest existed are taken as they are."""
    if not (final / ckpt.MANIFEST).is_file():
        return
    reason = ckpt.verify(final)
    if reason is not None:
        raise InputError(f"{final} is damaged: {reason} (recorded at export). Move {final} aside (e.g. to "
                         f"{final.name}.damaged) to export it again from the last checkpoint, or give a new output_dir")


LOCK = ".lock"


def main_process() -> bool:
    """Rank 0 of a launch (accelerate launch and torchrun set RANK), or a process launched alone. Read from the
    environment: a PartialState built here, before the trainer's Accelerator, calls every process the main one."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def locked(run_dir: Path):
    """Hold RUN/.lock (an flock, released by the OS however the process ends) while training in `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(f"{run_dir} is in use: {holder} trains in it (it holds {run_dir / LOCK}); wait for it to "
                             "end, or give another output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def holds_run_folder(run: Callable[[RecipeConfig], dict]) -> Callable[[RecipeConfig], dict]:
    """A recipe's `run(cfg)` holding its output_dir's lock throughout (the main process takes it: under DDP the
    launch's other processes are its own)."""

    @functools.wraps(run)
    def holding(cfg: RecipeConfig) -> dict:
        check_link(cfg.output_dir, "output_dir", folder=True)  # a link, or a name too long: one line
        with writing(cfg.output_dir):  # a full disk, wherever the run writes: one line naming output_dir
            if not main_process():
                return run(cfg)
            with locked(cfg.output_dir):
                return run(cfg)

    return holding
