"""A checkpoint loads tensors and plain values only: a pickled payload in any of its files is refused, never run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

from lara import cli
from lara.adapters import checkpoints, posttrain
from lara.adapters.config import load_recipe
from lara.adapters.safe_loading import load_state_file, safe_load
from lara.adapters.metrics import read_metrics
from lara.errors import InputError

from recipe_files import tiny, write_demos


class Payload:
    """What a crafted file holds: unpickling it creates `marker` (it could as well run a shell)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def reseal(checkpoint: Path) -> None:
    """Rewrite the manifest after tampering, as an attacker would: the manifest is no obstacle."""
    (checkpoint / checkpoints.MANIFEST).unlink()
    staging = checkpoint.with_name(checkpoint.name + ".tmp")
    checkpoint.rename(staging)
    checkpoints.seal(staging)


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 4-step run as a kill after step 2's checkpoint leaves it, and its overrides."""
    root = tmp_path_factory.mktemp("safety")
    run = root / "run"
    overrides = tiny(write_demos(root / "demos"), run, steps=4)
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoints" / "step_000004")
    return run, overrides


def copy_of(unfinished, tmp_path: Path) -> tuple[Path, list[str]]:
    run, overrides = unfinished
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", [o if not o.startswith("output_dir=") else f"output_dir={tmp_path / 'run'}"
                              for o in overrides]


def test_every_state_file_with_a_pickled_payload_is_refused_unrun(unfinished, tmp_path):
    state = unfinished[0] / "checkpoints" / "step_000002" / "state"
    names = sorted(p.name for p in state.glob("*.pt"))
    assert {"model.pt", "optimizer.pt", "scheduler.pt", "rng_rank0.pt"} <= set(names)
    for name in names:
        load_state_file(state / name, legacy_numpy=name.startswith("rng"))  # the real file loads
        crafted, marker = tmp_path / name, tmp_path / f"ran-{name}"
        torch.save({"state": Payload(marker)}, crafted)
        with pytest.raises(InputError, match=rf"{name}: holds more than tensors and plain values .* LARA loads no "
                                             r"code from a checkpoint\. Delete this checkpoint folder"):
            load_state_file(crafted, legacy_numpy=name.startswith("rng"))
        assert not marker.exists(), f"unpickling a crafted {name} ran its code"


def test_a_crafted_rng_file_behind_a_rewritten_manifest_is_one_line_on_resume(unfinished, tmp_path, capsys):
    run, overrides = copy_of(unfinished, tmp_path)
    checkpoint, marker = run / "checkpoints" / "step_000002", tmp_path / "ran"
    torch.save({"python": Payload(marker)}, checkpoint / "state" / "rng_rank0.pt")
    reseal(checkpoint)
    assert checkpoints.verify(checkpoint) is None
    assert cli.main(["train", "posttrain_token_vla", *overrides]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1 and "rng_rank0.pt" in error
    assert not marker.exists()


def test_an_rng_file_written_before_the_change_still_resumes(unfinished, tmp_path):
    """Runs saved before issue 22 hold numpy's key array as an ndarray: it is rebuilt, nothing else is allowed."""
    run, overrides = copy_of(unfinished, tmp_path)
    checkpoint = run / "checkpoints" / "step_000002"
    saved = torch.load(checkpoint / "state" / "rng_rank0.pt", weights_only=True)
    name, keys, position, has_gauss, gaussian = saved["numpy"]
    old = {"python": saved["python"], "torch": saved["torch"],
           "numpy": (name, keys.numpy().astype(np.uint32), position, has_gauss, gaussian)}  # np.random.get_state()
    torch.save(old, checkpoint / "state" / "rng_rank0.pt")
    reseal(checkpoint)
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert (run / "final" / "recipe.json").is_file()


def test_sharded_checkpoints_refuse_a_crafted_metadata_or_value(tmp_path):
    """train.fsdp=true saves with torch.distributed.checkpoint, whose reader unpickles .metadata and non-tensor
    values with pickle: both are checked first."""
    model = torch.nn.Linear(3, 2)
    state = {"model": model.state_dict(), "extra": {"lr": 0.1}}
    dcp.save(state, checkpoint_id=tmp_path / "good")
    safe_load(state, tmp_path / "good")  # real files load

    marker = tmp_path / "ran"
    dcp.save({"model": model.state_dict(), "extra": {"lr": Payload(marker)}}, checkpoint_id=tmp_path / "value")
    with pytest.raises(InputError, match="value `extra.lr` holds more than tensors and plain values"):
        safe_load(state, tmp_path / "value")
    assert not marker.exists()

    shutil.copytree(tmp_path / "good", tmp_path / "meta")
    (tmp_path / "meta" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(InputError, match=r"\.metadata: a sharded checkpoint's \.metadata names `posix\.mkdir`"):
        safe_load(state, tmp_path / "meta")
    assert not marker.exists()
    assert json.dumps(state["extra"]) == '{"lr": 0.1}'
