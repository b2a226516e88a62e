"""What keeps a LAM's latent alive on robot-like data, and the pieces that do it.

Measured on scripted LIBERO demonstrations (python -m lara.benchmarks.probes.lam_health): the FDM learns to
predict o_{t+k} from o_t alone, since a scripted expert's next move follows from the scene, and the latent
stays near-constant. Frames of a square that always moves towards the centre have the same property.
"""

from __future__ import annotations

import pytest
import torch

import lara
from lara.benchmarks.probes.lam_health import latents, spread
from lara.benchmarks.probes.synthetic import moving_object_pairs


def train(cfg: lara.LAMConfig, frames: torch.Tensor, actions: torch.Tensor, steps: int) -> lara.LatentActionModel:
    torch.manual_seed(0)
    lam = lara.LatentActionModel(cfg)
    opt = torch.optim.AdamW(lam.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(frames), (64,), generator=g)
        out = lam(frames[idx].float() / 255, actions[idx] if cfg.action_horizon else None)
        out.losses["total"].backward()
        opt.step()
        opt.zero_grad()
    return lam


@pytest.mark.slow
def test_the_action_head_keeps_the_latent_alive_where_reconstruction_alone_lets_it_collapse():
    frames, moves, _ = moving_object_pairs(1000, size=16, square=4, max_shift=3, seed=0, towards_centre=True)
    actions = torch.cat([moves, torch.zeros(len(moves), 5)], 1)[:, None]  # (N, k=1, 7)
    cfg = lara.LAMConfig(image_size=16, patch_size=4, width=64, heads=4, idm_layers=2, fdm_layers=2)
    # 150 steps, not 400: the spreads are 0.011 and 0.21 then (100: 0.012, 0.26; 200: 0.011, 0.20), as clear of the bounds
    recon_only = spread(latents(train(cfg, frames, actions, 150), frames)[0])
    with_head = spread(latents(train(cfg.model_copy(update={"action_horizon": 1}), frames, actions, 150), frames)[0])
    assert recon_only < 0.02, f"the reconstruction-only latent varies ({recon_only:.3f}): the test lost its point"
    assert with_head > 0.1, f"with the action head the latent is still near-constant (spread {with_head:.3f})"


def test_motion_weighting_counts_errors_where_the_frame_changed():
    lam = lara.LatentActionModel(lara.LAMConfig(image_size=16, patch_size=4, recon_weighting="motion"))
    now = torch.zeros(1, 16, 48)
    target = now.clone()
    target[0, 3] = 1.0  # one patch changed
    on_change, on_static = target.clone(), target.clone()
    on_change[0, 3] -= 0.1  # the same error, once on the changed patch and once on a static one
    on_static[0, 7] += 0.1
    uniform = lara.LatentActionModel(lara.LAMConfig(image_size=16, patch_size=4))
    assert torch.allclose(uniform.reconstruction_error(on_change, now, target),
                          uniform.reconstruction_error(on_static, now, target))
    assert lam.reconstruction_error(on_change, now, target) > 10 * lam.reconstruction_error(on_static, now, target)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_vq_codebook_metric(metric):
    cfg = lara.LAMConfig(latent_tokens=2, latent_dim=8, codebook_size=16, codebook_metric=metric)
    q = lara.LatentActionModel(cfg).quantizer.train()
    z = torch.randn(32, 2, 8) * 5
    for _ in range(3):
        z_q, stats = q(z)
    norms = q.codebook.norm(dim=-1)
    if metric == "cosine":
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
        assert torch.allclose(z_q.norm(dim=-1), torch.ones(32, 2), atol=1e-5)
    else:
        assert norms.max() > 2  # codes live where the latents are
    assert z_q.shape == z.shape and stats["code_usage"] > 0


def test_recipe_refuses_an_action_head_longer_than_the_frame_gap():
    from lara.adapters.config import load_recipe

    with pytest.raises(ValueError, match=r"lara.lam.action_horizon \(12\) exceeds data.frame_gap \(9\)"):
        load_recipe("posttrain_token_vla", ["lara.lam.action_horizon=12"])

