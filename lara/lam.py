"""The latent action model (LAM), trained jointly with the policy.

    IDM  E(o_t, o_{t+k}) -> z                 transformer over both frames' tokens + n learned latent queries
    Q    z -> z_q                             vq / nsvq / fsq / none (lara.quantize)
    FDM  D(o_t, z_q) -> o_{t+k}               transformer over o_t tokens, cross-attending to the latent tokens
                                              (target 'vlm': over a frozen VLM's prompted representation of o_t)
    A    z -> a_{t:t+k}                       optional action head on the continuous latent, where robot actions exist

Frames enter as pixels through a patch embedding, or as tokens of a frozen transformers vision model
(Dinov2Model, SiglipVisionModel, ViTMAEModel) loaded from a local path or built from a config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lara.config import LAMConfig
from lara.quantize import build_quantizer
from lara.vlm_target import PromptedTarget

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(width, width), nn.Linear(width, 2 * width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # views and one copy written out (not einops' rearrange): a LAM's tensors are small, so per-call Python
        # overhead is a visible part of its step (issue 39); the same data movement, so the same numbers
        (b, t, w), s, nh = x.shape, context.shape[1], self.heads
        q = self.q(x).view(b, t, nh, w // nh).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv(context).view(b, s, 2, nh, w // nh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, S, hs) each
        y = F.scaled_dot_product_attention(q, k, v)  # bidirectional: no causal mask between frames
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


class Block(nn.Module):
    """Pre-norm transformer block; with `cross=True` it also attends to a context (the latent tokens)."""

    def __init__(self, width: int, heads: int, cross: bool = False):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln_x, self.xattn = (nn.LayerNorm(width), Attention(width, heads)) if cross else (None, None)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h)
        if self.xattn is not None:
            x = x + self.xattn(self.ln_x(x), context)
        return x + self.mlp(self.ln2(x))


class FrameTokenizer(nn.Module):
    """Frames [B, C, H, W] in [0, 1] -> the inputs the LAM's embeddings take, [B, N, F].

    Pixels: non-overlapping patches flattened (F = C * p * p). Features: the patch tokens of a frozen
    vision model (F = its hidden size). The frozen model is never trained and is not saved by `lara.save`.
    """

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.input == "pixels":
            self.size, self.grid = cfg.image_size, cfg.image_size // cfg.patch_size
            self.dim = cfg.channels * cfg.patch_size**2
            self.vision = None
            return
        from transformers import AutoConfig, AutoModel

        if isinstance(cfg.vision_model, dict):
            spec = dict(cfg.vision_model)
            vision = AutoModel.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
        else:
            vision = AutoModel.from_pretrained(cfg.vision_model)
        vcfg = vision.config
        if getattr(vcfg, "mask_ratio", 0):  # ViT-MAE masks patches at random unless told not to
            vcfg.mask_ratio = 0.0
        vision.requires_grad_(False).eval()
        object.__setattr__(self, "vision", vision)  # not a submodule: frozen, kept out of state_dict and .train()
        self.size, self.grid, self.dim = vcfg.image_size, vcfg.image_size // vcfg.patch_size, vcfg.hidden_size
        mean, std = ((0.5,) * 3, (0.5,) * 3) if "siglip" in vcfg.model_type else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.grid**2

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] != self.size or frames.shape[-2] != self.size:
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if self.vision is None:
            return self._patches(frames[None])[0]  # (B, N, C*p*p)
        self.vision.to(frames.device)
        extra = {}
        if self.vision.config.model_type == "vit_mae":  # it shuffles patches per sample even with mask_ratio 0
            extra["noise"] = torch.arange(self.num_tokens, device=frames.device).expand(len(frames), -1).float()
        with torch.no_grad():
            hidden = self.vision(pixel_values=(frames - self.mean) / self.std, **extra).last_hidden_state
        return hidden[:, -self.num_tokens :].to(frames.dtype)  # (B, N, F) in the frames' dtype: drop CLS / registers

    def pair(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, 2, C, H, W) in [0, 1] -> the tokens of o_t and of o_{t+k}, (B, N, F) each. Pixel patches of
        both frames come from one copy (the same numbers as two calls of forward); resized or frozen-model inputs
        go through forward frame by frame."""
        if self.vision is not None or frames.shape[-1] != self.size or frames.shape[-2] != self.size:
            return self(frames[:, 0]), self(frames[:, 1])
        now, future = self._patches(frames.transpose(0, 1))  # (B, N, C*p*p) each, contiguous
        return now, future

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (K, B, C, H, W) -> non-overlapping patches flattened, (K, B, N, C*p*p), in one copy."""
        k, b, c, p, g = *frames.shape[:3], self.cfg.patch_size, self.grid
        x = frames.reshape(k, b, c, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6)  # (K, B, gh, gw, C, p1, p2)
        return x.reshape(k, b, g * g, c * p * p)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        return rearrange(patches, "b (gh gw) (c p1 p2) -> b c (gh p1) (gw p2)", gh=self.grid, p1=p, p2=p)


class IDM(nn.Module):
    """Inverse dynamics: which latent action turns o_t into o_{t+k}?

    Early fusion: each token embeds the same patch of both frames, so a change is visible per token
    and the sequence is N long rather than 2N.
    """

    def __init__(self, cfg: LAMConfig, token_dim: int, num_tokens: int):
        super().__init__()
        w = cfg.width
        self.embed = nn.Linear(2 * token_dim, w)
        self.pos = nn.Parameter(torch.randn(1, num_tokens, w) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, cfg.latent_tokens, w) * 0.02)
        self.blocks = nn.ModuleList(Block(w, cfg.heads) for _ in range(cfg.idm_layers))
        self.ln, self.out = nn.LayerNorm(w), nn.Linear(w, cfg.latent_dim)

    def forward(self, now: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        x = self.embed(torch.cat([now, future - now], dim=-1)) + self.pos  # (B, N, w)
        q = self.queries.expand(now.shape[0], -1, -1)  # (B, n, w)
        x = torch.cat([q, x], dim=1)  # (B, n + N, w)
        for block in self.blocks:
            x = block(x)
        return self.out(self.ln(x[:, : q.shape[1]]))  # (B, n, d): the continuous latent action z


class FDM(nn.Module):
    """Forward dynamics: o_t plus a latent action -> o_{t+k} (pixel patches or frozen features)."""

    def __init__(self, cfg: LAMConfig, token_dim: int, num_tokens: int):
        super().__init__()
        w = cfg.width
        self.embed = nn.Linear(token_dim, w)
        self.pos = nn.Parameter(torch.randn(1, num_tokens, w) * 0.02)
        self.latent_in = nn.Linear(cfg.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.randn(1, cfg.latent_tokens, w) * 0.02)
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cross=True) for _ in range(cfg.fdm_layers))
        self.ln, self.out = nn.LayerNorm(w), nn.Linear(w, token_dim)

    def forward(self, now: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        x = self.embed(now) + self.pos  # (B, N, w)
        ctx = self.latent_in(latent) + self.latent_pos  # (B, n, w)
        for block in self.blocks:
            x = block(x, ctx)
        return now + self.out(self.ln(x))  # (B, N, F): predicts the change on top of o_t


@dataclass
class LAMOutput:
    z: torch.Tensor  # (B, n, d) continuous pre-quantization latent: the alignment target
    z_q: torch.Tensor  # (B, n, d) what the FDM consumed
    now: torch.Tensor  # (B, N, F) tokenized o_t (FDM input; target 'vlm': the VLM's (B, 1, D))
    pred: torch.Tensor  # (B, N, F) the FDM's prediction of o_{t+k}
    target: torch.Tensor  # (B, N, F) tokenized o_{t+k} (FDM target)
    losses: dict[str, torch.Tensor]  # recon, commit, action, total
    stats: dict[str, torch.Tensor]  # perplexity, code_usage


def masked_mean(per_sample: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of a per-sample loss over the samples with weight 1 (0 when none is)."""
    return (per_sample * weight).sum() / weight.sum().clamp(min=1)


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = FrameTokenizer(cfg)
        dim, n = self.tokenizer.dim, self.tokenizer.num_tokens
        self.idm = IDM(cfg, dim, n)
        self.quantizer = build_quantizer(cfg)
        self.target_encoder = PromptedTarget(cfg.target_model, cfg.target_prompt) if cfg.target == "vlm" else None
        if self.target_encoder is not None:  # the FDM works on the VLM's representation, not on the IDM's tokens
            dim, n = self.target_encoder.dim, self.target_encoder.num_tokens
        self.fdm = FDM(cfg, dim, n)
        self.action_head = None
        if cfg.action_horizon:
            flat = cfg.latent_tokens * cfg.latent_dim
            self.action_head = nn.Sequential(
                nn.Linear(flat, 256), nn.GELU(), nn.Linear(256, cfg.action_horizon * cfg.action_dim)
            )
        # The FDM starts as the identity (o_{t+k} = o_t): learning goes into the change, which only z explains.
        nn.init.zeros_(self.fdm.out.weight)
        nn.init.zeros_(self.fdm.out.bias)

    def reconstruction_error(self, pred: torch.Tensor, now: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample FDM error (B,) of pred vs target, both (B, N, F); `now` is o_t's tokens."""
        err = (pred - target).pow(2)  # (B, N, F)
        uniform = err.mean(dim=(1, 2))
        if self.cfg.recon_weighting == "uniform":
            return uniform
        change = (target - now).pow(2).detach()  # (B, N, F): where o_{t+k} differs from o_t
        on_change = (err * change).sum(dim=(1, 2)) / change.sum(dim=(1, 2)).clamp(min=1e-8)
        return uniform + self.cfg.motion_weight * on_change

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 2, C, H, W) floats in [0, 1] -> continuous latent actions z (B, n, d)."""
        return self.idm(*self.tokenizer.pair(frames))

    def forward(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> LAMOutput:
        """frames (B, 2, C, H, W) in [0, 1]; actions (B, k, A); valid (B,) bool; action_mask (B, k) bool."""
        now, target = self.tokenizer.pair(frames)  # (B, N, F) each
        weight = valid.float() if valid is not None else now.new_ones(now.shape[0])  # (B,)
        z = self.idm(now, target)
        z_q, qstats = self.quantizer(z)
        if self.target_encoder is not None:  # (B, 1, D) each: the prompted VLM's view of o_t and o_{t+k}
            now, target = self.target_encoder(frames[:, 0]), self.target_encoder(frames[:, 1])
        pred = self.fdm(now, z_q)
        recon = masked_mean(self.reconstruction_error(pred, now, target), weight)
        action = now.new_zeros(())
        if self.action_head is not None and actions is not None:
            k, a = self.cfg.action_horizon, self.cfg.action_dim
            pred_a = self.action_head(z.flatten(1)).view(-1, k, a)  # (B, k, A): A(z), the alignment target itself
            err = (pred_a - actions[:, :k].to(pred_a.dtype)).pow(2).mean(-1)  # (B, k)
            step_w = action_mask[:, :k].float() if action_mask is not None else torch.ones_like(err)
            per_sample = (err * step_w).sum(1) / step_w.sum(1).clamp(min=1)
            action = masked_mean(per_sample, weight * (step_w.sum(1) > 0).float())
        total = recon + qstats["commit"] + self.cfg.action_weight * action
        losses = {"recon": recon, "commit": qstats["commit"], "action": action, "total": total}
        stats = {"perplexity": qstats["perplexity"], "code_usage": qstats["code_usage"]}
        return LAMOutput(z=z, z_q=z_q, now=now, pred=pred, target=target, losses=losses, stats=stats)
