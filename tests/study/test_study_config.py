"""Study options, files and their errors; which cells a re-run skips; the report's sentences (no simulator)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lara import cli as lara_cli
from lara.benchmarks.study import cli, report
from lara.benchmarks.study.cells import Cell, CellFailed, changes, prepare, plan_cells
from lara.benchmarks.study.config import split_top_level

STUDY_FILE = Path(__file__).parents[2] / "benchmarks" / "study" / "configs" / "posttrain_token_vla.yaml"


def options(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "posttrain_token_vla", "--data", str(data), "--suite", "object", "--tasks", "0,1",
            "--seeds", "0,1", "--trials", "3", "--out", str(out), *extra]


def test_overrides_split_at_top_level_commas_only():
    assert split_top_level("a=1, b=[x,y],c={w: 1, l: 2}") == ["a=1", "b=[x,y]", "c={w: 1, l: 2}"]


def test_options_make_the_variants_and_shared_overrides(tmp_path):
    args = cli.build_parser().parse_args(options(
        tmp_path, tmp_path / "out", "--variant", "fsq=lara.lam.quantizer=fsq", "small=train.lr=1e-3,train.steps=5",
        "--set", "train.steps=4", "model.build={width: 32, layers: 1}"))
    fields = cli.study_fields(args)
    assert fields["variants"] == {"fsq": ["lara.lam.quantizer=fsq"], "small": ["train.lr=1e-3", "train.steps=5"]}
    assert fields["overrides"] == ["train.steps=4", "model.build={width: 32, layers: 1}"]
    assert fields["tasks"] == [0, 1] and fields["seeds"] == ["0", "1"] and fields["data"] == [str(tmp_path)]


def test_the_shipped_study_file_names_its_command_and_options_override_it():
    assert STUDY_FILE.read_text().startswith(f"# lara study benchmarks/study/configs/{STUDY_FILE.name}")
    args = cli.build_parser().parse_args([str(STUDY_FILE), "--trials", "2", "--set", "train.steps=9"])
    fields = cli.study_fields(args)
    assert fields["trials"] == 2 and fields["overrides"][-1] == "train.steps=9"
    assert set(fields["variants"]) == {"fsq", "detach", "fdm", "pool_mean"}


@pytest.mark.parametrize("study_file", sorted(STUDY_FILE.parent.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_study_file_parses_and_names_its_command(study_file):
    assert study_file.read_text().startswith(f"# lara study benchmarks/study/configs/{study_file.name}")
    fields = cli.study_fields(cli.build_parser().parse_args([str(study_file)]))
    assert fields["tasks"] and len(fields["seeds"]) >= 3 and fields["trials"] >= 20


@pytest.mark.parametrize("extra, message", [
    (["--variant", "fsq=lara.lam.quantizr=fsq"], "cell fsq/seed0: unknown key 'lara.lam.quantizr'. Did you mean "
                                                 "'lara.lam.quantizer'?"),
    (["--set", "train.seed=3"], "--set: 'train.seed' is set by the study for every cell"),
    (["--variant", "lara=train.steps=3"], "variant name 'lara' is built in"),
    (["--variant", "fsq"], "--variant 'fsq' must look like NAME=key=value"),
    (["--set", "data.image_size=null"], "the recipe's data.image_size is None"),
])
def test_a_bad_study_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert lara_cli.main(["study", *options(tmp_path, tmp_path / "out", *extra)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_missing_data_is_named(tmp_path, capsys):
    assert lara_cli.main(["study", *options(tmp_path / "nowhere", tmp_path / "out")]) == 2
    assert f"data: {tmp_path / 'nowhere'} not found" in capsys.readouterr().err


def cell(tmp_path: Path, train: list[str], evaluation: list[str]) -> Cell:
    return Cell("lara", 0, tmp_path / "cells" / "lara" / "seed0", train, evaluation, 32)


def test_a_rerun_skips_finished_cells_and_redoes_only_what_changed(tmp_path):
    done = cell(tmp_path, ["train", "p", "a=1"], ["eval", "libero", "--trials", "2"])
    (done.run / "checkpoints").mkdir(parents=True)
    (done.eval).mkdir()
    (done.eval / "results.json").write_text("{}")
    (done.folder / "cell.json").write_text(json.dumps({"train": done.train_args, "eval": done.eval_args,
                                                       "train_s": 3.0, "eval_s": 4.0}))
    assert prepare(done)[1] == "skip" and changes(done) == []
    more_trials = cell(tmp_path, done.train_args, ["eval", "libero", "--trials", "5"])
    assert changes(more_trials) == ["evaluation"]
    with pytest.raises(CellFailed, match="other evaluation arguments.*--replace-changed"):
        prepare(more_trials)  # refused: nothing is discarded unasked
    assert (done.eval / "results.json").is_file()
    state, todo = prepare(more_trials, replace_changed=True)
    assert todo == "evaluate" and state["train_s"] == 3.0 and "eval_s" not in state
    assert not done.eval.exists() and (done.run / "checkpoints").is_dir()  # the training is kept
    other_recipe = cell(tmp_path, ["train", "p", "a=2"], more_trials.eval_args)
    assert changes(other_recipe) == ["training"]
    with pytest.raises(CellFailed, match="other training arguments"):
        prepare(other_recipe)
    assert (done.run / "checkpoints").is_dir()
    assert prepare(other_recipe, replace_changed=True)[1] == "train and evaluate" and not done.run.exists()


def test_a_cell_folder_that_is_not_a_cell_is_left_alone(tmp_path):
    stranger = cell(tmp_path, ["train", "p"], ["eval"])
    stranger.folder.mkdir(parents=True)
    (stranger.folder / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="holds files but no cell.json"):
        prepare(stranger)
    assert (stranger.folder / "notes.txt").read_text() == "mine"


def test_difference_sentences_say_only_what_the_interval_says():
    diff = {"mean": 0.05, "ci95": [-0.02, 0.12], "paired_episodes": 120, "paired_seeds": [0, 1, 2],
            "excludes_zero": False, "p_signflip": 0.25}
    assert report.difference_sentence("lara", diff) == (
        "lara - baseline: +5.0 points (mean over 3 paired seeds), 95 % t-interval [-2.0, +12.0], sign-flip p = 0.25; "
        "the interval includes 0: at the level of the training seed this study cannot tell them apart.")
    lower = {**diff, "mean": -0.1, "ci95": [-0.18, -0.03], "excludes_zero": True}
    assert report.difference_sentence("fsq", lower).endswith(
        "the interval excludes 0: fsq's success is lower than the baseline's in this study.")
    named = report.difference_sentence("lara - lara_shuffled", {**lower, "mean": 0.1, "ci95": [0.03, 0.18]})
    assert named.startswith("lara - lara_shuffled: +10.0 points") and named.endswith(
        "lara's success is higher than lara_shuffled's in this study.")
    one_seed = {**diff, "paired_seeds": [0], "ci95": None, "p_signflip": 1.0}
    assert report.difference_sentence("lara", one_seed).endswith("one seed: no interval, nothing can be said at "
                                                                 "the level of the training seed.")


def test_a_study_over_cells_run_with_other_arguments_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(options(tmp_path, out))
    from lara.benchmarks.study.config import load_study

    first = plan_cells(load_study(cli.study_fields(args)))[0]
    first.folder.mkdir(parents=True)
    recorded = {"train": [*first.train_args, "train.lr=1"], "eval": first.eval_args, "train_s": 1.0}
    (first.folder / "cell.json").write_text(json.dumps(recorded))
    (first.folder / "run").mkdir()
    assert lara_cli.main(["study", *options(tmp_path, out)]) == 2
    error = capsys.readouterr().err
    assert f"{first.name} (training)" in error and "--replace-changed" in error and error.count("\n") == 1
    assert json.loads((first.folder / "cell.json").read_text()) == recorded and (first.folder / "run").is_dir()


def finish(cell: Cell, successes: dict[int, list[int]], **recorded) -> None:
    """Write what a trained and evaluated cell leaves behind: cell.json and its evaluation's results.json."""
    cell.eval.mkdir(parents=True)
    tasks = [{"task_id": task, "successes": sum(row), "trials": len(row),
              "episodes": [{"task_id": task, "trial": i, "success": bool(s)} for i, s in enumerate(row)]}
             for task, row in successes.items()]
    (cell.eval / "results.json").write_text(json.dumps({"seed": 7, "tasks": tasks}))
    state = {"variant": cell.variant, "seed": cell.seed, "train": cell.train_args, "eval": cell.eval_args,
             "train_s": 10.0, "eval_s": 5.0, **recorded}
    (cell.folder / "cell.json").write_text(json.dumps(state))


def test_report_only_reports_the_finished_cells_per_task_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(options(tmp_path, out))
    from lara.benchmarks.study.config import load_study

    cells = {c.name: c for c in plan_cells(load_study(cli.study_fields(args)))}
    assert set(cells) == {"baseline/seed0", "baseline/seed1", "lara/seed0", "lara/seed1"}
    finish(cells["baseline/seed0"], {0: [0, 0, 1], 1: [1, 1, 1]})
    finish(cells["baseline/seed1"], {0: [0, 1, 0], 1: [1, 1, 0]})
    finish(cells["lara/seed0"], {0: [1, 1, 1], 1: [1, 0, 1]})
    stale = cells["lara/seed1"]  # trained with another recipe: not this study's cell, and not deleted either
    finish(stale, {0: [1, 1, 1], 1: [1, 1, 1]}, train=[*stale.train_args, "train.lr=1"])
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    captured = capsys.readouterr()
    assert "lara/seed1" in captured.err and "not finished" in captured.err
    summary = json.loads((out / "study.json").read_text())
    assert summary["command"] == "lara study " + " ".join(options(tmp_path, out))  # the command that runs the cells
    assert sorted((c["variant"], c["seed"]) for c in summary["cells"]) == [("baseline", 0), ("baseline", 1),
                                                                            ("lara", 0)]
    assert summary["settings"]["report"]["unfinished"] == ["lara/seed1"]
    assert summary["settings"]["source"]["commit"] is None  # no earlier study.json says which code ran the cells
    baseline, lara = summary["variants"]["baseline"], summary["variants"]["lara"]
    assert (baseline["success"]["k"], baseline["success"]["n"]) == (7, 12)
    assert {t: (v["k"], v["n"]) for t, v in baseline["per_task"].items()} == {"0": (2, 6), "1": (5, 6)}
    assert {t: (v["k"], v["n"]) for t, v in lara["per_task"].items()} == {"0": (3, 3), "1": (2, 3)}
    diff = summary["differences"]["lara"]  # paired on seed 0 only: lara/seed1 is left out
    assert diff["paired_seeds"] == [0] and diff["paired_episodes"] == 6
    assert (diff["only_variant"], diff["only_baseline"]) == (2, 1) and diff["mean"] == pytest.approx(1 / 6)
    task0, task1 = diff["per_task"]["0"], diff["per_task"]["1"]
    assert (task0["only_variant"], task0["only_baseline"], task0["mean"]) == (2, 0, pytest.approx(2 / 3))
    assert (task1["only_variant"], task1["only_baseline"], task1["mean"]) == (0, 1, pytest.approx(-1 / 3))
    text = (out / "study.md").read_text()
    assert "| 0 | lara | 3/3 | 100.0 |" in text and "| +66.7 [" in text and "| 2 / 0 |" in text
    assert "not finished yet: lara/seed1" in text and "--report-only" in text
    assert not list(out.glob("cells/*/seed*/*.log"))  # nothing trained or evaluated
    assert json.loads((stale.folder / "cell.json").read_text())["train"][-1] == "train.lr=1"


def test_the_report_names_the_cells_whose_lam_ended_collapsed(tmp_path):
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(options(tmp_path, out))
    from lara.benchmarks.study.config import load_study

    cells = {c.name: c for c in plan_cells(load_study(cli.study_fields(args)))}
    for name, spread in (("baseline/seed0", None), ("baseline/seed1", None), ("lara/seed0", 0.12),
                         ("lara/seed1", 0.00088)):
        finish(cells[name], {0: [1, 0, 1], 1: [1, 1, 0]})
        if spread is not None:  # what training logged last: the LAM's z spread, the 1 - cos of the mean latent
            (cells[name].run).mkdir()
            (cells[name].run / "metrics.jsonl").write_text(
                json.dumps({"step": 10, "lam/z_std": 0.5, "align/constant": 0.1}) + "\n"
                + json.dumps({"step": 20, "lam/z_std": spread, "align/constant": spread / 10}) + "\n")
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    text = (out / "study.md").read_text()
    assert ("- lara: the LAM's latent barely varied at the end of training, z spread 0.00088 (seed 1) < 0.01: a "
            "collapsed LAM") in text
    assert "(seed 0)" not in text and text.count("barely varied") == 1


def test_save_finished_carries_finished_cells_to_another_study_folder_where_they_are_skipped(tmp_path, capsys):
    from lara.benchmarks.study.cells import done, read_state
    from lara.benchmarks.study.config import load_study

    out, saved, moved = tmp_path / "out", tmp_path / "saved", tmp_path / "moved"
    cells = {c.name: c for c in plan_cells(load_study(cli.study_fields(cli.build_parser().parse_args(
        options(tmp_path, out)))))}
    for name in ("baseline/seed0", "lara/seed0"):
        finish(cells[name], {0: [1, 0, 1], 1: [1, 1, 0]})
        run = cells[name].run
        for log in ("metrics.jsonl", "lam/metrics.jsonl", "checkpoints/step_000002/metrics.jsonl",
                    "wandb/metrics.jsonl", "data_split.json"):
            (run / log).parent.mkdir(parents=True, exist_ok=True)
            (run / log).write_text(f"{name} {log}\n")
        (run / "checkpoints" / "step_000002" / "model.pt").write_bytes(b"weights")
    cells["lara/seed1"].run.mkdir(parents=True)  # training, not finished
    (cells["lara/seed1"].run / "metrics.jsonl").write_text("{}\n")

    assert lara_cli.main(["study", *options(tmp_path, out), "--save-finished", str(saved)]) == 0
    assert "2 of 4 cells finished" in capsys.readouterr().out
    assert sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()) == [
        f"cells/{arm}/seed0/{record}" for arm in ("baseline", "lara")
        for record in ("cell.json", "eval/results.json", "run/data_split.json", "run/lam/metrics.jsonl",
                       "run/metrics.jsonl")]
    assert lara_cli.main(["study", *options(tmp_path, out), "--save-finished", str(saved)]) == 0  # again: equal

    moved_cells = {c.name: c for c in plan_cells(load_study(cli.study_fields(cli.build_parser().parse_args(
        options(tmp_path, moved)))))}
    shutil.copytree(saved / "cells", moved / "cells")  # another machine: what a re-run there skips
    for name, cell in moved_cells.items():
        assert done(cell, read_state(cell)) == name.endswith("seed0"), name

    record = saved / "cells" / "lara" / "seed0" / "run" / "metrics.jsonl"
    record.write_text("an earlier, other run\n")
    assert lara_cli.main(["study", *options(tmp_path, out), "--save-finished", str(saved)]) == 2
    error = capsys.readouterr().err
    assert f"{record} exists with other contents" in error and error.count("\n") == 1
    assert record.read_text() == "an earlier, other run\n"


def test_report_only_without_a_finished_cell_is_one_line_and_exit_2(tmp_path, capsys):
    assert lara_cli.main(["study", *options(tmp_path, tmp_path / "out"), "--report-only"]) == 2
    error = capsys.readouterr().err
    assert "holds no finished cell of this study yet" in error and error.count("\n") == 1


def test_report_only_keeps_the_code_an_earlier_run_of_the_study_recorded(tmp_path):
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(options(tmp_path, out))
    from lara.benchmarks.study.config import load_study

    for c in plan_cells(load_study(cli.study_fields(args))):
        finish(c, {0: [1, 0, 1], 1: [0, 0, 1]})
    ran = {"commit": "a" * 40, "dirty": False}
    (out / "study.json").write_text(json.dumps({"settings": {"source": ran}}))
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    settings = json.loads((out / "study.json").read_text())["settings"]
    assert settings["source"] == ran and settings["report"]["unfinished"] == []
    assert settings["report"]["report_only"] is True and settings["report"]["commit"] != ran["commit"]
    assert f"Code: commit {'a' * 40};" in (out / "study.md").read_text()


def test_report_only_takes_the_code_from_the_cells_when_they_agree(tmp_path):
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(options(tmp_path, out))
    from lara.benchmarks.study.config import load_study

    ran = {"commit": "b" * 40, "dirty": False}
    planned = plan_cells(load_study(cli.study_fields(args)))
    for c in planned:
        finish(c, {0: [1, 0, 1], 1: [0, 0, 1]}, train_source=ran, eval_source=ran)
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    summary = json.loads((out / "study.json").read_text())
    assert summary["settings"]["source"] == ran and summary["cells"][0]["source"]["train"] == ran
    text = (out / "study.md").read_text()  # no cell recorded its machine: nothing said of machines
    assert "Machines the cells" not in text and "Every cell trained on" not in text

    (out / "study.json").unlink()  # cells on two kinds of machine: the same code, and the report says where each ran
    on = {"avx2": {"cpu": "Xeon A", "capability": "AVX2"}, "avx512": {"cpu": "Xeon B", "capability": "AVX512"}}
    for i, c in enumerate(planned):
        machine = {**ran, "machine": on["avx2" if i < 2 else "avx512"]}
        (c.folder / "cell.json").write_text(json.dumps({**json.loads((c.folder / "cell.json").read_text()),
                                                        "train_source": machine, "eval_source": machine}))
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    assert json.loads((out / "study.json").read_text())["settings"]["source"] == ran
    names = [c.name for c in planned]
    assert (f"Machines the cells trained on (torch's CPU kernels round differently on each): Xeon A (AVX2): "
            f"{names[0]}, {names[1]}; Xeon B (AVX512): {', '.join(names[2:])}.") in (out / "study.md").read_text()
    (out / "study.json").unlink()
    finish_state = json.loads((planned[0].folder / "cell.json").read_text())
    (planned[0].folder / "cell.json").write_text(json.dumps({**finish_state, "eval_source": {**ran, "commit": "c" * 40}}))
    assert lara_cli.main(["study", *options(tmp_path, out), "--report-only"]) == 0
    assert json.loads((out / "study.json").read_text())["settings"]["source"]["commit"] is None  # they disagree
