"""A saved flow-matching VLA (pi0, pi0.5) as a Policy: its processor's inputs, a seeded flow sample, un-normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lara.data.statistics import STATISTICS_FILE, DatasetStatistics, load_statistics, unnormalize_actions
from lara.errors import MissingPath
from lara.policy import ACTION_DIM, camera_image, robot_state


def find_statistics(path: Path) -> Path:
    """dataset_statistics.json beside the weights; a run saved before the statistics lived there keeps them in
    RUN/final/, beside the VLA folder."""
    for directory in (path, path.parent):
        if (directory / STATISTICS_FILE).is_file():
            return directory / STATISTICS_FILE
    raise MissingPath(f"no {STATISTICS_FILE} in {path} or {path.parent}: a flow-matching VLA predicts normalised "
                      "actions and needs the statistics it was trained with (a LARA run saves them beside the VLA, "
                      f"in RUN/final/vla; copy the training data's {STATISTICS_FILE} there)")


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


class FlowPolicy:
    """reset(instruction) then act(obs) -> float32 (chunk_size, 7): a flow-matching sample, un-normalised."""

    def __init__(self, model, processor, statistics: DatasetStatistics, seed: int = 0):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.inputs = processor
        self.cameras = tuple(processor.cameras)  # what the evaluation must render for it
        self.statistics = statistics
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # the flow's initial noise: reproducible rollouts
        self.instruction: str | None = None

    def fork(self) -> "FlowPolicy":
        """The same weights with a noise stream and an instruction of its own: one per client of `lara serve`, so
        that clients never draw from, or reset, each other's episode."""
        return FlowPolicy(self.model, self.inputs, self.statistics, self.seed)

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    @torch.no_grad()
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before act(obs)")
        views = [torch.from_numpy(np.ascontiguousarray(camera_image(obs, camera))).permute(2, 0, 1)[None]
                 for camera in self.inputs.cameras]  # (1, 3, H, W) each
        proprio = torch.from_numpy(robot_state(obs, self.inputs.name))[None]  # (1, 8)
        inputs = self.inputs.observation([self.instruction], views, proprio)
        dtype = next(self.model.parameters()).dtype
        inputs = {k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()}
        noise = torch.randn((1, self.inputs.chunk_size, self.inputs.max_action_dim), generator=self.generator)
        chunk = self.model.sample_actions(**inputs, noise=noise.to(self.device, dtype))  # (1, chunk, max_action_dim)
        normalised = chunk[0, :, :ACTION_DIM].float().cpu().numpy()
        return unnormalize_actions(normalised, self.statistics.action).astype(np.float32)  # (chunk_size, 7)


def load_flow_policy(path: Path, model_class: type, processor_class: type, device="cpu") -> FlowPolicy:
    """The model saved in `path` by save_pretrained, the tokenizer saved beside it (if any) and its statistics."""
    from transformers import AutoTokenizer

    model = model_class.from_pretrained(path).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if has_tokenizer(path) else None
    statistics = load_statistics(find_statistics(path))
    return FlowPolicy(model, processor_class(model.config, statistics, tokenizer), statistics)


def load_policy(path: Path, device="cpu") -> FlowPolicy:
    """A pi0 saved by PI0ForConditionalGeneration.save_pretrained (e.g. RUN/final/vla)."""
    from transformers import PI0ForConditionalGeneration

    from lara.vla.pi0.processor import Processor

    return load_flow_policy(path, PI0ForConditionalGeneration, Processor, device)
