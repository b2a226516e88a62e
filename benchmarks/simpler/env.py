"""ManiSkill3 wrapper for SIMPLER's Bridge (WidowX) tasks and other ManiSkill tasks, in `lara.policy` keys.

    env = ManiSkillEnv("PutCarrotOnPlateInScene-v1", image_size=256, assets="/data/ms_assets")
    obs = env.reset(episode_id=3, seed=0)          # SIMPLER's fixed configuration 3 (object places and yaw)
    obs, info = env.step(policy_action)            # info["success"], info["is_src_obj_grasped"], ...

The protocol (SimplerEnv's ManiSkill3 evaluation, checked against ManiSkill 3.0.1's bridge_dataset_eval):
`obs_mode="rgb+segmentation"` (the segmentation drives the real-image background overlay), the image is
`sensor_data/3rd_view_camera/rgb` (640x480) resized to the policy's square size, controller
`arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos` at 5 Hz, episodes chosen by `episode_id`.

Actions. A `lara.policy` action is (dx, dy, dz, droll, dpitch, dyaw, gripper) with gripper -1 = open,
+1 = close. `to_maniskill_action` maps it to the controller's 7-D input:
- xyz: metres, the robot base frame, passed through (the controller does not scale: normalize_action=False);
- gripper: binarised and negated, since the WidowX gripper controller maps -1..+1 to closed..open;
- rotation: the delta rotation is R = Rz(dyaw) Ry(dpitch) Rx(droll) (roll-pitch-yaw about the base axes,
  the Bridge dataset's convention). ManiSkill 3.0.1's `PDEEPoseController` reads its three rotation inputs as
  intrinsic XYZ Euler angles (`euler_angles_to_matrix(rot, "XYZ")`) and applies them in the base-aligned frame
  at the end effector, while SimplerEnv's ManiSkill3 script feeds it the axis-angle vector of R (as it did for
  ManiSkill2's axis-angle controller). `rotation="simpler"` (the default) does what SimplerEnv does, so that
  scores compare with published ones; `rotation="exact"` feeds the intrinsic XYZ angles of R, so the applied
  rotation is exactly R. The two agree to second order in the angle (per-step deltas are small).

Any other ManiSkill task (e.g. PickCube-v1, whose Panda assets ship in the wheel) runs through the same
wrapper with its first sensor camera and the `pd_ee_delta_pose` controller (the same 7-D layout, normalised).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lara.benchmarks.simpler.assets import BRIDGE_TASKS, check_assets, resolve_asset_dir
from lara.errors import InputError

BRIDGE_CONTROL_MODE = "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
GENERIC_CONTROL_MODE = "pd_ee_delta_pose"
BRIDGE_CAMERA = "3rd_view_camera"
ROTATIONS = ("simpler", "exact")
VULKAN_HINT = ("sapien renders through Vulkan; on a CPU that is Mesa's lavapipe, which needs Mesa >= 25: "
               "`apt-get install mesa-vulkan-drivers/bookworm-backports` (scripts/install-system-deps.sh does it)")


def rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll): roll, pitch, yaw about the fixed base axes."""
    roll, pitch, yaw = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def controller_rotation(rpy: np.ndarray, rotation: str = "simpler") -> np.ndarray:
    """The controller's 3 rotation inputs for a policy's (droll, dpitch, dyaw); see the module docstring."""
    from transforms3d.euler import euler2axangle, mat2euler

    if rotation == "simpler":
        axis, angle = euler2axangle(*(float(a) for a in rpy), axes="sxyz")
        return np.asarray(axis) * angle
    if rotation == "exact":
        return np.asarray(mat2euler(rpy_matrix(rpy), axes="rxyz"))  # R = Rx(a) Ry(b) Rz(c)
    raise InputError(f"rotation must be one of {list(ROTATIONS)}, got {rotation!r}")


def to_maniskill_action(action: np.ndarray, rotation: str = "simpler") -> np.ndarray:
    """A `lara.policy` 7-D action -> the ManiSkill EE delta-pose controller's 7-D action (float32)."""
    action = np.asarray(action, dtype=np.float64).reshape(7)
    gripper = -1.0 if action[6] > 0 else 1.0  # ours: +1 close; WidowX / Panda controllers: -1 closed, +1 open
    return np.concatenate([action[:3], controller_rotation(action[3:6], rotation), [gripper]]).astype(np.float32)


def versions() -> dict[str, str]:
    """mani-skill, sapien and the Vulkan driver's Mesa version, stored with every result."""
    found = {}
    for dist in ("mani-skill", "sapien", "gymnasium"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    try:  # the Debian package that provides lavapipe
        import subprocess

        found["mesa-vulkan-drivers"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "mesa-vulkan-drivers"], capture_output=True, text=True).stdout or "?"
    except OSError:
        found["mesa-vulkan-drivers"] = "?"
    return found


def _import_maniskill(asset_dir: Path):
    """Import mani_skill with MS_ASSET_DIR = asset_dir (it reads the variable once, at import)."""
    import sys

    os.environ["MS_ASSET_DIR"] = str(asset_dir)
    if "mani_skill" in sys.modules:
        loaded = Path(sys.modules["mani_skill"].ASSET_DIR)  # = MS_ASSET_DIR/data
        if loaded.resolve() != (asset_dir / "data").resolve():
            raise RuntimeError(f"mani_skill was imported with MS_ASSET_DIR={loaded}; this process cannot switch to "
                               f"{asset_dir} (run it in a new process)")
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)
    from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval import put_on_in_scene  # noqa: F401
    from mani_skill.utils.logging_utils import logger

    logger.setLevel(logging.ERROR)  # CUDA-not-found, mimic-joint and initial-pose warnings on every env
    return gym


def _numpy(value) -> np.ndarray:
    return value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)


class ManiSkillEnv:
    """One ManiSkill3 task on the CPU backend, one env; observations and actions in `lara.policy` terms."""

    def __init__(self, env_id: str, image_size: int = 256, assets: str | Path | None = None,
                 rotation: str = "simpler", camera: str | None = None, max_steps: int | None = None):
        if rotation not in ROTATIONS:
            raise InputError(f"rotation must be one of {list(ROTATIONS)}, got {rotation!r}")
        self.env_id, self.image_size, self.rotation = env_id, image_size, rotation
        self.bridge = env_id in BRIDGE_TASKS
        self.asset_dir = resolve_asset_dir(assets)
        if self.bridge:
            check_assets(self.asset_dir, [env_id])  # before ManiSkill can prompt or create folders
        gym = _import_maniskill(self.asset_dir)
        if env_id not in gym.registry:
            raise InputError(f"{env_id!r} is not a registered ManiSkill task (e.g. PickCube-v1 or one of "
                             f"{sorted(BRIDGE_TASKS)})")
        kwargs = dict(obs_mode="rgb+segmentation", control_mode=BRIDGE_CONTROL_MODE) if self.bridge else \
            dict(obs_mode="rgb", control_mode=GENERIC_CONTROL_MODE)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.env = gym.make(env_id, num_envs=1, sim_backend="cpu", render_backend="cpu", **kwargs)
        except RuntimeError as error:
            if "physical device" in str(error) or "vulkan" in str(error).lower():
                raise RuntimeError(f"{error}. {VULKAN_HINT}") from error
            raise
        self.unwrapped = self.env.unwrapped
        sensors = list(self.unwrapped._sensor_configs)
        self.camera = camera or (BRIDGE_CAMERA if self.bridge else sensors[0])
        if self.camera not in sensors:
            raise InputError(f"{env_id} has no camera {self.camera!r}; its cameras: {sensors}")
        self.max_steps = max_steps or (BRIDGE_TASKS[env_id].max_steps if self.bridge
                                       else self.env.spec.max_episode_steps or 100)
        self.instruction = ""
        self.frame: np.ndarray | None = None  # the last full-size camera image (for videos)
        self._raw: dict[str, Any] = {}

    @property
    def arm_controller(self):
        return self.unwrapped.agent.controller.controllers["arm"]

    def base_pose(self):
        """The robot base's sapien-style pose (p, q wxyz) in the world."""
        return self.unwrapped.agent.robot.pose

    def to_base(self, world_pose):
        """A world pose (ManiSkill Pose) expressed in the robot base frame, the frame of the xyz actions."""
        return self.base_pose().inv() * world_pose

    def reset(self, episode_id: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Reset with the env's generator seeded by `seed`; Bridge tasks take SIMPLER's `episode_id`
        (object positions and orientation; it wraps modulo the task's configuration count)."""
        import torch

        options = {}
        if self.bridge:
            if episode_id is None:
                raise ValueError("a SIMPLER Bridge task is reset by episode_id (0..23, eggplant 0..63)")
            options["episode_id"] = torch.tensor([int(episode_id)])
        self._raw, _ = self.env.reset(seed=int(seed), options=options)
        self.instruction = self.unwrapped.get_language_instruction()[0] if self.bridge else \
            getattr(self.unwrapped, "instruction", self.env_id)
        return self.observation()

    def place(self, poses: dict[str, tuple[np.ndarray, np.ndarray]], settle_steps: int = 5) -> dict[str, Any]:
        """Move the named objects (world position xyz, quaternion wxyz) after a reset, then hold the arm still
        for `settle_steps` control steps so they come to rest; returns the observation after that. For fresh
        placements (`lara data generate --bench simpler`): SIMPLER's own episodes are its fixed configurations."""
        from mani_skill.utils.structs.pose import Pose

        for name, (position, quaternion) in poses.items():
            self.unwrapped.objs[name].set_pose(Pose.create_from_pq(p=np.asarray(position, np.float32)[None],
                                                                   q=np.asarray(quaternion, np.float32)[None]))
        hold = np.array([0, 0, 0, 0, 0, 0, -1.0])  # no motion, gripper open
        for _ in range(settle_steps):
            self.step(hold)
        return self.observation()

    def object_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The task objects' world poses: name -> (xyz, quaternion wxyz)."""
        return {name: (_numpy(actor.pose.p)[0].astype(np.float64), _numpy(actor.pose.q)[0].astype(np.float64))
                for name, actor in self.unwrapped.objs.items()}

    def sim_state(self) -> np.ndarray:
        """The flat simulator state (ManiSkill's `get_state`): actors' and the robot's poses and velocities."""
        return _numpy(self.unwrapped.get_state())[0].astype(np.float64)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply one `lara.policy` action; returns (observation, info) with info's tensors as Python values."""
        self._raw, _, _, _, info = self.env.step(to_maniskill_action(action, self.rotation))
        return self.observation(), {k: _numpy(v).reshape(-1)[0].item() for k, v in info.items()
                                    if hasattr(v, "shape") or isinstance(v, (bool, int, float))}

    def observation(self) -> dict[str, Any]:
        import cv2
        from transforms3d.quaternions import quat2axangle

        frame = _numpy(self._raw["sensor_data"][self.camera]["rgb"])[0].astype(np.uint8)
        self.frame = frame
        size = (self.image_size, self.image_size)
        image = frame if frame.shape[:2] == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        ee = self.arm_controller.ee_pose_at_base
        axis, angle = quat2axangle(_numpy(ee.q)[0])
        qpos = _numpy(self._raw["agent"]["qpos"])[0]
        arm = len(self.arm_controller.joints)
        return {"agentview_rgb": np.ascontiguousarray(image),
                "ee_pos": _numpy(ee.p)[0].astype(np.float64),
                "ee_ori": (np.asarray(axis) * angle).astype(np.float64),
                "gripper_qpos": qpos[arm:].astype(np.float64),
                "joint_qpos": qpos[:arm].astype(np.float64),
                "instruction": self.instruction}

    def close(self) -> None:
        self.env.close()
