"""ROS image messages -> upright uint8 RGB arrays, with errors that say what arrived and what to set.

Pure functions over the message fields, so they are tested without ROS. Raw `sensor_msgs/Image`
in rgb8, bgr8, rgba8, bgra8; `sensor_msgs/CompressedImage` in JPEG or PNG (decoded with Pillow).
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

RAW_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0))}


class ImageError(ValueError):
    """A camera frame the node cannot use; the frame is dropped and no command is made from it."""


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """sensor_msgs/Image fields -> uint8 [height, width, 3] RGB (a copy)."""
    if encoding not in RAW_ENCODINGS:
        raise ImageError(f"camera encoding '{encoding}' is not supported; expected one of "
                         f"{sorted(RAW_ENCODINGS)} (set the camera driver to publish rgb8).")
    channels, order = RAW_ENCODINGS[encoding]
    if height <= 0 or width <= 0 or step < width * channels or len(data) < step * height:
        raise ImageError(f"image of {height}x{width} {encoding} with step {step} needs at least "
                         f"{step * height} bytes, got {len(data)}.")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    return np.ascontiguousarray(pixels[..., list(order)])


def compressed_to_rgb(format_: str, data: bytes) -> np.ndarray:
    """sensor_msgs/CompressedImage fields -> uint8 [H, W, 3] RGB."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImageError("decoding CompressedImage needs Pillow: pip install 'lara-vla[robot]'.") from exc
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises several types for corrupt data
        raise ImageError(f"cannot decode compressed image (format '{format_}'): {exc}.") from exc


def check_size(image: np.ndarray, expected_hw: Optional[tuple]) -> np.ndarray:
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise ImageError(f"camera image is {image.shape[0]}x{image.shape[1]}, the node is configured for "
                         f"{expected_hw[0]}x{expected_hw[1]} (`image_size` in the config): fix the camera "
                         "resolution or the config.")
    return image
