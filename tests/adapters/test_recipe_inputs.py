"""Inputs that used to train silently wrong: each is refused on one line before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from lara import cli

from recipe_files import tiny, write_demos


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


@pytest.fixture(scope="module")
def videos(demos, tmp_path_factory) -> Path:
    """The demos' frames as an mp4 folder: a source without actions."""
    from lara.data.video import write_videos

    out = tmp_path_factory.mktemp("videos") / "videos"
    write_videos(demos, out, fps=10)
    return out


def one_line(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1, error
    return error


def test_a_frame_gap_past_every_episode_is_refused(demos, tmp_path, capsys):
    """The demos hold 26-30 frames: a gap of 30 leaves no (o_t, o_t+k) pair, so LAM and alignment would train on 0."""
    assert cli.main(["train", "posttrain_token_vla", *tiny(demos, tmp_path / "run"), "data.frame_gap=30"]) == 2
    assert "frame_gap=30 (frames; frame_gap_s=None) reaches past the end of every episode (the longest has 30 " \
           "frames)" in one_line(capsys)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("preset", ["posttrain_token_vla", "pretrain_token_vla"])
def test_a_recipe_that_needs_actions_refuses_a_source_without_any(videos, demos, tmp_path, capsys, preset):
    """A video folder trained the policy with base = 0.0 and exported it as if trained; a labelled source with
    data.action_free=true likewise."""
    assert cli.main(["train", preset, *tiny(videos, tmp_path / "run")]) == 2
    recipe = preset.rsplit("_token_vla", 1)[0]
    assert f"no episode of ['video'] has actions, and the {recipe} recipe trains the policy on robot actions (its " \
           "loss would be 0)" in one_line(capsys)
    assert not (tmp_path / "run" / "final").exists()
    assert cli.main(["train", preset, *tiny(demos, tmp_path / "flagged"), "data.action_free=true"]) == 2
    assert f"data.action_free=true, and the {recipe} recipe trains the policy" in one_line(capsys)
