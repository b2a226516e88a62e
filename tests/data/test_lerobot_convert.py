"""LIBERO HDF5 -> LeRobot v3.0 -> LIBERO (`lara data convert`), and the layout the writer leaves on disk."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from lara.cli import main as lara_main
from lara.errors import InputError

pytest.importorskip("av")
pytest.importorskip("pyarrow")

from lara.data.convert import main  # noqa: E402
from lara.data.lerobot import LeRobotSource  # noqa: E402
from lara.data.lerobot_writer import LeRobotWriter, camera, vector  # noqa: E402
from lara.data.libero_hdf5 import inspect_libero_hdf5  # noqa: E402
from lara.data.libero_writer import LiberoHDF5Writer  # noqa: E402

from lerobot_fixtures import episode_frames, nearest_frames  # noqa: E402

# Images go RGB -> yuv420p (8-bit BT.601 limited range, chroma at half resolution) -> crf 30 -> RGB: on these
# smooth 24x32 frames a frame's mean absolute error was measured at 0.4-3.3 of 255 levels (H.264 the larger);
# 4 bounds it. Nearest-frame matching (consecutive frames differ by 7 red levels) proves each is the right one.
CODEC_MEAN_ERROR = 4.0


def write_libero(path, lengths, language, seed):
    """Demos with smooth identifiable frames and float64 arrays (as LIBERO stores them)."""
    demos = []
    with LiberoHDF5Writer(path, language=language) as writer:
        for i, T in enumerate(lengths):
            rng = np.random.default_rng(seed * 10 + i)
            frames = episode_frames(seed + i, T)
            demo = dict(actions=rng.normal(size=(T, 7)), agentview_rgb=frames, eye_in_hand_rgb=frames[:, ::-1].copy(),
                        ee_states=rng.normal(size=(T, 6)), gripper_states=rng.normal(size=(T, 2)),
                        joint_states=rng.normal(size=(T, 7)), states=rng.normal(size=(T, 5)))
            writer.add_demo(**demo)
            demos.append(demo)
    return demos


@pytest.fixture
def libero_files(tmp_path):
    return {"open_the_drawer_demo.hdf5": write_libero(tmp_path / "src/a.hdf5", [12, 7], "open the drawer", 0),
            "close_the_drawer_demo.hdf5": write_libero(tmp_path / "src/b.hdf5", [9], "close the drawer", 2)}


@pytest.mark.parametrize("codec", ["av1", "h264", "png"])
def test_libero_lerobot_libero_round_trip(tmp_path, libero_files, codec):
    assert main([str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "lr"), "--codec", codec,
                 "--episodes-per-file", "2"]) == 0
    source = LeRobotSource(tmp_path / "lr")
    assert [(ep.length, ep.instruction) for ep in source.episodes()] == \
        [(12, "open the drawer"), (7, "open the drawer"), (9, "close the drawer")]
    assert source.fps == 20  # LIBERO's control frequency
    assert main([str(tmp_path / "lr"), "--to", "libero", str(tmp_path / "back")]) == 0
    for name, demos in libero_files.items():
        with h5py.File(tmp_path / "back" / name) as handle:
            assert json.loads(handle["data"].attrs["problem_info"])["language_instruction"] in name.replace("_", " ")
            assert sorted(handle["data"].keys()) == [f"demo_{i}" for i in range(len(demos))]
            for i, demo in enumerate(demos):
                group = handle[f"data/demo_{i}"]
                for key in ("actions", "states"):
                    np.testing.assert_array_equal(group[key][()], demo[key])  # exact: float64 all the way
                for key in ("ee_states", "gripper_states", "joint_states"):
                    np.testing.assert_array_equal(group["obs"][key][()], demo[key])
                for key in ("agentview_rgb", "eye_in_hand_rgb"):
                    frames = group["obs"][key][()]
                    if codec == "png":
                        np.testing.assert_array_equal(frames, demo[key])
                    else:
                        assert list(nearest_frames(frames, demo[key])) == list(range(len(frames)))
                        errors = np.abs(frames.astype(int) - demo[key]).mean(axis=(1, 2, 3))
                        assert errors.max() < CODEC_MEAN_ERROR, (key, errors)


def test_writer_layout_is_what_lerobot_loads(tmp_path, libero_files):
    assert main([str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "lr"), "--codec", "h264",
                 "--episodes-per-file", "2"]) == 0
    root = tmp_path / "lr"
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3 and info["total_frames"] == 28
    assert info["total_tasks"] == 2 and info["splits"] == {"train": "0:3"}
    assert info["features"]["observation.images.agentview"]["info"]["video.codec"] == "h264"
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(info["features"])
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    prefix = "videos/observation.images.agentview/"
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 12), (12, 19), (19, 28)]
    assert [(e[prefix + "file_index"], e[prefix + "from_timestamp"]) for e in episodes] == \
        [(0, 0.0), (0, 12 / 20), (1, 0.0)]  # episodes 0 and 1 share file-000.mp4
    assert [e["data/file_index"] for e in episodes] == [0, 0, 1]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert str(data.schema.field("action").type) == "fixed_size_list<element: double>[7]"
    assert str(data.schema.field("timestamp").type) == "float"
    assert data["index"].to_pylist() == list(range(19))
    assert data["timestamp"].to_pylist()[12] == 0.0  # per-episode time; the video adds from_timestamp
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks["task"].to_pylist() == ["open the drawer", "close the drawer"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pandas restores the index
    stats = json.loads((root / "meta/stats.json").read_text())
    assert len(stats["action"]["q01"]) == 7 and np.array(stats["observation.images.agentview"]["mean"]).shape == (3, 1, 1)


def test_official_upside_down_files_become_upright(tmp_path):
    demos = write_libero(tmp_path / "src/a.hdf5", [5], "open the drawer", 0)
    with h5py.File(tmp_path / "src/a.hdf5", "r+") as handle:
        handle["data"].attrs["macros_image_convention"] = "opengl"  # as robosuite renders (official files)
    assert main([str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "lr"), "--codec", "png"]) == 0
    episode = LeRobotSource(tmp_path / "lr", cameras=("agentview_rgb",)).episodes()[0]  # LIBERO's name works
    np.testing.assert_array_equal(episode.frames("agentview_rgb", [0, 4]),
                                  demos[0]["agentview_rgb"][[0, 4], ::-1, ::-1])


def test_bad_input_is_named(tmp_path, capsys):
    with LeRobotWriter(tmp_path / "lr", fps=10, features={"action": vector(6), "observation.state": vector(8),
                                                          "observation.images.top": camera(24, 32)},
                       codec="h264") as writer:
        with pytest.raises(ValueError, match=r"`action` has shape \[4, 7\], expected \[4, 6\]"):
            writer.add_episode({"action": np.zeros((4, 7)), "observation.state": np.zeros((4, 8)),
                                "observation.images.top": episode_frames(0, 4)}, task="x")
        writer.add_episode({"action": np.zeros((4, 6)), "observation.state": np.zeros((4, 8)),
                            "observation.images.top": episode_frames(0, 4)}, task="x")
    assert lara_main(["data", "convert", str(tmp_path / "lr"), "--to", "libero", str(tmp_path / "back")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara data convert: error: ") and "LIBERO needs [T, 7] actions" in error
    with pytest.raises(InputError, match="already exists; a LeRobot dataset is written into a new folder"):
        LeRobotWriter(tmp_path / "lr", fps=10, features={"action": vector(6)})


def test_convert_replaces_nothing_without_overwrite_and_names_an_unwritable_out(tmp_path, libero_files, capsys):
    out, back = tmp_path / "lr", tmp_path / "back"
    assert lara_main(["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(out), "--codec", "png"]) == 0
    assert lara_main(["data", "convert", str(out), "--to", "libero", str(back)]) == 0
    capsys.readouterr()
    mine = sorted(back.iterdir())[0]
    mine.write_bytes(b"the user's own file")  # an earlier file of the same name in OUT
    info = (out / "meta" / "info.json").read_bytes()
    for argv in (["data", "convert", str(out), "--to", "libero", str(back)],
                 ["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(out), "--codec", "png"]):
        assert lara_main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("lara data convert: error: ") and error.count("\n") == 1 and "--overwrite" in error
    assert mine.read_bytes() == b"the user's own file" and (out / "meta" / "info.json").read_bytes() == info
    assert lara_main(["data", "convert", str(out), "--to", "libero", str(back), "--overwrite"]) == 0
    assert inspect_libero_hdf5(mine).num_demos > 0
    assert lara_main(["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(out), "--codec", "png",
                      "--episodes-per-file", "1", "--overwrite"]) == 0
    assert len(LeRobotSource(out).episodes()) == 3 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "a_file").write_text("")
    for argv in (["data", "convert", str(out), "--to", "libero", str(tmp_path / "a_file" / "out")],
                 ["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "a_file" / "lr")]):
        capsys.readouterr()
        assert lara_main(argv) == 2
        error = capsys.readouterr().err
        assert "a_file/" in error and "cannot write there (" in error and "/." not in error, error  # no hidden temp name


def test_lara_data_convert_and_inspect_a_lerobot_folder(tmp_path, libero_files, capsys):
    from lara.cli import main as lara_main

    out = tmp_path / "lr"
    assert lara_main(["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(out), "--codec", "h264"]) == 0
    assert lara_main(["data", "inspect", str(out), "--camera", "agentview_rgb", "--frame-gap", "2", "--pairs", "2",
                      "--sheet", str(tmp_path / "pairs.png")]) == 0
    printed = capsys.readouterr().out
    assert "lerobot, 3 episodes, 28 frames" in printed and "'open the drawer'" in printed
    assert (tmp_path / "pairs.png").is_file()


def test_libero_and_its_lerobot_copy_mix_in_one_dataset(tmp_path, libero_files):
    """`agentview_rgb` names the camera in both; the copy's samples match the originals'."""
    from lara.data import EpisodeDataset

    assert main([str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "lr"), "--codec", "png"]) == 0
    data = EpisodeDataset(paths=[tmp_path / "src", tmp_path / "lr"], frame_gap=3, action_horizon=4, image_size=None)
    assert [s.format for s in data.sources] == ["libero_hdf5", "lerobot"]
    assert len(data.episodes) == 6 and len(data) == 2 * 28
    for index in (0, 11, 12, 27):
        original, copy = data[index], data[28 + index]
        for key in ("lam_frames", "actions", "action_mask", "lam_actions", "proprio", "lam_valid"):
            assert np.array_equal(original[key].numpy(), copy[key].numpy()), key
        assert original["instruction"] == copy["instruction"]


def test_the_av1_writer_leaves_the_callers_scheduling_as_it_was(tmp_path):
    import os

    from lara.data.video_io import VideoEncoder

    before = os.sched_getscheduler(0), os.sched_getparam(0)
    encoder = VideoEncoder(tmp_path / "a.mp4", fps=10, width=64, height=64, codec="av1")
    encoder.write(np.zeros((4, 64, 64, 3), np.uint8))
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
    encoder.close()
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before


def test_a_lerobot_folder_without_info_json_is_not_read_as_videos(tmp_path, libero_files, capsys):
    """Its mp4 files used to be read as a video folder (no actions, one camera): refused, naming the file."""
    from lara.data import EpisodeDataset

    out = tmp_path / "lr"
    assert main([str(tmp_path / "src"), "--to", "lerobot", str(out), "--codec", "h264"]) == 0
    (out / "meta" / "info.json").unlink()
    with pytest.raises(InputError, match=r"lr: a LeRobot dataset's layout \(meta/\) without meta/info.json"):
        EpisodeDataset(paths=[out], frame_gap=2)
    assert lara_main(["data", "inspect", str(out), "--pairs", "0"]) == 2
    assert "without meta/info.json" in capsys.readouterr().err
    shutil.rmtree(out / "meta")  # the chunk folders still say what it is
    with pytest.raises(InputError, match=r"layout \((data|videos)/.*chunk-000/\) without meta/info.json"):
        EpisodeDataset(paths=[out], frame_gap=2)
    data = EpisodeDataset(paths=[{"path": out, "format": "video"}], frame_gap=2)  # read as videos only when told
    assert data.sources[0].format == "video" and data.statistics is None
    with pytest.raises(FileNotFoundError, match="no such file or directory .* check the path in data.paths"):
        EpisodeDataset(paths=[tmp_path / "nowhere"], frame_gap=2)


def test_two_instructions_with_one_file_name_keep_both_tasks(tmp_path):
    """'Open the drawer' and 'open the drawer!' both map to open_the_drawer_demo.hdf5: before issue 38 the second
    task's file replaced the first's (one task lost); now the second gets its own name, and each keeps its language."""
    write_libero(tmp_path / "src/a.hdf5", [8], "Open the drawer", 0)
    write_libero(tmp_path / "src/b.hdf5", [6, 5], "open the drawer!", 1)
    assert lara_main(["data", "convert", str(tmp_path / "src"), "--to", "lerobot", str(tmp_path / "lr"),
                      "--codec", "png"]) == 0
    assert lara_main(["data", "convert", str(tmp_path / "lr"), "--to", "libero", str(tmp_path / "back")]) == 0
    files = sorted(p.name for p in (tmp_path / "back").iterdir())
    assert files == ["open_the_drawer_2_demo.hdf5", "open_the_drawer_demo.hdf5"]
    read = {}
    for name in files:
        with h5py.File(tmp_path / "back" / name) as handle:
            language = json.loads(handle["data"].attrs["problem_info"])["language_instruction"]
            read[language] = len(handle["data"].keys())
    assert read == {"Open the drawer": 1, "open the drawer!": 2}  # both tasks, every episode
    # a re-run is refused for both names (each checked against what the folder holds), not only the first
    assert lara_main(["data", "convert", str(tmp_path / "lr"), "--to", "libero", str(tmp_path / "back")]) == 2


def test_videos_and_lerobot_give_the_same_data_one_time_base(tmp_path):
    """Issue 38 finding 10: `data videos` wrote 10 fps and `convert --to lerobot` 20 fps from the same demos. Both
    take the source's own rate (a LIBERO file's recorded control_freq, a dataset's fps), else LIBERO_FPS."""
    import av

    from lara.data.episodes import open_source
    from lara.data.libero_hdf5 import LIBERO_FPS
    from lara.data.video import write_videos

    def rate(video) -> float:
        with av.open(str(video)) as container:
            return float(container.streams.video[0].average_rate)

    write_libero(tmp_path / "plain" / "a.hdf5", [8], "open the drawer", 0)  # records no control frequency
    with LiberoHDF5Writer(tmp_path / "ten" / "a.hdf5", language="open the drawer",
                          env_args={"env_kwargs": {"control_freq": 10}}) as writer:
        frames = episode_frames(0, 8)
        writer.add_demo(actions=np.zeros((8, 7)), agentview_rgb=frames, ee_states=np.zeros((8, 6)),
                        gripper_states=np.zeros((8, 2)), joint_states=np.zeros((8, 7)))
    for source, fps in (("plain", LIBERO_FPS), ("ten", 10)):
        assert [ep.fps for ep in open_source(tmp_path / source).episodes()] == ([None] if fps == LIBERO_FPS else [10])
        videos = write_videos(tmp_path / source, tmp_path / f"{source}_videos")
        assert main([str(tmp_path / source), "--to", "lerobot", str(tmp_path / f"{source}_lr"), "--codec", "h264"]) == 0
        assert [rate(v) for v in videos] == [fps] and LeRobotSource(tmp_path / f"{source}_lr").fps == fps
        # and from the LeRobot dataset: its videos, and the LIBERO files converted back, keep its rate
        assert [rate(v) for v in write_videos(tmp_path / f"{source}_lr", tmp_path / f"{source}_lr_videos")] == [fps]
        assert main([str(tmp_path / f"{source}_lr"), "--to", "libero", str(tmp_path / f"{source}_back")]) == 0
        assert [ep.fps for ep in open_source(tmp_path / f"{source}_back").episodes()] == [fps]
    assert rate(write_videos(tmp_path / "ten", tmp_path / "five", fps=5)[0]) == 5  # --fps still decides when given
