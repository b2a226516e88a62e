"""A kinematic Franka for fast tests of pure ROS behaviour (`sim_franka --backend kinematic`).

Not a physics simulation: the end effector follows the target like a critically damped Cartesian
impedance controller (first-order approach with time constant `tau_s`, speed-limited), the fingers
follow the gripper command, and the camera is drawn with numpy: a table gradient with a marker whose
place, size and colour show the end-effector position and the gripper. The joint angles are the
Panda's ready pose and do not move (there is no inverse kinematics here). It starts instantly and
costs nothing, which is what the tests of the node's timing, faults and safety need; the physics
arm is `sim_robosuite.RobosuiteFranka`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lara.real_robot.rotations import axis_angle_to_quat, quat_multiply, quat_normalize, rotation_between

READY_JOINTS = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
HOME = (np.array([0.45, 0.0, 0.35]), np.array([1.0, 0.0, 0.0, 0.0]))  # gripper pointing down


@dataclass
class ArmState:
    """What every simulated arm reports, in the robot base frame."""

    position: np.ndarray  # (3,) end effector, metres
    quat: np.ndarray  # (4,) x, y, z, w
    joints: np.ndarray  # (7,) arm joint angles, radians
    joint_velocities: np.ndarray  # (7,) rad/s
    fingers: np.ndarray  # (2,) finger positions, metres, 0.04 = open


class KinematicFranka:
    def __init__(self, control_hz: float = 50.0, tau_s: float = 0.08, max_speed: float = 1.0,
                 max_angular_speed: float = 2.0) -> None:
        self.period_s = 1.0 / control_hz
        self.position, self.quat = HOME[0].copy(), HOME[1].copy()
        self.target_position, self.target_quat = self.position.copy(), self.quat.copy()
        self.finger, self.finger_target = 0.04, 0.04  # metres per finger, 0.04 = open
        self.tau_s, self.max_speed, self.max_angular_speed = tau_s, max_speed, max_angular_speed
        self.lock = threading.Lock()

    def set_target(self, position: np.ndarray, quat: np.ndarray) -> None:
        with self.lock:
            self.target_position, self.target_quat = np.asarray(position, np.float64), quat_normalize(quat)

    def set_gripper(self, command: float) -> None:
        with self.lock:
            self.finger_target = 0.0 if command > 0 else 0.04

    def advance(self) -> None:
        dt = self.period_s
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

    def state(self) -> ArmState:
        with self.lock:
            return ArmState(position=self.position.copy(), quat=self.quat.copy(), joints=READY_JOINTS.copy(),
                            joint_velocities=np.zeros(7), fingers=np.array([self.finger, self.finger]))

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

    def close(self) -> None:
        pass
