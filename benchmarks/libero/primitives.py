"""Motion primitives of the scripted LIBERO expert, planned on privileged simulator state.

Each primitive reads poses, collision geometry and joint axes from the live sim and returns the
end-effector `Waypoint`s of one manipulation: pick-and-place, pull a drawer open, twist a stove
knob, slide a flat object along the table. `expert.py` chains them from the parsed BDDL goal and
tracks the waypoints.

What matters (measured on libero_object / spatial / goal): bowls are grasped at the rim ~1.5 cm
below its top with one finger inside; flat boxes are grasped with the hand's long axis pointing away
from tall neighbours; drawer handles are grasped with a horizontal hand (fingers closing vertically,
a top-down palm hits the drawer above); knobs are grasped on their rotation axis and twisted with
the wrist; plates are slid along the table by their rim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_OPENING = 0.075  # the Panda gripper opens 8 cm; grasp widths above this don't fit
HAND_HALF_LENGTH = 0.10  # the hand extends this far along the finger-closing direction
ROBOT_BASE_XY = np.array([-0.6, 0.0])  # LIBERO's Panda mount: shorter reaches track better
TALL = 0.03  # neighbours taller than this, reaching above the grasp, can hit the hand
PALM_HALF = (0.10, 0.035)  # the palm's half extents along / across the finger-closing direction
PALM_BOTTOM = 0.02  # the palm's lowest point above the grip site (hand pointing down)
WRIST_JOINT = "robot0_joint7"  # the Panda's last joint: turns the hand about its approach axis
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # LIBERO's home hand: columns are the
# finger-closing axis (world y), the palm's other axis and the approach axis (pointing down)


@dataclass
class Waypoint:
    pos: np.ndarray  # target grip-site position, world frame (3,)
    yaw: float  # target hand yaw around world z, radians (0 = fingers close along world y)
    gripper: float  # -1 open, +1 close
    tol: float = 0.01  # position tolerance in metres
    min_steps: int = 0  # hold at least this long (gripper motion)
    max_steps: int = 60  # give up waiting and move on
    rotation: np.ndarray | None = None  # full target hand rotation (3, 3); None: pointing down at `yaw`
    rot_tol: float | None = None  # also wait for the hand rotation to be within this many radians
    speed: float = 1.0  # cap on the position action (1.0 = 5 cm per step): slower drags slip less
    finish: bool = False  # when the goal is first reached here, finish the primitive before letting go
    # (a knob turned just past its threshold drifts back when released at once)

    def hand_rotation(self) -> np.ndarray:
        """The target hand rotation matrix in the world frame (columns: closing, palm, approach axes)."""
        if self.rotation is not None:
            return self.rotation
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ DOWN


class Scene:
    """Read-only geometry of the live sim: object boxes, joints, sites (privileged state)."""

    def __init__(self, env):
        self.env = env
        self.model, self.data = env.sim.model._model, env.sim.data._data
        self.bodies = env.env.env.obj_body_id  # object name -> body id
        self.sites = env.env.env.object_sites_dict  # region name -> site object (with .joints)

    def body_geoms(self, body_id: int) -> list[int]:
        """Collision geoms of a body and its descendants."""
        model = self.model
        bodies = set()
        for b in range(model.nbody):
            a = b
            while a not in (0, body_id):
                a = model.body_parentid[a]
            if a == body_id:
                bodies.add(b)
        return [g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies
                and (model.geom_contype[g] or model.geom_conaffinity[g])]

    def world_box(self, geoms: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world box (lo, hi) of the geoms' local AABBs."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for g in geoms:
            rot = self.data.geom_xmat[g].reshape(3, 3)
            center = self.data.geom_xpos[g] + rot @ self.model.geom_aabb[g, :3]
            half = np.abs(rot) @ self.model.geom_aabb[g, 3:]
            lo, hi = np.minimum(lo, center - half), np.maximum(hi, center + half)
        return lo, hi

    def boxes(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[int]]]:
        """World box (lo, hi) and collision geoms of every object of the scene."""
        out = {}
        for name, body in self.bodies.items():
            geoms = self.body_geoms(body)
            if geoms:
                out[name] = (*self.world_box(geoms), geoms)
        return out

    def half_extent(self, body_id: int, geoms: list[int]) -> np.ndarray:
        """Half extents (3,) of the geoms along the body's own axes."""
        data, model = self.data, self.model
        body_rot = data.xmat[body_id].reshape(3, 3)
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for g in geoms:
            rot = body_rot.T @ data.geom_xmat[g].reshape(3, 3)  # geom axes in the body frame
            center = body_rot.T @ (data.geom_xpos[g] + data.geom_xmat[g].reshape(3, 3) @ model.geom_aabb[g, :3]
                                   - data.xpos[body_id])
            half = np.abs(rot) @ model.geom_aabb[g, 3:]
            lo, hi = np.minimum(lo, center - half), np.maximum(hi, center + half)
        return (hi - lo) / 2

    def site_pos(self, region: str) -> np.ndarray:
        return self.data.site_xpos[self.model.site(self.sites[region].name).id].copy()

    def joint(self, name: str) -> tuple[float, np.ndarray, np.ndarray, int]:
        """(qpos, world axis, world anchor, body id) of a 1-dof joint."""
        j = self.model.joint(name).id
        qpos = float(self.data.qpos[self.model.jnt_qposadr[j]])
        return qpos, self.data.xaxis[j].copy(), self.data.xanchor[j].copy(), int(self.model.jnt_bodyid[j])

    def region_joint(self, region: str) -> str | None:
        """The joint that moves a region (a drawer's slide joint), None for a fixed region."""
        joints = getattr(self.sites.get(region), "joints", None) or []
        return joints[0] if joints else None

    def articulation(self, owner: str) -> dict:
        """The owner object's articulation ranges (open/close, turn-on/off) from LIBERO's object class."""
        return self.env.env.env.get_object(owner).object_properties["articulation"]


def yaw_of(direction: np.ndarray) -> float:
    """Hand yaw whose finger-closing axis (world y at yaw 0) is `direction`, folded into [-pi/2, pi/2]."""
    yaw = np.arctan2(direction[1], direction[0]) - np.pi / 2
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def _segment_box_distance(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Approximate xy distance from segment a-b to a box (sampled along the segment)."""
    points = a + np.linspace(0, 1, 11)[:, None] * (b - a)  # (11, 2)
    gap = np.maximum(np.maximum(lo - points, points - hi), 0)  # (11, 2)
    return float(np.linalg.norm(gap, axis=1).min())


def hand_hits(scene: Scene, obj: str, xy: np.ndarray, closing: np.ndarray, grasp_z: float) -> bool:
    """Would a downward hand grasping at (xy, grasp_z), on its way down, meet another object's collision geom
    above the grasp? E.g. an opened drawer hanging over a bowl: the objects' boxes can't tell, their geoms can."""
    across = np.array([-closing[1], closing[0]])
    s, t = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 3))
    palm = xy + PALM_HALF[0] * s.reshape(-1, 1) * closing + PALM_HALF[1] * t.reshape(-1, 1) * across  # (27, 2)
    for name, body in scene.bodies.items():
        if name == obj:
            continue
        for g in scene.body_geoms(body):
            lo, hi = scene.world_box([g])
            if hi[2] > grasp_z + PALM_BOTTOM and np.any(np.all((palm >= lo[:2]) & (palm <= hi[:2]), axis=1)):
                return True
    return False


def grasp_pose(scene: Scene, obj: str, boxes) -> tuple[np.ndarray, float]:
    """Grasp point and hand yaw: bowl and plate rims from the side, other objects across a graspable width."""
    lo, hi, geoms = boxes[obj]
    center = (lo + hi) / 2
    height = hi[2] - lo[2]
    candidates = []  # (grasp xy, closing direction xy)
    if "bowl" in obj or "plate" in obj:  # rims: one finger inside, one outside
        radius = min(hi[0] - lo[0], hi[1] - lo[1]) / 2
        for angle in np.arange(4) * np.pi / 2:
            radial = np.array([np.cos(angle), np.sin(angle)])
            candidates.append((center[:2] + (radius - 0.012) * radial, radial))
        # unrotated hand first (fingers close along y), then the side nearest the robot's base
        candidates.sort(key=lambda c: (round(abs(yaw_of(c[1])), 3), np.linalg.norm(c[0] - ROBOT_BASE_XY)))
        grasp_z = max(hi[2] - 0.015, lo[2] + 0.014)  # fingertips ~1.3 cm below the grip site: clear the table
    else:
        body = scene.bodies[obj]
        half = scene.half_extent(body, geoms)
        axes = scene.data.xmat[body].reshape(3, 3)
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

    free = [c for c in candidates if not hand_hits(scene, obj, *c, grasp_z)]
    candidates = free or candidates

    def clearance(candidate):
        xy, direction = candidate
        ends = xy - HAND_HALF_LENGTH * direction, xy + HAND_HALF_LENGTH * direction
        return min([_segment_box_distance(*ends, nlo, nhi) for nlo, nhi in neighbours] + [1.0])

    # prefer clear hands; among equally clear ones keep the first (narrowest grasp / robot side)
    scores = [min(clearance(c), 0.05) - 0.001 * i for i, c in enumerate(candidates)]
    xy, direction = candidates[int(np.argmax(scores))]
    return np.array([xy[0], xy[1], grasp_z]), yaw_of(direction)


def pick_and_place(scene: Scene, here: np.ndarray, relation: str, obj: str, target: str | None,
                   region: str) -> list[Waypoint]:
    """Grasp `obj`, carry it above the target object and release it `on` or `in` it (a drawer region: on its
    floor; `target` None: on the table region `region`)."""
    boxes = scene.boxes()
    grasp, yaw = grasp_pose(scene, obj, boxes)
    obj_lo, obj_hi, _ = boxes[obj]
    if target is None:  # a table region: a flat box at the region's site
        tgt_lo = tgt_hi = scene.site_pos(region)
    else:
        tgt_lo, tgt_hi, _ = boxes[target]
    below = grasp[2] - obj_lo[2]  # grip site above the object's bottom while it is held
    goal_xy = (tgt_lo[:2] + tgt_hi[:2]) / 2
    drawer = scene.region_joint(region)
    if drawer is not None:  # into an open drawer: above its floor, centred in its part out of the cabinet
        qpos, axis, _, body = scene.joint(drawer)
        out = np.sign(qpos) * axis  # opening moved the drawer this way (by |qpos|)
        floor = scene.world_box(scene.body_geoms(body))[0][2]
        release_z = floor + 0.02 + below
        _, front = drawer_parts(scene, body, out)
        radius = np.abs(out) @ (obj_hi - obj_lo) / 2
        window = (front - abs(qpos) + radius + 0.005, front - 0.01 - radius)  # cabinet front .. panel inside
        site = scene.site_pos(region)
        goal_xy = (site + out * (np.mean(window) - site @ out))[:2]
    elif relation == "in":
        release_z = tgt_hi[2] + 0.01 + below  # drop from just above the container's rim
    else:
        release_z = tgt_hi[2] + 0.015 + below
    if relation == "on" and region != target and region in scene.sites:  # e.g. a stove's cook region
        goal_xy = scene.site_pos(region)[:2]
    tallest = max(b[1][2] for n, b in boxes.items() if n != obj)  # (what the carried object must clear)
    carry_z = max(grasp[2] + 0.10, release_z + 0.05, min(tallest, release_z + 0.15) + 0.02 + below)
    goal_xy = goal_xy + grasp[:2] - (obj_lo[:2] + obj_hi[:2]) / 2  # the object's centre, not the hand, on goal
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


def drawer_parts(scene: Scene, body: int, out: np.ndarray) -> tuple[np.ndarray, float]:
    """The handle's centre (3,) and the front panel's outer face (its coordinate along `out`) of a drawer."""
    boxes = sorted((scene.world_box([g]) for g in scene.body_geoms(body)), key=lambda b: (b[0] + b[1]) @ out)
    handle = (boxes[-1][0] + boxes[-1][1]) / 2  # the part furthest out
    front = max(max(lo @ out, hi @ out) for lo, hi in boxes[:-1])
    return handle, float(front)


def open_drawer(scene: Scene, here: np.ndarray, region: str, owner: str,
                keep_clear: np.ndarray | None = None) -> list[Waypoint]:
    """Grasp the handle of the drawer that carries `region` and pull it along its slide joint until open; with
    `keep_clear` (an object to grasp next), stop where the front panel still leaves room to reach down to it."""
    joint = scene.region_joint(region)
    qpos, axis, _, body = scene.joint(joint)
    open_range = scene.articulation(owner)["default_open_ranges"]
    lower, upper = scene.model.jnt_range[scene.model.joint(joint).id]
    target_q = float(np.clip(np.mean(open_range) - 0.01, lower + 0.005, upper - 0.005))  # past the threshold,
    pull = (target_q - qpos) * axis  # (3,) the handle's displacement                 # short of the limit
    out = pull / np.linalg.norm(pull)  # the drawer's outward direction
    handle, front = drawer_parts(scene, body, out)
    if keep_clear is not None:  # the palm reaches PALM_HALF[1] across from the grasp: keep the panel out of its way
        room = keep_clear @ out - front - PALM_HALF[1] - 0.01
        pull = out * float(np.clip(room, 0.0, np.linalg.norm(pull)))
    # horizontal hand pointing into the drawer, fingers closing vertically across the handle bar
    # of the two rolls (fingers closing up or down) take the one nearest the home hand: the other one
    # turns the wrist by 180 degrees more, to near its joint limit, and it can't turn back down
    approach = -out
    rotation = min((np.stack([c, np.cross(approach, c), approach], axis=1) for c in (np.eye(3)[2], -np.eye(3)[2])),
                   key=lambda r: -np.trace(r @ DOWN.T))  # larger trace = smaller rotation angle
    grasp = handle - 0.005 * out  # the pads a little behind the bar's front face
    before, after = grasp + 0.10 * out, grasp + pull + 0.08 * out
    inward = np.append(ROBOT_BASE_XY - after[:2], 0.0)
    clear = after + 0.15 * inward / np.linalg.norm(inward) + np.array([0.0, 0.0, 0.06])  # toward the robot: the
    # arm is near full reach at the pulled-out handle and can't turn the hand down there
    return [
        Waypoint(np.array([before[0], before[1], max(here[2], before[2] + 0.05)]), 0.0, -1.0, tol=0.03,
                 rotation=rotation, max_steps=80),
        Waypoint(before, 0.0, -1.0, tol=0.015, rotation=rotation),
        Waypoint(grasp, 0.0, -1.0, tol=0.008, rotation=rotation),
        Waypoint(grasp, 0.0, 1.0, min_steps=10, max_steps=10, rotation=rotation),
        Waypoint(grasp + pull, 0.0, 1.0, tol=0.01, max_steps=60, rotation=rotation),
        Waypoint(grasp + pull, 0.0, -1.0, min_steps=8, max_steps=8, rotation=rotation),
        Waypoint(after, 0.0, -1.0, tol=0.02, rotation=rotation),  # back out, still horizontal
        Waypoint(clear, 0.0, -1.0, tol=0.02, max_steps=40, rotation=rotation),
        Waypoint(clear, 0.0, -1.0, tol=0.02, rot_tol=0.1, max_steps=60),  # clear of the drawer: hand down
    ]


def turn_knob(scene: Scene, here: np.ndarray, owner: str) -> list[Waypoint]:
    """Grasp the knob of `owner` (a stove) on its rotation axis and twist it with the wrist into its on range."""
    joint = scene.env.env.env.get_object(owner).joints[0]
    qpos, axis, anchor, body = scene.joint(joint)
    target_q = min(scene.articulation(owner)["default_turnon_ranges"]) + 0.5  # well inside: it drifts back a little
    base_lo, _ = scene.world_box(scene.body_geoms(body))
    geoms = [g for g in scene.body_geoms(body) if scene.world_box([g])[1][2] > base_lo[2] + 0.025]
    lo, hi = scene.world_box(geoms)  # the knob's handle: the parts standing out of the dial
    across = np.argmin((hi - lo)[:2])  # the handle's narrow axis: close the fingers along it
    grasp = np.array([anchor[0], anchor[1], hi[2] - 0.015])
    turn = (target_q - qpos) * np.sign(axis[2])  # hand yaw change (the joint turns about world +-z)
    # the handle is symmetric: of the two hand yaws that grasp it, take the one that leaves the wrist
    # (joint 7, which turns with the hand's yaw) furthest from its limits at the end of the twist
    closing = scene.data.site_xmat[scene.env.env.env.robots[0].eef_site_id].reshape(3, 3)[:, 0]
    yaw_now = np.arctan2(closing[1], closing[0]) - np.pi / 2
    wrist_q, _, _, _ = scene.joint(WRIST_JOINT)
    wrist_lo, wrist_hi = scene.model.jnt_range[scene.model.joint(WRIST_JOINT).id]

    def wrist_margin(yaw):
        change = (yaw - yaw_now + np.pi) % (2 * np.pi) - np.pi  # the wrist turns the short way
        end = wrist_q + change + turn
        return min(end - wrist_lo, wrist_hi - end, wrist_q + change - wrist_lo, wrist_hi - wrist_q - change)

    yaw = max((yaw_of(np.eye(2)[across]) + k * np.pi for k in (-1, 0, 1)), key=wrist_margin)
    steps = [yaw + turn * k / 4 for k in range(1, 5)]
    return [
        Waypoint(np.array([grasp[0], grasp[1], max(here[2], grasp[2] + 0.10)]), yaw, -1.0, tol=0.02),
        Waypoint(grasp, yaw, -1.0, tol=0.008),
        Waypoint(grasp, yaw, 1.0, min_steps=10, max_steps=10),
        *[Waypoint(grasp, y, 1.0, tol=0.02, rot_tol=0.1, max_steps=30, finish=True) for y in steps],
        Waypoint(grasp, steps[-1], -1.0, min_steps=8, max_steps=8),
        Waypoint(grasp + np.array([0, 0, 0.10]), steps[-1], -1.0, max_steps=200),
    ]


def push_flat(scene: Scene, here: np.ndarray, obj: str, region: str) -> list[Waypoint]:
    """Slide a flat, wide object (a plate) along the table until its centre is on `region`, pinching its rim.

    Pushing it with closed fingers fails here: its rim slopes (fingers ride over it) and the side to push
    from is often next to the cabinet (the palm hits the drawer handles)."""
    boxes = scene.boxes()
    lo, hi, _ = boxes[obj]
    grasp, yaw = grasp_pose(scene, obj, boxes)
    goal = scene.site_pos(region)
    travel = goal[:2] - (lo[:2] + hi[:2]) / 2  # (2,) the plate centre onto the region centre
    travel = travel * (1 + 0.03 / np.linalg.norm(travel))  # plus 3 cm: the pinched rim lags ~3 cm behind
    end = np.array([*(grasp[:2] + travel), grasp[2]])
    return [
        Waypoint(np.array([grasp[0], grasp[1], max(here[2], grasp[2] + 0.10)]), yaw, -1.0, tol=0.02),
        Waypoint(grasp, yaw, -1.0, tol=0.006),
        Waypoint(grasp, yaw, 1.0, min_steps=12, max_steps=12),
        Waypoint(end, yaw, 1.0, tol=0.01, max_steps=120),
        Waypoint(end, yaw, -1.0, min_steps=10, max_steps=10),
        Waypoint(end + np.array([0, 0, 0.10]), yaw, -1.0, max_steps=200),
    ]
