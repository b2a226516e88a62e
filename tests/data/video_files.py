"""Videos written with PyAV whose frames carry their own index, so a test can read back which frame it got."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BITS = 8  # frame indices 0..255
BLOCK = 8  # pixels per bit block: survives lossy H.264 / VP9 coding


def marked_frame(index: int, height: int, width: int) -> np.ndarray:
    """A grey frame with `index` in binary as black/white blocks along the top-left row."""
    frame = np.full((height, width, 3), 96, dtype=np.uint8)
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = value
    return frame


def read_marker(frame: np.ndarray) -> int:
    """The index drawn by `marked_frame` into an [H, W, 3] or [3, H, W] frame."""
    if frame.shape[0] == 3:
        frame = frame.transpose(1, 2, 0)
    blocks = [frame[1:BLOCK - 1, bit * BLOCK + 1:(bit + 1) * BLOCK - 1].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, mean in enumerate(blocks) if mean > 127)


def write_video(path: Path, *, frames: int, fps: int, height: int, width: int, codec: str = "libx264") -> Path:
    """Write `frames` marked frames at `fps` (H.264 for .mp4, VP9 for .webm)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = av.VideoFrame.from_ndarray(marked_frame(index, height, width), format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path
