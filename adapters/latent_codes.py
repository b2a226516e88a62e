"""A LAM's codes as the labels of latent-action pre-training (`latent_pretrain`, LAPA): the frozen LAM that labels,
the code indices of every frame pair (cached in RUN/latent_codes.pt for exactly that LAM and those frames), how varied
they are, and the TokenVLA wrapper that learns to predict them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import lara
from lara.data import EpisodeDataset
from lara.errors import InputError, MissingPath
from lara.outputs import replacing
from lara.vla.token_vla import splice_after_bos
from lara.vla.token_vla.tokenizer import IGNORE_INDEX

from .common import warm_up_lam

if TYPE_CHECKING:
    from .config import RecipeConfig


class CodePredictor(nn.Module):
    """The TokenVLA on code tokens: forward -> (cross-entropy on the code tokens, their accuracy). A module of its
    own so that DDP sees the forward pass (the VLA's `lm_forward` is not its `forward` under the 'l1' head)."""

    def __init__(self, vla: nn.Module):
        super().__init__()
        self.vla = vla

    def forward(self, input_ids, attention_mask, labels, pixel_values,
                proprio=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vla.lm_forward(input_ids, pixel_values, attention_mask, labels, proprio)
        extra = out.logits.shape[1] - input_ids.shape[1]  # image patches spliced in after BOS
        targets = splice_after_bos(labels, extra, IGNORE_INDEX)[:, 1:]  # (B, T + P - 1): what each position predicts
        mask = targets != IGNORE_INDEX  # the code tokens
        first = self.vla.first_code_id
        guess = out.logits[:, :-1][mask][:, first:].argmax(-1) + first  # (M,): argmax over the K code rows
        return out.loss, (guess == targets[mask]).float().mean()


class Labelled(torch.utils.data.Dataset):
    """The frames' samples, each with its LAM codes `latent_codes` (n,)."""

    def __init__(self, data: EpisodeDataset, codes: torch.Tensor):
        self.data, self.codes = data, codes

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        return {**self.data[index], "latent_codes": self.codes[index]}

    def epoch_order(self, seed: int, epoch: int) -> list[int] | None:
        return self.data.epoch_order(seed, epoch)


def labeller(cfg: RecipeConfig, frames: EpisodeDataset) -> lara.LatentActionModel:
    """The frozen LAM whose codes are the targets: loaded from `latent.lam_from`, or trained here first."""
    source = cfg.latent.lam_from
    if source is None:
        lam = warm_up_lam(cfg, [frames], cfg.latent.lam_steps, cfg.latent.lam_lr)
    else:
        if not (Path(source) / "lara.safetensors").is_file():
            raise MissingPath(f"latent.lam_from={source} holds no lara.safetensors: give a LARA artifact folder "
                              "(RUN/final/lara of pretrain, posttrain or refine_lam, or RUN/final/lam)")
        lam = lara.load_lam(source)
    if not hasattr(lam.quantizer, "num_codes"):
        raise InputError(f"the LAM of latent.lam_from={source} has quantizer '{lam.cfg.quantizer}', which gives no "
                         "discrete codes to predict; give a LAM with a vq, nsvq or fsq quantizer")
    return lam.eval().requires_grad_(False)


def fingerprint(lam: nn.Module) -> str:
    """sha256 of the LAM's weights: the cached labels belong to exactly this LAM."""
    digest = hashlib.sha256()
    for name, tensor in sorted(lam.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stack_pairs(samples: list[dict]) -> torch.Tensor:
    return torch.stack([s["lam_frames"] for s in samples])  # (B, 2, 3, H, W) uint8


@torch.no_grad()
def label(lam: lara.LatentActionModel, frames: EpisodeDataset, batch_size: int, device: torch.device,
          num_workers: int = 0) -> torch.Tensor:
    """The LAM's code indices of every pair (N, n), in sample order."""
    lam.to(device)
    loader = torch.utils.data.DataLoader(frames, batch_size=batch_size, collate_fn=stack_pairs, num_workers=num_workers)
    codes = []
    for pairs in loader:  # (B, 2, 3, H, W) uint8
        z = lam.encode(pairs.to(device).float() / 255.0)  # (B, n, d)
        codes.append(lam.quantizer(z)[1]["indices"].long().cpu())  # (B, n)
    return torch.cat(codes)


def code_statistics(codes: torch.Tensor, num_codes: int) -> dict:
    """How varied the labels are, and the accuracy of always predicting each position's most frequent code."""
    counts = torch.stack([torch.bincount(column, minlength=num_codes) for column in codes.T]).float()  # (n, K)
    pooled = counts.sum(0) / counts.sum()
    entropy = -(pooled * pooled.clamp(min=1e-12).log()).sum()
    return {"pairs": len(codes), "tokens_per_pair": codes.shape[1], "codes": num_codes,
            "code_usage": float((pooled > 0).float().mean()), "perplexity": float(entropy.exp()),
            "chance": float((counts.max(1).values / len(codes)).mean())}


def codes_of(cfg: RecipeConfig, lam: lara.LatentActionModel, frames: EpisodeDataset, accelerator) -> torch.Tensor:
    """The labels, from RUN/latent_codes.pt when it holds this LAM's codes of these frames, else computed there
    (by the main process; the others wait and read them)."""
    path, key = cfg.output_dir / "latent_codes.pt", fingerprint(lam)
    cached = torch.load(path, weights_only=True) if path.is_file() else None
    fresh = cached is None or cached["lam"] != key or len(cached["codes"]) != len(frames)
    if fresh and accelerator.is_main_process:
        codes = label(lam, frames, cfg.train.batch_size, accelerator.device, cfg.train.num_workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as staging:
            torch.save({"lam": key, "codes": codes}, staging)
    accelerator.wait_for_everyone()
    return torch.load(path, weights_only=True)["codes"]
