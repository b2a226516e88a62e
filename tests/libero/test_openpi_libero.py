"""`lara eval libero --policy ws://HOST:PORT --obs-format openpi-libero`: what an openpi-protocol server receives
(against a server that behaves as openpi's `WebsocketPolicyServer` and records it), and the same episodes as the
checkpoint run in process when the server is `lara serve`."""

from __future__ import annotations

import asyncio
import http
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from lara.benchmarks.libero.evaluate import evaluate
from lara.errors import InputError

pytestmark = pytest.mark.slow
CHUNK = 10  # actions per reply of the recording server


class OpenpiStyleServer:
    """openpi's WebsocketPolicyServer as its client sees it: the metadata on connect, msgpack-numpy frames
    (openpi_client's own packer), `/healthz`; every observation and the Authorization header are recorded. Replies
    CHUNK still actions with the gripper open."""

    def __init__(self) -> None:
        self.observations: list[dict] = []
        self.headers: list[str | None] = []
        self.ready, self.port = threading.Event(), None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _handler(self, websocket) -> None:
        import websockets
        from openpi_client import msgpack_numpy

        packer = msgpack_numpy.Packer()
        await websocket.send(packer.pack({"policy": "recording"}))
        while True:
            try:
                obs = msgpack_numpy.unpackb(await websocket.recv())
            except websockets.ConnectionClosed:
                return
            self.observations.append(obs)
            actions = np.tile(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32), (CHUNK, 1))
            await websocket.send(packer.pack({"actions": actions, "server_timing": {"infer_ms": 0.0}}))

    def _request(self, connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        self.headers.append(request.headers.get("Authorization"))
        return None

    async def _run(self) -> None:
        from websockets.asyncio.server import serve

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None,
                         process_request=self._request) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> "OpenpiStyleServer":
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_the_server_receives_openpis_libero_element_of_the_env_state(tmp_path):
    """Keys, dtypes and shapes as openpi's LIBERO client sends them; the images are the env's raw renders rotated
    180 degrees and resized with pad by openpi's own image_tools; the state is the env's end-effector pose and
    gripper; the prompt is the benchmark's task language (task 5's BDDL says "pick", its name "pick up")."""
    from openpi_client import image_tools
    from robosuite.utils.transform_utils import quat2axisangle

    from lara.benchmarks.execution import hold_action
    from lara.benchmarks.libero.env import NUM_WAIT_STEPS, LiberoEnv
    from lara.benchmarks.rollout import seed_everything

    with OpenpiStyleServer() as server:
        results = evaluate(f"ws://127.0.0.1:{server.port}", ["object"], tmp_path / "eval", tasks=[5], trials=1,
                           camera_size=64, max_steps=12, video=False, progress=False, execute_steps=5,
                           obs_format="openpi-libero", api_key="secret-key")
    episode = results["tasks"][0]["episodes"][0]
    assert episode["failure_reason"] is None and (episode["steps"], episode["chunks"]) == (12, 3)  # 5 + 5 + 2
    assert len(server.observations) == 3 and server.headers == ["Api-Key secret-key"]
    for obs in server.observations:
        assert sorted(obs) == ["observation/image", "observation/state", "observation/wrist_image", "prompt"]
        for key in ("observation/image", "observation/wrist_image"):
            assert obs[key].dtype == np.uint8 and obs[key].shape == (224, 224, 3)
        assert obs["observation/state"].dtype == np.float64 and obs["observation/state"].shape == (8,)
        assert obs["prompt"] == "pick up the tomato sauce and place it in the basket"
    assert episode["instruction"] == "pick up the tomato sauce and place it in the basket"
    protocol = results["protocol"]
    assert protocol["obs_format"] == "openpi-libero" and protocol["camera_size"] == 64
    assert protocol["policy_image_size"] is None
    assert "secret-key" not in (tmp_path / "eval" / "results.json").read_text()

    # the first observation again, from the env itself: the same init state, seed and settling steps
    env = LiberoEnv("object", 5, camera_size=64, seed=7)
    seed_everything(7 + 1000 * 5 + 0)
    env.reset(0)
    for _ in range(NUM_WAIT_STEPS):
        env.step(hold_action(-1.0))
    raw, first = env._raw, server.observations[0]
    env.close()
    for key, camera in (("observation/image", "agentview_image"), ("observation/wrist_image",
                                                                    "robot0_eye_in_hand_image")):
        upright = image_tools.resize_with_pad(np.ascontiguousarray(raw[camera][::-1, ::-1]), 224, 224)
        assert np.array_equal(first[key], upright)
        assert not np.array_equal(first[key], image_tools.resize_with_pad(raw[camera], 224, 224))  # not upside down
    state = np.concatenate([raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"].copy()),
                            raw["robot0_gripper_qpos"]])
    np.testing.assert_array_equal(first["observation/state"], state)


def test_resize_with_pad_matches_openpis(tmp_path):
    """Our resize (no openpi dependency at run time) gives openpi's bytes: square, wide, tall, already 224."""
    from openpi_client import image_tools

    from lara.serving.openpi import resize_with_pad

    rng = np.random.default_rng(0)
    for shape in ((256, 256, 3), (64, 64, 3), (120, 300, 3), (300, 97, 3), (224, 224, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(resize_with_pad(image, 224), image_tools.resize_with_pad(image, 224, 224)), shape


def test_obs_format_and_api_key_need_a_served_policy(tmp_path):
    for kwargs, message in ((dict(obs_format="openpi-libero"), "--obs-format openpi-libero is for a served policy"),
                            (dict(api_key="k"), "--api-key is for a served policy"),
                            (dict(obs_format="openpi"), "--obs-format must be one of lara, openpi-libero")):
        with pytest.raises(InputError, match=message):
            evaluate("scripted", ["object"], tmp_path / "eval", tasks=[0], trials=1, progress=False, **kwargs)


def test_lara_serve_scored_through_openpis_element_gives_the_checkpoints_episodes(tmp_path):
    """A TokenVLA reading both cameras and the 8-D state, run in process (`checkpoint:`) and behind `lara serve`
    through openpi's element, on the same init state and seed: the same episode, frame for frame. At 224 px
    renders openpi's resize with pad leaves the images as rendered, so the policy sees the same inputs; libero_10's
    task 0 words its instruction alike in the BDDL and in the task language openpi's element prompts with."""
    import torch

    from lara.real_robot.ports import free_port, wait_for_port
    from lara.vla.token_vla import tiny_token_vla

    torch.manual_seed(0)
    tiny_token_vla(cameras=("agentview_rgb", "eye_in_hand_rgb"), proprio_dim=8, chunk_size=8,
                   action_head="l1").save_pretrained(tmp_path / "vla")
    common = dict(tasks=[0], trials=1, camera_size=224, max_steps=10, progress=False, execute_steps=5)
    local = evaluate(f"checkpoint:{tmp_path / 'vla'}", ["10"], tmp_path / "local", **common)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path / "vla"),
                               "--host", "127.0.0.1", "--port", str(port)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for_port(port, timeout_s=60)
        served = evaluate(f"ws://127.0.0.1:{port}", ["10"], tmp_path / "served", obs_format="openpi-libero",
                          **common)
    finally:
        server.kill()
        server.wait(5)
    fields = ("trial", "init_state", "success", "steps", "chunks", "instruction", "failure_reason")
    episodes = [[{k: e[k] for k in fields} for e in r["tasks"][0]["episodes"]] for r in (local, served)]
    assert episodes[0] == episodes[1] and all(e["failure_reason"] is None for e in episodes[1])
    video = "videos/libero_10/task00_trial000.mp4"  # every rendered frame of the episode
    assert (tmp_path / "local" / video).read_bytes() == (tmp_path / "served" / video).read_bytes()
    assert json.loads((tmp_path / "served" / "results.json").read_text())["protocol"]["obs_format"] == "openpi-libero"
