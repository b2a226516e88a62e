"""Action normalisation statistics, stored the way OpenVLA stores its `norm_stats`.

`dataset_statistics.json` maps a dataset name to its statistics, so a VLA can reuse the file as-is
(`vla.norm_stats["libero"]["action"]["q01"]`):

    {"libero": {"action":  {"mean": [..7], "std": [..7], "min": [..7], "max": [..7],
                            "q01": [..7], "q99": [..7], "mask": [true x6, false]},
                "proprio": {... same keys, mask all true ...},
                "num_transitions": 12345, "num_trajectories": 50}}

Normalisation is OpenVLA's BOUNDS_Q99: a -> clip(2 (a - q01) / (q99 - q01) - 1, -1, 1) on the dimensions
where `mask` is true; the gripper (last dimension, already in [-1, 1] in LIBERO) passes through.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lara.errors import InputError, MissingPath
from lara.outputs import replacing

STATISTICS_FILE = "dataset_statistics.json"
GRIPPER_NOT_NORMALIZED = (True,) * 6 + (False,)  # LIBERO / OpenVLA 7-D actions
_EPS = 1e-8  # OpenVLA's guard against a zero q99 - q01 range


@dataclass(frozen=True)
class ArrayStatistics:
    """Per-dimension statistics of one quantity (actions or proprio)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray  # bool: which dimensions are normalised

    @classmethod
    def compute(cls, values: np.ndarray, mask=None) -> "ArrayStatistics":
        """values: [N, D] over every transition of the dataset."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"statistics need values of shape [N > 0, D], got {list(values.shape)}.")
        mask = np.ones(values.shape[1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (values.shape[1],):
            raise ValueError(f"mask must have {values.shape[1]} entries (one per dimension), got {len(mask)}.")
        return cls(
            mean=values.mean(0), std=values.std(0), min=values.min(0), max=values.max(0),
            q01=np.quantile(values, 0.01, axis=0), q99=np.quantile(values, 0.99, axis=0), mask=mask,
        )

    def to_json(self) -> dict:
        return {key: getattr(self, key).tolist() for key in ("mean", "std", "max", "min", "q01", "q99", "mask")}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "ArrayStatistics":
        """Statistics read from a file, checked (`check_bounds`): an InputError naming `where` when they are not
        lists of numbers of one length, not finite, or a q01 lies above its q99."""
        keys = ("mean", "std", "max", "min", "q01", "q99")
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a mapping of {'/'.join(keys)} (+ mask) lists, got {type(data).__name__}")
        missing = [key for key in keys if key not in data]
        if missing:
            raise InputError(f"{where}: missing statistics {missing}; expected mean/std/max/min/q01/q99 (+ mask).")
        try:
            arrays = {key: np.asarray(data[key], dtype=np.float64) for key in keys}
            mask = np.asarray(data.get("mask", [True] * arrays["q01"].size), dtype=bool)
        except (TypeError, ValueError) as error:
            raise InputError(f"{where}: statistics must be lists of numbers ({error})") from None
        lengths = {key: value.shape for key, value in {**arrays, "mask": mask}.items()}
        if len(set(lengths.values())) > 1 or arrays["q01"].ndim != 1:
            raise InputError(f"{where}: expected lists of one length (one number per dimension), got shapes {lengths}")
        for key, value in arrays.items():
            if key != "q01" and key != "q99" and not np.isfinite(value).all():
                raise InputError(f"{where}: {key} holds {_first_bad(value)}; expected finite numbers")
        check_bounds(arrays["q01"], arrays["q99"], mask, where)
        return cls(**arrays, mask=mask)


def _first_bad(values: np.ndarray) -> str:
    dim = int(np.flatnonzero(~np.isfinite(values))[0])
    return f"{values[dim]} at dimension {dim}"


def check_bounds(q01, q99, mask, where: str) -> None:
    """The q01/q99 normalisation bounds a policy trains and un-normalises with: finite, one per dimension, and
    q01 <= q99 wherever `mask` normalises (a q01 above its q99, e.g. the two swapped, turns every action of that
    dimension into 0 in training). q01 == q99 is a constant dimension, which normalises to 0 and back exactly."""
    q01, q99, mask = np.asarray(q01, dtype=np.float64), np.asarray(q99, dtype=np.float64), np.asarray(mask, dtype=bool)
    if not (q01.shape == q99.shape == mask.shape) or q01.ndim != 1:
        raise InputError(f"{where}: q01, q99 and mask must be lists of one length, got {len(q01)}, {len(q99)} and "
                         f"{len(mask)} entries")
    for name, values in (("q01", q01), ("q99", q99)):
        if not np.isfinite(values).all():
            raise InputError(f"{where}: {name} holds {_first_bad(values)}; expected finite numbers (statistics "
                             "computed from data with NaN, or edited by hand?)")
    above = np.flatnonzero(mask & (q01 > q99))
    if above.size:
        dim = int(above[0])
        raise InputError(f"{where}: q01 ({q01[dim]:g}) lies above q99 ({q99[dim]:g}) at dimension {dim}; expected "
                         "q01 <= q99 (are they swapped?), or every action of that dimension normalises to 0")


@dataclass(frozen=True)
class DatasetStatistics:
    """Statistics of one dataset: actions (always), proprio (when read), and its size."""

    action: ArrayStatistics
    proprio: ArrayStatistics | None
    num_transitions: int
    num_trajectories: int

    def to_json(self) -> dict:
        out = {"action": self.action.to_json(), "num_transitions": self.num_transitions,
               "num_trajectories": self.num_trajectories}
        if self.proprio is not None:
            out["proprio"] = self.proprio.to_json()
        return out


def save_statistics(stats: DatasetStatistics, path: str | os.PathLike, dataset_name: str = "libero") -> Path:
    """Write `stats` under `dataset_name` into a JSON file (a directory gets `dataset_statistics.json`).
    Other datasets already in the file are kept, as in OpenVLA's multi-dataset norm_stats."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / STATISTICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.loads(path.read_text()) if path.is_file() else {}
    content[dataset_name] = stats.to_json()
    with replacing(path) as staging:
        staging.write_text(json.dumps(content, indent=2))
    return path


def load_statistics(path: str | os.PathLike, dataset_name: str | None = None) -> DatasetStatistics:
    """Read statistics written by `save_statistics` or by OpenVLA (its `dataset_statistics.json`).
    `dataset_name` may be left out when the file holds a single dataset."""
    path = Path(path)
    if path.is_dir():
        path = path / STATISTICS_FILE
    if not path.is_file():
        raise MissingPath(f"{path}: no statistics file; expected {STATISTICS_FILE} (or the folder holding it) as "
                          "lara writes it beside a trained VLA, or compute it with EpisodeDataset(...).statistics.")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: not a JSON statistics file ({error}); expected {STATISTICS_FILE} in OpenVLA's "
                         "layout: {dataset name: {action: {q01, q99, ...}}}") from None
    if not isinstance(content, dict) or not content:
        raise InputError(f"{path}: expected a mapping of dataset names to statistics, got "
                         f"{type(content).__name__ if content else 'nothing'}")
    if dataset_name is None:
        if len(content) != 1:
            raise InputError(f"{path} holds several datasets {sorted(content)}; pass dataset_name=one of them.")
        dataset_name = next(iter(content))
    if dataset_name not in content:
        raise InputError(f"{path} has no statistics for {dataset_name!r}; it has {sorted(content)} "
                         "(data.dataset_name names one).")
    entry = content[dataset_name]
    where = f"{path}[{dataset_name!r}]"
    if not isinstance(entry, dict) or "action" not in entry:
        raise InputError(f"{where}: missing the `action` entry.")
    return DatasetStatistics(
        action=ArrayStatistics.from_json(entry["action"], f"{where}['action']"),
        proprio=ArrayStatistics.from_json(entry["proprio"], f"{where}['proprio']") if "proprio" in entry else None,
        num_transitions=int(entry.get("num_transitions", 0)),
        num_trajectories=int(entry.get("num_trajectories", 0)),
    )


def check_statistics_file(path: str | os.PathLike) -> None:
    """Every dataset's statistics in a checkpoint's dataset_statistics.json checked (`load_statistics`), so a policy
    with NaN or swapped bounds is refused at load, naming the file, not after it acted."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        content = None  # load_statistics says what is wrong with the file
    for name in content if isinstance(content, dict) and content else [None]:
        load_statistics(path, name)


def _as_float(values):
    """Torch tensors pass through; anything else becomes a float numpy array."""
    if isinstance(values, torch.Tensor):
        return values
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)


def _bounds(stats: ArrayStatistics, like):
    """q01, q99 and mask as arrays/tensors matching `like` (numpy array or torch tensor)."""
    if like.shape[-1] != len(stats.q01):
        raise ValueError(f"actions have {like.shape[-1]} dimensions, the statistics {len(stats.q01)}.")
    if isinstance(like, torch.Tensor):
        q01, q99 = (torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in (stats.q01, stats.q99))
        return q01, q99, torch.as_tensor(stats.mask, device=like.device)
    return stats.q01.astype(like.dtype), stats.q99.astype(like.dtype), stats.mask


def normalize_actions(actions, stats: ArrayStatistics):
    """[..., D] raw -> [-1, 1] (q01/q99 bounds, clipped; unmasked dimensions pass through, a dimension
    with q01 == q99 maps to 0). Works on numpy arrays and torch tensors."""
    actions = _as_float(actions)
    xp = torch if isinstance(actions, torch.Tensor) else np
    q01, q99, mask = _bounds(stats, actions)
    scaled = xp.clip(2 * (actions - q01) / (q99 - q01 + _EPS) - 1, -1, 1)
    scaled = xp.where((q99 - q01) < _EPS, xp.zeros_like(scaled), scaled)
    return xp.where(mask, scaled, actions)


def unnormalize_actions(normalized, stats: ArrayStatistics):
    """Inverse of `normalize_actions` for a policy's output in [-1, 1] (OpenVLA's formula)."""
    normalized = _as_float(normalized)
    xp = torch if isinstance(normalized, torch.Tensor) else np
    q01, q99, mask = _bounds(stats, normalized)
    return xp.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)
