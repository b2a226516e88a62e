"""A checkpoint loads tensors and plain values only, never code (adapters/checkpointer.py reads every state file
through these): a crafted file that holds a pickled object is refused in one line, unrun.

- whole state files (`state/*.pt`): `torch.load(weights_only=True)`;
- FSDP's shards (`state/sharded`, torch.distributed.checkpoint): its reader unpickles `.metadata` with `pickle`,
  and its planner reads non-tensor values (optimizer hyper-parameters) with `weights_only=False`; both are checked
  first.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

from lara.errors import InputError

# an RNG file written before issue 22 holds numpy's key array; these rebuild an ndarray and run nothing else
_OLD_RNG_GLOBALS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_state_file(path: Path, *, legacy_numpy: bool = False):
    """A checkpoint's state file read with `weights_only=True`: tensors and plain containers, never code. A file
    that holds anything else (a pickled object, which a crafted file could use to run code) is refused."""
    allowed = _OLD_RNG_GLOBALS if legacy_numpy else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1][:200]
        raise InputError(f"{path}: holds more than tensors and plain values ({reason}); LARA loads no code from a "
                         "checkpoint. Delete this checkpoint folder to resume from an earlier one, or give a new "
                         "output_dir") from None


# what torch.distributed.checkpoint pickles into its .metadata: its own metadata records, shapes, dtypes, paths
_METADATA_MODULES = ("torch.distributed.checkpoint.metadata",)
_METADATA_NAMES = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"),
                   ("pathlib", "WindowsPath"), ("collections", "OrderedDict"),
                   ("torch.distributed.checkpoint.filesystem", "_StorageInfo")}


class _MetadataUnpickler(pickle.Unpickler):
    """Rebuilds a .metadata file's records and refuses every other global (a crafted file's code)."""

    def find_class(self, module: str, name: str):
        found = super().find_class(module, name) if module in _METADATA_MODULES or (module, name) in _METADATA_NAMES \
            or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)) else None
        if found is None or (module in _METADATA_MODULES and not isinstance(found, type)):
            raise pickle.UnpicklingError(f"a sharded checkpoint's .metadata names `{module}.{name}`, which is not "
                                         "checkpoint metadata")
        return found


def check_metadata(path: Path) -> None:
    """Refuse a .metadata file that names anything but checkpoint metadata (`_MetadataUnpickler`)."""
    try:
        _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as error:
        raise InputError(f"{path}: {error}; LARA loads no code from a checkpoint. Delete this checkpoint folder "
                         "to resume from an earlier one, or give a new output_dir") from None


class SafeReader(dcp.FileSystemReader):
    """torch's reader, whose `pickle.load` of .metadata would run any code a crafted file holds, checks the file
    with `_MetadataUnpickler` first."""

    def read_metadata(self, *args, **kwargs):
        check_metadata(Path(self._get_metadata_path(kwargs.get("rank"))))
        return super().read_metadata(*args, **kwargs)


class SafeLoadPlanner(DefaultLoadPlanner):
    """torch's planner reads non-tensor values (optimizer hyper-parameters) with `weights_only=False`: they are
    read with `weights_only=True` first, so only plain values get that far."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        try:
            torch.load(value, weights_only=True)
        except pickle.UnpicklingError:
            raise InputError(f"a sharded checkpoint's value `{read_item.dest_index.fqn}` holds more than tensors and "
                             "plain values; LARA loads no code from a checkpoint. Delete this checkpoint folder to "
                             "resume from an earlier one, or give a new output_dir") from None
        value.seek(0)
        super().load_bytes(read_item, value)


def safe_load(state: dict, directory: Path, **planner_options) -> None:
    """`dcp.load` through `SafeReader` and `SafeLoadPlanner`; their refusal comes out as itself, not wrapped."""
    for metadata in Path(directory).glob("*.metadata"):  # refused here in a plain error, not inside dcp's
        check_metadata(metadata)
    try:
        dcp.load(state, storage_reader=SafeReader(directory), planner=SafeLoadPlanner(**planner_options))
    except CheckpointException as error:
        refused = [failure[0] for failure in error.failures.values() if isinstance(failure[0], InputError)]
        if refused:
            raise refused[0] from None
        raise
