"""A simulated Franka for hardware-free runs: the same ROS topics as franka_ros + a camera.

    python -m lara.real_robot.sim_franka --config real_robot/config.yaml [--image-size 96] [--camera-hz 15]

A kinematic arm, not a physics simulation: the end effector follows `equilibrium_pose` like a
critically damped Cartesian impedance controller (first-order approach with time constant `tau`,
speed-limited), the fingers follow the gripper command, and the camera is rendered with numpy:
a table gradient with a marker whose place, size and colour show the end-effector position and the
gripper. Why not robosuite's Panda under OSC: environment creation takes 10-16 s and offscreen
MuJoCo rendering on these shared 2-core CPU machines is a few frames per second, too slow for a
10 Hz closed loop in a test budget of minutes; what the tests check is the ROS interface, the
timing and the safety behaviour, which this arm exercises exactly. The joint angles are the Panda's
ready pose and do not move (there is no inverse kinematics here).

Publishes: ee_pose (PoseStamped) and joint_states (JointState) at `--state-hz`, the agentview
camera (Image rgb8) at `--camera-hz`. Subscribes: equilibrium_pose, gripper_command.
"""

from __future__ import annotations

import argparse
import threading

import numpy as np

from lara.real_robot.config import load_config
from lara.real_robot.ros import import_rospy
from lara.real_robot.rotations import axis_angle_to_quat, quat_multiply, quat_normalize, rotation_between

rospy = import_rospy()
from geometry_msgs.msg import PoseStamped  # noqa: E402  (needs import_rospy first)
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402

READY_JOINTS = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
JOINT_NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
HOME = (np.array([0.45, 0.0, 0.35]), np.array([1.0, 0.0, 0.0, 0.0]))  # gripper pointing down


class KinematicFranka:
    def __init__(self, tau_s: float = 0.08, max_speed: float = 1.0, max_angular_speed: float = 2.0) -> None:
        self.position, self.quat = HOME[0].copy(), HOME[1].copy()
        self.target_position, self.target_quat = self.position.copy(), self.quat.copy()
        self.finger, self.finger_target = 0.04, 0.04  # metres per finger, 0.04 = open
        self.tau_s, self.max_speed, self.max_angular_speed = tau_s, max_speed, max_angular_speed
        self.lock = threading.Lock()

    def set_target(self, position: np.ndarray, quat: np.ndarray) -> None:
        with self.lock:
            self.target_position, self.target_quat = position, quat_normalize(quat)

    def set_gripper(self, command: float) -> None:
        with self.lock:
            self.finger_target = 0.0 if command > 0 else 0.04

    def advance(self, dt: float) -> None:
        with self.lock:
            gain = 1.0 - np.exp(-dt / self.tau_s)
            step = gain * (self.target_position - self.position)
            norm = np.linalg.norm(step)
            if norm > self.max_speed * dt:
                step *= self.max_speed * dt / norm
            self.position = self.position + step
            rotation = gain * rotation_between(self.quat, self.target_quat)
            angle = np.linalg.norm(rotation)
            if angle > self.max_angular_speed * dt:
                rotation *= self.max_angular_speed * dt / angle
            self.quat = quat_normalize(quat_multiply(axis_angle_to_quat(rotation), self.quat))
            self.finger += np.clip(self.finger_target - self.finger, -0.1 * dt, 0.1 * dt)

    def render(self, size: int) -> np.ndarray:
        """uint8 [size, size, 3]: top-down view of the workspace with the end effector as a square."""
        with self.lock:
            x, y, z, finger = *self.position, self.finger
        rows = np.linspace(60, 140, size, dtype=np.float32)[:, None]
        image = np.empty((size, size, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = rows, rows * 0.8, 90
        u = int(np.clip((y + 0.5) / 1.0 * size, 0, size - 1))  # image column from y
        v = int(np.clip((0.8 - x) / 0.6 * size, 0, size - 1))  # image row from x
        half = max(1, int(size * (0.02 + 0.08 * np.clip(z, 0, 0.8))))  # higher = bigger
        colour = (230, 60, 60) if finger < 0.02 else (60, 230, 60)  # red closed, green open
        image[max(0, v - half): v + half + 1, max(0, u - half): u + half + 1] = colour
        return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kinematic simulated Franka publishing franka_ros-like topics")
    parser.add_argument("--config", default=None, help="node YAML config whose topic names to use")
    parser.add_argument("--image-size", type=int, default=224, help="camera width = height, pixels")
    parser.add_argument("--camera-hz", type=float, default=15.0, help="camera frame rate")
    parser.add_argument("--state-hz", type=float, default=50.0, help="pose / joint state rate")
    args, _ = parser.parse_known_args(argv)
    topics = load_config(args.config).topics
    rospy.init_node("sim_franka")
    arm = KinematicFranka()
    rospy.Subscriber(topics.equilibrium_pose, PoseStamped, lambda m: arm.set_target(
        np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z]),
        np.array([m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w])),
        queue_size=1)
    rospy.Subscriber(topics.gripper_command, Float64, lambda m: arm.set_gripper(m.data), queue_size=1)
    pose_pub = rospy.Publisher(topics.ee_pose, PoseStamped, queue_size=1)
    joint_pub = rospy.Publisher(topics.joint_states, JointState, queue_size=1)
    image_pub = rospy.Publisher(topics.agentview_image, Image, queue_size=1)

    def publish_camera(_event) -> None:
        frame = arm.render(args.image_size)
        msg = Image(height=args.image_size, width=args.image_size, encoding="rgb8", step=3 * args.image_size,
                    data=frame.tobytes())
        msg.header.stamp, msg.header.frame_id = rospy.Time.now(), "agentview_camera"
        image_pub.publish(msg)

    rospy.Timer(rospy.Duration(1.0 / args.camera_hz), publish_camera)
    rate, dt = rospy.Rate(args.state_hz), 1.0 / args.state_hz
    while not rospy.is_shutdown():
        arm.advance(dt)
        now = rospy.Time.now()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = now, "panda_link0"
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = map(float, arm.position)
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = map(float, arm.quat)
        pose_pub.publish(pose)
        joints = JointState(name=JOINT_NAMES, position=READY_JOINTS + [arm.finger, arm.finger])
        joints.header.stamp = now
        joint_pub.publish(joints)
        try:
            rate.sleep()
        except rospy.ROSInterruptException:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
