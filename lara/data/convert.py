"""`lara data convert SRC --to lerobot OUT`: LIBERO HDF5 demos -> a LeRobot v3.0 dataset, and `--to libero`
back. Arrays keep their stored dtype (LIBERO's float64), so both directions are exact for actions and
states; images go through the video codec (or PNG with `--codec png`, lossless). lerobot's `LeRobotDataset`
loads the result (checked with lerobot 0.4.4: benchmarks/interop/lerobot_check.py) and hands out float32
tensors whatever the stored dtype.

Features written (LIBERO name -> LeRobot feature):
    actions                        -> action [7]
    obs/ee_states + gripper_states -> observation.state [8]  (pos 3, axis-angle 3, gripper 2, as openpi's copy)
    obs/joint_states               -> observation.joint_states [7]
    states (simulator), when kept  -> observation.sim_state [S]
    rewards, dones                 -> next.reward, next.done
    obs/agentview_rgb              -> observation.images.agentview   (upright; official files are rotated)
    obs/eye_in_hand_rgb            -> observation.images.eye_in_hand (when every demo has it)
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import numpy as np

from lara.outputs import OVERWRITE_HELP, check_new, writable, writing

from .libero_hdf5 import LIBERO_FPS, LiberoFileError, control_frequency, demo_names, images_upside_down, \
    open_libero_hdf5, read_instruction
from .libero_source import resolve_files
from .libero_writer import LiberoHDF5Writer

STATE_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper_left", "gripper_right"]
CAMERAS = {"agentview_rgb": "observation.images.agentview", "eye_in_hand_rgb": "observation.images.eye_in_hand"}


def _read_demo(handle, name: str, upside_down: bool) -> dict:
    demo, obs = handle["data"][name], handle["data"][name]["obs"]
    for key in ("ee_states", "gripper_states", "joint_states", "agentview_rgb"):
        if key not in obs:
            raise LiberoFileError(f"{handle.filename} data/{name}/obs: missing `{key}`; found {sorted(obs.keys())}.")
    if "actions" not in demo:
        raise LiberoFileError(f"{handle.filename} data/{name}: missing `actions`; LeRobot datasets hold actions.")
    out = {"action": demo["actions"][()],
           "observation.state": np.concatenate([obs["ee_states"][()], obs["gripper_states"][()]], axis=1),
           "observation.joint_states": obs["joint_states"][()]}
    T = len(out["action"])
    out["next.reward"] = demo["rewards"][()] if "rewards" in demo else np.zeros(T)
    out["next.done"] = (demo["dones"][()] if "dones" in demo else np.arange(T) == T - 1).astype(bool)
    if "states" in demo and demo["states"].shape[1] > 0:
        out["observation.sim_state"] = demo["states"][()]
    for key, feature in CAMERAS.items():
        if key in obs:
            frames = obs[key][()]
            out[feature] = np.ascontiguousarray(frames[:, ::-1, ::-1]) if upside_down else frames
    return out


def libero_to_lerobot(sources: list[Path], out: Path, *, codec: str = "av1", fps: int | None = None,
                      episodes_per_file: int | None = None, overwrite: bool = False) -> Path:
    """Every demo of the LIBERO files (files or folders of them) as one LeRobot v3.0 dataset at `out`
    (an existing dataset there is replaced, once the new one is whole, only with `overwrite`)."""
    check_new([out], overwrite=overwrite, what="conversion")
    from .lerobot_writer import LeRobotWriter, camera, vector

    demos = []  # (file, demo name, instruction) in file order, demo order
    found_fps = set()
    for path in resolve_files(sources):
        with open_libero_hdf5(path) as handle:
            found_fps.add(control_frequency(handle))
            demos += [(path, name, read_instruction(handle, path)) for name in demo_names(handle)]
    if not demos:
        raise LiberoFileError(f"{[str(s) for s in sources]}: no demo_N groups to convert.")
    found_fps.discard(None)
    if fps is None:
        if len(found_fps) > 1:
            raise LiberoFileError(f"the files were recorded at different control frequencies {sorted(found_fps)}; "
                                  "pass --fps, or convert them separately.")
        fps = found_fps.pop() if found_fps else LIBERO_FPS
    writer = None
    try:
        for path, name, instruction in demos:
            with open_libero_hdf5(path) as handle:
                arrays = _read_demo(handle, name, images_upside_down(handle))
            if writer is None:
                features = {key: vector(value.shape[1], str(value.dtype)) for key, value in arrays.items()
                            if value.ndim == 2}
                features["observation.state"]["names"] = STATE_NAMES
                features.update({key: {"dtype": "bool" if value.dtype == bool else str(value.dtype), "shape": [1],
                                       "names": None} for key, value in arrays.items() if value.ndim == 1})
                features.update({key: camera(*arrays[key].shape[1:3], video=codec != "png")
                                 for key in CAMERAS.values() if key in arrays})
                writer = LeRobotWriter(out, fps=fps, features=features, robot_type="panda",
                                       codec="av1" if codec == "png" else codec, episodes_per_file=episodes_per_file,
                                       overwrite=overwrite)
            if set(arrays) != set(writer.features) - {"timestamp", "frame_index", "episode_index", "index",
                                                      "task_index"}:
                raise LiberoFileError(f"{path} data/{name}: holds {sorted(arrays)}, the first demo held "
                                      f"{sorted(writer.features)}; every demo needs the same observations.")
            writer.add_episode(arrays, task=instruction)
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise


def _file_name(instruction: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", instruction.lower()).strip("_") or "episodes"
    return f"{words[:120]}_demo.hdf5"


def file_names(instructions: list[str]) -> dict[str, str]:
    """A distinct file name per task: instructions that differ only in case, punctuation or past 120 characters
    ("Open the drawer" and "open the drawer!") would share one, the second file replacing the first; the later
    ones get _2, _3, ... (each file keeps its own instruction as its language)."""
    names, taken = {}, set()
    for instruction in instructions:
        name, n = _file_name(instruction), 1
        while name in taken:
            n += 1
            name = f"{_file_name(instruction).removesuffix('_demo.hdf5')}_{n}_demo.hdf5"
        names[instruction] = name
        taken.add(name)
    return names


def lerobot_to_libero(source: Path, out: Path, *, agentview: str | None = None,
                      eye_in_hand: str | None = None, overwrite: bool = False) -> list[Path]:
    """One LIBERO HDF5 file per task of the LeRobot dataset (LIBERO files hold one task each); a file of the same
    name already in `out` is replaced only with `overwrite` (checked for every file before any is written)."""
    from .lerobot import LeRobotSource

    data = LeRobotSource(source)
    named = {"agentview": agentview, "eye_in_hand": eye_in_hand}
    for role, default in (("agentview", 0), ("eye_in_hand", 1)):
        if named[role] is None:
            preferred = CAMERAS[f"{role}_rgb"]
            named[role] = preferred if preferred in data.cameras else \
                (data.cameras[default] if len(data.cameras) > default else None)
        elif named[role] not in data.cameras:
            named[role] = data._camera_name(named[role], list(data.cameras))
    if named["agentview"] is None:
        raise LiberoFileError(f"{source}: no image or video feature; a LIBERO demo needs agentview_rgb frames.")
    by_task: dict[str, list] = {}
    for episode in data.episodes():
        by_task.setdefault(episode.instruction, []).append(episode)
    if out.exists() and not out.is_dir():
        raise LiberoFileError(f"{out}: exists and is not a folder; --to libero writes one file per task into it.")
    names = file_names(list(by_task))  # distinct among themselves, then checked against what `out` holds
    check_new([out / name for name in names.values()], overwrite=overwrite, what="conversion")
    writable(out, "OUT")
    written = []
    for instruction, episodes in by_task.items():
        path = out / names[instruction]
        # the dataset's frame rate as the file's control frequency: its time base survives the round trip
        env_args = {"env_kwargs": {"control_freq": round(data.fps)}}
        with LiberoHDF5Writer(path, language=instruction or "no instruction", env_args=env_args) as writer:
            for episode in episodes:
                writer.add_demo(**_libero_arrays(data, episode, named, source))
        written.append(path)
    return written


def _libero_arrays(data, episode, named: dict, source: Path) -> dict:
    T, everything = episode.length, list(range(episode.length))
    if episode.actions.shape[1] != 7 or episode.states.shape[1] != 8:
        raise LiberoFileError(f"{episode.source}: action {list(episode.actions.shape)} and observation.state "
                              f"{list(episode.states.shape)}; LIBERO needs [T, 7] actions and an [T, 8] state "
                              "(ee position 3, axis-angle 3, gripper 2).")
    arrays = {"actions": episode.actions, "ee_states": episode.states[:, :6], "gripper_states": episode.states[:, 6:],
              "agentview_rgb": episode.frames(named["agentview"], everything)}
    if named["eye_in_hand"] is not None:
        arrays["eye_in_hand_rgb"] = episode.frames(named["eye_in_hand"], everything)
    optional = {"joint_states": "observation.joint_states", "states": "observation.sim_state",
                "rewards": "next.reward", "dones": "next.done"}
    for key, feature in optional.items():
        if feature in data.features:
            value = data.array(episode, feature)
            arrays[key] = value if key in ("joint_states", "states") else value[:, 0]
    if "joint_states" not in arrays:
        warnings.warn(f"{source}: no observation.joint_states feature; LIBERO's obs/joint_states are written as "
                      "zeros (LARA's readers do not use them).", stacklevel=3)
        arrays["joint_states"] = np.zeros((T, 7))
    return arrays


def build_parser() -> argparse.ArgumentParser:
    from lara.cli import ArgumentParser, integer

    parser = ArgumentParser(prog="lara data convert", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="LIBERO *.hdf5 files or folders; or one LeRobot folder")
    parser.add_argument("--to", required=True, choices=["lerobot", "libero"], help="the format to write")
    parser.add_argument("--codec", default="av1", choices=["av1", "h264", "png"],
                        help="--to lerobot: camera storage (av1 = LeRobot's default; png = lossless in parquet)")
    parser.add_argument("--fps", type=integer(1, 1000), default=None, help="--to lerobot: frame rate (default: the files' "
                        f"control_freq, else {LIBERO_FPS})")
    parser.add_argument("--episodes-per-file", type=integer(1), default=None,
                        help="--to lerobot: start a new data/video file every N episodes (default: by size)")
    parser.add_argument("--agentview", default=None, help="--to libero: the camera feature for agentview_rgb")
    parser.add_argument("--eye-in-hand", default=None, help="--to libero: the camera feature for eye_in_hand_rgb")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    *sources, out = args.sources
    if not sources:
        parser.error("give SRC... and OUT")
    if args.to == "libero" and len(sources) != 1:
        parser.error("--to libero reads one LeRobot dataset folder")
    with writing(out):  # a full disk: one line naming OUT (the writers' staging is removed or cleared next time)
        if args.to == "lerobot":
            written = [libero_to_lerobot(sources, out, codec=args.codec, fps=args.fps,
                                         episodes_per_file=args.episodes_per_file, overwrite=args.overwrite)]
        else:
            written = lerobot_to_libero(sources[0], out, agentview=args.agentview, eye_in_hand=args.eye_in_hand,
                                        overwrite=args.overwrite)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    import sys

    from lara.errors import run_command

    raise SystemExit(run_command("lara data convert", main, sys.argv[1:]))
