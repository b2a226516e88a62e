"""Tiny real models and fixed batches for the core tests (built from configs: no downloads)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import lara
from lara.vla.pi0 import pi0_config
from lara.vla.pi0 import pi0_batch as make_pi0_batch
from lara.vla.token_vla.tokenizer import build_example, collate

SMALL_LAM = dict(image_size=32, patch_size=8, width=32, heads=2, idm_layers=1, fdm_layers=1)


def small_config(**kw) -> lara.LaraConfig:
    lam = {**SMALL_LAM, **kw.pop("lam", {})}
    return lara.LaraConfig(lam=lara.LAMConfig(**lam), **kw)


def token_vla_batch(model, batch_size: int = 4, seed: int = 0) -> dict:
    g = np.random.default_rng(seed)
    tok = model.action_tokenizer
    examples = [build_example(f"pick up object {i}", tok.encode(g.uniform(-1, 1, 7))) for i in range(batch_size)]
    batch = collate(examples)
    batch["pixel_values"] = torch.from_numpy(g.standard_normal((batch_size, 3, 32, 32)).astype(np.float32))
    batch["lam_frames"] = torch.from_numpy(g.integers(0, 256, (batch_size, 2, 3, 32, 32), dtype=np.uint8))
    return batch


def pi0_batch(batch_size: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        make_pi0_batch(pi0_config(), batch_size, text_len=5, seed=seed),
        noise=torch.randn(batch_size, 4, 8, generator=g),  # fixed noise and time: a deterministic flow loss
        timestep=torch.full((batch_size,), 0.5),
        lam_frames=torch.randint(0, 256, (batch_size, 2, 3, 32, 32), dtype=torch.uint8, generator=g),
    )


class GenericPolicy(nn.Module):
    """Any nn.Module: an observation encoder and an action head, returning {'loss': ...}."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(10, width), nn.GELU(), nn.Linear(width, width))
        self.head = nn.Linear(width, 7)

    def forward(self, obs, actions=None):
        h = self.encoder(obs)  # (B, T, width)
        pred = self.head(h[:, -1])
        return {"loss": None if actions is None else (pred - actions).pow(2).mean(), "actions": pred}


def generic_batch(batch_size: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        obs=torch.randn(batch_size, 5, 10, generator=g),
        actions=torch.randn(batch_size, 7, generator=g),
        lam_frames=torch.randint(0, 256, (batch_size, 2, 3, 32, 32), dtype=torch.uint8, generator=g),
    )
