"""A saved VLA as a `lara.policy.Policy`: what LIBERO evaluation and `lara serve` run (TokenVLA here, pi0 in
lara/vla/pi0.py; `load_policy` picks by the checkpoint's `model_type`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from lara.errors import InputError
from lara.policy import camera_image, find_vla_dir, robot_state
from lara.vla.token_vla import TokenVLA, preprocess_images


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


def load_policy(path: str | Path, device: str | torch.device = "cpu"):
    """A policy from a directory written by `save_pretrained` (LARA detached: VLA weights only), or a run
    folder holding one (`find_vla_dir`): a pi0 (config.json `model_type` 'pi0') or a TokenVLA."""
    path = find_vla_dir(path)
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise InputError(f"{path / 'config.json'} is not a JSON object ({error}); expected the config.json that "
                         "save_pretrained writes: re-export the VLA or pass another checkpoint") from None
    try:
        if model_type == "pi0":
            from lara.vla.pi0 import load_pi0_policy

            return load_pi0_policy(path, device)
        return TokenVLAPolicy(TokenVLA.from_pretrained(path).to(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:  # a damaged or foreign weights file
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: the VLA cannot be loaded ({reason}); the files are damaged or not a "
                         "save_pretrained export of this config: re-export the VLA or pass another checkpoint") from None
