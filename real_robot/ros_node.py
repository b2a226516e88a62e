"""The ROS 1 node that runs a remote LARA policy on a Franka (franka_ros Cartesian impedance control).

    python -m lara.real_robot.ros_node --config real_robot/config.yaml

Every 1/rate_hz seconds: take the newest camera image and robot state; when the action queue runs
low, ask the policy server for the next chunk on that observation; pass the next action through the
safety layer; publish the target pose on the impedance controller's `equilibrium_pose` and the gripper
command; record the step. Which action runs when is `chunking.ActionQueue`'s business: synchronous by
default (ask when the chunk is used up, wait at most half a period, then hold while the reply is out),
or with `prefetch_steps` / `prefetch_margin_s` ask while actions remain, so that the arm keeps moving
while the next chunk is computed, and with `ensemble_decay` average overlapping chunks (ACT). Each
request carries `timestep`, the actions executed so far in the episode (LeRobot's asynchronous
inference sends the same): action i of its reply is meant for step timestep + i.

Its own interface (under /<namespace>/, default /lara/):
    services (std_srvs/Trigger): start, stop (saves the episode), reset (discards it), reset_estop
    topics in:  instruction (std_msgs/String), success (std_msgs/Bool, operator's flag), estop (std_msgs/Bool, True latches)
    topic out:  status (std_msgs/String, JSON per period: state, hold, reason, tick_time, ...)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from lara.chunking import ActionQueue
from lara.serving.client import PolicyClient, ServerUnavailable
from lara.real_robot.config import NodeConfig, load_config
from lara.real_robot.gripper import GripperCommander
from lara.real_robot.images import ImageError, check_size, compressed_to_rgb, raw_to_rgb
from lara.real_robot.ports import tcp_port
from lara.real_robot.realtime import enable_fifo, sleep_until
from lara.real_robot.recorder import EpisodeRecorder
from lara.real_robot.ros import import_rospy
from lara.real_robot.rotations import matrix_to_quat, quat_to_axis_angle
from lara.real_robot.safety import Command, Pose, SafetyLayer, pose_is_finite

rospy = import_rospy()
from geometry_msgs.msg import PoseStamped  # noqa: E402  (needs import_rospy first)
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import Trigger, TriggerResponse  # noqa: E402

try:
    from franka_msgs.msg import FrankaState
except ImportError:  # franka_ros is not on Debian: JointState + PoseStamped instead
    FrankaState = None

ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
FINGER_JOINTS = ["panda_finger_joint1", "panda_finger_joint2"]


class Sensors:
    """The newest image, pose and joints, written by subscriber threads and read by the control loop."""

    def __init__(self, image_size) -> None:
        self.image_size = image_size
        self.lock = threading.Lock()
        self.images: dict = {}  # key -> (uint8 [H, W, 3], stamp seconds)
        self.pose: Optional[Pose] = None
        self.pose_stamp = 0.0
        self.joints = np.zeros(7)
        self.fingers = np.zeros(2)
        self.image_error: Optional[str] = None

    def on_image(self, key: str, msg) -> None:
        try:
            if isinstance(msg, CompressedImage):
                image = compressed_to_rgb(msg.format, msg.data)
            else:
                image = raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            image = check_size(image, self.image_size)
        except ImageError as exc:
            with self.lock:
                self.image_error = f"{key}: {exc}"
            rospy.logwarn_throttle(1.0, f"dropped {key} frame: {exc}")
            return
        with self.lock:
            self.images[key] = (image, _stamp(msg))
            self.image_error = None

    def on_pose(self, msg) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        with self.lock:
            self.pose = Pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
            self.pose_stamp = _stamp(msg)

    def on_franka_state(self, msg) -> None:
        transform = np.array(msg.O_T_EE).reshape(4, 4).T  # column-major in franka_msgs
        with self.lock:
            self.pose = Pose(transform[:3, 3].copy(), matrix_to_quat(transform[:3, :3]))
            self.pose_stamp = _stamp(msg)
            self.joints = np.array(msg.q, dtype=np.float64)

    def on_joint_states(self, msg) -> None:
        positions = dict(zip(msg.name, msg.position))
        with self.lock:
            if all(name in positions for name in ARM_JOINTS):
                self.joints = np.array([positions[n] for n in ARM_JOINTS])
            if all(name in positions for name in FINGER_JOINTS):
                self.fingers = np.array([positions[n] for n in FINGER_JOINTS])

    def latest_pose(self) -> Optional[Pose]:
        with self.lock:
            return self.pose

    def snapshot(self, now: float) -> tuple[Optional[dict], float]:
        """(observation dict or None, age in seconds of its oldest part: images and pose)."""
        with self.lock:
            if "agentview_rgb" not in self.images or self.pose is None:
                return None, float("inf")
            obs = {key: image for key, (image, _) in self.images.items()}
            stamps = [stamp for _, stamp in self.images.values()] + [self.pose_stamp]
            obs.update(ee_pos=self.pose.position.copy(), ee_quat=self.pose.quat.copy(),
                       ee_ori=quat_to_axis_angle(self.pose.quat), gripper_qpos=self.fingers.copy(),
                       joint_qpos=self.joints.copy())
        return obs, now - min(stamps)


@dataclass
class Request:
    """The request in flight: its reply, when it was sent, when its observation was taken (both
    time.monotonic()), the step it was taken at and the episode it belongs to."""

    future: Future  # -> (reply, time.monotonic() when it came)
    sent: float
    image_time: float
    step: int
    episode: int


def _stamp(msg) -> float:
    """Capture time from the header; receipt time when the publisher left it at zero."""
    stamp = msg.header.stamp.to_sec()
    return stamp if stamp > 0 else rospy.get_time()


class PolicyNode:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.period = 1.0 / config.rate_hz
        self.safety = SafetyLayer(config.safety)
        self.sensors = Sensors(config.image_size)
        self.recorder = EpisodeRecorder(config.episodes_dir)
        s = config.server
        self.client = PolicyClient(s.host, s.port, timeout_s=s.timeout_s, connect_timeout_s=s.connect_timeout_s,
                                   backoff_s=s.backoff_s, max_backoff_s=s.max_backoff_s)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._request: Optional[Request] = None
        self.actions = ActionQueue(config.execute_steps, config.ensemble_decay)
        self._round_trips: collections.deque = collections.deque(maxlen=5)  # seconds, the latest replies
        self._server_state = "not queried yet"
        self.episode = 0
        self.lock = threading.Lock()  # guards episode state against the service threads
        self.running = False
        self._new_episode = False  # the next request asks the server to reset the policy
        self.instruction = ""
        self.success = False
        self.tick = 0
        self._subscribe_and_advertise()

    def _subscribe_and_advertise(self) -> None:
        t, ns = self.config.topics, "/" + self.config.topics.namespace.strip("/")
        rospy.Subscriber(t.agentview_image, CompressedImage if t.agentview_compressed else Image,
                         lambda m: self.sensors.on_image("agentview_rgb", m), queue_size=1, buff_size=2**24)
        if t.wrist_image:
            rospy.Subscriber(t.wrist_image, CompressedImage if t.wrist_compressed else Image,
                             lambda m: self.sensors.on_image("eye_in_hand_rgb", m), queue_size=1, buff_size=2**24)
        if FrankaState is not None:
            rospy.Subscriber(t.franka_state, FrankaState, self.sensors.on_franka_state, queue_size=1)
        else:
            rospy.Subscriber(t.ee_pose, PoseStamped, self.sensors.on_pose, queue_size=1)
        rospy.Subscriber(t.joint_states, JointState, self.sensors.on_joint_states, queue_size=1)
        self.pose_pub = rospy.Publisher(t.equilibrium_pose, PoseStamped, queue_size=1)
        self.gripper = GripperCommander(rospy, t.gripper_command, self.config.gripper)
        self.status_pub = rospy.Publisher(f"{ns}/status", String, queue_size=10)
        rospy.Subscriber(f"{ns}/instruction", String, self._on_instruction, queue_size=1)
        rospy.Subscriber(f"{ns}/success", Bool, self._on_success, queue_size=1)
        rospy.Subscriber(f"{ns}/estop", Bool, self._on_estop, queue_size=10)
        for name, handler in (("start", self._start), ("stop", self._stop), ("reset", self._reset),
                              ("reset_estop", self._reset_estop)):
            rospy.Service(f"{ns}/{name}", Trigger, handler)

    # ---- operator interface -------------------------------------------------------------------
    def _on_instruction(self, msg) -> None:
        with self.lock:
            self.instruction = msg.data.strip()

    def _on_success(self, msg) -> None:
        with self.lock:
            self.success = bool(msg.data)

    def _on_estop(self, msg) -> None:
        if msg.data:
            self.safety.estop("operator e-stop")
            rospy.logerr("e-stop latched; call the reset_estop service to clear it")

    def _start(self, _req):
        with self.lock:
            if self.safety.estopped:
                return TriggerResponse(False, f"e-stop latched ({self.safety.estop_reason}): call reset_estop first")
            if not self.instruction:
                return TriggerResponse(False, "no instruction: publish one on the instruction topic first")
            self.running, self.success, self._new_episode = True, False, True
            self.episode += 1  # a reply still out from before belongs to no step of this episode
            self.actions.reset()
            if self.config.record:
                self.recorder.begin(self.instruction)
        return TriggerResponse(True, f"episode started: {self.instruction!r}")

    def _stop(self, _req):
        with self.lock:
            self.running = False
            self.actions.clear()
            success = self.success
        path = self.recorder.save(success) if self.config.record else None
        return TriggerResponse(True, str(path) if path else "stopped; no executed step to save")

    def _reset(self, _req):
        with self.lock:
            self.running = False
            self.actions.clear()
            self.recorder.discard()
        return TriggerResponse(True, "episode discarded")

    def _reset_estop(self, _req):
        self.safety.reset_estop()
        return TriggerResponse(True, "e-stop cleared")

    # ---- control loop -------------------------------------------------------------------------
    def _next_action(self, obs: dict, age: float, now: float) -> tuple[Optional[np.ndarray], str]:
        """The action for this period, or (None, why not). Never blocks longer than half a period."""
        queue = self.actions
        if queue.remaining and not self.client.connected:
            queue.clear()  # the server went away: a chunk computed before is not trusted
            self._server_state = "server lost (connection closed)"
        healthy = True
        if self._request is not None and (self._request.future.done() or not queue.remaining):
            healthy = self._collect()
        if healthy and self._request is None and queue.due(self.prefetch_steps()):
            self._send(obs, age, now)
            if not queue.remaining:  # nothing left to run: wait for this reply, at most half a period
                self._collect()
        action = queue.pop()
        if action is not None:
            return action, "ok"
        if self._request is not None:
            return None, f"waiting for the server ({(time.monotonic() - self._request.sent) * 1000:.0f} ms)"
        return None, self._server_state

    def prefetch_steps(self) -> int:
        """Ask for the next chunk while this many actions remain: `prefetch_steps`, or with `prefetch_margin_s`
        as many as the slowest of the latest round trips plus the margin takes (below `execute_steps`)."""
        steps, margin = self.config.prefetch_steps, self.config.prefetch_margin_s
        if margin is not None and self._round_trips:
            needed = math.ceil((max(self._round_trips) + margin) / self.period)
            steps = max(steps, min(needed, self.config.execute_steps - 1))
        return steps

    def _send(self, obs: dict, age: float, now: float) -> None:
        """Ask for a chunk on this observation, from the worker thread."""
        request = {k: v for k, v in obs.items() if k != "ee_quat"}
        request["instruction"] = self.instruction
        request["reset"], self._new_episode = self._new_episode, False
        request["timestep"] = self.actions.step
        future = self._executor.submit(self._infer, request)
        # now - age = time.monotonic() when the observation's oldest part was captured
        self._request = Request(future, now, now - age, self.actions.step, self.episode)

    def _infer(self, request: dict) -> tuple[dict, float]:
        return self.client.infer(request), time.monotonic()

    def _collect(self) -> bool:
        """Take the reply of the request in flight if it has come (waiting until half a period after it was
        sent): its chunk joins the queue. False when it failed or was dropped (the reason is `_server_state`);
        a failed request also empties the queue, so nothing computed before the failure runs after it."""
        request = self._request
        try:
            reply, came = request.future.result(timeout=max(0.0, request.sent + 0.5 * self.period - time.monotonic()))
        except TimeoutError:
            return True  # still out
        except Exception as exc:  # ServerUnavailable, ServerError, or a bug: never motion from it
            kind = "server lost" if isinstance(exc, ServerUnavailable) else "bad server reply"
            self._request, self._server_state = None, f"{kind}: {exc}"
            self.actions.clear()
            return False
        self._request = None
        self._round_trips.append(came - request.sent)
        if request.episode != self.episode:
            return True  # asked for in an earlier episode: none of its steps are this episode's
        image_age = time.monotonic() - request.image_time
        if not image_age <= self.config.safety.max_observation_age_s:  # fails closed
            self._server_state = f"reply too late: its image is {image_age:.3f} s old"
            return False
        if self.actions.add(reply["actions"], request.step) == 0:
            executed = self.actions.step - request.step
            self._server_state = f"reply too late: {executed} actions ran while it was computed, none of its own left"
            return False
        self._server_state = "ok"
        return True

    def step(self) -> Command:
        """One control period."""
        now = time.monotonic()
        obs, age = self.sensors.snapshot(rospy.get_time())
        with self.lock:
            running = self.running
            fresh = obs is not None and age <= self.config.safety.max_observation_age_s
            error = self.sensors.image_error
            starved = False  # held for want of an action (not for safety's sake)
            if running and fresh and error is None and not self.safety.estopped:
                action, why = self._next_action(obs, age, now)
                starved = action is None
            else:  # actions computed from images before this pause must not run after it
                self.actions.clear()
                action, why = None, "no fresh observation"
            command = self.safety.command(action, self.sensors.latest_pose(), age, missing_reason=why,
                                          observation_error=error)
            if running and command.pose is not None:
                self._publish(command)
            if running and not command.hold and self.config.record:
                self.recorder.add_step(action=command.executed_action, agentview_rgb=obs["agentview_rgb"],
                                       eye_in_hand_rgb=obs.get("eye_in_hand_rgb"), ee_pos=obs["ee_pos"],
                                       ee_ori=obs["ee_ori"], gripper_qpos=obs["gripper_qpos"],
                                       joint_qpos=obs["joint_qpos"])
        self.status_pub.publish(String(json.dumps({
            "tick": self.tick, "tick_time": now, "state": "running" if running else "idle", "hold": command.hold,
            "reason": command.reason, "estop": self.safety.estop_reason, "observation_age_s": min(age, 1e9),
            "recorded_steps": self.recorder.num_steps, "timestep": self.actions.step, "queued": self.actions.remaining,
            "starved": starved,
            "round_trip_ms": round(self._round_trips[-1] * 1000.0, 1) if self._round_trips else None})))
        self.tick += 1
        return command

    def _publish(self, command: Command) -> None:
        if not pose_is_finite(command.pose):  # the safety layer never gives one; a bug there must not reach the arm
            self.safety.estop(f"non-finite target pose {command.pose}")
            return
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = rospy.Time.now(), self.config.frame_id
        (msg.pose.position.x, msg.pose.position.y, msg.pose.position.z) = map(float, command.pose.position)
        q = msg.pose.orientation
        (q.x, q.y, q.z, q.w) = map(float, command.pose.quat)
        self.pose_pub.publish(msg)
        if command.gripper is not None:
            self.gripper.command(command.gripper)

    def spin(self) -> None:
        """Run `step` at the configured rate against absolute deadlines (no drift) until shutdown."""
        realtime = self.config.realtime
        spin_s = realtime.spin_ms / 1000.0 if realtime.enabled else 0.0
        if realtime.enabled:
            problem = enable_fifo(realtime.priority)
            if problem:
                rospy.logwarn(problem)
            mode = "normal scheduling" if problem else f"SCHED_FIFO {realtime.priority}"
            rospy.loginfo(f"lara_policy: realtime loop ({mode}), waking {realtime.spin_ms:g} ms early to spin")
        deadline = time.monotonic()
        while not rospy.is_shutdown():
            try:
                self.step()
            except Exception as exc:  # a bug in one period must not leave the arm following a stale target
                self.safety.estop(f"control loop error: {type(exc).__name__}: {exc}")
                rospy.logerr(f"control loop error, e-stop latched: {exc}")
            deadline += self.period
            delay = deadline - time.monotonic()
            if delay < 0:  # overran: skip the missed periods rather than bursting to catch up
                deadline += self.period * np.ceil(-delay / self.period)
            sleep_until(deadline, spin_s)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()


PROG = "python -m lara.real_robot.ros_node"


def read_config(argv: list[str]) -> NodeConfig:
    """The node's flags (rospy's `name:=value` remappings set aside) applied to its config, every field checked; a
    mistyped flag or a bad value ends on one line with exit 2 before the node touches ROS."""
    parser = argparse.ArgumentParser(prog=PROG, description="LARA policy node for a Franka (ROS 1)")
    parser.add_argument("--config", default=None, help="YAML config (default: the packaged config.yaml)")
    parser.add_argument("--host", default=None, help="override server.host")
    parser.add_argument("--port", type=tcp_port, default=None, help="override server.port (1..65535)")
    parser.add_argument("--realtime", action="store_true", help="set realtime.enabled: SCHED_FIFO + early-wake spin")
    args = parser.parse_args(rospy.myargv([PROG, *argv])[1:])  # an unknown flag is an error, not ignored
    server = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    overrides = {"server": server} if server else {}
    if args.realtime:
        overrides["realtime"] = {"enabled": True}
    config = load_config(args.config, **overrides)
    if config.record:
        EpisodeRecorder(config.episodes_dir).prepare()
    return config


def main(argv: list[str] | None = None) -> int:
    config = read_config(sys.argv[1:] if argv is None else argv)
    sys.setswitchinterval(0.001)  # the control thread gets the GIL back within 1 ms, not Python's default 5 ms
    rospy.init_node("lara_policy", disable_signals=False)
    node = PolicyNode(config)
    rospy.loginfo(f"lara_policy: {config.rate_hz} Hz, server ws://{config.server.host}:{config.server.port}, "
                  f"state from {'FrankaState' if FrankaState else 'JointState + PoseStamped'}, "
                  f"gripper {'actions + topic' if node.gripper.uses_actions else 'topic only'}")
    node.spin()
    return 0


if __name__ == "__main__":
    from lara.errors import run_command  # a user error ends on one line with exit 2, as every `lara` command

    raise SystemExit(run_command(PROG, main, sys.argv[1:]))
