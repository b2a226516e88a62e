"""The safety layer between a policy's action and the robot: every command the ROS node sends passes here.

An action is (dx, dy, dz, droll, dpitch, dyaw, gripper) in the policy's units (LIBERO / robosuite
OSC_POSE: 1.0 = `translation_scale_m` metres, `rotation_scale_rad` radians). It becomes a target pose:

    target = current pose + clamp(delta)      translation norm <= max_translation_m (DROID: 0.075 m),
                                              rotation angle  <= max_rotation_rad  (DROID: 0.15 rad),
    position clipped into the workspace box, then re-clamped so the step bound always holds,
    gripper binarised to -1 (open) / +1 (close).

The layer holds the pose (re-sends one fixed target, leaves the gripper alone) when there is no
action (server lost or late), when the action is not finite, when the target it computes is not finite
(whatever the config), when the observation is stale, and while the e-stop is latched. The e-stop
latches until `reset_estop()`; nothing else clears it. Every number of `SafetyConfig` is checked finite
and in its range when the config is built, assigned or handed to the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lara.real_robot.rotations import axis_angle_to_quat, quat_multiply, quat_normalize

# libfranka's Cartesian velocity limits (Franka docs, "Robot and interface specifications"), and the slowest
# control rate the node runs at: one step may not ask for more than the arm can do in one period (NodeConfig
# checks the step against its own rate).
FRANKA_MAX_SPEED_M_S, FRANKA_MAX_ROTATION_RAD_S, SLOWEST_RATE_HZ = 1.7, 2.5, 5.0
MAX_STEP_M = round(FRANKA_MAX_SPEED_M_S / SLOWEST_RATE_HZ, 6)  # 0.34 m
MAX_STEP_RAD = round(FRANKA_MAX_ROTATION_RAD_S / SLOWEST_RATE_HZ, 6)  # 0.5 rad
WORKSPACE_LIMIT_M = 1.2  # a Panda reaches 0.855 m from its shoulder, 0.333 m above the base: a box past this is a unit slip

# Every number of the node's config: finite (YAML's .nan / .inf refused), re-checked on assignment.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class SafetyConfig(BaseModel):
    model_config = STRICT

    max_translation_m: float = Field(0.075, gt=0, le=MAX_STEP_M, description="largest target step from the current position per command (DROID: 0.075 m); at most 1.7 m/s (the Franka's limit) x one period")
    max_rotation_rad: float = Field(0.15, gt=0, le=MAX_STEP_RAD, description="largest target rotation from the current orientation per command (DROID: 0.15 rad); at most 2.5 rad/s (the Franka's limit) x one period")
    workspace_min: tuple[float, float, float] = Field((0.2, -0.5, 0.02), description="lower corner of the allowed end-effector box, robot base frame, metres (each within +-1.2 m)")
    workspace_max: tuple[float, float, float] = Field((0.8, 0.5, 0.8), description="upper corner of the allowed end-effector box, robot base frame, metres (each within +-1.2 m)")
    max_observation_age_s: float = Field(0.3, gt=0, le=2.0, description="hold when the newest camera image (or robot state) is older than this (at most 2 s: an older image is not the scene the arm is in)")
    translation_scale_m: float = Field(0.05, gt=0, le=1.0, description="metres per unit of policy translation action (robosuite OSC_POSE / LIBERO: 0.05; at most 1 m)")
    rotation_scale_rad: float = Field(0.5, gt=0, le=math.pi, description="radians per unit of policy rotation action (robosuite OSC_POSE / LIBERO: 0.5; at most pi)")
    gripper_threshold: float = Field(0.0, gt=-1.0, lt=1.0, description="gripper action above this closes (+1), otherwise opens (-1); inside (-1, 1), the range of gripper actions, so that both can happen")

    @model_validator(mode="after")
    def _box_is_not_empty(self) -> "SafetyConfig":
        for name in ("workspace_min", "workspace_max"):
            corner = getattr(self, name)
            if any(abs(value) > WORKSPACE_LIMIT_M for value in corner):
                raise ValueError(f"{name} {corner} must lie within +-{WORKSPACE_LIMIT_M} m of the robot base on every axis "
                                 "(metres, robot base frame; the Panda reaches 0.855 m).")
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ValueError(f"workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max} on every axis.")
        return self


class UnsafeAction(ValueError):
    """An action that must not reach the robot (wrong shape, NaN or inf)."""


@dataclass
class Pose:
    position: np.ndarray  # (3,) metres, base frame
    quat: np.ndarray  # (4,) x, y, z, w


@dataclass
class Command:
    """What the node sends this period. `pose` None = send nothing; `gripper` None = leave the gripper."""

    pose: Optional[Pose]
    gripper: Optional[float]
    hold: bool
    reason: str
    executed_action: Optional[np.ndarray] = None  # (7,) the action actually applied, in policy units


# The comparisons below fail closed: a NaN bound or threshold gives NaN, which the layer then holds on.
def clamp_norm(vector: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale `vector` down (direction kept) so its Euclidean norm is at most `max_norm`."""
    norm = float(np.linalg.norm(vector))
    if norm <= max_norm:
        return vector
    return vector * (max_norm / norm) if norm > 0 else np.full_like(vector, np.nan)  # a NaN bound: NaN


def clip_to_workspace(position: np.ndarray, lo, hi) -> np.ndarray:
    return np.clip(position, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))


def binarize_gripper(value: float, threshold: float = 0.0) -> float:
    return 1.0 if value > threshold else -1.0 if value <= threshold else float("nan")


def check_action(action) -> np.ndarray:
    """A finite float vector of 7 values, or UnsafeAction."""
    array = np.asarray(action)
    if array.shape != (7,) or array.dtype.kind not in "fiu":
        raise UnsafeAction(f"expected an action of 7 real numbers, got shape {list(array.shape)} dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise UnsafeAction(f"action contains NaN or inf: {array}.")
    return array.astype(np.float64)


def pose_is_finite(pose: Optional[Pose]) -> bool:
    return pose is not None and bool(np.all(np.isfinite(pose.position)) and np.all(np.isfinite(pose.quat)))


def safe_target(action: np.ndarray, pose: Pose, config: SafetyConfig) -> tuple[Pose, np.ndarray]:
    """Clamped, workspace-bounded target for a checked action; returns (target, executed action)."""
    step = clamp_norm(action[:3] * config.translation_scale_m, config.max_translation_m)
    goal = clip_to_workspace(pose.position + step, config.workspace_min, config.workspace_max)
    step = clamp_norm(goal - pose.position, config.max_translation_m)  # an arm outside the box moves back slowly
    rotation = clamp_norm(action[3:6] * config.rotation_scale_rad, config.max_rotation_rad)
    quat = quat_multiply(axis_angle_to_quat(rotation), quat_normalize(pose.quat))  # world-frame delta, as OSC
    gripper = binarize_gripper(float(action[6]), config.gripper_threshold)
    executed = np.concatenate([step / config.translation_scale_m, rotation / config.rotation_scale_rad, [gripper]])
    return Pose(pose.position + step, quat), executed


class SafetyLayer:
    def __init__(self, config: SafetyConfig | None = None) -> None:
        # validated again here, whatever built it: a config made with model_construct skips the checks
        self.config = SafetyConfig.model_validate(config.model_dump()) if config is not None else SafetyConfig()
        self.estop_reason: Optional[str] = None
        self.hold_pose: Optional[Pose] = None

    @property
    def estopped(self) -> bool:
        return self.estop_reason is not None

    def estop(self, reason: str) -> None:
        """Latch the e-stop (the first reason is kept until reset)."""
        if self.estop_reason is None:
            self.estop_reason = reason

    def reset_estop(self) -> None:
        self.estop_reason = None

    def hold(self, pose: Optional[Pose], reason: str) -> Command:
        """Keep sending the pose latched when holding began (the measured pose at that moment)."""
        if self.hold_pose is None and pose_is_finite(pose):
            self.hold_pose = Pose(np.array(pose.position, dtype=np.float64), quat_normalize(pose.quat))
        return Command(self.hold_pose, None, True, reason)

    def command(self, action, pose: Optional[Pose], observation_age_s: float,
                missing_reason: str = "no action", observation_error: Optional[str] = None) -> Command:
        """The command for this period. `action` None means none is available (`missing_reason` says why);
        `observation_error` says the newest camera frame was unusable."""
        if self.estopped:
            return self.hold(pose, f"e-stop: {self.estop_reason}")
        if not pose_is_finite(pose):
            return self.hold(None, "robot state missing or not finite")
        if observation_error is not None:
            return self.hold(pose, f"bad observation: {observation_error}")
        if not (np.isfinite(observation_age_s) and observation_age_s <= self.config.max_observation_age_s):
            return self.hold(pose, f"stale observation ({observation_age_s:.3f} s old > {self.config.max_observation_age_s} s)")
        if action is None:
            return self.hold(pose, missing_reason)
        try:
            action = check_action(action)
        except UnsafeAction as exc:
            return self.hold(pose, f"rejected action: {exc}")
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or inf that comes out is caught just below
            target, executed = safe_target(action, pose, self.config)
        if not (pose_is_finite(target) and np.all(np.isfinite(executed))):  # whatever the config says: never sent
            return self.hold(pose, f"non-finite target {target.position} {target.quat} from action {action}: "
                                   "check the safety config")
        self.hold_pose = None
        return Command(target, float(executed[6]), False, "ok", executed)
