"""A saved TokenVLA as a `lara.policy.Policy`: what LIBERO evaluation and `lara serve` run for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lara.data.statistics import check_bounds
from lara.errors import InputError
from lara.policy import camera_image, robot_state
from lara.vla.token_vla.model import TokenVLA, preprocess_images


class TokenVLAPolicy:
    """reset(instruction) then act(obs) -> float32 (H, 7): the unnormalised chunk of H = config.chunk_size actions
    (1 for OpenVLA's layout), from the cameras it was trained on (and the robot state when it reads one)."""

    def __init__(self, model: TokenVLA):
        self.model = model.eval()
        self.cameras = tuple(model.config.cameras)  # what the evaluation must render for it
        self.instruction: str | None = None
        self.device = next(model.parameters()).device

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before act(obs)")
        size = self.model.config.image_size
        views = [preprocess_images(camera_image(obs, camera), size) for camera in self.cameras]  # (1, 3, S, S) each
        pixels = (views[0] if len(views) == 1 else torch.stack(views, 1)).to(self.device)
        proprio = None
        if self.model.config.proprio_dim:
            proprio = torch.from_numpy(robot_state(obs, "this TokenVLA"))[None].to(self.device)
        actions = self.model.predict_action(pixels, [self.instruction], proprio=proprio)  # (1, [H,] 7)
        return actions.reshape(-1, actions.shape[-1])


def load_policy(path: Path, device: str | torch.device = "cpu") -> TokenVLAPolicy:
    """A TokenVLA saved with save_pretrained (its config holds the statistics it un-normalises with)."""
    model = TokenVLA.from_pretrained(path)
    stats = model.config.norm_stats
    if stats is not None:  # what predict_action un-normalises with: NaN or swapped bounds refused, naming the file
        if not isinstance(stats, dict) or not {"q01", "q99"} <= set(stats):
            raise InputError(f"{Path(path) / 'config.json'}: norm_stats must hold q01 and q99 lists, got {stats!r:.100}")
        q01, q99 = np.asarray(stats["q01"], dtype=np.float64), np.asarray(stats["q99"], dtype=np.float64)
        check_bounds(q01, q99, stats.get("mask", [True] * q01.size), f"{Path(path) / 'config.json'} norm_stats")
    return TokenVLAPolicy(model.to(device))
