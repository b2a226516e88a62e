"""FSDP2 (`train.fsdp=true`) on 2 CPU processes over gloo: the same training as one process on the doubled batch
(and as DDP with LoRA), exact resume after a kill, and a final export equal to the gathered parameters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from lara.adapters import checkpoints
from lara.adapters.metrics import read_metrics

from recipe_files import tiny, write_demos

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# port 0: a free port of its own, as two pytest workers may launch at once
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
          "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lara.adapters.cli"]
# fsq: no codebook whose restarts draw from each rank's own latents; complete samples only, so the per-process
# means average to the global mean. A 2-layer TokenVLA: two Llama blocks and a SigLIP block are FSDP units.
COMMON = ["data.drop_incomplete=true", "lara.lam.quantizer=fsq", "model.build={width: 32, layers: 2, image_size: 32}"]


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


def losses(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def command(demos: Path, out: Path, steps: int, every: int, *extra: str, processes: int = 2) -> list[str]:
    head = LAUNCH if processes == 2 else [sys.executable, "-m", "lara.adapters.cli"]
    return [*head, "posttrain_token_vla", *tiny(demos, out, steps=steps, every=every), *COMMON, *extra]


def gathered(checkpoint: Path) -> dict[str, torch.Tensor]:
    """A sharded checkpoint's trainable weights stitched into full tensors, offline (no process group)."""
    dcp_to_torch_save(checkpoint / "state" / "sharded", checkpoint / "gathered.pt")
    return torch.load(checkpoint / "gathered.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_fsdp_trains_as_one_process_with_the_doubled_batch(demos, tmp_path):
    """FSDP2 on 2 processes against 1 process on their combined batch: the same losses and weights. (DDP against 1
    process is tests/adapters/test_trainer.py's; the pi0 and pi0.5 tests below compare FSDP with DDP.)"""
    # 2 micro-batches per step: FSDP skips the gradient reduce-scatter of the first
    runs = (("fsdp", ["train.fsdp=true"], 2), ("one", ["train.batch_size=8"], 1))
    for name, extra, processes in runs:
        subprocess.run(command(demos, tmp_path / name, 3, 3, "train.grad_accum=2", *extra, processes=processes),
                       check=True, env=ENV, cwd=ROOT, capture_output=True)
    sequences = {name: [r["loss"] for r in losses(tmp_path / name)] for name in ("fsdp", "one")}
    assert len(set(sequences["one"])) == 3  # the weights moved: every step saw a different loss
    # float32 sums in another order (reduce-scatter of shards vs one process): rel 1e-5
    assert sequences["fsdp"] == pytest.approx(sequences["one"], rel=1e-5)
    for name in ("align", "lam/recon", "base"):  # the hook found its layer inside the FSDP-wrapped block
        on_fsdp, on_one = ([r[name] for r in losses(tmp_path / run)] for run in ("fsdp", "one"))
        assert on_fsdp == pytest.approx(on_one, rel=1e-5)

    step = checkpoints.checkpoints(tmp_path / "fsdp" / "checkpoints")[0]
    assert '"fsdp": true' in (step / "trainer_state.json").read_text()
    sharded = gathered(step)
    one = torch.load(checkpoints.checkpoints(tmp_path / "one" / "checkpoints")[0] / "state" / "model.pt",
                     weights_only=True)
    assert sharded.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(sharded[key], one[key], rtol=1e-4, atol=1e-6, msg=key)

    # RUN/final: the VLA (save_pretrained) and the LARA artifact, from the gathered model on rank 0
    final = tmp_path / "fsdp" / "final"
    exported = {f"base.{k}": v for k, v in load_file(final / "vla" / "model.safetensors").items()}
    exported.update(load_file(final / "lara" / "lara.safetensors"))
    compared = [k for k in sharded if k in exported]
    assert len(compared) >= len(sharded) - 2  # all but non-persistent buffers the exports leave out
    for key in compared:
        assert torch.equal(exported[key], sharded[key]), key


@pytest.mark.slow
def test_killed_fsdp_run_resumes_with_the_identical_loss_sequence(demos, tmp_path):
    steps, fsdp = 8, ["train.fsdp=true", "train.ema_decay=0.9"]  # the EMA's shadow weights are sharded too
    subprocess.run(command(demos, tmp_path / "straight", steps, 2, *fsdp), check=True, env=ENV, cwd=ROOT,
                   capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(command(demos, run, steps, 2, *fsdp), env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (run / "checkpoints" / "step_000004" / checkpoints.MANIFEST).exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its 4th step was saved"
        time.sleep(0.02)
    # the launcher and both workers: torch's elastic agent starts each worker in a session of its own, so the
    # launcher's process group does not hold them; a dying node takes all three at once
    launcher = psutil.Process(proc.pid)
    workers = launcher.children(recursive=True)
    for process in [launcher, *workers]:
        process.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(workers, timeout=30)
    assert not (run / "checkpoints" / f"step_{steps:06d}").exists(), "the kill came too late to test anything"
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) < steps

    resumed = subprocess.run(command(demos, run, steps, 2, *fsdp), check=True, env=ENV, cwd=ROOT,
                             capture_output=True, text=True)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert [r["step"] for r in losses(run)] == list(range(1, steps + 1))
    assert losses(run) == losses(tmp_path / "straight")  # bit for bit, every component and the LR
    for export in ("vla/model.safetensors", "lara/lara.safetensors"):  # the EMA weights, restored exactly
        resumed_weights, straight = (load_file(r / "final" / export) for r in (run, tmp_path / "straight"))
        assert resumed_weights.keys() == straight.keys()
        assert all(torch.equal(resumed_weights[k], straight[k]) for k in straight), export


def fsdp_equals_ddp_with_lora_and_checkpointing(demos, tmp_path, family: str) -> None:
    """Three LoRA + gradient-checkpointing steps of a flow-matching backbone under FSDP2 and under DDP log the same
    losses (the losses differ from step to step, so equal ones are not a constant)."""
    build = "model.build={width: 32, expert_width: 16, layers: 2, image_size: 32, chunk_size: 10, vocab_size: 512}"
    extra = ["model.lora={r: 4}", "train.gradient_checkpointing=true", "data.drop_incomplete=true", build]
    for name, flags in (("fsdp", ["train.fsdp=true"]), ("ddp", [])):
        subprocess.run([*LAUNCH, f"posttrain_{family}", *tiny(demos, tmp_path / name, steps=3, every=3, family=family),
                        *extra, *flags], check=True, env=ENV, cwd=ROOT, capture_output=True)
    fsdp_run, ddp_run = losses(tmp_path / "fsdp"), losses(tmp_path / "ddp")
    assert len({r["loss"] for r in ddp_run}) == 3
    for a, b in zip(fsdp_run, ddp_run):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_fsdp_pi0_with_lora_and_gradient_checkpointing_trains_as_ddp(demos, tmp_path):
    """pi0's prefix LM passes its keys and values to the expert through a KV cache: those blocks stay gathered
    until their backward (adapters/fsdp.py KEEP_GATHERED); LoRA's frozen base weights are sharded too."""
    fsdp_equals_ddp_with_lora_and_checkpointing(demos, tmp_path, "pi0")
    adapters = load_file(tmp_path / "fsdp" / "checkpoints" / "step_000003" / "vla" / "adapter_model.safetensors")
    assert adapters and all("lora_" in k for k in adapters)  # the checkpoint's VLA export is the LoRA adapter


@pytest.mark.slow
def test_fsdp_pi05_with_lora_and_gradient_checkpointing_trains_as_ddp(demos, tmp_path):
    """pi0.5 hands its prefix LM's keys and values to the action expert as pi0 does (KEEP_GATHERED from the
    backbone table): FSDP2 with LoRA and its SigLIP tower checkpointed logs DDP's losses."""
    fsdp_equals_ddp_with_lora_and_checkpointing(demos, tmp_path, "pi05")
    merged = load_file(tmp_path / "fsdp" / "final" / "vla" / "model.safetensors")
    assert merged and not any("lora" in k for k in merged)  # the gathered export, LoRA merged


def test_fsdp_setups_that_cannot_work_are_refused_in_one_line(demos, tmp_path, monkeypatch):
    from lara.adapters import posttrain
    from lara.adapters.config import TrainConfig, load_recipe
    from lara.adapters.trainer import make_accelerator
    from lara.errors import InputError

    with pytest.raises(InputError, match="one. Launch it with `accelerate launch --multi_gpu"):
        posttrain.run(load_recipe("posttrain_token_vla", tiny(demos, tmp_path / "one", steps=1, every=1) +
                                  ["train.fsdp=true"]))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with an FSDP config sets
    with pytest.raises(InputError, match="set train.fsdp=true"):
        make_accelerator(TrainConfig(), tmp_path)
