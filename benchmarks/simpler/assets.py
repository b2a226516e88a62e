"""The files the SIMPLER Bridge tasks load, checked before ManiSkill is imported.

ManiSkill3 reads its assets from `$MS_ASSET_DIR/data/...` (default ~/.maniskill). When a task's asset
group is missing it asks on stdin whether to download it (an EOFError without a terminal) and may leave
an empty folder behind that breaks the next run. `check_assets` looks for every file a task needs first
and raises one `MissingAssets` line naming them and the download command, so the prompt never runs.

    root = resolve_asset_dir("/data/ms_assets")          # --assets DIR, else $MS_ASSET_DIR, else ~/.maniskill
    check_assets(root, ["PutCarrotOnPlateInScene-v1"])    # raises MissingAssets, creates nothing

`write_stand_in_stages(root)` writes a plain box to the table-scene names, for machines that lack the asset
pack's 4 MiB+ files (the tests, the worker benchmark). Runs on such a stage are NOT SIMPLER scores: the
box carries `STAND_IN_MARKER` in its glTF scene `extras`, and `stage_is_stand_in` lets results.json say so.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lara.errors import InputError

BRIDGE = Path("data/tasks/bridge_v2_real2sim_dataset")
WIDOWX = Path("data/robots/widowx")
DOWNLOAD = ("python -m mani_skill.utils.download_asset -y bridge_v2_real2sim && "
            "python -m mani_skill.utils.download_asset -y widowx250s")
STAND_IN_MARKER = "lara stand-in table: NOT the SIMPLER scene"
# A stand-in table top at this height (world z): the Bridge objects are placed at z 0.865-0.89 and settle on it.
STAND_IN_TOP = 0.865


@dataclass(frozen=True)
class BridgeTask:
    """What one SIMPLER Bridge task loads (ManiSkill 3.0.1, bridge_dataset_eval)."""

    env_id: str
    stage: str          # stages/<name>.glb
    overlay: str        # real_inpainting/<name>.png, the greenscreen background
    model_json: str     # custom/<name>.json, the objects' scales and bounding boxes
    objects: tuple[str, ...]
    max_steps: int
    configurations: int  # fixed scenes the evaluation's episode ids index (they wrap modulo this)


BRIDGE_TASKS = {t.env_id: t for t in (
    BridgeTask("PutCarrotOnPlateInScene-v1", "bridge_table_1_v1", "bridge_real_eval_1", "info_bridge_custom_v0",
               ("bridge_carrot_generated_modified", "bridge_plate_objaverse_larger"), 60, 24),
    BridgeTask("PutSpoonOnTableClothInScene-v1", "bridge_table_1_v1", "bridge_real_eval_1", "info_bridge_custom_v0",
               ("bridge_spoon_generated_modified", "table_cloth_generated_shorter"), 60, 24),
    BridgeTask("StackGreenCubeOnYellowCubeBakedTexInScene-v1", "bridge_table_1_v1", "bridge_real_eval_1",
               "info_bridge_custom_baked_tex_v0", ("baked_green_cube_3cm", "baked_yellow_cube_3cm"), 60, 24),
    BridgeTask("PutEggplantInBasketScene-v1", "bridge_table_1_v2", "bridge_sink", "info_bridge_custom_v0",
               ("eggplant", "dummy_sink_target_plane", "sink"), 120, 64),
)}
SHORT_NAMES = {"carrot": "PutCarrotOnPlateInScene-v1", "spoon": "PutSpoonOnTableClothInScene-v1",
               "stack": "StackGreenCubeOnYellowCubeBakedTexInScene-v1", "eggplant": "PutEggplantInBasketScene-v1"}


class MissingAssets(InputError):
    """A task's asset files are not in the asset folder (one line: which, and how to get them)."""


def resolve_task(name: str) -> str:
    """'carrot' or 'PutCarrotOnPlateInScene-v1' -> the env id; anything else raises with the valid names."""
    if name in BRIDGE_TASKS:
        return name
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    valid = ", ".join(f"{short} ({env_id})" for short, env_id in SHORT_NAMES.items())
    raise InputError(f"Unknown SIMPLER task {name!r}. Valid tasks (short name or env id): {valid}.")


def resolve_asset_dir(assets: str | Path | None = None) -> Path:
    """--assets DIR, else $MS_ASSET_DIR, else ManiSkill's default ~/.maniskill (not created here)."""
    if assets is not None:
        return Path(assets).expanduser()
    return Path(os.environ.get("MS_ASSET_DIR") or Path.home() / ".maniskill").expanduser()


def robot_files(root: Path) -> list[Path]:
    """The WidowX URDF and every mesh it names (relative to root)."""
    urdf = root / WIDOWX / "wx250s.urdf"
    files = [WIDOWX / "wx250s.urdf", WIDOWX / "wx250s.srdf"]
    if urdf.is_file():
        for mesh in sorted(set(re.findall(r'filename="([^"]+)"', urdf.read_text()))):
            files.append(WIDOWX / mesh.removeprefix("package://"))
    return files


def task_files(root: Path, env_id: str) -> list[Path | tuple[Path, ...]]:
    """Files the task loads (relative to root); a tuple is a choice of which any one will do (object visuals)."""
    task = BRIDGE_TASKS[env_id]
    files: list[Path | tuple[Path, ...]] = [
        BRIDGE / "stages" / f"{task.stage}.glb",
        BRIDGE / "real_inpainting" / f"{task.overlay}.png",
        BRIDGE / "custom" / f"{task.model_json}.json",
    ]
    for obj in task.objects:
        model = BRIDGE / "custom" / "models" / obj
        files += [model / "collision.obj", tuple(model / f"textured.{ext}" for ext in ("obj", "dae", "glb"))]
    return [*robot_files(root), *files]


def missing_files(root: Path, env_id: str) -> list[str]:
    missing = []
    for entry in task_files(root, env_id):
        options = entry if isinstance(entry, tuple) else (entry,)
        if not any((root / option).is_file() for option in options):
            missing.append(" or ".join(str(o) for o in options) if len(options) > 1 else str(options[0]))
    return missing


def check_assets(root: Path, env_ids: list[str]) -> None:
    """Raise MissingAssets naming every missing file of these Bridge tasks; creates and changes nothing."""
    missing = {env_id: missing_files(root, env_id) for env_id in env_ids if env_id in BRIDGE_TASKS}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        listing = "; ".join(f"{env_id}: {', '.join(files)}" for env_id, files in missing.items())
        raise MissingAssets(f"SIMPLER assets missing under {root} ({listing}). On a machine with internet run "
                            f"`MS_ASSET_DIR={root} {DOWNLOAD}` and copy the folder here, or pass --assets DIR.")


def checksums(root: Path, env_ids: list[str]) -> dict[str, str]:
    """sha256 of every asset file the tasks load (for results.json: which scene and objects a score used)."""
    found = {}
    for env_id in env_ids:
        for entry in task_files(root, env_id):
            for option in entry if isinstance(entry, tuple) else (entry,):
                path = root / option
                if path.is_file() and str(option) not in found:
                    found[str(option)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(found.items()))


def stage_is_stand_in(root: Path, env_id: str) -> bool:
    """Whether the task's table scene is the box `write_stand_in_stages` wrote."""
    stage = root / BRIDGE / "stages" / f"{BRIDGE_TASKS[env_id].stage}.glb"
    return stage.is_file() and STAND_IN_MARKER.encode() in stage.read_bytes()


def write_stand_in_stages(root: Path) -> list[Path]:
    """Write a plain box table to both stage names under root (existing files are never overwritten unless
    they are stand-ins themselves); returns the paths written. The box's top is at world z = STAND_IN_TOP
    once ManiSkill applies the Bridge scene's pose (90 degrees about x, offset (2.0634, 2.8313, 0))."""
    import trimesh

    box = trimesh.creation.box(extents=[3.0, STAND_IN_TOP, 3.0])
    box.apply_translation([-0.16 - 2.0634, STAND_IN_TOP / 2, 2.8313])  # mesh y -> world z; centred under the objects
    scene = trimesh.Scene(box)
    scene.metadata["generator"] = STAND_IN_MARKER  # exported as the scene's glTF `extras`
    glb = trimesh.exchange.gltf.export_glb(scene)
    written = []
    for name in ("bridge_table_1_v1", "bridge_table_1_v2"):
        path = root / BRIDGE / "stages" / f"{name}.glb"
        if path.exists() and STAND_IN_MARKER.encode() not in path.read_bytes():
            raise FileExistsError(f"{path} is a real stage file; the stand-in is written only where none exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(glb)
        written.append(path)
    return written



def stand_in_asset_dir(partial: Path, dest: Path) -> Path:
    """An asset folder at dest: the robot, object models and overlays of `partial` (an incomplete copy such as
    ../shared/simpler_assets, linked read-only) plus the stand-in table. For tests and benchmarks only."""
    dest = Path(dest)
    (dest / BRIDGE).mkdir(parents=True, exist_ok=True)
    for part in (WIDOWX.parent, BRIDGE / "custom", BRIDGE / "real_inpainting"):
        source, link = Path(partial) / part, dest / part
        if not source.is_dir():
            raise MissingAssets(f"{source} is missing: expected a partial SIMPLER asset copy with {WIDOWX}, "
                                f"{BRIDGE / 'custom'} and {BRIDGE / 'real_inpainting'}")
        if not link.exists():
            link.symlink_to(source.resolve(), target_is_directory=True)
    write_stand_in_stages(dest)
    return dest
