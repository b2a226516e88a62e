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


def test_model_path_at_a_run_folder_or_a_lam_artifact_names_the_vla_folder(demos, tmp_path, capsys):
    """Issue 38 finding 9: a run folder, its final/ or its LARA artifact as model.path ended in transformers'
    'no file named model.safetensors' traceback; each now says what it is and which folder to give."""
    run = tmp_path / "earlier"
    for folder in (run / "final" / "vla", run / "final" / "lara"):
        folder.mkdir(parents=True)
    (run / "final" / "vla" / "config.json").write_text('{"model_type": "token_vla"}')
    (run / "final" / "lara" / "lara_config.json").write_text("{}")
    (run / "metrics.jsonl").write_text("")
    expected = "expected a VLA folder saved by save_pretrained (config.json and its weights), e.g. RUN/final/vla " \
               "(or leave model.path unset to build a token_vla from model.build)"
    for given, said in ((run, f"is a training run folder, not a VLA; {expected}: give model.path={run}/final/vla"),
                        (run / "final", f"is a run's export (RUN/final or a checkpoint), not a VLA; {expected}: give "
                                        f"model.path={run}/final/vla"),
                        (run / "final" / "lara", "holds a LARA artifact (lara_config.json: projector and LAM), not a "
                                                 f"VLA; {expected} (a LAM to refine goes to refine.lam_from)"),
                        (run / "metrics.jsonl", f"is a file; {expected}"),
                        (tmp_path / "nowhere", f": no such folder; {expected}")):
        out = tmp_path / "run"
        assert cli.main(["train", "posttrain_token_vla", *tiny(demos, out), f"model.path={given}"]) == 2
        assert one_line(capsys) == f"lara train: error: model.path={given}{'' if said[0] == ':' else ' '}{said}\n"
        assert not (out / "checkpoints").exists()


def test_two_image_sizes_with_image_size_null_are_refused_before_training(demos, tmp_path, capsys):
    """Issue 38 finding 9: frames of 32 and 48 px with data.image_size=null failed at the first batch's stack."""
    larger = write_demos(tmp_path / "larger", size=48)
    overrides = [o for o in tiny(demos, tmp_path / "run") if not o.startswith(("data.paths", "data.image_size"))]
    assert cli.main(["train", "posttrain_token_vla", *overrides, f"data.paths=[{demos},{larger}]",
                     "data.image_size=null"]) == 2
    assert one_line(capsys) == (
        "lara train: error: data.image_size=null keeps frames at their stored size, and the frames of data.camera "
        f"differ: 32x32 in {demos}/a_demo.hdf5 data/demo_0, 48x48 in {larger}/a_demo.hdf5 data/demo_0; set "
        "data.image_size (e.g. 32) to resize them all to one\n")
    assert not (tmp_path / "run" / "checkpoints").exists()
