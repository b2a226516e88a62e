"""The ROS node's configuration: topic names, rate, server address, safety limits (`config.yaml`).

    python -m lara.real_robot.ros_node --config real_robot/config.yaml
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lara.real_robot.gripper import GripperConfig
from lara.real_robot.realtime import RealtimeConfig
from lara.real_robot.safety import SafetyConfig

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")


class TopicsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agentview_image: str = Field(description="third-person camera topic (sensor_msgs/Image, or CompressedImage when agentview_compressed)")
    agentview_compressed: bool = Field(False, description="agentview_image carries sensor_msgs/CompressedImage (JPEG/PNG)")
    wrist_image: Optional[str] = Field(None, description="wrist camera topic; null = no wrist camera")
    wrist_compressed: bool = Field(False, description="wrist_image carries sensor_msgs/CompressedImage")
    franka_state: str = Field(description="franka_msgs/FrankaState topic, used when franka_msgs is importable")
    joint_states: str = Field(description="sensor_msgs/JointState with panda_joint1..7 and panda_finger_joint1..2")
    ee_pose: str = Field(description="geometry_msgs/PoseStamped end-effector pose, used when franka_msgs is not importable")
    equilibrium_pose: str = Field(description="the Cartesian impedance controller's target (geometry_msgs/PoseStamped)")
    gripper_command: str = Field(description="std_msgs/Float64 gripper command: -1 open, +1 close")
    namespace: str = Field("lara", description="prefix of the node's own topics and services (start, stop, reset, reset_estop, instruction, success, estop, status)")


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="policy server host (the GPU machine)")
    port: int = Field(8000, description="policy server port")
    timeout_s: float = Field(0.5, gt=0, description="a reply later than this counts as lost; the node holds and reconnects")
    connect_timeout_s: float = Field(0.5, gt=0, description="websocket connect and health-check timeout")
    backoff_s: float = Field(0.2, gt=0, description="first reconnect delay; doubles per failed attempt")
    max_backoff_s: float = Field(2.0, gt=0, description="largest reconnect delay")


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_hz: float = Field(10.0, ge=5.0, le=15.0, description="control rate (DROID runs at 15 Hz, LIBERO policies at 10-20 Hz)")
    execute_steps: int = Field(1, ge=1, description="actions of each chunk, counted from its observation, that may run; synchronously the "
                               "actions executed before the next query (openpi DROID: 8)")
    prefetch_steps: int = Field(0, ge=0, description="ask for the next chunk, on the newest observation, while this many actions of the current one "
                                "remain; its reply replaces the not-yet-executed tail (0: ask when none remain and hold while the reply is out)")
    prefetch_margin_s: Optional[float] = Field(None, ge=0, description="ask for the next chunk once the remaining actions last less than the "
                                               "slowest of the latest 5 round trips plus this margin (at least prefetch_steps, below "
                                               "execute_steps); null: prefetch_steps alone")
    ensemble_decay: Optional[float] = Field(None, description="ACT temporal ensembling: average the overlapping chunks' predictions for a step "
                                            "with weights exp(-decay * i), i = 0 the oldest (ACT: 0.01; 0 = plain mean); chunks overlap "
                                            "only with prefetch_steps >= 1 (execute_steps - 1: a query every step, as ACT). null: the "
                                            "newest chunk replaces the tail")
    image_size: Optional[tuple[int, int]] = Field(None, description="required camera height, width; frames of another size are rejected (null = any)")
    frame_id: str = Field("panda_link0", description="frame_id of the published target poses (the robot base)")
    episodes_dir: str = Field("episodes", description="where finished episodes are written as LIBERO HDF5 files")
    record: bool = Field(True, description="record executed steps and save each episode on stop")
    topics: TopicsConfig
    server: ServerConfig
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="clamps, workspace, watchdog (see safety.py)")
    gripper: GripperConfig = Field(default_factory=GripperConfig, description="franka_gripper action goals (see gripper.py)")
    realtime: RealtimeConfig = Field(default_factory=RealtimeConfig, description="SCHED_FIFO + early-wake spin for the control loop (see realtime.py)")

    @model_validator(mode="after")
    def _chunks_can_overlap(self) -> "NodeConfig":
        prefetching = self.prefetch_steps > 0 or self.prefetch_margin_s is not None
        if prefetching and self.execute_steps < 2:
            raise ValueError(f"prefetch_steps / prefetch_margin_s ask for the next chunk while actions of the current one remain: "
                             f"set execute_steps to 2 or more (the chunk's actions that may run), got {self.execute_steps}.")
        if self.prefetch_steps >= self.execute_steps > 1:
            raise ValueError(f"prefetch_steps must be below execute_steps ({self.execute_steps}: execute_steps - 1 asks every step), "
                             f"got {self.prefetch_steps}.")
        if self.ensemble_decay is not None and self.prefetch_steps < 1:
            raise ValueError("ensemble_decay averages overlapping chunks, which overlap only when the next one is asked for early: "
                             f"set prefetch_steps to 1 or more (execute_steps - 1 = {self.execute_steps - 1}: every step, as ACT).")
        if self.ensemble_decay is not None and not math.isfinite(self.ensemble_decay):
            raise ValueError(f"ensemble_decay must be a finite number (ACT: 0.01), got {self.ensemble_decay}.")
        return self


def load_config(path: str | Path | None = None, **overrides) -> NodeConfig:
    """Read a YAML config (default: the packaged config.yaml); keyword overrides replace top-level keys."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"node config {path} does not exist; start from {DEFAULT_CONFIG}.")
    data = yaml.safe_load(path.read_text()) or {}
    data.update(overrides)
    return NodeConfig.model_validate(data)
