"""LeRobot v2.1 / v3.0 folders built by hand (tests/data/lerobot_fixtures.py) read as episode sources."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("pyarrow")

from lara.data.episodes import SourceError, detect_format, open_source  # noqa: E402
from lara.data.lerobot import LeRobotSource  # noqa: E402

from lerobot_fixtures import episode_arrays, episode_frames, nearest_frames, write_v21, write_v30  # noqa: E402

LENGTHS = [12, 7, 9]
TASKS = ["pick the cup", "open the drawer", "pick the cup"]
# yuv420p at crf 30 on these smooth frames: the mean error of a frame stays far below the 7 levels that
# separate consecutive frames, so "nearest reference frame" identifies each decoded frame unambiguously
CODEC_MEAN_ERROR = 3.0


def check_episodes(source, *, cameras):
    episodes = source.episodes()
    assert [ep.length for ep in episodes] == LENGTHS
    assert [ep.instruction for ep in episodes] == TASKS
    assert all(ep.fps == 10 for ep in episodes)
    for e, ep in enumerate(episodes):
        expected = episode_arrays(e, LENGTHS[e])
        np.testing.assert_array_equal(ep.actions, expected["action"])
        np.testing.assert_array_equal(ep.states, expected["observation.state"])
        reference = episode_frames(e, LENGTHS[e])
        for camera, kind in cameras.items():
            order = [LENGTHS[e] - 1, 0, 3, 4, 3]  # out of order, repeated, both ends of the episode
            frames = ep.frames(camera, order)
            assert frames.dtype == np.uint8 and frames.shape == (5, 24, 32, 3)
            if kind == "image":  # PNG: lossless
                np.testing.assert_array_equal(frames, reference[order])
            else:
                assert list(nearest_frames(frames, reference)) == order
                assert np.abs(frames.astype(int) - reference[order]).mean() < CODEC_MEAN_ERROR
                # and not a frame of a neighbouring episode in the same mp4 (green says the episode)
                assert abs(float(frames[..., 1].mean()) - (40 + 50 * e)) < CODEC_MEAN_ERROR


def test_v21_video_and_image_features(tmp_path):
    cameras = {"observation.images.top": "video", "observation.images.wrist": "image"}
    write_v21(tmp_path / "ds", LENGTHS, TASKS, cameras=cameras)
    assert detect_format(tmp_path / "ds") == "lerobot"
    source = open_source(tmp_path / "ds")
    assert source.cameras == tuple(cameras)
    check_episodes(source, cameras=cameras)


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
@pytest.mark.parametrize("tasks_layout", ["0.4", "0.6"])
def test_v30_several_episodes_per_mp4(tmp_path, codec, tasks_layout):
    cameras = {"observation.images.top": "video", "observation.images.wrist": "image"}
    write_v30(tmp_path / "ds", LENGTHS, TASKS, cameras=cameras, codec=codec, tasks_layout=tasks_layout)
    source = open_source(tmp_path / "ds", format="lerobot")
    episodes = source.episodes()
    video_of = [ep.key["videos"]["observation.images.top"] for ep in episodes]
    assert video_of[0][0] == video_of[1][0] != video_of[2][0]  # episodes 0 and 1 share file-000.mp4
    assert video_of[1][1] == pytest.approx(LENGTHS[0] / 10, abs=1e-3)  # episode 1 starts where 0 ends
    check_episodes(source, cameras=cameras)


def test_cameras_by_short_name_and_pickled_worker(tmp_path):
    write_v30(tmp_path / "ds", LENGTHS, TASKS, cameras={"observation.images.top": "video"}, codec="libx264")
    source = open_source(tmp_path / "ds", cameras=("top",))
    assert source.episodes()[1].cameras == ("top",)
    first = source.episodes()[1].frames("top", [2])
    assert list(nearest_frames(first, episode_frames(1, LENGTHS[1]))) == [2]
    clone = pickle.loads(pickle.dumps(source))  # a spawn-started DataLoader worker
    np.testing.assert_array_equal(clone.episodes()[1].frames("top", [2]), first)
    with pytest.raises(SourceError, match="no camera 'side'"):
        open_source(tmp_path / "ds", cameras=("side",))


def test_statistics_from_stats_json(tmp_path):
    write_v30(tmp_path / "ds", LENGTHS, TASKS, cameras={"observation.images.top": "image"})
    assert LeRobotSource(tmp_path / "ds").statistics() is None  # no stats.json: the core computes them
    stats = {key: {"min": [0.0] * n, "max": [1.0] * n, "mean": [0.5] * n, "std": [0.1] * n, "q01": [0.01] * n,
                   "q99": [0.99] * n, "count": [28]} for key, n in (("action", 7), ("observation.state", 8))}
    (tmp_path / "ds/meta/stats.json").write_text(json.dumps(stats))
    read = LeRobotSource(tmp_path / "ds").statistics()
    np.testing.assert_array_equal(read.action.q99, [0.99] * 7)
    assert list(read.action.mask) == [True] * 6 + [False]  # LIBERO/OpenVLA: the gripper is not normalised
    assert read.proprio.q01.shape == (8,) and read.num_trajectories == 3


def test_bad_datasets_are_named(tmp_path):
    write_v30(tmp_path / "ds", LENGTHS, TASKS, cameras={"observation.images.top": "video"}, codec="libx264")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    (tmp_path / "ds/meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(SourceError, match="codebase_version 'v1.6'"):
        LeRobotSource(tmp_path / "ds")
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(info))
    video = tmp_path / "ds/videos/observation.images.top/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])  # truncated
    episode = LeRobotSource(tmp_path / "ds").episodes()[1]
    with pytest.raises(SourceError, match="file-000.mp4"):
        episode.frames("observation.images.top", [LENGTHS[1] - 1])
    without_action = {**info, "features": {k: v for k, v in info["features"].items() if k != "action"}}
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(without_action))
    with pytest.raises(SourceError, match="no 'action' feature"):
        LeRobotSource(tmp_path / "ds")
    assert LeRobotSource(tmp_path / "ds", action_free=True).episodes()[0].actions is None


def test_core_cuts_lerobot_episodes_into_samples(tmp_path):
    """Through the one data core: frame pairs, episode boundaries, actions and proprio of the right episode."""
    from lara.data import EpisodeDataset
    from lara.data.statistics import unnormalize_actions

    cameras = {"observation.images.top": "video", "observation.images.wrist": "image"}
    write_v30(tmp_path / "ds", LENGTHS, TASKS, cameras=cameras, codec="libx264")
    data = EpisodeDataset(paths=[tmp_path / "ds"], camera="top", extra_cameras=["wrist"], frame_gap=3,
                         action_horizon=4, image_size=None)
    assert len(data) == sum(LENGTHS)
    for index in (0, 11, 12, 16, 18, len(data) - 1):  # both ends of each episode, inside the shared mp4
        sample = data[index]
        e, t = sample["episode_index"], sample["frame_index"]
        reference = episode_frames(e, LENGTHS[e])
        pair = sample["lam_frames"].permute(0, 2, 3, 1).numpy()  # (2, H, W, 3)
        assert list(nearest_frames(pair, reference)) == [t, min(t + 3, LENGTHS[e] - 1)]
        assert bool(sample["lam_valid"]) == (t + 3 < LENGTHS[e])
        np.testing.assert_array_equal(sample["wrist"].permute(1, 2, 0).numpy(), reference[t])
        assert sample["instruction"] == TASKS[e]
        expected = episode_arrays(e, LENGTHS[e])
        np.testing.assert_allclose(sample["proprio"].numpy(), expected["observation.state"][t])
        raw = unnormalize_actions(sample["actions"].numpy(), data.statistics.action)[sample["action_mask"].numpy()]
        stats = data.statistics.action
        chunk = expected["action"][t:t + 4]
        inside = (chunk >= stats.q01) & (chunk <= stats.q99)  # normalisation clips outside [q01, q99]
        np.testing.assert_allclose(raw[inside], chunk[inside], atol=1e-5)
