"""The trainer's promises: exact resume after a kill, corrupt checkpoints skipped, DDP = a bigger batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import lara
from lara.adapters import checkpoints, posttrain
from lara.adapters.common import lam_step
from lara.adapters.config import TrainConfig, load_recipe
from lara.adapters.metrics import CollapseWatch, read_metrics
from lara.adapters.trainer import Trainer
from lara.model import COLLAPSED_SPREAD
from lara.vla.batch import lara_inputs

from recipe_files import tiny, write_demos

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


def losses(run: Path) -> list[dict]:
    """Every logged value except wall-clock throughput."""
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def train_command(demos: Path, out: Path, steps: int, family: str = "token_vla") -> list[str]:
    return [sys.executable, "-m", "lara.adapters.cli", f"posttrain_{family}",
            *tiny(demos, out, steps=steps, every=2, family=family)]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["token_vla", "pi0"])  # pi0 draws its flow noise and time inside forward
def test_killed_run_resumes_with_the_identical_loss_sequence(demos, tmp_path, family):
    steps = 16
    subprocess.run(train_command(demos, tmp_path / "straight", steps, family), check=True, env=ENV, cwd=ROOT,
                   capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(train_command(demos, run, steps, family), env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_000004" / checkpoints.MANIFEST).exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its 4th step was saved"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / "step_000016").exists(), "the kill came too late to test anything"
    interrupted_at = max(r["step"] for r in read_metrics(run / "metrics.jsonl"))

    resumed = subprocess.run(train_command(demos, run, steps, family), check=True, env=ENV, cwd=ROOT,
                             capture_output=True, text=True)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert interrupted_at < steps
    assert [r["step"] for r in losses(run)] == list(range(1, steps + 1))
    assert losses(run) == losses(tmp_path / "straight")  # bit for bit, every component and the LR


def test_corrupt_newest_checkpoint_is_skipped_for_the_previous_one(demos, tmp_path):
    """Run with the opt-in fused AdamW (train.fused_adamw): its state resumes as exactly as foreach's does."""
    run = tmp_path / "run"
    args = [*tiny(demos, run, steps=6), "train.fused_adamw=true"]
    posttrain.run(load_recipe("posttrain_token_vla", args))
    straight = read_metrics(run / "metrics.jsonl")
    newest = run / "checkpoints" / "step_000006"
    optimizer = newest / "state" / "optimizer.pt"
    assert {group["fused"] for group in torch.load(optimizer, weights_only=True)["param_groups"]} == {True}
    optimizer.write_bytes(optimizer.read_bytes()[:-100])  # a truncated file
    (run / "checkpoints" / "step_000008.tmp").mkdir()  # a crash while writing a step 8: no manifest

    assert checkpoints.verify(newest) is not None
    with pytest.warns(UserWarning, match=r"step_000006 is corrupt \(state/optimizer.pt has"):
        result = posttrain.run(load_recipe("posttrain_token_vla", args))
    assert result["checkpoint"].name == "step_000006"
    drop = lambda records: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]  # noqa: E731
    assert drop(read_metrics(run / "metrics.jsonl")) == drop(straight)  # steps 5, 6 retrained exactly
    assert not (run / "checkpoints" / "step_000008.tmp").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000004", "step_000006"]
    assert checkpoints.verify(newest) is None  # rewritten intact by the resumed run


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_matches_one_process_with_the_doubled_batch(demos, tmp_path):
    # fsq: no codebook buffers (DDP broadcasts rank 0's buffers, an EMA codebook would differ); complete
    # samples only, so per-process means average to the global mean
    common = ["data.drop_incomplete=true", "lara.lam.quantizer=fsq"]
    two = tiny(demos, tmp_path / "two", steps=3, every=3) + common
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--main_process_port", "0",  # a free port: pytest workers launch at once
                    "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "lara.adapters.cli", "posttrain_token_vla", *two],
                   check=True, env=ENV, cwd=ROOT, capture_output=True)
    one = tiny(demos, tmp_path / "one", steps=3, every=3) + common + ["train.batch_size=8"]
    subprocess.run([sys.executable, "-m", "lara.adapters.cli", "posttrain_token_vla", *one],
                   check=True, env=ENV, cwd=ROOT, capture_output=True)

    state = {name: checkpoints.checkpoints(tmp_path / name / "checkpoints")[0] for name in ("two", "one")}
    assert '"world_size": 2' in (state["two"] / "trainer_state.json").read_text()
    a, b = (torch.load(state[n] / "state" / "model.pt", weights_only=True) for n in ("two", "one"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    two_losses, one_losses = ([r["loss"] for r in losses(tmp_path / n)] for n in ("two", "one"))
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    assert len(set(one_losses)) == 3  # the weights did move: every step saw a different loss


def lam_frames(count: int, same: bool) -> list[dict]:
    """(o_t, o_{t+k}) pairs of 16 px random frames; with `same`, every sample the same pair."""
    g = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, 256, (1 if same else count, 2, 3, 16, 16), generator=g, dtype=torch.uint8)
    return [{"lam_frames": pairs[0 if same else i], "lam_valid": torch.tensor(True)} for i in range(count)]


@pytest.mark.parametrize("same", [True, False])
def test_a_lam_trained_alone_whose_latent_does_not_vary_is_reported_at_its_end(tmp_path, same):
    """A LAM that gives every sample the same latent would make LARA's alignment target a constant, which no loss
    curve shows: the trainer says so once, at the end of the LAM's own training (its spread starts low and rises
    while it learns), and stays quiet when the latent varies."""
    torch.manual_seed(0)
    lam = lara.LatentActionModel(lara.LAMConfig(image_size=16, patch_size=4, width=32, heads=2, idm_layers=1,
                                                fdm_layers=1))
    cfg = TrainConfig(steps=14, batch_size=4, log_every=1, checkpoint_every=100, progress=False,
                      wandb={"mode": "disabled"})
    trainer = Trainer(cfg, tmp_path, lam, lam_step, datasets=[lam_frames(16, same)], collate=lara_inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    said = [str(w.message) for w in caught if "barely varies" in str(w.message)]
    spreads = [r["lam/z_std"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert len(spreads) == 14
    if same:
        assert max(spreads) < COLLAPSED_SPREAD
        assert len(said) == 1 and "at step 14," in said[0] and "end of the LAM's own training" in said[0]
    else:
        assert min(spreads) > COLLAPSED_SPREAD, spreads
        assert said == []


def test_while_aligning_a_collapsed_latent_is_reported_after_ten_logged_steps_in_a_row(tmp_path):
    watch = CollapseWatch(tmp_path)
    low, live = {"align": 0.01, "lam/z_std": 0.0002}, {"align": 0.01, "lam/z_std": 0.2}
    assert [watch.observe(s, low, False) for s in range(1, 10)] == [None] * 9
    assert watch.observe(10, live, False) is None  # a live step starts the count over
    assert [watch.observe(s, low, False) for s in range(11, 20)] == [None] * 9
    said = watch.observe(20, low, False)
    assert "lam/z_std 0.0002 at step 20" in said and "for 10 logged steps in a row" in said
    assert watch.observe(21, low, True) is None  # once per run
    assert CollapseWatch(tmp_path).observe(1, {"lam/recon": 0.1}, True) is None  # nothing to judge: no LAM
