"""The README's "Wrapping a model" code runs as written: its first block alone (a fresh clone has no data),
then the EpisodeDataset block on files of the LIBERO schema this test writes where the README points."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))  # recipe_files: the demo writer

from recipe_files import write_demos  # noqa: E402


def wrapping_blocks() -> list[str]:
    section = README.read_text().split("## Wrapping a model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_wrapping_a_model_example_runs_as_written(tmp_path, monkeypatch, capsys):
    first, libero = wrapping_blocks()
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(first, "README.md: Wrapping a model", "exec"), scope)
    printed = capsys.readouterr().out.splitlines()
    losses = [eval(line) for line in printed if line.startswith("{")]  # the loop's component dicts
    assert len(losses) == 3 and {"base", "align", "lam/recon", "lam/code_usage"} <= set(losses[0])
    said = first.split("out.lara.items()})", 1)[1].split("lara.save", 1)[0]  # the print's comment
    assert [key for key in losses[0] if key not in said] == []  # it names every key it prints (issue 38)
    assert (tmp_path / "ckpt/lara/lara.safetensors").is_file() and (tmp_path / "ckpt/vla/config.json").is_file()
    assert scope["vla"] is scope["model"].base  # detach handed back the very object

    assert "trainable params: VLA 302,016 || projector 16,640 || LAM 1,977,440" in printed[0]
    assert "0.3M-parameter TokenVLA" in first and "2M-parameter LAM" in first  # what it prints, in its words
    between = README.read_text().split("## Wrapping a model", 1)[1].split("```python")[1].split("```", 1)[1]
    assert "`lara data generate --suite object --tasks 0 --episodes 2 --camera-size 64 --out data/scripted_object`" \
        in between  # a fresh clone has no data: the text before the EpisodeDataset block says how to make it
    write_demos(tmp_path / "data" / "scripted_object")  # what that command writes, in seconds
    exec(compile(libero, "README.md: EpisodeDataset batch", "exec"), scope)
    out = scope["out"]
    assert torch.isfinite(out.loss) and out.lara["base"] > 0 and out.lara["align"] > 0


def test_the_quick_start_builds_the_venv_alone_and_activates_it_before_the_first_lara_command():
    """Issue 38, newcomer path: `make install` sets up without the 11-15 minutes of `make test` / `make demo`, and
    `source .venv/bin/activate` comes before the first bare `lara ...` command the README shows."""
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert quick.splitlines()[0].startswith("make install ") and "source .venv/bin/activate" in quick
    first_command = re.search(r"(?<![\w./-])lara (train|eval|data|serve|demo|probe|study)\b", text).start()
    assert text.index("source .venv/bin/activate") < first_command
    assert re.search(r"^install:", (README.parent / "Makefile").read_text(), flags=re.M)
