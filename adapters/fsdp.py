"""FSDP2 for the trainer (`train.fsdp=true`): how the model is sharded (torch's `fully_shard`). Its sharded
checkpoints and the full-model exports are the checkpointer's (adapters/checkpointer.py).

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

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from lara.errors import InputError
from lara.lam import LatentActionModel
from lara.model import LaraModel
from lara.specs import unwrap
from lara.vla.backbones import BACKBONES


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


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the sharded gradients by their global norm; returns that norm, whole (torch gives a DTensor)."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm).full_tensor()
