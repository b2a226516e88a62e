"""The ROS node closing the loop on a real roscore: simulated Franka + node + policy server processes."""

from __future__ import annotations

import json
import os
import threading
import time

import h5py
import numpy as np
import pytest
from robot_test_support import Rig, free_port, node_config, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing-sensitive: alone after the parallel part
PERIOD = 0.1  # config.yaml: 10 Hz


def start_server(processes, port, *args):
    processes.start("server", "tests/real_robot/tiny_policy.py", str(port), *args)
    wait_for_port(port)


def test_closed_loop_clamps_server_loss_estop_and_recording(roscore, processes, tmp_path):
    port = free_port()
    config = node_config(tmp_path / "node.yaml", "loop", port, realtime={"enabled": True})
    start_server(processes, port, "--scale", "5")  # tanh * 5: requests far beyond the step clamps
    processes.start("sim", "-m", "lara.real_robot.sim_franka", "--config", str(config), "--backend", "kinematic")
    processes.start("node", "-m", "lara.real_robot.ros_node", "--config", str(config))
    rig = Rig(roscore, config, "loop")
    try:
        rig.wait_status(lambda s: s["state"] == "idle", timeout_s=30)
        assert not rig.call("start").success  # no instruction yet: refused with a reason
        rig.instruction.publish("push the block to the left")
        time.sleep(0.3)
        assert rig.call("start").success

        # the loop closes: commands at 10 Hz, the simulated arm follows them
        t0, _ = rig.wait_status(lambda s: s["state"] == "running" and not s["hold"], timeout_s=10)
        time.sleep(3.0)
        running = [s for s in rig.statuses(since=t0) if s["state"] == "running"]
        moving = [s for s in running if not s["hold"]]
        assert len(moving) >= 20, [s["reason"] for s in running][:10]
        periods = np.diff([s["tick_time"] for s in running])
        assert abs(np.median(periods) - PERIOD) < 0.005 and np.percentile(np.abs(periods - PERIOD), 99) < 0.04
        if os.sched_getscheduler(processes.procs["node"].pid) == os.SCHED_FIFO:  # realtime granted (root here)
            # A VM's vCPU can still be taken away now and then (measured under load: p99 0.31 ms, max 8.7 ms;
            # a test run with four other busy processes saw one 9.5 ms tick), so: almost every tick on time,
            # and none late by a fifth of a period.
            jitter = np.abs(periods - PERIOD)
            assert np.percentile(jitter, 90) < 0.002 and jitter.max() < 0.02, periods

        poses = np.array(rig.poses_between(t0))
        cfg_lo, cfg_hi = np.array([0.2, -0.5, 0.02]), np.array([0.8, 0.5, 0.8])
        assert np.all(poses >= cfg_lo - 1e-9) and np.all(poses <= cfg_hi + 1e-9)
        assert np.linalg.norm(poses[-1] - poses[0]) > 0.05  # it really moved
        assert set(rig.grippers) <= {-1.0, 1.0}

        # kill the server: hold within one control period, resume when it is back
        processes.kill("server")
        killed = time.monotonic()
        t_hold, status = rig.wait_status(lambda s: s["hold"], since=killed, timeout_s=2)
        assert t_hold - killed <= PERIOD + 0.05, status
        assert "server" in status["reason"]
        time.sleep(1.0)
        held = rig.poses_between(t_hold + 0.05, time.monotonic())
        assert len(held) >= 5 and all(np.allclose(p, held[0]) for p in held)  # one fixed target
        start_server(processes, port, "--scale", "5")
        rig.wait_status(lambda s: not s["hold"], since=time.monotonic(), timeout_s=10)

        # e-stop latches: no motion, start refused, until reset_estop
        rig.estop.publish(True)
        t_stop, _ = rig.wait_status(lambda s: s["estop"], since=time.monotonic(), timeout_s=2)
        time.sleep(1.0)
        latched = rig.statuses(since=t_stop)
        assert all(s["hold"] and s["estop"] == "operator e-stop" for s in latched)
        assert rig.call("reset_estop").success
        rig.wait_status(lambda s: not s["hold"], since=time.monotonic(), timeout_s=5)

        # stop saves the episode in the LIBERO layout with the operator's success flag
        rig.success.publish(True)
        time.sleep(0.3)
        steps = rig.statuses()[-1]["recorded_steps"]
        reply = rig.call("stop")
        assert reply.success and reply.message.endswith(".hdf5"), reply.message
        with h5py.File(reply.message) as f:
            demo = f["data/demo_0"]
            assert json.loads(f["data"].attrs["problem_info"])["language_instruction"] == "push the block to the left"
            assert bool(demo.attrs["success"]) and demo.attrs["num_samples"] >= steps > 20
            T = demo.attrs["num_samples"]
            assert demo["obs/agentview_rgb"].shape == (T, 96, 96, 3) and demo["actions"].shape == (T, 7)
            assert demo["obs/ee_states"].shape == (T, 6) and demo["obs/joint_states"].shape == (T, 7)
            actions = demo["actions"][:]
            assert np.all(np.linalg.norm(actions[:, :3] * 0.05, axis=1) <= 0.075 + 1e-9)
            assert np.all(np.linalg.norm(actions[:, 3:6] * 0.5, axis=1) <= 0.15 + 1e-9)
            assert np.abs(actions).max() > 1.0  # the clamp, not the policy, bounded them
    finally:
        rig.close()


def publish_fake_robot(rospy, prefix, stop, image_fn, pose=(0.5, 0.0, 0.3)):
    """Publish pose + joints at 50 Hz and camera frames from `image_fn()` (None = no frame)."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState

    pose_pub = rospy.Publisher(f"/{prefix}/franka_state_controller/ee_pose", PoseStamped, queue_size=1)
    joint_pub = rospy.Publisher(f"/{prefix}/joint_states", JointState, queue_size=1)
    image_pub = rospy.Publisher(f"/{prefix}/camera/agentview/image_raw", __import__("sensor_msgs.msg").msg.Image,
                                queue_size=1)
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    while not stop.is_set():
        msg = PoseStamped()
        msg.header.stamp = rospy.Time.now()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = pose
        msg.pose.orientation.x = 1.0
        pose_pub.publish(msg)
        joint_pub.publish(JointState(name=names, position=[0.0] * 9))
        image = image_fn()
        if image is not None:
            image.header.stamp = rospy.Time.now()
            image_pub.publish(image)
        time.sleep(0.02)


@pytest.mark.parametrize("fault, reason", [
    ("stale_camera", "stale observation"),
    ("mono8", "encoding 'mono8' is not supported"),
    ("wrong_size", "configured for 96x96"),
    ("bad_server_reply", "bad server reply"),
    ("late_server", "server"),  # replies after 600 ms, timeout 300 ms: "waiting for the server", "server lost"
    ("slow_reply", "too late"),  # replies after 400 ms, within the 1 s timeout, but its image is > 0.3 s old
])
def test_faults_give_clear_reasons_and_no_motion(roscore, processes, tmp_path, fault, reason):
    from sensor_msgs.msg import Image

    prefix = f"fault_{fault}"
    port = free_port()
    config = node_config(tmp_path / "node.yaml", prefix, port,
                         server={"timeout_s": 1.0} if fault == "slow_reply" else None)
    if fault == "bad_server_reply":
        processes.start("server", "tests/real_robot/bad_server.py", str(port))
    elif fault in ("late_server", "slow_reply"):
        start_server(processes, port, "--delay-ms", "600" if fault == "late_server" else "400")
    else:
        start_server(processes, port)
    good = lambda: Image(height=96, width=96, encoding="rgb8", step=288, data=bytes(96 * 96 * 3))  # noqa: E731
    frames = {"stale_camera": good, "bad_server_reply": good, "late_server": good, "slow_reply": good,
              "mono8": lambda: Image(height=96, width=96, encoding="mono8", step=96, data=bytes(96 * 96)),
              "wrong_size": lambda: Image(height=64, width=64, encoding="rgb8", step=192, data=bytes(64 * 64 * 3))}
    camera_on = threading.Event()
    camera_on.set()
    stop = threading.Event()
    thread = threading.Thread(target=publish_fake_robot, daemon=True, args=(
        roscore, prefix, stop, lambda: frames[fault]() if camera_on.is_set() else None))
    thread.start()
    processes.start("node", "-m", "lara.real_robot.ros_node", "--config", str(config))
    rig = Rig(roscore, config, prefix)
    try:
        rig.start_episode("do not move")
        if fault == "stale_camera":
            rig.wait_status(lambda s: not s["hold"], timeout_s=10)  # moving while the camera is live
            camera_on.clear()
            off = time.monotonic()
            t_hold, _ = rig.wait_status(lambda s: s["hold"] and reason in s["reason"], since=off, timeout_s=3)
            assert t_hold - off <= 0.3 + PERIOD + 0.1  # max_observation_age_s + one period
            since = t_hold
        else:
            since, _ = rig.wait_status(lambda s: reason in s["reason"], timeout_s=10)
        time.sleep(1.0)
        after = rig.statuses(since=since)
        allowed = (reason, "waiting for the server") if fault == "slow_reply" else (reason,)
        assert after and all(s["hold"] and any(a in s["reason"] for a in allowed) for s in after), after[-1]
        poses = rig.poses_between(since + 0.01)
        assert all(np.allclose(p, [0.5, 0.0, 0.3]) for p in poses)  # hold = the measured pose: no motion
        if fault != "stale_camera":
            assert all(s["hold"] for s in rig.statuses() if s["state"] == "running")  # never moved at all
            assert rig.call("stop").message.startswith("stopped; no executed step")
    finally:
        stop.set()
        thread.join(2)
        rig.close()


def generate_franka_state(out_dir):
    """franka_msgs/FrankaState (header, q, O_T_EE: the fields the node reads) generated with Debian's genpy;
    franka_ros itself is not packaged for Debian."""
    import subprocess

    msg_dir, std_dir, pkg = out_dir / "msg_src", out_dir / "std_src", out_dir / "py" / "franka_msgs"
    for d in (msg_dir, std_dir, pkg / "msg"):
        d.mkdir(parents=True)
    (msg_dir / "FrankaState.msg").write_text("std_msgs/Header header\nfloat64[7] q\nfloat64[16] O_T_EE\n")
    (std_dir / "Header.msg").write_text("uint32 seq\ntime stamp\nstring frame_id\n")  # std_msgs/Header, verbatim
    gen = ["/usr/bin/python3", "/usr/lib/genpy/genmsg_py.py", "-p", "franka_msgs"]
    subprocess.run(gen + [f"-Ifranka_msgs:{msg_dir}", f"-Istd_msgs:{std_dir}", "-o", str(pkg / "msg"),
                          str(msg_dir / "FrankaState.msg")], check=True)
    subprocess.run(gen + ["--initpy", "-o", str(pkg / "msg")], check=True)
    (pkg / "__init__.py").write_text("")
    return out_dir / "py"


def test_franka_state_pose_is_read_column_major(roscore, processes, tmp_path, monkeypatch):
    import sys

    from lara.real_robot.rotations import axis_angle_to_quat, quat_to_matrix

    py_dir = generate_franka_state(tmp_path / "franka_msgs")
    monkeypatch.syspath_prepend(str(py_dir))
    monkeypatch.setenv("PYTHONPATH", str(py_dir))
    sys.modules.pop("franka_msgs", None)
    from franka_msgs.msg import FrankaState
    from sensor_msgs.msg import Image

    prefix, port = "franka_state", free_port()
    config = node_config(tmp_path / "node.yaml", prefix, port)
    processes.start("server", "tests/real_robot/bad_server.py", str(port))  # no motion: the node holds the pose
    processes.start("node", "-m", "lara.real_robot.ros_node", "--config", str(config))
    position, quat = np.array([0.5, 0.1, 0.3]), axis_angle_to_quat(np.array([2.5, 0.4, -0.3]))
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = quat_to_matrix(quat), position
    state_pub = roscore.Publisher(f"/{prefix}/franka_state_controller/franka_states", FrankaState, queue_size=1)
    image_pub = roscore.Publisher(f"/{prefix}/camera/agentview/image_raw", Image, queue_size=1)
    rig = Rig(roscore, config, prefix)
    held_quats = []
    from geometry_msgs.msg import PoseStamped
    quat_sub = roscore.Subscriber(f"/{prefix}/cartesian_impedance_example_controller/equilibrium_pose", PoseStamped,
                                  lambda m: held_quats.append([m.pose.orientation.x, m.pose.orientation.y,
                                                               m.pose.orientation.z, m.pose.orientation.w]))
    stop = threading.Event()

    def publish():
        while not stop.is_set():
            state = FrankaState(q=list(np.linspace(-1, 1, 7)), O_T_EE=list(transform.T.flatten()))  # column-major
            state.header.stamp = roscore.Time.now()
            state_pub.publish(state)
            image = Image(height=96, width=96, encoding="rgb8", step=288, data=bytes(96 * 96 * 3))
            image.header.stamp = roscore.Time.now()
            image_pub.publish(image)
            time.sleep(0.02)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        rig.start_episode("stay")
        rig.wait_status(lambda s: s["hold"] and "bad server reply" in s["reason"], timeout_s=10)
        time.sleep(0.5)
        poses = rig.poses_between(0)
        assert poses and all(np.allclose(p, position) for p in poses)
        assert held_quats and all(abs(np.dot(q, quat)) > 1 - 1e-9 for q in held_quats)
    finally:
        stop.set()
        thread.join(2)
        quat_sub.unregister()
        rig.close()


def test_sim_publishes_franka_state_column_major(roscore, processes, tmp_path, monkeypatch):
    import sys

    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Bool

    from lara.real_robot.rotations import quat_to_matrix

    py_dir = generate_franka_state(tmp_path / "franka_msgs")
    monkeypatch.syspath_prepend(str(py_dir))
    monkeypatch.setenv("PYTHONPATH", str(py_dir))
    sys.modules.pop("franka_msgs", None)
    sys.modules.pop("franka_msgs.msg", None)
    from franka_msgs.msg import FrankaState

    prefix = "sim_state"
    config = node_config(tmp_path / "node.yaml", prefix, free_port())
    states, poses, ready = [], [], threading.Event()
    subs = [roscore.Subscriber(f"/{prefix}/franka_state_controller/franka_states", FrankaState, states.append),
            roscore.Subscriber(f"/{prefix}/franka_state_controller/ee_pose", PoseStamped, poses.append),
            roscore.Subscriber(f"/{prefix}_sim/ready", Bool, lambda m: m.data and ready.set())]
    processes.start("sim", "-m", "lara.real_robot.sim_franka", "--config", str(config), "--backend", "kinematic",
                    f"__name:={prefix}_sim")
    try:
        assert ready.wait(30), processes.log("sim")
        deadline = time.monotonic() + 5
        while not (states and poses) and time.monotonic() < deadline:
            time.sleep(0.05)
        state, pose = states[-1], poses[-1]
        transform = np.array(state.O_T_EE).reshape(4, 4).T  # column-major, as libfranka sends it
        p, q = pose.pose.position, pose.pose.orientation
        assert np.allclose(transform[:3, 3], [p.x, p.y, p.z], atol=1e-9)
        assert np.allclose(transform[:3, :3], quat_to_matrix(np.array([q.x, q.y, q.z, q.w])), atol=1e-9)
        assert np.allclose(transform[3], [0, 0, 0, 1]) and len(state.q) == 7
    finally:
        for sub in subs:
            sub.unregister()
