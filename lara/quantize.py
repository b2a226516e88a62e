"""Quantizers for the latent action z [B, n, d]: vq (EMA + dead-code restart), nsvq, fsq, none.

Every quantizer returns `(z_q, stats)` where z_q has z's shape and passes gradients to z, and stats
holds tensors (never Python numbers): `commit` (loss), `perplexity` and `code_usage` (fraction of
codes used in the batch). Codebook collapse is the most reported LAM failure, so usage is always logged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lara.config import LAMConfig


def usage_stats(indices: torch.Tensor, num_codes: int) -> dict[str, torch.Tensor]:
    counts = torch.bincount(indices.flatten(), minlength=num_codes).float()  # (K,)
    probs = counts / counts.sum().clamp(min=1)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-10))).sum())
    return {"perplexity": perplexity, "code_usage": (counts > 0).float().mean()}


def _nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code for each row of z (N, d) in codebook (K, d)."""
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(1)[None]  # (N, K)
    return dist.argmin(1)


class VectorQuantizer(nn.Module):
    """VQ-VAE codebook updated by EMA (not by gradients); codes unused for long are restarted from latents."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.num_codes, self.dim = cfg.codebook_size, cfg.latent_dim
        self.decay, self.commitment, self.threshold = cfg.ema_decay, cfg.commitment, cfg.dead_code_threshold
        self.cosine = cfg.codebook_metric == "cosine"
        self.register_buffer("codebook", torch.randn(self.num_codes, self.dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(self.num_codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.cosine:  # lookup, commitment and FDM input all on the unit sphere; codes are kept unit-norm
            z = F.normalize(z, dim=-1)
        flat = z.reshape(-1, self.dim)  # (N, d), N = B * n
        if self.training:
            self._init_from_data(flat.detach().float())
        idx = _nearest(flat.detach().float(), self.codebook)  # (N,)
        if self.training:
            self._ema_update(flat.detach().float(), idx)
        e = self.codebook[idx].view_as(z).to(z.dtype)
        commit = self.commitment * F.mse_loss(z, e.detach())
        z_q = z + (e - z).detach()  # straight-through estimator
        return z_q, {"commit": commit, "indices": idx.view(z.shape[:-1]), **usage_stats(idx, self.num_codes)}

    @torch.no_grad()
    def _init_from_data(self, flat: torch.Tensor) -> None:
        """Codes start as latents of the first training batch (no host sync: a select, every step)."""
        sample = flat[torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)]
        for buf in (self.codebook, self.ema_sum):
            buf.copy_(torch.where(self.initialized, buf, sample))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.num_codes).type(flat.dtype)  # (N, K)
        counts, sums = onehot.sum(0), onehot.t() @ flat  # (K,), (K, d)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.num_codes * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        if self.cosine:
            self.codebook.copy_(F.normalize(self.codebook, dim=-1))
        # Dead-code restart: codes whose usage decayed away jump to random latents of this batch.
        # restarted codes sit exactly at the threshold: one step without a latent and they restart again.
        floor = self.threshold * n / self.num_codes  # a fraction of the mean usage
        dead = self.ema_count < floor
        replacement = flat[torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)]
        self.codebook.copy_(torch.where(dead[:, None], replacement, self.codebook))
        self.ema_sum.copy_(torch.where(dead[:, None], replacement * floor, self.ema_sum))
        self.ema_count.copy_(torch.where(dead, floor, self.ema_count))


class NoiseSubstitutionVQ(nn.Module):
    """NSVQ (as in LAPA): z + ||z - e|| * noise/||noise|| carries gradients to z and to the codebook."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.num_codes, self.dim, self.threshold = cfg.codebook_size, cfg.latent_dim, cfg.dead_code_threshold
        self.codebook = nn.Parameter(torch.randn(self.num_codes, self.dim) * 0.1)
        self.register_buffer("usage", torch.ones(self.num_codes))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        flat = z.reshape(-1, self.dim)  # (N, d)
        idx = _nearest(flat.detach().float(), self.codebook.detach().float())
        e = self.codebook[idx].to(z.dtype)  # (N, d)
        if self.training:
            noise = torch.randn_like(flat)
            scale = (flat - e).norm(dim=1, keepdim=True) / noise.norm(dim=1, keepdim=True).clamp(min=1e-8)
            out = flat + scale * noise
            self._restart_dead(flat.detach(), idx)
        else:
            out = e
        zero = z.new_zeros(())
        return out.view_as(z), {"commit": zero, "indices": idx.view(z.shape[:-1]), **usage_stats(idx, self.num_codes)}

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        self.usage.mul_(0.99).add_(torch.bincount(idx, minlength=self.num_codes).float(), alpha=0.01)
        floor = self.threshold * self.usage.sum() / self.num_codes
        dead = self.usage < floor
        replacement = flat[torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)]
        self.codebook.data.copy_(torch.where(dead[:, None], replacement.to(self.codebook.dtype), self.codebook.data))
        self.usage.copy_(torch.where(dead, floor, self.usage))


class FiniteScalarQuantizer(nn.Module):
    """FSQ: project to len(levels) dims, bound each with tanh, round to its grid, project back. No codebook to collapse."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.register_buffer("levels", torch.tensor(cfg.fsq_levels, dtype=torch.float32), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + cfg.fsq_levels[:-1]), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.num_codes = int(torch.tensor(cfg.fsq_levels).prod())
        self.down = nn.Linear(cfg.latent_dim, len(cfg.fsq_levels))
        self.up = nn.Linear(len(cfg.fsq_levels), cfg.latent_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        half = (self.levels - 1) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        bounded = torch.tanh(self.down(z) + shift) * half - offset  # (B, n, L), in [-half-offset, half-offset]
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
        digits = (rounded.detach() + offset + half).long()  # (B, n, L) in [0, level)
        idx = (digits * self.basis).sum(-1)
        normalised = rounded / half  # grid in [-1, 1]
        return self.up(normalised), {"commit": z.new_zeros(()), "indices": idx, **usage_stats(idx, self.num_codes)}


class Identity(nn.Module):
    """No quantization: the continuous latent goes straight to the FDM."""

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        one = z.new_ones(())
        return z, {"commit": z.new_zeros(()), "perplexity": one, "code_usage": one}


def build_quantizer(cfg: LAMConfig) -> nn.Module:
    return {"vq": VectorQuantizer, "nsvq": NoiseSubstitutionVQ, "fsq": FiniteScalarQuantizer}.get(
        cfg.quantizer, lambda _: Identity()
    )(cfg)
