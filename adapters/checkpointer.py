"""The training state of one run folder, in one place: the training loop calls `resume()` once and `save(step)` at
its checkpoint steps, as torchtune's recipes call their checkpoint client, and never branches on FSDP or the EMA.

    checkpointer = Checkpointer(train_config, run_dir, accelerator, model, export=save_vla_and_lara)  # before sharding
    checkpointer.track(model, optimizer, scheduler)  # the model as it trains (DDP-wrapped or sharded)
    step, micro_step = checkpointer.resume()
    ...  checkpointer.update_average() after every optimizer step, checkpointer.save(step) at the checkpoint steps
    checkpointer.export_final(run_dir / "final", write)  # write(model, folder): the trained (EMA) model, whole

What it owns:
- the checkpoint folders (adapters/checkpoints.py: written under step_N.tmp, sealed by a sha256 manifest and an
  atomic rename, verified on resume, a corrupt one skipped, the newest `train.keep_checkpoints` kept);
- exact resume: trainable weights and buffers (frozen weights are rebuilt), optimizer, scheduler, the EMA, every
  process's RNG and the data position (the micro-step; the order is a function of it, adapters/sampling.py);
- the layout of that state, chosen once here: whole files the main process writes (`state/model.pt`,
  `optimizer.pt`, `ema.pt`), or under `train.fsdp` every rank's shards (`state/sharded`, torch.distributed.checkpoint);
- safe loading: tensors and plain values only, never code (adapters/safe_loading.py);
- the EMA of the trainable weights (adapters/ema.py), which every export holds;
- the exports: each checkpoint's `export(model, folder)` and RUN/final's, from the whole model (under FSDP its weights
  gathered from every rank into an unsharded copy on the main process).
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)

from lara.errors import InputError
from lara.outputs import writing

from . import checkpoints as ckpt
from .config import TrainConfig
from .ema import EMA
from .metrics import check_finite_weights
from .safe_loading import safe_load, load_state_file

ExportFn = Callable[[nn.Module, Path], None]


def _rng_state() -> dict:
    """Every generator's state in types `torch.load(weights_only=True)` reads: tensors, ints, floats, tuples."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys  # a tensor since issue 22, an ndarray before
    random.setstate(state["python"])
    np.random.set_state((name, keys.astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _skeleton(model: nn.Module) -> nn.Module:
    """A copy of the unsharded model whose parameters live on the meta device (no memory) and whose buffers are
    CPU copies: `_Sharded.whole` fills it with the gathered weights for the exports."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(model, memo)


class _Whole:
    """One process or DDP: every process holds the whole model; the main process writes it in plain files."""

    reduce = None  # a process's own weights are all of them

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, frozen: set[str], accelerator: Accelerator):
        self.model, self.optimizer, self.frozen, self.accelerator = model, optimizer, frozen, accelerator

    def save(self, state: Path, ema: EMA | None) -> None:
        if self.accelerator.is_main_process:
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items() if k not in self.frozen},
                       state / "model.pt")
            torch.save(self.optimizer.state_dict(), state / "optimizer.pt")
            if ema is not None:
                torch.save(ema.state_dict(), state / "ema.pt")

    def load(self, state: Path, ema: EMA | None) -> None:
        saved = load_state_file(state / "model.pt")
        shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        resized = [f"{k} {tuple(v.shape)} -> {shapes[k]}" for k, v in saved.items()
                   if k in shapes and tuple(v.shape) != shapes[k]]
        missing = sorted(set(shapes) - set(saved) - self.frozen)
        unexpected = sorted(set(saved) - set(shapes))
        if resized or missing or unexpected:  # the model was built from another config than the saved weights
            raise InputError(f"{state.parent}: the saved weights do not fit the model this config builds (shape saved "
                             f"-> now: {resized[:3]}, missing {missing[:3]}, unexpected {unexpected[:3]}); "
                             "give a new output_dir")
        self.model.load_state_dict(saved, strict=False)
        self.optimizer.load_state_dict(load_state_file(state / "optimizer.pt"))
        if ema is not None:
            ema.load_state_dict(load_state_file(state / "ema.pt"))

    @contextlib.contextmanager
    def whole(self) -> Iterator[nn.Module | None]:
        yield self.model if self.accelerator.is_main_process else None


class _Sharded:
    """FSDP: every rank holds and writes its shards (state/sharded, a shared filesystem); the exports gather them."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, frozen: set[str], accelerator: Accelerator,
                 plain: nn.Module | None):
        self.model, self.optimizer, self.frozen, self.plain = model, optimizer, frozen, plain
        self.reduce = accelerator.reduce  # each process sees its shards only: the non-finite count is summed

    def _trainable(self) -> dict:
        return {k: v for k, v in get_model_state_dict(self.model).items() if k not in self.frozen}

    def save(self, state: Path, ema: EMA | None) -> None:
        shards = {"model": self._trainable(), "optimizer": get_optimizer_state_dict(self.model, self.optimizer)}
        if ema is not None:  # its shadow weights are sharded like the weights they average
            shards["ema"] = ema.state_dict()
        dcp.save(shards, checkpoint_id=state / "sharded")

    def load(self, state: Path, ema: EMA | None) -> None:
        """Each rank reads its own shards in place. The optimizer's state is read where the checkpoint has it:
        AdamW keeps none for a trainable parameter that never had a gradient (e.g. an unused head), while the state
        dict built here holds one for every parameter."""
        directory = state / "sharded"
        weights = {"model": self._trainable()}
        safe_load(weights, directory)
        set_model_state_dict(self.model, weights["model"], options=StateDictOptions(strict=False))
        moments = {"optimizer": get_optimizer_state_dict(self.model, self.optimizer)}
        safe_load(moments, directory, allow_partial_load=True)
        set_optimizer_state_dict(self.model, self.optimizer, moments["optimizer"])
        if ema is not None:
            shadow = {"ema": ema.state_dict()}
            safe_load(shadow, directory)
            ema.load_state_dict(shadow["ema"])

    @contextlib.contextmanager
    def whole(self) -> Iterator[nn.Module | None]:
        """All ranks gather the full state (a collective); rank 0 gets its skeleton filled with it, the others None.
        The copy is dropped on exit."""
        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.plain is None:
            yield None
            return
        filled = copy.deepcopy(self.plain)
        filled.load_state_dict(full, assign=True)
        yield filled


class Checkpointer:
    """The training state of `run_dir` (see the module docstring). Built from the model before it is distributed
    (the frozen weights' names; under FSDP rank 0's unsharded skeleton for the exports); `track` then hands it the
    model as it trains, with its optimizer and scheduler. Every process makes the same calls."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, accelerator: Accelerator, model: nn.Module, *,
                 export: ExportFn | None = None, run_config: dict | None = None):
        self.cfg, self.run_dir, self.accelerator, self.export = cfg, Path(run_dir), accelerator, export
        self.run_config = run_config or {}
        self.root = self.run_dir / "checkpoints"
        self.frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        self.plain = _skeleton(model) if cfg.fsdp and accelerator.is_main_process else None
        self.start_step = self.step = 0  # the step resumed from, and the last one saved
        self.latest: Path | None = None  # the last checkpoint resumed from or saved

    def track(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> None:
        """The model as it trains (DDP-wrapped or sharded), its optimizer and LR scheduler; the EMA starts here."""
        self.scheduler, self.unwrapped = scheduler, self.accelerator.unwrap_model(model)
        self.layout = (_Sharded(model, optimizer, self.frozen, self.accelerator, self.plain) if self.cfg.fsdp
                       else _Whole(self.unwrapped, optimizer, self.frozen, self.accelerator))
        self.ema = EMA(self.unwrapped, self.cfg.ema_decay) if self.cfg.ema_decay else None

    @property
    def trained(self) -> bool:
        """Whether this process saved a step past the one it resumed from."""
        return self.step > self.start_step

    def resume(self) -> tuple[int, int]:
        """Once, before training: with `train.resume` the newest intact checkpoint is loaded (a corrupt newer one is
        reported and skipped); with `train.resume=false` earlier checkpoints are set aside. Returns the step and the
        micro-step (the data position) to go on from: (0, 0) for a fresh start."""
        if not self.cfg.resume:
            if ckpt.checkpoints(self.root):
                self._set_aside()
            return 0, 0
        found = ckpt.latest_intact(self.root)
        if found is None:
            return 0, 0
        state = json.loads((found / "trainer_state.json").read_text())
        acc = self.accelerator
        here = dict(world_size=acc.num_processes, batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum,
                    fsdp=self.cfg.fsdp)
        changed = {k: (state.get(k, False), v) for k, v in here.items() if state.get(k, False) != v}
        if changed:
            raise InputError(f"{found} was written with a different batch layout {changed} (saved, now); exact resume "
                             "needs the same processes, batch_size, grad_accum and train.fsdp; give a new output_dir "
                             "for another")
        self.layout.load(found / "state", self.ema)
        self.scheduler.load_state_dict(load_state_file(found / "state" / "scheduler.pt"))
        _set_rng_state(load_state_file(found / "state" / f"rng_rank{acc.process_index}.pt", legacy_numpy=True))
        self.start_step = self.step = state["step"]
        self.latest = found
        if self.step < self.cfg.steps:  # at the last step there is nothing to resume: the recipe says what it does
            acc.print(f"resumed from {found} (step {self.step})")
        return state["step"], state["micro_step"]

    def _set_aside(self) -> None:
        """Starting over (`train.resume=false`) in a folder with checkpoints: move them to checkpoints.earlier-N.
        Left in place, an earlier run's higher steps would outrank the new run's, in pruning (which would delete
        the new ones) and in the next resume (which would continue the earlier run)."""
        acc, root = self.accelerator, self.root
        if acc.is_main_process:
            n = 1
            while root.with_name(f"{root.name}.earlier-{n}").exists():
                n += 1
            root.rename(root.with_name(f"{root.name}.earlier-{n}"))
            acc.print(f"train.resume=false: the earlier checkpoints are kept in {root.name}.earlier-{n}")
        acc.wait_for_everyone()

    def update_average(self) -> None:
        """After every optimizer step: the EMA follows the weights (nothing without `train.ema_decay`)."""
        if self.ema is not None:
            self.ema.update(self.unwrapped)

    def save(self, step: int) -> Path:
        """Checkpoint `step` (every process calls it): refused when a trainable weight is not finite, written under
        step_N.tmp, then sealed and renamed into place; older checkpoints beyond `keep_checkpoints` are deleted.
        A full disk ends on one line naming the checkpoints folder (torch.save says only 'unexpected pos')."""
        with writing(self.root):
            return self._save(step)

    def _save(self, step: int) -> Path:
        acc, cfg = self.accelerator, self.cfg
        check_finite_weights(self.run_dir, step, [(n, p) for n, p in self.unwrapped.named_parameters()
                                                  if p.requires_grad], self.layout.reduce)
        staging = ckpt.staging_dir(self.root, step)
        if acc.is_main_process:
            if staging.exists():  # left by a crash while writing this very step
                shutil.rmtree(staging)
            (staging / "state").mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(_rng_state(), staging / "state" / f"rng_rank{acc.process_index}.pt")
        self.layout.save(staging / "state", self.ema)
        if acc.is_main_process:
            torch.save(self.scheduler.state_dict(), staging / "state" / "scheduler.pt")
        if self.export is not None:  # the model holds the EMA's weights inside the block, its own ones after
            averaged = self.ema.applied(self.unwrapped) if self.ema is not None else contextlib.nullcontext()
            with averaged, self.layout.whole() as model:
                if model is not None:
                    self.export(model, staging)
        if acc.is_main_process:  # the data position: every optimizer step takes grad_accum micro-steps
            trainer_state = dict(step=step, micro_step=step * cfg.grad_accum, world_size=acc.num_processes,
                                 batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, fsdp=cfg.fsdp,
                                 config=self.run_config)
            (staging / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1, default=str))
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.seal(staging)
            ckpt.prune(self.root, cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self.step, self.latest = step, staging.with_suffix("")
        return self.latest

    def finish(self) -> nn.Module:
        """The end of training: the model takes the EMA's weights for good (what RUN/final holds and what a recipe
        judges); returns it, unwrapped (under FSDP this process's shards)."""
        if self.ema is not None:
            self.ema.copy_to(self.unwrapped)
        return self.unwrapped

    def export_final(self, directory: Path, write: ExportFn) -> Path | None:
        """`write(model, directory)` on the main process from the trained model with the EMA's weights, whole (under
        FSDP gathered from every rank: all processes call this). Returns `directory` there, None on the others."""
        self.finish()
        with self.layout.whole() as model:
            if model is not None:
                with writing(directory):  # a full disk: one line naming RUN/final
                    write(model, directory)
        self.accelerator.wait_for_everyone()
        return directory if self.accelerator.is_main_process else None
