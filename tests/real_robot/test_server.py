"""The policy server against the real openpi client and against our own client."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_policy import TinyMLPPolicy
from websockets.sync.client import connect

from lara.real_robot import wire
from lara.real_robot.client import PolicyClient, ServerError, ServerUnavailable


def tiny_pi05_checkpoint(folder) -> None:
    """A tiny pi0.5 saved in `folder` with unit dataset statistics (7-D actions, the gripper unnormalised)."""
    import json

    import torch

    from lara.vla.pi05 import tiny_pi05

    torch.manual_seed(0)
    tiny_pi05(chunk_size=4, image_size=32).save_pretrained(folder)
    stats = {"mean": [0.0] * 8, "std": [1.0] * 8, "min": [-1.0] * 8, "max": [1.0] * 8, "q01": [-1.0] * 8,
             "q99": [1.0] * 8}
    action = {**{k: v[:7] for k, v in stats.items()}, "mask": [True] * 6 + [False]}
    (folder / "dataset_statistics.json").write_text(json.dumps({"libero": {"action": action, "proprio": stats}}))

def observation(size=224, **extra):
    rng = np.random.default_rng(0)
    return {"agentview_rgb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "ee_pos": np.array([0.4, 0.0, 0.3]), "ee_ori": np.zeros(3), "gripper_qpos": np.zeros(2),
            "joint_qpos": np.zeros(7), "instruction": "pick up the cup", **extra}


def test_openpi_client_drives_the_server(server_factory):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    policy = TinyMLPPolicy(horizon=5)
    server = server_factory(policy, metadata={"name": "tiny"})
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    meta = client.get_server_metadata()
    assert meta["name"] == "tiny" and meta["action_dim"] == 7
    reply = client.infer(observation())
    assert reply["actions"].shape == (5, 7) and reply["actions"].dtype == np.float32
    np.testing.assert_allclose(reply["actions"], policy.act(observation()), rtol=1e-6)
    assert reply["server_timing"]["infer_ms"] > 0
    second = client.infer(observation())
    assert "prev_total_ms" in second["server_timing"]
    assert policy.instructions == ["pick up the cup"]  # reset once, on the first observation
    client.infer(observation(instruction="open the drawer"))
    openpi_style = observation(prompt="put the bowl away")
    del openpi_style["instruction"]
    client.infer(openpi_style)  # openpi's `prompt` key stands for the instruction
    assert policy.instructions == ["pick up the cup", "open the drawer", "put the bowl away"]
    client.infer(observation(instruction="put the bowl away", reset=True))  # a new episode, same task
    assert policy.instructions[-2:] == ["put the bowl away"] * 2


def test_errors_are_replied_and_the_server_keeps_serving(server_factory):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    class Exploding(TinyMLPPolicy):
        def act(self, obs):
            if obs["instruction"] == "explode":
                raise RuntimeError("boom")
            if obs["instruction"] == "nan":
                return np.full((2, 7), np.nan, np.float32)
            return super().act(obs)

    server = server_factory(Exploding())
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    cases = [
        (observation(instruction="explode"), "RuntimeError: boom"),
        (observation(instruction="nan"), "NaN or inf"),
        ({"ee_pos": np.zeros(3)}, "lacks `agentview_rgb`"),
        (observation(agentview_rgb=np.zeros((8, 8, 3), np.float32)), "must be uint8"),
        (observation(agentview_rgb=np.zeros((8, 8), np.uint8)), "must have shape [*, *, 3]"),
        (observation(ee_pos=np.array([np.inf, 0, 0])), "finite"),
    ]
    for obs, message in cases:
        with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("*", r"\*")):
            client.infer(obs)
        assert client.infer(observation())["actions"].shape == (4, 7)  # still serving, same connection
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        wire.unpackb(ws.recv())
        ws.send(b"\xc1 definitely not msgpack")
        assert "not a msgpack-numpy message" in ws.recv()
        ws.send(wire.packb(observation()))
        assert wire.unpackb(ws.recv())["actions"].shape == (4, 7)


def test_own_client_health_timeout_and_reconnect(server_factory):
    server = server_factory(TinyMLPPolicy(delay_ms=300))
    client = PolicyClient("127.0.0.1", server.port, timeout_s=0.1, backoff_s=0.05)
    assert client.health()
    with pytest.raises(ServerUnavailable, match="no reply within"):
        client.infer(observation())
    assert not client.connected  # the late reply must not be read as the next one
    with pytest.raises(ServerUnavailable, match="not retrying"):
        client.infer(observation())  # inside the backoff window: fails fast, no blocking connect
    client.timeout_s = 2.0
    client._next_attempt = 0.0
    assert client.infer(observation())["actions"].shape == (4, 7)
    server.stop()
    assert not client.health()
    with pytest.raises(ServerUnavailable):
        client.infer(observation())


def test_client_rejects_garbage_replies(server_factory):
    class Garbage(TinyMLPPolicy):
        def act(self, obs):
            return np.zeros((3, 6), np.float32)

    server = server_factory(Garbage())
    with pytest.raises(ServerError, match=r"expected \[T, 7\]"):
        PolicyClient("127.0.0.1", server.port).infer(observation())


def test_wire_matches_openpi_encoding():
    from openpi_client import msgpack_numpy

    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.int64(3), "s": "text", "n": [1, 2.5]}
    for packed in (wire.packb(value), msgpack_numpy.packb(value)):
        for unpack in (wire.unpackb, msgpack_numpy.unpackb):
            out = unpack(packed)
            np.testing.assert_array_equal(out["a"], value["a"])
            assert out["b"] == 3 and out["s"] == "text" and out["n"] == [1, 2.5]
    with pytest.raises(wire.WireError, match="dtype object"):
        wire.packb(np.array([object()]))
    bad = msgpack_numpy.packb(np.zeros(3))[:-4]
    with pytest.raises(wire.WireError):
        wire.unpackb(bad)
    short = {b"__ndarray__": True, b"data": b"\x00" * 4, b"dtype": "<f8", b"shape": [3]}
    import msgpack
    with pytest.raises(wire.WireError, match="needs 24"):
        wire.unpackb(msgpack.packb(short))


def test_lara_serve_cli_serves_the_loaded_checkpoint(tmp_path):
    """`lara serve --checkpoint DIR` serves a TokenVLA saved with save_pretrained (LARA detached)."""
    import subprocess
    import sys

    from robot_test_support import free_port, wait_for_port
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from lara.vla.token_vla import tiny_token_vla

    tiny_token_vla().save_pretrained(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path),
                             "--port", str(port)])  # 127.0.0.1 by default
    try:
        wait_for_port(port, timeout_s=60)
        client = WebsocketClientPolicy("127.0.0.1", port)
        metadata = client.get_server_metadata()
        assert metadata["checkpoint"] == tmp_path.name  # its name, not the server's path
        assert metadata["image_size"] == tiny_token_vla().config.vision_config.image_size  # evaluators render at it
        obs = observation()
        obs["instruction"] = "put the bowl on the plate"
        actions = client.infer(obs)["actions"]
        assert actions.shape == (1, 7) and np.isfinite(actions).all()
        side = metadata["image_size"]
        with pytest.raises(RuntimeError, match=f"`agentview_rgb` is 1x1 px, smaller than the policy's {side}x{side} input"):
            client.infer({**obs, "agentview_rgb": np.zeros((1, 1, 3), np.uint8)})
    finally:
        proc.kill()
        proc.wait(5)


def test_lara_serve_cli_serves_a_pi05_checkpoint(tmp_path):
    """`lara serve --checkpoint DIR` serves a pi0.5 export (weights + dataset_statistics.json beside them): chunks of
    its chunk_size, the robot state read into its prompt."""
    import subprocess
    import sys

    from robot_test_support import free_port, wait_for_port
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    tiny_pi05_checkpoint(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path),
                             "--port", str(port)])
    try:
        wait_for_port(port, timeout_s=60)
        client = WebsocketClientPolicy("127.0.0.1", port)
        assert client.get_server_metadata()["image_size"] == 32
        actions = client.infer(observation())["actions"]
        assert actions.shape == (4, 7) and np.isfinite(actions).all()
    finally:
        proc.kill()
        proc.wait(5)


def test_remote_policy_acts_as_the_served_policy_and_resets_every_episode(server_factory):
    """`--policy ws://HOST:PORT` in the evaluators: the same chunks as the local policy, a reset at each episode's
    first observation even when the instruction repeats, and any arm's joint count (the WidowX has 6)."""
    from lara.policy import load_policy

    served = TinyMLPPolicy(horizon=3)
    server = server_factory(served)
    remote = load_policy(f"ws://127.0.0.1:{server.port}")
    local = TinyMLPPolicy(horizon=3)
    for episode in range(2):
        remote.reset("put carrot on plate")
        for step in range(2):
            obs = observation(64, joint_qpos=np.linspace(0, 1, 6), ee_pos=np.array([0.1 * step, 0.0, 0.2]))
            np.testing.assert_allclose(remote.act(obs), local.act(obs), rtol=1e-6)
    assert served.instructions == ["put carrot on plate"] * 2


def test_remote_policy_without_a_server_is_one_line_before_any_worker(tmp_path):
    import subprocess
    import sys

    from robot_test_support import free_port

    out = tmp_path / "eval"
    run = subprocess.run([sys.executable, "-m", "lara.cli", "eval", "libero", "--policy", f"ws://127.0.0.1:{free_port()}",
                          "--suite", "object", "--tasks", "0", "--trials", "1", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "no policy server answers" in run.stderr and "lara serve" in run.stderr and not out.exists()
    bad = subprocess.run([sys.executable, "-m", "lara.cli", "eval", "simpler", "--policy", "ws://nowhere",
                          "--tasks", "carrot", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "ws://HOST:PORT" in bad.stderr and not out.exists()


def test_openpi_libero_client_observation_keys_are_served(server_factory):
    """The element openpi's examples/libero/main.py builds (rotated, resize_with_pad to 224, 8-D state, prompt),
    sent by the real openpi client, reaches the policy in our keys."""
    from openpi_client import image_tools
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    observed = []  # what the connection's policy (a copy of `policy`, see lara.policy.session_policy) was given

    class Recording(TinyMLPPolicy):
        def act(self, obs):
            observed.append(obs)
            return super().act(obs)

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # LIBERO's 256 px render
    img = image_tools.convert_to_uint8(image_tools.resize_with_pad(np.ascontiguousarray(raw[::-1, ::-1]), 224, 224))
    wrist = image_tools.convert_to_uint8(image_tools.resize_with_pad(raw, 224, 224))
    state = np.array([0.4, 0.1, 0.3, 3.1, 0.0, 0.2, 0.04, -0.04])  # eef pos, axis-angle, gripper qpos
    element = {"observation/image": img, "observation/wrist_image": wrist, "observation/state": state,
               "prompt": "put the bowl on the plate"}
    policy = Recording()
    client = WebsocketClientPolicy("127.0.0.1", server_factory(policy).port)
    reply = client.infer(element)
    assert reply["actions"].shape == (4, 7)
    seen = observed[-1]
    np.testing.assert_array_equal(seen["agentview_rgb"], img)
    np.testing.assert_array_equal(seen["eye_in_hand_rgb"], wrist)
    np.testing.assert_array_equal(np.concatenate([seen["ee_pos"], seen["ee_ori"], seen["gripper_qpos"]]), state)
    assert policy.instructions == ["put the bowl on the plate"] and not any(k.startswith("observation/") for k in seen)
    np.testing.assert_allclose(reply["actions"], TinyMLPPolicy().act(observation(agentview_rgb=img, ee_pos=state[:3])),
                               rtol=1e-6)
    for bad, message in [({**element, "observation/state": state[:7]}, "must be a numpy array of shape [8]"),
                         ({**element, "agentview_rgb": img}, "both `observation/image` (openpi) and `agentview_rgb`"),
                         ({"prompt": "x"}, "lacks `agentview_rgb` (openpi: `observation/image`)")]:
        with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            client.infer(bad)


def test_serve_picks_the_vla_of_a_run_folder_or_names_the_folder_to_pass(tmp_path, capsys):
    from lara.vla.backbones import find_vla_dir
    from lara.cli import main as lara_main
    from lara.vla.token_vla import tiny_token_vla

    run = tmp_path / "run"
    step = run / "checkpoints" / "step_000002"
    tiny_token_vla().save_pretrained(step / "vla")
    assert find_vla_dir(step) == step / "vla" and find_vla_dir(step / "vla") == step / "vla"
    for unfinished in (run, run / "final"):
        with pytest.raises(FileNotFoundError, match="has no final export") if unfinished == run else \
                pytest.raises(FileNotFoundError, match="no such folder"):
            find_vla_dir(unfinished)
    with pytest.raises(FileNotFoundError, match=f"pass a checkpoint's VLA instead, e.g. the newest: {step / 'vla'}"):
        find_vla_dir(run)
    tiny_token_vla().save_pretrained(run / "final" / "vla")
    assert find_vla_dir(run) == find_vla_dir(run / "final") == run / "final" / "vla"

    lora = run / "checkpoints" / "step_000004" / "vla"
    lora.mkdir(parents=True)
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"holds a LoRA adapter.*pass {run / 'final' / 'vla'}"):
        find_vla_dir(lora.parent)
    from lara.vla import TokenVLAPolicy, load_policy

    assert isinstance(load_policy(run), TokenVLAPolicy)  # what `lara serve --checkpoint RUN` serves
    capsys.readouterr()
    assert lara_main(["serve", "--checkpoint", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "holds no config.json" in error and "RUN/final/vla" in error


def test_openpi_episode_control_frames_are_acknowledged(server_factory):
    """openpi's LIBERO client (examples/libero/main.py) calls episode_start / episode_end around each episode:
    frames {"__ctrl__": ...} that its client expects a packed reply to (a text frame raises there)."""
    from openpi_client import msgpack_numpy

    policy = TinyMLPPolicy()
    server = server_factory(policy)
    packer = msgpack_numpy.Packer()
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        msgpack_numpy.unpackb(ws.recv())  # metadata

        def call(message):
            ws.send(packer.pack(message))
            reply = ws.recv()
            assert not isinstance(reply, str), reply
            return msgpack_numpy.unpackb(reply)

        start = {"__ctrl__": "episode_start", "__experiment__": "libero_object", "__task__": "pick up the cup",
                 "__episode_id__": 0}
        assert call(start) == {"__ack__": "episode_start"}
        assert call(observation())["actions"].shape == (4, 7)
        assert call({"__ctrl__": "episode_end", "__success__": False}) == {"__ack__": "episode_end"}
        assert call({**start, "__episode_id__": 1}) == {"__ack__": "episode_start"}
        call(observation())  # same instruction, new episode: the policy is reset again
        assert policy.instructions == ["pick up the cup", "pick up the cup"]
        assert call({"__ctrl__": "something_else"}) == {"__ack__": "ignored"}


def test_a_token_is_checked_on_connect(server_factory, monkeypatch):
    """With a token, openpi's client connects with api_key=TOKEN and is refused (401, no frame read) without it."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy
    from websockets.exceptions import InvalidStatus

    server = server_factory(TinyMLPPolicy(), token="s3cret")
    for key in (None, "wrong"):
        with pytest.raises(InvalidStatus, match="401"):
            WebsocketClientPolicy("127.0.0.1", server.port, api_key=key)
    assert WebsocketClientPolicy("127.0.0.1", server.port, api_key="s3cret").infer(observation())["actions"].shape == (4, 7)
    with pytest.raises(ServerUnavailable, match="401"):
        PolicyClient("127.0.0.1", server.port).connect()
    monkeypatch.setenv("LARA_SERVE_TOKEN", "s3cret")  # our client (and the ROS node, the evaluators) read it
    assert PolicyClient("127.0.0.1", server.port).infer(observation())["actions"].shape == (4, 7)


def test_a_frame_past_the_limit_is_refused_by_its_header_unread(server_factory):
    """A frame that announces 200 MB is refused (close 1009) as soon as its header arrives: the server does not
    wait for, nor read, the payload; the next connection is served."""
    import struct

    from websockets.exceptions import ConnectionClosedError

    from lara.real_robot.server import max_frame_bytes

    server = server_factory(TinyMLPPolicy(), metadata={"image_size": 64})
    assert max_frame_bytes(64) == max_frame_bytes(224) == 2 * 896 * 896 * 3 + (1 << 20)  # at least openpi's 224 px
    assert max_frame_bytes(512) == 2 * 2048 * 2048 * 3 + (1 << 20)
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        wire.unpackb(ws.recv())
        header = bytes([0x82, 0xFF]) + struct.pack(">Q", 200 * 10**6) + b"\x00\x00\x00\x00"  # binary, masked
        ws.socket.sendall(header + b"\x00" * 1024)  # 1 KB of the announced 200 MB
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1009  # message too big
    client = PolicyClient("127.0.0.1", server.port)
    assert client.infer(observation())["actions"].shape == (4, 7)  # 224 px frames pass


def test_lara_serve_refuses_bad_addresses_and_damaged_checkpoints_in_one_line(tmp_path, capsys, caplog):
    import socket

    from robot_test_support import free_port

    from lara import cli
    from lara.vla.token_vla import tiny_token_vla

    good, truncated, malformed = tmp_path / "good", tmp_path / "truncated", tmp_path / "malformed"
    for folder in (good, truncated, malformed):
        tiny_token_vla().save_pretrained(folder)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (malformed / "config.json").write_text('{"model_type": "token_vla", ')

    capsys.readouterr()  # the exports' progress bars
    assert cli.main(["serve", "--checkpoint", str(good), "--port", "99999"]) == 2  # one line, no usage block (issue 38)
    assert capsys.readouterr().err == "lara serve: error: argument --port: expected a TCP port 1..65535, got '99999'\n"
    with socket.socket() as taken:  # refused before the model loads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--checkpoint", str(good), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error == f"lara serve: error: --port {port}: 127.0.0.1:{port} is in use by another process; give another " \
                    "--port or stop the one listening there\n"
    for folder, message in ((truncated, "the VLA cannot be loaded (Error while deserializing header"),
                            (malformed, "config.json is not a JSON object")):
        assert cli.main(["serve", "--checkpoint", str(folder), "--port", str(free_port()), "--host", "0.0.0.0"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("lara serve: error: ") and error.count("\n") == 1 and message in error, error
    assert "anyone who can reach this machine can drive the policy; set --token" in caplog.text


def served_token_vla(server_factory):
    """A real TokenVLA (random weights, instruction-dependent answers) served as `lara serve` serves it, and a local
    copy of the same weights to compare with."""
    import torch

    from lara.vla.token_vla import tiny_token_vla
    from lara.vla.token_vla.policy import TokenVLAPolicy

    torch.manual_seed(0)
    model = tiny_token_vla()
    server = server_factory(TokenVLAPolicy(model), metadata={"image_size": model.config.image_size})

    def local(instruction, obs):
        policy = TokenVLAPolicy(model)
        policy.reset(instruction)
        return policy.act(obs)

    return server, local


def test_clients_served_at_once_each_get_their_own_policys_answer(server_factory):
    """Client A asks twice with one instruction, client B asks with another in between: A's second answer is A's
    first (the policy given A's instruction), not B's. Before, one policy was shared and reset only when a
    connection's own instruction changed, so A's second reply was B's."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    server, local = served_token_vla(server_factory)
    obs = observation(64)
    pick, drawer = "pick up the cup", "open the drawer"
    expected = {pick: local(pick, obs), drawer: local(drawer, obs)}
    assert not np.allclose(expected[pick], expected[drawer])  # the instruction matters to this policy
    a, b = PolicyClient("127.0.0.1", server.port), WebsocketClientPolicy("127.0.0.1", server.port)  # ours, openpi's
    first = a.infer({**obs, "instruction": pick})["actions"]
    between = b.infer({**obs, "instruction": drawer})["actions"]
    second = a.infer({**obs, "instruction": pick})["actions"]
    again = b.infer({**obs, "instruction": drawer})["actions"]
    np.testing.assert_array_equal(first, expected[pick])
    np.testing.assert_array_equal(second, expected[pick])
    np.testing.assert_array_equal(between, expected[drawer])
    np.testing.assert_array_equal(again, expected[drawer])


def test_remote_policies_of_parallel_eval_workers_do_not_mix(server_factory):
    """`lara eval --policy ws://` with several workers: each worker's RemotePolicy is one connection; episodes of
    different tasks interleaved step by step each get the answers of their own instruction."""
    from lara.policy import load_policy

    server, local = served_token_vla(server_factory)
    tasks = ["pick up the cup", "open the drawer"]
    workers = [load_policy(f"ws://127.0.0.1:{server.port}") for _ in tasks]
    for worker, task in zip(workers, tasks):
        worker.reset(task)
    for step in range(3):
        obs = observation(64, ee_pos=np.array([0.1 * step, 0.0, 0.2]))
        for worker, task in zip(workers, tasks):
            np.testing.assert_array_equal(worker.act(obs), local(task, obs))


def test_images_smaller_than_the_policy_input_are_refused_naming_both_sizes(server_factory):
    """With an announced image_size (what `lara serve` announces: the checkpoint's input side), a camera image the
    policy reads that is smaller on either side is refused; the connection keeps serving."""
    server = server_factory(TinyMLPPolicy(), metadata={"image_size": 32})
    client = PolicyClient("127.0.0.1", server.port)
    for shape in ((1, 1, 3), (31, 64, 3), (64, 16, 3)):
        with pytest.raises(ServerError, match=rf"`agentview_rgb` is {shape[0]}x{shape[1]} px, smaller than the "
                                              r"policy's 32x32 input; send images of at least 32 px a side"):
            client.infer(observation(agentview_rgb=np.zeros(shape, np.uint8)))
    with pytest.raises(ServerError, match="`eye_in_hand_rgb` is 8x8 px"):  # this policy names no cameras: all checked
        client.infer(observation(32, eye_in_hand_rgb=np.zeros((8, 8, 3), np.uint8)))
    for size in (32, 64):
        assert client.infer(observation(size))["actions"].shape == (4, 7)

    class AgentviewOnly(TinyMLPPolicy):
        cameras = ("agentview_rgb",)  # as TokenVLAPolicy / FlowPolicy name theirs

    only = server_factory(AgentviewOnly(), metadata={"image_size": 32})
    reply = PolicyClient("127.0.0.1", only.port).infer(observation(32, eye_in_hand_rgb=np.zeros((8, 8, 3), np.uint8)))
    assert reply["actions"].shape == (4, 7)  # a camera the policy does not read is not its input


def test_a_flow_policys_clients_each_draw_their_own_noise(server_factory, tmp_path):
    """A flow-matching policy's episode state includes its noise generator: each connection gets its own
    (FlowPolicy.fork), so two clients asking alike get alike samples, and one client's requests never shift
    another's noise."""
    from lara.vla.backbones import load_policy

    tiny_pi05_checkpoint(tmp_path)
    server = server_factory(load_policy(tmp_path), metadata={"image_size": 32})
    a, b = PolicyClient("127.0.0.1", server.port, timeout_s=60), PolicyClient("127.0.0.1", server.port, timeout_s=60)
    obs = observation(32)
    a_first, b_first = a.infer(obs)["actions"], b.infer(obs)["actions"]
    b_second, a_second = b.infer(obs)["actions"], a.infer(obs)["actions"]
    np.testing.assert_array_equal(a_first, b_first)
    np.testing.assert_array_equal(a_second, b_second)
    assert not np.allclose(a_first, a_second)  # a stream of samples, not one repeated
