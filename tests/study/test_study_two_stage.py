"""Two-stage variants: latent-action pre-training, then post-training from it, in one study cell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lara.benchmarks.study import cli
from lara.benchmarks.study.cells import plan_cells, read_cell, run_cell
from lara.benchmarks.study.config import load_study
from lara.errors import InputError
from lara.outputs import recorded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))  # recipe_files: the demo writer

from recipe_files import write_demos  # noqa: E402

STUDY_FILE = Path(__file__).parents[2] / "benchmarks" / "study" / "configs" / "latent_pretrain_token_vla.yaml"
TINY = ["train.steps=2", "posttrain.lam_warmup_steps=2", "train.batch_size=4", "train.log_every=1",
        "train.checkpoint_every=2", "train.warmup_steps=1", "train.wandb.mode=disabled", "train.progress=false",
        "model.build={width: 32, layers: 1, image_size: 32}", "data.image_size=32", "lara.lam.image_size=32",
        "lara.lam.width=32", "lara.lam.idm_layers=1", "lara.lam.fdm_layers=1"]


def shipped_study(data: Path, out: Path, **fields) -> dict:
    raw = cli.study_fields(cli.build_parser().parse_args([str(STUDY_FILE)]))
    return {**raw, "data": [str(data)], "out": str(out), **fields}


def test_the_shipped_study_runs_latent_pretraining_first_then_posttrains_from_it(tmp_path):
    demos = write_demos(tmp_path / "demos")
    study = load_study(shipped_study(demos, tmp_path / "study"))
    cells = {(c.variant, c.seed): c for c in plan_cells(study)}
    assert {variant for variant, _ in cells} == {"baseline", "lara", "latent"}
    latent = cells[("latent", 1)]
    first = latent.first_args
    assert first[:2] == ["train", "latent_pretrain_token_vla"]
    assert first[2 : 2 + len(study.overrides)] == study.overrides  # the shared overrides, then the stage's own
    assert first[-2:] == [f"data.paths=[{demos}]", "train.seed=1"]  # the study's data, the cell's seed
    assert "baseline=true" in latent.train_args
    assert f"model.path={latent.folder / 'first' / 'final' / 'vla'}" in latent.train_args
    assert cells[("baseline", 1)].first_args is None and cells[("lara", 1)].first_args is None


@pytest.mark.parametrize("variant, message", [
    ({"first": {"preset": "latent_pretrain_token_vla"}, "overrides": ["model.path=x"]},
     "'model.path' of a two-stage variant is its first stage's VLA"),
    ({"first": {"preset": "latent_pretrain_token_vla", "overrides": ["train.seed=3"]}},
     "variant 'v' (first stage): 'train.seed' is set by the study"),
    ({"first": {"preset": "latent_pretrain_tokenvla"}}, "Did you mean 'latent_pretrain_token_vla'?"),
])
def test_a_bad_two_stage_variant_is_named(tmp_path, variant, message):
    raw = shipped_study(tmp_path, tmp_path / "study", variants={"v": variant})
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        plan_cells(load_study(raw))


def test_baseline_may_be_a_variant_override_but_not_a_shared_one(tmp_path):
    raw = shipped_study(tmp_path, tmp_path / "study")
    with pytest.raises(InputError, match="--set: 'baseline' is set by the study"):
        load_study({**raw, "overrides": [*raw["overrides"], "baseline=true"]})


@pytest.mark.slow
def test_a_two_stage_cell_trains_both_stages_evaluates_and_is_skipped_when_done(tmp_path):
    """`lara train latent_pretrain_token_vla` -> `lara train posttrain_token_vla model.path=...` -> `lara eval
    libero`, each the real command in a subprocess, as a study runs them."""
    demos = write_demos(tmp_path / "demos")
    variants = {"latent": {"first": {"preset": "latent_pretrain_token_vla", "overrides": ["latent.lam_steps=2"]},
                           "overrides": ["baseline=true"]}}
    study = load_study(shipped_study(demos, tmp_path / "study", seeds=[0], tasks=[0], trials=1, max_steps=2,
                                     overrides=TINY, variants=variants))
    cell = next(c for c in plan_cells(study) if c.variant == "latent")
    record = run_cell(cell, eval_workers=1, threads=1, say=lambda line: None)
    assert json.loads((cell.first / "final" / "vla" / "config.json").read_text())["latent_codes"] == 8
    assert json.loads((cell.run / "final" / "vla" / "config.json").read_text())["latent_codes"] == 0
    recipe = json.loads((cell.run / "final" / "recipe.json").read_text())
    assert recipe["model"]["path"] == recorded(cell.first / "final" / "vla") and recipe["baseline"] is True
    assert record["success"] == {"0": [record["episodes"][0][2], 1]} and record["camera_size"] == 32
    assert record["first_s"] > 0 and 0 <= record["first_metrics"]["latent_accuracy"] <= 1
    assert record["first_metrics"]["latent_chance"] == 1.0  # two LAM steps: a collapsed LAM, as the recipe warns
    logs = {p: p.stat().st_mtime_ns for p in cell.folder.glob("*.log")}
    assert set(p.name for p in logs) == {"first.log", "train.log", "eval.log"}
    state = json.loads((cell.folder / "cell.json").read_text())
    assert state["first"] == cell.first_args and run_cell(cell, 1, 1, say=lambda line: None) == read_cell(cell, state)
    assert {p: p.stat().st_mtime_ns for p in cell.folder.glob("*.log")} == logs  # nothing re-ran
