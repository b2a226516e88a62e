import json
import warnings

import h5py
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from lara.data import (
    EpisodeDataset,
    EpochShuffleSampler,
    LiberoDataConfig,
    LiberoFileError,
    load_statistics,
    normalize_actions,
    unnormalize_actions,
)


def raw_actions(written):
    return np.concatenate([demo["actions"] for name in sorted(written) for demo in written[name]])


def test_round_trip_shapes_and_exact_frame_gap(libero_dir):
    root, written = libero_dir
    k, H = 4, 6
    data = EpisodeDataset(paths=root, frame_gap=k, action_horizon=H)
    assert len(data.episodes) == 3 and len(data) == 20 + 13 + 25
    episode_arrays = [written["a_demo.hdf5"][0], written["a_demo.hdf5"][1], written["b_demo.hdf5"][0]]
    checked = 0
    for index in range(len(data)):
        sample = data[index]
        arrays = episode_arrays[sample["episode_index"]]
        t, T = sample["frame_index"], len(arrays["actions"])
        assert sample["lam_frames"].shape == (2, 3, 16, 16) and sample["lam_frames"].dtype == torch.uint8
        assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.uint8
        assert sample["actions"].shape == (H, 7) and sample["actions"].dtype == torch.float32
        assert sample["lam_actions"].shape == (k, 7) and sample["lam_actions"].dtype == torch.float32
        assert sample["proprio"].shape == (8,) and sample["proprio"].dtype == torch.float32
        np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), arrays["agentview_rgb"][t])
        if t + k < T:
            future = sample["lam_frames"][1].permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(future, arrays["agentview_rgb"][t + k])
            assert int(sample["lam_frames"][1, 0, 0, 0]) - int(sample["lam_frames"][0, 0, 0, 0]) == k
            checked += 1
        expected_proprio = np.concatenate([arrays["ee_states"][t], arrays["gripper_states"][t]])
        np.testing.assert_allclose(sample["proprio"].numpy(), expected_proprio, rtol=1e-6)
        expected = normalize_actions(arrays["actions"][t:t + k], data.statistics.action)
        np.testing.assert_allclose(sample["lam_actions"].numpy()[: len(expected)], expected, rtol=1e-5, atol=1e-6)
    assert checked == (20 - k) + (13 - k) + (25 - k)
    assert data[0]["instruction"] == "open the drawer" and data[len(data) - 1]["instruction"] == "close the drawer"


def test_chunk_padding_mask_and_lam_valid_at_episode_end(libero_dir):
    root, written = libero_dir
    k, H = 4, 10
    data = EpisodeDataset(paths=root / "a_demo.hdf5", frame_gap=k, action_horizon=H)
    arrays = written["a_demo.hdf5"][1]  # second episode: 13 steps, samples 20..32
    T, offset = 13, 20
    normalized = normalize_actions(arrays["actions"], data.statistics.action).astype(np.float32)
    for t in range(T):
        sample = data[offset + t]
        assert sample["episode_index"] == 1 and sample["frame_index"] == t
        real = min(H, T - t)
        assert sample["action_mask"].tolist() == [True] * real + [False] * (H - real)
        np.testing.assert_allclose(sample["actions"][:real].numpy(), normalized[t:t + real], rtol=1e-6)
        # padding repeats the last action of the episode
        np.testing.assert_allclose(sample["actions"][real:].numpy(), np.repeat(normalized[-1:], H - real, 0))
        real_lam = min(k, T - t)
        assert sample["lam_action_mask"].tolist() == [True] * real_lam + [False] * (k - real_lam)
        assert bool(sample["lam_valid"]) == (t + k <= T - 1)
        if t + k > T - 1:  # no future frame: the last frame stands in
            np.testing.assert_array_equal(sample["lam_frames"][1].permute(1, 2, 0).numpy(), arrays["agentview_rgb"][-1])

    dropped = EpisodeDataset(paths=root / "a_demo.hdf5", frame_gap=k, drop_incomplete=True)
    assert len(dropped) == (20 - k) + (13 - k)
    assert all(bool(dropped[i]["lam_valid"]) for i in range(len(dropped)))


def test_statistics_match_numpy_and_round_trip(libero_dir, tmp_path):
    root, written = libero_dir
    data = EpisodeDataset(paths=root)
    raw = raw_actions(written)
    stats = data.statistics
    np.testing.assert_allclose(stats.action.q01, np.quantile(raw, 0.01, axis=0))
    np.testing.assert_allclose(stats.action.q99, np.quantile(raw, 0.99, axis=0))
    np.testing.assert_allclose(stats.action.mean, raw.mean(0))
    np.testing.assert_allclose(stats.action.std, raw.std(0))
    assert stats.action.mask.tolist() == [True] * 6 + [False]
    assert stats.num_transitions == len(raw) and stats.num_trajectories == 3

    normalized = normalize_actions(raw, stats.action)
    q01, q99 = stats.action.q01, stats.action.q99
    expected = np.clip(2 * (raw[:, :6] - q01[:6]) / (q99[:6] - q01[:6]) - 1, -1, 1)
    np.testing.assert_allclose(normalized[:, :6], expected, atol=1e-6)
    np.testing.assert_array_equal(normalized[:, 6], raw[:, 6])  # gripper not normalised
    inside = np.all((raw >= q01) & (raw <= q99), axis=1)
    np.testing.assert_allclose(unnormalize_actions(normalized, stats.action)[inside], raw[inside], atol=1e-6)
    restored = data.unnormalize_actions(torch.from_numpy(normalized).float())
    assert restored.dtype == torch.float32
    np.testing.assert_allclose(restored.numpy()[inside], raw[inside], atol=1e-5)

    path = data.save_statistics(tmp_path / "stats")
    assert path.name == "dataset_statistics.json"
    content = json.loads(path.read_text())
    assert set(content["libero"]["action"]) == {"mean", "std", "max", "min", "q01", "q99", "mask"}
    assert "proprio" in content["libero"] and content["libero"]["num_trajectories"] == 3
    loaded = load_statistics(path)
    np.testing.assert_allclose(loaded.action.q99, stats.action.q99)

    # statistics from another dataset (here: only file b) are used as given, not recomputed
    other = EpisodeDataset(paths=root / "b_demo.hdf5")
    other.save_statistics(tmp_path / "b_stats.json")
    reused = EpisodeDataset(paths=root / "a_demo.hdf5", statistics_path=tmp_path / "b_stats.json")
    np.testing.assert_allclose(reused.statistics.action.q01, other.statistics.action.q01)
    a0 = written["a_demo.hdf5"][0]["actions"][:9]  # lam_actions of sample 0 at the default frame_gap 9
    np.testing.assert_allclose(reused[0]["lam_actions"].numpy(), normalize_actions(a0, other.statistics.action),
                               rtol=1e-5, atol=1e-6)


def test_official_upside_down_convention_is_flipped(tmp_path, write_file):
    path = tmp_path / "KITCHEN_SCENE1_open_the_top_drawer_demo.hdf5"
    arrays = write_file(path, [12], seed=5)[0]
    with h5py.File(path, "r+") as f:  # make it look like an official LIBERO file
        del f["data"].attrs["macros_image_convention"]
        f["data/demo_0/obs/agentview_rgb"][...] = arrays["agentview_rgb"][:, ::-1, ::-1]  # raw opengl render
        f["data"].attrs["problem_info"] = json.dumps({"problem_name": "x"})
    sample = EpisodeDataset(paths=path, frame_gap=3)[2]
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), arrays["agentview_rgb"][2])
    assert sample["image"][2, :, 0].tolist() == list(range(16))  # rows upright again
    assert sample["image"][0, 0, 0] == 2 and sample["image"][0, 0, -1] != 2  # not mirrored: the 180-degree rotation
    assert sample["instruction"] == "open the top drawer"  # from the file name, as for official files
    with h5py.File(path, "r+") as f:
        f["data"].attrs["macros_image_convention"] = "opengl"
    np.testing.assert_array_equal(EpisodeDataset(paths=path)[2]["image"].permute(1, 2, 0).numpy(),
                                  arrays["agentview_rgb"][2])


def test_action_free_mode_reads_files_without_actions(tmp_path, write_file):
    path = tmp_path / "video.hdf5"
    arrays = write_file(path, [15], seed=6)[0]
    with h5py.File(path, "r+") as f:
        del f["data/demo_0/actions"]
    with pytest.raises(LiberoFileError, match=r"video.hdf5 data/demo_0: missing `actions`.*action_free=True"):
        EpisodeDataset(paths=path)
    data = EpisodeDataset(paths=path, action_free=True, frame_gap=5)
    assert data.statistics is None and len(data) == 15
    sample = data[3]
    assert set(sample) == {"lam_frames", "lam_valid", "image", "instruction", "episode_index", "frame_index"}
    np.testing.assert_array_equal(sample["lam_frames"][1].permute(1, 2, 0).numpy(), arrays["agentview_rgb"][8])


def test_resize_uses_requested_size(libero_dir):
    root, _ = libero_dir
    sample = EpisodeDataset(paths=root, image_size=(8, 12))[0]
    assert sample["lam_frames"].shape == (2, 3, 8, 12) and sample["lam_frames"].dtype == torch.uint8
    assert sample["image"].shape == (3, 8, 12)
    # blue holds the row index (constant along a row): after resizing, rows still increase and stay flat
    blue = EpisodeDataset(paths=root, image_size=8)[0]["image"][2].int()  # (8, 8)
    assert torch.all(blue[1:, 0] > blue[:-1, 0]) and torch.all(blue == blue[:, :1])
    assert 0 <= int(blue[0, 0]) <= 2 and 13 <= int(blue[-1, 0]) <= 15


def test_deterministic_shuffle(libero_dir):
    root, _ = libero_dir
    data = EpisodeDataset(paths=root)
    first, second = EpochShuffleSampler(data, seed=7), EpochShuffleSampler(data, seed=7)
    epoch0, epoch1 = list(first), list(first)
    assert epoch0 == list(second) and epoch1 == list(second)  # same seed, same epochs: same orders
    assert epoch0 != epoch1 and sorted(epoch0) == list(range(len(data)))
    second.set_epoch(0)
    assert list(second) == epoch0  # resuming replays an epoch exactly
    assert list(EpochShuffleSampler(data, seed=8)) != epoch0


def test_dataloader_workers_give_the_same_samples(libero_dir):
    root, _ = libero_dir
    data = EpisodeDataset(paths=root, frame_gap=4, action_horizon=5)

    def batches(workers):
        loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=workers,
                                             sampler=EpochShuffleSampler(data, seed=3))
        return list(loader)

    serial = batches(0)  # opens HDF5 handles in this process before the workers fork
    parallel = batches(2)
    assert len(serial) == len(parallel) == 8
    assert_same_batches(serial, parallel)


def test_spawned_workers_give_the_same_samples(libero_dir):
    root, _ = libero_dir
    data = EpisodeDataset(paths=root, frame_gap=4, action_horizon=5)
    data[0]  # an open handle in this process must not travel to the spawned worker
    order = list(range(0, len(data), 5))
    serial = [data[i] for i in order]
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=1, sampler=order,
                                         multiprocessing_context="spawn")
    assert_same_batches([torch.utils.data.default_collate([s]) for s in serial],
                        [torch.utils.data.default_collate([s]) for s in loader])


def assert_same_batches(serial, parallel):
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


def test_truncated_file_named_and_others_still_read(libero_dir, write_file):
    root, _ = libero_dir
    bad = root / "c_demo.hdf5"
    write_file(bad, [10], seed=9)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size - 4096])
    with pytest.raises(LiberoFileError, match=r"c_demo.hdf5: cannot be read as HDF5.*data.skip_bad_files=true") as error:
        EpisodeDataset(paths=root)
    assert str(error.value).count(str(bad)) == 1  # the path once
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable LIBERO file\(s\):\n  .*c_demo.hdf5") as caught:
        data = EpisodeDataset(paths=root, skip_bad_files=True)
    assert len(caught) == 1 and str(caught[0].message).count(str(bad)) == 1
    assert {ep.path.name for ep in data.episodes} == {"a_demo.hdf5", "b_demo.hdf5"}
    assert len(data) == 20 + 13 + 25 and data[len(data) - 1]["lam_frames"].shape == (2, 3, 16, 16)
    with pytest.raises(LiberoFileError, match="no readable episodes"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        EpisodeDataset(paths=bad, skip_bad_files=True)


def test_corrupt_frame_chunk_names_file_and_demo(libero_dir):
    root, written = libero_dir
    path = root / "b_demo.hdf5"
    with h5py.File(path, "r") as f:
        chunk = f["data/demo_0/obs/agentview_rgb"].id.get_chunk_info(7)  # frame 7 of the only demo
    with open(path, "r+b") as handle:
        handle.seek(chunk.byte_offset)
        handle.write(b"\xff" * chunk.size)
    data = EpisodeDataset(paths=root, frame_gap=4)
    bad = next(i for i in range(len(data)) if data.episodes[int(data._episode_of[i])].path == path
               and int(data._t_of[i]) == 7)
    with pytest.raises(LiberoFileError, match=r"b_demo.hdf5 data/demo_0: reading obs/agentview_rgb frames \[7, 11\]"):
        data[bad]
    intact = written["a_demo.hdf5"][0]["agentview_rgb"][0]
    np.testing.assert_array_equal(data[0]["image"].permute(1, 2, 0).numpy(), intact)


def test_extra_cameras(libero_dir):
    root, written = libero_dir
    sample = EpisodeDataset(paths=root, extra_cameras=["eye_in_hand_rgb"], image_size=8)[5]
    assert sample["eye_in_hand_rgb"].shape == (3, 8, 8) and sample["eye_in_hand_rgb"].dtype == torch.uint8
    full = EpisodeDataset(paths=root, extra_cameras=["eye_in_hand_rgb"])[5]
    np.testing.assert_array_equal(full["eye_in_hand_rgb"].permute(1, 2, 0).numpy(),
                                  written["a_demo.hdf5"][0]["eye_in_hand_rgb"][5])
    with pytest.raises(ValidationError, match="must be distinct"):
        LiberoDataConfig(paths=[root], extra_cameras=["agentview_rgb"])


def test_missing_camera_lists_available(libero_dir):
    root, _ = libero_dir
    with pytest.raises(LiberoFileError, match=r"a_demo.hdf5 data/demo_0/obs: no camera 'frontview_rgb'; "
                                              r"available: \['agentview_rgb', 'ee_ori', .*'eye_in_hand_rgb'"):
        EpisodeDataset(paths=root, camera="frontview_rgb")
    wrist = EpisodeDataset(paths=root, camera="eye_in_hand_rgb")[0]
    assert int(wrist["image"][0, 0, 0]) == 255  # the wrist frames were written as 255 - frame


def test_config_documents_every_field_and_rejects_typos(tmp_path):
    for name, field in LiberoDataConfig.model_fields.items():
        assert field.description, name
    with pytest.raises(ValidationError, match="frame_gapp"):
        LiberoDataConfig(paths=[tmp_path], frame_gapp=3)
    with pytest.raises(ValidationError, match="paths is empty"):
        LiberoDataConfig(paths=[])
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        EpisodeDataset(paths=tmp_path / "missing.hdf5")


def test_nan_or_inf_action_or_state_is_refused_naming_file_demo_and_step(libero_dir):
    root, _ = libero_dir
    with h5py.File(root / "a_demo.hdf5", "r+") as f:
        f["data/demo_1/actions"][5, 2] = np.nan
    with pytest.raises(ValueError, match=r"a_demo.hdf5 data/demo_1: actions\[5, 2\] = nan at step 5"):
        EpisodeDataset(paths=root)
    with h5py.File(root / "a_demo.hdf5", "r+") as f:
        f["data/demo_1/actions"][5, 2] = 0.0
        f["data/demo_0/obs/gripper_states"][3, 1] = np.inf
    with pytest.raises(ValueError, match=r"a_demo.hdf5 data/demo_0: states\[3, 7\] = inf at step 3"):
        EpisodeDataset(paths=root)
    assert len(EpisodeDataset(paths=root, action_free=True)) == 20 + 13 + 25  # frames only: not read


def test_overwritten_bytes_name_the_file_and_close_it(tmp_path, write_file, capsys):
    from lara.data.inspect import libero_files_main as main
    from lara.data.libero_hdf5 import inspect_libero_hdf5

    path = tmp_path / "a_demo.hdf5"
    write_file(path, [10, 12])
    content = bytearray(path.read_bytes())
    content[800:1056] = b"\xab" * 256  # object headers of the groups: h5py opens the file, then fails inside
    path.write_bytes(bytes(content))
    with pytest.raises(LiberoFileError, match=r"a_demo.hdf5: the HDF5 file is damaged"):
        inspect_libero_hdf5(path)
    with pytest.raises(LiberoFileError, match=r"a_demo.hdf5: the HDF5 file is damaged"):
        EpisodeDataset(paths=path)
    with h5py.File(path, "r+"):  # no handle left open by the failed reads
        pass
    assert main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: the HDF5 file is damaged")
