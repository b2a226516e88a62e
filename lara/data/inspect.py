"""`lara data inspect PATH`: what a data source holds and what the LAM will be fed from it.

    lara data inspect data/videos                       # any source: LIBERO HDF5, LeRobot, video folder
    lara data inspect data/scripted_object --pairs 6 --frame-gap 9 --image-size 64 --sheet pairs.png

Prints the format, episodes, frames, fps, cameras, tasks and (for sources with actions) the action and
state statistics, then writes a PNG contact sheet: one row per sampled pair, o_t beside o_{t+k}, cut and
resized exactly as training cuts them.

    python -m lara.data.libero_hdf5 data/scripted_object/*.hdf5   # LIBERO HDF5 files, one line per file and demo

summarises LIBERO HDF5 files as they are stored (demos, steps, instruction, image convention, observation keys)
with h5py alone, so it also runs where torch is not installed (the robot recorder's system python).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .episodes import SourceError, detect_format
from .libero_hdf5 import LiberoFileError, inspect_libero_hdf5

if TYPE_CHECKING:  # the data core (torch) is imported by `main` only: `libero_files_main` needs h5py alone
    from .dataset import EpisodeDataset


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def summary(data: EpisodeDataset) -> list[str]:
    """Human-readable lines describing a dataset's sources, episodes and statistics."""
    episodes = data.episodes
    lengths = [ep.length for ep in episodes]
    fps = [ep.fps for ep in episodes if ep.fps]
    cameras = sorted({camera for ep in episodes for camera in ep.cameras})
    formats = sorted({source.format for source in data.sources})
    lines = [f"{', '.join(str(s.path) for s in data.sources)}: {'/'.join(formats)}, {len(episodes)} episodes, "
             f"{sum(lengths)} frames (per episode {min(lengths)}-{max(lengths)}, mean {np.mean(lengths):.1f}), "
             f"fps {_range(fps) if fps else 'unknown'}, cameras {cameras}"]
    tasks = Counter(ep.instruction for ep in episodes)
    lines.append(f"tasks ({len(tasks)}):")
    lines += [f"  {count:>5} x {task!r}" for task, count in tasks.most_common(10)]
    if len(tasks) > 10:
        lines.append(f"  ... and {len(tasks) - 10} more")
    stats = data.statistics
    if stats is None:
        lines.append("actions: none (action-free: frames for the LAM only)")
    else:
        lines.append(f"actions: {len(stats.action.q01)}-D over {stats.num_transitions} steps, "
                     f"{stats.num_trajectories} episodes")
        for name in ("q01", "q99", "mean", "std"):
            lines.append(f"  {name:<4} {np.array2string(getattr(stats.action, name), precision=3, max_line_width=200)}")
        if stats.proprio is not None:
            lines.append(f"states: {len(stats.proprio.q01)}-D, mean "
                         f"{np.array2string(stats.proprio.mean, precision=3, max_line_width=200)}")
    k = sorted(set(data._gaps))
    lines.append(f"samples: {len(data)} (frame gap k = {_range(k)} frames)")
    return lines


def contact_sheet(data: EpisodeDataset, pairs: int, seed: int, path: Path) -> list[tuple[int, int, int]]:
    """Write `pairs` random (o_t, o_{t+k}) pairs side by side as a PNG; returns (episode, t, t+k) per row."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(data), size=min(pairs, len(data)), replace=False)
    rows, shown = [], []
    for index in chosen:
        sample = data[int(index)]
        frames = sample["lam_frames"].permute(0, 2, 3, 1).numpy()  # (2, H, W, 3)
        gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([frames[0], gap, frames[1]], axis=1))
        episode, t = sample["episode_index"], sample["frame_index"]
        shown.append((episode, t, min(t + data._gaps[episode], data.episodes[episode].length - 1)))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    from lara.outputs import replacing

    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as staging:  # whole or not at all
        Image.fromarray(np.concatenate(rows)).save(staging, format="PNG")
    return shown


def _cameras(path: Path, fmt: str, camera: str | None) -> tuple[str, list[str], bool]:
    """The camera of the pairs, the others to show, and whether to read frames only: a LeRobot dataset shows
    every camera it has (its LIBERO-named one first for the pairs, else its first) and needs no actions."""
    if fmt != "lerobot":
        return camera or "agentview_rgb", [], fmt == "video"
    from .lerobot import ACTION, STATE, LeRobotSource

    source = LeRobotSource(path, action_free=True)  # every camera, no feature required
    visual = list(source.cameras)
    if not visual:
        raise SourceError(f"{path}: no image or video feature; features: {sorted(source.features)}.")
    if camera is None:
        camera = next((c for c in visual if c == "observation.images.agentview"), visual[0])
    else:
        camera = source._camera_name(camera, visual)
    return camera, [c for c in visual if c != camera], not {ACTION, STATE} <= set(source.features)


def build_parser() -> argparse.ArgumentParser:
    from lara.cli import ArgumentParser, integer, number

    parser = ArgumentParser(prog="lara data inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a LIBERO HDF5 file/folder, a LeRobot dataset folder or videos")
    parser.add_argument("--format", choices=["libero_hdf5", "lerobot", "video"], default=None,
                        help="the reader (default: recognised from what is on disk)")
    parser.add_argument("--camera", default=None, help="camera of the pairs (default: agentview_rgb; a LeRobot "
                        "dataset's agentview, else its first camera; a video's only one)")
    parser.add_argument("--frame-gap", type=integer(1), default=9, help="k in frames")
    parser.add_argument("--frame-gap-s", type=number(above=0), default=None,
                        help="k in seconds (each episode's own fps)")
    parser.add_argument("--fps", type=number(above=0), default=None, help="resample videos to this frame rate")
    parser.add_argument("--image-size", type=integer(1), default=None, help="resize pairs to this square size")
    parser.add_argument("--crop", action="store_true", help="centre-crop to a square before resizing")
    parser.add_argument("--pairs", type=integer(0), default=4, help="pairs on the contact sheet (0: no sheet)")
    parser.add_argument("--sheet", type=Path, default=None, help="PNG path (default: <name>_pairs.png here)")
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=0, help="which pairs are drawn")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --sheet file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import LiberoDataConfig, SourceSpec
    from .dataset import EpisodeDataset

    from lara.outputs import check_new

    args = build_parser().parse_args(argv)
    sheet = args.sheet or Path(f"{args.path.resolve().name}_pairs.png")
    if args.pairs > 0:  # before any reading: an earlier sheet is the user's
        check_new([sheet], overwrite=args.overwrite, what="contact sheet")
    fmt = args.format or detect_format(args.path)
    camera, others, action_free = _cameras(args.path, fmt, args.camera)
    with warnings.catch_warnings(record=True) as skipped:  # an unreadable file is named, the rest inspected
        warnings.simplefilter("always")
        config = LiberoDataConfig(
            paths=[SourceSpec(path=args.path, format=fmt)], camera=camera, extra_cameras=others,
            frame_gap=args.frame_gap, frame_gap_s=args.frame_gap_s, fps=args.fps, image_size=args.image_size,
            crop=args.crop, action_free=action_free, skip_bad_files=True)
        data = EpisodeDataset(config)
    print("\n".join(summary(data)))
    for warning in skipped:
        if issubclass(warning.category, UserWarning):
            print(f"{warning.message}")
    if args.pairs > 0:
        shown = contact_sheet(data, args.pairs, args.seed, sheet)
        rows = ", ".join(f"{data.episodes[e].source} {t}->{u}" for e, t, u in shown)
        print(f"contact sheet: {sheet} ({len(shown)} pairs o_t | o_t+k, top to bottom: {rows})")
    return 0


def libero_files_main(argv: list[str] | None = None) -> int:
    """`python -m lara.data.libero_hdf5 FILE...`: one summary line per file and per demo."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m lara.data.libero_hdf5 FILE.hdf5 [FILE.hdf5 ...]", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            info = inspect_libero_hdf5(path)
        except (OSError, LiberoFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{info.path}: {info.num_demos} demos, {info.total} steps, {info.instruction!r}, "
              f"images {info.image_shape} {'upside-down (opengl)' if info.upside_down else 'upright (opencv)'}, "
              f"actions {'yes' if info.has_actions else 'no'}, obs {list(info.obs_keys)}")
        for name, length in info.demo_lengths.items():
            print(f"  {name}: {length} steps")
    return status
