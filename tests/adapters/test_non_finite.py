"""Nothing trains to NaN weights and exits 0 (issue 38, finding 4): config numbers are finite, a non-finite loss
component stops training naming the step and the component, and no checkpoint or final model is written from it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lara import cli
from lara.adapters import checkpoints
from lara.adapters.config import TrainConfig
from lara.adapters.metrics import check_finite_weights
from lara.adapters.trainer import Trainer
from lara.errors import TrainingDiverged

from recipe_files import tiny, write_demos


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return write_demos(tmp_path_factory.mktemp("demos"))


def one_line(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1 and "Traceback" not in error, error
    return error


@pytest.mark.parametrize("override", ["train.lr=.inf", "train.weight_decay=.inf", "lara.align_weight=.inf",
                                      "lara.lam_weight=.nan", "train.betas=[0.9,.nan]", "data.frame_gap_s=.inf"])
def test_a_non_finite_config_number_is_refused_before_training(demos, tmp_path, capsys, override):
    assert cli.main(["train", "posttrain_token_vla", *tiny(demos, tmp_path / "run"), override]) == 2
    assert f"{override.split('=')[0].replace('betas', 'betas.1')}: Input should be a finite number" in one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_loss_weight_that_overflows_stops_training_without_a_model(demos, tmp_path, capsys):
    """lara.lam_weight=1e300 is finite, but the weighted LAM loss overflows to inf at the first step: before, the run
    exited 0 and exported NaN weights; now it stops at step 1, naming the component, and writes no checkpoint."""
    run = tmp_path / "run"
    assert cli.main(["train", "posttrain_token_vla", *tiny(demos, run, steps=4, every=2),
                     "lara.lam_weight=1e300"]) == 2
    error = one_line(capsys)
    assert "training stopped at step 1: 'loss' is inf (first at step 1" in error and "no checkpoint" in error
    assert not (run / "final").exists() and not checkpoints.checkpoints(run / "checkpoints")


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused on a CPU only")
@pytest.mark.parametrize("override", ["model.dtype=fp16", "lara.dtype=fp16"])
def test_fp16_on_a_cpu_is_refused_instead_of_training_to_nan(demos, tmp_path, capsys, override):
    assert cli.main(["train", "posttrain_token_vla", *tiny(demos, tmp_path / "run"), override]) == 2
    assert f"{override} on a machine without a GPU" in one_line(capsys)
    assert not (tmp_path / "run" / "final").exists()


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)


def nan_align_from(step: int):
    """A loss whose 'align' component turns NaN at optimizer step `step` (1-based; one micro-step per step)."""
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        out = model.layer(batch["x"]).pow(2).mean()  # (,)
        align = torch.tensor(float("nan")) if len(calls) >= step else out.detach()
        return out, {"base": out.detach(), "align": align}

    return loss_fn


def test_the_trainer_names_the_first_step_and_component_and_keeps_the_checkpoints_before_it(tmp_path):
    cfg = TrainConfig(steps=8, batch_size=2, log_every=2, checkpoint_every=2, progress=False,
                      wandb={"mode": "disabled"})
    data = [{"x": torch.randn(2)} for _ in range(16)]
    trainer = Trainer(cfg, tmp_path, Linear(), nan_align_from(3), datasets=[data],
                      collate=lambda s: {"x": torch.stack([d["x"] for d in s])})
    with pytest.raises(TrainingDiverged, match=r"stopped at step 4: 'align' is nan \(first at step 3; non-finite: "
                                               r"align\)"):
        trainer.fit()
    assert [p.name for p in checkpoints.checkpoints(tmp_path / "checkpoints")] == ["step_000002"]


def test_a_weight_that_is_not_finite_is_named_before_a_checkpoint(tmp_path):
    model = Linear()
    named = list(model.named_parameters())
    check_finite_weights(tmp_path, 5, named)  # finite: passes
    with torch.no_grad():
        model.layer.bias.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"step 5: the weight 'layer.bias' holds NaN or inf"):
        check_finite_weights(tmp_path, 5, named)
