"""Writes a LeRobot v3.0 dataset folder with pyarrow and PyAV (no `lerobot` import), in the layout that
lerobot's `LeRobotDataset` loads (facts in `lara.data.lerobot`'s docstring):

    with LeRobotWriter("out", fps=20, features={"action": vector(7), "observation.state": vector(8),
                                                "observation.images.agentview": camera(128, 128)}) as w:
        w.add_episode({"action": a, "observation.state": s, "observation.images.agentview": frames}, task="...")

Video features go to mp4 files holding several episodes (one continuous stream per file: episode e starts
at `from_timestamp` = its first frame in the file / fps); image features are PNG bytes in the data parquet.
Files roll over by size (LeRobot's defaults: 100 MB data, 200 MB video) or every `episodes_per_file`.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lara.errors import InputError
from lara.outputs import publish_folder, staging_beside

from .video_io import VideoEncoder, stream_info

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
# lerobot.datasets.utils.DEFAULT_FEATURES: columns every data parquet holds
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image() in arrow


def vector(size: int, dtype: str = "float32", names: list[str] | None = None) -> dict:
    return {"dtype": dtype, "shape": [size], "names": names}


def camera(height: int, width: int, *, video: bool = True) -> dict:
    return {"dtype": "video" if video else "image", "shape": [height, width, 3],
            "names": ["height", "width", "channels"]}


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    """lerobot's update_chunk_file_indices: chunks hold chunks_size files."""
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _arrow_type(feature: dict) -> pa.DataType:
    """The arrow type `datasets` gives the feature (get_hf_features_from_features): scalar for shape [1],
    fixed-size list for a vector, PNG struct for an image."""
    if feature["dtype"] == "image":
        return IMAGE_TYPE
    scalar = pa.from_numpy_dtype(np.dtype(feature["dtype"]))
    if list(feature["shape"]) == [1]:
        return scalar
    if len(feature["shape"]) != 1:
        raise ValueError(f"feature shape {feature['shape']}: only vectors, scalars and cameras are written here.")
    return pa.list_(scalar, feature["shape"][0])


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class _Stats:
    """Running per-feature statistics in lerobot's stats.json shape (images per channel in [0, 1], [3, 1, 1])."""

    def __init__(self):
        self.values: dict[str, list[np.ndarray]] = {}
        self.count: dict[str, int] = {}

    def add(self, name: str, array: np.ndarray, image: bool) -> None:
        self.count[name] = self.count.get(name, 0) + len(array)  # frames, for images too
        if image:  # per-channel over a strided subsample of frames, as lerobot samples frames for images
            array = array[:: max(1, len(array) // 100)].reshape(-1, 3).astype(np.float64) / 255.0
        self.values.setdefault(name, []).append(np.asarray(array, dtype=np.float64).reshape(len(array), -1))

    def to_json(self, images: set[str]) -> dict:
        out = {}
        for name, parts in self.values.items():
            values = np.concatenate(parts)
            stats = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0)}
            stats.update({key: np.quantile(values, q, axis=0) for key, q in QUANTILES.items()})
            shape = (3, 1, 1) if name in images else (-1,)
            out[name] = {key: value.reshape(shape).tolist() for key, value in stats.items()}
            out[name]["count"] = [self.count[name]]
        return out


def _pandas_task_metadata() -> bytes:
    """The schema metadata pandas writes for a frame indexed by a `task` column, so lerobot's
    `pd.read_parquet(meta/tasks.parquet)` gets the task strings back as its index (0.4.x and 0.6.x)."""
    return json.dumps({
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3",
    }).encode()


class LeRobotWriter:
    """Builds the dataset in a temporary folder beside `root` and moves it onto `root` on close."""

    def __init__(self, root, *, fps: int, features: dict[str, dict], robot_type: str | None = None,
                 codec: str = "av1", crf: int = 30, gop: int = 2, episodes_per_file: int | None = None,
                 data_file_mb: int = 100, video_file_mb: int = 200, overwrite: bool = False):
        self.root, self.overwrite = Path(root), overwrite
        if self.root.exists() and not overwrite:
            raise InputError(f"{self.root}: already exists; a LeRobot dataset is written into a new folder (give "
                             "--overwrite to replace it).")
        if self.root.exists() and not (self.root / "meta" / "info.json").is_file():
            raise InputError(f"{self.root}: exists and is not a LeRobot dataset (no meta/info.json); --overwrite "
                             "replaces a dataset only: give another folder.")
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer (LeRobot's info.json stores an int), got {fps}.")
        reserved = sorted(set(features) & set(DEFAULT_FEATURES))
        if reserved:
            raise ValueError(f"features {reserved} are written by the writer itself; leave them out.")
        self.fps, self.robot_type, self.features = int(fps), robot_type, {**features, **DEFAULT_FEATURES}
        self.videos = [k for k, ft in features.items() if ft["dtype"] == "video"]
        self.columns = [k for k in self.features if self.features[k]["dtype"] != "video"]
        self.schema = pa.schema([(k, _arrow_type(self.features[k])) for k in self.columns])
        self.codec, self.crf, self.gop = codec, crf, gop
        self.episodes_per_file, self.data_file_mb, self.video_file_mb = episodes_per_file, data_file_mb, video_file_mb
        # the staging folder beside it, named after the writer's process: stale ones of this root are removed
        self._tmp = staging_beside(self.root, folder=True)
        self.tasks: dict[str, int] = {}
        self.episode_rows: list[dict] = []
        self.total_frames = 0
        self._stats = _Stats()
        self._data = {"file": (0, 0), "writer": None, "episodes": 0}
        self._video = {key: {"file": (0, 0), "encoder": None, "episodes": 0} for key in self.videos}

    def add_episode(self, frames: dict[str, np.ndarray], task: str) -> int:
        """Append one episode: an array [T, ...] per feature (cameras uint8 [T, H, W, 3]); returns its index."""
        missing = sorted(set(self.features) - set(DEFAULT_FEATURES) - set(frames))
        extra = sorted(set(frames) - set(self.features))
        if missing or extra:
            raise ValueError(f"add_episode: missing features {missing}, unknown features {extra}.")
        T = len(next(iter(frames.values())))
        for name, array in frames.items():
            shape = list(self.features[name]["shape"])
            expected = [T, *shape] if shape != [1] else [T]
            if list(np.shape(array)) != expected and not (shape == [1] and list(np.shape(array)) == [T, 1]):
                raise ValueError(f"add_episode: `{name}` has shape {list(np.shape(array))}, expected {expected}.")
        if T == 0:
            raise ValueError("add_episode: an episode needs at least one frame.")
        index = len(self.episode_rows)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        row = {"episode_index": index, "tasks": [task], "length": T}
        row.update(self._write_data(frames, T, index, task_index))
        for key in self.videos:
            row.update(self._write_video(key, np.asarray(frames[key])))
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        self.episode_rows.append(row)
        self.total_frames += T
        for name, array in frames.items():
            if self.features[name]["dtype"] not in ("string", "bool"):
                self._stats.add(name, np.asarray(array), image=self.features[name]["dtype"] in ("image", "video"))
        return index

    def _write_data(self, frames: dict, T: int, index: int, task_index: int) -> dict:
        state = self._data
        if state["writer"] is not None and self._full(state, self.data_file_mb, self._data_path(state)):
            state["writer"].close()
            state.update(writer=None, file=_next_file(*state["file"]), episodes=0)
        path = self._data_path(state)
        if state["writer"] is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            state["writer"] = pq.ParquetWriter(path, self.schema, compression="snappy")
        columns = {"timestamp": np.arange(T, dtype=np.float32) / self.fps, "frame_index": np.arange(T),
                   "episode_index": np.full(T, index), "index": self.total_frames + np.arange(T),
                   "task_index": np.full(T, task_index)}
        for name in self.columns:
            if name in columns:
                continue
            if self.features[name]["dtype"] == "image":
                columns[name] = [{"bytes": _png(np.asarray(image)), "path": None} for image in frames[name]]
            else:
                columns[name] = np.asarray(frames[name], dtype=self.features[name]["dtype"]).reshape(T, -1)
        arrays = []
        for name in self.columns:
            kind, value = self.schema.field(name).type, columns[name]
            if pa.types.is_fixed_size_list(kind):
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), kind.list_size))
            else:
                arrays.append(pa.array(value.reshape(-1) if isinstance(value, np.ndarray) else value, type=kind))
        state["writer"].write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        state["episodes"] += 1
        chunk, file = state["file"]
        return {"data/chunk_index": chunk, "data/file_index": file, "dataset_from_index": self.total_frames,
                "dataset_to_index": self.total_frames + T}

    def _data_path(self, state: dict) -> Path:
        return self._tmp / DATA_PATH.format(chunk_index=state["file"][0], file_index=state["file"][1])

    def _full(self, state: dict, limit_mb: int, path: Path) -> bool:
        """Whether the open file has taken its share: `episodes_per_file` episodes, else `limit_mb` on disk."""
        if self.episodes_per_file is not None:
            return state["episodes"] >= self.episodes_per_file
        return path.is_file() and path.stat().st_size / 2**20 >= limit_mb

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        state = self._video[key]
        encoder = state["encoder"]
        if encoder is not None and self._full(state, self.video_file_mb, encoder.path):
            encoder.close()
            state.update(encoder=None, file=_next_file(*state["file"]), episodes=0)
        if state["encoder"] is None:
            chunk, file = state["file"]
            path = self._tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            state["encoder"] = VideoEncoder(path, fps=self.fps, width=frames.shape[2], height=frames.shape[1],
                                            codec=self.codec, crf=self.crf, gop=self.gop)
        encoder = state["encoder"]
        start = encoder.frames
        encoder.write(frames)
        state["episodes"] += 1
        chunk, file = state["file"]
        prefix = f"videos/{key}/"
        return {prefix + "chunk_index": chunk, prefix + "file_index": file,
                prefix + "from_timestamp": start / self.fps, prefix + "to_timestamp": encoder.frames / self.fps}

    def close(self) -> Path:
        if not self.episode_rows:
            self.discard()
            raise ValueError(f"{self.root}: no episode was added; nothing was written.")
        if self._data["writer"] is not None:
            self._data["writer"].close()
        for key in self.videos:
            self._video[key]["encoder"].close()
        features = json.loads(json.dumps(self.features))
        for key in self.videos:
            first = self._tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            features[key]["info"] = stream_info(first)
        (self._tmp / "meta").mkdir(exist_ok=True)
        (self._tmp / EPISODES_PATH).parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), self._tmp / EPISODES_PATH)
        tasks = pa.table({"task_index": list(self.tasks.values()), "task": list(self.tasks)})
        pq.write_table(tasks.replace_schema_metadata({b"pandas": _pandas_task_metadata()}),
                       self._tmp / "meta/tasks.parquet")
        images = {k for k, ft in self.features.items() if ft["dtype"] in ("image", "video")}
        (self._tmp / "meta/stats.json").write_text(json.dumps(self._stats.to_json(images), indent=2))
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
                "total_episodes": len(self.episode_rows), "total_frames": self.total_frames,
                "total_tasks": len(self.tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": self.data_file_mb, "video_files_size_in_mb": self.video_file_mb,
                "fps": self.fps, "splits": {"train": f"0:{len(self.episode_rows)}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.videos else None, "features": features}
        (self._tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
        return publish_folder(self._tmp, self.root)  # an earlier dataset (--overwrite) goes once the new one is whole

    def discard(self) -> None:
        """Remove the staging folder, whatever closing its open files says (a full disk fails their flush too)."""
        closers = [self._video[key]["encoder"].close for key in self.videos if self._video[key]["encoder"] is not None]
        if self._data["writer"] is not None:
            closers.append(self._data["writer"].close)
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()
