"""A privileged-state scripted WidowX expert for SIMPLER's put-on tasks (carrot on plate, spoon on towel).

It reads the source and target objects' poses from the live env, plans end-effector waypoints in the robot
base frame (above the source, down, close, lift, above the target, down, open) and moves the controller's
target towards each by at most `MAX_STEP` metres per step. It is a `lara.policy.Policy` that needs the live
env: `bind(env)` with a `ManiSkillEnv`. Its actions are `lara.policy` actions (metres, roll-pitch-yaw, gripper
+1 = close), mapped to the controller by the env like any policy's.

The gripper keeps its start orientation (pointing down) except for a yaw that turns its fingers across the
source object's short bounding-box side; the yaw is sent as a pure rotation about the base z axis, where the
"simpler" and "exact" rotation mappings agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lara.benchmarks.simpler.assets import BRIDGE_TASKS

MAX_STEP = 0.035     # metres per 0.2 s control step (the Bridge data's deltas reach ~3 cm)
MAX_YAW_STEP = 0.5   # radians per step
HOVER = 0.07         # metres above the grasp / release point
SUPPORTED = ("PutCarrotOnPlateInScene-v1", "PutSpoonOnTableClothInScene-v1")


@dataclass
class Waypoint:
    position: np.ndarray   # base frame, metres
    gripper: float         # +1 close, -1 open
    hold: int = 0          # extra steps to stay here once reached (gripper motion)
    tolerance: float = 0.01


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class ScriptedWidowXExpert:
    """Pick the task's source object and put it on its target; `act` returns one action (1, 7)."""

    def __init__(self):
        self.env = None
        self.waypoints: list[Waypoint] = []
        self.yaw_left = 0.0

    def bind(self, env) -> None:
        if env.env_id not in SUPPORTED:
            raise ValueError(f"the scripted WidowX expert plans {list(SUPPORTED)}, not {env.env_id}")
        self.env = env

    def _object(self, index: int):
        task = BRIDGE_TASKS[self.env.env_id]
        return self.env.unwrapped.objs[task.objects[index]]

    def _in_base(self, actor) -> tuple[np.ndarray, np.ndarray]:
        pose = self.env.to_base(actor.pose)
        return pose.p.cpu().numpy()[0].astype(np.float64), pose.q.cpu().numpy()[0].astype(np.float64)

    def _half_extents(self, index: int) -> np.ndarray:
        bbox = self.env.unwrapped.model_db[BRIDGE_TASKS[self.env.env_id].objects[index]]["bbox"]
        return (np.asarray(bbox["max"]) - np.asarray(bbox["min"])) / 2

    def reset(self, instruction: str) -> None:
        from transforms3d.quaternions import quat2mat

        if self.env is None:
            raise RuntimeError("ScriptedWidowXExpert needs the live env: call bind(env) first")
        src, src_q = self._in_base(self._object(0))
        dst, _ = self._in_base(self._object(1))
        src_half, dst_half = self._half_extents(0), self._half_extents(1)
        # yaw: put the fingers' closing axis across the object's short horizontal side
        short_axis = quat2mat(src_q)[:, 0 if src_half[0] < src_half[1] else 1]
        closing = quat2mat(self.env.arm_controller.ee_pose_at_base.q.cpu().numpy()[0])[:, 1]  # fingers move along y
        delta = _wrap(np.arctan2(short_axis[1], short_axis[0]) - np.arctan2(closing[1], closing[0]))
        self.yaw_left = _wrap(delta + np.pi) if abs(delta) > np.pi / 2 else delta  # the gripper is symmetric
        grasp = src + [0.0, 0.0, max(src_half[2] * 0.3, 0.004)]
        release = dst + [0.0, 0.0, dst_half[2] + 2 * src_half[2] + 0.02]
        self.waypoints = [
            Waypoint(grasp + [0, 0, HOVER], -1.0, tolerance=0.02),
            Waypoint(grasp, -1.0),
            Waypoint(grasp, 1.0, hold=3),
            Waypoint(grasp + [0, 0, HOVER], 1.0, tolerance=0.02),
            Waypoint(release + [0, 0, 0.03], 1.0, tolerance=0.015),
            Waypoint(release, -1.0, hold=4),
        ]

    @property
    def done(self) -> bool:
        """Every waypoint reached: the object is released over its target."""
        return not self.waypoints

    def act(self, obs) -> np.ndarray:
        target = self.env.arm_controller._target_pose.p.cpu().numpy()[0].astype(np.float64)
        while self.waypoints:
            waypoint = self.waypoints[0]
            if np.linalg.norm(waypoint.position - target) > waypoint.tolerance or abs(self.yaw_left) > 1e-3:
                break
            if waypoint.hold > 0:
                waypoint.hold -= 1
                return np.array([[0, 0, 0, 0, 0, 0, waypoint.gripper]], dtype=np.float32)
            self.waypoints.pop(0)
        if not self.waypoints:
            return np.array([[0, 0, 0, 0, 0, 0, -1.0]], dtype=np.float32)
        waypoint = self.waypoints[0]
        move = waypoint.position - target
        norm = np.linalg.norm(move)
        move = move * min(1.0, MAX_STEP / norm) if norm > 0 else move
        yaw = float(np.clip(self.yaw_left, -MAX_YAW_STEP, MAX_YAW_STEP))
        self.yaw_left -= yaw
        return np.array([[*move, 0.0, 0.0, yaw, waypoint.gripper]], dtype=np.float32)
