"""Each quantizer trains on a toy problem without collapsing its codebook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lara.config import LAMConfig
from lara.quantize import build_quantizer


def clustered_data(n: int = 2048, clusters: int = 32, dim: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g) * 3
    return centres[torch.randint(0, clusters, (n,), generator=g)] + 0.1 * torch.randn(n, dim, generator=g)


@pytest.mark.tf440
@pytest.mark.parametrize("kind", ["vq", "nsvq", "fsq"])
def test_quantizer_trains_without_collapse(kind):
    """32 well separated clusters: a healthy quantizer keeps at least half as many codes in use."""
    torch.manual_seed(0)
    cfg = LAMConfig(quantizer=kind, latent_tokens=1, latent_dim=8, codebook_size=32)
    enc, q = nn.Linear(16, 8), build_quantizer(cfg)
    dec = nn.Sequential(nn.Linear(8, 64), nn.GELU(), nn.Linear(64, 16))  # non-linear: FSQ codes live on a grid
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *q.parameters()], lr=3e-3)
    data = clustered_data()
    losses = []
    for step in range(300):
        x = data[torch.randint(0, len(data), (256,))]
        z_q, stats = q(enc(x)[:, None])  # (B, 1, d)
        loss = (dec(z_q[:, 0]) - x).pow(2).mean() + stats["commit"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20, "reconstruction did not improve"
    in_use = stats["indices"].unique().numel()
    assert in_use >= 16, f"codebook collapsed: {in_use} codes in use for 32 clusters"
    assert float(stats["perplexity"]) >= 8.0
