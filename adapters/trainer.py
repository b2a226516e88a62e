"""One training loop for every recipe, on accelerate (single process, DDP from `accelerate launch`, or FSDP2
with `train.fsdp=true`, adapters/fsdp.py).

    trainer = Trainer(train_config, run_dir, model, loss_fn, datasets=[demos], collate=processor,
                      export=save_vla_and_lara)
    trainer.fit()

`loss_fn(model, batch) -> (loss, {name: detached scalar tensor})`. The loop does gradient accumulation,
clipping, a constant or cosine LR with warm-up, and the logging; every logged value goes to
`run_dir/metrics.jsonl` and to the accelerator's trackers (train.trackers: tensorboard, wandb, ...), and `.item()`
happens only at the logging interval. The training state is the
checkpointer's (adapters/checkpointer.py): the loop calls `resume()` once, which gives it the step and the data
position (the micro-step; the order is a function of it, adapters/sampling.py), then `update_average()` after
every optimizer step (the EMA) and `save(step)` every `checkpoint_every` steps.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, send_to_device, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from lara.errors import InputError

from . import fsdp
from .checkpointer import Checkpointer, ExportFn
from .config import TrainConfig
from .metrics import CollapseWatch, FiniteWatch, MetricsLog
from .sampling import StepBatchSampler

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    """The accelerator of a run in `run_dir`: its trackers (train.trackers) keep their files in run_dir/trackers."""
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # some VLA parameters take no part in the loss (pi0's VLM head, the LAM action head on video batches)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # cpu=True on a machine without a GPU makes `accelerate launch --multi_gpu` (torchrun) run DDP over gloo
    accelerator = Accelerator(mixed_precision=precision, kwargs_handlers=[ddp], cpu=not torch.cuda.is_available(),
                              log_with=cfg.accelerate_trackers or None,
                              project_config=ProjectConfiguration(project_dir=str(run_dir),
                                                                  logging_dir=str(Path(run_dir) / "trackers")))
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


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, model: nn.Module, loss_fn: LossFn, *,
                 datasets: list[torch.utils.data.Dataset], collate: Callable, export: ExportFn | None = None,
                 video_every: int = 0, lr: float | None = None, run_config: dict | None = None,
                 accelerator: Accelerator | None = None):
        self.cfg, self.run_dir, self.loss_fn = cfg, Path(run_dir), loss_fn
        self.accelerator = accelerator or make_accelerator(cfg, self.run_dir)
        self.run_config = run_config or {}
        # built from the model as it is before sharding: the frozen names, under FSDP a skeleton for the exports
        self.checkpointer = Checkpointer(cfg, self.run_dir, self.accelerator, model, export=export,
                                         run_config=self.run_config)
        if cfg.fsdp:
            model.to(self.accelerator.device)
            fsdp.shard(model, self.accelerator.device, self.accelerator.mixed_precision)
        self.params = [p for p in model.parameters() if p.requires_grad]  # FSDP: the sharded ones
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        # foreach: one call per update op over all tensors, not a Python loop per tensor (torch's default on a GPU; on a
        # CPU it defaults to the loop: 5.1 ms a step over LARA's 164 small tensors, 3.5 ms with foreach); the same
        # arithmetic, bit for bit. fused (opt-in): one kernel per tensor, rounded differently.
        kernel = {"fused": True} if cfg.fused_adamw else {"foreach": True}
        optimizer = torch.optim.AdamW(self.params, lr=lr or cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                      **kernel)
        if cfg.schedule == "cosine":
            self.scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
        else:
            self.scheduler = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
        # the scheduler is stepped here once per optimizer step (accelerate's wrapper would step it once per process)
        if cfg.fsdp:  # accelerate's prepare would wrap the sharded model in DDP on top
            self.model, self.optimizer = model, optimizer
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.checkpointer.track(self.model, self.optimizer, self.scheduler)
        self.datasets, self.collate, self.video_every = datasets, collate, video_every
        self.step = self.micro_step = 0

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

    def fit(self) -> Path | None:
        """Train to `cfg.steps`, resuming when a checkpoint exists; returns the last checkpoint."""
        acc, cfg = self.accelerator, self.cfg
        self.step, self.micro_step = self.checkpointer.resume()
        if self.step >= cfg.steps:
            return self.checkpointer.latest
        log = MetricsLog(self.run_dir, acc, cfg, self.run_config, self.step) if acc.is_main_process else None
        watch, finite = CollapseWatch(self.run_dir), FiniteWatch(self.run_dir)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and acc.is_main_process),
                   desc=self.run_dir.name, dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        window_micro, window_start = 0, time.perf_counter()
        # FSDP's gradient norm is over the shards: a DTensor, made whole
        clip = fsdp.clip_grad_norm_ if cfg.fsdp else acc.clip_grad_norm_
        self.model.train()
        try:
            for batch in self._loader():
                sync = (self.micro_step + 1) % cfg.grad_accum == 0
                if cfg.fsdp:  # rank 0's buffers to every rank, as DDP does; no reduce-scatter while accumulating
                    fsdp.broadcast_buffers(self.model)
                    self.model.set_requires_gradient_sync(sync)
                    micro = acc.autocast()
                else:  # DDP skips the gradient all-reduce of accumulation micro-steps
                    micro = contextlib.nullcontext() if sync else acc.no_sync(self.model)
                with micro:
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
                grad_norm = clip(self.params, cfg.clip_grad_norm) if cfg.clip_grad_norm else None
                if grad_norm is not None:
                    finite.observe(self.step + 1, {"grad_norm": torch.as_tensor(grad_norm).float()})
                lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.checkpointer.update_average()
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
                    self.checkpointer.save(self.step)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return self.checkpointer.latest
