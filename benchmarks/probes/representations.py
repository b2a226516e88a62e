"""Representations of a frame pair (o_t, o_{t+k}) that the probes judge, each frames -> features (N, D).

    lam:PATH         a saved LAM or LARA artifact (`lara.save_lam` / `lara.save` / RUN/final/lara): its continuous
                     z, and its codes (one-hot per latent token) when it has a codebook
    untrained_lam    a freshly initialised LAM of the same config (or the default LAM at the data's size)
    pixel_diff       o_{t+k} - o_t average-pooled to 16 x 16
    vision:SPEC      a frozen transformers vision model (Dinov2Model, SiglipVisionModel, ViTMAEModel): its patch
                     tokens average-pooled to a 2 x 2 grid per frame, as the difference f(o_{t+k}) - f(o_t) and as
                     the concatenation [f(o_t), f(o_{t+k})]. SPEC is a local model folder, a JSON file holding a
                     config dict with `model_type`, or a preset built from a small config with random weights
                     (`dinov2`, `siglip`, `vit_mae`: they check the method, they are not the pretrained models)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import lara
from lara.benchmarks.probes.lam_health import latents, pixel_difference
from lara.errors import InputError, MissingPath
from lara.lam import FrameTokenizer

_SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, patch_size=8)
VISION_PRESETS = {
    "dinov2": dict(model_type="dinov2", **_SMALL),
    "siglip": dict(model_type="siglip_vision_model", **_SMALL),
    "vit_mae": dict(model_type="vit_mae", **_SMALL),
}


@dataclass
class Features:
    """One representation's features of every pair, and its codes where it has a codebook."""

    name: str
    x: torch.Tensor  # (N, D)
    codes: torch.Tensor | None = None  # (N, n) code index per latent token
    num_codes: int = 0


def vision_spec(spec: str, image_size: int) -> str | dict:
    """A preset name, a JSON config file or a model folder -> what `LAMConfig.vision_model` takes."""
    if spec in VISION_PRESETS:
        return {**VISION_PRESETS[spec], "image_size": image_size}
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        config = json.loads(path.read_text())
        if not isinstance(config, dict) or "model_type" not in config:
            raise InputError(f"vision:{spec}: expected a JSON object with 'model_type' (e.g. dinov2), got {config!r:.80}.")
        return config
    if path.is_dir():
        return str(path)
    raise MissingPath(f"vision:{spec}: not a preset ({', '.join(VISION_PRESETS)}), a JSON config file or a local "
                      "model folder. Give one of those.")


@torch.no_grad()
def vision_features(spec: str, frames: torch.Tensor, image_size: int, grid: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(diff, concat) features of a frozen vision model; frames uint8 (N, 2, 3, H, W)."""
    model = vision_spec(spec, image_size)
    tokenizer = FrameTokenizer(lara.LAMConfig(input="features", target="features", vision_model=model))
    pooled = []
    for t in (0, 1):
        per_frame = []
        for chunk in frames[:, t].split(128):
            tokens = tokenizer(chunk.float() / 255.0)  # (B, g*g, F) patch tokens
            side = tokenizer.grid
            fmap = tokens.transpose(1, 2).reshape(len(chunk), -1, side, side)  # (B, F, g, g)
            per_frame.append(F.adaptive_avg_pool2d(fmap, grid).flatten(1))  # (B, F * grid^2)
        pooled.append(torch.cat(per_frame))
    return pooled[1] - pooled[0], torch.cat(pooled, 1)


def lam_features(name: str, lam: lara.LatentActionModel, frames: torch.Tensor) -> list[Features]:
    """z (and codes, one-hot per token, where the quantizer has a codebook) of a LAM."""
    z, codes = latents(lam, frames)
    out = [Features(f"{name}:z", z)]
    num_codes = getattr(lam.quantizer, "num_codes", 0)
    if codes is not None and num_codes:
        onehot = F.one_hot(codes.long(), num_codes).flatten(1).float()  # (N, n * K)
        out.append(Features(f"{name}:codes", onehot, codes, num_codes))
    return out


def load_lam_artifact(path: str) -> lara.LatentActionModel:
    folder = Path(path)
    if not folder.is_dir():
        raise MissingPath(f"lam:{path}: no such folder; expected a LAM or LARA artifact (lara_config.json + "
                          "lara.safetensors), e.g. RUN/final/lara.")
    try:
        return lara.load_lam(folder)
    except MissingPath as error:
        raise MissingPath(f"lam:{path}: {error}") from None


def compute(specs: list[str], frames: torch.Tensor, image_size: int, seed: int) -> list[Features]:
    """Every representation named in `specs`, in that order, for frames uint8 (N, 2, 3, H, W)."""
    out: list[Features] = []
    first_lam_cfg = None
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "pixel_diff":
            out.append(Features("pixel_diff", pixel_difference(frames)))
        elif kind == "lam" and arg:
            lam = load_lam_artifact(arg)
            first_lam_cfg = first_lam_cfg or lam.cfg
            out += lam_features(f"lam[{Path(arg).name or arg}]", lam, frames)
        elif kind == "untrained_lam":
            cfg = first_lam_cfg or lara.LAMConfig(image_size=image_size, patch_size=max(image_size // 4, 1))
            torch.manual_seed(seed)
            out += lam_features("untrained_lam", lara.LatentActionModel(cfg), frames)
        elif kind == "vision" and arg:
            torch.manual_seed(seed)  # a preset's random weights: the same model for clean and distracted frames
            diff, concat = vision_features(arg, frames, image_size)
            label = Path(arg).stem if arg not in VISION_PRESETS else arg
            out += [Features(f"{label}:diff", diff), Features(f"{label}:concat", concat)]
        else:
            raise InputError(f"unknown representation {spec!r}; expected lam:PATH, untrained_lam, pixel_diff or "
                             f"vision:SPEC (SPEC: {', '.join(VISION_PRESETS)}, a JSON config or a model folder).")
    return out
