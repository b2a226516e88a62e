"""`lara train pretrain_token_vla_video` on a generated video folder mixed with LIBERO demos."""

from __future__ import annotations

import pytest

from lara.adapters.metrics import read_metrics
from lara.cli import main as lara_main

from recipe_files import tiny, write_demos

pytest.importorskip("av")


def test_pretrain_runs_on_videos_mixed_with_libero_demos(tmp_path, capsys):
    demos = write_demos(tmp_path / "demos")
    videos = tmp_path / "videos"
    assert lara_main(["data", "videos", str(demos), str(videos), "--fps", "10"]) == 0
    assert sorted(p.suffix for p in videos.iterdir()) == [".mp4"] * 3 + [".txt"] * 3
    mixture = f"[{{path: {videos}, weight: 2.0}}, {{path: {demos / 'b_demo.hdf5'}, format: libero_hdf5}}]"
    overrides = tiny(demos, tmp_path / "run", steps=4) + [f"pretrain.video_paths={mixture}",
                                                          "pretrain.video_every=2", "pretrain.lam_steps=2"]
    assert lara_main(["train", "pretrain_token_vla_video", *overrides]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "lam" / "metrics.jsonl")] == [1, 2]
    joint = read_metrics(tmp_path / "run" / "joint" / "metrics.jsonl")
    assert [r["step"] for r in joint] == [1, 2, 3, 4]
    assert all(r["base"] == 0 for r in joint if r["step"] % 2 == 0)  # video batches: LAM + alignment only
    assert all(r["base"] > 0 for r in joint if r["step"] % 2 == 1)
