"""A physics-simulated Franka: robosuite's Panda under its operational-space controller (OSC_POSE).

    arm = RobosuiteFranka(control_hz=50)          # 3-16 s: builds the MuJoCo model and the renderer
    arm.set_target(position, quat)                 # absolute, robot base frame (like equilibrium_pose)
    arm.advance()                                  # one control period of physics (1 / control_hz s)
    arm.state(), arm.render(96)

The scene is robosuite's Lift table (a cube in front of the robot); the robot is the only thing
controlled. Each period the absolute target is turned into the OSC's delta input: the error from the
measured grip-site pose to the target, clipped to the controller's per-period output limits (0.05 m,
0.5 rad per axis) and scaled into its [-1, 1] input range. The OSC recomputes torques every physics
substep (2 ms) toward the goal set at the period's start, with gravity and inertia compensated, so the
arm behaves like franka_ros' Cartesian impedance controller following `equilibrium_pose` (stiffness
kp = 150, critically damped). The gripper follows the sign of the gripper command (+1 close, -1 open).

Poses are reported in the robot base frame (robosuite's world is offset by the base mount), joint
positions are the sim's seven arm joints, finger positions are both positive (franka_gripper's
convention, 0.04 m = open). Rendering is MuJoCo offscreen (EGL or OSMesa, chosen like the LIBERO
harness) with shadows and reflections off: on these CPUs a 64-96 px frame costs ~40-50 ms.
"""

from __future__ import annotations

import threading

import numpy as np

from lara.real_robot.rotations import matrix_to_quat, quat_normalize, quat_to_matrix, rotation_between
from lara.real_robot.sim_kinematic import ArmState


class RobosuiteFranka:
    def __init__(self, control_hz: float = 50.0, camera: str = "agentview") -> None:
        from lara.mujoco_gl import select_gl_backend

        select_gl_backend()  # before robosuite imports mujoco
        import mujoco
        import robosuite
        from robosuite import load_controller_config

        controller = load_controller_config(default_controller="OSC_POSE")
        if not controller["control_delta"]:
            raise RuntimeError("robosuite's OSC_POSE default config is expected to take delta inputs")
        self.env = robosuite.make(
            "Lift", robots="Panda", controller_configs=controller, control_freq=control_hz,
            has_renderer=False, has_offscreen_renderer=True, use_camera_obs=False, use_object_obs=False,
            horizon=10**9, ignore_done=True, hard_reset=False)
        self.env.reset()
        self.camera = camera
        if camera not in self.env.sim.model.camera_names:
            raise ValueError(f"camera {camera!r} is not in the scene; it has {list(self.env.sim.model.camera_names)}")
        scene_flags = self.env.sim._render_context_offscreen.scn.flags  # the robosuite-owned offscreen context
        scene_flags[mujoco.mjtRndFlag.mjRND_SHADOW] = scene_flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self.period_s = self.env.control_timestep
        robot = self.env.robots[0]
        self._osc = robot.controller
        self._site = robot.eef_site_id
        self._joints = robot._ref_joint_pos_indexes
        self._joint_velocities = robot._ref_joint_vel_indexes
        self._fingers = robot._ref_gripper_joint_pos_indexes
        base = self.env.sim.data.get_body_xpos(robot.robot_model.root_body).copy()
        base_rotation = quat_to_matrix(np.roll(self.env.sim.data.get_body_xquat(robot.robot_model.root_body), -1))
        self._base = base, base_rotation  # world = base + base_rotation @ base_frame
        self._limit = np.asarray(self._osc.output_max, dtype=np.float64)  # per-period position / rotation limits
        self.lock = threading.Lock()
        state = self.state()
        self.target_position, self.target_quat = state.position, state.quat
        self.gripper = -1.0  # open

    def set_target(self, position: np.ndarray, quat: np.ndarray) -> None:
        with self.lock:
            self.target_position, self.target_quat = np.asarray(position, np.float64), quat_normalize(quat)

    def set_gripper(self, command: float) -> None:
        with self.lock:
            self.gripper = 1.0 if command > 0 else -1.0

    def _measured(self) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position and rotation matrix in the base frame, straight from the sim."""
        base, rotation = self._base
        data = self.env.sim.data
        position = rotation.T @ (data.site_xpos[self._site] - base)
        return position, rotation.T @ data.site_xmat[self._site].reshape(3, 3)

    def osc_input(self) -> np.ndarray:
        """The 7-D action that moves the goal toward the target by at most the controller's limits."""
        with self.lock:
            target_position, target_quat, gripper = self.target_position, self.target_quat, self.gripper
        position, rotation = self._measured()
        base_rotation = self._base[1]
        translation = base_rotation @ (target_position - position)  # world frame, as the OSC works
        turn = base_rotation @ rotation_between(matrix_to_quat(rotation), target_quat)
        delta = np.clip(np.concatenate([translation, turn]), -self._limit, self._limit)
        return np.concatenate([delta / self._limit, [gripper]])  # the OSC scales [-1, 1] by output_max

    def advance(self) -> None:
        """One control period (`period_s` of simulated time: several 2 ms physics substeps)."""
        self.env.step(self.osc_input())

    def state(self) -> ArmState:
        position, rotation = self._measured()
        data = self.env.sim.data
        return ArmState(position=position, quat=matrix_to_quat(rotation), joints=data.qpos[self._joints].copy(),
                        joint_velocities=data.qvel[self._joint_velocities].copy(),
                        fingers=np.abs(data.qpos[self._fingers]))

    def render(self, size: int) -> np.ndarray:
        """uint8 [size, size, 3] from the scene camera, upright (OpenGL's rows come bottom-up)."""
        frame = self.env.sim.render(width=size, height=size, camera_name=self.camera)
        return np.ascontiguousarray(frame[::-1])

    def close(self) -> None:
        self.env.close()
