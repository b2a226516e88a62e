"""A privileged-state scripted expert for LIBERO pick-and-place tasks.

It reads object poses and collision geometry from the simulator and the goal from the parsed BDDL
(`(On obj target)` / `(In obj target_contain_region)`), plans end-effector waypoints (above the grasp,
grasp, close, lift, carry, lower, release) and tracks them with a proportional controller in
LIBERO's 7-D delta action space. It is a `lara.policy.Policy` that needs the live env: `bind(env)`.

What matters (measured on libero_object / libero_spatial): bowls are grasped at the rim ~1.5 cm
below its top with one finger inside; flat boxes are grasped with the hand's long axis pointing away
from tall neighbours; after the first `done` the gripper opens and the hand retreats (`release()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

POS_SCALE = 0.05  # OSC_POSE: action 1.0 = 5 cm position delta (robosuite's output_max)
ROT_SCALE = 0.5  # and 0.5 rad rotation delta
POS_GAIN = 12.0  # action per metre of error, before clipping (full speed beyond ~8 cm)
ROT_GAIN = 2.0
MAX_OPENING = 0.075  # the Panda gripper opens 8 cm; grasp widths above this don't fit
HAND_HALF_LENGTH = 0.10  # the hand extends this far along the finger-closing direction
ROBOT_BASE_XY = np.array([-0.6, 0.0])  # LIBERO's Panda mount: shorter reaches track better
TALL = 0.03  # neighbours taller than this, reaching above the grasp, can hit the hand


@dataclass
class Waypoint:
    pos: np.ndarray  # target grip-site position, world frame (3,)
    yaw: float  # target hand yaw around world z, radians (0 = fingers close along world y)
    gripper: float  # -1 open, +1 close
    tol: float = 0.01  # position tolerance in metres
    min_steps: int = 0  # hold at least this long (gripper motion)
    max_steps: int = 60  # give up waiting and move on


def _body_geoms(model, body_id: int) -> list[int]:
    """Collision geoms of a body and its descendants."""
    bodies = set()
    for b in range(model.nbody):
        a = b
        while a not in (0, body_id):
            a = model.body_parentid[a]
        if a == body_id:
            bodies.add(b)
    return [g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies
            and (model.geom_contype[g] or model.geom_conaffinity[g])]


def _world_box(model, data, geoms: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world box (lo, hi) of the geoms' local AABBs."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for g in geoms:
        rot = data.geom_xmat[g].reshape(3, 3)
        center = data.geom_xpos[g] + rot @ model.geom_aabb[g, :3]
        half = np.abs(rot) @ model.geom_aabb[g, 3:]
        lo, hi = np.minimum(lo, center - half), np.maximum(hi, center + half)
    return lo, hi


def _body_half_extent(model, data, body_id: int, geoms: list[int]) -> np.ndarray:
    """Half extents (3,) of the geoms along the body's own axes."""
    body_rot = data.xmat[body_id].reshape(3, 3)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for g in geoms:
        rot = body_rot.T @ data.geom_xmat[g].reshape(3, 3)  # geom axes in the body frame
        center = body_rot.T @ (data.geom_xpos[g] + data.geom_xmat[g].reshape(3, 3) @ model.geom_aabb[g, :3]
                               - data.xpos[body_id])
        half = np.abs(rot) @ model.geom_aabb[g, 3:]
        lo, hi = np.minimum(lo, center - half), np.maximum(hi, center + half)
    return (hi - lo) / 2


def _yaw_of(direction: np.ndarray) -> float:
    """Hand yaw whose finger-closing axis (world y at yaw 0) is `direction`, folded into [-pi/2, pi/2]."""
    yaw = np.arctan2(direction[1], direction[0]) - np.pi / 2
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def _segment_box_distance(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Approximate xy distance from segment a-b to a box (sampled along the segment)."""
    points = a + np.linspace(0, 1, 11)[:, None] * (b - a)  # (11, 2)
    gap = np.maximum(np.maximum(lo - points, points - hi), 0)  # (11, 2)
    return float(np.linalg.norm(gap, axis=1).min())


class ScriptedExpert:
    """Waypoint pick-and-place expert on privileged sim state. Bind it to a `LiberoEnv` first."""

    def __init__(self):
        self.env = None
        self.waypoints: list[Waypoint] = []

    def bind(self, env) -> None:
        """Give the expert the live env (called by evaluation after each reset)."""
        self.env = env

    def reset(self, instruction: str) -> None:
        self.waypoints, self._index, self._steps = [], 0, 0

    # ----- planning ---------------------------------------------------------------------------
    def _goal(self) -> tuple[str, str, str, str]:
        """(relation, object, target object, target name) from the BDDL goal, e.g.
        ('in', 'milk_1', 'basket_1', 'basket_1_contain_region')."""
        goal = self.env.parsed_problem["goal_state"]
        if len(goal) != 1 or goal[0][0].lower() not in ("on", "in"):
            raise ValueError(f"The scripted expert handles one On/In goal (pick and place); "
                             f"task {self.env.task_name!r} has goal {goal}.")
        relation, obj, target = goal[0][0].lower(), goal[0][1], goal[0][2]
        names = self.env.env.env.obj_body_id
        owner = [n for n in names if target == n or target.startswith(n + "_")]
        if not owner:
            raise ValueError(f"Goal target {target!r} names no object of the scene ({sorted(names)}).")
        return relation, obj, max(owner, key=len), target

    def _boxes(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[int]]]:
        model, data = self.env.sim.model._model, self.env.sim.data._data
        out = {}
        for name, body in self.env.env.env.obj_body_id.items():
            geoms = _body_geoms(model, body)
            if geoms:
                out[name] = (*_world_box(model, data, geoms), geoms)
        return out

    def _grasp(self, obj: str, boxes) -> tuple[np.ndarray, float]:
        """Grasp point and hand yaw: bowl rims from the side, other objects across a graspable width."""
        model, data = self.env.sim.model._model, self.env.sim.data._data
        lo, hi, geoms = boxes[obj]
        center = (lo + hi) / 2
        height = hi[2] - lo[2]
        candidates = []  # (grasp xy, closing direction xy)
        if "bowl" in obj:
            radius = min(hi[0] - lo[0], hi[1] - lo[1]) / 2
            for angle in np.arange(4) * np.pi / 2:
                radial = np.array([np.cos(angle), np.sin(angle)])
                candidates.append((center[:2] + (radius - 0.012) * radial, radial))
            # unrotated hand first (fingers close along y), then the side nearest the robot's base
            candidates.sort(key=lambda c: (round(abs(_yaw_of(c[1])), 3), np.linalg.norm(c[0] - ROBOT_BASE_XY)))
            grasp_z = hi[2] - 0.015
        else:
            body = self.env.env.env.obj_body_id[obj]
            half = _body_half_extent(model, data, body, geoms)
            axes = data.xmat[body].reshape(3, 3)
            for k in np.argsort(half[:2]):  # body x / y axis, narrowest first
                if 2 * half[k] <= MAX_OPENING or not candidates:
                    direction = axes[:2, k] / (np.linalg.norm(axes[:2, k]) + 1e-9)
                    candidates.append((center[:2], direction))
            grasp_z = max(lo[2] + 0.5 * height, hi[2] - 0.035, lo[2] + 0.012)
        neighbours = [(b[0][:2], b[1][:2]) for n, b in boxes.items()
                      if n != obj and b[1][2] > grasp_z + 0.02 and b[1][2] - b[0][2] > TALL]
        if any(np.all(nlo <= center[:2]) and np.all(center[:2] <= nhi) for nlo, nhi in neighbours):
            # inside a tall fixture (a cabinet drawer): its box says nothing about clearance; close the
            # fingers along x so that the hand's long axis lies along the drawer's pull direction
            candidates.sort(key=lambda c: abs(c[1][1]))

        def clearance(candidate):
            xy, direction = candidate
            ends = xy - HAND_HALF_LENGTH * direction, xy + HAND_HALF_LENGTH * direction
            return min([_segment_box_distance(*ends, nlo, nhi) for nlo, nhi in neighbours] + [1.0])

        # prefer clear hands; among equally clear ones keep the first (narrowest grasp / robot side)
        scores = [min(clearance(c), 0.05) - 0.001 * i for i, c in enumerate(candidates)]
        xy, direction = candidates[int(np.argmax(scores))]
        return np.array([xy[0], xy[1], grasp_z]), _yaw_of(direction)

    def _plan(self, obs) -> list[Waypoint]:
        relation, obj, target, region = self._goal()
        boxes = self._boxes()
        grasp, yaw = self._grasp(obj, boxes)
        obj_lo, obj_hi, _ = boxes[obj]
        tgt_lo, tgt_hi, _ = boxes[target]
        below = grasp[2] - obj_lo[2]  # grip site above the object's bottom while it is held
        if relation == "in":
            release_z = tgt_hi[2] + 0.01 + below  # drop from just above the container's rim
        else:
            release_z = tgt_hi[2] + 0.015 + below
        tallest = max(b[1][2] for n, b in boxes.items() if n != obj)
        carry_z = max(grasp[2] + 0.10, release_z + 0.05, min(tallest, release_z + 0.15) + 0.02 + below)
        goal_xy = (tgt_lo[:2] + tgt_hi[:2]) / 2
        sites = self.env.env.env.object_sites_dict
        if relation == "on" and region != target and region in sites:  # e.g. a stove's cook region
            goal_xy = self.env.sim.data.site_xpos[self.env.sim.model.site_name2id(sites[region].name)][:2]
        goal_xy = goal_xy + grasp[:2] - (obj_lo[:2] + obj_hi[:2]) / 2  # the object's centre, not the hand, on goal
        here = obs["ee_pos"]
        above = np.array([grasp[0], grasp[1], max(grasp[2] + 0.10, here[2])])
        return [
            Waypoint(above, yaw, -1.0, tol=0.02),
            Waypoint(grasp, yaw, -1.0, tol=0.008),
            Waypoint(grasp, yaw, 1.0, min_steps=12, max_steps=12),
            Waypoint(np.array([grasp[0], grasp[1], carry_z]), yaw, 1.0, tol=0.03),
            Waypoint(np.array([goal_xy[0], goal_xy[1], carry_z]), yaw, 1.0, tol=0.02),
            Waypoint(np.array([goal_xy[0], goal_xy[1], release_z]), yaw, 1.0, tol=0.01),
            Waypoint(np.array([goal_xy[0], goal_xy[1], release_z]), yaw, -1.0, min_steps=10, max_steps=10),
            Waypoint(np.array([goal_xy[0], goal_xy[1], release_z + 0.10]), yaw, -1.0, max_steps=200),
        ]

    def release(self) -> None:
        """Switch to the release-and-retreat tail (open, then rise), e.g. after the first `done`."""
        here = self.env.observation()["ee_pos"]
        yaw = self.waypoints[self._index].yaw if self.waypoints else 0.0
        self.waypoints = [Waypoint(here, yaw, -1.0, min_steps=8, max_steps=8),
                          Waypoint(here + np.array([0, 0, 0.08]), yaw, -1.0, max_steps=200)]
        self._index, self._steps = 0, 0

    # ----- control ----------------------------------------------------------------------------
    def _hand_rotation(self) -> np.ndarray:
        site = self.env.env.env.robots[0].eef_site_id
        return self.env.sim.data._data.site_xmat[site].reshape(3, 3)

    def act(self, obs) -> np.ndarray:
        if self.env is None:
            raise RuntimeError("ScriptedExpert needs the live env: call expert.bind(env) after env.reset().")
        if not self.waypoints:
            self.waypoints = self._plan(obs)
        wp = self.waypoints[self._index]
        error = wp.pos - obs["ee_pos"]
        reached = np.linalg.norm(error) < wp.tol and self._steps >= wp.min_steps
        if (reached or self._steps >= wp.max_steps) and self._index < len(self.waypoints) - 1:
            self._index, self._steps = self._index + 1, 0
            wp = self.waypoints[self._index]
            error = wp.pos - obs["ee_pos"]
        self._steps += 1
        # desired hand: pointing down, rotated by yaw about world z; rotation error in world frame
        c, s = np.cos(wp.yaw), np.sin(wp.yaw)
        down = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # LIBERO's home hand
        desired = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ down
        rot_err = np.zeros(3)
        mujoco.mju_mat2Quat(quat := np.zeros(4), (desired @ self._hand_rotation().T).flatten())
        mujoco.mju_quat2Vel(rot_err, quat, 1.0)  # axis-angle of the world-frame error
        action = np.zeros(7, dtype=np.float32)
        action[:3] = np.clip(error * POS_GAIN, -1, 1)
        action[3:6] = np.clip(rot_err * ROT_GAIN, -1, 1)
        action[6] = wp.gripper
        return action[None]  # (1, 7)
