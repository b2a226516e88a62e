"""Folders of videos (action-free) as an episode source, decoded with PyAV; see `lara.data.episodes`.

One `Episode` per video file (mp4 / webm / mkv / avi / mov, found recursively, in sorted order), camera
"rgb", no actions. Its instruction comes from a Something-Something-v2 style labels JSON (a list of
`{id, label, template}`, id = file stem), else from a sidecar `<stem>.txt`, else is empty.

Decoding is by window: a request for frames decodes, from the keyframe before it, the whole aligned
window of `window` frames (plus the frame gap) once and keeps it in a small per-process cache, so the
window-by-window sample order of `EpisodeDataset.epoch_order` cuts many (o_t, o_{t+k}) pairs from one decode.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np

from .config import LiberoDataConfig, SourceSpec
from .episodes import SKIP_HINT, Episode, SourceError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
CAMERA = "rgb"
_CACHED_WINDOWS = 2  # decoded windows kept per process
_OPEN_FILES = 8  # open containers kept per process


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def video_files(path: Path) -> list[Path]:
    """The video itself, or a folder's videos, recursively, in sorted order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if _is_video(p))


def recognise(path: Path) -> bool:
    """A video file, or a folder holding one at any depth."""
    if path.is_file():
        return _is_video(path)
    return path.is_dir() and any(_is_video(p) for p in path.rglob("*"))


def options(config: LiberoDataConfig, spec: SourceSpec) -> dict:
    """The data core's settings this reader takes: the entry's labels file, the decode rate and window."""
    if spec.labelled_per_task is not None:
        raise SourceError(f"{spec.path}: labelled_per_task splits a source's episodes into ones with and "
                          "without actions, and videos have none; split a LIBERO HDF5 or LeRobot source")
    return {"labels": spec.labels, "fps": config.fps, "window": config.window}


def open_source(path: Path, *, skip_bad_files: bool = False, labels: Path | None = None,
                fps: float | None = None, window: int = 32) -> "VideoSource":
    return VideoSource(path, labels=labels, fps=fps, window=window, skip_bad_files=skip_bad_files)


def read_labels(path: Path) -> dict[str, str]:
    """Something-Something-v2 labels: a JSON list of {"id", "label", "template"} -> {id: label}."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SourceError(f"{path}: cannot read the labels JSON: {error}.") from error
    if not isinstance(entries, list):
        raise SourceError(f"{path}: expected a JSON list of {{id, label, template}}, found {type(entries).__name__}.")
    out = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or "label" not in entry:
            raise SourceError(f"{path}: entry {index} is {entry!r}; expected {{\"id\": ..., \"label\": ..., "
                              "\"template\": ...}.")
        out[str(entry["id"])] = str(entry["label"])
    return out


class VideoSource:
    """The videos under `path`; `fps` resamples each to that rate (nearest frame), `window` frames are
    decoded at once, unreadable files raise naming them or, with skip_bad_files, are skipped with one warning."""

    format = "video"

    def __init__(self, path: Path, *, labels: Path | None, fps: float | None, window: int, skip_bad_files: bool):
        import av  # noqa: F401  (fail here, with the install hint of lara.data.episodes, not mid-training)

        self.path, self.fps, self.window = Path(path), fps, window
        files = video_files(self.path)
        if not files:
            raise SourceError(f"{self.path}: holds no video files ({', '.join(VIDEO_SUFFIXES)}).")
        label_of = read_labels(labels) if labels is not None else {}
        self._records, self._native, bad = [], [], []
        for file in files:
            try:
                native = _probe(file)
            except SourceError as error:
                if not skip_bad_files:
                    raise SourceError(f"{error} {SKIP_HINT}") from error
                bad.append(str(error))
                continue
            native_fps, native_length = native[0], native[1]
            length = native_length if fps is None else max(1, math.floor(native_length * fps / native_fps))
            self._native.append(native)
            self._records.append(dict(
                source=str(file), path=file, key=len(self._records), length=length,
                fps=native_fps if fps is None else float(fps), instruction=self._instruction(file, label_of),
                cameras=(CAMERA,), actions=None, states=None))
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable video file(s):\n  " + "\n  ".join(bad), stacklevel=4)
        if not self._records:
            raise SourceError(f"no readable videos in {self.path}.")
        self._reset()

    @staticmethod
    def _instruction(file: Path, label_of: dict[str, str]) -> str:
        if file.stem in label_of:
            return label_of[file.stem]
        caption = file.with_suffix(".txt")
        return caption.read_text().strip() if caption.is_file() else ""

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._containers: OrderedDict = OrderedDict()
        self._windows: OrderedDict = OrderedDict()  # key -> (first native frame, buffer, converted [n] bool)
        self._spare: list[np.ndarray] = []  # buffers of evicted windows

    def episodes(self) -> list[Episode]:
        return [Episode(**fields, reader=self) for fields in self._records]

    def statistics(self):
        return None

    def frame_size(self, key: int, camera: str) -> tuple[int, int]:
        """(H, W) of a video's frames, from its stream (nothing decoded)."""
        return self._native[key][4]

    def _native_index(self, key: int, index: int) -> int:
        native_fps, native_length = self._native[key][:2]
        if self.fps is None:
            return index
        return min(round(index * native_fps / self.fps), native_length - 1)

    def read_frames(self, key: int, camera: str, indices: list[int]) -> np.ndarray:
        """uint8 [n, H, W, 3]: a view into the window's buffer where the frames are evenly spaced (a pair
        (o_t, o_{t+k}) always is), else a copy. A view costs no copy here (the collate's stack makes the one
        copy), and its buffer is not reused while a view of it lives (`_buffer`)."""
        if self._pid != os.getpid():  # a forked worker: never reuse a parent's containers
            self._reset()
        native = [self._native_index(key, i) for i in indices]
        lo, hi = min(native), max(native)
        cached = self._windows.get(key)
        if cached is None or not (cached[0] <= lo and hi < cached[0] + len(cached[2])
                                  and cached[2][np.asarray(native) - cached[0]].all()):
            native_fps, native_length = self._native[key][:2]
            window = self.window if self.fps is None else max(1, round(self.window * native_fps / self.fps))
            start = (lo // window) * window  # aligned, so every sample of the window hits the same decode
            stop = min(native_length, max(hi + 1, start + window + (hi - lo)))
            if key in self._windows:
                self._spare.append(self._windows.pop(key)[1])
            cached = (start, *self._decode(key, start, stop, window, hi - lo))
            self._windows[key] = cached
            while len(self._windows) > _CACHED_WINDOWS:
                self._spare.append(self._windows.popitem(last=False)[1][1])
        self._windows.move_to_end(key)
        first, step = native[0] - cached[0], (native[1] - native[0] if len(native) > 1 else 1)
        if step > 0 and native == list(range(native[0], native[-1] + 1, step)):
            return cached[1][first:first + step * (len(native) - 1) + 1:step]  # (n, H, W, 3), a view
        return cached[1][np.asarray(native) - cached[0]]  # (n, H, W, 3), a copy (e.g. o_t = o_t+k at the end)

    def _container(self, key: int):
        import av

        from .video_io import single_threaded

        if key not in self._containers:
            self._containers[key] = av.open(str(self._records[key]["path"]))
            single_threaded(self._containers[key])
            while len(self._containers) > _OPEN_FILES:
                self._containers.popitem(last=False)[1].close()
        self._containers.move_to_end(key)
        return self._containers[key]

    def _buffer(self, frames: int, shape: tuple[int, ...]) -> np.ndarray:
        """A window buffer of at least `frames` frames of `shape`: an evicted window's that no sample still views
        (memory written before stays mapped, where a fresh buffer per window costs page faults), else a new one."""
        for i, spare in enumerate(self._spare):
            # references: the list's and getrefcount's argument; a view returned by read_frames adds one
            if spare.shape[1:] == shape and len(spare) >= frames and sys.getrefcount(spare) == 2:
                return self._spare.pop(i)
        self._spare = self._spare[-_CACHED_WINDOWS:]
        return np.empty((-(-frames // 32) * 32, *shape), dtype=np.uint8)  # rounded up: fits the next windows too

    def _decode(self, key: int, start: int, stop: int, window: int, gap: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode native frames [start, stop) from the keyframe before start; convert to RGB those the
        window's pairs can ask for (o_t for t in [start, start + window), o_{t+gap}), as uint8 [H, W, 3]
        into a buffer (>= stop - start frames). Returns (buffer, converted: bool [stop - start])."""
        import av

        file = self._records[key]["path"]
        native_fps, _, start_pts, time_base, _ = self._native[key]
        offsets = np.arange(stop - start)
        wanted = (offsets < window) | ((offsets >= gap) & (offsets - gap < window))
        last = start + int(np.flatnonzero(wanted)[-1])  # decoding stops here, not one frame later
        buffer, decoded = None, np.zeros(stop - start, dtype=bool)
        try:
            container = self._container(key)
            stream = container.streams.video[0]
            for attempt in range(2):  # a seek can land past `start` (a sparse index): then from the beginning
                target = start_pts + int(start / native_fps / time_base) if attempt == 0 else start_pts
                container.seek(target, stream=stream, backward=True, any_frame=False)
                first = None
                for frame in container.decode(stream):
                    index = round(float((frame.pts - start_pts) * time_base) * native_fps)
                    first = index if first is None else first
                    if index > last:
                        break
                    if index >= start and wanted[index - start]:
                        image = frame.to_ndarray(format="rgb24")  # (H, W, 3)
                        if buffer is None:
                            buffer = self._buffer(stop - start, image.shape)
                        buffer[index - start], decoded[index - start] = image, True
                        if index == last:
                            break
                if first is not None and first <= start:
                    break
        except (av.FFmpegError, OSError) as error:
            bad = self._containers.pop(key, None)
            if bad is not None:
                bad.close()
            raise SourceError(f"{file}: decoding frames {start}..{stop - 1} failed: {error}") from error
        missing = (start + np.flatnonzero(wanted & ~decoded)).tolist()
        if missing:
            raise SourceError(f"{file}: frames {missing[:5]}{'...' if len(missing) > 5 else ''} could not be "
                              f"decoded (truncated or corrupt video?); decoded {int(decoded.sum())} of "
                              f"{int(wanted.sum())}.")
        return buffer, decoded

    def close(self) -> None:
        for container in self._containers.values():
            container.close()
        self._containers.clear()
        self._windows.clear()
        self._spare = []

    def __getstate__(self) -> dict:  # workers start with no containers and no cache
        return {**self.__dict__, "_pid": None, "_containers": OrderedDict(), "_windows": OrderedDict(),
                "_spare": []}


def _probe(file: Path) -> tuple[float, int, int, float, tuple[int, int]]:
    """(fps, frame count, first pts, time base, (H, W)) of a video's first stream; SourceError names a bad file.

    The count is the container's when it states one (mp4), else its packets are counted (webm, mkv),
    and the first frame is decoded, so a file that cannot be decoded fails here, not mid-training."""
    import av

    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                raise SourceError(f"{file}: holds no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise SourceError(f"{file}: the video stream states no frame rate.")
            start_pts = stream.start_time or 0
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            container.seek(start_pts, stream=stream, backward=True)
            next(container.decode(stream))
    except (av.FFmpegError, OSError, StopIteration) as error:
        raise SourceError(f"{file}: cannot be read as a video (corrupt or truncated?): "
                          f"{error or type(error).__name__}.") from error
    if count < 1:
        raise SourceError(f"{file}: the video holds no frames.")
    return float(rate), int(count), int(start_pts), float(stream.time_base), (int(stream.height), int(stream.width))


def write_videos(source: str | os.PathLike, out: str | os.PathLike, *, camera: str | None = None,
                 fps: float | None = None, codec: str = "libx264", overwrite: bool = False) -> list[Path]:
    """Write every episode of a source (any format) as `<out>/<name>.mp4` with its instruction in `<name>.txt`:
    a video folder, e.g. to try video pre-training on frames of LIBERO demos. Returns the files written. Files of
    the same names already in `out` are replaced only with `overwrite` (checked before any is written).

    `fps`: the videos' frame rate; None keeps each episode's own (`Episode.fps`: a video's or LeRobot dataset's
    rate, a LIBERO file's recorded control frequency, else LIBERO_FPS), the time base `data convert` gives it too.
    Every file is encoded to a staging name beside it (lara.outputs) and all are put in place only once every one
    is whole: a kill or a full disk leaves no unreadable mp4 under a final name, and the next run clears the staging
    files and needs no --overwrite for what the interrupted one did not finish."""
    import av

    from lara.outputs import check_new, new_staging_file, publish, writable, writing

    from .episodes import open_source
    from .libero_hdf5 import LIBERO_FPS

    out = Path(out)
    episodes = open_source(source).episodes()
    names = [f"{number:05d}_{Path(episode.path).stem}" for number, episode in enumerate(episodes)]
    check_new([out / f"{name}{suffix}" for name in names for suffix in (".mp4", ".txt")], overwrite=overwrite,
              what="video folder")
    writable(out, "OUT")
    staged: list[tuple[Path, Path]] = []  # (staging file, final name)
    try:
        with writing(out):
            for name, episode in zip(names, episodes):
                view = camera or episode.cameras[0]
                frames = episode.frames(view, list(range(episode.length)))  # (T, H, W, 3)
                frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # yuv420p: even sizes
                path = out / f"{name}.mp4"
                staging = new_staging_file(path)
                staged.append((staging, path))
                rate = Fraction(fps or episode.fps or LIBERO_FPS).limit_denominator(1001)
                with av.open(str(staging), "w", format="mp4") as container:  # the staging name has no .mp4 suffix
                    stream = container.add_stream(codec, rate=rate)
                    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
                    for frame in frames:
                        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                    container.mux(stream.encode())
                if episode.instruction:
                    caption = new_staging_file(path.with_suffix(".txt"))
                    staged.append((caption, path.with_suffix(".txt")))
                    caption.write_text(episode.instruction + "\n")
            for staging, target in staged:
                publish(staging, target)
    except BaseException:
        for staging, _ in staged:
            staging.unlink(missing_ok=True)
        raise
    return [target for _, target in staged if target.suffix == ".mp4"]


def main(argv: list[str] | None = None) -> int:
    """`lara data videos SRC OUT`: a source's episodes as an mp4 folder with caption files."""
    args = build_parser().parse_args(argv)
    files = write_videos(args.source, args.out, camera=args.camera, fps=args.fps, overwrite=args.overwrite)
    print(f"wrote {len(files)} videos to {args.out}")
    return 0


def build_parser():
    from lara.cli import ArgumentParser, number

    parser = ArgumentParser(prog="lara data videos", description=main.__doc__)
    parser.add_argument("source", help="a data source (LIBERO HDF5 file/folder, LeRobot folder, videos)")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--camera", default=None, help="camera to write (default: the episode's first)")
    parser.add_argument("--fps", type=number(above=0, high=1000), default=None,
                        help="frame rate of the written videos (default: each episode's own, the time base "
                             "`lara data convert` gives it too)")
    parser.add_argument("--overwrite", action="store_true", help="replace videos an earlier run wrote (default: refuse)")
    return parser
