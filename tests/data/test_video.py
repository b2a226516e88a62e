"""Video folders as a LARA data source: pairing, seconds, resampling, captions, bad files, window order."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch

from lara.data import EpisodeDataset, EpochShuffleSampler, SourceError, detect_format
from lara.adapters.sampling import StepBatchSampler

from video_files import read_marker, write_video

pytest.importorskip("av")


@pytest.fixture
def video_dir(tmp_path):
    """An H.264 mp4 (25 fps, 48x80) and a VP9 webm (10 fps, 32x64) in a subfolder, with captions."""
    root = tmp_path / "videos"
    write_video(root / "pour.mp4", frames=60, fps=25, height=48, width=80)
    write_video(root / "sub" / "wipe.webm", frames=30, fps=10, height=32, width=64, codec="libvpx-vp9")
    (root / "pour.txt").write_text("pour water into the cup\n")
    return root


def markers(sample) -> tuple[int, int]:
    frames = sample["lam_frames"].numpy()  # (2, 3, H, W)
    return read_marker(frames[0]), read_marker(frames[1])


def test_pairs_are_t_and_t_plus_k_in_both_codecs(video_dir):
    assert detect_format(video_dir) == "video"
    data = EpisodeDataset(paths=video_dir, frame_gap=7)
    assert [ep.length for ep in data.episodes] == [60, 30] and [ep.fps for ep in data.episodes] == [25.0, 10.0]
    assert len(data) == 90 and data.statistics is None
    for index in range(len(data)):
        sample = data[index]
        t, last = sample["frame_index"], data.episodes[sample["episode_index"]].length - 1
        assert markers(sample) == (t, min(t + 7, last)), (index, t)
        assert bool(sample["lam_valid"]) == (t + 7 <= last)
        assert "actions" not in sample
    assert data[0]["lam_frames"].shape == (2, 3, 48, 80) and data[60]["lam_frames"].shape == (2, 3, 32, 64)


def test_frame_gap_in_seconds_uses_each_videos_fps(video_dir):
    data = EpisodeDataset(paths=video_dir, frame_gap_s=0.4)
    assert data._gaps == [10, 4]  # 0.4 s at 25 fps and at 10 fps
    assert markers(data[3]) == (3, 13) and markers(data[60 + 3]) == (3, 7)


def test_fps_resampling_and_centre_crop_to_the_lam_size(video_dir):
    data = EpisodeDataset(paths=video_dir / "pour.mp4", fps=5, frame_gap=2, image_size=24, crop=True)
    assert data.episodes[0].length == 12 and data.episodes[0].fps == 5.0  # 60 frames at 25 fps = 2.4 s
    uncropped = EpisodeDataset(paths=video_dir / "pour.mp4", fps=5, frame_gap=2)
    assert markers(uncropped[3]) == (15, 25)  # resampled frame i is native frame 5 i
    sample = data[3]
    assert sample["lam_frames"].shape == (2, 3, 24, 24)
    # the crop keeps the centre 48x48 of 80 columns: the grey middle, not the marker in the corner
    assert abs(int(sample["image"][0, 12, 12]) - 96) < 8


def test_captions_and_labels_reach_instruction(video_dir, tmp_path):
    write_video(video_dir / "12345.mp4", frames=12, fps=12, height=32, width=64)
    data = EpisodeDataset(paths=video_dir, frame_gap=2)
    by_name = {ep.path.name: ep.instruction for ep in data.episodes}
    assert by_name == {"pour.mp4": "pour water into the cup", "12345.mp4": "", "wipe.webm": ""}
    labels = tmp_path / "train.json"
    labels.write_text(json.dumps([{"id": "12345", "label": "pushing cup from left to right",
                                   "template": "Pushing [something] from left to right"}]))
    mixed = EpisodeDataset(paths=[{"path": video_dir, "labels": labels}], frame_gap=2)
    assert {ep.path.name: ep.instruction for ep in mixed.episodes}["12345.mp4"] == "pushing cup from left to right"
    sample = mixed[next(i for i in range(len(mixed)) if mixed.episodes[mixed[i]["episode_index"]].path.stem == "12345")]
    assert sample["instruction"] == "pushing cup from left to right"
    labels.write_text(json.dumps([{"template": "x"}]))
    with pytest.raises(SourceError, match=r"train.json: entry 0 is .*expected"):
        EpisodeDataset(paths=[{"path": video_dir, "labels": labels}])


def test_truncated_video_is_named_or_skipped(video_dir):
    bad = write_video(video_dir / "broken.mp4", frames=40, fps=25, height=48, width=80)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"broken.mp4: cannot be read as a video.*skip_bad_files=True"):
        EpisodeDataset(paths=video_dir)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable video file\(s\):\n  .*broken.mp4") as caught:
        data = EpisodeDataset(paths=video_dir, skip_bad_files=True)
    assert len(caught) == 1
    assert sorted(ep.path.name for ep in data.episodes) == ["pour.mp4", "wipe.webm"]
    with pytest.raises(SourceError, match="no readable videos"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        EpisodeDataset(paths=bad, skip_bad_files=True)


def test_window_order_decodes_each_window_once(video_dir, monkeypatch):
    data = EpisodeDataset(paths=video_dir, frame_gap=3, window=10)
    order = data.epoch_order(seed=0, epoch=0)
    assert sorted(order) == list(range(len(data))) and order == data.epoch_order(seed=0, epoch=0)
    assert order != data.epoch_order(seed=0, epoch=1) and order != data.epoch_order(seed=1, epoch=0)
    source = data.sources[0]
    decodes = []
    original = source._decode
    monkeypatch.setattr(source, "_decode", lambda key, start, *rest: decodes.append((key, start)) or
                        original(key, start, *rest))
    for index in order:
        sample = data[index]
        assert markers(sample)[0] == sample["frame_index"]
    windows = {(int(data._episode_of[i]), int(data._t_of[i]) // 10) for i in range(len(data))}
    assert len(decodes) == len(windows) == 6 + 3  # 60 frames -> 6 windows, 30 frames -> 3


def test_window_order_resumes_from_the_trainers_data_position(video_dir):
    data = EpisodeDataset(paths=video_dir, frame_gap=3, window=10)
    full = StepBatchSampler([len(data)], 4, seed=5, total_steps=60, orders=[data.epoch_order])
    resumed = StepBatchSampler([len(data)], 4, seed=5, start_step=37, total_steps=60, orders=[data.epoch_order])
    batches = list(full)
    assert list(resumed) == batches[37:]
    assert batches[0] == [data.epoch_order(5, 0)[i] for i in range(4)]  # the dataset's own order
    sampler = EpochShuffleSampler(data, seed=2)
    assert list(sampler) == data.epoch_order(2, 0)


def test_mixture_weights_with_libero_demos(video_dir, libero_dir):
    demos, _ = libero_dir  # 58 samples over 3 demos
    data = EpisodeDataset(paths=[{"path": demos}, {"path": video_dir, "weight": 2.0}], frame_gap=3,
                         action_free=True, image_size=16)
    assert len(data) == 58 + 90
    order = data.epoch_order(seed=0, epoch=0)
    assert len(order) == len(data)
    from_videos = sum(data.sources[data._source_of[int(data._episode_of[i])]].format == "video" for i in order)
    assert from_videos == round(len(data) * 90 * 2 / (58 + 90 * 2))  # twice the share of its size
    batch = torch.utils.data.default_collate([data[i] for i in order[:8]])
    assert batch["lam_frames"].shape == (8, 2, 3, 16, 16)


def test_samples_survive_the_reuse_of_their_windows_buffer(video_dir):
    data = EpisodeDataset(paths=video_dir, frame_gap=3, window=10)
    kept = [data[i] for i in (0, 15, 35, 61, 75, 5)]  # windows of both videos, more than the cache holds
    assert [markers(s) for s in kept] == [(0, 3), (15, 18), (35, 38), (1, 4), (15, 18), (5, 8)]


def test_random_access_with_window_1_converts_only_the_pair(video_dir):
    data = EpisodeDataset(paths=video_dir, frame_gap=7, window=1)
    for index in torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()[:30]:
        sample = data[index]
        t, last = sample["frame_index"], data.episodes[sample["episode_index"]].length - 1
        assert markers(sample) == (t, min(t + 7, last))
    source = data.sources[0]
    start, _, converted = source._windows[next(reversed(source._windows))]
    assert converted.sum() <= 2  # o_t and o_t+k, not the frames between them


def test_demos_with_actions_and_videos_without_are_not_mixed_silently(video_dir, libero_dir):
    demos, _ = libero_dir
    with pytest.raises(SourceError, match=r"pour.mp4 has no actions, .*a_demo.hdf5 data/demo_0 has.*video_paths"):
        EpisodeDataset(paths=[demos, video_dir])


def test_a_missing_pyav_is_named_with_the_install_command(video_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now fails as if PyAV were not installed
    with pytest.raises(SourceError, match=r"the 'video' reader needs the 'av' package.*pip install av"):
        EpisodeDataset(paths=video_dir)


def test_forked_dataloader_workers_decode_the_same_pairs(video_dir):
    data = EpisodeDataset(paths=video_dir, frame_gap=3, window=10, image_size=32)

    def batches(workers):
        loader = torch.utils.data.DataLoader(data, batch_size=10, num_workers=workers,
                                             sampler=EpochShuffleSampler(data, seed=1))
        return list(loader)

    serial = batches(0)  # containers and windows open in this process before the workers fork
    parallel = batches(2)
    assert len(serial) == len(parallel) == 9
    for a, b in zip(serial, parallel):
        assert torch.equal(a["lam_frames"], b["lam_frames"]) and a["frame_index"].tolist() == b["frame_index"].tolist()


def test_two_frame_sizes_without_an_image_size_are_named_before_any_batch(video_dir):
    """Issue 38 finding 9: read from the streams (nothing decoded); an image_size makes them one."""
    data = EpisodeDataset(paths=video_dir, frame_gap=3)
    with pytest.raises(SourceError, match=r"^data.image_size=null keeps frames at their stored size, and the frames "
                                          r"of data.camera differ: 48x80 in .*pour.mp4, 32x64 in .*wipe.webm; set "
                                          r"data.image_size \(e.g. 32\) to resize them all to one$"):
        data.check_one_image_size()
    EpisodeDataset(paths=video_dir, frame_gap=3, image_size=24).check_one_image_size()
    EpisodeDataset(paths=video_dir / "pour.mp4", frame_gap=3).check_one_image_size()
