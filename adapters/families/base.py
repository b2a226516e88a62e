"""The `Family` interface and the LARA part of every batch."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from lara.data.statistics import DatasetStatistics
from lara.model import DTYPES


def lara_inputs(samples: list[dict]) -> dict:
    """The LARA keys of a batch: lam_frames [B, 2, 3, H, W] uint8, lam_valid [B], and, where the samples have
    robot actions, lam_actions [B, k, 7] + lam_action_mask [B, k]; `lam_action_free` when none has actions."""
    batch = {
        "lam_frames": torch.stack([s["lam_frames"] for s in samples]),
        "lam_valid": torch.stack([torch.as_tensor(s["lam_valid"]) for s in samples]),
    }
    with_actions = ["lam_actions" in s for s in samples]
    if any(with_actions) and not all(with_actions):
        raise ValueError("a batch mixes samples with and without actions; the sampler draws each batch from one source")
    if all(with_actions):
        batch["lam_actions"] = torch.stack([s["lam_actions"] for s in samples])
        batch["lam_action_mask"] = torch.stack([s["lam_action_mask"] for s in samples])
    else:
        batch["lam_action_free"] = True
    return batch


class Family(ABC):
    """Build / load a VLA, turn samples into its inputs, save it natively."""

    name = "family"

    def __init__(self, config, statistics: DatasetStatistics | None, cameras: tuple[str, ...] = ("agentview_rgb",),
                 dataset_name: str = "libero"):
        self.config = config  # adapters.config.ModelConfig
        self.statistics = statistics  # action normalisation of the training data (None: action-free only)
        # obs keys of the images a sample holds: the reader's `image` (data.camera), then data.extra_cameras
        self.cameras = tuple(cameras)
        self.dataset_name = dataset_name  # key of `statistics` in dataset_statistics.json / norm_stats

    @property
    def dtype(self) -> torch.dtype:
        """The VLA's dtype (`model.dtype`)."""
        return DTYPES[self.config.dtype]

    def load_kwargs(self) -> dict:
        """`from_pretrained` keywords that load the weights in `dtype` directly (no fp32 copy on the way):
        transformers >= 4.56 calls it `dtype`, earlier ones (4.40 for OpenVLA's remote code) `torch_dtype`."""
        import transformers
        from packaging.version import Version

        name = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
        return {name: self.dtype}

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Build a new model's weights in `dtype` directly (a 3B pi0 in bf16 never exists in fp32)."""
        previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)

    def cast(self, batch: dict) -> dict:
        """The VLA's floating inputs in its dtype: pi0's state and action projections, for one, do not cast them."""
        return {k: v.to(self.dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}

    @classmethod
    def checkpointed_modules(cls, vla: nn.Module) -> list[nn.Module]:
        """The (transformers) modules whose blocks `train.gradient_checkpointing` recomputes: the whole VLA."""
        return [vla]

    @abstractmethod
    def build(self) -> nn.Module:
        """The VLA: loaded from `config.path`, or newly built from `config.build`."""

    @abstractmethod
    def collate(self, samples: list[dict]) -> dict:
        """Reader samples -> the VLA's training inputs + `lara_inputs(samples)`."""

    def save(self, model: nn.Module, directory: Path) -> None:
        """The VLA in its native format (`save_pretrained`; a peft model saves its adapter)."""
        model.save_pretrained(directory)
