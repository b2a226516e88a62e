"""LeRobot dataset folders (codebase v2.1 and v3.0) as an episode source, read with pyarrow and PyAV only
(the `lerobot` package is not needed: it imports torchvision). See `lara.data.episodes` for the interface.

Layout facts, checked against lerobot's own code (src/lerobot/datasets/utils.py, lerobot_dataset.py,
video_utils.py of v0.3.3, v0.4.4 and v0.6.1):

  meta/info.json     codebase_version ("v2.1" | "v3.0"), fps, features {name: {dtype, shape, names[, info]}},
                     total_episodes, total_frames, chunks_size, data_path, video_path (templates below)
  meta/stats.json    {feature: {min, max, mean, std, count[, q01, q10, q50, q90, q99]}} (lists)
  v2.1  data_path    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet  (one episode each)
        video_path   videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
                     episode_chunk = episode_index // chunks_size; a frame's video time is its `timestamp`
        meta/episodes.jsonl  {"episode_index", "tasks": [str], "length"} per line
        meta/tasks.jsonl     {"task_index", "task"} per line
  v3.0  data_path    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet          (many episodes each)
        video_path   videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4 (many episodes each)
        meta/episodes/chunk-*/file-*.parquet  one row per episode: episode_index, tasks, length,
                     data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                     videos/{key}/chunk_index, videos/{key}/file_index, videos/{key}/from_timestamp,
                     videos/{key}/to_timestamp, meta/episodes/chunk_index, meta/episodes/file_index, stats/...
                     a frame's video time is from_timestamp + its `timestamp`
        meta/tasks.parquet   column task_index; the task string is the pandas index: stored as column
                     `__index_level_0__` by lerobot 0.4.x (unnamed index), as column `task` by 0.6.x
  data parquet rows  timestamp f32, frame_index, episode_index, index (global), task_index (i64), one column
                     per non-video feature; "image" features are {bytes: PNG, path} structs
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import LiberoDataConfig, SourceSpec
from .episodes import Episode, SourceError
from .statistics import GRIPPER_NOT_NORMALIZED, ArrayStatistics, DatasetStatistics
from .video_io import VideoError, VideoReader

INFO_PATH = "meta/info.json"
VERSIONS = ("v2.0", "v2.1", "v3.0")
ACTION, STATE = "action", "observation.state"


def recognise(path: Path) -> bool:
    return path.is_dir() and (path / INFO_PATH).is_file()


def options(config: LiberoDataConfig, spec: SourceSpec) -> dict:
    """The data core's settings this reader takes: cameras (named as for LIBERO, `agentview_rgb`, or by LeRobot
    feature name), and whether to leave the actions unread."""
    return {"cameras": (config.camera, *config.extra_cameras), "action_free": config.actions_unread(spec)}


def open_source(path: Path, *, skip_bad_files: bool = False, cameras: tuple[str, ...] | None = None,
                action_free: bool = False) -> "LeRobotSource":
    """cameras: feature names (`observation.images.top`), their last part (`top`) or LIBERO's obs name
    (`agentview_rgb` for `observation.images.agentview`); None = all of them."""
    return LeRobotSource(path, cameras=cameras, action_free=action_free)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise SourceError(f"{path}: missing; a LeRobot dataset folder needs it.") from error
    except ValueError as error:
        raise SourceError(f"{path}: not valid JSON: {error}.") from error


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise SourceError(f"{path}: missing; a LeRobot v2.1 dataset folder needs it.")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as error:
        raise SourceError(f"{path}: not valid JSON lines: {error}.") from error


def _read_table(path: Path, columns: list[str] | None = None):
    if not path.is_file():
        raise SourceError(f"{path}: missing parquet file named by the dataset's metadata.")
    try:
        return pq.read_table(path, columns=columns, memory_map=True)
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError / KeyError for bad or foreign files
        raise SourceError(f"{path}: cannot be read as parquet{'' if columns is None else f' columns {columns}'}: "
                          f"{error}.") from error


def read_tasks_parquet(path: Path) -> dict[int, str]:
    """task_index -> task from meta/tasks.parquet, in either column layout (see the module docstring)."""
    table = _read_table(path)
    name = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
    if name is None or "task_index" not in table.column_names:
        raise SourceError(f"{path}: expected columns task_index and task (or __index_level_0__), "
                          f"found {table.column_names}.")
    return dict(zip(table["task_index"].to_pylist(), table[name].to_pylist()))


def _rows(column, positions: np.ndarray, data: Path, name: str) -> np.ndarray:
    """[len(positions), D] from a list / fixed-size-list column, [len(positions), 1] from a scalar one."""
    column = column.combine_chunks().take(positions)
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) \
            or pa.types.is_large_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        if len(values) % max(len(column), 1):
            raise SourceError(f"{data}: `{name}` rows have different lengths; expected one vector size.")
        return values.reshape(len(column), -1)
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        return column.to_numpy(zero_copy_only=False)[:, None]
    raise SourceError(f"{data}: `{name}` has type {column.type}; expected numbers or lists of numbers.")


class LeRobotSource:
    """The episodes of a local LeRobot dataset folder; frames from parquet PNG bytes or from mp4 files."""

    format = "lerobot"

    def __init__(self, path: Path, *, cameras: tuple[str, ...] | None = None, action_free: bool = False):
        self.path = Path(path)
        self.info = _load_json(self.path / INFO_PATH)
        where = self.path / INFO_PATH
        self.version = self.info.get("codebase_version")
        if self.version not in VERSIONS:
            raise SourceError(f"{where}: codebase_version {self.version!r} is not readable here; expected one of "
                              f"{list(VERSIONS)} (convert older datasets with lerobot's own scripts).")
        missing = [key for key in ("fps", "features", "data_path") if key not in self.info]
        if missing:
            raise SourceError(f"{where}: missing fields {missing}.")
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]
        visual = [name for name, ft in self.features.items() if ft.get("dtype") in ("image", "video")]
        # camera names as asked (episodes answer to them) -> the feature that holds them
        self._feature_of = {c: c for c in visual} if cameras is None else \
            {c: self._camera_name(c, visual) for c in cameras}
        self.cameras = tuple(self._feature_of)
        self.action_free = action_free
        if not action_free:
            for key in (ACTION, STATE):
                if key not in self.features:
                    raise SourceError(f"{where}: no {key!r} feature (features: {sorted(self.features)}); "
                                      "set action_free=True to read frames only.")
        self._videos = VideoReader()
        self._pid: int | None = None
        self._image_columns: dict[tuple[Path, str], Any] = {}
        self._episodes = self._scan_v3() if self.version == "v3.0" else self._scan_v2()
        if not self._episodes:
            raise SourceError(f"{self.path}: the dataset holds no episodes.")

    def _camera_name(self, camera: str, visual: list[str]) -> str:
        # LIBERO's obs names work too: agentview_rgb -> observation.images.agentview (what `convert` writes)
        for name in (camera, f"observation.images.{camera}", f"observation.images.{camera.removesuffix('_rgb')}"):
            if name in visual:
                return name
        raise SourceError(f"{self.path / INFO_PATH}: no camera {camera!r}; image/video features: {visual}.")

    # -- metadata ----------------------------------------------------------------------------------------

    def _scan_v2(self) -> list[Episode]:
        tasks = {row["task_index"]: row["task"] for row in _jsonl(self.path / "meta/tasks.jsonl")}
        chunks_size = int(self.info.get("chunks_size", 1000))
        episodes = []
        for row in sorted(_jsonl(self.path / "meta/episodes.jsonl"), key=lambda r: r["episode_index"]):
            index = int(row["episode_index"])
            fields = dict(episode_chunk=index // chunks_size, episode_index=index)
            data = self.path / self.info["data_path"].format(**fields)
            videos = {key: (self.path / self.info["video_path"].format(video_key=key, **fields), 0.0)
                      for key in set(self._feature_of.values()) if self.features[key]["dtype"] == "video"}
            table = _read_table(data, self._low_dim_columns())
            episodes.append(self._episode(index, table, data, np.arange(table.num_rows), videos, tasks, row))
        return episodes

    def _scan_v3(self) -> list[Episode]:
        tasks = read_tasks_parquet(self.path / "meta/tasks.parquet")
        files = sorted((self.path / "meta/episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise SourceError(f"{self.path}/meta/episodes: no chunk-*/file-*.parquet episode tables.")
        def locations(file: Path) -> list[dict]:  # the per-episode stats/... columns are not needed here
            table = _read_table(file)
            return table.drop_columns([n for n in table.column_names if n.startswith("stats/")]).to_pylist()

        rows = sorted((row for f in files for row in locations(f)), key=lambda r: r["episode_index"])
        episodes, tables = [], {}
        for row in rows:
            data = self.path / self.info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                            file_index=row["data/file_index"])
            if data not in tables:
                tables[data] = _read_table(data, self._low_dim_columns())
            table = tables[data]
            positions = np.flatnonzero(table["episode_index"].to_numpy() == row["episode_index"])
            videos = {}
            for key in set(self._feature_of.values()):
                if self.features[key]["dtype"] == "video":
                    prefix = f"videos/{key}/"
                    if prefix + "chunk_index" not in row:
                        raise SourceError(f"{files[0].parent.parent}: episode {row['episode_index']} has no "
                                          f"{prefix}chunk_index / file_index / from_timestamp columns.")
                    video = self.path / self.info["video_path"].format(
                        video_key=key, chunk_index=row[prefix + "chunk_index"], file_index=row[prefix + "file_index"])
                    videos[key] = (video, float(row[prefix + "from_timestamp"]))
            episodes.append(self._episode(int(row["episode_index"]), table, data, positions, videos, tasks, row))
        return episodes

    def _low_dim_columns(self) -> list[str]:
        wanted = ["timestamp", "frame_index", "episode_index", "task_index"]
        if not self.action_free:
            wanted += [ACTION, STATE]
        return wanted

    def _episode(self, index, table, data, positions, videos, tasks, row) -> Episode:
        where = f"{self.path} episode {index}"
        if len(positions) == 0:
            raise SourceError(f"{data}: holds no rows of episode {index} named by the episode metadata.")
        frame_index = table["frame_index"].to_numpy()[positions]
        order = np.argsort(frame_index, kind="stable")
        positions = positions[order]  # rows of the episode in frame order
        if not np.array_equal(frame_index[order], np.arange(len(positions))):
            raise SourceError(f"{data}: episode {index} frame_index is not 0..{len(positions) - 1}.")
        if "length" in row and int(row["length"]) != len(positions):
            raise SourceError(f"{where}: metadata says length {row['length']}, {data} holds {len(positions)} rows.")
        task_index = int(table["task_index"].to_numpy()[positions[0]])
        if task_index not in tasks:
            raise SourceError(f"{where}: task_index {task_index} is not in the tasks table.")
        arrays = {} if self.action_free else {k: _rows(table[k], positions, data, k) for k in (ACTION, STATE)}
        timestamps = table["timestamp"].to_numpy()[positions].astype(np.float64)
        key = dict(index=index, data=data, rows=positions, timestamps=timestamps, videos=videos)
        return Episode(source=where, path=self.path, key=key, length=len(positions), fps=self.fps,
                       instruction=tasks[task_index], cameras=self.cameras, actions=arrays.get(ACTION),
                       states=arrays.get(STATE), reader=self)

    def episodes(self) -> list[Episode]:
        return list(self._episodes)

    def statistics(self) -> DatasetStatistics | None:
        """From meta/stats.json when it holds q01/q99 for action and state (lerobot >= 0.4 writes them)."""
        path = self.path / "meta/stats.json"
        if self.action_free or not path.is_file():
            return None
        stats = _load_json(path)
        if not all(key in stats and {"q01", "q99"} <= set(stats[key]) for key in (ACTION, STATE)):
            return None
        action = ArrayStatistics.from_json(stats[ACTION], f"{path} {ACTION}")
        if len(action.q01) == len(GRIPPER_NOT_NORMALIZED):  # the core's LIBERO/OpenVLA convention
            action = ArrayStatistics(**{**vars(action), "mask": np.array(GRIPPER_NOT_NORMALIZED)})
        return DatasetStatistics(action=action, proprio=ArrayStatistics.from_json(stats[STATE], f"{path} {STATE}"),
                                 num_transitions=int(self.info.get("total_frames", 0)),
                                 num_trajectories=int(self.info.get("total_episodes", len(self._episodes))))

    def array(self, episode: Episode, name: str) -> np.ndarray:
        """[T, D] of any numeric feature of the episode (e.g. `observation.joint_states`), read on demand."""
        if name not in self.features or self.features[name].get("dtype") in ("image", "video", "string"):
            numeric = sorted(k for k, ft in self.features.items() if ft.get("dtype") not in ("image", "video", "string"))
            raise SourceError(f"{self.path / INFO_PATH}: no numeric feature {name!r}; numeric features: {numeric}.")
        key = episode.key
        return _rows(_read_table(key["data"], [name])[name], key["rows"], key["data"], name)

    # -- frames ------------------------------------------------------------------------------------------

    def frame_size(self, key: dict, camera: str) -> tuple[int, int] | None:
        """(H, W) of a camera as info.json declares it ([height, width, channels]); None where it says otherwise."""
        feature = self.features[self._feature_of[camera]]
        shape, names = feature.get("shape") or [], feature.get("names") or []
        if len(shape) == 3 and list(names[:2]) == ["height", "width"]:
            return int(shape[0]), int(shape[1])
        return None

    def read_frames(self, key: dict, camera: str, indices: list[int]) -> np.ndarray:
        camera = self._feature_of[camera]
        if self.features[camera]["dtype"] == "video":
            path, start = key["videos"][camera]
            times = [start + key["timestamps"][i] for i in indices]
            try:
                return self._videos.frames_at(path, times, tolerance_s=0.25 / self.fps)
            except VideoError as error:
                raise SourceError(f"{self.path} episode {key['index']} {camera} frames {indices}: {error}") from error
        return self._png_frames(key, camera, indices)

    def _png_frames(self, key: dict, camera: str, indices: list[int]) -> np.ndarray:
        from PIL import Image

        if self._pid != os.getpid():
            self.close()
            self._pid = os.getpid()
        cell = (key["data"], camera)
        if cell not in self._image_columns:  # memory-mapped; PNG bytes are decoded per frame asked for
            self._image_columns[cell] = _read_table(key["data"], [camera])[camera].combine_chunks()
        column = self._image_columns[cell]
        out = []
        for i in indices:
            value = column[int(key["rows"][i])].as_py()
            if not value or not value.get("bytes"):
                raise SourceError(f"{key['data']}: {camera} of episode {key['index']} frame {i} holds no "
                                  "embedded image bytes (images stored as separate files are not supported).")
            out.append(np.asarray(Image.open(io.BytesIO(value["bytes"])).convert("RGB")))
        return np.stack(out)

    def close(self) -> None:
        self._videos.close()
        self._image_columns = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pid": None, "_image_columns": {}}
