"""The wire format of openpi's websocket policy protocol: msgpack with numpy arrays.

Same encoding as `openpi_client.msgpack_numpy`, so either side can be the real openpi package:
an ndarray travels as the map {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}; a numpy scalar as {b"__npgeneric__": True, b"data": python value, b"dtype": dtype.str}.
Object, void and complex dtypes are refused (openpi refuses them too: they would need pickle).

Dependencies: numpy and msgpack only, Python >= 3.8, so the robot PC can use it without torch.
"""

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("V", "O", "c")


class WireError(ValueError):
    """Bytes that are not a valid openpi msgpack-numpy message."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
        raise WireError(
            f"cannot send a numpy value of dtype {obj.dtype}: openpi's protocol carries numeric and bool "
            "arrays only; convert it (strings go as plain Python str)."
        )
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": array.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _REFUSED_KINDS:
            raise WireError(f"refusing an array of dtype {dtype}: only numeric and bool arrays are accepted.")
        shape = tuple(obj[b"shape"])
        expected = int(np.prod(shape)) * dtype.itemsize
        if len(obj[b"data"]) != expected:
            raise WireError(
                f"array payload is {len(obj[b'data'])} bytes but shape {list(shape)} of {dtype} needs {expected}."
            )
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """Python/numpy value -> bytes."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """bytes -> Python/numpy value; raises WireError on anything that is not a valid message.

    Arrays are read-only views of the received bytes (no copy); copy before writing into them.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected a binary msgpack frame, got {type(data).__name__}.")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise WireError(f"not a msgpack-numpy message ({type(exc).__name__}: {exc}).") from exc
