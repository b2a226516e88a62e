"""Latent-action quality: how linearly decodable is the ground-truth action from the LAM latent z?

LAM refinement (`lara.adapters.refine_lam`) judges its LAM by it before and after, and the probes
(`lara.benchmarks.probes`) report it.
"""

from __future__ import annotations

import torch


def ridge_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
             ridge: float = 1e-2) -> float:
    """Fit y = [x, 1] W by ridge regression on train, return R^2 on test, averaged over the y dims that vary
    there (R^2 of a constant dim is undefined: scripted demonstrations never rotate, for instance)."""
    # features (near) constant on train carry nothing to fit, and standardising them would blow up any
    # test-time wiggle (a collapsed latent is constant): leave them out
    std = train_x.std(0)
    used = std > 1e-4 * std.max().clamp(min=1e-12)
    mean, std = train_x[:, used].mean(0), std[used]
    xs = [torch.cat([(x[:, used] - mean) / std, torch.ones(len(x), 1)], 1).double() for x in (train_x, test_x)]
    a = xs[0].T @ xs[0] + ridge * len(xs[0]) * torch.eye(xs[0].shape[1], dtype=torch.double)
    w = torch.linalg.solve(a, xs[0].T @ train_y.double())  # (F + 1, Y)
    pred = xs[1] @ w
    ss_res = (test_y.double() - pred).pow(2).sum(0)
    ss_tot = (test_y.double() - test_y.double().mean(0)).pow(2).sum(0)
    varying = ss_tot > 1e-8 * len(test_y)
    if not varying.any():
        raise ValueError("every target dim is constant on the test split: R^2 is undefined")
    return float((1 - ss_res[varying] / ss_tot[varying]).mean())


@torch.no_grad()
def probe_latents(lam, frames: torch.Tensor, actions: torch.Tensor, train_fraction: float = 0.7) -> float:
    """R^2 of a linear probe from the LAM's continuous latent z (flattened) to the actions, on held-out pairs."""
    was_training = lam.training
    lam.eval()
    z = torch.cat([lam.encode(chunk.float() / 255.0).flatten(1) for chunk in frames.split(256)])
    lam.train(was_training)
    cut = int(len(z) * train_fraction)
    return ridge_r2(z[:cut], actions[:cut], z[cut:], actions[cut:])
