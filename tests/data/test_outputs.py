"""Commands that write replace nothing of the user's without --overwrite, name a place they cannot write on one
line, and clear the staging files an interrupted write of the same output left (and only those)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lara.cli import main as lara_main
from lara.data.libero_hdf5 import LiberoHDF5Writer, inspect_libero_hdf5
from lara.outputs import remove_stale_staging


def one_line_error(capsys, command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[robosuite WARNING]")]
    assert len(lines) == 1 and lines[0].startswith(f"lara {command}: error: "), lines  # robosuite's import notes aside
    return lines[0]


def write_demo(path, T=6):
    with LiberoHDF5Writer(path, language="open the drawer") as writer:
        frames = np.zeros((T, 16, 16, 3), np.uint8)
        writer.add_demo(actions=np.zeros((T, 7)), agentview_rgb=frames, ee_states=np.zeros((T, 6)),
                        gripper_states=np.zeros((T, 2)), joint_states=np.zeros((T, 7)))
    return path


@pytest.mark.parametrize("bench", ["libero", "simpler"])
def test_generate_over_an_earlier_generation_is_refused_before_any_rollout(tmp_path, capsys, bench):
    out = tmp_path / "demos"
    out.mkdir()
    earlier = {"generation.json": b'{"tasks": "an earlier generation"}'}
    task = ["--suite", "object", "--tasks", "0"] if bench == "libero" else ["--bench", "simpler", "--tasks", "carrot"]
    for name, content in earlier.items():
        (out / name).write_bytes(content)
    assert lara_main(["data", "generate", *task, "--episodes", "1", "--out", str(out)]) == 2
    error = one_line_error(capsys, "data generate")
    assert "generation.json already exists; this generation would replace it: give --overwrite" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier
    (tmp_path / "a_file").write_text("")
    assert lara_main(["data", "generate", *task, "--out", str(tmp_path / "a_file" / "demos")]) == 2
    assert "cannot write there (" in one_line_error(capsys, "data generate")


def test_videos_replace_nothing_without_overwrite(tmp_path, capsys):
    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    out = tmp_path / "videos"
    assert lara_main(["data", "videos", str(source), str(out)]) == 0
    video = next(out.glob("*.mp4"))
    video.write_bytes(b"the user's edit")
    assert lara_main(["data", "videos", str(source), str(out)]) == 2
    assert "mp4 already exists (and 1 more); this video folder would replace it: give --overwrite" in \
        one_line_error(capsys, "data videos")
    assert video.read_bytes() == b"the user's edit"
    assert lara_main(["data", "videos", str(source), str(out), "--overwrite"]) == 0
    assert video.read_bytes() != b"the user's edit"


def killed_writer(target, writer: str) -> None:
    """A process that starts writing `target` and dies before closing: its staging file or folder stays behind."""
    code = {"hdf5": "from lara.data.libero_hdf5 import LiberoHDF5Writer as W\nW(target, language='x')",
            "lerobot": "from lara.data.lerobot_writer import LeRobotWriter as W, vector\n"
                       "W(target, fps=10, features={'action': vector(7)})"}[writer]
    subprocess.run([sys.executable, "-c", f"import os\ntarget = {str(target)!r}\n{code}\nos._exit(9)"], check=False)


def test_the_next_write_of_the_same_output_clears_an_interrupted_ones_staging_only(tmp_path):
    demo, dataset = tmp_path / "open_the_drawer_demo.hdf5", tmp_path / "lr"
    killed_writer(demo, "hdf5")
    killed_writer(dataset, "lerobot")
    killed_writer(tmp_path / "other_demo.hdf5", "hdf5")  # another output's: not this write's business
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert len(stale) == 3 and all(name.startswith(".") for name in stale), stale
    live = tmp_path / f".{demo.name}.1.abcdefgh.tmp"  # a writer that is still running (pid 1 is alive)
    live.write_bytes(b"")
    write_demo(demo)
    from lara.data.lerobot_writer import LeRobotWriter, vector

    with LeRobotWriter(dataset, fps=10, features={"action": vector(7)}) as writer:
        writer.add_episode({"action": np.zeros((3, 7))}, task="x")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == sorted([live.name, next(n for n in stale if n.startswith(".other_demo.hdf5."))])
    assert inspect_libero_hdf5(demo).num_demos == 1 and (dataset / "meta" / "info.json").is_file()
    assert remove_stale_staging(tmp_path / "other_demo.hdf5") and not any(
        p.name.startswith(".other") for p in tmp_path.iterdir())


def test_replacing_writes_whole_files_with_a_new_files_mode_or_leaves_the_old_one(tmp_path):
    from lara.outputs import new_file_mode, replacing

    target = tmp_path / "cell.json"
    target.write_text("earlier")
    with pytest.raises(RuntimeError, match="interrupted"):
        with replacing(target) as staging:
            staging.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["cell.json"]
    with replacing(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".cell.json.")
        staging.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["cell.json"]
    assert target.stat().st_mode & 0o777 == new_file_mode()  # not mkstemp's 0600


def test_publish_folder_replaces_an_earlier_folder_only_once_the_new_one_is_in_place(tmp_path):
    from lara.outputs import publish_folder, staging_folder

    target = tmp_path / "dataset"
    for content in ("first", "second"):
        staging = staging_folder(target)
        (staging / "info.json").write_text(content)
        assert publish_folder(staging, target) == target
    assert (target / "info.json").read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["dataset"]
