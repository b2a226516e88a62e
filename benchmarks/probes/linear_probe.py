"""Latent-action quality: how linearly decodable is the ground-truth action from the LAM latent z?"""

from __future__ import annotations

import torch


def ridge_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
             ridge: float = 1e-2) -> float:
    """Fit y = [x, 1] W by ridge regression on train, return R^2 (averaged over y dims) on test."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs = [torch.cat([(x - mean) / std, torch.ones(len(x), 1)], 1).double() for x in (train_x, test_x)]
    a = xs[0].T @ xs[0] + ridge * len(xs[0]) * torch.eye(xs[0].shape[1], dtype=torch.double)
    w = torch.linalg.solve(a, xs[0].T @ train_y.double())  # (F + 1, Y)
    pred = xs[1] @ w
    ss_res = (test_y.double() - pred).pow(2).sum(0)
    ss_tot = (test_y.double() - test_y.double().mean(0)).pow(2).sum(0).clamp(min=1e-12)
    return float((1 - ss_res / ss_tot).mean())


@torch.no_grad()
def probe_latents(lam, frames: torch.Tensor, actions: torch.Tensor, train_fraction: float = 0.7) -> float:
    """R^2 of a linear probe from the LAM's continuous latent z (flattened) to the actions, on held-out pairs."""
    was_training = lam.training
    lam.eval()
    z = torch.cat([lam.encode(chunk.float() / 255.0).flatten(1) for chunk in frames.split(256)])
    lam.train(was_training)
    cut = int(len(z) * train_fraction)
    return ridge_r2(z[:cut], actions[:cut], z[cut:], actions[cut:])
