"""The physics-simulated Franka (robosuite Panda under OSC) on a real roscore: it follows equilibrium_pose,
its gripper follows the command, its camera publishes MuJoCo frames, and the policy node closes the loop
through it. One sim process for all of it: building the robosuite env is the expensive part."""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest
from robot_test_support import Rig, free_port, node_config, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing-sensitive: alone after the parallel part
SIZE = 64


class Topics:
    """Every message on the sim's ee_pose, joint_states and camera topics, with its arrival time."""

    def __init__(self, rospy, prefix):
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool

        self.lock = threading.Lock()
        self.poses, self.fingers, self.joints, self.images, self.ready = [], [], [], [], []
        self.subs = [
            rospy.Subscriber(f"/{prefix}/franka_state_controller/ee_pose", PoseStamped, self._on_pose, queue_size=100),
            rospy.Subscriber(f"/{prefix}/joint_states", JointState, self._on_joints, queue_size=100),
            rospy.Subscriber(f"/{prefix}/camera/agentview/image_raw", Image, self._on_image, queue_size=10),
            rospy.Subscriber(f"/{prefix}_sim/ready", Bool, lambda m: self.ready.append(m.data), queue_size=10),
        ]
        self.target = rospy.Publisher(f"/{prefix}/cartesian_impedance_example_controller/equilibrium_pose",
                                      PoseStamped, queue_size=1)
        self.gripper = rospy.Publisher(f"/{prefix}/lara/gripper_command", __import__("std_msgs.msg").msg.Float64,
                                       queue_size=1)

    def _on_pose(self, msg):
        p, q = msg.pose.position, msg.pose.orientation
        with self.lock:
            self.poses.append((time.monotonic(), np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])))

    def _on_joints(self, msg):
        with self.lock:
            self.joints.append((time.monotonic(), np.array(msg.position[:7])))
            self.fingers.append((time.monotonic(), np.array(msg.position[7:])))

    def _on_image(self, msg):
        with self.lock:
            self.images.append((time.monotonic(), msg))

    def wait(self, predicate, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"{what} not within {timeout_s} s")

    def close(self):
        for sub in self.subs:
            sub.unregister()


def publish_until(publish, done, timeout_s):
    """Publish at 10 Hz (a controller would too) until `done()`; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        publish()
        if done():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def test_robosuite_franka_tracks_targets_gripper_camera_and_closes_the_loop(roscore, processes, tmp_path):
    from geometry_msgs.msg import PoseStamped

    prefix, port = "physics", free_port()
    config = node_config(tmp_path / "node.yaml", prefix, port, image_size=[SIZE, SIZE])
    processes.start("server", "tests/real_robot/tiny_policy.py", str(port))
    processes.start("sim", "-m", "lara.real_robot.sim_franka", "--config", str(config), "--backend", "robosuite",
                    f"__name:={prefix}_sim")
    topics = Topics(roscore, prefix)
    try:
        topics.wait(lambda: True in topics.ready, 90, f"sim ready; log:\n{processes.log('sim')[-2000:]}")
        wait_for_port(port)
        processes.start("node", "-m", "lara.real_robot.ros_node", "--config", str(config))

        # camera: MuJoCo frames of the configured size and encoding, several per second, not blank
        t_images = topics.wait(lambda: len(topics.images) >= 2, 10, "camera frames")
        time.sleep(1.0)
        frames = [m for t, m in topics.images if t >= t_images]
        assert len(frames) >= 3, f"{len(frames)} frames in 1 s"
        frame = frames[-1]
        assert (frame.encoding, frame.height, frame.width, frame.step) == ("rgb8", SIZE, SIZE, 3 * SIZE)
        pixels = np.frombuffer(frame.data, np.uint8).reshape(SIZE, SIZE, 3)
        assert pixels.std() > 10  # a rendered scene, not a constant

        # a step target 4.5 cm away is reached by the physical arm within 2 s
        _, start, quat = topics.poses[-1]
        target = start + np.array([0.03, 0.025, 0.02])
        msg = PoseStamped()
        msg.header.frame_id = "panda_link0"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, target)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = map(float, quat)
        reached = publish_until(lambda: topics.target.publish(msg),
                                lambda: np.linalg.norm(topics.poses[-1][1] - target) < 0.005, timeout_s=4)
        assert reached is not None and reached < 2.0, f"still {np.linalg.norm(topics.poses[-1][1] - target):.4f} m away"
        assert not np.allclose(topics.joints[0][1], topics.joints[-1][1], atol=1e-3)  # the real joints moved

        # the fingers close on +1 and open on -1
        assert publish_until(lambda: topics.gripper.publish(1.0), lambda: topics.fingers[-1][1].max() < 0.005, 3)
        assert publish_until(lambda: topics.gripper.publish(-1.0), lambda: topics.fingers[-1][1].min() > 0.035, 3)

        # the node closes the loop through the physics arm: commands at 10 Hz, the arm follows them
        rig = Rig(roscore, config, prefix)
        try:
            rig.start_episode("reach")
            t0, _ = rig.wait_status(lambda s: s["state"] == "running" and not s["hold"], timeout_s=10)
            time.sleep(3.0)
            moving = [s for s in rig.statuses(since=t0) if s["state"] == "running" and not s["hold"]]
            assert len(moving) >= 20, [s["reason"] for s in rig.statuses(since=t0)][:10]
            commands = rig.poses_between(t0)
            measured = [p for t, p, _ in topics.poses if t >= t0]
            assert np.linalg.norm(measured[-1] - measured[0]) > 0.02  # the physical arm really moved
            assert np.linalg.norm(measured[-1] - commands[-1]) < 0.05  # and follows the commands
            reply = rig.call("stop")
            assert reply.success and reply.message.endswith(".hdf5"), reply.message
            with h5py.File(reply.message) as f:
                demo = f["data/demo_0"]
                assert demo["obs/agentview_rgb"].shape[1:] == (SIZE, SIZE, 3)
                joints = demo["obs/joint_states"][:]
                assert np.ptp(joints, axis=0).max() > 0.01  # the sim's joint angles, not a fixed pose
        finally:
            rig.close()
    finally:
        topics.close()
