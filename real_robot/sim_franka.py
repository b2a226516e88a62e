"""A simulated Franka for hardware-free runs: the same ROS topics as franka_ros + a camera.

    python -m lara.real_robot.sim_franka --config real_robot/config.yaml [--backend robosuite|kinematic]
        [--image-size 96] [--camera-hz 10] [--state-hz 50]

Backends:
  robosuite (default, for users): robosuite's Panda under the operational-space controller, physics
      stepped in real time, agentview camera rendered by MuJoCo offscreen (`sim_robosuite.py`). Takes
      3-16 s to build; publishing starts only then.
  kinematic (for the tests of pure ROS behaviour: timing, faults, safety): a first-order Cartesian
      arm with a numpy-drawn camera that starts instantly and costs nothing (`sim_kinematic.py`).

One loop does everything at `--state-hz` (the physics control rate): advance the arm by one period,
publish its state, and render + publish a camera frame when one is due. It sleeps to absolute
deadlines so simulated time follows wall time; a period that runs late (a camera frame) is made up by
stepping without sleeping, and a lag beyond 0.25 s is dropped with a warning (the sim then runs
slower than real time: lower --camera-hz or --image-size).

Publishes: ee_pose (PoseStamped, robot base frame) and joint_states (JointState: panda_joint1..7,
panda_finger_joint1..2) every period, franka_state (franka_msgs/FrankaState: O_T_EE, q, dq) too when
franka_msgs is importable, the agentview camera (Image rgb8) at --camera-hz, and `~ready`
(std_msgs/Bool, latched, True once the arm is up: wait for it). Subscribes: equilibrium_pose
(PoseStamped, absolute target in the base frame), gripper_command (Float64, +1 close, -1 open).
Serves franka_gripper's grasp and move actions under `gripper.action_namespace` when franka_gripper
is importable (`python -m lara.real_robot.franka_gripper_msgs` generates it).
Topic names come from the node config (`--config`), so the node and the sim always agree; the image
size defaults to the config's `image_size`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from lara.real_robot.config import load_config
from lara.real_robot.gripper import import_franka_gripper
from lara.real_robot.ros import import_rospy
from lara.real_robot.rotations import quat_to_matrix

rospy = import_rospy()
from geometry_msgs.msg import PoseStamped  # noqa: E402  (needs import_rospy first)
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64  # noqa: E402

try:
    from franka_msgs.msg import FrankaState
except ImportError:  # franka_ros is not on Debian: JointState + PoseStamped only
    FrankaState = None

JOINT_NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
MAX_LAG_S = 0.25  # behind wall time by more than this: stop catching up, let sim time slip


def make_arm(backend: str, control_hz: float):
    if backend == "kinematic":
        from lara.real_robot.sim_kinematic import KinematicFranka

        return KinematicFranka(control_hz=control_hz)
    from lara.real_robot.sim_robosuite import RobosuiteFranka

    return RobosuiteFranka(control_hz=control_hz)


class StatePublisher:
    def __init__(self, topics) -> None:
        self.pose = rospy.Publisher(topics.ee_pose, PoseStamped, queue_size=1)
        self.joints = rospy.Publisher(topics.joint_states, JointState, queue_size=1)
        self.franka = rospy.Publisher(topics.franka_state, FrankaState, queue_size=1) if FrankaState else None
        self.image = rospy.Publisher(topics.agentview_image, Image, queue_size=1)
        self.latest = None  # the last published ArmState, for readers in other threads

    def publish_state(self, state) -> None:
        self.latest = state
        now = rospy.Time.now()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = now, "panda_link0"
        p, o = pose.pose.position, pose.pose.orientation
        p.x, p.y, p.z = map(float, state.position)
        o.x, o.y, o.z, o.w = map(float, state.quat)
        self.pose.publish(pose)
        joints = JointState(name=JOINT_NAMES, position=[*map(float, state.joints), *map(float, state.fingers)])
        joints.header.stamp = now
        self.joints.publish(joints)
        if self.franka is not None:
            transform = np.eye(4)
            transform[:3, :3], transform[:3, 3] = quat_to_matrix(state.quat), state.position
            msg = FrankaState(O_T_EE=list(transform.T.flatten()), q=list(state.joints))  # column-major, as libfranka
            if "dq" in msg.__slots__:  # FrankaState varies across franka_ros releases; these three are in all
                msg.dq = list(state.joint_velocities)
            msg.header.stamp = now
            self.franka.publish(msg)

    def publish_image(self, frame: np.ndarray, stamp) -> None:
        height, width = frame.shape[:2]
        msg = Image(height=height, width=width, encoding="rgb8", step=3 * width, data=frame.tobytes())
        msg.header.stamp, msg.header.frame_id = stamp, "agentview_camera"
        self.image.publish(msg)


class GripperActions:
    """franka_gripper's `grasp` and `move` action servers on the simulated fingers. The simulated gripper
    only opens fully or closes: a Move succeeds when the fingers settle within 5 mm of its width, a Grasp
    when they settle within [width - epsilon.inner, width + epsilon.outer] (franka_gripper's rule)."""

    def __init__(self, franka_gripper, namespace: str, arm, publisher: StatePublisher, timeout_s: float = 3.0) -> None:
        actionlib, self.msg = franka_gripper
        self.arm, self.publisher, self.timeout_s = arm, publisher, timeout_s
        self.grasp = actionlib.SimpleActionServer(f"{namespace}/grasp", self.msg.GraspAction, self._grasp,
                                                  auto_start=False)
        self.move = actionlib.SimpleActionServer(f"{namespace}/move", self.msg.MoveAction, self._move, auto_start=False)
        self.grasp.start()
        self.move.start()

    def _width(self) -> float:
        return float(self.publisher.latest.fingers.sum())

    def _settle(self, command: float) -> float:
        """Drive the fingers until they stop (< 0.5 mm in 0.1 s) or time out; returns the width."""
        self.arm.set_gripper(command)
        deadline, width = time.monotonic() + self.timeout_s, self._width()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            width, before = self._width(), width
            if abs(width - before) < 0.0005:
                break
        return width

    def _grasp(self, goal) -> None:
        width = self._settle(1.0)
        low, high = goal.width - goal.epsilon.inner, goal.width + goal.epsilon.outer
        if low <= width <= high:
            self.grasp.set_succeeded(self.msg.GraspResult(success=True))
        else:
            error = f"fingers stopped at {width:.4f} m, outside the grasp tolerance [{low:.4f}, {high:.4f}] m"
            self.grasp.set_aborted(self.msg.GraspResult(success=False, error=error))

    def _move(self, goal) -> None:
        width = self._settle(-1.0 if goal.width > self._width() else 1.0)
        if abs(width - goal.width) <= 0.005:
            self.move.set_succeeded(self.msg.MoveResult(success=True))
        else:
            error = f"fingers stopped at {width:.4f} m, not {goal.width:.4f} m (the sim gripper only opens or closes)"
            self.move.set_aborted(self.msg.MoveResult(success=False, error=error))


def run(arm, publisher: StatePublisher, image_size: int, camera_hz: float) -> None:
    """Step, publish and render in real time until shutdown (one thread: the GL context lives here)."""
    period, camera_period = arm.period_s, 1.0 / camera_hz
    next_tick = next_frame = time.monotonic()
    slipped = 0.0
    while not rospy.is_shutdown():
        arm.advance()
        publisher.publish_state(arm.state())
        if time.monotonic() >= next_frame:
            stamp = rospy.Time.now()  # the frame shows the sim as it is now, not when rendering ends
            publisher.publish_image(arm.render(image_size), stamp)
            next_frame = max(next_frame + camera_period, time.monotonic())
        next_tick += period
        lag = time.monotonic() - next_tick
        if lag > MAX_LAG_S:
            slipped += lag
            next_tick = time.monotonic()
            rospy.logwarn_throttle(5.0, f"sim_franka: {slipped:.2f} s behind wall time so far (physics + camera "
                                        "exceed real time): lower --camera-hz or --image-size")
        elif lag < 0:
            time.sleep(-lag)


def positive(kind: type):
    """argparse type: a finite number of `kind` above 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a finite {kind.__name__} above 0, got {text!r}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lara.real_robot.sim_franka",
                                     description="simulated Franka publishing franka_ros-like topics")
    parser.add_argument("--config", default=None, help="node YAML config whose topic names and image size to use")
    parser.add_argument("--backend", choices=("robosuite", "kinematic"), default="robosuite",
                        help="robosuite: physics (Panda + OSC); kinematic: instant, no physics, for ROS tests")
    parser.add_argument("--image-size", type=positive(int), default=None,
                        help="camera width = height, pixels (default: the config's image_size, else 96)")
    parser.add_argument("--camera-hz", type=positive(float), default=10.0, help="camera frame rate")
    parser.add_argument("--state-hz", type=positive(float), default=50.0, help="physics control rate = pose / joint state rate")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(rospy.myargv([parser.prog, *argv])[1:])  # remappings (name:=value) aside; a typo errs
    config = load_config(args.config)
    image_size = args.image_size or (config.image_size[0] if config.image_size else 96)
    if config.image_size and config.image_size[0] != config.image_size[1]:
        parser.error(f"the sim renders square frames; the config's image_size is {list(config.image_size)}")
    rospy.init_node("sim_franka")
    ready = rospy.Publisher("~ready", Bool, queue_size=1, latch=True)
    ready.publish(False)
    started = time.monotonic()
    arm = make_arm(args.backend, args.state_hz)
    arm.render(image_size)  # the first frame compiles shaders and uploads textures: not in the timed loop
    publisher = StatePublisher(config.topics)
    rospy.Subscriber(config.topics.equilibrium_pose, PoseStamped, lambda m: arm.set_target(
        np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z]),
        np.array([m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w])),
        queue_size=1)
    rospy.Subscriber(config.topics.gripper_command, Float64, lambda m: arm.set_gripper(m.data), queue_size=1)
    publisher.publish_state(arm.state())  # the action servers read the fingers from here
    franka_gripper = import_franka_gripper()
    namespace = config.gripper.action_namespace
    gripper = GripperActions(franka_gripper, namespace, arm, publisher) if franka_gripper else None
    rospy.loginfo(f"sim_franka ready: {args.backend} arm up in {time.monotonic() - started:.1f} s, "
                  f"state {args.state_hz:g} Hz, camera {image_size} px at {args.camera_hz:g} Hz, "
                  f"{'FrankaState, ' if FrankaState else ''}gripper "
                  f"{'topic + franka_gripper actions' if gripper else 'topic only'}")
    ready.publish(True)
    try:
        run(arm, publisher, image_size, args.camera_hz)
    except rospy.ROSInterruptException:
        pass
    finally:
        arm.close()
    return 0


if __name__ == "__main__":
    from lara.errors import run_command  # a bad config ends on one line with exit 2

    raise SystemExit(run_command("python -m lara.real_robot.sim_franka", main, sys.argv[1:]))
