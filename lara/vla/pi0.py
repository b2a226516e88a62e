"""pi0 (transformers `PI0ForConditionalGeneration`): how it sees an observation, and a saved pi0 as a Policy.

One place for the inputs, so training (adapters/families/pi0.py) and rollouts feed pi0 identically:

    input_ids      [<image> x cameras x patches] [BOS] instruction "\\n"   (PI0Processor's layout), right-padded
    pixel_values   (B, cameras, 3, S, S) in [-1, 1]: bicubic resize to SigLIP's size, (x / 255 - 0.5) / 0.5
    state          (B, max_state_dim): proprio (ee pos, ee axis-angle, gripper qpos) standardised with the
                   dataset's proprio mean / std (PI0Processor's normalisation), zero-padded
    actions        (B, chunk_size, max_action_dim): the reader's q01/q99-normalised chunk, zero-padded

Text: a tokenizer saved beside the weights when there is one (a converted pi0 checkpoint). A pi0 built from a
config has none, so the instruction's UTF-8 bytes map onto the vocabulary deterministically (`ByteTokenizer`),
skipping the pad / BOS / EOS and image ids: the instruction is distinguishable, but not language a pretrained
PaliGemma knows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lara.data.statistics import STATISTICS_FILE, DatasetStatistics, load_statistics, unnormalize_actions
from lara.policy import ACTION_DIM, camera_image, robot_state

CAMERAS_KEY = "lara_cameras"  # the obs keys of the cameras a pi0 was trained on, kept in its config.json
DEFAULT_CAMERAS = ("agentview_rgb",)
class ByteTokenizer:
    """BOS, then each UTF-8 byte b of the text as the b-th id (modulo) of those that are not special or <image>."""

    def __init__(self, vocab_size: int, bos_id: int, reserved: set[int]):
        self.bos_id = bos_id
        self.free = [i for i in range(vocab_size) if i not in reserved | {bos_id}]
        if not self.free:
            raise ValueError(f"a vocabulary of {vocab_size} ids leaves none for text besides {sorted(reserved)}")

    def __call__(self, text: str) -> list[int]:
        return [self.bos_id] + [self.free[b % len(self.free)] for b in text.encode("utf-8")]


def clean_instruction(instruction: str) -> str:
    """openpi's prompt cleaning: underscores and newlines become spaces, whitespace collapsed."""
    return " ".join(instruction.replace("_", " ").split())


class PI0Inputs:
    """Observations -> PI0ForConditionalGeneration inputs for one model config (and optional tokenizer)."""

    def __init__(self, config, statistics: DatasetStatistics | None, tokenizer=None, cameras=None):
        vlm = config.vlm_config
        text, vision = vlm.text_config, vlm.vision_config
        self.image_token_id = vlm.image_token_id
        self.tokens_per_image = (vision.image_size // vision.patch_size) ** 2
        self.image_size = vision.image_size
        self.chunk_size, self.max_state_dim, self.max_action_dim = (
            config.chunk_size, config.max_state_dim, config.max_action_dim)
        if self.max_action_dim < ACTION_DIM:
            raise ValueError(f"pi0's max_action_dim is {self.max_action_dim}; LIBERO actions need {ACTION_DIM}")
        self.cameras = list(cameras or getattr(config, CAMERAS_KEY, None) or DEFAULT_CAMERAS)
        self.statistics = statistics
        self.tokenizer = tokenizer
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            bos = tokenizer.bos_token or ""
            self._encode = lambda t: tokenizer(f"{bos}{t}", add_special_tokens=False)["input_ids"]
        else:
            self.pad_id = text.pad_token_id if text.pad_token_id is not None else 0
            reserved = {i for i in (text.pad_token_id, text.eos_token_id, self.image_token_id) if i is not None}
            self._encode = ByteTokenizer(text.vocab_size, text.bos_token_id, reserved)

    # ---------------------------------------------------------------------------------------------

    def text(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and attention_mask (B, T): image tokens of every camera, then BOS + instruction + newline."""
        image = [self.image_token_id] * (self.tokens_per_image * len(self.cameras))
        rows = [image + list(self._encode(clean_instruction(text) + "\n")) for text in instructions]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        return ids, mask

    def images(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One uint8 (B, 3, H, W) tensor per camera -> pixel_values (B, n, 3, S, S), pixel_attention_mask (B, n)."""
        if len(views) != len(self.cameras):
            raise ValueError(f"pi0 was set up for {len(self.cameras)} camera(s) {self.cameras}, got {len(views)} image(s)")
        x = torch.stack(views, 1).float()  # (B, n, 3, H, W)
        b, n = x.shape[:2]
        x = x.flatten(0, 1)
        if x.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 255)
        pixels = (x / 255.0 - 0.5) / 0.5  # SigLIP: mean 0.5, std 0.5
        return pixels.unflatten(0, (b, n)), torch.ones(b, n, dtype=torch.bool)

    def state(self, proprio: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """(B, D) raw proprio -> (B, max_state_dim); None (action-free video) -> zeros."""
        if proprio is None:
            return torch.zeros(batch_size, self.max_state_dim)
        proprio = proprio.float()
        if proprio.shape[-1] > self.max_state_dim:
            raise ValueError(f"proprio has {proprio.shape[-1]} dims, pi0's max_state_dim is {self.max_state_dim}")
        stats = self.statistics.proprio if self.statistics is not None else None
        if stats is not None:
            mean, std = (torch.as_tensor(a, dtype=torch.float32) for a in (stats.mean, stats.std))
            proprio = (proprio - mean) / (std + 1e-8)
        return F.pad(proprio, (0, self.max_state_dim - proprio.shape[-1]))

    def actions(self, chunk: torch.Tensor) -> torch.Tensor:
        """(B, H, 7) normalised action chunk -> (B, chunk_size, max_action_dim)."""
        if chunk.shape[1] != self.chunk_size:
            raise ValueError(f"the action chunk has {chunk.shape[1]} steps, pi0's chunk_size is {self.chunk_size}: "
                             f"set data.action_horizon={self.chunk_size} (or build pi0 with chunk_size={chunk.shape[1]})")
        return F.pad(chunk.float(), (0, self.max_action_dim - chunk.shape[-1]))


# -------------------------------------------------------------------------------------------------
# A saved pi0 as a Policy


def find_statistics(path: Path) -> Path:
    """dataset_statistics.json in the model directory, or beside it (RUN/final/ holds vla/ and the statistics)."""
    for directory in (path, path.parent):
        if (directory / STATISTICS_FILE).is_file():
            return directory / STATISTICS_FILE
    raise FileNotFoundError(f"no {STATISTICS_FILE} in {path} or {path.parent}: pi0 predicts normalised actions and "
                            "needs the statistics it was trained with (a LARA run writes them to RUN/final/)")


class PI0Policy:
    """reset(instruction) then act(obs) -> float32 (chunk_size, 7): a flow-matching sample, un-normalised."""

    def __init__(self, model, statistics: DatasetStatistics, tokenizer=None, seed: int = 0):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.inputs = PI0Inputs(model.config, statistics, tokenizer)
        self.cameras = tuple(self.inputs.cameras)  # what the evaluation must render for it
        self.statistics = statistics
        self.generator = torch.Generator().manual_seed(seed)  # the flow's initial noise: reproducible rollouts
        self.instruction: str | None = None

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def _observation(self, obs: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        views = []
        for camera in self.inputs.cameras:
            image = camera_image(obs, camera)
            views.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])  # (1, 3, H, W)
        return views, torch.from_numpy(robot_state(obs, "pi0"))[None]

    @torch.no_grad()
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before act(obs)")
        views, proprio = self._observation(obs)
        pixel_values, pixel_mask = self.inputs.images(views)
        input_ids, attention_mask = self.inputs.text([self.instruction])
        shape = (1, self.inputs.chunk_size, self.inputs.max_action_dim)
        noise = torch.randn(shape, generator=self.generator)
        dtype = next(self.model.parameters()).dtype
        chunk = self.model.sample_actions(
            state=self.inputs.state(proprio, 1).to(self.device, dtype), input_ids=input_ids.to(self.device),
            pixel_values=pixel_values.to(self.device, dtype), noise=noise.to(self.device, dtype),
            attention_mask=attention_mask.to(self.device), pixel_attention_mask=pixel_mask.to(self.device),
        )  # (1, chunk_size, max_action_dim), normalised
        normalised = chunk[0, :, :ACTION_DIM].float().cpu().numpy()
        return unnormalize_actions(normalised, self.statistics.action).astype(np.float32)  # (chunk_size, 7)


def load_pi0_policy(path: str | Path, device: str | torch.device = "cpu") -> PI0Policy:
    """A policy from a directory written by PI0ForConditionalGeneration.save_pretrained (e.g. RUN/final/vla)."""
    from transformers import AutoTokenizer, PI0ForConditionalGeneration

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != "pi0":
        raise ValueError(f"{path}/config.json has model_type {config.get('model_type')!r}, expected 'pi0'")
    model = PI0ForConditionalGeneration.from_pretrained(path).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if has_tokenizer(path) else None
    return PI0Policy(model, load_statistics(find_statistics(path)), tokenizer)


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
