"""A privileged-state scripted expert for LIBERO: pick-and-place, drawers, knobs and pushing.

It reads the goal from the parsed BDDL, chains motion primitives (`primitives.py`) that plan
end-effector waypoints on the live sim's poses, geometry and joint axes, and tracks the waypoints
with a proportional controller in LIBERO's 7-D delta action space. It is a `lara.policy.Policy`
that needs the live env: `bind(env)`.

    goal                          primitives
    (On obj target) / (In ...)    pick and place (a plate onto a table region: slide it by its rim)
    (In obj drawer_region)        open the drawer if it is closed, then pick and place into it
    (Open drawer_region)          grasp the handle, pull along the slide joint
    (Turnon stove)                grasp the knob on its axis, twist it into its on range

`check_covered(problem)` says, from the BDDL alone, which goals it does not handle.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

from lara.benchmarks.libero.primitives import (MAX_OPENING, Scene, Waypoint, open_drawer, pick_and_place,
                                               push_flat, turn_knob)

POS_GAIN = 12.0  # action per metre of error, before clipping (full speed beyond ~8 cm)
ROT_GAIN = 2.0
PREDICATES = ("on", "in", "open", "turnon")
UNCOVERED_TARGETS = {  # fixture category -> why placing on it is not planned
    "wine_rack": "the rack holds bottles lying tilted in a slot: that needs an oriented insertion the expert "
                 "does not plan",
}


def owner_of(problem: dict, name: str) -> str:
    """The object a BDDL region belongs to ('wooden_cabinet_1_top_region' -> 'wooden_cabinet_1');
    objects own themselves."""
    return problem["regions"][name]["target"] if name in problem["regions"] else name


def category_of(problem: dict, name: str) -> str | None:
    """The BDDL category of a fixture or object ('wooden_cabinet_1' -> 'wooden_cabinet'), None if unknown."""
    for group in ("fixtures", "objects"):
        for category, names in problem[group].items():
            if name in names:
                return category
    return None


def check_covered(problem: dict) -> None:
    """Raise ValueError naming the reason when the expert has no plan for a parsed BDDL problem's goal."""
    goal = problem["goal_state"]
    if len(goal) != 1 or goal[0][0].lower() not in PREDICATES:
        raise ValueError(f"The scripted expert plans one goal predicate of {', '.join(PREDICATES)}; "
                         f"this task's goal is {goal}.")
    predicate, *args = goal[0]
    if predicate.lower() in ("on", "in"):
        category = category_of(problem, owner_of(problem, args[1]))
        if category in UNCOVERED_TARGETS:
            raise ValueError(f"The scripted expert does not cover {goal[0]}: {UNCOVERED_TARGETS[category]}.")


class ScriptedExpert:
    """Waypoint expert on privileged sim state. Bind it to a `LiberoEnv` first."""

    def __init__(self):
        self.env = None
        self.waypoints: list[Waypoint] = []
        self._stages: list[Callable[[np.ndarray], list[Waypoint]]] | None = None

    def bind(self, env) -> None:
        """Give the expert the live env (called by evaluation after each reset)."""
        self.env = env

    def reset(self, instruction: str) -> None:
        self.waypoints, self._index, self._steps, self._stages = [], 0, 0, None

    # ----- planning ---------------------------------------------------------------------------
    def _plan(self) -> list[Callable[[np.ndarray], list[Waypoint]]]:
        """The primitives that reach the goal, in order; each plans its waypoints when it starts (from the
        hand position then), so that it sees what the ones before it changed (an opened drawer)."""
        problem = self.env.parsed_problem
        try:
            check_covered(problem)
        except ValueError as error:
            raise ValueError(f"Task {self.env.task_name!r}: {error}") from None
        scene = Scene(self.env)
        predicate, *args = problem["goal_state"][0]
        predicate = predicate.lower()
        if predicate == "open":
            return [lambda here: open_drawer(scene, here, args[0], owner_of(problem, args[0]))]
        if predicate == "turnon":
            return [lambda here: turn_knob(scene, here, args[0])]
        obj, region = args
        target = owner_of(problem, region)
        on_table = category_of(problem, target) == "table"  # the table is no object of the scene: use its region
        if not on_table and target not in scene.bodies:
            raise ValueError(f"Goal target {region!r} belongs to {target!r}, no object of the scene "
                             f"({sorted(scene.bodies)}).")
        stages = []
        joint = scene.region_joint(region)
        if joint is not None and not self.env.env.env.get_object(target).is_open(scene.joint(joint)[0]):
            centre = np.mean(scene.boxes()[obj][:2], axis=0)  # (3,) the object to put in, grasped next
            stages.append(lambda here: open_drawer(scene, here, region, target, keep_clear=centre))
        lo, hi, _ = scene.boxes()[obj]
        if on_table and hi[2] - lo[2] < 0.03 and min(hi[:2] - lo[:2]) > MAX_OPENING:  # too wide to grasp: push
            return [lambda here: push_flat(scene, here, obj, region)]
        stages.append(lambda here: pick_and_place(scene, here, predicate, obj, None if on_table else target, region))
        return stages

    def release(self) -> None:
        """Switch to the release-and-retreat tail (open, then back off along the hand's approach axis),
        e.g. after the first `done`; a primitive whose current waypoint says `finish` runs to its end first."""
        if self.waypoints and self.waypoints[self._index].finish:  # straight to the primitive's last such step
            self._index = max(i for i, wp in enumerate(self.waypoints) if wp.finish)
            self._steps, self._stages = 0, []
            return
        here = self.env.observation()["ee_pos"]
        rotation = self._hand_rotation().copy()
        back = here - 0.08 * rotation[:, 2]  # the approach axis points out of the fingers
        self.waypoints = [Waypoint(here, 0.0, -1.0, min_steps=8, max_steps=8, rotation=rotation),
                          Waypoint(back, 0.0, -1.0, max_steps=200, rotation=rotation)]
        self._index, self._steps, self._stages = 0, 0, []

    # ----- control ----------------------------------------------------------------------------
    def _hand_rotation(self) -> np.ndarray:
        site = self.env.env.env.robots[0].eef_site_id
        return self.env.sim.data._data.site_xmat[site].reshape(3, 3)

    def _rotation_error(self, desired: np.ndarray) -> np.ndarray:
        """Axis-angle (3,) that turns the current hand into `desired`, world frame."""
        quat, error = np.zeros(4), np.zeros(3)
        mujoco.mju_mat2Quat(quat, (desired @ self._hand_rotation().T).flatten())
        mujoco.mju_quat2Vel(error, quat, 1.0)
        return error

    def _advance(self, obs) -> None:
        """Next waypoint when the current one is reached (or timed out); next primitive after the last."""
        if self._index < len(self.waypoints):
            wp = self.waypoints[self._index]
            turned = wp.rot_tol is None or np.linalg.norm(self._rotation_error(wp.hand_rotation())) < wp.rot_tol
            reached = np.linalg.norm(wp.pos - obs["ee_pos"]) < wp.tol and self._steps >= wp.min_steps and turned
            if not (reached or self._steps >= wp.max_steps):
                return
            if self._index == len(self.waypoints) - 1 and not self._stages:
                return  # hold the final waypoint
            self._index, self._steps = self._index + 1, 0
        if self._index >= len(self.waypoints) and self._stages:
            self.waypoints, self._index, self._steps = self._stages.pop(0)(obs["ee_pos"]), 0, 0

    def act(self, obs) -> np.ndarray:
        if self.env is None:
            raise RuntimeError("ScriptedExpert needs the live env: call expert.bind(env) after env.reset().")
        if self._stages is None:
            self._stages = self._plan()
        self._advance(obs)
        wp = self.waypoints[self._index]
        self._steps += 1
        action = np.zeros(7, dtype=np.float32)
        action[:3] = np.clip((wp.pos - obs["ee_pos"]) * POS_GAIN, -wp.speed, wp.speed)
        action[3:6] = np.clip(self._rotation_error(wp.hand_rotation()) * ROT_GAIN, -1, 1)
        action[6] = wp.gripper
        return action[None]  # (1, 7)
