"""A miniature study with the real pipeline: two cells trained and evaluated, then resumed without re-running."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch

from lara.benchmarks.study import cli
from lara.benchmarks.study.cells import machine
from lara.outputs import recorded

# the demo's shrinking overrides (benchmarks/demo.py, tests/adapters/test_demo.py) at the demonstrations' 32 px
TINY = ["train.steps=2", "posttrain.lam_warmup_steps=2", "train.batch_size=4", "train.log_every=1",
        "train.checkpoint_every=2", "train.warmup_steps=1", "train.wandb.mode=disabled", "train.progress=false",
        "model.build={width: 32, layers: 1, image_size: 32}", "data.image_size=32", "lara.lam.image_size=32",
        "lara.lam.width=32", "lara.lam.idm_layers=1", "lara.lam.fdm_layers=1"]
STEPS = 40  # the shared miniature study's training steps (tests/study/conftest.py), a checkpoint every 4: the
# executor tests interrupt a cell after its first


@pytest.mark.slow
def test_a_miniature_study_runs_its_cells_and_resumes_them(miniature_study, libero_object_demos, capsys):
    shared, out, printed = miniature_study  # run by the thread executor, both cells at once (tests/study/conftest.py)
    argv = [*shared, "--out", str(out)]
    first = json.loads((out / "study.json").read_text())
    assert first["command"] == "lara study " + " ".join(f"'{a}'" if " " in a else a for a in argv)
    cells = {c["variant"]: c for c in first["cells"]}
    assert set(cells) == {"baseline", "lara"} and all(c["seed"] == 0 for c in cells.values())
    for cell in cells.values():
        assert cell["success"] == {"0": [cell["episodes"][0][2], 1]} and cell["episodes"][0][:2] == [0, 0]
        assert cell["train_s"] > 0 and cell["eval_s"] > 0 and cell["camera_size"] == 32
        assert cell["load"]["first"] is None and all(len(cell["load"][p]) == 2 and min(cell["load"][p]) >= 0
                                                     for p in ("train", "eval"))
    assert cells["baseline"]["code_usage"] is None and cells["baseline"]["align_cos"] is None
    assert 0 < cells["lara"]["code_usage"] <= 1 and -1 <= cells["lara"]["align_cos"] <= 1
    recipe = json.loads((out / "cells/lara/seed0/run/final/recipe.json").read_text())
    assert recipe["train"]["seed"] == 0 and recipe["data"]["paths"] == [recorded(libero_object_demos)]
    assert json.loads((out / "cells/baseline/seed0/run/final/recipe.json").read_text())["baseline"] is True
    results = json.loads((out / "cells/lara/seed0/eval/results.json").read_text())
    assert results["protocol"]["camera_size"] == 32 and results["protocol"]["max_steps"] == {"libero_object": 2}
    assert set(first["variants"]) == {"baseline", "lara"} and first["variants"]["lara"]["success"]["n"] == 1
    assert first["differences"]["lara"]["paired_episodes"] == 1 and set(first["differences"]) == {"lara"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(cli.__file__).parent, capture_output=True,
                          text=True).stdout.strip()
    assert first["settings"]["source"]["commit"] == head and len(head) == 40  # the code the cells ran
    assert all(c["source"]["train"]["commit"] == c["source"]["eval"]["commit"] == head and c["source"]["first"] is None
               for c in cells.values())  # and each cell's phases
    for cell in cells.values():  # with whether the checkout was dirty and the versions that decide the numbers
        for phase in ("train", "eval"):
            assert isinstance(cell["source"][phase]["dirty"], bool)
            assert cell["source"][phase]["versions"] == {name: metadata.version(name) for name in
                                                         ("torch", "transformers", "numpy", "mujoco")}
            assert cell["source"][phase]["machine"] == machine()  # the CPU torch's kernels were chosen for
    text = (out / "study.md").read_text()
    assert f"Code: commit {head}" in text and "load average (1 min) while cells ran: " in text
    assert f"Every cell trained on {machine()['cpu']} ({torch.backends.cpu.get_cpu_capability()})." in text
    assert first["command"] in text.splitlines()[3] and "| lara | 1 |" in text and "lara - baseline" in text
    assert (out / "study.png").stat().st_size > 1000

    logs = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/seed0/*.log")}
    assert len(logs) == 4 and "trained in" in printed
    assert cli.main(argv) == 0
    assert "done before: skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/seed0/*.log")} == logs  # nothing re-ran
    assert json.loads((out / "study.json").read_text()) == first
