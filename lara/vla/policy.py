"""A saved VLA as a `lara.policy.Policy`: what LIBERO evaluation and `lara serve` run (TokenVLA here, pi0 in
lara/vla/pi0.py; `load_policy` picks by the checkpoint's `model_type`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lara.policy import camera_image, find_vla_dir
from lara.vla.token_vla import TokenVLA, preprocess_images


class TokenVLAPolicy:
    """reset(instruction) then act(obs) -> float32 (1, 7): one unnormalised action per observation."""

    def __init__(self, model: TokenVLA, camera: str = "agentview_rgb"):
        self.model = model.eval()
        self.camera = camera
        self.cameras = (camera,)  # what the evaluation must render for it
        self.instruction: str | None = None
        self.device = next(model.parameters()).device

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before act(obs)")
        image = camera_image(obs, self.camera)
        pixels = preprocess_images(image, self.model.config.vision_config.image_size).to(self.device)
        return self.model.predict_action(pixels, [self.instruction])  # (1, 7)


def load_policy(path: str | Path, device: str | torch.device = "cpu"):
    """A policy from a directory written by `save_pretrained` (LARA detached: VLA weights only), or a run
    folder holding one (`find_vla_dir`): a pi0 (config.json `model_type` 'pi0') or a TokenVLA."""
    path = find_vla_dir(path)
    if json.loads((path / "config.json").read_text()).get("model_type") == "pi0":
        from lara.vla.pi0 import load_pi0_policy

        return load_pi0_policy(path, device)
    return TokenVLAPolicy(TokenVLA.from_pretrained(path).to(device))
