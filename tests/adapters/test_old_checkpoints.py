"""A run folder written before the Checkpointer (issue 36) resumes after it with the identical loss sequence.

tests/adapters/old_run/ was written by the trainer of commit 832ed7f (the last one that saved its state itself) with
`train` below: 6 steps, a checkpoint every 2, as a kill after step 4's checkpoint leaves it (step_000004 and the
metrics of steps 1-4). `straight.json` holds what that code logged training the same 6 steps without a break, and
its final export (the EMA's weights). Every piece of the state is in it: trainable weights and a buffer beside a
frozen weight, AdamW's moments, a cosine schedule with warm-up, the EMA, the python, numpy and torch RNG streams the
loss draws from, and the data position under gradient accumulation.

832ed7f ran on an AVX2 machine. torch's CPU kernels round differently on others (on an AVX-512 one, steps 5 and 6
logged a loss and gradient norm one float32 ulp away), so the logged floats are compared to 1e-6 relative and the
rest exactly. A piece of state restored wrong moves them by far more: with numpy's stream not restored, steps 5-6's
loss moved by 8e-4 relative and the gradient norm by 2e-2.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lara.adapters import checkpoints
from lara.adapters.config import TrainConfig
from lara.adapters.metrics import read_metrics
from lara.adapters.trainer import Trainer

OLD_RUN = Path(__file__).parent / "old_run"
ROUNDED = {"base", "loss", "grad_norm"}  # what torch's CPU kernels compute, and so round per instruction set


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.frozen = nn.Linear(3, 1).requires_grad_(False)  # rebuilt, never saved
        self.register_buffer("seen", torch.zeros(()))  # saved with the trainable weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.frozen(torch.tanh(self.layer(x)))


def noisy_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """A loss that draws from the torch, numpy and python RNG streams, as a flow-matching VLA and data code do."""
    noise = torch.randn(batch["x"].shape) * 0.1 + float(np.random.uniform(-0.1, 0.1)) + random.uniform(-0.1, 0.1)
    loss = (model(batch["x"] + noise) - batch["y"]).pow(2).mean()
    return loss, {"base": loss.detach(), "seen": model.seen.detach().clone()}


def export(model: nn.Module, folder: Path) -> None:
    (folder / "export").mkdir()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, folder / "export" / "weights.pt")


def train(run_dir: Path, steps: int = 6) -> Path | None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    cfg = TrainConfig(steps=steps, batch_size=2, grad_accum=2, log_every=1, checkpoint_every=2, progress=False,
                      schedule="cosine", warmup_steps=2, lr=0.05, ema_decay=0.9, wandb={"mode": "disabled"})
    data = [{"x": torch.randn(4), "y": torch.randn(1)} for _ in range(24)]
    trainer = Trainer(cfg, run_dir, Tiny(), noisy_loss, datasets=[data], export=export,
                      collate=lambda s: {k: torch.stack([d[k] for d in s]) for k in ("x", "y")},
                      run_config={"recipe": "tests/adapters/test_old_checkpoints.py"})
    return trainer.fit()


def logged(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def test_a_run_saved_before_the_checkpointer_resumes_with_the_identical_loss_sequence(tmp_path):
    straight = json.loads((OLD_RUN.parent / "old_run_straight.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN / "checkpoints", run / "checkpoints")
    shutil.copy(OLD_RUN / "metrics.jsonl", run / "metrics.jsonl")
    assert checkpoints.latest_intact(run / "checkpoints") == run / "checkpoints" / "step_000004"

    last = train(run)

    assert last == run / "checkpoints" / "step_000006"
    assert [r["step"] for r in logged(run)] == list(range(1, 7))
    assert logged(run) == [{k: (pytest.approx(v, rel=1e-6) if k in ROUNDED else v) for k, v in record.items()}
                           for record in straight["metrics"]]  # every component; the LR and the buffer exactly
    weights = torch.load(last / "export" / "weights.pt", weights_only=True)
    assert {k: v.flatten().tolist() for k, v in weights.items()} == {
        k: pytest.approx(v, rel=1e-6, abs=1e-9) for k, v in straight["export"].items()}  # the EMA, restored
