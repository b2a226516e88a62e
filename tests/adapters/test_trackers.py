"""train.trackers: accelerate's experiment trackers beside RUN/metrics.jsonl, which is always written."""

from __future__ import annotations

import json
from pathlib import Path

import accelerate.tracking
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from lara import cli
from lara.adapters import posttrain
from lara.adapters.config import TrainConfig, load_recipe
from lara.adapters.metrics import read_metrics

from recipe_files import tiny, write_demos


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a tensorboard run folder as tensorboard shows it: (step, value) per tag, after its purges."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()  # 0: keep every event
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_logged(run: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl in the same shape, each value as the float32 a tensorboard scalar holds."""
    records = read_metrics(run / "metrics.jsonl")
    tags = sorted({name for record in records for name in record} - {"step"})
    return {tag: [(r["step"], float(np.float32(r[tag]))) for r in records if tag in r] for tag in tags}


def test_tensorboard_holds_the_logged_values_and_a_resumed_run_appends_to_the_same_folder(demos, tmp_path):
    run = tmp_path / "run"
    overrides = tiny(demos, run, steps=6, every=2) + ["train.trackers=[tensorboard]"]
    posttrain.run(load_recipe("posttrain_token_vla", overrides))

    board = run / "trackers" / "lara"  # RUN/trackers/<train.wandb.project>
    logged = as_logged(run)  # JSONL is written though train.trackers does not list it
    assert [step for step, _ in logged["loss"]] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "base", "align", "lam/recon", "lr", "grad_norm"} <= set(logged)
    assert scalars(board) == logged  # every tag, every logged step, the same value
    hparams = [folder for folder in board.iterdir() if folder.is_dir() and any(folder.glob("events.*"))]
    content = EventAccumulator(str(hparams[0])).Reload().PluginTagToContent("hparams")
    stored = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert stored.session_start_info.hparams["train.lr"].number_value == pytest.approx(3e-4)
    assert stored.session_start_info.hparams["recipe"].string_value == "posttrain"
    assert stored.session_start_info.hparams["train.trackers"].string_value == '["tensorboard"]'

    # the newest checkpoint damaged: the run resumes from step 4 and logs steps 5 and 6 again, into a second event
    # file of the same folder; tensorboard shows each step once (purge_step), as the JSONL keeps it
    optimizer = run / "checkpoints" / "step_000006" / "state" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="step_000006 is corrupt"):
        posttrain.run(load_recipe("posttrain_token_vla", overrides))
    assert len(list(board.glob("events.out.tfevents.*"))) == 2
    resumed = as_logged(run)
    timed = resumed.pop("samples_per_s")  # wall clock: steps 5 and 6 timed again
    assert resumed == {tag: values for tag, values in logged.items() if tag != "samples_per_s"}  # retrained exactly
    assert scalars(board) == {**resumed, "samples_per_s": timed}  # the second timing of steps 5 and 6, not the first


def test_wandb_stays_offline_in_the_run_folder_and_is_off_when_disabled(demos, tmp_path):
    run = tmp_path / "run"
    posttrain.run(load_recipe("posttrain_token_vla", tiny(demos, run, steps=2, every=2) +
                              ["train.trackers=[wandb]", "train.wandb.mode=offline"]))
    run_id = (run / "wandb_id").read_text().strip()
    (record,) = run.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")  # wandb's own offline log
    data = record.read_bytes()
    assert all(json.dumps(r["loss"]).encode() in data for r in read_metrics(run / "metrics.jsonl"))
    assert b"train.lr" in data  # the config, as hyperparameters
    assert not (run / "trackers").exists()

    quiet = tmp_path / "quiet"  # the existing configs: default trackers, wandb disabled
    posttrain.run(load_recipe("posttrain_token_vla", tiny(demos, quiet, steps=2, every=2)))
    assert len(read_metrics(quiet / "metrics.jsonl")) == 2
    assert not {"wandb", "wandb_id", "trackers"} & {path.name for path in quiet.iterdir()}


def test_the_trackers_accelerate_runs_are_the_listed_ones_but_jsonl_and_a_disabled_wandb():
    assert TrainConfig().accelerate_trackers == ["wandb"]  # today's default: JSONL and wandb offline
    assert TrainConfig(wandb={"mode": "disabled"}).accelerate_trackers == []
    assert TrainConfig(trackers=["tensorboard"]).accelerate_trackers == ["tensorboard"]
    assert TrainConfig(trackers=["jsonl", "tensorboard", "wandb"], wandb={"mode": "disabled"}).accelerate_trackers == [
        "tensorboard"]


def error_of(capsys, demos, tmp_path, trackers: str) -> str:
    assert cli.main(["train", "posttrain_token_vla", f"data.paths=[{demos}]", f"output_dir={tmp_path / 'run'}",
                     f"train.trackers={trackers}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1
    assert not (tmp_path / "run").exists()
    return error


def test_an_unknown_tracker_is_refused_at_config_load_naming_accelerates_trackers(demos, tmp_path, capsys):
    error = error_of(capsys, demos, tmp_path, "[jsonl, tensorbord]")
    assert "unknown tracker 'tensorbord'. Did you mean 'tensorboard'?" in error
    names = [name for name in accelerate.utils.LoggerType.list() if name != "all"]
    assert f"Trackers: jsonl, {', '.join(names)}" in error and "mlflow" in names


def test_a_tracker_that_is_not_installed_is_refused_with_its_install_command(demos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [])  # as where none is installed
    error = error_of(capsys, demos, tmp_path, "[tensorboard]")
    # the pyproject's extra
    assert "'tensorboard' of train.trackers is not installed: pip install 'lara-vla[tensorboard]'" in error
    error = error_of(capsys, demos, tmp_path, "[mlflow]")
    assert "'mlflow' of train.trackers is not installed: pip install mlflow" in error
