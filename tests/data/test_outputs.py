"""Commands that write replace nothing of the user's without --overwrite, name a place they cannot write on one
line, and clear the staging files an interrupted write of the same output left (and only those)."""

from __future__ import annotations

import os
import shlex
import shutil
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


def test_an_output_that_is_a_symbolic_link_is_refused_by_every_command(tmp_path, monkeypatch, capsys):
    """Issue 38 finding 8: an output path that is itself a link (to a live folder or file) would write where the
    link points, outside what the user named; each command refuses it through lara.outputs.check_link."""
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "report.json").write_text("the user's")
    (tmp_path / "report.json").symlink_to(elsewhere / "report.json")
    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    said = f"out is a symbolic link (to {elsewhere}); an output is written where it is named, not through a link"
    for command, argv in (("data videos", ["data", "videos", str(source), "out"]),
                          ("data convert", ["data", "convert", str(source), "--to", "lerobot", "out"]),
                          ("data generate", ["data", "generate", "--suite", "object", "--tasks", "0", "--out", "out"]),
                          ("eval", ["eval", "libero", "--policy", "scripted", "--suite", "object", "--out", "out"]),
                          ("demo", ["demo", "--out", "out"]),
                          ("train", ["train", "posttrain_token_vla", f"data.paths=[{source}]", "output_dir=out"])):
        assert lara_main(argv) == 2, command
        error = one_line_error(capsys, command)
        assert said in error or said.replace("out is", "out/generation.json is") in error, error
    assert lara_main(["probe", "--synthetic", "64", "--represent", "pixel_diff", "--out", "report.json"]) == 2
    assert "report.json is a symbolic link (to " in one_line_error(capsys, "probe")
    assert [p.name for p in elsewhere.iterdir()] == ["report.json"]  # nothing written through a link
    assert (elsewhere / "report.json").read_text() == "the user's"


def test_a_name_longer_than_the_filesystem_allows_is_one_line_before_any_work(tmp_path, capsys):
    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    long = "x" * 300
    assert lara_main(["data", "videos", str(source), str(tmp_path / long)]) == 2
    assert f"the name {'x' * 40}... is 300 bytes long, longer than the filesystem allows (255 bytes); give a " \
           "shorter name" in one_line_error(capsys, "data videos")
    assert lara_main(["train", "posttrain_token_vla", f"data.paths=[{source}]", f"output_dir={tmp_path / long}"]) == 2
    assert "is 300 bytes long, longer than the filesystem allows" in one_line_error(capsys, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["open_the_drawer_demo.hdf5"]


def killed_video_writer(source, out, after_frames: int) -> None:
    """`lara data videos` killed (os._exit, as kill -9) after encoding `after_frames` frames."""
    code = (f"import os, av\nfrom lara.data.video import write_videos\nn = [0]\nencode = av.VideoFrame.from_ndarray\n"
            f"def dying(*a, **k):\n    n[0] += 1\n    if n[0] > {after_frames}: os._exit(9)\n"
            f"    return encode(*a, **k)\n"
            f"av.VideoFrame.from_ndarray = dying\nwrite_videos({str(source)!r}, {str(out)!r})")
    subprocess.run([sys.executable, "-c", code], check=False)


def test_videos_killed_mid_write_leave_no_mp4_and_the_re_run_needs_no_overwrite(tmp_path, capsys):
    """Issue 38 finding 8: every file is encoded under a staging name and put in place once all are whole."""
    import av

    source = tmp_path / "src"
    source.mkdir()
    write_demo(source / "open_the_drawer_demo.hdf5", T=6)
    write_demo(source / "close_the_drawer_demo.hdf5", T=6)
    out = tmp_path / "videos"
    killed_video_writer(source, out, after_frames=9)  # in the second episode's file
    left = sorted(p.name for p in out.iterdir())
    assert left and all(name.startswith(".") and name.endswith(".tmp") for name in left), left  # no final name
    assert lara_main(["data", "videos", str(source), str(out)]) == 0  # no --overwrite asked for
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00000_close_the_drawer_demo.mp4", "00000_close_the_drawer_demo.txt",
                     "00001_open_the_drawer_demo.mp4", "00001_open_the_drawer_demo.txt"], names  # staging cleared
    for video in out.glob("*.mp4"):
        with av.open(str(video)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6


def test_a_full_disk_while_writing_videos_is_one_line_naming_the_output(tmp_path, monkeypatch, capsys):
    import errno

    import av

    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    out = tmp_path / "videos"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av.container.OutputContainer, "mux", full)
    assert lara_main(["data", "videos", str(source), str(out)]) == 2
    assert one_line_error(capsys, "data videos") == (
        f"lara data videos: error: {out}: no space left on the device (the write failed: No space left on device); "
        "free some space or give an output on another disk")
    assert list(out.iterdir()) == []  # neither a final name nor a staging file


def _user_namespaces() -> bool:
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0 if shutil.which(
        "unshare") else False


@pytest.mark.skipif(not _user_namespaces(), reason="needs `unshare -rm` (user namespaces) to mount a small tmpfs")
def test_a_full_disk_is_one_line_naming_the_output_for_every_writer(tmp_path):
    """A real full disk: a 4 KiB tmpfs mounted in a user namespace (no root needed where they are enabled)."""
    source = write_demo(tmp_path / "open_the_drawer_demo.hdf5")
    small = tmp_path / "small"
    small.mkdir()
    lara = Path(sys.executable).with_name("lara")
    tiny = ["train.steps=2", "train.checkpoint_every=2", "train.log_every=1", "train.batch_size=4",
            "model.build={width: 32, layers: 1, image_size: 32}", "data.image_size=32", "lara.lam.image_size=32",
            "lara.lam.width=32", "lara.lam.idm_layers=1", "lara.lam.fdm_layers=1", "train.wandb.mode=disabled",
            "posttrain.lam_warmup_steps=0", "train.warmup_steps=1", "data.frame_gap=2", "lara.lam.action_horizon=2"]
    for command, argv, folder in (
            ("data videos", ["data", "videos", str(source), str(small / "videos")], small / "videos"),
            ("data convert", ["data", "convert", str(source), "--to", "lerobot", str(small / "lerobot")],
             small / "lerobot"),
            ("train", ["train", "posttrain_token_vla", f"data.paths=[{source}]", f"output_dir={small / 'run'}", *tiny],
             small / "run")):
        script = (f"mount -t tmpfs -o size=4k tmpfs {shlex.quote(str(small))} && {shlex.quote(str(lara))} "
                  f"{shlex.join(argv)}; echo \"exit $?\"; ls -A {shlex.quote(str(small))}")
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        errors = [line for line in done.stderr.splitlines() if line.startswith("lara ")]
        assert errors == [f"lara {command}: error: {folder}: no space left on the device (the write failed: "
                          f"{errors[0].split('(the write failed: ', 1)[-1]}"] if errors else False, done.stderr[-2000:]
        listing = done.stdout.split("exit ", 1)[1].splitlines()
        assert listing[0] == "2", done.stdout
        assert not [name for name in listing[1:] if name.startswith(".") and name.endswith(".tmp")], listing
