"""FSDP2 for the trainer (`train.fsdp=true`): torch's `fully_shard`, sharded checkpoints, a full-model export.

Why torch's API and not accelerate's FSDP plugin: accelerate (1.16) turns `fsdp_version: 2` into FSDP only on
accelerator devices; on CPU processes (gloo) it silently keeps DDP, so the plugin could not be tested on
machines without a GPU. `fully_shard` runs on CPU/gloo and on GPUs/NCCL alike; accelerate still launches the
processes, sets up the process group and device, and reduces the logged values.

What is sharded, one FSDP unit each (its parameters gathered just before it runs, freed after):
- every block of the VLA: the classes its transformers models list in `_no_split_modules` (decoder layers,
  vision encoder layers);
- the LAM, as one unit: it runs after the VLA's forward, so its gather does not hold the VLA's memory;
- the LARA projector, as one unit: FSDP2 wants one dtype for the trainable parameters of a unit, and the
  projector keeps `lara.dtype` (fp32) beside a bf16 VLA. It is sharded rather than replicated: replicated
  parameters would need their own gradient all-reduce and a gradient clipping over mixed sharded and plain
  tensors, to save an all-gather of one Linear (~1 MB at width 1024);
- the rest (embeddings, heads, norms) in the root unit.

pi0's (and pi0.5's) prefix LM hands its keys and values to the action expert through a KV cache, not through its blocks'
outputs, so FSDP's pre-backward hook (on those outputs) would re-gather an LM block only after the expert's
backward already needed its weights (`setStorage: ... out of bounds for storage of size 0`). Those blocks keep
their gathered weights from their forward to their backward (`reshard_after_forward=False`: ZeRO-2 for them;
gradients and optimizer state stay sharded): `KEEP_GATHERED`.

Buffers are not sharded. DDP broadcasts rank 0's buffers before every forward; `broadcast_buffers` does the
same here, so a vq codebook's EMA state (restarted from each rank's own latents) stays one codebook.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from lara.errors import InputError
from lara.lam import LatentActionModel
from lara.model import LaraModel
from lara.specs import unwrap
from lara.vla.backbones import BACKBONES

from .ema import EMA


# model_type -> a name part of the blocks whose outputs other blocks read through a KV cache (pi0, pi0.5)
KEEP_GATHERED = {b.model_type: b.keep_gathered for b in BACKBONES.values() if b.keep_gathered}


def block_classes(model: nn.Module) -> set[str]:
    """Class names of the blocks to shard one by one: every `_no_split_modules` of the transformers models inside."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard(model: nn.Module, device: torch.device, mixed_precision: str) -> None:
    """Apply fully_shard in place: the blocks, the LAM, the projector, then the root."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        raise InputError("train.fsdp=true shards the model over several processes; this run has one. Launch it with "
                         "`accelerate launch --multi_gpu --num_processes N ...` or torchrun, or set train.fsdp=false")
    if mixed_precision == "fp16":  # accelerate's loss scaler is not unscaled before the sharded gradients' clipping
        raise InputError("train.fsdp=true with fp16 mixed precision is not supported; use train.mixed_precision=bf16")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy()  # parameters in their own dtype
    if mixed_precision == "bf16":  # compute in bf16, gradients reduced and kept in fp32 (FSDP's usual recipe)
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    blocks = block_classes(model)
    projector = model.projector if isinstance(model, LaraModel) else None
    units = [name for name, module in model.named_modules() if name and (
        type(module).__name__ in blocks or isinstance(module, LatentActionModel) or module is projector)]
    vla = unwrap(model.base if isinstance(model, LaraModel) else model)
    kept = KEEP_GATHERED.get(getattr(getattr(vla, "config", None), "model_type", None))
    for name in reversed(units):  # children before their parents (named_modules lists parents first), root last
        keep = kept is not None and kept in f".{name}."
        fully_shard(model.get_submodule(name), mesh=mesh, mp_policy=policy, reshard_after_forward=not keep)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers to every rank, as DDP does before each forward (with DDP's own bucketed broadcast)."""
    buffers = list(model.buffers())
    if buffers:
        dist._broadcast_coalesced(dist.group.WORLD, buffers, 1 << 24, 0)


def skeleton(model: nn.Module) -> nn.Module:
    """A copy of the unsharded model whose parameters live on the meta device (no memory) and whose buffers are
    CPU copies: `full_model` fills it with the gathered weights for the exports."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(model, memo)


@contextmanager
def full_model(model: nn.Module, plain: nn.Module | None) -> Iterator[nn.Module | None]:
    """All ranks gather the full state (a collective); rank 0 gets `plain` (its skeleton) filled with it, the
    others None. The copy is dropped on exit."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if plain is None:
        yield None
        return
    filled = copy.deepcopy(plain)
    filled.load_state_dict(state, assign=True)
    yield filled


def trainable_state(model: nn.Module, frozen: set[str]) -> dict:
    """The sharded state that resume needs: trainable weights and every buffer (frozen weights are rebuilt)."""
    return {k: v for k, v in get_model_state_dict(model).items() if k not in frozen}


def save(model: nn.Module, optimizer: torch.optim.Optimizer, frozen: set[str], directory: Path,
         ema: EMA | None = None) -> None:
    """Every rank writes its shards to `directory` (torch.distributed.checkpoint; a shared filesystem)."""
    state = {"model": trainable_state(model, frozen), "optimizer": get_optimizer_state_dict(model, optimizer)}
    if ema is not None:  # its shadow weights are sharded like the weights they average
        state["ema"] = ema.state_dict()
    dcp.save(state, checkpoint_id=directory)


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


def load(model: nn.Module, optimizer: torch.optim.Optimizer, frozen: set[str], directory: Path,
         ema: EMA | None = None) -> None:
    """Each rank reads its own shards in place. The optimizer's state is read where the checkpoint has it:
    AdamW keeps none for a trainable parameter that never had a gradient (e.g. an unused head), while the state
    dict built here holds one for every parameter."""
    weights = {"model": trainable_state(model, frozen)}
    safe_load(weights, directory)
    set_model_state_dict(model, weights["model"], options=StateDictOptions(strict=False))
    moments = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    safe_load(moments, directory, allow_partial_load=True)
    set_optimizer_state_dict(model, optimizer, moments["optimizer"])
    if ema is not None:
        shadow = {"ema": ema.state_dict()}
        safe_load(shadow, directory)
        ema.load_state_dict(shadow["ema"])
