"""LeRobot dataset folders built by hand with pyarrow and PyAV, following lerobot's own writers (not the
project's writer, so a reader test checks the format, not our writer's habits):

- v2.1: one parquet and one mp4 per episode (lerobot <= 0.3), jsonl metadata;
- v3.0: episodes encoded one by one and concatenated by remuxing into one mp4 (what lerobot 0.4's
  `concatenate_video_files` does), so episode 1 starts at episode 0's duration; tasks.parquet with the task
  string as `__index_level_0__` (0.4.x) or as a `task` column (0.6.x).
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

FPS = 10


def episode_frames(episode: int, T: int, size=(24, 32)) -> np.ndarray:
    """Smooth frames (a codec keeps them within a few levels) whose brightness says the frame index and whose
    green says the episode: frame t of episode e is told apart from every other frame by its mean colour."""
    H, W = size
    frames = np.zeros((T, H, W, 3), dtype=np.uint8)
    frames[..., 0] = (20 + 7 * np.arange(T))[:, None, None]
    frames[..., 1] = 40 + 50 * episode
    frames[..., 2] = np.linspace(0, 200, W, dtype=np.uint8)[None, None, :]
    return frames


def nearest_frames(decoded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each decoded frame, the index of the reference frame it is closest to (mean absolute difference)."""
    diff = np.abs(decoded[:, None].astype(np.int16) - reference[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return diff.argmin(axis=1)


def episode_arrays(episode: int, T: int) -> dict:
    rng = np.random.default_rng(episode)
    return {"action": rng.normal(size=(T, 7)).astype(np.float32),
            "observation.state": rng.normal(size=(T, 8)).astype(np.float32)}


def encode_mp4(path: Path, frames: np.ndarray, codec: str, fps: int = FPS) -> None:
    """One episode, as lerobot's encode_video_frames does (libsvtav1 / libx264, yuv420p, g=2, crf=30)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options={"g": "2", "crf": "30"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def duration_s(path: Path) -> float:
    """lerobot's get_video_duration_in_s."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def concatenate(parts: list[Path], out: Path) -> None:
    """Remux several single-episode mp4 files into one (no re-encode), shifting each part's timestamps
    by the durations before it."""
    with av.open(str(out), "w") as output:
        stream, offset_s = None, 0.0
        for part in parts:
            with av.open(str(part)) as source:
                source_stream = source.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(source_stream, opaque=True)
                    stream.time_base = source_stream.time_base
                shift = int(round(offset_s / source_stream.time_base))
                for packet in source.demux(source_stream):
                    if packet.dts is None:
                        continue
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = stream
                    output.mux(packet)
                offset_s += float(source_stream.duration * source_stream.time_base)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _features(cameras: dict[str, str], size) -> dict:
    features = {"action": {"dtype": "float32", "shape": [7], "names": None},
                "observation.state": {"dtype": "float32", "shape": [8], "names": None}}
    for name, kind in cameras.items():
        features[name] = {"dtype": kind, "shape": [*size, 3], "names": ["height", "width", "channels"]}
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    return features


def _rows(episode: int, T: int, start: int, task_index: int, cameras: dict[str, str], size) -> dict:
    columns = {key: list(value) for key, value in episode_arrays(episode, T).items()}
    columns.update(timestamp=(np.arange(T) / FPS).astype(np.float32), frame_index=np.arange(T),
                   episode_index=np.full(T, episode), index=start + np.arange(T), task_index=np.full(T, task_index))
    for name, kind in cameras.items():
        if kind == "image":
            columns[name] = [{"bytes": _png(f), "path": f"frame_{i:06d}.png"}
                             for i, f in enumerate(episode_frames(episode, T, size))]
    return columns


def write_v21(root: Path, lengths: list[int], tasks: list[str], *, cameras: dict[str, str], codec="libx264",
              size=(24, 32)) -> None:
    """A lerobot v2.1 folder; cameras: feature name -> "video" (one mp4 per episode) or "image" (PNG in parquet)."""
    info = {"codebase_version": "v2.1", "robot_type": "test", "fps": FPS, "total_episodes": len(lengths),
            "total_frames": sum(lengths), "total_tasks": len(set(tasks)), "chunks_size": 1000,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": _features(cameras, size)}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    unique = list(dict.fromkeys(tasks))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(unique)))
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": [t], "length": T}) + "\n" for e, (T, t) in enumerate(zip(lengths, tasks))))
    start = 0
    for e, (T, task) in enumerate(zip(lengths, tasks)):
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(_rows(e, T, start, unique.index(task), cameras, size)), path)
        for name, kind in cameras.items():
            if kind == "video":
                encode_mp4(root / f"videos/chunk-000/{name}/episode_{e:06d}.mp4", episode_frames(e, T, size), codec)
        start += T


def write_v30(root: Path, lengths: list[int], tasks: list[str], *, cameras: dict[str, str], codec="libsvtav1",
              size=(24, 32), tasks_layout: str = "0.4", episodes_per_file: int = 2) -> None:
    """A lerobot v3.0 folder: `episodes_per_file` episodes per data parquet and per mp4."""
    info = {"codebase_version": "v3.0", "robot_type": "test", "fps": FPS, "total_episodes": len(lengths),
            "total_frames": sum(lengths), "total_tasks": len(set(tasks)), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": _features(cameras, size)}
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    unique = list(dict.fromkeys(tasks))
    name = "__index_level_0__" if tasks_layout == "0.4" else "task"
    pq.write_table(pa.table({"task_index": list(range(len(unique))), name: unique}), root / "meta/tasks.parquet")
    rows, start = [], 0
    groups = [list(range(i, min(i + episodes_per_file, len(lengths)))) for i in range(0, len(lengths), episodes_per_file)]
    for file_index, group in enumerate(groups):
        tables = [pa.table(_rows(e, lengths[e], start + sum(lengths[group[0]:e]), unique.index(tasks[e]), cameras,
                                 size)) for e in group]
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        video_rows = {e: {} for e in group}
        for camera, kind in cameras.items():
            if kind != "video":
                continue
            parts = []
            for e in group:
                parts.append(root / f"tmp/{camera}_{e}.mp4")
                encode_mp4(parts[-1], episode_frames(e, lengths[e], size), codec)
            out = root / f"videos/{camera}/chunk-000/file-{file_index:03d}.mp4"
            out.parent.mkdir(parents=True, exist_ok=True)
            concatenate(parts, out)
            offset = 0.0
            for e, part in zip(group, parts):
                d = duration_s(part)
                video_rows[e] = {**video_rows[e], f"videos/{camera}/chunk_index": 0,
                                 f"videos/{camera}/file_index": file_index,
                                 f"videos/{camera}/from_timestamp": offset, f"videos/{camera}/to_timestamp": offset + d}
                offset += d
        for e in group:
            rows.append({"episode_index": e, "tasks": [tasks[e]], "length": lengths[e], "data/chunk_index": 0,
                         "data/file_index": file_index, "dataset_from_index": start,
                         "dataset_to_index": start + lengths[e], **video_rows[e],
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            start += lengths[e]
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    for part in (root / "tmp").glob("*.mp4") if (root / "tmp").exists() else []:
        part.unlink()
    if (root / "tmp").exists():
        (root / "tmp").rmdir()
