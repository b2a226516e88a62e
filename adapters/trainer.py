"""One training loop for every recipe, on accelerate (single process, or DDP from `accelerate launch`).

    trainer = Trainer(train_config, run_dir, model, loss_fn, datasets=[demos], collate=family.collate,
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
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import DistributedDataParallelKwargs, send_to_device, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from . import checkpoints as ckpt
from .config import TrainConfig
from .ema import EMA
from .metrics import MetricsLog
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
    if accelerator.distributed_type not in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise ValueError(f"the LARA trainer runs single-process or DDP; the accelerate config asks for "
                         f"{accelerator.distributed_type.value}, whose checkpoints it does not write yet")
    return accelerator


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch before the model is built, so every process builds the same weights."""
    set_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, model: nn.Module, loss_fn: LossFn, *,
                 datasets: list[torch.utils.data.Dataset], collate: Callable, export: ExportFn | None = None,
                 video_every: int = 0, lr: float | None = None, run_config: dict | None = None,
                 accelerator: Accelerator | None = None):
        if cfg.checkpoint_every % cfg.log_every:
            raise ValueError(f"train.checkpoint_every ({cfg.checkpoint_every}) must be a multiple of train.log_every "
                             f"({cfg.log_every}), so a resumed run logs the same averages as an uninterrupted one")
        self.cfg, self.run_dir, self.loss_fn, self.export = cfg, Path(run_dir), loss_fn, export
        self.accelerator = accelerator or make_accelerator(cfg)
        self.run_config = run_config or {}
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        optimizer = torch.optim.AdamW(self.params, lr=lr or cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        if cfg.schedule == "cosine":
            self.scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
        else:
            self.scheduler = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
        # the scheduler is stepped here once per optimizer step (accelerate's wrapper would step it once per process)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ema = EMA(self.unwrapped, cfg.ema_decay) if cfg.ema_decay else None
        self.datasets, self.collate, self.video_every = datasets, collate, video_every
        self.step = self.micro_step = 0

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    # ---------------------------------------------------------------------------------------------
    # Checkpoints

    def _resume_state(self) -> dict:
        """Trainable weights and every buffer: what changes during training (frozen weights are rebuilt)."""
        return {k: v.detach().cpu() for k, v in self.unwrapped.state_dict().items() if k not in self.frozen}

    def save_checkpoint(self) -> Path:
        acc, staging = self.accelerator, ckpt.staging_dir(self.checkpoint_root, self.step)
        if acc.is_main_process:
            if staging.exists():  # left by a crash while writing this very step
                shutil.rmtree(staging)
            (staging / "state").mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(_rng_state(), staging / "state" / f"rng_rank{acc.process_index}.pt")
        if acc.is_main_process:
            torch.save(self._resume_state(), staging / "state" / "model.pt")
            torch.save(self.optimizer.state_dict(), staging / "state" / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), staging / "state" / "scheduler.pt")
            if self.ema is not None:
                torch.save(self.ema.state_dict(), staging / "state" / "ema.pt")
            if self.export is not None:
                with self.ema.applied(self.unwrapped) if self.ema else contextlib.nullcontext():
                    self.export(self.unwrapped, staging)
            trainer_state = dict(step=self.step, micro_step=self.micro_step, world_size=acc.num_processes,
                                 batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum, config=self.run_config)
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
        here = dict(world_size=acc.num_processes, batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum)
        changed = {k: (state[k], v) for k, v in here.items() if state[k] != v}
        if changed:
            raise ValueError(f"{path} was written with a different batch layout {changed} (saved, now); exact resume "
                             f"needs the same processes, batch_size and grad_accum, or train.resume=false")
        model_state = torch.load(path / "state" / "model.pt", weights_only=True)
        missing, unexpected = self.unwrapped.load_state_dict(model_state, strict=False)
        if set(missing) != self.frozen & set(self.unwrapped.state_dict()) or unexpected:
            raise KeyError(f"{path}: saved weights do not match the model (missing {sorted(set(missing) - self.frozen)[:5]}, "
                           f"unexpected {unexpected[:5]})")
        self.optimizer.load_state_dict(torch.load(path / "state" / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "state" / "scheduler.pt", weights_only=True))
        if self.ema is not None:
            self.ema.load_state_dict(torch.load(path / "state" / "ema.pt", weights_only=True))
        _set_rng_state(torch.load(path / "state" / f"rng_rank{acc.process_index}.pt", weights_only=False))
        self.step, self.micro_step = state["step"], state["micro_step"]

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

    def fit(self) -> Path:
        """Train to `cfg.steps` (resuming when a checkpoint exists); returns the last checkpoint."""
        acc, cfg = self.accelerator, self.cfg
        resume_from = ckpt.latest_intact(self.checkpoint_root) if cfg.resume else None
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            acc.print(f"resumed from {resume_from} (step {self.step})")
        if self.step >= cfg.steps:
            return resume_from
        log = MetricsLog(self.run_dir, cfg.wandb, self.run_config, self.step) if acc.is_main_process else None
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and acc.is_main_process),
                   desc=self.run_dir.name, dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        window_micro, window_start, last = 0, time.perf_counter(), None
        self.model.train()
        try:
            for batch in self._loader():
                sync = (self.micro_step + 1) % cfg.grad_accum == 0
                with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                    loss, parts = self.loss_fn(self.model, send_to_device(batch, acc.device))
                    acc.backward(loss / cfg.grad_accum)
                for name, value in {"loss": loss.detach(), **parts}.items():
                    sums[name] = sums.get(name, 0) + value.detach().float()
                self.micro_step += 1
                window_micro += 1
                if not sync:
                    continue
                grad_norm = acc.clip_grad_norm_(self.params, cfg.clip_grad_norm) if cfg.clip_grad_norm else None
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
                    elapsed = time.perf_counter() - window_start
                    values["lr"] = lr
                    values["samples_per_s"] = window_micro * cfg.batch_size * acc.num_processes / elapsed
                    if log is not None:
                        log.log(self.step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    sums, window_micro, window_start = {}, 0, time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    last = self.save_checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return last
