"""`make demo` end to end in miniature: real LIBERO demonstrations, post-training with LARA, evaluation, report."""

from __future__ import annotations

import json

import h5py
import imageio.v2 as imageio
import pytest

from lara import cli
from lara.benchmarks import demo
from lara.errors import InputError

TINY = ["--tasks", "0", "--episodes", "1", "--lam-warmup", "2", "--steps", "2", "--batch-size", "4",
        "--trials", "1", "--max-steps", "4", "--workers", "1"]


@pytest.mark.slow
def test_demo_writes_the_report_and_reuses_its_demonstrations(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "demo"
    assert demo.main([*TINY, "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = out / "report"
    assert str(report) in printed and "successful episodes" in printed
    results = json.loads((report / "results.json").read_text())
    assert results["data"]["cached"] is False and results["data"]["episodes"] == 1
    assert results["data"]["action_noise"] == demo.ACTION_NOISE > 0  # the expert's actions were executed noisily
    assert json.loads((data / "generation.json").read_text())["action_noise"] == demo.ACTION_NOISE
    with h5py.File(next(data.glob("*.hdf5"))) as f:  # the file says its actions do not replay it
        assert f["data/demo_0"].attrs["action_noise"] == demo.ACTION_NOISE
    assert results["train"]["joint_steps"] == 2 and results["train"]["lam_warmup_steps"] == 2
    assert {"base", "align", "lam/recon"} <= results["train"]["last"].keys()
    assert results["eval"]["episodes"] == 1 and 0 <= results["eval"]["success_rate"] <= 1
    evaluation = json.loads((out / "eval" / "results.json").read_text())  # the policy is asked again mid-chunk
    executed = evaluation["protocol"]["execution"]["execute_steps"]
    assert results["eval"]["execute_steps"] == executed == demo.EXECUTE_STEPS
    assert (report / "loss.png").stat().st_size > 1000
    frames = imageio.mimread(report / "rollout.mp4")
    assert len(frames) >= 4 + 10 and frames[0].shape == (64, 64, 3)  # the 10 wait steps + the budget
    assert (report / "summary.txt").read_text().strip() in printed
    assert sorted(p.name for p in out.iterdir()) == ["demo.json", "eval", "report", "run"]  # no staging left

    # a second run trains and evaluates afresh but takes the demonstrations from the cache
    assert demo.main([*TINY, "--data", str(data), "--out", str(out)]) == 0
    assert json.loads((report / "results.json").read_text())["data"]["cached"] is True


def test_demo_refuses_to_replace_a_folder_that_is_not_its_cache(tmp_path):
    (tmp_path / "mine.hdf5").write_bytes(b"user data")
    with pytest.raises(InputError, match="not a demo cache"):
        demo.main([*TINY, "--data", str(tmp_path), "--out", str(tmp_path / "demo")])
    assert (tmp_path / "mine.hdf5").read_bytes() == b"user data"
    assert not (tmp_path / "demo").exists()


def _earlier_outputs(out, marker: bool):
    for name in demo.OUTPUTS:
        (out / name).mkdir(parents=True)
        (out / name / "earlier.txt").write_text(name)
    if marker:
        (out / demo.MARKER).write_text('{"written_by": "lara demo"}')


def _untouched(out):
    return all((out / name / "earlier.txt").read_text() == name for name in demo.OUTPUTS)


@pytest.mark.parametrize("bad, message", [
    (["--episodes", "0"], "argument --episodes: expected an integer >= 1, got '0'"),
    (["--action-noise", "nan"], "argument --action-noise: expected a finite number >= 0 and <= 1, got 'nan'"),
    (["--execute-steps", "9"], "argument --execute-steps: expected an integer >= 1 and <= 8, got '9'"),
    (["--steps", "x"], "argument --steps: expected an integer >= 1, got 'x'"),
    (["--camera-size", "30"], "image_size (30) must be a multiple of patch_size (16)"),  # the training config's
], ids=["episodes", "noise", "execute", "type", "config"])
def test_a_bad_flag_ends_on_one_line_and_removes_nothing(tmp_path, capsys, bad, message):
    """Before issue 38 the demo removed OUT/run, eval and report first and reported its flags as `lara data
    generate`'s; now it checks everything first and names itself."""
    out = tmp_path / "demo"
    _earlier_outputs(out, marker=True)
    assert cli.main(["demo", *TINY, *bad, "--data", str(tmp_path / "data"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara demo: error: ") and error.count("\n") == 1 and message in error, error
    assert _untouched(out) and not (tmp_path / "data").exists()


def test_folders_the_demo_did_not_write_are_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    _earlier_outputs(out, marker=False)
    assert cli.main(["demo", *TINY, "--data", str(tmp_path / "data"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{out / 'run'} exists and no earlier demo wrote it" in error and "--overwrite" in error
    assert _untouched(out) and not (out / demo.MARKER).exists()
    (tmp_path / "a_file").write_text("mine")
    assert cli.main(["demo", *TINY, "--out", str(tmp_path / "a_file")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize("given, args, expected", [(None, [], "OMP_NUM_THREADS=1 demo"),
                                                    ("3", ["DEMO_ARGS=--seed 3"], "OMP_NUM_THREADS=3 demo --seed 3")])
def test_make_demo_caps_torchs_threads_as_make_test_does(tmp_path, given, args, expected):
    """`make demo` runs `lara demo` with OMP_NUM_THREADS=1 unless the caller sets it, and passes DEMO_ARGS on (a
    stand-in venv whose `lara` reports its environment and arguments; -o system-deps skips the apt step)."""
    import os
    import shutil
    import stat
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    lara_script = venv / "bin" / "lara"
    lara_script.write_text('#!/bin/sh\necho "OMP_NUM_THREADS=$OMP_NUM_THREADS $*"\n')
    lara_script.chmod(lara_script.stat().st_mode | stat.S_IXUSR)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MAKEFLAGS", "MFLAGS")}
    if given is not None:
        env["OMP_NUM_THREADS"] = given
    out = subprocess.run(["make", "--no-print-directory", "-s", "-o", "system-deps", "demo", f"VENV={venv}", *args],
                         cwd=root, env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


def test_demonstrations_with_other_action_noise_are_not_taken_from_the_cache(tmp_path):
    (tmp_path / "task.hdf5").write_bytes(b"")
    task = {"task_id": 1, "file": str(tmp_path / "task.hdf5"), "init_states": {"source": "fresh"}}
    summary = {"suite": "libero_object", "episodes_per_task": 50, "camera_size": 64, "cameras": ["agentview_rgb"],
               "tasks": [task]}
    settings = (tmp_path, "libero_object", [1], 50, 64, ("agentview_rgb",))
    for recorded, matches in ((None, {0.0}), (0.0, {0.0}), (0.1, {0.1})):  # None: a cache from before the flag
        (tmp_path / "generation.json").write_text(json.dumps(
            summary if recorded is None else {**summary, "action_noise": recorded}))
        assert {noise for noise in (0.0, 0.1) if demo._cache_matches(*settings, noise)} == matches
