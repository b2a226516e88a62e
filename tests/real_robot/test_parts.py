"""Image decoding, the episode recorder, the client against garbage, and the client's Python 3.8 syntax."""

from __future__ import annotations

import ast
import io
import subprocess
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from robot_test_support import HERE, free_port, wait_for_port
from PIL import Image as PILImage

from lara.real_robot.client import PolicyClient, ServerError
from lara.real_robot.images import ImageError, check_size, compressed_to_rgb, raw_to_rgb
from lara.real_robot.recorder import EpisodeRecorder

RGB = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)


def test_raw_images_in_every_supported_encoding():
    assert np.array_equal(raw_to_rgb("rgb8", 4, 5, 15, RGB.tobytes()), RGB)
    assert np.array_equal(raw_to_rgb("bgr8", 4, 5, 15, RGB[..., ::-1].tobytes()), RGB)
    rgba = np.concatenate([RGB, np.full((4, 5, 1), 255, np.uint8)], axis=-1)
    assert np.array_equal(raw_to_rgb("rgba8", 4, 5, 20, rgba.tobytes()), RGB)
    padded = np.concatenate([RGB.reshape(4, 15), np.zeros((4, 1), np.uint8)], axis=1)  # step 16 > 15
    assert np.array_equal(raw_to_rgb("rgb8", 4, 5, 16, padded.tobytes()), RGB)


@pytest.mark.parametrize("args, message", [
    (("mono8", 4, 5, 5, bytes(20)), "encoding 'mono8' is not supported"),
    (("16UC1", 4, 5, 10, bytes(40)), "set the camera driver to publish rgb8"),
    (("rgb8", 4, 5, 15, bytes(59)), "needs at least 60 bytes, got 59"),
    (("rgb8", 0, 5, 15, b""), "needs at least"),
])
def test_bad_raw_images_are_rejected_with_the_reason(args, message):
    with pytest.raises(ImageError, match=message):
        raw_to_rgb(*args)


def test_compressed_images_and_size_check():
    buffer = io.BytesIO()
    PILImage.fromarray(RGB).save(buffer, format="PNG")
    assert np.array_equal(compressed_to_rgb("png", buffer.getvalue()), RGB)
    with pytest.raises(ImageError, match="cannot decode compressed image"):
        compressed_to_rgb("jpeg", b"\xff\xd8 truncated")
    assert check_size(RGB, (4, 5)) is RGB and check_size(RGB, None) is RGB
    with pytest.raises(ImageError, match="image is 4x5, the node is configured for 224x224"):
        check_size(RGB, (224, 224))


def test_recorder_writes_libero_layout_and_skips_empty_episodes(tmp_path):
    recorder = EpisodeRecorder(tmp_path)
    recorder.begin("wipe the table")
    assert recorder.save(success=True) is None  # nothing executed: no file
    assert list(tmp_path.iterdir()) == []
    recorder.begin("wipe the table")
    for t in range(3):
        recorder.add_step(action=np.full(7, t / 10), agentview_rgb=np.full((8, 8, 3), t, np.uint8),
                          ee_pos=np.array([0.4, 0.0, 0.3]), ee_ori=np.array([np.pi, 0, 0]),
                          gripper_qpos=np.array([0.04, 0.04]), joint_qpos=np.zeros(7))
    path = recorder.save(success=False)
    assert path.name.endswith("_wipe_the_table.hdf5") and not list(tmp_path.glob(".*.tmp"))
    with h5py.File(path) as f:
        demo = f["data/demo_0"]
        assert f["data"].attrs["num_demos"] == 1 and demo.attrs["num_samples"] == 3
        assert not demo.attrs["success"] and demo["rewards"][-1] == 0.0
        np.testing.assert_allclose(demo["actions"][:, 0], [0.0, 0.1, 0.2])
        assert demo["obs/agentview_rgb"][2, 0, 0, 0] == 2 and demo["robot_states"].shape == (3, 9)
        assert "eye_in_hand_rgb" not in demo["obs"]
    with pytest.raises(RuntimeError, match="before begin"):
        recorder.add_step(action=np.zeros(7), agentview_rgb=np.zeros((8, 8, 3), np.uint8), ee_pos=np.zeros(3),
                          ee_ori=np.zeros(3), gripper_qpos=np.zeros(2), joint_qpos=np.zeros(7))


def test_client_reports_garbage_from_a_misbehaving_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "bad_server.py"), str(port)])
    try:
        wait_for_port(port)
        client = PolicyClient("127.0.0.1", port, timeout_s=2.0)
        with pytest.raises(ServerError, match="undecodable reply"):
            client.infer({"agentview_rgb": np.zeros((8, 8, 3), np.uint8)})
        assert client.metadata == {"name": "garbage"}
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("name", ["client.py", "wire.py"])
def test_robot_pc_files_parse_as_python_38(name):
    source = (Path(__file__).parents[2] / "lara" / "serving" / name).read_text()
    ast.parse(source, feature_version=(3, 8))  # no `X | Y` annotations evaluated, no match, no walrus misuse
    assert "from __future__ import annotations" not in source  # so annotations must be 3.8-valid as written
    assert not re.search(r"(->|:)\s*(dict|list|tuple|set)\[|\|\s*None", source)  # 3.9+/3.10+ annotations
    assert "import torch" not in source and "pydantic" not in source


def test_client_works_as_a_standalone_copy(tmp_path):
    """client.py + wire.py copied next to each other, with no `lara` importable at all."""
    import shutil

    for name in ("client.py", "wire.py"):
        shutil.copy(Path(__file__).parents[2] / "lara" / "serving" / name, tmp_path / name)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "bad_server.py"), str(port)])
    try:
        wait_for_port(port)
        code = ("import sys; sys.modules['lara'] = None; import client; "
                f"c = client.PolicyClient('127.0.0.1', {port}); print(c.connect()['name'])")
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == "garbage", out.stderr
    finally:
        server.kill()
        server.wait(5)
