"""`lara data` dispatcher and `lara data inspect` on LIBERO HDF5 and video sources."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from lara.cli import main as lara_main

from video_files import read_marker, write_video


def test_inspect_a_libero_folder_prints_statistics_and_writes_the_pairs(libero_dir, tmp_path, capsys):
    root, _ = libero_dir
    sheet = tmp_path / "sheet.png"
    assert lara_main(["data", "inspect", str(root), "--frame-gap", "4", "--pairs", "3", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "libero_hdf5, 3 episodes, 58 frames" in out and "cameras ['agentview_rgb', 'eye_in_hand_rgb']" in out
    assert "1 x 'close the drawer'" in out and "2 x 'open the drawer'" in out
    assert "actions: 7-D over 58 steps, 3 episodes" in out and "q99" in out and "states: 8-D" in out
    from PIL import Image

    image = np.asarray(Image.open(sheet))
    assert image.shape == (3 * (16 + 4), 16 + 4 + 16, 3)  # 3 rows of o_t | gap | o_t+k


def test_an_earlier_contact_sheet_is_replaced_only_with_overwrite(libero_dir, tmp_path, capsys):
    root, _ = libero_dir
    sheet = tmp_path / "sheets" / "sheet.png"
    sheet.parent.mkdir()
    sheet.write_bytes(b"the user's own picture")
    argv = ["data", "inspect", str(root), "--frame-gap", "4", "--pairs", "2", "--sheet", str(sheet)]
    assert lara_main(argv) == 2
    error = capsys.readouterr().err
    assert f"{sheet} already exists; this contact sheet would replace it: give --overwrite" in error
    assert error.count("\n") == 1 and sheet.read_bytes() == b"the user's own picture"
    assert lara_main([*argv, "--overwrite"]) == 0
    from PIL import Image

    assert np.asarray(Image.open(sheet)).shape == (2 * (16 + 4), 16 + 4 + 16, 3)
    assert [p.name for p in sheet.parent.iterdir()] == ["sheet.png"]  # no staging file left beside it


def test_inspect_videos_shows_fps_tasks_and_the_pairs_the_lam_sees(tmp_path, capsys):
    pytest.importorskip("av")
    videos = tmp_path / "clips"
    write_video(videos / "a.mp4", frames=40, fps=20, height=48, width=64)
    write_video(videos / "b.webm", frames=30, fps=10, height=48, width=64, codec="libvpx-vp9")
    (videos / "a.txt").write_text("wave hello")
    sheet = tmp_path / "pairs.png"
    assert lara_main(["data", "inspect", str(videos), "--frame-gap-s", "0.5", "--pairs", "2",
                      "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "video, 2 episodes, 70 frames" in out and "fps 10-20" in out and "cameras ['rgb']" in out
    assert "'wave hello'" in out and "action-free" in out and "frame gap k = 5-10 frames" in out
    from PIL import Image

    image = np.asarray(Image.open(sheet))
    rows = re.findall(r"clips/(\w)\.\w+ (\d+)->(\d+)", out.splitlines()[-1])
    assert len(rows) == 2
    for row, (name, t, future) in enumerate(rows):
        top = row * (48 + 4)
        left, right = image[top:top + 48, :64], image[top:top + 48, 68:132]
        assert (read_marker(left), read_marker(right)) == (int(t), int(future))
        last = {"a": 39, "b": 29}[name]
        assert int(future) == min(int(t) + {"a": 10, "b": 5}[name], last)  # 0.5 s at 20 fps and at 10 fps


def test_data_dispatcher_keeps_generate_and_names_unknown_commands(monkeypatch, capsys):
    import lara.benchmarks.generate as generate  # `lara data generate` hands its flags to the benchmark table's dispatcher

    seen = []
    monkeypatch.setattr(generate, "main", lambda argv: seen.append(argv) or 0)
    assert lara_main(["data", "generate", "--suite", "object", "--out", "x"]) == 0
    assert seen == [["--suite", "object", "--out", "x"]]  # no positional `generate` (issue 38)
    assert lara_main(["data", "inspec", "x"]) == 2
    assert "Did you mean 'inspect'?" in capsys.readouterr().err
    assert lara_main(["data", "inspect", str(sys.prefix) + "/no-such-data"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_inspect_shows_every_camera_of_a_lerobot_dataset_with_its_own_names(tmp_path, capsys):
    """Cameras named top and wrist (not LIBERO's agentview) and no state: shown, not 'no camera agentview_rgb'."""
    pytest.importorskip("pyarrow")
    from lara.data.lerobot_writer import LeRobotWriter, camera, vector

    features = {"action": vector(6), "observation.images.top": camera(24, 32, video=False),
                "observation.images.wrist": camera(24, 32, video=False)}
    with LeRobotWriter(tmp_path / "aloha", fps=10, features=features) as writer:
        frames = np.zeros((12, 24, 32, 3), np.uint8)
        writer.add_episode({"action": np.zeros((12, 6)), "observation.images.top": frames,
                            "observation.images.wrist": frames}, task="fold the towel")
    assert lara_main(["data", "inspect", str(tmp_path / "aloha"), "--frame-gap", "3", "--pairs", "0"]) == 0
    out = capsys.readouterr().out
    assert "lerobot, 1 episodes, 12 frames" in out
    assert "cameras ['observation.images.top', 'observation.images.wrist']" in out


def test_inspect_names_an_unreadable_video_and_inspects_the_rest(tmp_path, capsys):
    pytest.importorskip("av")
    videos = tmp_path / "clips"
    write_video(videos / "a.mp4", frames=20, fps=10, height=32, width=32)
    write_video(videos / "b.mp4", frames=20, fps=10, height=32, width=32)
    (videos / "b.mp4").write_bytes((videos / "b.mp4").read_bytes()[:200])  # truncated
    assert lara_main(["data", "inspect", str(videos), "--frame-gap", "3", "--pairs", "0"]) == 0
    out = capsys.readouterr().out
    assert "video, 1 episodes, 20 frames" in out and "skipped 1 unreadable video file(s)" in out and "b.mp4" in out
