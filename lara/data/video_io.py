"""Frames in and out of video files with PyAV: decode at timestamps (one seek per run of nearby frames) and
an encoder that appends episodes to one continuous stream (LeRobot v3.0 keeps several episodes per mp4).

Decoding locates frames by presentation time, as LeRobot does (`from_timestamp + timestamp`), so it works
on files whose episodes were concatenated by remuxing (LeRobot's own writer) or encoded in one go (ours).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RESEEK_GAP_S = 1.0  # a target this far past the last decoded frame is reached by a new seek, not by decoding
# LeRobot's defaults (lerobot.datasets.video_utils.encode_video_frames): AV1 through SVT-AV1, yuv420p, g=2, crf=30
CODECS = {"av1": "libsvtav1", "h264": "libx264"}


def single_threaded(container) -> None:
    """Decode without FFmpeg's own threads. A container kept open in a process that later forks DataLoader
    workers would leave its decoder threads (and the locks they hold) behind in each child, which then hung
    or crashed; the workers give the parallelism instead, one decoder each."""
    for stream in container.streams.video:
        stream.thread_type, stream.thread_count = "NONE", 1


class VideoError(ValueError):
    """A video file cannot be opened or does not hold the frames asked for; the message names the file."""


class VideoReader:
    """Open containers per process (never shared across a fork) and frames read by timestamp."""

    def __init__(self):
        self._pid: int | None = None
        self._open: dict[Path, av.container.InputContainer] = {}

    def _container(self, path: Path):
        if self._pid != os.getpid():
            self.close()
            self._pid = os.getpid()
        if path not in self._open:
            try:
                self._open[path] = av.open(str(path))
            except (OSError, av.FFmpegError) as error:
                raise VideoError(f"{path}: cannot be opened as video: {error}.") from error
            if not self._open[path].streams.video:
                raise VideoError(f"{path}: holds no video stream.")
            single_threaded(self._open[path])
        return self._open[path]

    def frames_at(self, path: Path, times: list[float], tolerance_s: float) -> np.ndarray:
        """uint8 [len(times), H, W, 3] RGB frames whose presentation time is within tolerance of each time."""
        container = self._container(path)
        stream = container.streams.video[0]
        wanted = sorted(set(times))
        found: dict[float, np.ndarray] = {}
        i = 0
        try:
            while i < len(wanted):
                # seek lands on the keyframe at or before the target; decode forward from there
                container.seek(max(0, int(wanted[i] / stream.time_base)), stream=stream, backward=True)
                last = None
                for frame in container.decode(stream):
                    if frame.time is None:
                        continue
                    last = frame.time
                    if i < len(wanted) and wanted[i] < last - tolerance_s:  # decoded past it: not in the file
                        raise VideoError(f"{path}: no frame at t={wanted[i]:.6f} s (next frame at {last:.6f} s).")
                    if i < len(wanted) and abs(last - wanted[i]) <= tolerance_s:
                        found[wanted[i]] = frame.to_ndarray(format="rgb24")
                        i += 1
                        while i < len(wanted) and abs(last - wanted[i]) <= tolerance_s:  # repeated times
                            found[wanted[i]] = found[wanted[i - 1]]
                            i += 1
                    if i == len(wanted) or wanted[i] - last > RESEEK_GAP_S:
                        break
                else:
                    if i < len(wanted):
                        end = "no frame decoded" if last is None else f"last frame at {last:.6f} s"
                        raise VideoError(f"{path}: no frame at t={wanted[i]:.6f} s ({end}; truncated file?).")
        except av.FFmpegError as error:
            raise VideoError(f"{path}: decoding failed near t={wanted[min(i, len(wanted) - 1)]:.6f} s: "
                             f"{error}.") from error
        return np.stack([found[t] for t in times])

    def close(self) -> None:
        for container in self._open.values():
            container.close()
        self._open = {}

    def __getstate__(self) -> dict:
        return {"_pid": None, "_open": {}}


def stream_info(path: Path) -> dict:
    """LeRobot's `info.json` "info" block of a video feature (`video_utils.get_video_info`)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"video.height": stream.height, "video.width": stream.width,
                "video.codec": stream.codec_context.codec.canonical_name, "video.pix_fmt": stream.pix_fmt,
                "video.is_depth_map": False, "video.fps": int(stream.base_rate), "video.channels": 3,
                "has_audio": False}


class VideoEncoder:
    """One output file; frames get pts = their index in the file at time base 1/fps, so the episode that
    starts at file frame n starts at exactly n / fps seconds."""

    def __init__(self, path: Path, *, fps: int, width: int, height: int, codec: str = "av1", crf: int = 30,
                 gop: int = 2):
        if codec not in CODECS:
            raise ValueError(f"video codec {codec!r} is not supported; expected one of {sorted(CODECS)}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SVT_LOG", "2")  # SVT-AV1 prints its whole configuration per file below level 3
        self.path, self.fps, self.frames = path, fps, 0
        self._scheduling = os.sched_getscheduler(0), os.sched_getparam(0)
        self._container = av.open(str(path), "w")
        options = {"g": str(gop), "crf": str(crf)}
        if codec == "h264":
            options["bf"] = "0"  # no B-frames: decode order = display order, as for LeRobot's AV1
        self._stream = self._container.add_stream(CODECS[codec], rate=fps, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.time_base = Fraction(1, fps)
        self.shape = (height, width, 3)

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 [T, H, W, 3] RGB frames."""
        if frames.shape[1:] != self.shape:
            raise ValueError(f"{self.path}: frames of shape {list(frames.shape[1:])}, the file holds "
                             f"{list(self.shape)}; every episode of a camera needs the same size.")
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames, Fraction(1, self.fps)
            self._container.mux(self._stream.encode(frame))
            self.frames += 1
        self._restore_scheduling()

    def _restore_scheduling(self) -> None:
        """SVT-AV1 puts the thread that drives it under SCHED_FIFO 99 where it may (as root), and leaves it
        there: every process started afterwards inherited it, and on 2 cores two such busy children starved
        everything else. Put the caller back as it was."""
        policy, param = self._scheduling
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)

    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))  # flush the encoder's delayed frames
        self._container.close()
        self._restore_scheduling()
