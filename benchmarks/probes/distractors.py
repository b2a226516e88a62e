"""Action-correlated distractors: what a LAM should not encode, painted into frames.

Two kinds, as in the task-centric LAM paper's Distracting MetaWorld:
- a moving patch whose motion correlates with the arm's (correlation `correlation`), but not with the task:
  per move, shift = max_shift * (rho * arm_motion + sqrt(1 - rho^2) * noise), noise ~ N(0, 1) per axis;
- a background "video": a smooth random texture blended over the frame, scrolling by a random walk that is
  independent of everything.
A pixel-reconstruction LAM must explain both to predict o_{t+k}; a representation that keeps only the
arm's motion is not moved by them.

    distract_pairs(frames, motion, config, seed)     frame pairs (N, 2, 3, H, W), motion (N, 2): the sample
                                                     transform `lara probe --distractors` applies
    distract_episode(frames, motion, config, seed)   an episode (T, H, W, 3), motion (T, 2) per step: what
                                                     `lara data generate --distractors` writes
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field


class DistractorConfig(BaseModel):
    """How strong the distractors are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation: float = Field(0.7, ge=0, le=1, description="rho: correlation of the patch's motion with the arm's.")
    patch_fraction: float = Field(0.3, gt=0, le=1, description="Side of the square patch as a fraction of the frame side.")
    max_shift_fraction: float = Field(
        0.2, ge=0, le=1, description="Patch shift per move at |motion| = 1, as a fraction of the frame side.")
    overlay: float = Field(0.25, ge=0, le=1, description="Opacity of the scrolling background texture (0: none).")
    overlay_step_fraction: float = Field(
        0.1, ge=0, le=1, description="Std of the texture's scroll per move, as a fraction of the frame side.")


def _texture(size: int, g: torch.Generator) -> torch.Tensor:
    """A smooth random RGB texture (3, size, size) in [0, 1]: noise at 1/8 resolution, upsampled."""
    coarse = torch.rand(1, 3, max(size // 8, 2), max(size // 8, 2), generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


def _paint(frame: torch.Tensor, texture: torch.Tensor, scroll: tuple[int, int], alpha: float,
           corner: tuple[int, int], side: int, colour: torch.Tensor) -> torch.Tensor:
    """frame float (3, H, W) in [0, 1] with the scrolled texture blended in and the patch drawn at `corner`."""
    out = (1 - alpha) * frame + alpha * torch.roll(texture, shifts=scroll, dims=(1, 2))
    y, x = corner
    out[:, y:y + side, x:x + side] = colour[:, None, None]
    return out


def _moves(motion: torch.Tensor, cfg: DistractorConfig, size: int, g: torch.Generator) -> torch.Tensor:
    """Patch shifts (N, 2) in pixels for arm motions (N, 2) in about [-1, 1]."""
    rho = cfg.correlation
    noise = torch.randn(motion.shape, generator=g)
    return cfg.max_shift_fraction * size * (rho * motion.float().clamp(-1, 1) + math.sqrt(1 - rho**2) * noise)


def distract_pairs(frames: torch.Tensor, motion: torch.Tensor, cfg: DistractorConfig, seed: int) -> torch.Tensor:
    """uint8 frame pairs (N, 2, 3, H, W) with a distractor per pair; motion (N, 2) is the arm's (dy, dx) over
    the pair, e.g. the mean normalised action over the frame gap. Deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    n, _, _, size, _ = frames.shape
    side = max(1, round(cfg.patch_fraction * size))
    shifts = _moves(motion, cfg, size, g).round().long()  # (N, 2)
    start = torch.randint(0, size - side + 1, (n, 2), generator=g)
    end = (start + shifts).clamp(0, size - side)
    colours = torch.rand(n, 3, generator=g)
    step = cfg.overlay_step_fraction * size
    out = frames.float() / 255.0
    for i in range(n):
        texture = _texture(size, g)
        scroll = tuple(int(v) for v in (torch.randn(2, generator=g) * step).round())
        out[i, 0] = _paint(out[i, 0], texture, (0, 0), cfg.overlay, tuple(start[i].tolist()), side, colours[i])
        out[i, 1] = _paint(out[i, 1], texture, scroll, cfg.overlay, tuple(end[i].tolist()), side, colours[i])
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def distract_episode(frames: np.ndarray, motion: np.ndarray, cfg: DistractorConfig, seed: int,
                     frame_gap: int = 9) -> np.ndarray:
    """uint8 episode frames (T, H, W, 3) with one distractor moving through it; motion (T, 2) is the arm's
    per-step (dy, dx) command (LIBERO: the action's first two dims), so the patch moves with the arm. Each
    step moves it 1 / frame_gap of a pair's move, so that over a LAM's frame gap it moves about as far."""
    g = torch.Generator().manual_seed(seed)
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    size = video.shape[-1]
    side = max(1, round(cfg.patch_fraction * size))
    shifts = _moves(torch.from_numpy(np.asarray(motion, dtype=np.float32)), cfg, size, g) / frame_gap  # (T, 2)
    position = torch.randint(0, size - side + 1, (2,), generator=g).float()
    colour, texture = torch.rand(3, generator=g), _texture(size, g)
    scroll = torch.zeros(2)
    for t in range(len(video)):
        corner = tuple(int(v) for v in position.round())
        video[t] = _paint(video[t], texture, tuple(int(v) for v in scroll.round()), cfg.overlay, corner, side, colour)
        position = (position + shifts[t]).clamp(0, size - side)
        scroll += torch.randn(2, generator=g) * cfg.overlay_step_fraction * size / math.sqrt(frame_gap)
    return (video * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
