"""Gripper commands: always a std_msgs/Float64 topic (-1 open, +1 close); with franka_ros installed
(franka_gripper importable) also franka_gripper's Grasp / Move actions, sent only when the binarised
command changes (the gripper firmware takes one goal at a time; re-sending every period would abort
the running grasp). A goal is sent only once the action client is connected to its server: ROS drops
messages published before a subscriber has connected, so an early goal would be lost without a trace.
Until then the change stays pending and is sent on the first period the server is there.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from lara.real_robot.safety import STRICT


def import_franka_gripper():
    """(actionlib, franka_gripper.msg), or None where either is missing. Called late, once `import_rospy()`
    has put Debian's ROS packages on the path: franka_ros comes from the ROS Noetic repositories on the
    robot PC, or from `python -m lara.real_robot.franka_gripper_msgs` elsewhere."""
    try:
        import actionlib
        from franka_gripper import msg
    except ImportError:
        return None
    return actionlib, msg


HAND_MAX_WIDTH_M, HAND_MAX_SPEED_M_S, HAND_MAX_FORCE_N = 0.08, 0.1, 140.0  # the Franka Hand's data sheet


class GripperConfig(BaseModel):
    model_config = STRICT

    use_franka_actions: bool = Field(True, description="send franka_gripper Grasp/Move goals when franka_gripper is importable")
    action_namespace: str = Field("/franka_gripper", min_length=1, description="namespace of the franka_gripper action servers (grasp, move)")
    open_width_m: float = Field(0.08, gt=0, le=HAND_MAX_WIDTH_M, description="finger opening commanded by 'open' (Panda hand: 0.08 m max)")
    grasp_width_m: float = Field(0.0, ge=0, le=HAND_MAX_WIDTH_M, description="nominal object width for 'close'; the epsilons make any width succeed")
    grasp_epsilon_m: float = Field(0.08, ge=0, le=HAND_MAX_WIDTH_M, description="inner and outer width tolerance of the grasp (at most the hand's 0.08 m)")
    speed_m_s: float = Field(0.1, gt=0, le=HAND_MAX_SPEED_M_S, description="finger speed (Panda hand: 0.1 m/s max)")
    force_n: float = Field(20.0, gt=0, le=HAND_MAX_FORCE_N, description="grasp force (Panda hand: 70 N continuous, 140 N max)")


class GripperCommander:
    def __init__(self, rospy, topic: str, config: GripperConfig) -> None:
        from std_msgs.msg import Float64

        self._float64, self._rospy = Float64, rospy
        self.config = config
        self.publisher = rospy.Publisher(topic, Float64, queue_size=1)
        self.last: Optional[float] = None
        self.grasp = self.move = None
        found = import_franka_gripper() if config.use_franka_actions else None
        if found is not None:
            actionlib, self._msg = found
            self.grasp = actionlib.SimpleActionClient(f"{config.action_namespace}/grasp", self._msg.GraspAction)
            self.move = actionlib.SimpleActionClient(f"{config.action_namespace}/move", self._msg.MoveAction)

    @property
    def uses_actions(self) -> bool:
        return self.grasp is not None

    def _connected(self, client) -> bool:
        # One check of the goal, cancel, result and feedback connections; a zero timeout would wait forever.
        return client.wait_for_server(self._rospy.Duration(0.001))

    def command(self, value: float) -> None:
        """value: +1 close, -1 open (already binarised by the safety layer)."""
        self.publisher.publish(self._float64(value))
        if self.grasp is None or value == self.last:
            self.last = value
            return
        if not self._connected(self.grasp if value > 0 else self.move):
            self._rospy.logwarn_throttle(5.0, f"franka_gripper {'grasp' if value > 0 else 'move'} server under "
                                              f"{self.config.action_namespace} not connected yet; goal held back")
            return
        self.last = value
        c, msg = self.config, self._msg
        if value > 0:
            epsilon = msg.GraspEpsilon(inner=c.grasp_epsilon_m, outer=c.grasp_epsilon_m)
            self.grasp.send_goal(msg.GraspGoal(width=c.grasp_width_m, epsilon=epsilon, speed=c.speed_m_s,
                                               force=c.force_n))
        else:
            self.move.send_goal(msg.MoveGoal(width=c.open_width_m, speed=c.speed_m_s))
