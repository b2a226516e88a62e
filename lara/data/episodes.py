"""The source-neutral episode every reader yields, and the registry that recognises sources on disk.

A reader only *yields episodes*; `lara.data.dataset.EpisodeDataset` (the one data core) cuts them into LARA
samples (frame pairs, `lam_valid`, action chunks and masks, normalisation, statistics). No reader cuts.

How a new source plugs in:

1. Write a module with a class implementing `EpisodeSource` (below): `episodes()` lists `Episode`s whose
   low-dimensional arrays are in memory and whose frames are read on demand through
   `source.read_frames(key, camera, indices)`; keep file handles per process (a DataLoader worker opens
   its own) and drop them in `__getstate__`. Errors name the file (and the episode, the step). Build the
   Episodes in `episodes()` rather than keeping them: an Episode references its reader, and a reader
   holding its Episodes is a reference cycle that keeps files open until the garbage collector runs.
2. Give the module three functions: `recognise(path: Path) -> bool` (cheap: looks at names on disk, no decode),
   `open_source(path: Path, **options) -> EpisodeSource`, whose `options` are the reader's own settings
   (`skip_bad_files` is always passed; an unknown option raises TypeError naming it), and
   `options(config: LiberoDataConfig, spec: SourceSpec) -> dict`, the settings it takes from the data config
   and the source's entry (libero_hdf5 and lerobot: cameras, action_free; video: labels, fps, window), refusing
   what it cannot do with a SourceError. `statistics()` may return stored statistics (LeRobot's
   meta/stats.json), used when the dataset reads that one source alone.
3. Add one line to `SOURCES`: `"format_name": "lara.data.module"`, so that the source is recognised on disk; a
   reader kept elsewhere is used unregistered by naming its module: `{path: ..., format: my_lab.readers.rlds}`.
   The module is imported on first use, so a source's heavy dependency (PyAV, pyarrow) is needed only when that
   source is read.

    source = open_source("data/videos")                 # recognised from what is on disk
    source = open_source("data/x", format="lerobot")    # or named explicitly
    for episode in source.episodes():
        frames = episode.frames("agentview_rgb", [0, 9])  # uint8 [2, H, W, 3], upright
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from lara.errors import InputError, MissingPath

if TYPE_CHECKING:
    from .statistics import DatasetStatistics

# format name -> module holding `recognise` and `open_source`; the order is the order of recognition
SOURCES: dict[str, str] = {
    "libero_hdf5": "lara.data.libero_source",
    "lerobot": "lara.data.lerobot",
    "video": "lara.data.video",
}


class SourceError(InputError):
    """A data source cannot be recognised, opened or read; the message names the file."""


SKIP_HINT = "(to read the other files: data.skip_bad_files=true on the lara train command line, skip_bad_files=True in Python)"


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode of one source, as the data core needs it.

    source:      human-readable origin for errors, e.g. "demos.hdf5 data/demo_3" or "videos/a.mp4"
    path:        the file (or dataset folder) the episode lives in
    key:         the reader's own handle on the episode (demo name, episode index, ...), passed back to
                 `reader.read_frames`
    length:      number of frames T
    fps:         frames per second, None when the source does not know it (LIBERO HDF5)
    instruction: the task string ("" when the source has none)
    cameras:     camera names `frames` accepts
    actions:     float [T, A] raw (not normalised) robot actions as stored (float32 or float64), or None
                 (video); the core computes statistics in float64 and hands out float32 chunks
    states:      float [T, S] proprioception (robot state), or None
    """

    source: str
    path: Path
    key: Any
    length: int
    fps: float | None
    instruction: str
    cameras: tuple[str, ...]
    actions: np.ndarray | None
    states: np.ndarray | None
    reader: "EpisodeSource" = field(repr=False)

    def frames(self, camera: str, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] upright RGB frames of `camera` at the given frame indices."""
        if camera not in self.cameras:
            raise SourceError(f"{self.source}: no camera {camera!r}; available: {list(self.cameras)}.")
        bad = [i for i in indices if not 0 <= i < self.length]
        if bad:
            raise IndexError(f"{self.source}: frame indices {bad} outside [0, {self.length}).")
        return self.reader.read_frames(self.key, camera, list(indices))


@runtime_checkable
class EpisodeSource(Protocol):
    """A readable source: a list of episodes and on-demand frames (see the module docstring)."""

    format: str  # the SOURCES name, e.g. "video"
    path: Path

    def episodes(self) -> list[Episode]:
        """Every readable episode, in a stable order."""

    def read_frames(self, key: Any, camera: str, indices: list[int]) -> np.ndarray:
        """uint8 [n, H, W, 3] upright frames of episode `key`; errors name the file and the frames."""

    def statistics(self) -> "DatasetStatistics | None":
        """Statistics stored with the source (LeRobot's meta/stats.json), or None to compute them."""

    def close(self) -> None:
        """Close the handles this process opened (they reopen on the next read)."""


def _missing(format: str, error: ImportError) -> SourceError:
    """The error for a reader whose dependency is not installed (readers import theirs lazily)."""
    return SourceError(f"the {format!r} reader needs the {error.name!r} package, which is not installed: "
                       f"pip install {error.name} (or the extra: pip install 'lara[video]').")


def _lerobot_layout(path: Path) -> str | None:
    """What marks `path` as a LeRobot dataset folder apart from meta/info.json (meta/, data/chunk-*,
    videos/chunk-* or videos/<key>/chunk-*), or None."""
    if not path.is_dir():
        return None
    if (path / "meta").is_dir():
        return "meta/"
    for pattern in ("data/chunk-*", "videos/chunk-*", "videos/*/chunk-*"):
        found = next(path.glob(pattern), None)
        if found is not None:
            return str(found.relative_to(path)) + "/"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """The SOURCES name of what lies at `path`, from names on disk only (no file is decoded)."""
    path = Path(path)
    if not path.exists():
        raise MissingPath(f"{path}: no such file or directory (expected a data source: {', '.join(SOURCES)}); "
                          "check the path in data.paths.")
    layout = _lerobot_layout(path)
    if layout and not (path / "meta" / "info.json").is_file():  # its mp4 files are not a video folder
        raise SourceError(f"{path}: a LeRobot dataset's layout ({layout}) without meta/info.json, which says what its "
                          "files hold; restore meta/info.json (LeRobot writes it), or give `format: video` to read "
                          "its mp4 files as plain videos.")
    for format, module in SOURCES.items():
        try:
            reader = import_module(module)
        except ModuleNotFoundError as error:
            if error.name == module:  # a reader not in this build
                continue
            raise
        if reader.recognise(path):
            return format
    raise SourceError(f"{path}: not a recognised data source; expected LIBERO *.hdf5/*.h5 files, a LeRobot "
                      "dataset folder (meta/info.json), or video files (mp4/webm/mkv/avi/mov). "
                      "Name the reader with `format:` if the names on disk are unusual.")


def reader(format: str):
    """The reader module of a format (its `options` and `open_source`), imported now: a SOURCES name, or the dotted
    name of a reader module outside this table (found when named, not recognised from disk)."""
    if format not in SOURCES and "." not in format:
        raise SourceError(f"unknown data format {format!r}; expected one of {sorted(SOURCES)} or a reader module's "
                          "dotted name.")
    module = SOURCES.get(format, format)
    try:
        return import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            raise SourceError(f"the {format!r} reader is not part of this installation of lara.") from error
        raise _missing(format, error) from error


def open_source(path: str | os.PathLike, format: str | None = None, **options) -> EpisodeSource:
    """Open the source at `path` (its format recognised from disk, or `format` given) with reader options."""
    path = Path(path)
    format = format or detect_format(path)
    module = reader(format)
    try:
        return module.open_source(path, **options)
    except ImportError as error:
        if error.name is None or error.name.startswith("lara"):
            raise
        raise _missing(format, error) from error
