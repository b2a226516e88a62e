"""`make demo` end to end in miniature: real LIBERO demonstrations, post-training with LARA, evaluation, report."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from lara.adapters import demo

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
    assert results["train"]["joint_steps"] == 2 and results["train"]["lam_warmup_steps"] == 2
    assert {"base", "align", "lam/recon"} <= results["train"]["last"].keys()
    assert results["eval"]["episodes"] == 1 and 0 <= results["eval"]["success_rate"] <= 1
    assert (report / "loss.png").stat().st_size > 1000
    frames = imageio.mimread(report / "rollout.mp4")
    assert len(frames) >= 4 + 10 and frames[0].shape == (64, 64, 3)  # the 10 wait steps + the budget
    assert (report / "summary.txt").read_text().strip() in printed

    # a second run trains and evaluates afresh but takes the demonstrations from the cache
    assert demo.main([*TINY, "--data", str(data), "--out", str(out)]) == 0
    assert json.loads((report / "results.json").read_text())["data"]["cached"] is True


def test_demo_refuses_to_replace_a_folder_that_is_not_its_cache(tmp_path):
    (tmp_path / "mine.hdf5").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="not a demo cache"):
        demo.main([*TINY, "--data", str(tmp_path), "--out", str(tmp_path / "demo")])
    assert (tmp_path / "mine.hdf5").read_bytes() == b"user data"
