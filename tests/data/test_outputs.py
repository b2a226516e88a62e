"""Commands that write replace nothing of the user's without --overwrite, name a place they cannot write on one
line, and clear the staging files an interrupted write of the same output left (and only those)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lara.cli import main as lara_main
from lara.errors import InputError
from lara.data.libero_hdf5 import inspect_libero_hdf5
from lara.data.libero_writer import LiberoHDF5Writer
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
    code = {"hdf5": "from lara.data.libero_writer import LiberoHDF5Writer as W\nW(target, language='x')",
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


def test_an_output_under_a_symbolic_link_to_nothing_is_named_so_on_one_line(tmp_path, monkeypatch, capsys):
    """Issue 40: a `data` link to a folder that is gone failed `--out data/x` with "cannot write there (File
    exists)". Each command that writes says what is wrong, through the one check of lara.outputs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(tmp_path / "gone", target_is_directory=True)
    link = f"data is a symbolic link to a folder that does not exist: {tmp_path / 'gone'}; create it, or remove the " \
           "link"
    assert lara_main(["data", "generate", "--suite", "object", "--tasks", "0", "--episodes", "1",
                      "--out", "data/ref_object64"]) == 2
    assert one_line_error(capsys, "data generate").endswith(f"data/ref_object64/generation.json: {link}")
    assert lara_main(["eval", "libero", "--policy", "scripted", "--suite", "object", "--out", "data/eval"]) == 2
    assert one_line_error(capsys, "eval").endswith(f"data/eval/results.json: {link}")
    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    assert lara_main(["data", "videos", str(source), "data/videos"]) == 2
    error = one_line_error(capsys, "data videos")
    assert error.startswith("lara data videos: error: data/videos/") and error.endswith(link), error
    assert lara_main(["train", "posttrain_token_vla", f"data.paths=[{source}]", "output_dir=data/run"]) == 2
    assert one_line_error(capsys, "train").endswith(f"output_dir data/run: {link}")
    assert not (tmp_path / "gone").exists() and (tmp_path / "data").is_symlink()  # nothing created, nothing replaced

    from lara.outputs import writable

    (tmp_path / "folder").symlink_to("elsewhere")  # a relative target, named as the link holds it
    with pytest.raises(InputError, match=r"^--out folder: folder is a symbolic link to a folder that does not exist: "
                                         r"elsewhere; create it, or remove the link$"):
        writable(Path("folder"), "--out")


def test_records_name_a_path_as_given_or_relative_to_the_project(tmp_path, monkeypatch):
    """Issue 40: results and run records never hold the machine's absolute layout."""
    import argparse

    from lara.outputs import recorded, recorded_paths, settings
    from lara.policy import recorded_spec

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("PWD", str(project))
    assert recorded("data/x") == "data/x" and recorded(Path("runs/a/../b")) == "runs/a/../b"  # as the user gave it
    assert recorded(project / "data" / "x") == "data/x" and recorded(tmp_path / "data" / "x") == "../data/x"
    tree = {"paths": [str(project / "d"), {"path": tmp_path / "e", "labelled_per_task": 5}], "model": "org/model",
            "size": (64, 64), "none": None}
    assert recorded_paths(tree) == {"paths": ["d", {"path": "../e", "labelled_per_task": 5}], "model": "org/model",
                                    "size": [64, 64], "none": None}
    args = argparse.Namespace(data=[project / "data" / "x"], out=Path("runs/h.json"), steps=1000, lr=1e-3,
                              weighting=[None], dtype=np.float32)
    assert settings(args) == {"data": ["data/x"], "out": "runs/h.json", "steps": 1000, "lr": 1e-3, "weighting": [None],
                              "dtype": str(np.float32)}
    assert recorded_spec(f"checkpoint:{project}/runs/ref/final/vla") == "checkpoint:runs/ref/final/vla"
    assert recorded_spec(f"{tmp_path}/policies.py:make") == "../policies.py:make"
    for spec in ("scripted", "ws://127.0.0.1:8000", "my_pkg.policies:make", "checkpoint:runs/ref/final/vla"):
        assert recorded_spec(spec) == spec

    linked = tmp_path / "linked"  # a project reached through a symbolic link: named as the shell spells it
    linked.symlink_to(project, target_is_directory=True)
    monkeypatch.chdir(linked)
    monkeypatch.setenv("PWD", str(linked))
    assert recorded(linked / "data" / "x") == "data/x"
