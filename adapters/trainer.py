"""One training loop for every recipe, on accelerate (single process, DDP from `accelerate launch`, or FSDP2
with `train.fsdp=true`, adapters/fsdp.py).

    trainer = Trainer(train_config, run_dir, model, loss_fn, datasets=[demos], collate=processor,
                      export=save_vla_and_lara)
    trainer.fit()

`loss_fn(model, batch) -> (loss, {name: detached scalar tensor})`. The loop does gradient accumulation,
clipping, a constant or cosine LR with warm-up, optional EMA, a checkpoint every N steps (see
adapters/checkpoints.py) and exact resume: weights, optimizer, scheduler, EMA, every process's RNG and
the data position (the micro-step; the order is a function of it, adapters/sampling.py). Every logged
value goes to `run_dir/metrics.jsonl` and wandb. `.item()` happens only at the logging interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import DistributedDataParallelKwargs, send_to_device, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from lara.errors import InputError

from . import checkpoints as ckpt
from . import fsdp
from .config import TrainConfig
from .ema import EMA
from .metrics import CollapseWatch, FiniteWatch, MetricsLog, check_finite_weights
from .sampling import StepBatchSampler

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]
ExportFn = Callable[[nn.Module, Path], None]


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # some VLA parameters take no part in the loss (pi0's VLM head, the LAM action head on video batches)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # cpu=True on a machine without a GPU makes `accelerate launch --multi_gpu` (torchrun) run DDP over gloo
    accelerator = Accelerator(mixed_precision=precision, kwargs_handlers=[ddp], cpu=not torch.cuda.is_available())
    # an FSDP accelerate config sets ACCELERATE_USE_FSDP; on CPU processes accelerate then silently runs DDP
    fsdp_config = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if accelerator.distributed_type == DistributedType.FSDP or fsdp_config:
        raise InputError("the accelerate config asks for FSDP, which the LARA trainer does itself: launch with "
                         "--multi_gpu (distributed_type MULTI_GPU) and set train.fsdp=true")
    if accelerator.distributed_type not in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise ValueError(f"the LARA trainer runs single-process, DDP or FSDP2 (train.fsdp); the accelerate config "
                         f"asks for {accelerator.distributed_type.value}, whose checkpoints it does not write yet")
    return accelerator


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch before the model is built, so every process builds the same weights."""
    set_seed(seed)


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


# an RNG file written before issue 22 holds numpy's key array; these rebuild an ndarray and run nothing else
_OLD_RNG_GLOBALS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_state_file(path: Path, *, legacy_numpy: bool = False):
    """A checkpoint's state file read with `weights_only=True`: tensors and plain containers, never code. A file
    that holds anything else (a pickled object, which a crafted file could use to run code) is refused."""
    allowed = _OLD_RNG_GLOBALS if legacy_numpy else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1][:200]
        raise InputError(f"{path}: holds more than tensors and plain values ({reason}); LARA loads no code from a "
                         "checkpoint. Delete this checkpoint folder to resume from an earlier one, or give a new "
                         "output_dir") from None


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, model: nn.Module, loss_fn: LossFn, *,
                 datasets: list[torch.utils.data.Dataset], collate: Callable, export: ExportFn | None = None,
                 video_every: int = 0, lr: float | None = None, run_config: dict | None = None,
                 accelerator: Accelerator | None = None):
        self.cfg, self.run_dir, self.loss_fn, self.export = cfg, Path(run_dir), loss_fn, export
        self.accelerator = accelerator or make_accelerator(cfg)
        self.run_config = run_config or {}
        self.frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        self.plain = None  # FSDP: rank 0's unsharded skeleton of the model, filled for the exports
        if cfg.fsdp:
            self.plain = fsdp.skeleton(model) if self.accelerator.is_main_process else None
            model.to(self.accelerator.device)
            fsdp.shard(model, self.accelerator.device, self.accelerator.mixed_precision)
        self.params = [p for p in model.parameters() if p.requires_grad]  # FSDP: the sharded ones
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(self.params, lr=lr or cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        if cfg.schedule == "cosine":
            self.scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
        else:
            self.scheduler = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
        # the scheduler is stepped here once per optimizer step (accelerate's wrapper would step it once per process)
        if cfg.fsdp:  # accelerate's prepare would wrap the sharded model in DDP on top
            self.model, self.optimizer = model, optimizer
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ema = EMA(self.unwrapped, cfg.ema_decay) if cfg.ema_decay else None
        self.datasets, self.collate, self.video_every = datasets, collate, video_every
        self.step = self.micro_step = 0
        self.start_step = 0  # the step `fit` resumed from: `trained` says whether this call trained at all

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @contextlib.contextmanager
    def full_model(self):
        """The trained model, whole, on the main process (None on the others): the model itself, or under FSDP
        its weights gathered from every rank (all processes must enter: a collective) into an unsharded copy."""
        if self.cfg.fsdp:
            with fsdp.full_model(self.model, self.plain) as model:
                yield model
        else:
            yield self.unwrapped if self.accelerator.is_main_process else None

    @property
    def trained(self) -> bool:
        return self.step > self.start_step

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    # ---------------------------------------------------------------------------------------------
    # Checkpoints

    def _resume_state(self) -> dict:
        """Trainable weights and every buffer: what changes during training (frozen weights are rebuilt)."""
        return {k: v.detach().cpu() for k, v in self.unwrapped.state_dict().items() if k not in self.frozen}

    def save_checkpoint(self) -> Path:
        check_finite_weights(self.run_dir, self.step, [(n, p) for n, p in self.unwrapped.named_parameters()
                                                       if p.requires_grad],
                             self.accelerator.reduce if self.cfg.fsdp else None)
        acc, staging = self.accelerator, ckpt.staging_dir(self.checkpoint_root, self.step)
        if acc.is_main_process:
            if staging.exists():  # left by a crash while writing this very step
                shutil.rmtree(staging)
            (staging / "state").mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(_rng_state(), staging / "state" / f"rng_rank{acc.process_index}.pt")
        if self.cfg.fsdp:  # every rank writes its shards, then rank 0 exports the gathered model
            fsdp.save(self.model, self.optimizer, self.frozen, staging / "state" / "sharded", self.ema)
            if self.export is not None:
                with self.ema.applied(self.model) if self.ema else contextlib.nullcontext(), self.full_model() as model:
                    if model is not None:
                        self.export(model, staging)
        if acc.is_main_process:
            if not self.cfg.fsdp:
                torch.save(self._resume_state(), staging / "state" / "model.pt")
                torch.save(self.optimizer.state_dict(), staging / "state" / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), staging / "state" / "scheduler.pt")
            if self.ema is not None and not self.cfg.fsdp:
                torch.save(self.ema.state_dict(), staging / "state" / "ema.pt")
            if self.export is not None and not self.cfg.fsdp:
                with self.ema.applied(self.unwrapped) if self.ema else contextlib.nullcontext():
                    self.export(self.unwrapped, staging)
            trainer_state = dict(step=self.step, micro_step=self.micro_step, world_size=acc.num_processes,
                                 batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum, fsdp=self.cfg.fsdp,
                                 config=self.run_config)
            (staging / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1, default=str))
        acc.wait_for_everyone()
        final = staging.with_suffix("")
        if acc.is_main_process:
            ckpt.seal(staging)
            ckpt.prune(self.checkpoint_root, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        state = json.loads((path / "trainer_state.json").read_text())
        acc = self.accelerator
        here = dict(world_size=acc.num_processes, batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum,
                    fsdp=self.cfg.fsdp)
        changed = {k: (state.get(k, False), v) for k, v in here.items() if state.get(k, False) != v}
        if changed:
            raise InputError(f"{path} was written with a different batch layout {changed} (saved, now); exact resume "
                             f"needs the same processes, batch_size, grad_accum and train.fsdp; give a new output_dir "
                             "for another")
        if self.cfg.fsdp:
            fsdp.load(self.model, self.optimizer, self.frozen, path / "state" / "sharded", self.ema)
        else:
            self._load_model_and_optimizer(path)
            if self.ema is not None:
                self.ema.load_state_dict(load_state_file(path / "state" / "ema.pt"))
        self.scheduler.load_state_dict(load_state_file(path / "state" / "scheduler.pt"))
        _set_rng_state(load_state_file(path / "state" / f"rng_rank{acc.process_index}.pt", legacy_numpy=True))
        self.step, self.micro_step = state["step"], state["micro_step"]

    def _load_model_and_optimizer(self, path: Path) -> None:
        model_state = load_state_file(path / "state" / "model.pt")
        shapes = {k: tuple(v.shape) for k, v in self.unwrapped.state_dict().items()}
        resized = [f"{k} {tuple(v.shape)} -> {shapes[k]}" for k, v in model_state.items()
                   if k in shapes and tuple(v.shape) != shapes[k]]
        missing = sorted(set(shapes) - set(model_state) - self.frozen)
        unexpected = sorted(set(model_state) - set(shapes))
        if resized or missing or unexpected:  # the model was built from another config than the saved weights
            raise InputError(f"{path}: the saved weights do not fit the model this config builds (shape saved -> now: "
                             f"{resized[:3]}, missing {missing[:3]}, unexpected {unexpected[:3]}); "
                             "give a new output_dir")
        self.unwrapped.load_state_dict(model_state, strict=False)
        self.optimizer.load_state_dict(load_state_file(path / "state" / "optimizer.pt"))

    # ---------------------------------------------------------------------------------------------
    # The loop

    def _loader(self) -> torch.utils.data.DataLoader:
        acc, cfg = self.accelerator, self.cfg
        sampler = StepBatchSampler([len(d) for d in self.datasets], cfg.batch_size, seed=cfg.seed,
                                   world_size=acc.num_processes, rank=acc.process_index,
                                   video_every=self.video_every, start_step=self.micro_step,
                                   total_steps=cfg.steps * cfg.grad_accum,
                                   orders=[getattr(d, "epoch_order", None) for d in self.datasets])
        # its own generator: a DataLoader without one draws its workers' base seed from the global RNG, which
        # shifts the restored RNG stream of a resumed run (pi0 samples its flow noise and time from that stream)
        return torch.utils.data.DataLoader(torch.utils.data.ConcatDataset(self.datasets), batch_sampler=sampler,
                                           collate_fn=self.collate, num_workers=cfg.num_workers,
                                           persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed))

    def _set_aside_earlier_checkpoints(self) -> None:
        """Starting over (`train.resume=false`) in a folder with checkpoints: move them to checkpoints.earlier-N.
        Left in place, an earlier run's higher steps would outrank the new run's, in pruning (which would delete
        the new ones) and in the next resume (which would continue the earlier run)."""
        acc, root = self.accelerator, self.checkpoint_root
        if acc.is_main_process:
            n = 1
            while root.with_name(f"{root.name}.earlier-{n}").exists():
                n += 1
            root.rename(root.with_name(f"{root.name}.earlier-{n}"))
            acc.print(f"train.resume=false: the earlier checkpoints are kept in {root.name}.earlier-{n}")
        acc.wait_for_everyone()

    def _accumulating(self, sync: bool):
        """DDP skips the gradient all-reduce of accumulation micro-steps (FSDP: set_requires_gradient_sync)."""
        return contextlib.nullcontext() if sync or self.cfg.fsdp else self.accelerator.no_sync(self.model)

    def _clip_gradients(self) -> torch.Tensor:
        if not self.cfg.fsdp:
            return self.accelerator.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)  # over the shards: a DTensor
        return norm.full_tensor()

    def fit(self) -> Path:
        """Train to `cfg.steps` (resuming when a checkpoint exists); returns the last checkpoint."""
        acc, cfg = self.accelerator, self.cfg
        if not cfg.resume and ckpt.checkpoints(self.checkpoint_root):
            self._set_aside_earlier_checkpoints()
        resume_from = ckpt.latest_intact(self.checkpoint_root) if cfg.resume else None
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            acc.print(f"resumed from {resume_from} (step {self.step})")
        self.start_step = self.step
        if self.step >= cfg.steps:
            return resume_from
        log = MetricsLog(self.run_dir, cfg.wandb, self.run_config, self.step) if acc.is_main_process else None
        watch, finite = CollapseWatch(self.run_dir), FiniteWatch(self.run_dir)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and acc.is_main_process),
                   desc=self.run_dir.name, dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        window_micro, window_start, last = 0, time.perf_counter(), None
        self.model.train()
        try:
            for batch in self._loader():
                sync = (self.micro_step + 1) % cfg.grad_accum == 0
                if cfg.fsdp:
                    fsdp.broadcast_buffers(self.model)
                    self.model.set_requires_gradient_sync(sync)
                with self._accumulating(sync), acc.autocast() if cfg.fsdp else contextlib.nullcontext():
                    loss, parts = self.loss_fn(self.model, send_to_device(batch, acc.device))
                    acc.backward(loss / cfg.grad_accum)
                values = {name: value.detach().float() for name, value in {"loss": loss, **parts}.items()}
                finite.observe(self.step + 1, values)
                for name, value in values.items():
                    sums[name] = sums.get(name, 0) + value
                self.micro_step += 1
                window_micro += 1
                if not sync:
                    continue
                grad_norm = self._clip_gradients() if cfg.clip_grad_norm else None
                if grad_norm is not None:
                    finite.observe(self.step + 1, {"grad_norm": torch.as_tensor(grad_norm).float()})
                lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(self.unwrapped)
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    if grad_norm is not None:
                        sums["grad_norm"] = torch.as_tensor(grad_norm, device=acc.device).float() * window_micro
                    names = sorted(sums)
                    means = acc.reduce(torch.stack([sums[n] for n in names]) / window_micro, "mean").tolist()
                    values = dict(zip(names, means))
                    finite.check(self.step, values)  # before this step's log line, checkpoint or export
                    elapsed = time.perf_counter() - window_start
                    values["lr"] = lr
                    values["samples_per_s"] = window_micro * cfg.batch_size * acc.num_processes / elapsed
                    if log is not None:
                        log.log(self.step, values)
                        if (collapsed := watch.observe(self.step, values, self.step == cfg.steps)) is not None:
                            warnings.warn(collapsed, UserWarning, stacklevel=2)
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    sums, window_micro, window_start = {}, 0, time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    last = self.save_checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return last
