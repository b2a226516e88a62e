"""Losses to a local JSONL file and to accelerate's experiment trackers (train.trackers), and watches on them."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path

import torch
from accelerate import Accelerator

from lara.errors import TrainingDiverged
from lara.model import COLLAPSED_SPREAD
from lara.outputs import replacing


class MetricsLog:
    """`RUN/metrics.jsonl` (one JSON object per logged step), always, and the accelerator's trackers
    (`Accelerator(log_with=...)`, made by adapters/trainer.py from train.trackers); main process only.

    On resume from step s, records after s are dropped from the JSONL, so the file always reads as one
    uninterrupted run; tensorboard's event files in RUN/trackers say the same to its readers (`purge_step`:
    events after s in the earlier files are hidden), and the wandb run continues under the same id.
    """

    def __init__(self, output_dir: Path, accelerator: Accelerator, cfg, run_config: dict, resume_step: int = 0):
        output_dir.mkdir(parents=True, exist_ok=True)
        self.path, self.accelerator = output_dir / "metrics.jsonl", accelerator
        self._truncate(resume_step)
        init_kwargs = {"tensorboard": {"purge_step": resume_step + 1}}
        if "wandb" in cfg.accelerate_trackers:
            os.environ.setdefault("WANDB_SILENT", "true")
            id_file = output_dir / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
            id_file.write_text(run_id)
            init_kwargs["wandb"] = {"name": cfg.wandb.name or output_dir.name, "dir": str(output_dir),
                                    "mode": cfg.wandb.mode, "id": run_id, "resume": "allow"}
        if accelerator.log_with:
            accelerator.init_trackers(cfg.wandb.project, config=hyperparameters(run_config), init_kwargs=init_kwargs)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        with replacing(self.path) as staging:
            staging.write_text("".join(line + "\n" for line in keep))

    def log(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **values}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.accelerator.log(values, step=step)

    def close(self) -> None:
        """Finish the trackers: `Accelerator.end_training` without its last act, which destroys the process
        group that a recipe's next phase (pretrain's joint training after its LAM phase) and its export still use."""
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()


def hyperparameters(run_config: dict, prefix: str = "") -> dict[str, bool | str | float | int | None]:
    """The run's config as trackers store hyperparameters: flat dotted keys (`train.lr`) and plain values, a list
    as its JSON text (tensorboard's hparams take numbers, strings and booleans only)."""
    flat = {}
    for key, value in run_config.items():
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return flat


class CollapseWatch:
    """Says once per run when the LAM's latent does not vary across samples (`lam/z_std` below COLLAPSED_SPREAD),
    which the loss curves do not show. While LARA aligns (an `align` value is logged) that is judged over
    `patience` logged steps in a row: the alignment target is then a constant the policy matches without learning
    anything. A LAM trained alone is judged at its last step only: its spread starts low and rises as it learns
    (measured with the action head on LIBERO frames: below 0.01 until step ~600 of 1000, then 0.24)."""

    def __init__(self, run_dir: Path, patience: int = 10):
        self.run_dir, self.patience = run_dir, patience
        self.low, self.said = 0, False

    def observe(self, step: int, values: dict[str, float], last: bool) -> str | None:
        spread = values.get("lam/z_std")
        if spread is None or self.said:
            return None
        self.low = self.low + 1 if spread < COLLAPSED_SPREAD else 0
        aligning = "align" in values
        if not (self.low >= self.patience if aligning else last and self.low):
            return None
        self.said = True
        when = (f"below {COLLAPSED_SPREAD} for {self.patience} logged steps in a row: LARA's alignment target is "
                "nearly constant, so it teaches the policy little" if aligning else
                f"below {COLLAPSED_SPREAD} at the end of the LAM's own training: aligning to it would teach little")
        return (f"{self.run_dir}: the LAM's latent barely varies across samples (lam/z_std {spread:.2g} at step "
                f"{step}, {when}. A LAM trained on reconstruction alone collapses so on robot frames whose next move "
                "follows from the scene; its action head (lara.lam.action_horizon, trained on demonstrations with "
                "actions) keeps it alive. docs/probe.md: 'Is the LAM alive?'")


class FiniteWatch:
    """Stops training at the first logged step whose window holds a NaN or infinite loss component or gradient
    norm, naming the component and the first step it was not finite, before any checkpoint or export is written
    from it. `observe` runs each micro-step without a host sync (a running minimum on the device); `check` reads
    the step back only when a logged mean is not finite."""

    NEVER = math.inf

    def __init__(self, run_dir: Path):
        self.run_dir, self.first = run_dir, {}

    def observe(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """`values` of optimizer step `step` (1-based): remember, per name, the first step it was not finite."""
        for name, value in values.items():
            bad_at = torch.where(torch.isfinite(value).all(), self.NEVER, float(step))
            self.first[name] = torch.minimum(self.first[name], bad_at) if name in self.first else bad_at

    def check(self, step: int, means: dict[str, float]) -> None:
        """Raise TrainingDiverged when a logged mean is not finite; else start a new window."""
        bad = {name: value for name, value in means.items() if not math.isfinite(value)}
        if bad:
            firsts = {name: self.first[name].item() for name in bad if name in self.first}
            # the value that went first; at a tie a component, then the total, then the gradient norm it causes
            name = min(bad, key=lambda n: (firsts.get(n, step), {"loss": 1, "grad_norm": 2}.get(n, 0), n))
            first = firsts.get(name, self.NEVER)
            when = f"step {int(first)}" if math.isfinite(first) else f"steps {step - 1}..{step} on another process"
            raise TrainingDiverged(
                f"{self.run_dir}: training stopped at step {step}: '{name}' is {bad[name]} (first at {when}; "
                f"non-finite: {', '.join(sorted(bad))}); no checkpoint or final model is written from it. Lower "
                "train.lr or the loss weights (lara.align_weight, lara.lam_weight), or check the data and its "
                "statistics; the run resumes from its last checkpoint")
        self.first = {}


def check_finite_weights(run_dir: Path, step: int, named: list[tuple[str, torch.Tensor]], reduce=None) -> None:
    """Raise TrainingDiverged when a trainable weight holds NaN or inf (one host sync, before a checkpoint). Under
    FSDP each process sees its shards only: `reduce` (accelerate's) sums the count over the processes, so all raise."""
    if not named:
        return
    finite = torch.stack([torch.isfinite(getattr(p, "_local_tensor", p)).all() for _, p in named])  # FSDP: local shard
    bad = (~finite).sum().float()
    if reduce is not None:
        bad = reduce(bad, "sum")
    if bad.item() == 0:
        return
    which = f"the weight '{named[int((~finite).nonzero()[0])][0]}'" if not finite.all() else "a weight on another process"
    raise TrainingDiverged(f"{run_dir}: training stopped at step {step}: {which} holds NaN or inf after the "
                           "optimizer step; no checkpoint or final model is written from it. Lower train.lr or the "
                           "loss weights, or check the data and its statistics")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
