"""Every exported run has a model card (RUN/final/README.md) the Hub reads, and every `lara eval` of it adds a row."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from lara import cli
from lara.adapters import checkpoints, model_card, posttrain
from lara.adapters.config import load_recipe
from lara.adapters.metrics import read_metrics

from recipe_files import tiny, write_demos


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with demonstrations, where the commands run (records name paths relative to it)."""
    folder = tmp_path_factory.mktemp("project")
    write_demos(folder / "demos")
    return folder


def train(project: Path, monkeypatch, run: str, *extra: str) -> Path:
    monkeypatch.chdir(project)
    posttrain.run(load_recipe("posttrain_token_vla", [*tiny(Path("demos"), Path(run), steps=2), *extra]))
    return project / run / "final"


@pytest.fixture(scope="module")
def final(project) -> Path:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return train(project, monkeypatch, "run")


def rows(card: ModelCard) -> list[str]:
    return model_card._rows(card.content)


def test_the_export_writes_a_card_the_hub_reads(final, project):
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "lara" and card.data.pipeline_tag == "robotics"
    assert {"lara", "robotics", "posttrain", "token_vla", "latent-action-alignment"} <= set(card.data.tags)
    assert card.data.base_model is None  # built from model.build, no pretrained model
    last = read_metrics(project / "run" / "metrics.jsonl")[-1]
    for name in model_card.HEALTH:  # LAM health: the last logged values
        assert f"| `{name}` | {last[name]:.4g} | {last['step']} | `run/metrics.jsonl` |" in card.text
    for command in ("lara eval libero --policy checkpoint:run/final/vla --suite spatial,object,goal,10 --trials 50 "
                    "--out run/eval/libero", "lara serve --checkpoint run/final/vla --port 8000",
                    'load_policy("checkpoint:run/final/vla")'):
        assert command in card.text
    assert "3 episodes with actions, 84 transitions" in card.text and "sources: `demos`" in card.text
    assert str(project) not in card.text and rows(card) == []
    # the card changes with each evaluation: the manifest a re-run verifies leaves it out
    assert "README.md" not in json.loads((final / "manifest.json").read_text())


def test_a_run_from_a_pretrained_model_names_it_as_base_model(final, project, monkeypatch):
    continued = train(project, monkeypatch, "continued", "model.path=run/final/vla", "model.build={}",
                      "data.paths=[{path: demos, labelled_per_task: 1, episodes: labelled}]")
    card = ModelCard.load(continued / "README.md")
    assert card.data.base_model == "run/final/vla" and "| started from | `run/final/vla` |" in card.text
    assert "sources: `demos` (labelled_per_task 1, episodes labelled)" in card.text
    split = json.loads((project / "continued" / "data_split.json").read_text())["data"]
    assert split[0]["count"] == 2  # one per task, of two tasks
    assert ("- data: labelled side of `demos` (1 labelled per task, split seed 0): 2 episodes, read with actions"
            in card.text)


def test_a_run_exported_before_cards_gets_one_at_its_first_evaluation(final, tmp_path, monkeypatch):
    older = tmp_path / "older" / "final"
    shutil.copytree(final, older)
    (older / "README.md").unlink()
    monkeypatch.chdir(tmp_path)
    row = model_card.evaluation_row("2025-01-01 00:00", "LIBERO", "libero_object", "1", 3, 4, (0.3, 0.95), "",
                                    "lara eval libero --policy checkpoint:older/final/vla")
    model_card.add_evaluations(model_card.run_final(older / "vla"), [row])
    card = ModelCard.load(older / "README.md")
    assert card.data.library_name == "lara" and rows(card) == [row]
    assert "| 2025-01-01 00:00 | LIBERO | libero_object | 1 | 3/4 (75.0%) | 30.0-95.0% | - |" in row
    assert model_card.run_final(older.parent / "checkpoints" / "step_000002" / "vla") is None  # not a run's export


@pytest.mark.slow
def test_two_evaluations_add_two_rows_and_keep_the_first(final, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    common = ["eval", "libero", "--policy", "checkpoint:run/final/vla", "--suite", "object", "--trials", "1",
              "--max-steps", "1", "--no-video"]
    assert cli.main([*common, "--tasks", "1", "--out", "run/eval/first"]) == 0
    assert "model card: run/final/README.md" in capsys.readouterr().out
    first = rows(ModelCard.load(final / "README.md"))
    assert cli.main([*common, "--tasks", "2", "--out", str(project / "run" / "eval" / "second")]) == 0
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "lara" and len(first) == 1
    both = rows(card)
    assert both[0] == first[0] and len(both) == 2  # the earlier row kept as it was
    for row, task, out in zip(both, ("1", "2"), ("run/eval/first", "run/eval/second")):
        results = json.loads((project / out / "results.json").read_text())
        k = results["tasks"][0]["successes"]
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1:5] == ["LIBERO", "libero_object", task, f"{k}/1 ({100.0 * k:.1f}%)"]
        assert cells[6] == "1 steps, not the protocol's 280"  # --max-steps said in the row
        assert cells[7] == ("`lara eval libero --policy checkpoint:run/final/vla --suite object --trials 1 "
                            f"--max-steps 1 --no-video --tasks {task} --out {out}`")  # an absolute --out: relative
    assert str(project) not in card.text
    # the finished run, re-run as it was, still verifies (the card is not in its manifest) and keeps its rows
    assert checkpoints.verify(final) is None
    train(project, monkeypatch, "run")
    assert rows(ModelCard.load(final / "README.md")) == both


def test_the_evaluation_process_that_writes_the_row_imports_neither_torch_nor_scipy():
    """`lara eval` adds its row to the card from its own process, which runs no policy (its workers do): importing
    torch and scipy.stats there cost 1.7 s of CPU before the first episode (2.8 -> 1.1 s measured)."""
    code = ("import sys; import lara.benchmarks.cli, lara.benchmarks.card_rows, lara.benchmarks.libero.evaluate, "
            "lara.benchmarks.simpler.evaluate; "
            "print(sorted(m for m in ('torch', 'scipy.stats', 'transformers') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
