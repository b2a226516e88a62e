"""A run folder holds one training: a re-run with another config is refused, a finished run's records stay."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lara import cli
from lara.adapters import checkpoints, posttrain
from lara.adapters.config import load_recipe
from lara.adapters.metrics import read_metrics
from lara.adapters.run_folder import differences
from lara.errors import InputError

from recipe_files import tiny, write_demos

RECORDS = ("final/recipe.json", "final/lara/lara_config.json", "final/lara/lara.safetensors", "metrics.jsonl")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


@pytest.fixture(scope="module")
def finished(demos, tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 2-step run, and the overrides it was trained with."""
    run = tmp_path_factory.mktemp("finished") / "run"
    overrides = tiny(demos, run, steps=2)
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    return run, overrides


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {name: ((run / name).read_bytes(), (run / name).stat().st_mtime_ns) for name in RECORDS}


def test_a_finished_run_with_a_changed_config_is_refused_and_keeps_its_records(finished):
    run, overrides = finished
    before = snapshot(run)
    changed = overrides + ["train.lr=1e-3", "lara.align_weight=0.5"]
    with pytest.raises(InputError, match=r"holds a finished run whose config .*recipe.json\) differs in 2 "
                                         r"training-relevant fields .*lara.align_weight: 0.01 -> 0.5; "
                                         r"train.lr: 0.0003 -> 0.001\. .*give a new output_dir"):
        posttrain.run(load_recipe("posttrain_token_vla", changed))
    with pytest.raises(InputError, match="A finished run is not changed"):  # the override is for unfinished runs
        posttrain.run(load_recipe("posttrain_token_vla", changed + ["train.allow_config_change=true"]))
    with pytest.raises(InputError, match="train.resume=false would train it afresh over its records"):
        posttrain.run(load_recipe("posttrain_token_vla", overrides + ["train.resume=false"]))
    assert snapshot(run) == before


def test_a_finished_run_re_run_as_it_was_trains_nothing_and_rewrites_nothing(finished, capsys):
    run, overrides = finished
    before = snapshot(run)
    # logging and progress settings are not training-relevant: the same run
    result = posttrain.run(load_recipe("posttrain_token_vla", overrides + ["train.log_every=2", "train.progress=true"]))
    assert result["final"] == run / "final"
    assert snapshot(run) == before
    out = capsys.readouterr().out
    assert "nothing to train" in out and "resumed from" not in out  # issue 38: no resume announced before it


def test_a_runs_records_name_its_paths_relative_to_the_project(finished, demos):
    """Issue 40: trained with absolute paths (tmp folders), the run records them relative to the project (the
    working folder), never by the machine's absolute layout; a re-run with the absolute paths is the same run, and
    so is a record an earlier version wrote with absolute paths."""
    run, overrides = finished
    recipe = json.loads((run / "final" / "recipe.json").read_text())
    states = [json.loads(p.read_text())["config"] for p in run.glob("checkpoints/*/trainer_state.json")]
    assert states  # the checkpoints record the config too
    for record in (recipe, *states):
        assert not os.path.isabs(record["output_dir"]) and Path(record["output_dir"]).resolve() == run.resolve()
        (data,) = record["data"]["paths"]
        assert not os.path.isabs(data) and Path(data).resolve() == demos.resolve()
    earlier = {**recipe, "output_dir": str(run), "data": {**recipe["data"], "paths": [str(demos)]}}
    assert differences(earlier, load_recipe("posttrain_token_vla", overrides).record()) == {}
    moved = {**recipe, "data": {**recipe["data"], "paths": [str(demos.parent / "other")]}}
    assert set(differences(moved, load_recipe("posttrain_token_vla", overrides).record())) == {"data.paths"}


def killed_after_step_2(demos: Path, run: Path) -> list[str]:
    """A 4-step run as a kill after step 2's checkpoint leaves it; its overrides."""
    overrides = tiny(demos, run, steps=4)
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoints" / "step_000004")
    return overrides


def test_an_unfinished_run_resumes_under_a_changed_config_only_when_told(demos, tmp_path):
    run = tmp_path / "run"
    overrides = killed_after_step_2(demos, run)
    changed = overrides + ["train.lr=1e-3"]
    with pytest.raises(InputError, match=r"holds a started run whose config \(.*step_000002/trainer_state.json\) "
                                         r"differs in 1 training-relevant field \(saved -> now\): train.lr: 0.0003 -> "
                                         r"0.001\. Give a new output_dir .* or train.allow_config_change=true"):
        posttrain.run(load_recipe("posttrain_token_vla", changed))
    assert not (run / "final").exists() and not (run / "config_changes.jsonl").exists()

    posttrain.run(load_recipe("posttrain_token_vla", changed + ["train.allow_config_change=true"]))
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]  # resumed, not restarted
    (change,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert change["changes"] == {"train.lr": {"saved": 3e-4, "now": 1e-3}}
    assert json.loads((run / "final" / "recipe.json").read_text())["train"]["lr"] == 1e-3


def test_another_model_shape_is_one_clear_error_not_a_state_dict_traceback(demos, tmp_path):
    run = tmp_path / "run"
    overrides = killed_after_step_2(demos, run)
    wider = overrides + ["model.build={width: 48, layers: 1, image_size: 32}"]
    with pytest.raises(InputError, match=r"model.build.width: 32 -> 48"):
        posttrain.run(load_recipe("posttrain_token_vla", wider))
    with pytest.raises(InputError, match=r"step_000002: the saved weights do not fit the model this config builds "
                                         r"\(shape saved -> now: \['base\..* \(.*32.*\) -> \(.*48.*\)'"):
        posttrain.run(load_recipe("posttrain_token_vla", wider + ["train.allow_config_change=true"]))


def test_lara_train_refuses_on_one_line_with_exit_2(finished, capsys):
    run, overrides = finished
    assert cli.main(["train", "posttrain_token_vla", *overrides, "train.seed=1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1 and "train.seed: 0 -> 1" in error


def test_which_fields_count_as_training_relevant():
    base = load_recipe("posttrain_token_vla").model_dump(mode="json")
    same_training = load_recipe("posttrain_token_vla", [
        "output_dir=elsewhere", "train.progress=false", "train.wandb.mode=disabled", "train.log_every=5",
        "train.checkpoint_every=100", "train.keep_checkpoints=5", "train.num_workers=2", "lara.check_inputs=false",
        "refine.probe_samples=64", "pretrain.lam_steps=7",  # posttrain never reads pretrain.*
    ]).model_dump(mode="json")
    assert differences(base, same_training) == {}
    other = load_recipe("posttrain_token_vla", ["train.seed=3", "data.frame_gap=5", "lara.lam.action_horizon=5",
                                                "train.mixed_precision=bf16", "posttrain.lam_warmup_steps=0"])
    assert set(differences(base, other.model_dump(mode="json"))) == {
        "train.seed", "data.frame_gap", "lara.lam.action_horizon", "train.mixed_precision",
        "posttrain.lam_warmup_steps"}
    # a config saved before a field existed: the field takes today's default, which is no change
    older = json.loads(json.dumps(base))
    del older["train"]["allow_config_change"], older["data"]["skip_bad_files"]
    assert differences(older, base) == {}


def test_resume_false_starts_an_unfinished_run_over_under_any_config(demos, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = killed_after_step_2(demos, run)
    capsys.readouterr()
    posttrain.run(load_recipe("posttrain_token_vla", overrides + ["train.lr=1e-3", "train.resume=false"]))
    assert "resumed from" not in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert json.loads((run / "final" / "recipe.json").read_text())["train"]["lr"] == 1e-3


def test_starting_over_sets_the_earlier_checkpoints_aside(demos, tmp_path, capsys):
    """An earlier run's step 4 left beside a restarted 2-step run would outrank it: in pruning and on resume."""
    run = tmp_path / "run"
    overrides = tiny(demos, run, steps=4)
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    shutil.rmtree(run / "final")  # unfinished as far as the folder tells: a start-over is allowed
    earlier = {p.name: (p / "trainer_state.json").read_bytes() for p in (run / "checkpoints").iterdir()}
    restart = overrides + ["train.steps=2", "train.resume=false"]
    posttrain.run(load_recipe("posttrain_token_vla", restart))
    assert "kept in checkpoints.earlier-1" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002"]
    kept = run / "checkpoints.earlier-1"
    assert {p.name: (p / "trainer_state.json").read_bytes() for p in kept.iterdir()} == earlier  # nothing lost
    assert checkpoints.latest_intact(run / "checkpoints").name == "step_000002"  # what a resume picks


def copied(finished, tmp_path: Path) -> tuple[Path, list[str]]:
    run, overrides = finished
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", [f"output_dir={tmp_path / 'run'}" if o.startswith("output_dir=") else o for o in overrides]


def test_a_finished_run_with_a_damaged_export_is_refused_not_called_done(finished, tmp_path, capsys):
    run, overrides = copied(finished, tmp_path)
    assert json.loads((run / "final" / "manifest.json").read_text())["vla/model.safetensors"]["bytes"] > 0
    weights = run / "final" / "vla" / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])  # truncated
    assert cli.main(["train", "posttrain_token_vla", *overrides]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1
    assert f"final is damaged: vla/model.safetensors has {len(whole) // 2} bytes, the manifest says {len(whole)}" \
           f" (recorded at export). Move {run / 'final'} aside" in error
    (run / "final").rename(run / "final.damaged")  # as the error says: the last checkpoint is exported again
    posttrain.run(load_recipe("posttrain_token_vla", overrides))
    assert (run / "final" / "vla" / "model.safetensors").read_bytes() == whole
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]  # nothing trained again


def test_a_second_process_training_in_the_same_folder_is_refused(finished, tmp_path, capsys):
    """The first holds RUN/.lock while it trains: a second `lara train` into the folder ends on one line."""
    import subprocess
    import sys

    run, overrides = copied(finished, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom lara.adapters.run_folder import locked\n"
                               f"with locked({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(["train", "posttrain_token_vla", *overrides]) == 2
        error = capsys.readouterr().err
        assert error == (f"lara train: error: {run} is in use: process {holder.pid} on {os.uname().nodename} trains "
                         f"in it (it holds {run / '.lock'}); wait for it to end, or give another output_dir\n")
    finally:
        holder.kill()
        holder.wait()
    assert cli.main(["train", "posttrain_token_vla", *overrides]) == 0  # the lock goes with its process
