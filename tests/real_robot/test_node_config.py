"""The ROS node's config and command line: every number is checked at start (finite, in range) and a bad one ends
on one line naming the field and what was expected, exit 2, before the node touches ROS; the safety layer holds on
a non-finite target whatever its config said, and the node never publishes one."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from robot_test_support import REPO, Rig, node_config

from lara.errors import InputError
from lara.real_robot.config import load_config
from lara.real_robot.safety import Pose, SafetyConfig, SafetyLayer

NAN, INF = float("nan"), float("inf")
PROG = "python -m lara.real_robot.ros_node"
FINITE = "Input should be a finite number"

# every number of the safety config, with its out-of-range values and what the error says was expected
SAFETY_RANGES = {
    "max_translation_m": ([0.0, -0.01, 0.5], ["greater than 0", "greater than 0", "less than or equal to 0.34"]),
    "max_rotation_rad": ([0.0, -1.0, 0.6], ["greater than 0", "greater than 0", "less than or equal to 0.5"]),
    "max_observation_age_s": ([0.0, -0.3, 1e6], ["greater than 0", "greater than 0", "less than or equal to 2"]),
    "translation_scale_m": ([0.0, -0.05, 50.0], ["greater than 0", "greater than 0", "less than or equal to 1"]),
    "rotation_scale_rad": ([0.0, -0.5, 10.0], ["greater than 0", "greater than 0", "less than or equal to 3.14"]),
    "gripper_threshold": ([-1.0, 1.0, 5.0], ["greater than -1", "less than 1", "less than 1"]),
}
CORNERS = ("workspace_min", "workspace_max")


def write_config(tmp_path, name="node.yaml", **overrides):
    """The tests' node config (robot_test_support.node_config) with `overrides` merged into its sections."""
    path = node_config(tmp_path / name, "cfg", 8000)
    data = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    path.write_text(yaml.safe_dump(data))  # NaN and inf as YAML's .nan and .inf
    return path


def refused(tmp_path, **overrides) -> str:
    """The one-line error reading a config with `overrides` gives."""
    path = write_config(tmp_path, **overrides)
    with pytest.raises(InputError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"node config {path}: ") and "\n" not in message, message
    return message


def bad_safety_numbers():
    for field, (values, expected) in SAFETY_RANGES.items():
        for value in (NAN, INF, -INF):
            yield field, value, f"safety.{field} = {value!r}: {FINITE}"
        for value, words in zip(values, expected):
            yield field, value, f"safety.{field} = {value!r}: Input should be {words}"
    for corner in CORNERS:
        for axis in range(3):
            for value in (NAN, INF):
                point = list(SafetyConfig().model_dump()[corner])
                point[axis] = value
                yield corner, point, f"safety.{corner}.{axis} = {value!r}: {FINITE}"
        yield corner, [0.5, 50.0, 0.4], f"{corner} (0.5, 50.0, 0.4) must lie within +-1.2 m of the robot base"
    yield "workspace_min", [0.9, -0.5, 0.02], "workspace_min (0.9, -0.5, 0.02) must be below workspace_max"


@pytest.mark.parametrize("field, value, expected", list(bad_safety_numbers()))
def test_every_safety_number_is_refused_when_not_finite_or_out_of_range(tmp_path, field, value, expected):
    assert expected in refused(tmp_path, safety={field: value})


def test_steps_are_bounded_by_the_arms_speed_at_the_configured_rate(tmp_path):
    """0.2 m per step is allowed at 5 Hz (1 m/s) but is 3 m/s at 15 Hz, above the Franka's 1.7 m/s."""
    assert load_config(write_config(tmp_path, rate_hz=5.0, safety={"max_translation_m": 0.2}))
    message = refused(tmp_path, rate_hz=15.0, safety={"max_translation_m": 0.2})
    assert "safety.max_translation_m 0.2 m per step at rate_hz 15.0 asks for 3.00 m/s, above the Franka's 1.7 m/s: " \
           "set it to at most 0.113 m" in message
    message = refused(tmp_path, rate_hz=15.0, safety={"max_rotation_rad": 0.4})
    assert "asks for 6.00 rad/s, above the Franka's 2.5 rad/s: set it to at most 0.167 rad" in message


OTHER_FIELDS = [  # (overrides, what the one line must say)
    ({"server": {"port": 0}}, "server.port = 0: Input should be greater than or equal to 1"),
    ({"server": {"port": 70000}}, "server.port = 70000: Input should be less than or equal to 65535"),
    ({"server": {"port": "8000"}}, "server.port = '8000': Input should be a valid integer"),
    ({"server": {"host": ""}}, "server.host = '': expected a host name or address without ws:// or a port"),
    ({"server": {"host": "ws://gpu-box:8000"}}, "server.host = 'ws://gpu-box:8000': expected a host name"),
    *[({"server": {key: value}}, f"server.{key} = {value!r}: {words}")
      for key in ("timeout_s", "connect_timeout_s", "backoff_s", "max_backoff_s")
      for value, words in ((NAN, FINITE), (INF, FINITE), (0.0, "Input should be greater than 0"),
                           (-1.0, "Input should be greater than 0"), (600.0, "Input should be less than or equal to 60"))],
    ({"server": {"backoff_s": 5.0}}, "server: backoff_s (5.0) must be at most max_backoff_s (0.3)"),
    ({"image_size": [0, 96]}, "image_size.0 = 0: Input should be greater than or equal to 1"),
    ({"image_size": [96, -96]}, "image_size.1 = -96: Input should be greater than or equal to 1"),
    ({"image_size": [96.5, 96]}, "image_size.0 = 96.5: Input should be a valid integer"),
    ({"image_size": [True, 96]}, "image_size.0 = True: Input should be a valid integer"),
    ({"image_size": [96]}, "image_size.1: Field required"),
    ({"image_size": [100000, 96]}, "image_size.0 = 100000: Input should be less than or equal to 8192"),
    ({"rate_hz": NAN}, f"rate_hz = nan: {FINITE}"),
    ({"rate_hz": 100.0}, "rate_hz = 100.0: Input should be less than or equal to 15"),
    ({"execute_steps": 0}, "execute_steps = 0: Input should be greater than or equal to 1"),
    ({"execute_steps": 10, "prefetch_margin_s": NAN}, f"prefetch_margin_s = nan: {FINITE}"),
    ({"execute_steps": 10, "prefetch_steps": 9, "ensemble_decay": INF}, f"ensemble_decay = inf: {FINITE}"),
    ({"episodes_dir": ""}, "episodes_dir = '': String should have at least 1 character"),
    ({"frame_id": ""}, "frame_id = '': expected a ROS name"),
    ({"topics": {"agentview_image": "camera image"}}, "topics.agentview_image = 'camera image': expected a ROS name"),
    ({"topics": {"namespace": ""}}, "topics.namespace = '': expected a ROS name"),
    ({"gripper": {"open_width_m": NAN}}, f"gripper.open_width_m = nan: {FINITE}"),
    ({"gripper": {"open_width_m": 0.5}}, "gripper.open_width_m = 0.5: Input should be less than or equal to 0.08"),
    ({"gripper": {"force_n": INF}}, f"gripper.force_n = inf: {FINITE}"),
    ({"gripper": {"speed_m_s": 0.0}}, "gripper.speed_m_s = 0.0: Input should be greater than 0"),
    ({"realtime": {"priority": 120}}, "realtime.priority = 120: Input should be less than or equal to 99"),
    ({"realtime": {"spin_ms": NAN}}, f"realtime.spin_ms = nan: {FINITE}"),
    ({"topics": {"agentview_imgae": "/cam"}}, "topics.agentview_imgae: Extra inputs are not permitted (did you mean "
                                              "'agentview_image'?)"),
    ({"safty": {"max_translation_m": 0.05}}, "safty: Extra inputs are not permitted (did you mean 'safety'?)"),
]


@pytest.mark.parametrize("overrides, expected", OTHER_FIELDS, ids=[str(o) for o, _ in OTHER_FIELDS])
def test_every_other_field_is_checked_at_start(tmp_path, overrides, expected):
    assert expected in refused(tmp_path, **overrides)


def test_a_config_that_is_not_a_mapping_of_fields_is_one_line(tmp_path):
    path = tmp_path / "node.yaml"
    for text, expected in (("rate_hz: [1, 2", "is not valid YAML at line"), ("- 1\n- 2\n", "holds a list, expected a mapping"),
                           (b"\xff\xfe rate", "is not valid YAML")):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(InputError, match=expected) as error:
            load_config(path)
        assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="is not a file; start from a copy of"):
        load_config(tmp_path / "missing.yaml")


def run_node(*args, timeout=60):
    """The node's real command line: each bad input must end it before it waits for a ROS master (there is none)."""
    return subprocess.run([sys.executable, "-m", "lara.real_robot.ros_node", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_node_command_line_refuses_bad_flags_and_configs_in_one_line(tmp_path):
    """A mistyped flag used to be ignored (the packaged config ran, its server address and all), `--port 0` was
    dropped, a bad config ended in a traceback; now each exits 2 at once, on one error line."""
    config = write_config(tmp_path)
    typo = run_node("--cofnig", str(config))
    assert typo.returncode == 2 and typo.stderr.splitlines()[-1] == \
        f"{PROG}: error: unrecognized arguments: --cofnig {config}", typo.stderr
    for port in ("0", "70000", "http"):
        bad = run_node("--config", str(config), "--port", port)
        assert bad.returncode == 2 and bad.stderr.splitlines()[-1] == \
            f"{PROG}: error: argument --port: expected a TCP port 1..65535, got '{port}'", bad.stderr
    episodes_file = tmp_path / "episodes_file"
    episodes_file.write_text("")
    cases = [
        (["--config", str(write_config(tmp_path, "inf.yaml", safety={"max_translation_m": INF}))],
         f"safety.max_translation_m = inf: {FINITE}"),
        (["--config", str(config), "--host", ""], "server.host = '': expected a host name"),
        (["--config", str(tmp_path / "nowhere.yaml")], "nowhere.yaml is not a file"),
        (["--config", str(write_config(tmp_path, "file.yaml", episodes_dir=str(episodes_file)))],
         f"episodes_dir '{episodes_file}' is a file, expected a folder for the episodes"),
        (["--config", str(write_config(tmp_path, "under_file.yaml", episodes_dir=str(episodes_file / "sub")))],
         f"episodes_dir '{episodes_file / 'sub'}': cannot write episodes there (Not a directory)"),
    ]
    for args, expected in cases:
        run = run_node(*args, "__name:=remapped")  # rospy's remappings are still set aside
        assert run.returncode == 2 and run.stderr.startswith(f"{PROG}: error: "), run.stderr
        assert len(run.stderr.splitlines()) == 1 and expected in run.stderr, run.stderr


def test_sim_command_line_refuses_typos_and_bad_numbers(tmp_path):
    """The simulated Franka's flags had the same silent parse_known_args: a typo now errs."""
    sim = "python -m lara.real_robot.sim_franka"
    for args, expected in ((["--backnd", "kinematic"], "unrecognized arguments: --backnd kinematic"),
                           (["--camera-hz", "nan"], "argument --camera-hz: expected a finite float above 0, got 'nan'"),
                           (["--image-size", "0"], "argument --image-size: expected a finite int above 0, got '0'")):
        run = subprocess.run([sys.executable, "-m", "lara.real_robot.sim_franka", *args], capture_output=True,
                             text=True, cwd=REPO, timeout=60)
        assert run.returncode == 2 and run.stderr.splitlines()[-1] == f"{sim}: error: {expected}", run.stderr


def test_episodes_folder_is_created_at_start(tmp_path):
    from lara.real_robot.recorder import EpisodeRecorder

    folder = tmp_path / "new" / "episodes"
    EpisodeRecorder(folder).prepare()
    assert folder.is_dir() and not any(folder.iterdir())  # the write check leaves nothing behind


# ---- the safety layer holds on a non-finite target, whatever its config said --------------------------------------


def home():
    return Pose(np.array([0.5, 0.0, 0.4]), np.array([0.0, 0.0, 0.0, 1.0]))


def bypassed(**fields) -> SafetyConfig:
    """A config built without validation (`model_construct`): what no config file can give any more."""
    return SafetyConfig.model_construct(**{**SafetyConfig().model_dump(), **fields})


BYPASSES = [{field: NAN} for field in SAFETY_RANGES] + [
    {"translation_scale_m": INF}, {"rotation_scale_rad": INF},
    {"workspace_min": (NAN, -0.5, 0.02)}, {"workspace_max": (0.8, NAN, 0.8)}]


@pytest.mark.parametrize("fields", BYPASSES, ids=[str(f) for f in BYPASSES])
def test_a_non_finite_config_number_holds_the_pose_never_a_non_finite_target(fields):
    with pytest.raises(ValidationError, match="finite number"):  # handed to the layer: validated again
        SafetyLayer(bypassed(**fields))
    layer = SafetyLayer()
    layer.config = bypassed(**fields)  # swapped in behind the layer's back
    for action in (np.zeros(7), np.full(7, 0.5), np.array([5.0, -5.0, 1.0, 0.3, 0.0, -0.3, -1.0])):
        command = layer.command(action, home(), 0.01)
        assert command.hold and command.gripper is None and command.executed_action is None, command.reason
        np.testing.assert_array_equal(command.pose.position, home().position)  # the measured pose, held
        assert np.all(np.isfinite(command.pose.quat))


def test_config_fields_are_checked_on_assignment():
    config = SafetyConfig()
    for field, value in (("max_translation_m", INF), ("max_observation_age_s", 1e6), ("gripper_threshold", NAN)):
        with pytest.raises(ValidationError):
            setattr(config, field, value)
    assert config == SafetyConfig()


@pytest.mark.slow
@pytest.mark.serial  # a real roscore and a control loop at 10 Hz
def test_the_node_never_publishes_a_non_finite_target(roscore, server_factory, tmp_path):
    """A PolicyNode on a real roscore, served by a real policy server, its safety config swapped for one with an
    infinite translation scale: every period holds the measured pose with the reason, no NaN reaches the
    equilibrium_pose topic; and a non-finite pose handed to the publisher is dropped and latches the e-stop."""
    from tiny_policy import TinyMLPPolicy

    from lara.real_robot.ros_node import PolicyNode
    from lara.real_robot.safety import Command

    prefix = "nonfinite"
    server = server_factory(TinyMLPPolicy())
    node = PolicyNode(load_config(node_config(tmp_path / "node.yaml", prefix, server.port)))
    node.safety.config = bypassed(translation_scale_m=INF)
    rig = Rig(roscore, None, prefix)
    image = np.zeros((96, 96, 3), np.uint8)
    try:
        time.sleep(1.0)  # the rig's subscriptions connect
        node.instruction = "push the block"
        assert node._start(None).success
        for _ in range(20):
            now = roscore.get_time()
            with node.sensors.lock:
                node.sensors.images["agentview_rgb"] = (image, now)
                node.sensors.pose, node.sensors.pose_stamp = home(), now
            command = node.step()
            assert command.hold
            time.sleep(0.1)
        time.sleep(0.3)
        reasons = [s["reason"] for s in rig.statuses() if s["state"] == "running"]
        assert any("non-finite target" in r for r in reasons), reasons
        poses = rig.poses_between(0)
        assert len(poses) >= 10 and all(np.array_equal(p, home().position) for p in poses)
        node._publish(Command(Pose(np.array([NAN, 0.0, 0.4]), home().quat), 1.0, False, "ok"))
        time.sleep(0.3)
        assert len(rig.poses_between(0)) == len(poses)  # dropped, not published
        assert node.safety.estopped and "non-finite target pose" in node.safety.estop_reason
    finally:
        rig.close()
        node._executor.shutdown(wait=False, cancel_futures=True)
        node.client.close()
