"""The ROS node's configuration: topic names, rate, server address, safety limits (`config.yaml`).

    python -m lara.real_robot.ros_node --config real_robot/config.yaml

Every field is checked when the config is read, before the node touches ROS: numbers finite and in range,
names well formed; a bad one ends on one line naming the field, the value and what was expected.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Optional

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from lara.errors import InputError, MissingPath
from lara.real_robot.gripper import GripperConfig
from lara.real_robot.realtime import RealtimeConfig
from lara.real_robot.safety import (FRANKA_MAX_ROTATION_RAD_S, FRANKA_MAX_SPEED_M_S, SLOWEST_RATE_HZ, STRICT,
                                    SafetyConfig)

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
ROS_NAME = re.compile(r"[~/]?[A-Za-z][A-Za-z0-9_/]*")  # a ROS graph resource name (ROS wiki, "Names")
HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Za-z:.%]+\]")  # a host name, an IPv4 address or an IPv6 one in brackets


def _ros_name(text: str) -> str:
    if not ROS_NAME.fullmatch(text):
        raise ValueError("expected a ROS name: a letter, / or ~ first, then letters, digits, _ and / "
                         "(e.g. /camera/agentview/image_raw)")
    return text


def _host(text: str) -> str:
    if not HOST.fullmatch(text):
        raise ValueError("expected a host name or address without ws:// or a port (e.g. 127.0.0.1, gpu-box.local "
                         "or [::1])")
    return text


RosName = Annotated[str, AfterValidator(_ros_name)]
Host = Annotated[str, AfterValidator(_host)]
Pixels = Annotated[int, Field(ge=1, le=8192, strict=True)]
Seconds = Annotated[float, Field(gt=0, le=60.0)]


class TopicsConfig(BaseModel):
    model_config = STRICT

    agentview_image: RosName = Field(description="third-person camera topic (sensor_msgs/Image, or CompressedImage when agentview_compressed)")
    agentview_compressed: bool = Field(False, description="agentview_image carries sensor_msgs/CompressedImage (JPEG/PNG)")
    wrist_image: Optional[RosName] = Field(None, description="wrist camera topic; null = no wrist camera")
    wrist_compressed: bool = Field(False, description="wrist_image carries sensor_msgs/CompressedImage")
    franka_state: RosName = Field(description="franka_msgs/FrankaState topic, used when franka_msgs is importable")
    joint_states: RosName = Field(description="sensor_msgs/JointState with panda_joint1..7 and panda_finger_joint1..2")
    ee_pose: RosName = Field(description="geometry_msgs/PoseStamped end-effector pose, used when franka_msgs is not importable")
    equilibrium_pose: RosName = Field(description="the Cartesian impedance controller's target (geometry_msgs/PoseStamped)")
    gripper_command: RosName = Field(description="std_msgs/Float64 gripper command: -1 open, +1 close")
    namespace: RosName = Field("lara", description="prefix of the node's own topics and services (start, stop, reset, reset_estop, instruction, success, estop, status)")


class ServerConfig(BaseModel):
    model_config = STRICT

    host: Host = Field(description="policy server host (the GPU machine): a name or an address, without ws:// or a port")
    port: int = Field(8000, ge=1, le=65535, strict=True, description="policy server port, 1..65535")
    timeout_s: Seconds = Field(0.5, description="a reply later than this counts as lost; the node holds and reconnects (at most 60 s)")
    connect_timeout_s: Seconds = Field(0.5, description="websocket connect and health-check timeout (at most 60 s)")
    backoff_s: Seconds = Field(0.2, description="first reconnect delay; doubles per failed attempt, up to max_backoff_s")
    max_backoff_s: Seconds = Field(2.0, description="largest reconnect delay (at most 60 s)")

    @model_validator(mode="after")
    def _backoff_grows(self) -> "ServerConfig":
        if self.backoff_s > self.max_backoff_s:
            raise ValueError(f"backoff_s ({self.backoff_s}) must be at most max_backoff_s ({self.max_backoff_s}): the "
                             "first reconnect delay doubles up to the largest.")
        return self


class NodeConfig(BaseModel):
    model_config = STRICT

    rate_hz: float = Field(10.0, ge=SLOWEST_RATE_HZ, le=15.0, description="control rate (DROID runs at 15 Hz, LIBERO policies at 10-20 Hz)")
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
    image_size: Optional[tuple[Pixels, Pixels]] = Field(None, description="required camera height, width (1..8192 px); frames of another size are rejected (null = any)")
    frame_id: RosName = Field("panda_link0", description="frame_id of the published target poses (the robot base)")
    episodes_dir: str = Field("episodes", min_length=1, description="where finished episodes are written as LIBERO HDF5 files; created (and checked writable) at start when record is on")
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
        speed, turn = self.safety.max_translation_m * self.rate_hz, self.safety.max_rotation_rad * self.rate_hz
        if speed > FRANKA_MAX_SPEED_M_S:
            raise ValueError(f"safety.max_translation_m {self.safety.max_translation_m} m per step at rate_hz {self.rate_hz} asks "
                             f"for {speed:.2f} m/s, above the Franka's {FRANKA_MAX_SPEED_M_S} m/s: set it to at most "
                             f"{FRANKA_MAX_SPEED_M_S / self.rate_hz:.3f} m (DROID: 0.075).")
        if turn > FRANKA_MAX_ROTATION_RAD_S:
            raise ValueError(f"safety.max_rotation_rad {self.safety.max_rotation_rad} rad per step at rate_hz {self.rate_hz} asks "
                             f"for {turn:.2f} rad/s, above the Franka's {FRANKA_MAX_ROTATION_RAD_S} rad/s: set it to at most "
                             f"{FRANKA_MAX_ROTATION_RAD_S / self.rate_hz:.3f} rad (DROID: 0.15).")
        return self


def _fields_at(loc: tuple) -> list[str]:
    """The field names of the section that holds `loc` (the top level for a top-level key)."""
    model = NodeConfig
    for key in loc[:-1]:
        field = model.model_fields.get(key)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def describe(error: ValidationError) -> str:
    """A pydantic error on one line: each bad field's dotted name, the value given and what was expected."""
    parts = []
    for e in error.errors():
        field = ".".join(map(str, e["loc"]))
        given = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(e["input"], dict) else f" = {e['input']!r}"
        message = e["msg"].removeprefix("Value error, ").rstrip(".")
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), _fields_at(e["loc"]), n=1)
            message += f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"{field}{given}: {message}" if field else message)
    return "; ".join(parts)


def validate(data: dict, source: str) -> NodeConfig:
    """`data` as a NodeConfig, or an InputError on one line naming `source`, the bad fields and what was expected."""
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{source}: {describe(error)}") from None


def load_config(path: str | Path | None = None, **overrides) -> NodeConfig:
    """Read a YAML config (default: the packaged config.yaml); keyword overrides replace top-level keys, or update a
    section when both are mappings. Bad input raises a one-line `lara.errors.UserError`."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise MissingPath(f"node config {path} is not a file; start from a copy of {DEFAULT_CONFIG}.")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"node config {path} is not valid YAML{where} ({problem}); fix the file.") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(f"node config {path} holds a {type(data).__name__}, expected a mapping of fields "
                         f"(rate_hz:, topics:, server:, safety:, ...) as in {DEFAULT_CONFIG}.")
    for key, value in overrides.items():
        section = data.get(key)
        data[key] = {**section, **value} if isinstance(section, dict) and isinstance(value, dict) else value
    return validate(data, f"node config {path}")
